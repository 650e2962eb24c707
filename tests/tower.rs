//! Two instances of one service — each with its own `Stores::connect`, so
//! its own connections — share one rate limit through the server: Redis
//! (redis-rs, fred) and Postgres (sqlx, diesel). Servers come from
//! `PALISADE_TEST_REDIS_URL` / `PALISADE_TEST_POSTGRES_URL` (required in CI).
#![cfg(feature = "tower")]

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use chrono::TimeDelta;
use futures::future::join_all;
use palisade::tower::{RateLimitLayer, Rule};
use palisade::{Config, Namespace, StoreUrl, Stores};
use tower::ServiceExt;

/// One instance of the service: its own connection to the sessions server.
async fn instance(config: &Config) -> Router {
    let stores = Stores::connect(config).await.unwrap();
    let limits = RateLimitLayer::builder(stores.sessions.clone())
        .rule(Rule::new("login", 7, TimeDelta::seconds(60)).unwrap().path_prefix("/login"))
        .build();
    Router::new().route("/login", post(|| async { "welcome" })).layer(limits)
}

async fn limit_is_global(server: &str, var: &str, scheme: Option<&str>) {
    let Some(url) = palisade_conformance::server_url(server, var) else { return };
    let url = match scheme {
        Some(s) => url.replacen(url.split("://").next().unwrap_or(""), s, 1),
        None => url,
    };
    // `pgd_` namespaces are dropped by the test script; Redis keys expire with the window.
    let mut config = Config { namespace: Namespace::random("pgd").unwrap(), ..Config::default() };
    config.sessions.url = StoreUrl::parse(&url).unwrap();
    let (a, b) = (instance(&config).await, instance(&config).await);
    let statuses = join_all((0..20).map(|i| {
        let app = if i % 2 == 0 { a.clone() } else { b.clone() };
        async move {
            let mut req = axum::http::Request::post("/login").body(Body::empty()).unwrap();
            req.extensions_mut().insert(ConnectInfo(SocketAddr::from(([198, 51, 100, 77], 1234))));
            app.oneshot(req).await.unwrap().status()
        }
    }))
    .await;
    let allowed = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    let limited = statuses.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count();
    assert_eq!((allowed, limited), (7, 13), "{server} {scheme:?}: one limit across both instances");
}

#[cfg(feature = "redis-rs")]
#[tokio::test]
async fn two_instances_share_one_limit_through_redis_rs() {
    limit_is_global("redis", "PALISADE_TEST_REDIS_URL", None).await;
}

#[cfg(feature = "fred")]
#[tokio::test]
async fn two_instances_share_one_limit_through_fred() {
    limit_is_global("redis", "PALISADE_TEST_REDIS_URL", Some("redis+fred")).await;
}

#[cfg(feature = "pg-sqlx")]
#[tokio::test]
async fn two_instances_share_one_limit_through_postgres_sqlx() {
    limit_is_global("postgres", "PALISADE_TEST_POSTGRES_URL", None).await;
}

#[cfg(feature = "pg-diesel")]
#[tokio::test]
async fn two_instances_share_one_limit_through_postgres_diesel() {
    limit_is_global("postgres", "PALISADE_TEST_POSTGRES_URL", Some("postgres+diesel")).await;
}
