//! Retention: `purge` of 1,000,000 events by dropping partitions, next to a
//! `DELETE` of the same rows, measured in the same run on the same server.
//!
//! Two namespaces get the same events (spread evenly over the two monthly
//! partitions after the current month, `PALISADE_BENCH_EVENTS` of them,
//! default 1,000,000). Then:
//! - **purge**: `EventStore::purge(start of the third month)`: drops both
//!   partitions (counting their rows first) and deletes the removed ids from
//!   the `event_ids` ledger;
//! - **DELETE**: in the other namespace, `DELETE FROM events WHERE
//!   occurred_at < …` (what `purge` ran before migration 0013), then the
//!   same ledger delete, so both end in the same state.
//!
//! A `DELETE` only marks rows dead: the work of removing them from the
//! heap and every index is left to (auto)vacuum. Each side is followed by a
//! `VACUUM` of what it deleted, timed apart, and the totals are compared.
//!
//! `cargo bench -p palisade-pg-sqlx --bench purge` (uses
//! `PALISADE_TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/test`).

use std::time::{Duration, Instant};

use chrono::{DateTime, Datelike, TimeDelta, TimeZone, Utc};
use palisade_conformance::bench::{benchmarking, postgres_url};
use palisade_core::events::{AppendBatch, NewEvent};
use palisade_core::{EventStore, Namespace};
use palisade_pg_sqlx::{PgBackend, PgConfig};
use serde_json::json;

const BATCH: usize = 20_000;

/// The first instant of the month `months` after the current one (UTC).
fn month_start(months: i32) -> DateTime<Utc> {
    let now = Utc::now();
    let total = now.year() * 12 + now.month0() as i32 + months;
    Utc.with_ymd_and_hms(total.div_euclid(12), total.rem_euclid(12) as u32 + 1, 1, 0, 0, 0).unwrap()
}

async fn fill(store: &dyn EventStore, total: usize) -> Duration {
    let (from, to) = (month_start(1), month_start(3));
    let step = (to - from).num_milliseconds() / total as i64;
    let started = Instant::now();
    for chunk in 0..total.div_ceil(BATCH) {
        let events = (chunk * BATCH..((chunk + 1) * BATCH).min(total))
            .map(|n| {
                NewEvent::new("gatekeeper", "blocked")
                    .with_session(format!("s{}", n % 300))
                    .with_client_ip(std::net::IpAddr::from([10, 0, (n / 256 % 256) as u8, (n % 256) as u8]))
                    .with_tag("malicious")
                    .with_occurred_at(from + TimeDelta::milliseconds(step * n as i64))
                    .with_data(json!({ "n": n, "path": "/login" }))
            })
            .collect();
        store.append(AppendBatch::new(events)).await.expect("append");
    }
    started.elapsed()
}

#[tokio::main]
async fn main() {
    if !benchmarking("palisade-pg-sqlx", "purge") {
        return;
    }
    let total: usize = std::env::var("PALISADE_BENCH_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let url = postgres_url();
    let by_drop = PgBackend::connect(&PgConfig::new(url.clone(), Namespace::random("bench").unwrap())).await.unwrap();
    let by_delete = PgBackend::connect(&PgConfig::new(url, Namespace::random("bench").unwrap())).await.unwrap();
    let cut = month_start(3);
    println!("purge of {total} events spread over two monthly partitions");
    for (name, backend) in [("drop", &by_drop), ("delete", &by_delete)] {
        let took = fill(&backend.events(), total).await;
        sqlx::query("ANALYZE").execute(backend.pool()).await.unwrap();
        println!("  filled the {name} namespace in {took:.1?}");
    }

    let started = Instant::now();
    let gone = by_drop.events().purge(cut).await.unwrap();
    let drop_took = started.elapsed();
    assert_eq!(gone, total as u64, "purge removed every event");
    // What a DELETE leaves for later: vacuum reclaiming the dead rows and
    // their index entries (only the ledger's, after the drop).
    let started = Instant::now();
    sqlx::query("VACUUM event_ids").execute(by_drop.pool()).await.unwrap();
    let drop_vacuum = started.elapsed();

    let mut tx = by_delete.pool().begin().await.unwrap();
    let started = Instant::now();
    let deleted = sqlx::query("DELETE FROM events WHERE occurred_at < $1").bind(cut).execute(&mut *tx).await.unwrap();
    sqlx::query("DELETE FROM event_ids WHERE occurred_at < $1").bind(cut).execute(&mut *tx).await.unwrap();
    tx.commit().await.unwrap();
    let delete_took = started.elapsed();
    assert_eq!(deleted.rows_affected(), total as u64);
    let started = Instant::now();
    sqlx::query("VACUUM events, event_ids").execute(by_delete.pool()).await.unwrap();
    let delete_vacuum = started.elapsed();

    println!("  {:<36} {:>10}  {:>10}  {:>10}  {:>9}", "", "statement", "vacuum", "total", "÷ purge");
    let purge_total = drop_took + drop_vacuum;
    for (name, d, v) in
        [("purge (drop partitions)", drop_took, drop_vacuum), ("DELETE of the same rows", delete_took, delete_vacuum)]
    {
        let total = d + v;
        println!(
            "  {name:<36} {d:>10.1?}  {v:>10.1?}  {total:>10.1?}  {:>8.2}×",
            total.as_secs_f64() / purge_total.as_secs_f64()
        );
    }
    println!(
        "  the statement alone: DELETE ÷ purge {:.2}× (a DELETE only marks rows dead; vacuum does the rest later)",
        delete_took.as_secs_f64() / drop_took.as_secs_f64()
    );
    by_drop.drop_namespace().await.unwrap();
    by_delete.drop_namespace().await.unwrap();
}
