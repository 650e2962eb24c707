//! Document throughput of palisade-mongo next to the raw `mongodb` driver
//! doing the same operations against the same server in the same run
//! (interleaved rounds, medians; only the ratios mean anything on a shared
//! machine): single-document inserts, finds of 10 documents by an indexed
//! field, and `$inc` updates by `_id`, each from 8 concurrent tasks.
//!
//! `cargo bench -p palisade-mongo --bench documents` (uses
//! `PALISADE_TEST_MONGO_URL`, default `mongodb://127.0.0.1:27017/?directConnection=true`;
//! `bash scripts/mongo-server.sh start` starts the test server).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use mongodb::bson::{doc, Document};
use mongodb::options::IndexOptions;
use mongodb::{Collection, IndexModel};
use palisade_conformance::bench::{benchmarking, median};
use palisade_core::documents::{CollectionSpec, Filter, FindOptions, IndexSpec, SortKey, UpdateOps};
use palisade_core::{DocumentStore, Namespace};
use palisade_mongo::{MongoBackend, MongoConfig};
use serde_json::json;

const TASKS: usize = 8;
const OPS_PER_TASK: usize = 50;
const ROUNDS: usize = 3;
/// Documents seeded for finds and updates.
const SEEDED: usize = 2_000;

/// Runs `op(task, i)` `OPS_PER_TASK` times in each of `TASKS` tasks; the wall time.
async fn timed<F, Fut>(op: F) -> Duration
where
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let started = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let op = Arc::clone(&op);
            tokio::spawn(async move {
                for i in 0..OPS_PER_TASK {
                    op(t, i).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("a benchmark task");
    }
    started.elapsed()
}

fn per_second(d: Duration) -> f64 {
    (TASKS * OPS_PER_TASK) as f64 / d.as_secs_f64()
}

#[tokio::main]
async fn main() {
    if !benchmarking("palisade-mongo", "documents") {
        return;
    }
    let url = std::env::var("PALISADE_TEST_MONGO_URL")
        .unwrap_or_else(|_| "mongodb://127.0.0.1:27017/?directConnection=true".into());
    let backend = MongoBackend::connect(&MongoConfig::new(url, Namespace::random("bench").unwrap())).await.unwrap();
    let store = Arc::new(backend.documents());
    let spec = CollectionSpec::new("iocs").with_index(IndexSpec::on(vec![SortKey::asc("ip").unwrap()]));
    store.ensure_collection(spec).await.unwrap();
    let raw: Collection<Document> = backend.database().collection("raw_iocs");
    let index = IndexModel::builder().keys(doc! {"ip": 1}).options(IndexOptions::builder().build()).build();
    raw.create_index(index).await.unwrap();
    let seed: Vec<serde_json::Value> =
        (0..SEEDED).map(|n| json!({"_id": format!("s{n}"), "ip": format!("10.0.0.{}", n % 200), "n": 0})).collect();
    store.insert_many("iocs", seed.clone()).await.unwrap();
    let raw_seed: Vec<Document> =
        (0..SEEDED).map(|n| doc! {"_id": format!("s{n}"), "ip": format!("10.0.0.{}", n % 200), "n": 0}).collect();
    raw.insert_many(raw_seed).await.unwrap();

    let (mut ours, mut theirs) = ([Vec::new(), Vec::new(), Vec::new()], [Vec::new(), Vec::new(), Vec::new()]);
    for round in 0..ROUNDS {
        // Inserts.
        let s = Arc::clone(&store);
        ours[0].push(
            timed(move |t, i| {
                let s = Arc::clone(&s);
                async move {
                    let d = json!({"_id": format!("r{round}t{t}i{i}"), "ip": "192.0.2.1", "verdict": "malicious"});
                    s.insert("iocs", d).await.unwrap();
                }
            })
            .await,
        );
        let r = raw.clone();
        theirs[0].push(
            timed(move |t, i| {
                let r = r.clone();
                async move {
                    let d = doc! {"_id": format!("r{round}t{t}i{i}"), "ip": "192.0.2.1", "verdict": "malicious"};
                    r.insert_one(d).await.unwrap();
                }
            })
            .await,
        );
        // Finds of 10 by an indexed field.
        let s = Arc::clone(&store);
        ours[1].push(
            timed(move |t, i| {
                let s = Arc::clone(&s);
                async move {
                    let ip = format!("10.0.0.{}", (t * OPS_PER_TASK + i) % 200);
                    let options = FindOptions::new(Filter::eq("ip", json!(ip)).unwrap()).limit(10);
                    assert_eq!(s.find("iocs", options).await.unwrap().len(), 10);
                }
            })
            .await,
        );
        let r = raw.clone();
        theirs[1].push(
            timed(move |t, i| {
                let r = r.clone();
                async move {
                    let ip = format!("10.0.0.{}", (t * OPS_PER_TASK + i) % 200);
                    let found: Vec<Document> =
                        r.find(doc! {"ip": ip}).limit(10).await.unwrap().try_collect().await.unwrap();
                    assert_eq!(found.len(), 10);
                }
            })
            .await,
        );
        // `$inc` by `_id` (each task its own documents: no conflicts).
        let s = Arc::clone(&store);
        ours[2].push(
            timed(move |t, i| {
                let s = Arc::clone(&s);
                async move {
                    let id = format!("s{}", t * OPS_PER_TASK + i % OPS_PER_TASK);
                    let ops = UpdateOps::parse(&json!({"$inc": {"n": 1}})).unwrap();
                    s.update("iocs", Filter::eq("_id", json!(id)).unwrap(), ops).await.unwrap();
                }
            })
            .await,
        );
        let r = raw.clone();
        theirs[2].push(
            timed(move |t, i| {
                let r = r.clone();
                async move {
                    let id = format!("s{}", t * OPS_PER_TASK + i % OPS_PER_TASK);
                    r.update_one(doc! {"_id": id}, doc! {"$inc": {"n": 1}}).await.unwrap();
                }
            })
            .await,
        );
    }
    println!("palisade-mongo vs raw mongodb driver, {TASKS} tasks × {OPS_PER_TASK} ops, median of {ROUNDS} rounds:");
    for (i, what) in ["insert one", "find 10 by indexed field", "update $inc by _id"].iter().enumerate() {
        let (a, b) = (per_second(median(ours[i].clone())), per_second(median(theirs[i].clone())));
        println!("  {what:<26} palisade {a:>8.0}/s   raw {b:>8.0}/s   ratio {:.2}×", a / b);
    }
    backend.drop_namespace().await.unwrap();
}
