//! Batch append throughput of `PgEventStore` next to a raw `COPY` of the same
//! rows into the same table shape, measured in the same run.
//!
//! `cargo bench -p palisade-pg-sqlx --bench append` (uses
//! `PALISADE_TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/test`).

mod common;

use std::time::{Duration, Instant};

use palisade_core::events::{AppendBatch, NewEvent};
use palisade_core::{EventStore, Namespace};
use palisade_pg_sqlx::{PgBackend, PgConfig};
use serde_json::json;

const BATCH: usize = 10_000;
const ROUNDS: usize = 7;

fn batch(round: usize) -> Vec<NewEvent> {
    (0..BATCH)
        .map(|n| {
            NewEvent::new("gatekeeper", "blocked")
                .with_session(format!("s{}", n % 300))
                .with_client_ip(std::net::IpAddr::from([10, 0, (n / 256 % 256) as u8, (n % 256) as u8]))
                .with_tag("malicious")
                .with_tag("rule:sqli")
                .with_data(json!({ "round": round, "n": n, "path": "/login" }))
        })
        .collect()
}

/// The same rows as CSV for `COPY events FROM STDIN`.
fn csv(events: &[NewEvent], first_position: i64) -> Vec<u8> {
    let mut out = String::with_capacity(events.len() * 200);
    for (i, e) in events.iter().enumerate() {
        let tags = format!("{{{}}}", e.tags.iter().map(|t| format!("\"{t}\"")).collect::<Vec<_>>().join(","));
        let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
        out.push_str(&format!(
            "{},{},{},{},,,{},{},{},{},{},{}\n",
            first_position + i as i64,
            e.id,
            quote(&e.source),
            quote(&e.kind),
            quote(e.session_id.as_deref().unwrap_or_default()),
            e.client_ip.map(|ip| ip.to_string()).unwrap_or_default(),
            quote(&tags),
            quote(&e.data.to_string()),
            e.occurred_at.to_rfc3339(),
            e.occurred_at.to_rfc3339(),
        ));
    }
    out.into_bytes()
}

#[tokio::main]
async fn main() {
    if !common::benchmarking("append") {
        return;
    }
    let url = common::url();
    let store_backend =
        PgBackend::connect(&PgConfig::new(url.clone(), Namespace::random("bench").unwrap())).await.unwrap();
    let copy_backend = PgBackend::connect(&PgConfig::new(url, Namespace::random("bench").unwrap())).await.unwrap();
    let store = store_backend.events();

    let (mut ours, mut copies) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let events = batch(round);
        let rows = csv(&events, (round * BATCH) as i64 + 1);

        let t = Instant::now();
        store.append(AppendBatch::new(events)).await.unwrap();
        ours.push(t.elapsed());

        let t = Instant::now();
        let mut conn = copy_backend.pool().acquire().await.unwrap();
        let mut copy = conn
            .copy_in_raw(
                "COPY events (position, id, source, kind, stream, version, session_id, client_ip, tags, data, occurred_at, recorded_at) \
                 FROM STDIN (FORMAT csv)",
            )
            .await
            .unwrap();
        copy.send(rows).await.unwrap();
        copy.finish().await.unwrap();
        copies.push(t.elapsed());
    }
    let (ours, copies) = (common::median(ours), common::median(copies));
    let rate = |d: Duration| BATCH as f64 / d.as_secs_f64();
    println!("batch append of {BATCH} events, median of {ROUNDS} rounds");
    println!("  {:<28} {:>10.0} rows/s  ({:?} per batch)", "palisade pg-sqlx append", rate(ours), ours);
    println!("  {:<28} {:>10.0} rows/s  ({:?} per batch)", "raw COPY (same rows)", rate(copies), copies);
    println!("  ratio palisade / COPY: {:.2}", rate(ours) / rate(copies));
    store_backend.drop_namespace().await.unwrap();
    copy_backend.drop_namespace().await.unwrap();
}
