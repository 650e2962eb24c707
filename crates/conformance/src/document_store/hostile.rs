//! Hostile input against a [`DocumentStore`]: the input policy, U+0000 in
//! values and filters, and large `$in` lists (see [`palisade_core::policy`]).

use serde_json::{json, Value};

use super::{all, assert_finds, count_all, doc, ensure, f, seed, u, COLL};
use crate::{assert_kind, nested, ok};
use palisade_core::documents::{CollectionSpec, Filter, FindOptions, MAX_DEPTH};
use palisade_core::error::ErrorKind;
use palisade_core::policy::{DEFAULT_MAX_DOCUMENT_BYTES, MAX_IN_LIST};
use palisade_core::DocumentStore;

/// A document over the policy's size limit, or nested deeper than documents
/// may be, is `InvalidInput` on insert and replace and changes nothing.
pub async fn documents_over_the_limits_are_invalid_input(store: &dyn DocumentStore) {
    seed(store, json!([{"_id": "a", "n": 1}])).await;
    let big = json!({"_id": "big", "blob": "x".repeat(DEFAULT_MAX_DOCUMENT_BYTES)});
    assert_kind(store.insert(COLL, big.clone()).await, ErrorKind::InvalidInput, "insert big");
    assert_kind(store.insert_many(COLL, vec![json!({"_id": "b"}), big]).await, ErrorKind::InvalidInput, "many");
    let deep = json!({"_id": "deep", "d": nested(MAX_DEPTH)});
    assert_kind(store.insert(COLL, deep).await, ErrorKind::InvalidInput, "insert deep");
    let deep_body = json!({"d": nested(MAX_DEPTH)});
    assert_kind(store.replace(COLL, "a", deep_body, None).await, ErrorKind::InvalidInput, "replace deep");
    assert_eq!(count_all(store).await, 1);
    assert_eq!(doc(store, "a").await["n"], json!(1));
    let fine = json!({"_id": "fine", "d": nested(MAX_DEPTH - 1)});
    ok(store.insert(COLL, fine.clone()).await, "insert at the depth limit");
    assert_eq!(doc(store, "fine").await["d"], fine["d"]);
}

/// An `update` whose result would break the limits (too deep through a
/// dotted `$set`, too large through growth) is `InvalidInput` and changes
/// nothing — not even the other matched documents.
pub async fn update_that_breaks_the_limits_is_invalid_input_and_changes_nothing(store: &dyn DocumentStore) {
    let half = "y".repeat(DEFAULT_MAX_DOCUMENT_BYTES / 2 + 1);
    seed(store, json!([{"_id": "a", "g": 1}, {"_id": "b", "g": 1, "half": half}])).await;
    let before = all(store).await;
    let path = vec!["p"; MAX_DEPTH - 1].join(".");
    let deep_set = u(json!({"$set": {path: {"x": {"y": 1}}}}));
    assert_kind(store.update(COLL, f(&json!({"g": 1})), deep_set).await, ErrorKind::InvalidInput, "deep $set");
    let grow = u(json!({"$set": {"other": "z".repeat(DEFAULT_MAX_DOCUMENT_BYTES / 2 + 1)}}));
    assert_kind(store.update(COLL, f(&json!({"g": 1})), grow).await, ErrorKind::InvalidInput, "growth");
    assert_eq!(all(store).await, before, "a refused update changed documents");
}

/// U+0000 inside string values is stored and returned byte-exact, and
/// filters compare it like any other code point (`$eq`, `$in`, `$gt` by code
/// point, where "a\u0000" sorts between "a" and "a\u0001").
pub async fn nul_in_values_round_trips_and_matches_filters(store: &dyn DocumentStore) {
    seed(
        store,
        json!([
            {"_id": "plain", "s": "a", "list": ["x"]},
            {"_id": "nul", "s": "a\u{0}", "list": ["x\u{0}y"], "deep": {"k": "\u{0}"}},
            {"_id": "one", "s": "a\u{1}"},
            {"_id": "esc", "s": "a\u{1}\u{1}"}
        ]),
    )
    .await;
    assert_eq!(doc(store, "nul").await["s"], json!("a\u{0}"));
    assert_eq!(doc(store, "nul").await["deep"], json!({"k": "\u{0}"}));
    assert_eq!(doc(store, "esc").await["s"], json!("a\u{1}\u{1}"));
    assert_finds(store, json!({"s": "a\u{0}"}), &["nul"]).await;
    assert_finds(store, json!({"s": "a\u{1}\u{1}"}), &["esc"]).await;
    assert_finds(store, json!({"list": "x\u{0}y"}), &["nul"]).await;
    assert_finds(store, json!({"s": {"$in": ["a\u{0}", "a\u{1}"]}}), &["nul", "one"]).await;
    assert_finds(store, json!({"s": {"$gt": "a", "$lt": "a\u{1}"}}), &["nul"]).await;
    assert_finds(store, json!({"deep.k": {"$lte": "\u{0}"}}), &["nul"]).await;
    let sorted = ok(store.find(COLL, FindOptions::new(Filter::all()).sort(super::key("s"))).await, "find sorted by s");
    let order: Vec<Value> = sorted.iter().map(|d| d["_id"].clone()).collect();
    assert_eq!(order, vec![json!("plain"), json!("nul"), json!("one"), json!("esc")], "code-point order");
}

/// `$in` / `$nin` with 10,000 values answer like the reference semantics
/// (numbers by value, strings exactly, `null` matching missing fields), on
/// plain and indexed fields; 10,001 values are `InvalidInput`.
pub async fn in_with_ten_thousand_values_matches_like_the_reference(store: &dyn DocumentStore) {
    let spec = CollectionSpec::new(COLL).with_index(palisade_core::documents::IndexSpec::on(vec![super::key("n")]));
    ensure(store, spec).await;
    let docs: Vec<Value> = (0..500)
        .map(|i| match i % 4 {
            0 => json!({"_id": format!("d{i:03}"), "n": i, "s": format!("s{i}")}),
            1 => json!({"_id": format!("d{i:03}"), "n": f64::from(i), "s": [format!("s{i}"), "t"]}),
            2 => json!({"_id": format!("d{i:03}"), "n": format!("{i}")}),
            _ => json!({"_id": format!("d{i:03}")}),
        })
        .collect();
    ok(store.insert_many(COLL, docs.clone()).await, "insert_many");
    let mut values: Vec<Value> = (0..MAX_IN_LIST as i64 - 2).map(|i| json!(i * 7)).collect();
    values.push(json!("s8"));
    values.push(json!("s9"));
    for (path, with_null) in [("n", false), ("s", false), ("n", true)] {
        let mut list = values.clone();
        if with_null {
            list[0] = Value::Null;
        }
        for op in ["$in", "$nin"] {
            let filter = json!({ path: { op: list.clone() } });
            let parsed = f(&filter);
            let mut want: Vec<String> = docs
                .iter()
                .filter(|d| palisade_core::backend::eval::matches(&parsed, d))
                .map(|d| d["_id"].as_str().unwrap_or_default().to_owned())
                .collect();
            want.sort();
            assert!(!want.is_empty(), "{path} {op}: the case should match something");
            let got = ok(store.count(COLL, parsed.clone()).await, "count");
            assert_eq!(got, want.len() as u64, "count {path} {op} (null: {with_null})");
            let want_refs: Vec<&str> = want.iter().map(String::as_str).collect();
            assert_finds(store, filter, &want_refs).await;
        }
    }
    let too_many: Vec<Value> = (0..=MAX_IN_LIST as i64).map(Value::from).collect();
    assert!(Filter::parse(&json!({"n": {"$in": too_many}})).is_err_and(|e| e.kind() == ErrorKind::InvalidInput));
}
