//! In degraded mode (`Degradable` over a memory fallback), no acknowledged
//! event is lost across a restart of the Mongo server under concurrent
//! writers. The test starts its own Mongo test server (the one
//! `scripts/mongo-server.sh` installs, `PALISADE_MONGO_SERVER_BIN` to use
//! another) on a spare loopback port with its data on disk, stops exactly
//! that process and starts it again on the same data.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use palisade_conformance::{required, restart};
use palisade_core::{EventStore, Namespace};
use palisade_memory::{MemoryConfig, MemoryStores};
use palisade_mongo::{MongoBackend, MongoConfig};

const PORT: u16 = 27031;

fn server_bin() -> Option<PathBuf> {
    let bin = std::env::var_os("PALISADE_MONGO_SERVER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/mongo-venv/bin/secantusd-py"));
    if bin.exists() {
        return Some(bin);
    }
    assert!(!required("mongo"), "PALISADE_REQUIRE names mongo but the test server is not installed at {bin:?}");
    eprintln!("notice: no Mongo test server at {bin:?} (run scripts/mongo-server.sh start); skipping");
    None
}

/// A test server process of this test's own, stopped (by its PID) when dropped.
struct Server(Child);

impl Server {
    fn start(bin: &PathBuf, data: &PathBuf) -> Self {
        let child = Command::new(bin)
            .args(["--host", "127.0.0.1", "--port", &PORT.to_string(), "--log-level", "WARNING", "--storage-path"])
            .arg(data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the Mongo test server starts");
        Server(child)
    }

    /// Stops the server (SIGTERM, as a restart does) and waits for it to exit.
    fn stop(&mut self) {
        let _ = Command::new("kill").arg(self.0.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            self.stop();
        }
    }
}

fn url() -> String {
    format!("mongodb://127.0.0.1:{PORT}/?directConnection=true")
}

async fn connect(namespace: &Namespace) -> MongoBackend {
    let config = MongoConfig::new(url(), namespace.clone())
        .with_connect_timeout(Duration::from_secs(1))
        .with_op_timeout(Duration::from_secs(2));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match MongoBackend::connect(&config).await {
            Ok(b) => return b,
            Err(e) if e.is_temporary() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("the test server did not come up: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn degraded_store_loses_no_acknowledged_event_across_a_restart() {
    let Some(bin) = server_bin() else { return };
    let data = std::env::temp_dir().join(format!("palisade-mongo-restart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data).expect("a data directory");
    let mut server = Server::start(&bin, &data);
    let namespace = Namespace::random("degraded").unwrap();
    let backend = connect(&namespace).await;
    let fallback = MemoryStores::new(namespace, &MemoryConfig::default()).events;
    let mut restarted = None;
    restart::no_acknowledged_event_is_lost_across_a_restart(
        Arc::new(backend.events()) as Arc<dyn EventStore>,
        fallback,
        || server.stop(),
        || restarted = Some(Server::start(&bin, &data)),
    )
    .await;
    drop(restarted);
    let _ = std::fs::remove_dir_all(&data);
}
