//! `Stores::connect` while a primary's server is down: with
//! `fallback = "memory"` the service boots, serves from memory, and moves to
//! the server once it is started — replaying what was written meanwhile;
//! replayed writes the server refuses come back through
//! `Stores::take_rejected`. Configuration errors still fail at once. Runs
//! its own `redis-server` on a spare loopback port (never the shared 6379).
#![cfg(feature = "redis-rs")]

#[path = "../crates/redis/tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use palisade::{Config, StoreKind, Stores};
use palisade_core::events::{AppendBatch, Cursor, NewEvent};
use palisade_core::sessions::SetMode;
use palisade_core::{ErrorKind, Namespace};
use serde_json::json;

use common::Server;

const PORT: u16 = 6396;

/// Events and sessions on the Redis at `PORT`, both falling back to memory;
/// session writes are replayed; probes wait long enough that the test
/// decides when recovery runs (`Stores::try_recover`).
fn config(ns: &Namespace) -> Config {
    let mut config = Config::default();
    config
        .apply_toml(&format!(
            "connect_timeout_ms = 500\nop_timeout_ms = 2000\n\
             [degrade]\nprobe_initial_ms = 600000\nprobe_max_ms = 600000\n\
             [events]\nurl = \"redis://127.0.0.1:{PORT}\"\nfallback = \"memory\"\n\
             [sessions]\nurl = \"redis://127.0.0.1:{PORT}\"\nfallback = \"memory\"\n\
             [sessions.degrade]\nreplay_sessions = true\n"
        ))
        .expect("config");
    config.namespace = ns.clone();
    config
}

fn status(stores_health: &[palisade::StoreStatus], kind: StoreKind) -> &'static str {
    stores_health.iter().find(|s| s.store == kind).map_or("missing", |s| s.status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boots_with_the_server_down_then_moves_to_it_when_it_starts() {
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", PORT)).is_err(),
        "port {PORT} is taken (a redis-server left over from a killed run?): stop it first"
    );
    let ns = Namespace::random("boot").unwrap();
    let stores = Stores::connect(&config(&ns)).await.expect("boots although redis is down");

    // Degraded from the start, with the connect error as the reason; the
    // primary's identity and guarantees are reported all the same.
    let health = stores.health().await;
    assert_eq!(status(&health, StoreKind::Events), "degraded", "{health:?}");
    assert_eq!(status(&health, StoreKind::Sessions), "degraded", "{health:?}");
    assert_eq!(status(&health, StoreKind::Documents), "healthy", "memory store unaffected");
    assert_eq!(stores.events.backend(), "redis_rs");
    assert!(stores.events.capabilities().live_tail && !stores.events.capabilities().durable);

    // Served from memory meanwhile.
    let event = |n: u32| NewEvent::new("waf", "block").with_data(json!({ "n": n }));
    let batch = AppendBatch::new(vec![event(1), event(2)]);
    stores.events.append(batch).await.expect("append while down");
    assert!(stores.sessions.set("s1", json!({"user": "a"}), None, SetMode::Always).await.unwrap());
    assert_eq!(stores.sessions.incr("hits", 5, None).await.unwrap(), 5);
    assert_eq!(stores.sessions.get("s1").await.unwrap(), Some(json!({"user": "a"})));

    let _server = Server::start(PORT);
    // Before the replay, another writer makes `hits` a list on the server:
    // replaying `incr hits` must be refused there, and reported.
    let direct = Stores::connect(&direct_config(&ns)).await.expect("server is up");
    direct.sessions.push("hits", json!("x"), 10, None).await.expect("push");

    let deadline = Instant::now() + Duration::from_secs(20);
    while let Err(e) = stores.try_recover().await {
        assert!(Instant::now() < deadline, "did not switch to the started server: {e}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let health = stores.health().await;
    assert!(health.iter().all(|s| s.status == "healthy"), "{health:?}");

    // What was acknowledged while down is on the server now, in order.
    let on_server = direct.events.read(Cursor::Start, 10).await.unwrap();
    assert_eq!(on_server.len(), 2, "{on_server:?}");
    assert_eq!(on_server[0].data, json!({"n": 1}));
    assert_eq!(direct.sessions.get("s1").await.unwrap(), Some(json!({"user": "a"})));
    // And the stores now read from it.
    assert_eq!(stores.events.read(Cursor::Start, 10).await.unwrap().len(), 2);

    let rejected = stores.take_rejected();
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert_eq!(rejected[0].0, StoreKind::Sessions);
    assert!(rejected[0].1.what.contains("incr"), "{:?}", rejected[0].1);
    assert_eq!(rejected[0].1.error.kind(), ErrorKind::Conflict);
    assert!(stores.take_rejected().is_empty(), "taking drains the list");
}

/// The same server, no fallback.
fn direct_config(ns: &Namespace) -> Config {
    let mut config = Config::default();
    config.events.url = palisade::StoreUrl::parse(&format!("redis://127.0.0.1:{PORT}")).unwrap();
    config.sessions.url = config.events.url.clone();
    config.namespace = ns.clone();
    config
}

#[tokio::test]
async fn configuration_errors_fail_at_once_even_with_a_fallback() {
    let ns = Namespace::random("boot").unwrap();
    for (url, kind) in [
        ("cassandra://127.0.0.1:1", ErrorKind::Config),
        ("redis://127.0.0.1:1/?tls_ca=/nonexistent/ca.pem", ErrorKind::Config),
        ("redis+fred+nothing://127.0.0.1:1", ErrorKind::Config),
    ] {
        let mut config = Config::default();
        config.apply_toml(&format!("[events]\nurl = \"{url}\"\nfallback = \"memory\"\n")).unwrap();
        config.namespace = ns.clone();
        let err = Stores::connect(&config).await.err().unwrap_or_else(|| panic!("{url} booted"));
        assert_eq!(err.kind(), kind, "{url}: {err}");
    }
    // A backend setting it does not know, or a bad memory-fallback setting,
    // fails before any connection is tried (the server is unreachable).
    for table in ["[backends.redis_rs]\nscan_limt = 5\n", "[backends.memory]\nsession_capacity = 0\n"] {
        let mut config = Config::default();
        config.apply_toml(&format!("{table}[events]\nurl = \"redis://127.0.0.1:1\"\nfallback = \"memory\"\n")).unwrap();
        let err = Stores::connect(&config).await.err().unwrap_or_else(|| panic!("{table} booted"));
        assert_eq!(err.kind(), ErrorKind::Config, "{table}: {err}");
    }
    // Without a fallback an unreachable server fails the boot, as before.
    let mut config = Config::default();
    config.apply_toml("connect_timeout_ms = 300\n[events]\nurl = \"redis://127.0.0.1:1\"\n").unwrap();
    let err = Stores::connect(&config).await.err().expect("no fallback: fails");
    assert!(err.is_backend_failure(), "{err}");
    // `palisade health` reports an unreachable server as down even with a
    // fallback: an outage must not exit 0.
    config.events.fallback = palisade::Fallback::Memory;
    let report = palisade::probe(&config).await;
    assert_eq!(status(&report, StoreKind::Events), "down", "{report:?}");
}
