//! Across a restart of the Mongo server: in degraded mode (`Degradable`
//! over a memory fallback) no acknowledged event is lost under concurrent
//! writers, and a live tail carries on by itself. Each test starts its own Mongo test server (the one
//! `scripts/mongo-server.sh` installs, `PALISADE_MONGO_SERVER_BIN` to use
//! another) on a spare loopback port with its data on disk, stops exactly
//! that process and starts it again on the same data.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use palisade_conformance::{required, restart};
use palisade_core::events::{Cursor, EventFilter, EventSubscription, NewEvent, SubscriptionItem};
use palisade_core::{EventStore, EventStoreExt, Namespace};
use palisade_memory::{MemoryConfig, MemoryStores};
use palisade_mongo::{MongoBackend, MongoConfig};

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

/// A data directory of this test's own, removed when dropped.
struct DataDir(PathBuf);

impl DataDir {
    fn new(port: u16) -> Self {
        let dir = std::env::temp_dir().join(format!("palisade-mongo-{port}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a data directory");
        DataDir(dir)
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Server {
    fn start(bin: &PathBuf, data: &DataDir, port: u16) -> Self {
        let child = Command::new(bin)
            .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--log-level", "WARNING", "--storage-path"])
            .arg(&data.0)
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

async fn connect(port: u16, namespace: &Namespace) -> MongoBackend {
    let url = format!("mongodb://127.0.0.1:{port}/?directConnection=true");
    let config = MongoConfig::new(url, namespace.clone())
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
    const PORT: u16 = 27031;
    let Some(bin) = server_bin() else { return };
    let data = DataDir::new(PORT);
    let mut server = Server::start(&bin, &data, PORT);
    let namespace = Namespace::random("degraded").unwrap();
    let backend = connect(PORT, &namespace).await;
    let fallback = MemoryStores::new(namespace, &MemoryConfig::default()).events;
    let mut restarted = None;
    restart::no_acknowledged_event_is_lost_across_a_restart(
        Arc::new(backend.events()) as Arc<dyn EventStore>,
        fallback,
        || server.stop(),
        || restarted = Some(Server::start(&bin, &data, PORT)),
    )
    .await;
    drop(restarted);
}

/// The tail's next item within 30 s.
async fn next(tail: &mut EventSubscription) -> SubscriptionItem {
    let item = tokio::time::timeout(Duration::from_secs(30), tail.next()).await;
    item.expect("an item within 30 s").expect("the tail goes on").expect("no error")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_tail_carries_on_after_a_server_restart() {
    const PORT: u16 = 27032;
    let Some(bin) = server_bin() else { return };
    let data = DataDir::new(PORT);
    let mut server = Server::start(&bin, &data, PORT);
    let backend = connect(PORT, &Namespace::random("tail").unwrap()).await;
    let store = backend.events();
    let first = store.append_one(NewEvent::new("restart", "before")).await.expect("append before");
    let mut tail = store.subscribe(Cursor::Start, EventFilter::all()).await.expect("subscribe");
    assert!(matches!(next(&mut tail).await, SubscriptionItem::Event(e) if e.id == first.id));
    assert_eq!(next(&mut tail).await, SubscriptionItem::CaughtUp);

    server.stop();
    let _server = Server::start(&bin, &data, PORT);
    // The same store and tail; appends fail (temporarily) until the server is back.
    let deadline = Instant::now() + Duration::from_secs(30);
    let after = loop {
        match store.append_one(NewEvent::new("restart", "after")).await {
            Ok(a) => break a,
            Err(e) => {
                assert!(e.is_temporary(), "a non-temporary error after the restart: {e}");
                assert!(Instant::now() < deadline, "no append within 30 s of the restart: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    assert_eq!(after.position.major, first.position.major + 1, "positions go on from the stored head");
    assert!(matches!(next(&mut tail).await, SubscriptionItem::Event(e) if e.id == after.id));
}
