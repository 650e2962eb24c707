//! A store survives a restart of its Redis server while idle, and in degraded
//! mode (`Degradable` over a memory fallback) no acknowledged event is lost
//! across a restart under concurrent writers. Each test starts its own
//! `redis-server` on a spare loopback port (never touching the shared one on
//! 6379), kills exactly that process, starts it again — for both clients.
#![cfg(all(feature = "redis-rs", feature = "fred"))]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use palisade_conformance::restart;
use palisade_core::sessions::SetMode;
use palisade_core::{ErrorKind, Namespace, SessionCache};
use palisade_memory::{MemoryConfig, MemoryStores};
use palisade_redis::{ClientKind, RedisBackend, RedisConfig};
use serde_json::json;

use common::{Server, TempDir};

async fn survives_restart_while_idle(kind: ClientKind, port: u16) {
    let mut server = Server::start(port);
    let scheme = match kind {
        ClientKind::RedisRs => "redis",
        ClientKind::Fred => "redis+fred",
    };
    let mut config = RedisConfig::new(format!("{scheme}://127.0.0.1:{port}"), Namespace::random("restart").unwrap());
    config.response_timeout = Duration::from_secs(2);
    config.connect_timeout = Duration::from_secs(1);
    let backend = RedisBackend::connect(&config).await.expect("connect");
    assert_eq!(backend.backend(), kind.backend());
    let cache = backend.sessions();
    assert!(cache.set("k", json!("before"), None, SetMode::Always).await.expect("set before restart"));

    server.kill();
    // While the server is down, calls fail fast with a temporary error.
    let down = cache.get("k").await;
    match down {
        Err(e) => {
            assert!(matches!(e.kind(), ErrorKind::Unavailable | ErrorKind::Timeout), "{e}");
            assert!(e.is_temporary(), "{e}");
        }
        Ok(v) => panic!("a call to a stopped server answered {v:?}"),
    }

    let _server = Server::start(port);
    // The same store instance, no re-creation: it reconnects by itself. Calls
    // made before the reconnect completes may fail, but only temporarily.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match cache.set("k", json!("after"), None, SetMode::Always).await {
            Ok(written) => {
                assert!(written);
                break;
            }
            Err(e) => {
                assert!(e.is_temporary(), "a non-temporary error after the restart: {e}");
                assert!(Instant::now() < deadline, "the store did not reconnect within 15 s: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    assert_eq!(cache.get("k").await.expect("get after restart"), Some(json!("after")));
    assert_eq!(cache.incr("n", 2, None).await.expect("script after restart"), 2, "scripts are re-loaded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_rs_store_survives_server_restart_while_idle() {
    survives_restart_while_idle(ClientKind::RedisRs, 6390).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fred_store_survives_server_restart_while_idle() {
    survives_restart_while_idle(ClientKind::Fred, 6391).await;
}

/// `Degradable` over a Redis server that is killed and restarted (keeping
/// what it acknowledged on disk) loses no acknowledged event.
async fn no_acknowledged_event_is_lost_across_a_restart(kind: ClientKind, port: u16) {
    let dir = TempDir::new(&format!("redis-{port}"));
    let mut server = Server::start_durable(port, &dir.0);
    let scheme = match kind {
        ClientKind::RedisRs => "redis",
        ClientKind::Fred => "redis+fred",
    };
    let namespace = Namespace::random("degraded").unwrap();
    let mut config = RedisConfig::new(format!("{scheme}://127.0.0.1:{port}"), namespace.clone());
    config.response_timeout = Duration::from_secs(2);
    config.connect_timeout = Duration::from_secs(1);
    let backend = RedisBackend::connect(&config).await.expect("connect");
    let fallback = MemoryStores::new(namespace, &MemoryConfig::default()).events;
    let mut restarted = None;
    restart::no_acknowledged_event_is_lost_across_a_restart(
        Arc::new(backend.events()),
        fallback,
        || server.kill(),
        || restarted = Some(Server::start_durable(port, &dir.0)),
    )
    .await;
    drop(restarted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_rs_degraded_store_loses_no_acknowledged_event_across_a_restart() {
    no_acknowledged_event_is_lost_across_a_restart(ClientKind::RedisRs, 6392).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fred_degraded_store_loses_no_acknowledged_event_across_a_restart() {
    no_acknowledged_event_is_lost_across_a_restart(ClientKind::Fred, 6393).await;
}
