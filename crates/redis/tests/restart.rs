//! A store survives a restart of its Redis server while idle: the test starts
//! its own `redis-server` on a spare loopback port (never touching the shared
//! one on 6379), kills exactly that process, starts it again, and calls the
//! *same* store instance — for both clients.
#![cfg(all(feature = "redis-rs", feature = "fred"))]

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use palisade_core::sessions::SetMode;
use palisade_core::{ErrorKind, Namespace, SessionCache};
use palisade_redis::{ClientKind, RedisBackend, RedisConfig};
use serde_json::json;

/// A `redis-server` child process, killed (by its own PID) when dropped.
struct Server {
    child: Option<Child>,
}

impl Server {
    fn start(port: u16) -> Server {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--daemonize", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (scripts/start-services.sh installs it)");
        let server = Server { child: Some(child) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server on port {port} did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

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
