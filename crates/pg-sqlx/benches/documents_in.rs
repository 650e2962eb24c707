//! `count` and `find` with `$in` lists of 10,000 values over 10,000 documents,
//! next to the raw SQL a hand-written query would use (`body -> 'n' = ANY($1)`
//! over the same table), measured in the same run.
//!
//! `cargo bench -p palisade-pg-sqlx --bench documents_in` (uses
//! `PALISADE_TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/test`).

use std::time::Instant;

use palisade_core::documents::{CollectionSpec, Filter, FindOptions};
use palisade_core::{DocumentStore, Namespace};
use palisade_pg_sqlx::{PgBackend, PgConfig};
use serde_json::{json, Value};

const DOCS: usize = 10_000;
const VALUES: usize = 10_000;
const ROUNDS: usize = 7;

#[tokio::main]
async fn main() {
    if !palisade_conformance::bench::benchmarking("palisade-pg-sqlx", "documents_in") {
        return;
    }
    let url = palisade_conformance::bench::postgres_url();
    let backend = PgBackend::connect(&PgConfig::new(url, Namespace::random("bench").unwrap())).await.unwrap();
    let store = backend.documents();
    store.ensure_collection(CollectionSpec::new("iocs")).await.unwrap();
    let docs: Vec<Value> = (0..DOCS).map(|i| json!({"n": i, "kind": "ip", "seen": i % 97})).collect();
    store.insert_many("iocs", docs).await.unwrap();
    sqlx::query("ANALYZE documents").execute(backend.pool()).await.unwrap();
    // Every third value matches a document; the rest miss.
    let values: Vec<Value> = (0..VALUES).map(|i| json!(i * 3)).collect();
    let filter = Filter::parse(&json!({"n": {"$in": values}})).unwrap();
    let expected = DOCS.div_ceil(3) as u64;

    let (mut counts, mut finds, mut raws) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let t = Instant::now();
        assert_eq!(store.count("iocs", filter.clone()).await.unwrap(), expected);
        counts.push(t.elapsed());

        let t = Instant::now();
        let found = store.find("iocs", FindOptions::new(filter.clone()).limit(10_000)).await.unwrap();
        assert_eq!(found.len() as u64, expected);
        finds.push(t.elapsed());

        let t = Instant::now();
        let raw: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM documents WHERE collection = 'iocs' AND body -> 'n' = ANY($1::jsonb[])",
        )
        .bind(&values)
        .fetch_one(backend.pool())
        .await
        .unwrap();
        assert_eq!(raw as u64, expected);
        raws.push(t.elapsed());
    }
    let (count, find, raw) = (
        palisade_conformance::bench::median(counts),
        palisade_conformance::bench::median(finds),
        palisade_conformance::bench::median(raws),
    );
    println!("$in with {VALUES} values over {DOCS} documents, median of {ROUNDS} rounds");
    println!("  {:<34} {:?}", "palisade count", count);
    println!("  {:<34} {:?}", "palisade find (all 3,334 matches)", find);
    println!("  {:<34} {:?}", "raw SQL count (top-level = ANY)", raw);
    println!("  ratio palisade count / raw: {:.2}", count.as_secs_f64() / raw.as_secs_f64());
    backend.drop_namespace().await.unwrap();
}
