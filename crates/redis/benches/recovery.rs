//! Degraded mode across a real Redis restart, with the default
//! [`DegradeConfig`]: eight writers append one event at a time through
//! `Degradable` (memory fallback) while a `redis-server` of our own (on a
//! spare loopback port, append-only file, killed by its own PID) is killed
//! and, 3 s later, restarted. Reports per client and round how soon writes
//! failed over, how soon after the restart the store was `Healthy` again
//! (target ≤ 1.5 s), the longest any write waited from the restart until
//! shortly after `Healthy` — replay included (target ≤ 100 ms) — and the
//! failed calls and lost events (must be 0).
//!
//! `cargo bench -p palisade-redis --features redis-rs,fred --bench recovery`.
//! Run without `--bench` (as `cargo test --all-targets` does) it only prints
//! this hint.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::Duration;

use palisade_conformance::restart;
use palisade_core::{DegradeConfig, Namespace};
use palisade_memory::{MemoryConfig, MemoryStores};
use palisade_redis::{ClientKind, RedisBackend, RedisConfig};

use common::{Server, TempDir};

const ROUNDS: usize = 3;
const OUTAGE: Duration = Duration::from_secs(3);

async fn round(kind: ClientKind, port: u16) -> restart::Recovery {
    let dir = TempDir::new(&format!("recovery-{port}"));
    let mut server = Server::start_durable(port, &dir.0);
    let scheme = match kind {
        ClientKind::RedisRs => "redis",
        ClientKind::Fred => "redis+fred",
    };
    let namespace = Namespace::random("recovery").expect("a namespace");
    let config = RedisConfig::new(format!("{scheme}://127.0.0.1:{port}"), namespace.clone());
    let backend = RedisBackend::connect(&config).await.expect("connect to the bench's own redis-server");
    let fallback = MemoryStores::new(namespace, &MemoryConfig::default()).events;
    let mut restarted = None;
    let r = restart::run(
        Arc::new(backend.events()),
        fallback,
        DegradeConfig::default(),
        OUTAGE,
        || server.kill(),
        || restarted = Some(Server::start_durable(port, &dir.0)),
    )
    .await;
    drop(restarted);
    r
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    if !palisade_conformance::bench::benchmarking("palisade-redis", "recovery") {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    println!(
        "{:<9} {:>5} {:>12} {:>9} {:>17} {:>16} {:>16} {:>7} {:>6} {:>5}",
        "client",
        "round",
        "failover ms",
        "buffered",
        "replay starts ms",
        "healthy after ms",
        "longest wait ms",
        "acked",
        "failed",
        "lost"
    );
    let mut worst = (Duration::ZERO, Duration::ZERO, 0);
    for (kind, name, port) in [(ClientKind::RedisRs, "redis-rs", 6394), (ClientKind::Fred, "fred", 6395)] {
        for i in 1..=ROUNDS {
            let r = runtime.block_on(round(kind, port));
            println!(
                "{name:<9} {i:>5} {:>12.1} {:>9} {:>17} {:>16.1} {:>16.1} {:>7} {:>6} {:>5}",
                ms(r.failover),
                r.buffered_at_restart,
                r.replay_started_after.map_or("—".to_owned(), |d| format!("{:.1}", ms(d))),
                ms(r.healthy_after),
                ms(r.longest_wait_in_recovery),
                r.acknowledged,
                r.failed,
                r.lost_or_doubled
            );
            worst = (
                worst.0.max(r.healthy_after),
                worst.1.max(r.longest_wait_in_recovery),
                worst.2 + r.failed + r.lost_or_doubled,
            );
        }
    }
    println!(
        "worst: Healthy {:.0} ms after the restart (target ≤ 1500), longest wait {:.1} ms (target ≤ 100), {} failed or lost",
        ms(worst.0),
        ms(worst.1),
        worst.2
    );
}
