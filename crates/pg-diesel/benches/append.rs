//! Append throughput of both Postgres backends, measured in the same run
//! (interleaved rounds, medians; only ratios mean anything on a shared
//! machine):
//! - batches of 10,000 events: pg-diesel, pg-sqlx, and a raw `COPY` of the
//!   same rows into the same table;
//! - single-event appends from 8 concurrent tasks: pg-diesel and pg-sqlx
//!   (events/s and p99 latency).
//!
//! `cargo bench -p palisade-pg-diesel --bench append` (uses
//! `PALISADE_TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/test`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use palisade_conformance::bench::{benchmarking, median, percentile, postgres_url};
use palisade_core::events::{AppendBatch, NewEvent};
use palisade_core::{EventStore, Namespace};
use palisade_pg_diesel::{PgDieselBackend, PgDieselConfig};
use palisade_pg_sqlx::{PgBackend, PgConfig};
use serde_json::json;

const BATCH: usize = 10_000;
const ROUNDS: usize = 7;
const TASKS: usize = 8;
const SINGLES_PER_TASK: usize = 200;
const SINGLE_ROUNDS: usize = 3;

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

/// `TASKS` tasks appending single events: (events/s, every call's latency).
async fn singles(store: Arc<dyn EventStore>) -> (f64, Vec<Duration>) {
    let started = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(SINGLES_PER_TASK);
                for n in 0..SINGLES_PER_TASK {
                    let event = NewEvent::new("gatekeeper", "blocked").with_data(json!({"t": t, "n": n}));
                    let at = Instant::now();
                    store.append(AppendBatch::new(vec![event])).await.expect("append");
                    latencies.push(at.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("task"));
    }
    ((TASKS * SINGLES_PER_TASK) as f64 / started.elapsed().as_secs_f64(), all)
}

#[tokio::main]
async fn main() {
    if !benchmarking("palisade-pg-diesel", "append") {
        return;
    }
    let url = postgres_url();
    let diesel_url = match url.split_once("://") {
        Some((_, rest)) => format!("postgres+diesel://{rest}"),
        None => url.clone(),
    };
    let ns = || Namespace::random("bench").unwrap();
    let diesel = PgDieselBackend::connect(&PgDieselConfig::new(diesel_url, ns()).with_pool_size(TASKS as u32))
        .await
        .expect("pg-diesel");
    let sqlx = PgBackend::connect(&PgConfig::new(url.clone(), ns()).with_pool_size(TASKS as u32)).await.unwrap();
    let copy_backend = PgBackend::connect(&PgConfig::new(url, ns())).await.unwrap();
    let stores: [(&str, Arc<dyn EventStore>); 2] =
        [("palisade pg-diesel", Arc::new(diesel.events())), ("palisade pg-sqlx", Arc::new(sqlx.events()))];

    let mut batches: [Vec<Duration>; 3] = Default::default();
    for round in 0..ROUNDS {
        for (i, (_, store)) in stores.iter().enumerate() {
            let events = batch(round);
            let t = Instant::now();
            store.append(AppendBatch::new(events)).await.unwrap();
            batches[i].push(t.elapsed());
        }
        let rows = csv(&batch(round), (round * BATCH) as i64 + 1);
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
        batches[2].push(t.elapsed());
    }
    let rate = |d: Duration| BATCH as f64 / d.as_secs_f64();
    let [diesel_batch, sqlx_batch, copy_batch] = batches.map(median);
    println!("batch append of {BATCH} events, median of {ROUNDS} interleaved rounds");
    println!("  {:<24} {:>10}  {:>12}  {:>9}", "", "rows/s", "per batch", "÷ COPY");
    for (name, d) in [("palisade pg-diesel", diesel_batch), ("palisade pg-sqlx", sqlx_batch), ("raw COPY", copy_batch)]
    {
        println!("  {name:<24} {:>10.0}  {:>12.1?}  {:>8.2}×", rate(d), d, rate(d) / rate(copy_batch));
    }
    println!("  ratio pg-diesel / pg-sqlx: {:.2}×", rate(diesel_batch) / rate(sqlx_batch));

    let mut single: [(Vec<f64>, Vec<Duration>); 2] = Default::default();
    for _ in 0..SINGLE_ROUNDS {
        for (i, (_, store)) in stores.iter().enumerate() {
            let (per_second, latencies) = singles(Arc::clone(store)).await;
            single[i].0.push(per_second);
            single[i].1.extend(latencies);
        }
    }
    println!("single-event appends, {TASKS} tasks × {SINGLES_PER_TASK}, median of {SINGLE_ROUNDS} interleaved rounds");
    println!("  {:<24} {:>10}  {:>10}", "", "events/s", "p99");
    let mut rates = Vec::new();
    for ((name, _), (mut per_second, latencies)) in stores.iter().zip(single) {
        per_second.sort_by(f64::total_cmp);
        let rate = per_second[per_second.len() / 2];
        rates.push(rate);
        println!("  {name:<24} {rate:>10.0}  {:>10.1?}", percentile(latencies, 99));
    }
    println!("  ratio pg-diesel / pg-sqlx: {:.2}×", rates[0] / rates[1]);
    diesel.drop_namespace().await.unwrap();
    sqlx.drop_namespace().await.unwrap();
    copy_backend.drop_namespace().await.unwrap();
}
