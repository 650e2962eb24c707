//! Document-store proofs for both Postgres backends beyond the shared
//! conformance suite, each run on pg-sqlx and on pg-diesel: randomized
//! agreement with core's reference semantics (`matches`, `cmp_docs`) with
//! and without index shortcuts (set `PALISADE_SEED` to replay a seed),
//! uniqueness under concurrency, expired documents freeing unique values,
//! values moving between documents of one update (across statement chunks),
//! NUL in indexed and unique strings, and collection DDL waiting for readers
//! (`lock_not_available` retries) without stalling other statements.
//! Needs `PALISADE_TEST_POSTGRES_URL`; skipped with a notice without it,
//! unless `PALISADE_REQUIRE` names `postgres`.

mod common;

use std::time::{Duration, Instant};

use chrono::{SecondsFormat, TimeDelta, Utc};
use futures::future::join_all;
use palisade_core::backend::eval::{cmp_docs, matches};
use palisade_core::documents::{
    CollectionSpec, FieldPath, Filter, FindOptions, IndexSpec, SortKey, SortOrder, UpdateOps,
};
use palisade_core::{ErrorDetail, ErrorKind};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{json, Map, Value};

use common::on_both;

const KEYS: [&str; 8] = ["a", "b", "c", "a", "b", "c", "0", "1"];
const PATHS: [&str; 16] =
    ["a", "b", "c", "a.b", "a.c", "b.a", "a.0", "a.1", "a.00", "c.1.a", "a.b.c", "b.0.a", "0", "a.0.b", "c.a.b", "1.a"];

fn scalar(rng: &mut StdRng) -> Value {
    match rng.gen_range(0..5) {
        0 => Value::Null,
        1 => Value::Bool(rng.gen()),
        2 => json!(rng.gen_range(-2i64..=2)),
        3 => json!(*[-1.5f64, 1.0, 2.5, 0.5].choose(rng).unwrap_or(&1.0)),
        _ => json!(*["", "a", "B", "é", "1", "😀", "a'\"", "b"].choose(rng).unwrap_or(&"a")),
    }
}

fn value(rng: &mut StdRng, depth: u32) -> Value {
    if depth == 0 {
        return scalar(rng);
    }
    match rng.gen_range(0..6) {
        0..=2 => scalar(rng),
        3 | 4 => Value::Array((0..rng.gen_range(0..=3)).map(|_| value(rng, depth - 1)).collect()),
        _ => object(rng, depth - 1),
    }
}

fn object(rng: &mut StdRng, depth: u32) -> Value {
    let mut m = Map::new();
    for _ in 0..rng.gen_range(1..=4) {
        let k = KEYS.choose(rng).copied().unwrap_or("a");
        m.insert(k.to_owned(), value(rng, depth));
    }
    Value::Object(m)
}

fn operand(rng: &mut StdRng) -> Value {
    if rng.gen_ratio(1, 5) {
        value(rng, 2)
    } else {
        scalar(rng)
    }
}

fn comparable(rng: &mut StdRng) -> Value {
    loop {
        let v = scalar(rng);
        if !v.is_null() {
            return v;
        }
    }
}

fn operator(rng: &mut StdRng) -> (String, Value) {
    let list = |rng: &mut StdRng| Value::Array((0..rng.gen_range(0..=3)).map(|_| operand(rng)).collect());
    match rng.gen_range(0..9) {
        0 => ("$eq".into(), operand(rng)),
        1 => ("$ne".into(), operand(rng)),
        2 => ("$gt".into(), comparable(rng)),
        3 => ("$gte".into(), comparable(rng)),
        4 => ("$lt".into(), comparable(rng)),
        5 => ("$lte".into(), comparable(rng)),
        6 => ("$in".into(), list(rng)),
        7 => ("$nin".into(), list(rng)),
        _ => ("$exists".into(), Value::Bool(rng.gen())),
    }
}

fn condition(rng: &mut StdRng) -> Value {
    let ops = |rng: &mut StdRng| {
        let mut m = Map::new();
        for _ in 0..rng.gen_range(1..=2) {
            let (k, v) = operator(rng);
            m.insert(k, v);
        }
        Value::Object(m)
    };
    match rng.gen_range(0..6) {
        0 | 1 => operand(rng),
        2 => json!({"$not": ops(rng)}),
        _ => ops(rng),
    }
}

/// Mostly top-level fields, so that filters split the documents often.
fn path(rng: &mut StdRng) -> &'static str {
    if rng.gen_ratio(1, 2) {
        PATHS[..3].choose(rng).copied().unwrap_or("a")
    } else {
        PATHS.choose(rng).copied().unwrap_or("a")
    }
}

fn filter(rng: &mut StdRng, depth: u32) -> Value {
    let choice = if depth == 0 { 0 } else { rng.gen_range(0..4) };
    match choice {
        1 => json!({"$or": (0..rng.gen_range(1..=3)).map(|_| filter(rng, depth - 1)).collect::<Vec<_>>()}),
        2 => json!({"$and": (0..rng.gen_range(1..=2)).map(|_| filter(rng, depth - 1)).collect::<Vec<_>>()}),
        _ => {
            let mut m = Map::new();
            for _ in 0..rng.gen_range(1..=2) {
                m.insert(path(rng).to_owned(), condition(rng));
            }
            Value::Object(m)
        }
    }
}

fn id_of(d: &Value) -> String {
    d["_id"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn random_filters_and_sorts_agree_with_the_reference() {
    let seed: u64 = std::env::var("PALISADE_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    eprintln!("seed {seed} (replay with PALISADE_SEED={seed})");
    on_both(move |ctx| async move {
        let store = ctx.backend.documents().unwrap();
        let mut rng = StdRng::seed_from_u64(seed);
        // "i" indexes every path (so its filters take the index-range
        // shortcut), "c" none; both must agree with the reference.
        let mut indexed = CollectionSpec::new("i");
        for pair in PATHS.chunks(2) {
            let fields = vec![SortKey::asc(pair[0]).unwrap(), SortKey::desc(pair[1]).unwrap()];
            indexed = indexed.with_index(IndexSpec::on(fields));
        }
        store.ensure_collection(CollectionSpec::new("c")).await.unwrap();
        store.ensure_collection(indexed).await.unwrap();
        let docs: Vec<Value> = (0..120)
            .map(|i| {
                let mut d = object(&mut rng, 2);
                d["_id"] = json!(format!("r{i:03}"));
                d
            })
            .collect();
        let stored = store.insert_many("c", docs.clone()).await.unwrap();
        store.insert_many("i", docs).await.unwrap();
        for round in 0..300 {
            let collection = if round % 2 == 0 { "c" } else { "i" };
            let json_filter = filter(&mut rng, 2);
            let parsed = Filter::parse(&json_filter).unwrap();
            let mut want: Vec<&Value> = stored.iter().filter(|d| matches(&parsed, d)).collect();
            let expected_count = want.len() as u64;
            let keys: Vec<SortKey> = (0..rng.gen_range(0..=2))
                .map(|_| SortKey {
                    path: FieldPath::parse(path(&mut rng)).unwrap(),
                    order: if rng.gen() { SortOrder::Asc } else { SortOrder::Desc },
                })
                .collect();
            want.sort_by(|a, b| cmp_docs(a, b, &keys));
            let (skip, limit) = (rng.gen_range(0..5), rng.gen_range(1..40));
            let want: Vec<String> = want.into_iter().skip(skip).take(limit).map(id_of).collect();
            let mut options = FindOptions::new(parsed.clone()).skip(skip).limit(limit);
            options.sort = keys.clone();
            let got: Vec<String> = store.find(collection, options).await.unwrap().iter().map(id_of).collect();
            let what =
                format!("seed {seed}: {collection}: filter {json_filter}, sort {keys:?}, skip {skip}, limit {limit}");
            assert_eq!(got, want, "{what}");
            let counted = store.count(collection, parsed).await.unwrap();
            assert_eq!(counted, expected_count, "seed {seed}: {collection}: count {json_filter}");
        }
    })
    .await;
}

fn unique_violation<T: std::fmt::Debug>(r: palisade_core::Result<T>) -> String {
    let e = r.expect_err("expected a unique violation");
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    match e.detail() {
        Some(ErrorDetail::UniqueViolation { index }) => index.clone(),
        other => panic!("expected UniqueViolation, got {other:?}: {e:?}"),
    }
}

/// 16 concurrent inserts of one unique value (and of one `_id`): exactly one wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_inserts_of_one_unique_value_admit_one() {
    on_both(|ctx| async move {
        let store = ctx.backend.documents().unwrap();
        let index = IndexSpec::unique(vec![SortKey::asc("ip").unwrap()]);
        store.ensure_collection(CollectionSpec::new("c").with_index(index.clone())).await.unwrap();
        let by_value = join_all((0..16).map(|i| store.insert("c", json!({"_id": format!("d{i}"), "ip": "10.0.0.1"}))));
        let by_id = join_all((0..16).map(|i| store.insert("c", json!({"_id": "same", "n": i}))));
        let (by_value, by_id) = futures::join!(by_value, by_id);
        let (won, lost): (Vec<_>, Vec<_>) = by_value.into_iter().partition(Result::is_ok);
        assert_eq!(won.len(), 1);
        assert!(lost.into_iter().all(|r| unique_violation(r) == index.name()));
        let (won, lost): (Vec<_>, Vec<_>) = by_id.into_iter().partition(Result::is_ok);
        assert_eq!(won.len(), 1);
        assert!(lost.into_iter().all(|r| unique_violation(r) == "_id"));
        assert_eq!(store.count("c", Filter::all()).await.unwrap(), 2);
    })
    .await;
}

/// An expired document frees its `_id` and its unique values at once.
#[tokio::test]
async fn expired_documents_free_their_id_and_unique_values() {
    on_both(|ctx| async move {
        let store = ctx.backend.documents().unwrap();
        let spec = CollectionSpec::new("c")
            .with_index(IndexSpec::unique(vec![SortKey::asc("ip").unwrap()]))
            .with_ttl("seen", 2)
            .unwrap();
        store.ensure_collection(spec).await.unwrap();
        let soon = (Utc::now() - TimeDelta::milliseconds(1000)).to_rfc3339_opts(SecondsFormat::Millis, true);
        store.insert("c", json!({"_id": "old", "ip": "1", "seen": soon})).await.unwrap();
        store.insert("c", json!({"_id": "other", "ip": "2"})).await.unwrap();
        unique_violation(store.insert("c", json!({"_id": "new", "ip": "1"})).await);
        tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
        store.insert("c", json!({"_id": "new", "ip": "1"})).await.expect("the expired holder frees the value");
        store.insert("c", json!({"_id": "old", "ip": "3"})).await.expect("the expired holder frees the id");
        let upd = UpdateOps::parse(&json!({"$set": {"ip": "1"}})).unwrap();
        let r = store.update("c", Filter::eq("_id", json!("other")).unwrap(), upd).await;
        unique_violation(r);
        assert_eq!(store.count("c", Filter::all()).await.unwrap(), 3);
    })
    .await;
}

/// One update may move unique values between the documents it changes, also
/// when they are more than one statement writes (5,000); a clash still
/// changes nothing.
#[tokio::test]
async fn update_may_shift_unique_values_between_documents() {
    on_both(|ctx| async move {
        let store = ctx.backend.documents().unwrap();
        for size in [3, 12_000] {
            let name = format!("c{size}");
            let index = IndexSpec::unique(vec![SortKey::asc("n").unwrap()]);
            store.ensure_collection(CollectionSpec::new(&name).with_index(index)).await.unwrap();
            let docs = (1..=size).map(|n| json!({"_id": format!("d{n:05}"), "n": n})).collect();
            store.insert_many(&name, docs).await.unwrap();
            let inc = UpdateOps::parse(&json!({"$inc": {"n": 1}})).unwrap();
            let r = store.update(&name, Filter::all(), inc).await.unwrap();
            assert_eq!((r.matched, r.modified), (size as u64, size as u64));
            store.insert(&name, json!({"_id": "d0", "n": 1})).await.expect("1 was released");
            unique_violation(store.insert(&name, json!({"_id": "dx", "n": (size + 1) as f64})).await);
            let clash = UpdateOps::parse(&json!({"$set": {"n": 2}})).unwrap();
            unique_violation(store.update(&name, Filter::parse(&json!({"n": {"$gte": 3}})).unwrap(), clash).await);
            assert_eq!(store.count(&name, Filter::eq("n", json!(2)).unwrap()).await.unwrap(), 1, "nothing changed");
        }
    })
    .await;
}

/// JSONB cannot hold NUL in strings, yet NUL is data: it round-trips through
/// the encoding, and indexed and unique fields treat it as its own code point
/// (index key ranges, unique keys, sorting on the index).
#[tokio::test]
async fn nul_round_trips_through_indexed_and_unique_fields() {
    on_both(|ctx| async move {
        let store = ctx.backend.documents().unwrap();
        let spec = CollectionSpec::new("c")
            .with_index(IndexSpec::unique(vec![SortKey::asc("u").unwrap()]))
            .with_index(IndexSpec::on(vec![SortKey::asc("i").unwrap()]));
        store.ensure_collection(spec).await.unwrap();
        let batch = vec![
            json!({"_id": "a", "u": "x", "i": "a"}),
            json!({"_id": "b", "u": "x\u{0}", "i": "a\u{0}"}),
            json!({"_id": "c", "u": "x\u{1}", "i": "a\u{1}"}),
        ];
        store.insert_many("c", batch).await.unwrap();
        assert_eq!(store.get("c", "b").await.unwrap().unwrap()["u"], json!("x\u{0}"));
        let clash = store.insert("c", json!({"_id": "d", "u": "x\u{0}"})).await.unwrap_err();
        assert_eq!(clash.kind(), ErrorKind::Conflict, "{clash}");
        store.insert("c", json!({"_id": "e", "u": "x\u{0}\u{0}"})).await.unwrap();
        let range = Filter::parse(&json!({"i": {"$gt": "a", "$lt": "a\u{1}"}})).unwrap();
        let found = store.find("c", FindOptions::new(range)).await.unwrap();
        assert_eq!(found.iter().map(|d| d["_id"].clone()).collect::<Vec<_>>(), vec![json!("b")]);
        let eq = Filter::eq("i", json!("a\u{0}")).unwrap();
        assert_eq!(store.count("c", eq).await.unwrap(), 1);
    })
    .await;
}

/// Creating a collection while a long transaction has read documents waits
/// for it, without stalling other document statements for more than a moment.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn creating_a_collection_waits_for_readers_without_stalling_others() {
    on_both(|ctx| async move {
        let store = ctx.backend.documents().unwrap();
        store.ensure_collection(CollectionSpec::new("a")).await.unwrap();
        store.insert("a", json!({"_id": "x"})).await.unwrap();
        let mut reader = ctx.raw.begin().await.unwrap();
        sqlx::query("SELECT count(*) FROM documents WHERE collection = 'a'").execute(&mut *reader).await.unwrap();
        let creating = tokio::spawn({
            let store = store.clone();
            async move { store.ensure_collection(CollectionSpec::new("b")).await }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        let started = Instant::now();
        assert_eq!(store.count("a", Filter::all()).await.unwrap(), 1);
        let waited = started.elapsed();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(!creating.is_finished(), "the creation waits for the reader");
        reader.commit().await.unwrap();
        assert!(creating.await.unwrap().unwrap(), "created once the reader is done");
        assert!(waited < Duration::from_millis(1500), "a read waited {waited:?} behind the creation");
        store.insert("b", json!({"_id": "y"})).await.unwrap();
        assert!(store.drop_collection("b").await.unwrap());
    })
    .await;
}
