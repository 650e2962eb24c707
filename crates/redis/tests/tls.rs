//! `rediss://` for both clients against a TLS-only `redis-server` of the
//! test's own (certificate from a throwaway CA): the stores work over TLS
//! with `tls_ca`, and a connection that cannot verify the server, or speaks
//! plain text to it, fails at connect.
#![cfg(all(feature = "redis-rs", feature = "fred"))]

mod common;

use std::time::Duration;

use palisade_core::events::{AppendBatch, Cursor, NewEvent};
use palisade_core::reputation::{Period, ReputationEvent, Subject, SubjectKind};
use palisade_core::sessions::SetMode;
use palisade_core::{EventStore, Namespace, ReputationRepo, SessionCache};
use palisade_redis::{RedisBackend, RedisConfig};
use serde_json::json;

use common::{Server, TempDir};

fn config(url: String) -> RedisConfig {
    let mut config = RedisConfig::new(url, Namespace::random("tls").unwrap());
    config.connect_timeout = Duration::from_secs(2);
    config
}

async fn stores_work_over_tls(scheme: &str, port: u16) {
    let dir = TempDir::new(&format!("redis-tls-{port}"));
    let (_server, ca): (Server, _) = Server::start_tls(port, &dir.0);
    let ca = ca.to_str().expect("UTF-8 path").to_owned();

    let backend = RedisBackend::connect(&config(format!("{scheme}://127.0.0.1:{port}/?tls_ca={ca}")))
        .await
        .expect("connect over TLS trusting the test CA");
    let sessions = backend.sessions();
    assert!(sessions.set("k", json!({"v": 1}), None, SetMode::Always).await.unwrap());
    assert_eq!(sessions.get("k").await.unwrap(), Some(json!({"v": 1})));
    assert_eq!(sessions.incr("n", 5, None).await.unwrap(), 5, "scripts run over TLS");
    let events = backend.events();
    events.append(AppendBatch::new(vec![NewEvent::new("tls", "tick")])).await.unwrap();
    assert_eq!(events.read(Cursor::Start, 10).await.unwrap().len(), 1);
    let reputation = backend.reputation();
    reputation.record(ReputationEvent::new(Subject::user("u"), 3, "tls")).await.unwrap();
    let board = reputation.leaderboard(SubjectKind::User, Period::AllTime, 0, 10).await.unwrap();
    assert_eq!(board.first().map(|r| r.score), Some(3));
    backend.drop_namespace().await.unwrap();

    let untrusted = RedisBackend::connect(&config(format!("{scheme}://127.0.0.1:{port}"))).await;
    assert!(untrusted.is_err(), "the system roots do not know the test CA: the server must not be trusted");
    let plain = scheme.replacen("rediss", "redis", 1);
    let plain = RedisBackend::connect(&config(format!("{plain}://127.0.0.1:{port}"))).await;
    assert!(plain.is_err(), "plain text to a TLS port fails at connect");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_rs_stores_work_over_tls() {
    stores_work_over_tls("rediss", 6394).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fred_stores_work_over_tls() {
    stores_work_over_tls("rediss+fred", 6395).await;
}
