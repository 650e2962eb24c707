//! The `gatekeeper` example, served on an ephemeral loopback port and driven
//! over HTTP: on memory, and on Postgres (events, documents, reputation) with
//! Redis (sessions, rate limits) when those servers are configured (required
//! in CI through `PALISADE_REQUIRE`).
#![cfg(feature = "tower")]

#[path = "../examples/gatekeeper/app.rs"]
#[allow(dead_code)]
mod app;

use std::net::SocketAddr;
use std::time::Duration;

use futures::StreamExt;
use palisade::{Namespace, Stores};
use reqwest::{header, Client, Response, StatusCode};
use serde_json::{json, Value};

const ADMIN: &str = "test-admin-token";

struct Running {
    base: String,
    http: Client,
}

impl Running {
    async fn start(stores: Stores) -> Running {
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let settings = app::Settings { login_limit: 3, admin_token: Some(ADMIN.into()), ..app::Settings::default() };
        let gatekeeper = app::build(stores, settings).await.unwrap();
        tokio::spawn(app::serve(listener, gatekeeper.router, std::future::pending()));
        Running { base, http: Client::new() }
    }

    async fn post(&self, path: &str, body: Value, cookie: Option<&str>) -> Response {
        let mut req = self.http.post(format!("{}{path}", self.base)).json(&body);
        if let Some(c) = cookie {
            req = req.header(header::COOKIE, c);
        }
        req.send().await.unwrap()
    }

    async fn get(&self, path: &str, cookie: Option<&str>) -> Response {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(c) = cookie {
            req = req.header(header::COOKIE, c);
        }
        req.send().await.unwrap()
    }

    async fn live(&self, token: Option<&str>) -> Response {
        let mut req = self.http.get(format!("{}/live", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.unwrap()
    }
}

fn cookie(res: &Response) -> String {
    let set = res.headers().get(header::SET_COOKIE).expect("a session cookie").to_str().unwrap();
    set.split(';').next().unwrap().to_owned()
}

/// Reads the SSE stream until `needle` shows up (10 s at most); the text read.
async fn sse_until(res: Response, needle: &str) -> String {
    let mut body = res.bytes_stream();
    let mut seen = String::new();
    let read = async {
        while let Some(chunk) = body.next().await {
            seen.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
            if seen.contains(needle) {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), read).await;
    seen
}

/// Drives the gatekeeper on `stores`, whose backends (events, sessions,
/// documents, reputation) health must name.
async fn drive(stores: Stores, backends: [&str; 4]) {
    let gk = Running::start(stores).await;

    // Health: every store reported, the sink and limiter counted.
    let res = gk.get("/health", None).await;
    assert_eq!(res.status(), StatusCode::OK);
    let health: Value = res.json().await.unwrap();
    assert_eq!(health["status"], "healthy", "{health}");
    let named: Vec<&str> =
        health["stores"].as_array().unwrap().iter().map(|s| s["backend"].as_str().unwrap()).collect();
    assert_eq!(named, backends, "{health}");

    // The live tail (an operator's endpoint), opened before anything is blocked.
    assert_eq!(gk.live(None).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(gk.live(Some("guess")).await.status(), StatusCode::UNAUTHORIZED);
    let live = gk.live(Some(ADMIN)).await;
    assert_eq!(live.status(), StatusCode::OK);
    assert!(live.headers()[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/event-stream"));

    // Sessions through tower-sessions over the session cache.
    let res = gk.post("/login", json!({"user": "alice"}), None).await;
    assert_eq!(res.status(), StatusCode::OK);
    let alice = cookie(&res);
    let me: Value = gk.get("/me", Some(&alice)).await.json().await.unwrap();
    assert_eq!(me["user"], "alice");
    assert_eq!(gk.get("/me", None).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(gk.post("/logout", json!({}), Some(&alice)).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(gk.get("/me", Some(&alice)).await.status(), StatusCode::NOT_FOUND, "logged out");

    // The login limit (3 per minute here): the 4th attempt is refused.
    let res = gk.post("/login", json!({"user": "mallory"}), None).await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = gk.post("/login", json!({"user": "mallory"}), Some(&cookie(&res))).await;
    assert_eq!(res.status(), StatusCode::OK);
    let mallory = cookie(&res);
    let refused = gk.post("/login", json!({"user": "mallory"}), Some(&mallory)).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = refused.headers()[header::RETRY_AFTER].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry));
    assert_eq!(refused.headers()["ratelimit-policy"], "\"login\";q=3;w=60");
    assert!(refused.headers()["ratelimit"].to_str().unwrap().starts_with("\"login\";r=0;t="));

    // A WAF block from a handler.
    let blocked = gk.post("/inspect", json!({"payload": "<SCRIPT>alert(1)</script>"}), None).await;
    assert_eq!(blocked.status(), StatusCode::FORBIDDEN);
    let clean = gk.post("/inspect", json!({"payload": "hello"}), None).await;
    assert_eq!(clean.status(), StatusCode::OK);

    // Both blocks reach the live tail as security events.
    let tail = sse_until(live, "waf_block").await;
    assert!(tail.contains("event: caught_up"), "{tail}");
    assert!(tail.contains("event: security") && tail.contains("rate_limited") && tail.contains("waf_block"), "{tail}");
    assert!(tail.contains("rule:xss") && tail.contains("127.0.0.1"), "{tail}");
    let mallory_id = &mallory["id=".len()..];
    let reference = palisade::tower::session_ref(&mallory_id.parse().unwrap());
    assert!(tail.contains(&reference), "the blocked request's session, by reference: {tail}");
    assert!(!tail.contains(mallory_id), "session ids (credentials) never reach events");

    // Analysis results, held to the schema.
    let sha = "ab".repeat(32);
    let res = gk.post("/analyses", json!({"sha256": sha, "verdict": "malicious", "score": 97}), None).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let stored: Value = res.json().await.unwrap();
    let id = stored["_id"].as_str().unwrap().to_owned();
    let bad = gk.post("/analyses", json!({"sha256": sha, "verdict": "evil"}), None).await;
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY, "schema violation");
    let hostile = gk.post("/analyses", json!({"sha256": sha, "verdict": "clean", "$where": "1"}), None).await;
    assert_eq!(hostile.status(), StatusCode::BAD_REQUEST, "operator-like field names are refused");
    let got: Value = gk.get(&format!("/analyses/{id}"), None).await.json().await.unwrap();
    assert_eq!(got["score"], 97);
    assert_eq!(gk.get("/analyses/nope", None).await.status(), StatusCode::NOT_FOUND);
    let found: Value = gk.get("/analyses?verdict=malicious", None).await.json().await.unwrap();
    assert_eq!(found.as_array().map(Vec::len), Some(1));

    // Reputation and the leaderboard.
    for (engine, delta) in [("yara", 5), ("clamav", 9), ("yara", 7)] {
        let res = gk.post("/reputation", json!({"kind": "engine", "id": engine, "delta": delta}), None).await;
        assert_eq!(res.status(), StatusCode::OK);
    }
    let board: Value = gk.get("/leaderboard?kind=engine&period=all", None).await.json().await.unwrap();
    assert_eq!(board, json!([{"id": "yara", "score": 12, "rank": 1}, {"id": "clamav", "score": 9, "rank": 2}]));
    assert_eq!(gk.get("/leaderboard?period=decade", None).await.status(), StatusCode::BAD_REQUEST);

    // Health counts what happened.
    let health: Value = gk.get("/health", None).await.json().await.unwrap();
    assert_eq!(health["security_events"]["appended"], 2, "{health}");
    assert_eq!(health["security_events"]["overflowed"], 0, "{health}");
    assert_eq!(health["rate_limit"]["limited"], 1, "{health}");
}

#[tokio::test]
async fn gatekeeper_serves_every_store_on_memory() {
    drive(Stores::memory(Namespace::random("gk").unwrap()), ["memory"; 4]).await;
}

#[cfg(all(feature = "pg-sqlx", feature = "redis-rs"))]
#[tokio::test]
async fn gatekeeper_serves_on_postgres_and_redis() {
    use palisade::{Config, StoreUrl};
    let (Some(pg), Some(redis)) = (
        palisade_conformance::server_url("postgres", "PALISADE_TEST_POSTGRES_URL"),
        palisade_conformance::server_url("redis", "PALISADE_TEST_REDIS_URL"),
    ) else {
        return;
    };
    // `pgd_` namespaces are dropped by the test script.
    let mut config = Config { namespace: Namespace::random("pgd").unwrap(), ..Config::default() };
    let pg = StoreUrl::parse(&pg).unwrap();
    config.events.url = pg.clone();
    config.documents.url = pg.clone();
    config.reputation.url = pg;
    config.sessions.url = StoreUrl::parse(&redis).unwrap();
    drive(Stores::connect(&config).await.unwrap(), ["pg_sqlx", "redis_rs", "pg_sqlx", "pg_sqlx"]).await;
}
