//! Conformance cases for `palisade-tower` over a backend's [`SessionCache`]:
//! a real axum app with tower-sessions' `SessionManagerLayer` over
//! [`PalisadeSessionStore`], and [`RateLimitLayer`], driven through
//! `tower::ServiceExt::oneshot` (no sockets).
//!
//! Every case gets the cache of a fresh namespace (trait id `tower`).

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use ::tower::ServiceExt;
use axum::body::{to_bytes, Body};
use axum::extract::{ConnectInfo, Query};
use axum::routing::{get, post};
use axum::Router;
use chrono::TimeDelta;
use futures::future::join_all;
use http::{header, Request, Response, StatusCode};
use palisade_core::sessions::SetMode;
use palisade_core::SessionCache;
use palisade_tower::{OnStoreError, PalisadeSessionStore, RateLimitLayer, Rule, RATELIMIT, RATELIMIT_POLICY};
use serde_json::json;
use tower_sessions::session::{Id, Record};
use tower_sessions::{CachingSessionStore, ExpiredDeletion, Session, SessionManagerLayer, SessionStore};

use crate::flaky::{Flaky, FlakyMode};

// ---------------------------------------------------------------- helpers

/// The value a handler stores, under session key `v`.
#[derive(serde::Deserialize)]
struct Put {
    v: Option<String>,
    /// Fill `v` with this many bytes instead.
    bytes: Option<usize>,
}

async fn put(session: Session, Query(q): Query<Put>) -> Result<&'static str, StatusCode> {
    let v = match (q.v, q.bytes) {
        (_, Some(n)) => "x".repeat(n),
        (Some(v), None) => v,
        (None, None) => String::new(),
    };
    session.insert("v", v).await.map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    Ok("stored")
}

async fn read(session: Session) -> Result<String, StatusCode> {
    let v: Option<String> = session.get("v").await.map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    Ok(v.unwrap_or_default())
}

async fn cycle(session: Session) -> Result<&'static str, StatusCode> {
    session.cycle_id().await.map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    Ok("cycled")
}

async fn logout(session: Session) -> Result<&'static str, StatusCode> {
    session.flush().await.map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    Ok("bye")
}

fn session_app<S: SessionStore + Clone>(store: S, expiry: tower_sessions::Expiry) -> Router {
    Router::new()
        .route("/put", post(put))
        .route("/get", get(read))
        .route("/cycle", post(cycle))
        .route("/logout", post(logout))
        .layer(SessionManagerLayer::new(store).with_secure(false).with_expiry(expiry))
}

fn two_weeks() -> tower_sessions::Expiry {
    tower_sessions::Expiry::OnInactivity(time::Duration::weeks(2))
}

fn request(method: &str, uri: &str, cookie: Option<&str>) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(uri);
    if let Some(id) = cookie {
        b = b.header(header::COOKIE, format!("id={id}"));
    }
    b.body(Body::empty()).unwrap_or_else(|e| panic!("request: {e}"))
}

async fn send(app: &Router, req: Request<Body>) -> Response<Body> {
    match app.clone().oneshot(req).await {
        Ok(res) => res,
        Err(e) => match e {},
    }
}

async fn text(res: Response<Body>) -> String {
    let bytes = to_bytes(res.into_body(), usize::MAX).await.unwrap_or_else(|e| panic!("body: {e}"));
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The session id a response sets (`Set-Cookie: id=…`), if any.
fn set_cookie(res: &Response<Body>) -> Option<String> {
    res.headers().get_all(header::SET_COOKIE).iter().find_map(|v| {
        let v = v.to_str().ok()?;
        let pair = v.split(';').next()?.trim();
        pair.strip_prefix("id=").map(str::to_owned)
    })
}

/// `PUT v` in a new session; the session id.
async fn new_session(app: &Router, v: &str) -> String {
    let res = send(app, request("POST", &format!("/put?v={v}"), None)).await;
    assert_eq!(res.status(), StatusCode::OK, "creating a session");
    set_cookie(&res).unwrap_or_else(|| panic!("a new session sets its cookie"))
}

async fn value(app: &Router, id: &str) -> (StatusCode, String) {
    let res = send(app, request("GET", "/get", Some(id))).await;
    let status = res.status();
    (status, text(res).await)
}

fn id(s: &str) -> Id {
    Id::from_str(s).unwrap_or_else(|e| panic!("session id {s:?}: {e}"))
}

async fn load(store: &PalisadeSessionStore, s: &str) -> Option<Record> {
    store.load(&id(s)).await.unwrap_or_else(|e| panic!("load: {e}"))
}

fn record(expiry_date: time::OffsetDateTime) -> Record {
    Record { id: Id::default(), data: Default::default(), expiry_date }
}

fn in_secs(n: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc() + time::Duration::seconds(n)
}

/// The full life of a session through `app`, whose store is `store`.
async fn session_life(app: &Router, store: &PalisadeSessionStore) {
    let sid = new_session(app, "first").await;
    assert_eq!(value(app, &sid).await, (StatusCode::OK, "first".to_owned()), "read back");
    let stored = load(store, &sid).await.unwrap_or_else(|| panic!("the session is stored"));
    assert_eq!(stored.data.get("v"), Some(&json!("first")));

    let res = send(app, request("POST", "/put?v=second", Some(&sid))).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(value(app, &sid).await.1, "second", "modified");

    let res = send(app, request("POST", "/cycle", Some(&sid))).await;
    assert_eq!(res.status(), StatusCode::OK);
    let cycled = set_cookie(&res).unwrap_or_else(|| panic!("cycling sets the new id"));
    assert_ne!(cycled, sid, "cycle_id draws a new id");
    assert!(load(store, &sid).await.is_none(), "the old id is gone");
    assert_eq!(value(app, &sid).await.1, "", "the old id reads as a fresh session");
    assert_eq!(value(app, &cycled).await.1, "second", "data moves to the new id");

    let res = send(app, request("POST", "/logout", Some(&cycled))).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(load(store, &cycled).await.is_none(), "flush deletes the session");
    assert_eq!(value(app, &cycled).await.1, "");
}

// ---------------------------------------------------------------- sessions

/// A session is created, read back, modified, moved to a new id, and deleted.
pub async fn session_is_created_read_modified_cycled_and_deleted(cache: &Arc<dyn SessionCache>) {
    let store = PalisadeSessionStore::new(cache.clone());
    let app = session_app(store.clone(), two_weeks());
    session_life(&app, &store).await;
}

/// The store keeps the record under `prefix + id` with the record's expiry.
pub async fn session_key_expires_at_the_record_expiry(cache: &Arc<dyn SessionCache>) {
    let store = PalisadeSessionStore::new(cache.clone()).with_prefix("s:");
    let mut r = record(in_secs(3600));
    store.create(&mut r).await.unwrap_or_else(|e| panic!("create: {e}"));
    let key = format!("s:{}", r.id);
    match cache.ttl(&key).await.unwrap_or_else(|e| panic!("ttl: {e}")) {
        palisade_core::sessions::KeyTtl::ExpiresIn(left) => {
            assert!(left > TimeDelta::seconds(3590) && left <= TimeDelta::seconds(3600), "ttl {left}")
        }
        other => panic!("the key must expire with the record, got {other:?}"),
    }
}

/// A session with a short expiry reads as new once it has passed, and its
/// record and key are gone.
pub async fn short_expiry_session_expires(cache: &Arc<dyn SessionCache>) {
    let store = PalisadeSessionStore::new(cache.clone());
    let app = session_app(store.clone(), tower_sessions::Expiry::OnInactivity(time::Duration::seconds(3)));
    let sid = new_session(&app, "brief").await;
    assert_eq!(value(&app, &sid).await.1, "brief");
    // Each read extends an inactivity expiry: 3 s after the last one, plus margin.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert!(load(&store, &sid).await.is_none(), "load answers None once expired");
    assert_eq!(value(&app, &sid).await, (StatusCode::OK, String::new()), "an expired session reads as new");
    let key = format!("{}{sid}", palisade_tower::DEFAULT_PREFIX);
    assert_eq!(cache.get(&key).await.unwrap_or_else(|e| panic!("get: {e}")), None, "the key expired too");
}

/// `save` of a record whose expiry has passed deletes it instead of storing it.
pub async fn saving_an_expired_record_deletes_it(cache: &Arc<dyn SessionCache>) {
    let store = PalisadeSessionStore::new(cache.clone());
    let mut r = record(in_secs(3600));
    store.create(&mut r).await.unwrap_or_else(|e| panic!("create: {e}"));
    r.expiry_date = in_secs(-1);
    store.save(&r).await.unwrap_or_else(|e| panic!("save: {e}"));
    let key = format!("{}{}", palisade_tower::DEFAULT_PREFIX, r.id);
    assert_eq!(cache.get(&key).await.unwrap_or_else(|e| panic!("get: {e}")), None, "deleted, not stored");
    let mut never = record(in_secs(-5));
    store.save(&never).await.unwrap_or_else(|e| panic!("save: {e}"));
    store.create(&mut never).await.unwrap_or_else(|e| panic!("create: {e}"));
    let key = format!("{}{}", palisade_tower::DEFAULT_PREFIX, never.id);
    assert_eq!(cache.get(&key).await.unwrap_or_else(|e| panic!("get: {e}")), None, "an expired record is never stored");
}

/// `create` on an id that is taken draws a new id and leaves the other session alone.
pub async fn create_on_a_taken_id_draws_a_new_id(cache: &Arc<dyn SessionCache>) {
    let store = PalisadeSessionStore::new(cache.clone());
    let mut first = record(in_secs(3600));
    first.data.insert("owner".into(), json!("first"));
    store.create(&mut first).await.unwrap_or_else(|e| panic!("create: {e}"));
    let mut second = record(in_secs(3600));
    second.id = first.id;
    second.data.insert("owner".into(), json!("second"));
    store.create(&mut second).await.unwrap_or_else(|e| panic!("create: {e}"));
    assert_ne!(second.id, first.id, "a collision draws a new id");
    let kept = store.load(&first.id).await.unwrap_or_else(|e| panic!("load: {e}"));
    assert_eq!(kept.and_then(|r| r.data.get("owner").cloned()), Some(json!("first")), "the first session is untouched");
    let moved = store.load(&second.id).await.unwrap_or_else(|e| panic!("load: {e}"));
    assert_eq!(moved.and_then(|r| r.data.get("owner").cloned()), Some(json!("second")));
}

/// Concurrent requests without a session get distinct sessions, each with its own data.
pub async fn concurrent_creates_never_share_an_id(cache: &Arc<dyn SessionCache>) {
    let store = PalisadeSessionStore::new(cache.clone());
    let app = session_app(store.clone(), two_weeks());
    let ids = join_all((0..32).map(|i| {
        let app = app.clone();
        async move { (i, new_session(&app, &format!("n{i}")).await) }
    }))
    .await;
    let distinct: std::collections::HashSet<_> = ids.iter().map(|(_, id)| id.clone()).collect();
    assert_eq!(distinct.len(), ids.len(), "every session has its own id");
    for (i, sid) in &ids {
        assert_eq!(value(&app, sid).await.1, format!("n{i}"));
    }
}

/// Concurrent `create`s of one id: exactly one keeps it, every other draws
/// its own new id, and each session holds its own data.
pub async fn concurrent_creates_of_one_id_keep_it_once(cache: &Arc<dyn SessionCache>) {
    let store = PalisadeSessionStore::new(cache.clone());
    let taken = Id::default();
    let created = join_all((0..16).map(|i| {
        let store = store.clone();
        async move {
            let mut r = record(in_secs(3600));
            r.id = taken;
            r.data.insert("n".into(), json!(i));
            store.create(&mut r).await.unwrap_or_else(|e| panic!("create: {e}"));
            (i, r.id)
        }
    }))
    .await;
    assert_eq!(created.iter().filter(|(_, id)| *id == taken).count(), 1, "one create keeps the id");
    let distinct: std::collections::HashSet<_> = created.iter().map(|(_, id)| *id).collect();
    assert_eq!(distinct.len(), created.len(), "the others draw distinct ids");
    for (i, id) in &created {
        let r = store.load(id).await.unwrap_or_else(|e| panic!("load: {e}"));
        assert_eq!(r.and_then(|r| r.data.get("n").cloned()), Some(json!(i)), "each keeps its own data");
    }
}

/// A record expiring beyond what backends keep (year 9999, as
/// `OnInactivity(Duration::MAX)` gives) is stored with its exact expiry.
pub async fn far_future_expiry_is_stored(cache: &Arc<dyn SessionCache>) {
    let store = PalisadeSessionStore::new(cache.clone());
    let far = time::OffsetDateTime::now_utc().saturating_add(time::Duration::MAX);
    let mut r = record(far);
    store.create(&mut r).await.unwrap_or_else(|e| panic!("create: {e}"));
    store.save(&r).await.unwrap_or_else(|e| panic!("save: {e}"));
    let back = store.load(&r.id).await.unwrap_or_else(|e| panic!("load: {e}"));
    assert_eq!(back.map(|b| b.expiry_date), Some(far), "the record keeps its exact expiry");
}

/// A session of several MiB round-trips; one beyond the cache's input
/// policy is refused (the request fails, nothing is stored).
pub async fn large_sessions_round_trip(cache: &Arc<dyn SessionCache>) {
    let store = PalisadeSessionStore::new(cache.clone());
    let app = session_app(store.clone(), two_weeks());
    let big = 3 << 20;
    let res = send(&app, request("POST", &format!("/put?bytes={big}"), None)).await;
    assert_eq!(res.status(), StatusCode::OK);
    let sid = set_cookie(&res).unwrap_or_else(|| panic!("a new session sets its cookie"));
    let (status, v) = value(&app, &sid).await;
    assert_eq!((status, v.len()), (StatusCode::OK, big), "3 MiB round-trips");
    assert!(v.bytes().all(|b| b == b'x'));

    let too_big = palisade_core::policy::DEFAULT_MAX_SESSION_VALUE_BYTES + 1;
    let res = send(&app, request("POST", &format!("/put?bytes={too_big}"), None)).await;
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR, "a session the cache refuses fails the request");
    let refused = set_cookie(&res);
    if let Some(sid) = refused {
        assert!(load(&store, &sid).await.is_none(), "nothing is stored");
    }
    let mut r = record(in_secs(60));
    r.data.insert("v".into(), json!("x".repeat(too_big)));
    match store.create(&mut r).await {
        Err(tower_sessions::session_store::Error::Encode(_)) => {}
        other => panic!("an oversized record is an Encode error, got {other:?}"),
    }
}

/// A stored value that is not a session record fails its request (500) —
/// never a silent new session over it — and a hostile cookie is a new session.
pub async fn hostile_stored_values_and_cookies_are_refused(cache: &Arc<dyn SessionCache>) {
    let store = PalisadeSessionStore::new(cache.clone());
    let app = session_app(store.clone(), two_weeks());
    let sid = Id::default().to_string();
    let key = format!("{}{sid}", palisade_tower::DEFAULT_PREFIX);
    let planted = json!({"data": "<script>", "exp": [1, 2, 3]});
    cache.set(&key, planted.clone(), None, SetMode::Always).await.unwrap_or_else(|e| panic!("set: {e}"));
    match store.load(&id(&sid)).await {
        Err(tower_sessions::session_store::Error::Decode(_)) => {}
        other => panic!("a stored value that is not a record is Decode, got {other:?}"),
    }
    assert_eq!(value(&app, &sid).await.0, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(cache.get(&key).await.unwrap_or_else(|e| panic!("get: {e}")), Some(planted), "left as it was");
    for cookie in ["../../etc", "%00", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "'; DROP TABLE sessions; --"] {
        assert_eq!(value(&app, cookie).await, (StatusCode::OK, String::new()), "cookie {cookie:?} is a new session");
    }
}

/// `CachingSessionStore` with a Palisade memory cache in front behaves the same.
pub async fn caching_store_with_a_memory_cache_behaves_the_same(cache: &Arc<dyn SessionCache>) {
    let store = PalisadeSessionStore::new(cache.clone());
    let ns = palisade_core::Namespace::random("front").unwrap_or_else(|e| panic!("namespace: {e}"));
    let front: Arc<dyn SessionCache> =
        Arc::new(palisade_memory::MemorySessionCache::new(ns, &palisade_memory::MemoryConfig::default()));
    let front = PalisadeSessionStore::new(front);
    let app = session_app(CachingSessionStore::new(front.clone(), store.clone()), two_weeks());
    session_life(&app, &store).await;
    let sid = new_session(&app, "both").await;
    assert!(load(&front, &sid).await.is_some() && load(&store, &sid).await.is_some(), "written to both");
    // A cold front loads from the backend.
    front.delete(&id(&sid)).await.unwrap_or_else(|e| panic!("delete: {e}"));
    assert_eq!(value(&app, &sid).await.1, "both");
    assert!(load(&front, &sid).await.is_some(), "and fills the front again");
}

/// `ExpiredDeletion` reclaims expired records and keeps live ones.
pub async fn expired_deletion_keeps_live_sessions(cache: &Arc<dyn SessionCache>) {
    let store = PalisadeSessionStore::new(cache.clone());
    let mut live = record(in_secs(3600));
    store.create(&mut live).await.unwrap_or_else(|e| panic!("create: {e}"));
    let mut brief = record(in_secs(2));
    store.create(&mut brief).await.unwrap_or_else(|e| panic!("create: {e}"));
    let key = format!("{}{}", palisade_tower::DEFAULT_PREFIX, brief.id);
    assert!(cache.get(&key).await.unwrap_or_else(|e| panic!("get: {e}")).is_some(), "stored while live");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    store.delete_expired().await.unwrap_or_else(|e| panic!("delete_expired: {e}"));
    assert!(store.load(&live.id).await.unwrap_or_else(|e| panic!("load: {e}")).is_some(), "live sessions stay");
    assert!(store.load(&brief.id).await.unwrap_or_else(|e| panic!("load: {e}")).is_none());
    if !cache.capabilities().native_ttl {
        // Nothing expired is left for a second sweep.
        assert_eq!(cache.sweep_expired().await.ok(), Some(0), "the sweep deleted the expired record");
    }
}

// ---------------------------------------------------------------- rate limits

fn from(ip: [u8; 4]) -> ConnectInfo<SocketAddr> {
    ConnectInfo(SocketAddr::from((ip, 40_000)))
}

fn limited_app(layer: RateLimitLayer) -> Router {
    Router::new()
        .route("/login", post(|| async { "welcome" }))
        .route("/api/items", get(|| async { "items" }))
        .route("/open", get(|| async { "open" }))
        .layer(layer)
}

fn rules(cache: &Arc<dyn SessionCache>, login: u32, window: i64) -> RateLimitLayer {
    let rule = |name, limit, w| Rule::new(name, limit, TimeDelta::seconds(w)).unwrap_or_else(|e| panic!("rule: {e}"));
    RateLimitLayer::builder(cache.clone())
        .rule(rule("login", login, window).path_prefix("/login"))
        .rule(rule("api", 100, 60).path_prefix("/api"))
        .build()
}

async fn hit(app: &Router, method: &str, uri: &str, peer: [u8; 4]) -> Response<Body> {
    let mut req = request(method, uri, None);
    req.extensions_mut().insert(from(peer));
    send(app, req).await
}

fn header_str<'a>(res: &'a Response<Body>, name: &http::HeaderName) -> &'a str {
    res.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// Two app instances over one cache share one limit: exactly `limit`
/// requests pass, in any mix of instances; then 429 with `Retry-After` and
/// the draft `RateLimit`/`RateLimit-Policy` headers.
pub async fn rate_limit_is_shared_by_every_instance(cache: &Arc<dyn SessionCache>) {
    let a = limited_app(rules(cache, 3, 60));
    let b = limited_app(rules(cache, 3, 60));
    let mut allowed = 0;
    for i in 0..8 {
        let app = if i % 2 == 0 { &a } else { &b };
        let res = hit(app, "POST", "/login", [198, 51, 100, 1]).await;
        assert_eq!(header_str(&res, &RATELIMIT_POLICY), "\"login\";q=3;w=60");
        let live = header_str(&res, &RATELIMIT).to_owned();
        if res.status() == StatusCode::OK {
            allowed += 1;
            assert!(live.starts_with(&format!("\"login\";r={};t=", 3 - allowed)), "RateLimit {live}");
        } else {
            assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
            let retry: i64 = header_str(&res, &header::RETRY_AFTER).parse().unwrap_or(-1);
            assert!((1..=60).contains(&retry), "Retry-After {retry}");
            assert!(live.starts_with("\"login\";r=0;t="), "RateLimit {live}");
            assert!(res.extensions().get::<palisade_tower::Blocked>().is_some(), "marked for the events layer");
        }
    }
    assert_eq!(allowed, 3, "the limit is global across instances");
}

/// Limits are per client and per rule; requests no rule matches pass untouched.
pub async fn rate_limit_counts_per_client_and_rule(cache: &Arc<dyn SessionCache>) {
    let app = limited_app(rules(cache, 1, 60));
    assert_eq!(hit(&app, "POST", "/login", [203, 0, 113, 1]).await.status(), StatusCode::OK);
    assert_eq!(hit(&app, "POST", "/login", [203, 0, 113, 1]).await.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(hit(&app, "POST", "/login", [203, 0, 113, 2]).await.status(), StatusCode::OK, "another client");
    let api = hit(&app, "GET", "/api/items", [203, 0, 113, 1]).await;
    assert_eq!(api.status(), StatusCode::OK, "another rule");
    assert_eq!(header_str(&api, &RATELIMIT_POLICY), "\"api\";q=100;w=60");
    let open = hit(&app, "GET", "/open", [203, 0, 113, 1]).await;
    assert_eq!(open.status(), StatusCode::OK);
    assert!(open.headers().get(RATELIMIT).is_none(), "no rule, no headers");
}

/// A window ends and the client may come back.
pub async fn rate_limit_window_ends(cache: &Arc<dyn SessionCache>) {
    let app = limited_app(rules(cache, 1, 3));
    assert_eq!(hit(&app, "POST", "/login", [192, 0, 2, 1]).await.status(), StatusCode::OK);
    assert_eq!(hit(&app, "POST", "/login", [192, 0, 2, 1]).await.status(), StatusCode::TOO_MANY_REQUESTS);
    tokio::time::sleep(Duration::from_millis(3300)).await;
    assert_eq!(hit(&app, "POST", "/login", [192, 0, 2, 1]).await.status(), StatusCode::OK, "a new window");
}

/// With the store down, fail-open lets requests through and fail-closed
/// answers 503 with `Retry-After`; both count the failure, neither panics.
pub async fn rate_limit_store_failure_follows_the_policy(cache: &Arc<dyn SessionCache>) {
    let flaky = Arc::new(Flaky::new(cache.clone()));
    flaky.set_mode(FlakyMode::Down);
    let down: Arc<dyn SessionCache> = flaky;
    for (policy, status) in
        [(OnStoreError::Open, StatusCode::OK), (OnStoreError::Closed, StatusCode::SERVICE_UNAVAILABLE)]
    {
        let layer = RateLimitLayer::builder(down.clone())
            .rule(Rule::new("login", 1, TimeDelta::seconds(60)).unwrap_or_else(|e| panic!("rule: {e}")))
            .on_store_error(policy)
            .build();
        let app = limited_app(layer.clone());
        for _ in 0..3 {
            let res = hit(&app, "POST", "/login", [192, 0, 2, 9]).await;
            assert_eq!(res.status(), status, "{policy:?}");
            if policy == OnStoreError::Closed {
                assert_eq!(header_str(&res, &header::RETRY_AFTER), "1");
            }
        }
        assert_eq!(layer.stats().store_errors, 3);
    }
}
