//! Conformance cases for [`DocumentStore`].
//!
//! Every case starts in a fresh, empty namespace. Filter cases insert documents
//! of different shapes (missing field, null, string, int, float, array, nested)
//! and assert the exact set of matching `_id`s; MongoDB's semantics, as
//! implemented by [`matches()`], are the reference.

use std::fmt::Debug;

use chrono::{DateTime, FixedOffset, SecondsFormat, TimeDelta, Utc};
use futures::future::join_all;
use serde_json::{json, Map, Value};

use super::{assert_kind, ok};
use palisade_core::backend::eval::matches;
use palisade_core::documents::{
    CollectionSpec, FieldPath, Filter, FindOptions, IndexSpec, Projection, SortKey, UpdateOps, MAX_FIND_LIMIT,
};
use palisade_core::{DocumentStore, Error, ErrorDetail, ErrorKind, Result};

/// The collection most cases use.
const COLL: &str = "things";

// ---------------------------------------------------------------- helpers

/// Parses a JSON filter (a case bug if it does not parse).
fn f(filter: &Value) -> Filter {
    Filter::parse(filter).unwrap_or_else(|e| panic!("filter {filter} does not parse: {e}"))
}

/// Parses a JSON update (a case bug if it does not parse).
fn u(update: Value) -> UpdateOps {
    UpdateOps::parse(&update).unwrap_or_else(|e| panic!("update {update} does not parse: {e}"))
}

fn key(path: &str) -> SortKey {
    SortKey::asc(path).unwrap_or_else(|e| panic!("sort key {path}: {e}"))
}

fn key_desc(path: &str) -> SortKey {
    SortKey::desc(path).unwrap_or_else(|e| panic!("sort key {path}: {e}"))
}

fn id_of(doc: &Value) -> String {
    doc.get("_id").and_then(Value::as_str).unwrap_or_else(|| panic!("document without string `_id`: {doc}")).to_owned()
}

/// The `_id`s of `docs`, in the order given.
fn ids(docs: &[Value]) -> Vec<String> {
    docs.iter().map(id_of).collect()
}

fn strings(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|s| (*s).to_owned()).collect()
}

/// An object from pairs (for keys that `json!` cannot spell).
fn obj(pairs: Vec<(String, Value)>) -> Value {
    Value::Object(pairs.into_iter().collect::<Map<_, _>>())
}

fn docs(v: Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a,
        other => panic!("expected an array of documents, got {other}"),
    }
}

/// Checks that `r` failed with `kind` and returns the error.
#[track_caller]
fn err<T: Debug>(r: Result<T>, kind: ErrorKind, what: &str) -> Error {
    match r {
        Ok(v) => panic!("{what}: expected {kind} error, got Ok({v:?})"),
        Err(e) => {
            assert_eq!(e.kind(), kind, "{what}: expected {kind}, got {e}");
            e
        }
    }
}

/// Checks for `Conflict` with `UniqueViolation`; returns the index name.
#[track_caller]
fn unique_violation<T: Debug>(r: Result<T>, what: &str) -> String {
    let e = err(r, ErrorKind::Conflict, what);
    match e.detail() {
        Some(ErrorDetail::UniqueViolation { index }) => index.clone(),
        other => panic!("{what}: expected UniqueViolation detail, got {other:?}"),
    }
}

async fn ensure(store: &dyn DocumentStore, spec: CollectionSpec) {
    ok(store.ensure_collection(spec).await, "ensure_collection");
}

/// Ensures `spec`, which carries a schema. Returns `false` when the backend
/// lacks `schema_validation`, after checking that it says `Unsupported`.
async fn ensure_with_schema(store: &dyn DocumentStore, spec: CollectionSpec) -> bool {
    if !store.capabilities().schema_validation {
        assert_kind(
            store.ensure_collection(spec).await,
            ErrorKind::Unsupported,
            "ensure_collection with a schema without schema_validation",
        );
        crate::not_applicable("schema_validation");
        return false;
    }
    ensure(store, spec).await;
    true
}

/// Creates the plain collection `COLL` and inserts `docs` (a JSON array).
async fn seed(store: &dyn DocumentStore, docs_json: Value) {
    ensure(store, CollectionSpec::new(COLL)).await;
    ok(store.insert_many(COLL, docs(docs_json)).await, "insert_many");
}

async fn get(store: &dyn DocumentStore, id: &str) -> Option<Value> {
    ok(store.get(COLL, id).await, "get")
}

/// The stored document `id`, which must exist.
async fn doc(store: &dyn DocumentStore, id: &str) -> Value {
    get(store, id).await.unwrap_or_else(|| panic!("document {id} is missing"))
}

/// Every visible document of `COLL`, ordered by `_id`.
async fn all(store: &dyn DocumentStore) -> Vec<Value> {
    ok(store.find(COLL, FindOptions::new(Filter::all())).await, "find all")
}

async fn count_all(store: &dyn DocumentStore) -> u64 {
    ok(store.count(COLL, Filter::all()).await, "count all")
}

/// Sorted `_id`s of the documents `filter` finds.
async fn found(store: &dyn DocumentStore, filter: &Value) -> Vec<String> {
    let mut got = ids(&ok(store.find(COLL, FindOptions::new(f(filter))).await, "find"));
    got.sort();
    got
}

/// Asserts that `filter` matches exactly `expected` (by `_id`), with `find`
/// and with `count`.
async fn assert_finds(store: &dyn DocumentStore, filter: Value, expected: &[&str]) {
    let mut want = strings(expected);
    want.sort();
    assert_eq!(found(store, &filter).await, want, "find {filter}");
    let n = ok(store.count(COLL, f(&filter)).await, "count");
    assert_eq!(n, want.len() as u64, "count {filter}");
}

/// `_id`s in the order `find` returns them with `options`.
async fn find_ids(store: &dyn DocumentStore, options: FindOptions) -> Vec<String> {
    ids(&ok(store.find(COLL, options).await, "find"))
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn rfc3339_at_offset(t: DateTime<Utc>, offset_hours: i32) -> String {
    let tz = FixedOffset::east_opt(offset_hours * 3600).expect("valid offset");
    t.with_timezone(&tz).to_rfc3339_opts(SecondsFormat::Millis, false)
}

/// A schema of the documented subset, used by the schema cases.
fn threat_schema() -> Value {
    json!({
        "type": "object",
        "required": ["name", "score"],
        "additionalProperties": false,
        "properties": {
            "_id": {"type": "string", "pattern": "^u-"},
            "name": {"type": "string", "minLength": 2, "maxLength": 8},
            "score": {"type": "integer", "minimum": 0, "maximum": 100},
            "verdict": {"enum": ["clean", "malicious"]},
            "tags": {"type": "array", "items": {"type": "string", "pattern": "^[a-z]+$"}}
        }
    })
}

// ---------------------------------------------------------------- collections

/// Ensuring an existing collection with the same spec is a no-op that keeps its documents and indexes.
pub async fn ensure_collection_is_idempotent(store: &dyn DocumentStore) {
    let spec = || CollectionSpec::new(COLL).with_index(IndexSpec::unique(vec![key("ip")]));
    assert!(ok(store.ensure_collection(spec()).await, "first ensure"), "the first ensure must report creation");
    ok(store.insert(COLL, json!({"_id": "x", "ip": "10.0.0.1"})).await, "insert");
    assert!(!ok(store.ensure_collection(spec()).await, "second ensure"), "the second ensure must report no creation");
    assert_eq!(count_all(store).await, 1, "ensure must keep the documents");
    unique_violation(store.insert(COLL, json!({"ip": "10.0.0.1"})).await, "insert after re-ensure");
}

/// Ensuring an existing collection with a different spec is `Conflict` and leaves the old spec in force.
pub async fn ensure_collection_with_different_spec_is_conflict(store: &dyn DocumentStore) {
    ensure(store, CollectionSpec::new(COLL).with_index(IndexSpec::on(vec![key("b")]))).await;
    ok(store.insert(COLL, json!({"_id": "1", "b": 1})).await, "insert");
    let changed = CollectionSpec::new(COLL).with_index(IndexSpec::unique(vec![key("b")]));
    assert_kind(store.ensure_collection(changed).await, ErrorKind::Conflict, "ensure with a different spec");
    let with_ttl = CollectionSpec::new(COLL).with_index(IndexSpec::on(vec![key("b")])).with_ttl("seen", 60);
    assert_kind(store.ensure_collection(ok(with_ttl, "ttl spec")).await, ErrorKind::Conflict, "ensure adding a TTL");
    ok(store.insert(COLL, json!({"_id": "2", "b": 1})).await, "the unique index must not have been created");
    assert_eq!(count_all(store).await, 2);
}

/// Collection names outside `[A-Za-z][A-Za-z0-9_]{0,62}` are `InvalidInput` for every operation.
pub async fn invalid_collection_name_is_invalid_input(store: &dyn DocumentStore) {
    let too_long = format!("a{}", "b".repeat(63));
    let bad = ["", "1abc", "_x", "a-b", "a.b", "a b", "é", "x;drop table", "nul\0", too_long.as_str()];
    for name in bad {
        let what = format!("collection name {name:?}");
        assert_kind(store.ensure_collection(CollectionSpec::new(name)).await, ErrorKind::InvalidInput, &what);
        assert_kind(store.insert(name, json!({"a": 1})).await, ErrorKind::InvalidInput, &what);
        assert_kind(store.find(name, FindOptions::new(Filter::all())).await, ErrorKind::InvalidInput, &what);
        assert_kind(store.drop_collection(name).await, ErrorKind::InvalidInput, &what);
    }
    let longest = format!("a{}", "B_9".repeat(20) + "xy");
    assert_eq!(longest.len(), 63);
    assert!(ok(store.ensure_collection(CollectionSpec::new(longest.as_str())).await, "63-byte name"));
    ok(store.insert(&longest, json!({"a": 1})).await, "insert into 63-byte name");
}

/// Every operation on a collection that was never ensured is `NotFound`, and none creates it.
pub async fn unknown_collection_is_not_found(store: &dyn DocumentStore) {
    ensure(store, CollectionSpec::new(COLL)).await;
    let nope = "nowhere";
    let nf = ErrorKind::NotFound;
    assert_kind(store.insert(nope, json!({"a": 1})).await, nf, "insert");
    assert_kind(store.insert_many(nope, vec![json!({"a": 1})]).await, nf, "insert_many");
    assert_kind(store.get(nope, "x").await, nf, "get");
    assert_kind(store.replace(nope, "x", json!({"a": 1}), None).await, nf, "replace");
    assert_kind(store.update(nope, Filter::all(), u(json!({"$set": {"a": 1}}))).await, nf, "update");
    assert_kind(store.delete(nope, Filter::all()).await, nf, "delete");
    assert_kind(store.find(nope, FindOptions::new(Filter::all())).await, nf, "find");
    assert_kind(store.count(nope, Filter::all()).await, nf, "count");
    assert!(!ok(store.drop_collection(nope).await, "drop_collection"), "dropping an unknown collection returns false");
    assert_kind(store.count(nope, Filter::all()).await, nf, "count after the failed writes");
}

// ---------------------------------------------------------------- insert and get

/// `insert` without `_id` generates a UUID v7 `_id`, sets `_version` to 1 and stores the document.
pub async fn insert_assigns_id_and_version_one(store: &dyn DocumentStore) {
    ensure(store, CollectionSpec::new(COLL)).await;
    let stored = ok(store.insert(COLL, json!({"a": 1, "b": {"c": "x"}})).await, "insert");
    let id = id_of(&stored);
    let uuid = uuid::Uuid::parse_str(&id).unwrap_or_else(|e| panic!("generated _id {id} is not a UUID: {e}"));
    assert_eq!(uuid.get_version_num(), 7, "generated _id must be a UUID v7");
    assert_eq!(stored, json!({"_id": id, "_version": 1, "a": 1, "b": {"c": "x"}}));
    assert_eq!(get(store, &id).await, Some(stored.clone()), "get returns the stored document");
    let other = ok(store.insert(COLL, json!({"a": 1})).await, "second insert");
    assert_ne!(id_of(&other), id, "generated ids are distinct");
}

/// A client-supplied `_id` (any string, unicode and quotes included) is kept as given.
pub async fn insert_with_client_id_keeps_it(store: &dyn DocumentStore) {
    ensure(store, CollectionSpec::new(COLL)).await;
    for (i, id) in ["ip:10.0.0.1", "ключ 🔑", "a'b\"c\\d", "e\u{301}"].into_iter().enumerate() {
        let stored = ok(store.insert(COLL, json!({"_id": id, "v": i})).await, "insert");
        assert_eq!(stored, json!({"_id": id, "_version": 1, "v": i}), "stored form of {id:?}");
        assert_eq!(get(store, id).await, Some(stored), "get {id:?}");
    }
    assert_eq!(get(store, "\u{e9}").await, None, "ids compare by code point, not by normal form");
}

/// Inserting an `_id` that exists is `Conflict` (`UniqueViolation` on `_id`) and keeps the original.
pub async fn insert_duplicate_id_is_conflict(store: &dyn DocumentStore) {
    ensure(store, CollectionSpec::new(COLL)).await;
    ok(store.insert(COLL, json!({"_id": "x", "a": 1})).await, "insert");
    let index = unique_violation(store.insert(COLL, json!({"_id": "x", "a": 2})).await, "duplicate insert");
    assert_eq!(index, "_id");
    assert_eq!(doc(store, "x").await, json!({"_id": "x", "_version": 1, "a": 1}));
    assert_eq!(count_all(store).await, 1);
}

/// A document that is not a JSON object (or an `_id` that is not a string) is `InvalidInput` and stores nothing.
pub async fn insert_non_object_is_invalid_input(store: &dyn DocumentStore) {
    ensure(store, CollectionSpec::new(COLL)).await;
    for bad in [json!(1), json!("s"), json!(null), json!([{"a": 1}]), json!(true), json!({"_id": 42})] {
        assert_kind(store.insert(COLL, bad.clone()).await, ErrorKind::InvalidInput, &format!("insert {bad}"));
    }
    let batch = vec![json!({"_id": "fine"}), json!(5)];
    assert_kind(store.insert_many(COLL, batch).await, ErrorKind::InvalidInput, "insert_many with a non-object");
    assert_eq!(get(store, "fine").await, None, "nothing of the rejected batch is stored");
    assert_eq!(count_all(store).await, 0);
}

/// `_version` is store-managed: a document carrying it is `InvalidInput` and stores nothing.
pub async fn insert_with_version_field_is_invalid_input(store: &dyn DocumentStore) {
    ensure(store, CollectionSpec::new(COLL)).await;
    assert_kind(store.insert(COLL, json!({"_id": "v", "_version": 7})).await, ErrorKind::InvalidInput, "insert");
    let batch = vec![json!({"_id": "w"}), json!({"_id": "v", "_version": 1})];
    assert_kind(store.insert_many(COLL, batch).await, ErrorKind::InvalidInput, "insert_many");
    assert_eq!(get(store, "v").await, None);
    assert_eq!(get(store, "w").await, None);
    assert_eq!(count_all(store).await, 0);
}

/// Field names with `$`, `.` or control characters, empty or over 256 bytes, or nesting over 32 are `InvalidInput`.
pub async fn insert_hostile_field_names_is_invalid_input(store: &dyn DocumentStore) {
    ensure(store, CollectionSpec::new(COLL)).await;
    let mut deep = json!(1);
    for _ in 0..40 {
        deep = json!({ "d": deep });
    }
    let hostile = vec![
        json!({"$where": "1"}),
        json!({"a.b": 1}),
        json!({"a": {"$gt": 1}}),
        json!({"": 1}),
        json!({"a\u{0}b": 1}),
        json!({"a\nb": 1}),
        json!({"list": [{"$x": 1}]}),
        json!({"n": {"m": {"x.y": 1}}}),
        obj(vec![("f".repeat(257), json!(1))]),
        deep,
    ];
    for (i, mut bad) in hostile.into_iter().enumerate() {
        bad["_id"] = json!(format!("h{i}"));
        assert_kind(store.insert(COLL, bad.clone()).await, ErrorKind::InvalidInput, &format!("insert {bad}"));
    }
    assert_eq!(count_all(store).await, 0);
    let fine = obj(vec![("f".repeat(256), json!(1)), ("_id".to_owned(), json!("ok"))]);
    ok(store.insert(COLL, fine).await, "a 256-byte field name is accepted");
}

/// `insert_many` with one duplicate `_id` (stored or within the batch) is `Conflict` and stores none.
pub async fn insert_many_is_atomic_on_conflict(store: &dyn DocumentStore) {
    ensure(store, CollectionSpec::new(COLL)).await;
    ok(store.insert(COLL, json!({"_id": "b", "v": 0})).await, "insert");
    let batch = docs(json!([{"_id": "a"}, {"_id": "b", "v": 1}, {"_id": "c"}]));
    unique_violation(store.insert_many(COLL, batch).await, "insert_many clashing with a stored id");
    let batch = docs(json!([{"_id": "d"}, {"_id": "e"}, {"_id": "d"}]));
    unique_violation(store.insert_many(COLL, batch).await, "insert_many with a repeated id");
    assert_eq!(ids(&all(store).await), strings(&["b"]), "only the original document remains");
    assert_eq!(doc(store, "b").await["v"], json!(0));
}

/// `insert_many` with one schema-violating document is `SchemaViolation` and stores none.
pub async fn insert_many_is_atomic_on_schema_violation(store: &dyn DocumentStore) {
    if !ensure_with_schema(store, CollectionSpec::new(COLL).with_schema(threat_schema())).await {
        return;
    }
    let batch = docs(json!([
        {"_id": "u-1", "name": "one", "score": 1},
        {"_id": "u-2", "name": "two"},
        {"_id": "u-3", "name": "three", "score": 3}
    ]));
    assert_kind(store.insert_many(COLL, batch).await, ErrorKind::SchemaViolation, "insert_many");
    assert_eq!(count_all(store).await, 0, "no document of the batch is stored");
    assert_eq!(get(store, "u-1").await, None);
}

/// `get` of an id that was never stored, or was deleted, is `None`.
pub async fn get_missing_is_none(store: &dyn DocumentStore) {
    ensure(store, CollectionSpec::new(COLL)).await;
    assert_eq!(get(store, "never").await, None);
    ok(store.insert(COLL, json!({"_id": "gone"})).await, "insert");
    assert_eq!(ok(store.delete(COLL, f(&json!({"_id": "gone"}))).await, "delete"), 1);
    assert_eq!(get(store, "gone").await, None);
}

// ---------------------------------------------------------------- schema

/// Inserts breaking any rule of the schema subset are `SchemaViolation`; the schema sees `_id`, not `_version`.
pub async fn schema_violation_on_insert_changes_nothing(store: &dyn DocumentStore) {
    if !ensure_with_schema(store, CollectionSpec::new(COLL).with_schema(threat_schema())).await {
        return;
    }
    let valid = json!({"_id": "u-0", "name": "ok", "score": 5, "verdict": "clean", "tags": ["a"]});
    ok(store.insert(COLL, valid).await, "a valid document (additionalProperties: false, so no `_version` is seen)");
    let violations = [
        json!({"_id": "u-1", "score": 1}),
        json!({"_id": "u-2", "name": "x", "score": 1}),
        json!({"_id": "u-3", "name": "too-long-name", "score": 1}),
        json!({"_id": "u-4", "name": "ok", "score": 101}),
        json!({"_id": "u-5", "name": "ok", "score": -1}),
        json!({"_id": "u-6", "name": "ok", "score": 1.5}),
        json!({"_id": "u-7", "name": "ok", "score": "1"}),
        json!({"_id": "u-8", "name": "ok", "score": 1, "verdict": "meh"}),
        json!({"_id": "u-9", "name": "ok", "score": 1, "tags": ["A"]}),
        json!({"_id": "u-10", "name": "ok", "score": 1, "tags": "a"}),
        json!({"_id": "u-11", "name": "ok", "score": 1, "extra": true}),
        json!({"_id": "x-12", "name": "ok", "score": 1}),
    ];
    for bad in violations {
        let what = format!("insert {bad}");
        assert_kind(store.insert(COLL, bad).await, ErrorKind::SchemaViolation, &what);
    }
    assert_eq!(ids(&all(store).await), strings(&["u-0"]));
}

/// An update that would break the schema for any matched document is `SchemaViolation` and changes no document.
pub async fn schema_violation_on_update_changes_nothing(store: &dyn DocumentStore) {
    if !ensure_with_schema(store, CollectionSpec::new(COLL).with_schema(threat_schema())).await {
        return;
    }
    let batch = docs(json!([{"_id": "u-a", "name": "aa", "score": 10}, {"_id": "u-b", "name": "bb", "score": 50}]));
    ok(store.insert_many(COLL, batch).await, "insert_many");
    let before = all(store).await;
    let r = store.update(COLL, Filter::all(), u(json!({"$inc": {"score": 60}}))).await;
    assert_kind(r, ErrorKind::SchemaViolation, "$inc pushing one document over maximum");
    let r = store.update(COLL, f(&json!({"_id": "u-a"})), u(json!({"$unset": {"name": ""}}))).await;
    assert_kind(r, ErrorKind::SchemaViolation, "$unset of a required field");
    let r = store.update(COLL, f(&json!({"_id": "u-a"})), u(json!({"$set": {"verdict": "meh"}}))).await;
    assert_kind(r, ErrorKind::SchemaViolation, "$set outside the enum");
    assert_eq!(all(store).await, before, "no document (nor version) changed");
}

/// A replacement that breaks the schema is `SchemaViolation` and keeps the stored document and version.
pub async fn schema_violation_on_replace_changes_nothing(store: &dyn DocumentStore) {
    if !ensure_with_schema(store, CollectionSpec::new(COLL).with_schema(threat_schema())).await {
        return;
    }
    let stored = ok(store.insert(COLL, json!({"_id": "u-1", "name": "aa", "score": 1})).await, "insert");
    let r = store.replace(COLL, "u-1", json!({"name": "aa"}), None).await;
    assert_kind(r, ErrorKind::SchemaViolation, "replace without a required field");
    let r = store.replace(COLL, "u-1", json!({"name": "aa", "score": 1, "tags": [1]}), Some(1)).await;
    assert_kind(r, ErrorKind::SchemaViolation, "replace with a bad array item");
    assert_eq!(doc(store, "u-1").await, stored);
}

/// A schema using a keyword outside the documented subset is `InvalidInput` and creates no collection.
pub async fn schema_keyword_outside_subset_is_invalid_input(store: &dyn DocumentStore) {
    if !ensure_with_schema(store, CollectionSpec::new("probe").with_schema(json!({"type": "object"}))).await {
        return;
    }
    let outside = [
        json!({"type": "object", "oneOf": [{"required": ["a"]}]}),
        json!({"properties": {"a": {"$ref": "#"}}}),
        json!({"properties": {"a": {"format": "email"}}}),
        json!({"type": "array", "items": {"const": 1}}),
        json!({"patternProperties": {"^a": {"type": "string"}}}),
        json!({"additionalProperties": {"not": {"type": "string"}}}),
    ];
    for schema in outside {
        let what = format!("schema {schema}");
        assert_kind(
            store.ensure_collection(CollectionSpec::new(COLL).with_schema(schema)).await,
            ErrorKind::InvalidInput,
            &what,
        );
        assert_kind(store.count(COLL, Filter::all()).await, ErrorKind::NotFound, "the collection was not created");
    }
    assert!(ok(store.ensure_collection(CollectionSpec::new(COLL)).await, "ensure"), "the name is still free");
}

// ---------------------------------------------------------------- unique indexes

/// A second document with the same value in a unique index is `Conflict` naming the index.
pub async fn unique_index_conflict_on_insert(store: &dyn DocumentStore) {
    let index = IndexSpec::unique(vec![key("ip")]);
    ensure(store, CollectionSpec::new(COLL).with_index(index.clone())).await;
    ok(store.insert(COLL, json!({"_id": "a", "ip": "1.2.3.4"})).await, "insert");
    let name = unique_violation(store.insert(COLL, json!({"_id": "b", "ip": "1.2.3.4"})).await, "duplicate value");
    assert_eq!(name, index.name(), "UniqueViolation names the index");
    ok(store.insert(COLL, json!({"_id": "c", "ip": "1.2.3.5"})).await, "a different value");
    assert_eq!(ids(&all(store).await), strings(&["a", "c"]));
}

/// An update creating a unique-index duplicate (with a stored or a co-updated document) is `Conflict` and changes nothing.
pub async fn unique_index_conflict_on_update_changes_nothing(store: &dyn DocumentStore) {
    ensure(store, CollectionSpec::new(COLL).with_index(IndexSpec::unique(vec![key("ip")]))).await;
    ok(store.insert_many(COLL, docs(json!([{"_id": "a", "ip": "1"}, {"_id": "b", "ip": "2"}]))).await, "insert_many");
    let before = all(store).await;
    let r = store.update(COLL, f(&json!({"_id": "b"})), u(json!({"$set": {"ip": "1"}}))).await;
    unique_violation(r, "update onto a stored value");
    let r = store.update(COLL, Filter::all(), u(json!({"$set": {"ip": "3"}}))).await;
    unique_violation(r, "update making two matched documents equal");
    assert_eq!(all(store).await, before, "nothing changed");
}

/// Unique indexes compare numbers by value: `1` and `1.0` collide, and so do `10000000000000000` and `1e16`.
pub async fn unique_index_treats_int_and_float_as_equal(store: &dyn DocumentStore) {
    ensure(store, CollectionSpec::new(COLL).with_index(IndexSpec::unique(vec![key("n")]))).await;
    ok(store.insert(COLL, json!({"_id": "int", "n": 1})).await, "insert 1");
    unique_violation(store.insert(COLL, json!({"_id": "float", "n": 1.0})).await, "insert 1.0");
    ok(store.insert(COLL, json!({"_id": "other", "n": 1.5})).await, "insert 1.5");
    ok(store.insert(COLL, json!({"_id": "big", "n": 10_000_000_000_000_000u64})).await, "insert 10^16");
    unique_violation(store.insert(COLL, json!({"_id": "bigfloat", "n": 1e16})).await, "insert 1e16");
    assert_eq!(ids(&all(store).await), strings(&["big", "int", "other"]));
}

/// Unique indexes skip documents lacking the field, like a sparse index.
pub async fn unique_index_ignores_documents_missing_the_field(store: &dyn DocumentStore) {
    ensure(store, CollectionSpec::new(COLL).with_index(IndexSpec::unique(vec![key("email")]))).await;
    ok(store.insert(COLL, json!({"_id": "a"})).await, "first without email");
    ok(store.insert(COLL, json!({"_id": "b", "other": 1})).await, "second without email");
    ok(store.insert(COLL, json!({"_id": "c", "email": "x@y"})).await, "with email");
    unique_violation(store.insert(COLL, json!({"_id": "d", "email": "x@y"})).await, "duplicate email");
    assert_eq!(count_all(store).await, 3);
}

/// A compound unique index conflicts only when every field is equal.
pub async fn compound_unique_index_considers_all_fields(store: &dyn DocumentStore) {
    let index = IndexSpec::unique(vec![key("ip"), key("port")]);
    ensure(store, CollectionSpec::new(COLL).with_index(index.clone())).await;
    for (id, d) in [
        ("a", json!({"ip": "1", "port": 80})),
        ("b", json!({"ip": "1", "port": 443})),
        ("c", json!({"ip": "2", "port": 80})),
    ] {
        let mut d = d;
        d["_id"] = json!(id);
        ok(store.insert(COLL, d).await, "distinct pair");
    }
    let name = unique_violation(store.insert(COLL, json!({"_id": "d", "ip": "1", "port": 80})).await, "same pair");
    assert_eq!(name, index.name());
    ok(store.insert(COLL, json!({"_id": "e", "ip": "1"})).await, "missing port is not indexed");
    ok(store.insert(COLL, json!({"_id": "f", "ip": "1"})).await, "missing port again");
    assert_eq!(ids(&all(store).await), strings(&["a", "b", "c", "e", "f"]));
}

/// Unique indexes compare values whole at any size: long values differing
/// only at their end both fit, an exact repeat conflicts, and filters on the
/// field tell them apart.
pub async fn unique_index_compares_long_values_whole(store: &dyn DocumentStore) {
    ensure(store, CollectionSpec::new(COLL).with_index(IndexSpec::unique(vec![key("blob")]))).await;
    let long = "x".repeat(20_000);
    ok(store.insert(COLL, json!({"_id": "a", "blob": format!("{long}a")})).await, "first long value");
    ok(store.insert(COLL, json!({"_id": "b", "blob": format!("{long}b")})).await, "differs in the last character");
    unique_violation(store.insert(COLL, json!({"_id": "c", "blob": format!("{long}a")})).await, "exact repeat");
    let hits = ok(store.find(COLL, FindOptions::new(f(&json!({"blob": format!("{long}b")})))).await, "find");
    assert_eq!(ids(&hits), strings(&["b"]));
    let above = f(&json!({"blob": {"$gt": format!("{long}a")}}));
    assert_eq!(ok(store.count(COLL, above).await, "count"), 1);
}

// ---------------------------------------------------------------- replace

/// `replace` stores the new body in full (dropping old fields) and increments `_version`.
pub async fn replace_increments_version(store: &dyn DocumentStore) {
    ensure(store, CollectionSpec::new(COLL)).await;
    ok(store.insert(COLL, json!({"_id": "r", "a": 1, "b": 1})).await, "insert");
    let v2 = ok(store.replace(COLL, "r", json!({"a": 2}), None).await, "replace");
    assert_eq!(v2, json!({"_id": "r", "_version": 2, "a": 2}));
    assert_eq!(doc(store, "r").await, v2);
    let v3 = ok(store.replace(COLL, "r", json!({"_id": "r", "c": [1]}), Some(2)).await, "replace at version 2");
    assert_eq!(v3, json!({"_id": "r", "_version": 3, "c": [1]}));
    assert_eq!(doc(store, "r").await, v3);
}

/// `replace` with an expected version that is stale is `Conflict` carrying both versions, and changes nothing.
pub async fn replace_with_stale_version_is_conflict(store: &dyn DocumentStore) {
    ensure(store, CollectionSpec::new(COLL)).await;
    ok(store.insert(COLL, json!({"_id": "r", "a": 1})).await, "insert");
    ok(store.replace(COLL, "r", json!({"a": 2}), Some(1)).await, "replace at version 1");
    let e = err(store.replace(COLL, "r", json!({"a": 3}), Some(1)).await, ErrorKind::Conflict, "stale replace");
    assert_eq!(e.detail(), Some(&ErrorDetail::DocumentVersionConflict { expected: 1, actual: 2 }));
    assert_eq!(doc(store, "r").await, json!({"_id": "r", "_version": 2, "a": 2}));
}

/// `replace` of a missing id is `NotFound` and does not insert.
pub async fn replace_missing_is_not_found(store: &dyn DocumentStore) {
    ensure(store, CollectionSpec::new(COLL)).await;
    ok(store.insert(COLL, json!({"_id": "other"})).await, "insert");
    assert_kind(store.replace(COLL, "nope", json!({"a": 1}), None).await, ErrorKind::NotFound, "replace");
    assert_eq!(get(store, "nope").await, None, "replace must not upsert");
    assert_eq!(count_all(store).await, 1);
}

/// A body `_version` is the expected version: stale is `Conflict`, disagreeing with the argument `InvalidInput`.
pub async fn replace_with_version_in_body_checks_it(store: &dyn DocumentStore) {
    ensure(store, CollectionSpec::new(COLL)).await;
    ok(store.insert(COLL, json!({"_id": "r", "a": 1})).await, "insert");
    let e = err(
        store.replace(COLL, "r", json!({"_version": 5, "a": 2}), None).await,
        ErrorKind::Conflict,
        "stale body version",
    );
    assert_eq!(e.detail(), Some(&ErrorDetail::DocumentVersionConflict { expected: 5, actual: 1 }));
    let r = store.replace(COLL, "r", json!({"_version": 1, "a": 2}), Some(2)).await;
    assert_kind(r, ErrorKind::InvalidInput, "body version disagrees with the argument");
    assert_eq!(doc(store, "r").await, json!({"_id": "r", "_version": 1, "a": 1}), "failed replaces changed nothing");
    let stored = ok(store.replace(COLL, "r", json!({"_version": 1, "a": 2}), None).await, "current body version");
    assert_eq!(stored, json!({"_id": "r", "_version": 2, "a": 2}));
}

// ---------------------------------------------------------------- filters

/// Documents with one field `a` of many shapes, ids naming the shape.
fn shapes() -> Value {
    json!([
        {"_id": "missing", "b": 1},
        {"_id": "null", "a": null},
        {"_id": "str5", "a": "5"},
        {"_id": "int5", "a": 5},
        {"_id": "float5", "a": 5.0},
        {"_id": "float55", "a": 5.5},
        {"_id": "arr56", "a": [5, 6]},
        {"_id": "arr4", "a": [4]},
        {"_id": "obj", "a": {"x": 1}},
        {"_id": "nested", "a": {"b": 5}},
        {"_id": "true", "a": true}
    ])
}

/// `{"a": v}` and `{"a": {"$eq": v}}` match equal values (numbers across int/float, array elements, whole arrays and objects).
pub async fn filter_eq_and_implicit_eq(store: &dyn DocumentStore) {
    seed(store, shapes()).await;
    assert_finds(store, json!({"a": 5}), &["int5", "float5", "arr56"]).await;
    assert_finds(store, json!({"a": {"$eq": 5}}), &["int5", "float5", "arr56"]).await;
    assert_finds(store, json!({"a": "5"}), &["str5"]).await;
    assert_finds(store, json!({"a": {"x": 1}}), &["obj"]).await;
    assert_finds(store, json!({"a": {"$eq": {"x": 1}}}), &["obj"]).await;
    assert_finds(store, json!({"a": [5, 6]}), &["arr56"]).await;
    assert_finds(store, json!({"a": [6, 5]}), &[]).await;
    assert_finds(store, json!({"a": {"x": 2}}), &[]).await;
}

/// `$ne` matches every document whose field is not equal — including missing and null fields.
pub async fn filter_ne_matches_missing_fields(store: &dyn DocumentStore) {
    seed(store, shapes()).await;
    let others = ["missing", "null", "str5", "float55", "arr4", "obj", "nested", "true"];
    assert_finds(store, json!({"a": {"$ne": 5}}), &others).await;
    assert_finds(
        store,
        json!({"zzz": {"$ne": 1}}),
        &["missing", "null", "str5", "int5", "float5", "float55", "arr56", "arr4", "obj", "nested", "true"],
    )
    .await;
    assert_finds(
        store,
        json!({"b": {"$ne": 1}}),
        &["null", "str5", "int5", "float5", "float55", "arr56", "arr4", "obj", "nested", "true"],
    )
    .await;
}

/// `$gt $gte $lt $lte` on numbers hold if any reached value (or array element) satisfies them, each condition separately.
pub async fn filter_range_operators_on_numbers(store: &dyn DocumentStore) {
    seed(
        store,
        json!([
            {"_id": "m1", "a": -1}, {"_id": "i1", "a": 1}, {"_id": "i2", "a": 2}, {"_id": "f25", "a": 2.5},
            {"_id": "i3", "a": 3}, {"_id": "s3", "a": "3"}, {"_id": "missing"}, {"_id": "null", "a": null},
            {"_id": "arr", "a": [0, 10]}, {"_id": "bool", "a": true}
        ]),
    )
    .await;
    assert_finds(store, json!({"a": {"$gt": 2}}), &["f25", "i3", "arr"]).await;
    assert_finds(store, json!({"a": {"$gte": 2}}), &["i2", "f25", "i3", "arr"]).await;
    assert_finds(store, json!({"a": {"$lt": 2}}), &["m1", "i1", "arr"]).await;
    assert_finds(store, json!({"a": {"$lte": 2}}), &["m1", "i1", "i2", "arr"]).await;
    assert_finds(store, json!({"a": {"$gt": 1, "$lt": 3}}), &["i2", "f25", "arr"]).await;
    assert_finds(store, json!({"a": {"$gt": 10}}), &[]).await;
}

/// Ints and floats compare by numeric value (`1 == 1.0`, `2 < 2.5`); big integers compare exactly.
pub async fn filter_compares_int_and_float_numerically(store: &dyn DocumentStore) {
    seed(store, json!([
        {"_id": "i1", "a": 1}, {"_id": "f1", "a": 1.0}, {"_id": "i2", "a": 2}, {"_id": "f25", "a": 2.5},
        {"_id": "fm05", "a": -0.5}, {"_id": "big", "a": 9007199254740993_i64}, {"_id": "big0", "a": 9007199254740992_i64}
    ])).await;
    assert_finds(store, json!({"a": 1}), &["i1", "f1"]).await;
    assert_finds(store, json!({"a": 1.0}), &["i1", "f1"]).await;
    assert_finds(store, json!({"a": {"$gt": 2, "$lt": 100}}), &["f25"]).await;
    assert_finds(store, json!({"a": {"$lt": 2.5}}), &["i1", "f1", "i2", "fm05"]).await;
    assert_finds(store, json!({"a": {"$gte": 2.0, "$lte": 2.5}}), &["i2", "f25"]).await;
    assert_finds(store, json!({"a": {"$in": [2.0, -0.5]}}), &["i2", "fm05"]).await;
    assert_finds(store, json!({"a": {"$gt": 9007199254740992_i64}}), &["big"]).await;
    assert_finds(store, json!({"a": 9007199254740992_i64}), &["big0"]).await;
}

/// Comparisons stay within a type bracket: `{"$gt": 5}` never matches a string such as `"9"`, nor a boolean.
pub async fn filter_type_bracketing_never_matches_string_with_number(store: &dyn DocumentStore) {
    seed(
        store,
        json!([
            {"_id": "s9", "a": "9"}, {"_id": "s10", "a": "10"}, {"_id": "i5", "a": 5}, {"_id": "i50", "a": 50},
            {"_id": "true", "a": true}, {"_id": "null", "a": null}, {"_id": "missing"}, {"_id": "mixed", "a": ["70", 3]}
        ]),
    )
    .await;
    assert_finds(store, json!({"a": {"$gt": 5}}), &["i50"]).await;
    assert_finds(store, json!({"a": {"$lt": 100}}), &["i5", "i50", "mixed"]).await;
    assert_finds(store, json!({"a": {"$lt": "5"}}), &["s10"]).await;
    assert_finds(store, json!({"a": {"$gte": "7"}}), &["s9", "mixed"]).await;
    assert_finds(store, json!({"a": {"$gte": false}}), &["true"]).await;
    assert_finds(store, json!({"a": 9}), &[]).await;
    assert_finds(store, json!({"a": "9"}), &["s9"]).await;
}

/// Strings compare by Unicode code point: `"Z" < "a" < "é" < "\u{FFFD}" < "😀"`, no collation, no normalisation.
pub async fn filter_strings_compare_by_code_point(store: &dyn DocumentStore) {
    seed(store, json!([
        {"_id": "empty", "a": ""}, {"_id": "B", "a": "B"}, {"_id": "Z", "a": "Z"}, {"_id": "a", "a": "a"},
        {"_id": "ab", "a": "ab"}, {"_id": "zz", "a": "zz"}, {"_id": "A_uml", "a": "\u{c4}"}, {"_id": "e_acute", "a": "\u{e9}"},
        {"_id": "e_comb", "a": "e\u{301}"}, {"_id": "fffd", "a": "\u{fffd}"}, {"_id": "emoji", "a": "😀"}
    ])).await;
    assert_finds(store, json!({"a": {"$lt": "a"}}), &["empty", "B", "Z"]).await;
    assert_finds(store, json!({"a": {"$gt": "Z"}}), &["a", "ab", "zz", "A_uml", "e_acute", "e_comb", "fffd", "emoji"])
        .await;
    assert_finds(store, json!({"a": {"$gte": "\u{e9}"}}), &["e_acute", "fffd", "emoji"]).await;
    assert_finds(store, json!({"a": {"$gt": "\u{fffd}"}}), &["emoji"]).await;
    assert_finds(store, json!({"a": {"$gt": "e", "$lt": "f"}}), &["e_comb"]).await;
    assert_finds(store, json!({"a": "\u{e9}"}), &["e_acute"]).await;
}

/// `$in` matches if any listed value is equal (null also matching missing); `$nin` is its exact negation.
pub async fn filter_in_and_nin(store: &dyn DocumentStore) {
    seed(
        store,
        json!([
            {"_id": "i1", "a": 1}, {"_id": "f2", "a": 2.0}, {"_id": "x", "a": "x"}, {"_id": "null", "a": null},
            {"_id": "missing"}, {"_id": "arr", "a": [3, 4]}, {"_id": "arr_y", "a": ["y"]}, {"_id": "true", "a": true}
        ]),
    )
    .await;
    assert_finds(store, json!({"a": {"$in": [1, "x"]}}), &["i1", "x"]).await;
    assert_finds(store, json!({"a": {"$in": [2]}}), &["f2"]).await;
    assert_finds(store, json!({"a": {"$in": [4, "y"]}}), &["arr", "arr_y"]).await;
    assert_finds(store, json!({"a": {"$in": [null]}}), &["null", "missing"]).await;
    assert_finds(store, json!({"a": {"$in": []}}), &[]).await;
    assert_finds(store, json!({"a": {"$nin": [1, "x"]}}), &["f2", "null", "missing", "arr", "arr_y", "true"]).await;
    assert_finds(store, json!({"a": {"$nin": [null, 3]}}), &["i1", "f2", "x", "arr_y", "true"]).await;
    assert_finds(store, json!({"a": {"$nin": []}}), &["i1", "f2", "x", "null", "missing", "arr", "arr_y", "true"])
        .await;
}

/// `$exists: true` matches present fields (null, false, 0, "" and [] included); `false` matches absent ones.
pub async fn filter_exists(store: &dyn DocumentStore) {
    seed(
        store,
        json!([
            {"_id": "missing"}, {"_id": "null", "a": null}, {"_id": "zero", "a": 0}, {"_id": "false", "a": false},
            {"_id": "empty_str", "a": ""}, {"_id": "empty_arr", "a": []}, {"_id": "b_null", "a": {"b": null}},
            {"_id": "b1", "a": {"b": 1}}, {"_id": "objs", "a": [{"b": 1}, {"c": 1}]}, {"_id": "c_only", "a": [{"c": 1}]}
        ]),
    )
    .await;
    let present = ["null", "zero", "false", "empty_str", "empty_arr", "b_null", "b1", "objs", "c_only"];
    assert_finds(store, json!({"a": {"$exists": true}}), &present).await;
    assert_finds(store, json!({"a": {"$exists": false}}), &["missing"]).await;
    assert_finds(store, json!({"a.b": {"$exists": true}}), &["b_null", "b1", "objs"]).await;
    assert_finds(
        store,
        json!({"a.b": {"$exists": false}}),
        &["missing", "null", "zero", "false", "empty_str", "empty_arr", "c_only"],
    )
    .await;
}

/// `$not` negates its operators as a whole and matches missing fields.
pub async fn filter_not(store: &dyn DocumentStore) {
    seed(
        store,
        json!([
            {"_id": "i3", "a": 3}, {"_id": "i7", "a": 7}, {"_id": "x", "a": "x"}, {"_id": "null", "a": null},
            {"_id": "missing"}, {"_id": "arr", "a": [3, 9]}
        ]),
    )
    .await;
    assert_finds(store, json!({"a": {"$not": {"$gt": 5}}}), &["i3", "x", "null", "missing"]).await;
    assert_finds(store, json!({"a": {"$not": {"$gt": 2, "$lt": 5}}}), &["i7", "x", "null", "missing"]).await;
    assert_finds(store, json!({"a": {"$not": {"$in": [3]}}}), &["i7", "x", "null", "missing"]).await;
    assert_finds(store, json!({"a": {"$not": {"$exists": true}}}), &["missing"]).await;
    assert_finds(store, json!({"a": {"$not": {"$eq": null}}}), &["i3", "i7", "x", "arr"]).await;
}

/// `$and`, `$or` and several top-level fields combine with boolean logic, at any nesting.
pub async fn filter_and_or(store: &dyn DocumentStore) {
    seed(
        store,
        json!([
            {"_id": "a1b1", "a": 1, "b": 1}, {"_id": "a1b2", "a": 1, "b": 2}, {"_id": "a2b1", "a": 2, "b": 1},
            {"_id": "a2b2", "a": 2, "b": 2}, {"_id": "a1", "a": 1}, {"_id": "b1", "b": 1}
        ]),
    )
    .await;
    assert_finds(store, json!({"$and": [{"a": 1}, {"b": 1}]}), &["a1b1"]).await;
    assert_finds(store, json!({"a": 1, "b": 1}), &["a1b1"]).await;
    assert_finds(store, json!({"$or": [{"a": 2}, {"b": 2}]}), &["a1b2", "a2b1", "a2b2"]).await;
    assert_finds(store, json!({"$or": [{"a": 1, "b": 2}, {"a": 2, "b": 1}]}), &["a1b2", "a2b1"]).await;
    assert_finds(store, json!({"$and": [{"$or": [{"a": 1}, {"a": 2}]}, {"b": {"$exists": false}}]}), &["a1"]).await;
    assert_finds(store, json!({"a": 1, "$or": [{"b": 2}, {"b": null}]}), &["a1b2", "a1"]).await;
    assert_finds(store, json!({"$or": [{"$and": [{"a": 2}, {"b": 2}]}, {"a": {"$exists": false}}]}), &["a2b2", "b1"])
        .await;
}

/// Dotted paths reach into nested objects; a path through a non-object counts as missing.
pub async fn filter_nested_path(store: &dyn DocumentStore) {
    seed(store, json!([
        {"_id": "abc1", "a": {"b": {"c": 1}}}, {"_id": "abc2", "a": {"b": {"c": 2}}}, {"_id": "abcs", "a": {"b": {"c": "1"}}},
        {"_id": "ab1", "a": {"b": 1}}, {"_id": "ac1", "a": {"c": 1}}, {"_id": "a1", "a": 1}, {"_id": "empty"},
        {"_id": "abnull", "a": {"b": null}}
    ])).await;
    assert_finds(store, json!({"a.b.c": 1}), &["abc1"]).await;
    assert_finds(store, json!({"a.b.c": {"$gte": 1}}), &["abc1", "abc2"]).await;
    assert_finds(store, json!({"a.b": 1}), &["ab1"]).await;
    assert_finds(store, json!({"a.b": {"c": 1}}), &["abc1"]).await;
    assert_finds(store, json!({"a.b.c": null}), &["ab1", "ac1", "a1", "empty", "abnull"]).await;
    assert_finds(store, json!({"a.b": {"$exists": true}}), &["abc1", "abc2", "abcs", "ab1", "abnull"]).await;
}

/// A scalar condition on an array field holds if an element satisfies it; an array operand also matches the whole array.
pub async fn filter_array_element_equality(store: &dyn DocumentStore) {
    seed(
        store,
        json!([
            {"_id": "xy", "tags": ["x", "y"]}, {"_id": "y", "tags": ["y"]}, {"_id": "scalar", "tags": "x"},
            {"_id": "empty", "tags": []}, {"_id": "nested", "tags": [["x"]]}, {"_id": "missing"},
            {"_id": "upper", "tags": ["X"]}, {"_id": "mixed", "tags": [1, "x"]}
        ]),
    )
    .await;
    assert_finds(store, json!({"tags": "x"}), &["xy", "scalar", "mixed"]).await;
    assert_finds(store, json!({"tags": ["x"]}), &["nested"]).await;
    assert_finds(store, json!({"tags": ["x", "y"]}), &["xy"]).await;
    assert_finds(store, json!({"tags": []}), &["empty"]).await;
    assert_finds(store, json!({"tags": {"$ne": "x"}}), &["y", "empty", "nested", "missing", "upper"]).await;
    assert_finds(store, json!({"tags": {"$in": ["y", "X"]}}), &["xy", "y", "upper"]).await;
    assert_finds(store, json!({"tags": {"$gt": "x"}}), &["xy", "y"]).await;
}

/// `a.b` reaches field `b` of every object element of array `a`; conditions are evaluated separately (no `$elemMatch`).
pub async fn filter_array_of_objects_path(store: &dyn DocumentStore) {
    seed(
        store,
        json!([
            {"_id": "ab", "items": [{"sku": "a", "qty": 1}, {"sku": "b", "qty": 5}]},
            {"_id": "b2", "items": [{"sku": "b", "qty": 2}]},
            {"_id": "c", "items": [{"sku": "c"}]},
            {"_id": "plain", "items": {"sku": "a"}},
            {"_id": "empty", "items": []},
            {"_id": "missing"},
            {"_id": "deep", "items": [{"sku": ["a", "z"]}]},
            {"_id": "scalars", "items": [1, 2]}
        ]),
    )
    .await;
    assert_finds(store, json!({"items.sku": "a"}), &["ab", "plain", "deep"]).await;
    assert_finds(store, json!({"items.qty": {"$gt": 4}}), &["ab"]).await;
    assert_finds(store, json!({"items.qty": {"$lt": 3}}), &["ab", "b2"]).await;
    assert_finds(store, json!({"items.sku": "b", "items.qty": 1}), &["ab"]).await;
    assert_finds(store, json!({"items.qty": {"$exists": true}}), &["ab", "b2"]).await;
    assert_finds(store, json!({"items.qty": null}), &["c", "plain", "empty", "missing", "deep", "scalars"]).await;
}

/// A numeric path segment indexes into an array (and names an object key too).
pub async fn filter_array_index_path(store: &dyn DocumentStore) {
    seed(
        store,
        json!([
            {"_id": "a45", "a": [4, 5]}, {"_id": "a5", "a": [5]}, {"_id": "a456", "a": [4, 5, 6]},
            {"_id": "key1", "a": {"1": 5}}, {"_id": "str", "a": "45"}, {"_id": "nested", "a": [[5]]},
            {"_id": "objs", "a": [{"b": 1}, {"b": 2}]}, {"_id": "missing"}
        ]),
    )
    .await;
    assert_finds(store, json!({"a.1": 5}), &["a45", "a456", "key1"]).await;
    assert_finds(store, json!({"a.0": 5}), &["a5", "nested"]).await;
    assert_finds(store, json!({"a.0": {"$gt": 4}}), &["a5", "nested"]).await;
    assert_finds(store, json!({"a.2": {"$exists": true}}), &["a456"]).await;
    assert_finds(store, json!({"a.1.b": 2}), &["objs"]).await;
    assert_finds(store, json!({"a.1": {"$exists": false}}), &["a5", "str", "nested", "missing"]).await;
}

/// `{"a": null}` matches null and missing fields and arrays holding null, never other falsy values.
pub async fn filter_null_matches_missing_and_null(store: &dyn DocumentStore) {
    seed(
        store,
        json!([
            {"_id": "missing"}, {"_id": "null", "a": null}, {"_id": "zero", "a": 0}, {"_id": "empty", "a": ""},
            {"_id": "false", "a": false}, {"_id": "arr_null", "a": [null, 1]}, {"_id": "arr1", "a": [1]},
            {"_id": "b_null", "a": {"b": null}}, {"_id": "b1", "a": {"b": 1}}
        ]),
    )
    .await;
    assert_finds(store, json!({"a": null}), &["missing", "null", "arr_null"]).await;
    assert_finds(store, json!({"a": {"$eq": null}}), &["missing", "null", "arr_null"]).await;
    assert_finds(store, json!({"a": {"$ne": null}}), &["zero", "empty", "false", "arr1", "b_null", "b1"]).await;
    assert_finds(store, json!({"a": {"$in": [null, 0]}}), &["missing", "null", "zero", "arr_null"]).await;
    assert_finds(
        store,
        json!({"a.b": null}),
        &["missing", "null", "zero", "empty", "false", "arr_null", "arr1", "b_null"],
    )
    .await;
}

/// Booleans equal only booleans (`true != 1`) and order `false < true` within their bracket.
pub async fn filter_bool_values(store: &dyn DocumentStore) {
    seed(
        store,
        json!([
            {"_id": "true", "a": true}, {"_id": "false", "a": false}, {"_id": "one", "a": 1}, {"_id": "zero", "a": 0},
            {"_id": "str", "a": "true"}, {"_id": "arr", "a": [true]}, {"_id": "null", "a": null}, {"_id": "missing"}
        ]),
    )
    .await;
    assert_finds(store, json!({"a": true}), &["true", "arr"]).await;
    assert_finds(store, json!({"a": false}), &["false"]).await;
    assert_finds(store, json!({"a": 1}), &["one"]).await;
    assert_finds(store, json!({"a": {"$gt": false}}), &["true", "arr"]).await;
    assert_finds(store, json!({"a": {"$lt": true}}), &["false"]).await;
    assert_finds(store, json!({"a": {"$ne": true}}), &["false", "one", "zero", "str", "null", "missing"]).await;
    assert_finds(store, json!({"a": {"$in": [false, 0]}}), &["false", "zero"]).await;
}

/// Unicode, quotes, spaces and SQL/LIKE metacharacters in field names and values are matched literally.
pub async fn filter_unicode_field_names_and_values(store: &dyn DocumentStore) {
    seed(
        store,
        json!([
            {"_id": "tokyo", "名前": "東京", "naïve": {"ünï": "x"}, "quote'd": "it's", "sp ace": "b", "%_": "%"},
            {"_id": "zurich", "名前": "Zürich", "naïve": {"ünï": "y"}, "quote'd": "\"q\"", "sp ace": "a", "%_": "x"},
            {"_id": "emoji", "名前": "😀", "dq\"x": "back\\slash", "semi;--": "; DROP TABLE t; --"},
            {"_id": "plain", "name": "東京"}
        ]),
    )
    .await;
    assert_finds(store, json!({"名前": "東京"}), &["tokyo"]).await;
    assert_finds(store, json!({"naïve.ünï": "y"}), &["zurich"]).await;
    assert_finds(store, json!({"quote'd": "it's"}), &["tokyo"]).await;
    assert_finds(store, json!({"quote'd": "\"q\""}), &["zurich"]).await;
    assert_finds(store, json!({"sp ace": {"$gt": "a"}}), &["tokyo"]).await;
    assert_finds(store, json!({"%_": "%"}), &["tokyo"]).await;
    assert_finds(store, json!({"dq\"x": "back\\slash"}), &["emoji"]).await;
    assert_finds(store, json!({"semi;--": {"$exists": true}}), &["emoji"]).await;
    assert_finds(store, json!({"名前": {"$gt": "Z"}}), &["tokyo", "zurich", "emoji"]).await;
    let emoji = doc(store, "emoji").await;
    assert_eq!(emoji["dq\"x"], json!("back\\slash"), "field names and values round-trip");
    assert_eq!(emoji["semi;--"], json!("; DROP TABLE t; --"));
}

// ---------------------------------------------------------------- update

/// `$set` sets top-level and dotted fields, creating intermediate objects, only in matched documents.
pub async fn update_set(store: &dyn DocumentStore) {
    seed(store, json!([{"_id": "a", "n": 1, "o": {"x": 1}}, {"_id": "b", "n": 2}])).await;
    let ops = u(json!({"$set": {"n": 10, "o.y": [1, {"z": null}], "new.deep.k": "v"}}));
    let r = ok(store.update(COLL, f(&json!({"_id": "a"})), ops).await, "update");
    assert_eq!((r.matched, r.modified), (1, 1));
    let expected =
        json!({"_id": "a", "_version": 2, "n": 10, "o": {"x": 1, "y": [1, {"z": null}]}, "new": {"deep": {"k": "v"}}});
    assert_eq!(doc(store, "a").await, expected);
    assert_eq!(doc(store, "b").await, json!({"_id": "b", "_version": 1, "n": 2}));
}

/// `$unset` removes top-level and nested fields; unsetting a missing path is a no-op.
pub async fn update_unset(store: &dyn DocumentStore) {
    seed(store, json!([{"_id": "a", "x": 1, "b": {"c": 1, "d": 2}, "keep": 1}])).await;
    let ops = u(json!({"$unset": {"x": "", "b.c": "", "absent": "", "no.such.path": ""}}));
    ok(store.update(COLL, f(&json!({"_id": "a"})), ops).await, "update");
    assert_eq!(doc(store, "a").await, json!({"_id": "a", "_version": 2, "b": {"d": 2}, "keep": 1}));
}

/// `$inc` adds to ints (staying integral) and floats, and creates a missing field with the increment.
pub async fn update_inc_int_and_float(store: &dyn DocumentStore) {
    seed(store, json!([{"_id": "a", "i": 1, "f": 1.5, "neg": 10}])).await;
    let by_id = json!({"_id": "a"});
    ok(store.update(COLL, f(&by_id), u(json!({"$inc": {"i": 2, "f": 0.25, "new": 5, "neg": -15}}))).await, "update");
    let d = doc(store, "a").await;
    assert_eq!(d["i"].as_i64(), Some(3), "int + int stays an integer: {d}");
    assert_eq!(d["f"].as_f64(), Some(1.75));
    assert_eq!(d["new"].as_i64(), Some(5), "missing field created with the increment");
    assert_eq!(d["neg"].as_i64(), Some(-5));
    ok(store.update(COLL, f(&by_id), u(json!({"$inc": {"i": 0.5, "f": 1}}))).await, "update");
    let d = doc(store, "a").await;
    assert_eq!(d["i"].as_f64(), Some(3.5));
    assert_eq!(d["f"].as_f64(), Some(2.75));
    assert_eq!(d["_version"], json!(3));
}

/// `$push` appends one value (an array value as one element) and creates a missing array.
pub async fn update_push(store: &dyn DocumentStore) {
    seed(store, json!([{"_id": "a", "l": [1]}, {"_id": "b", "o": {}}])).await;
    ok(store.update(COLL, f(&json!({"_id": "a"})), u(json!({"$push": {"l": 2}}))).await, "push");
    ok(store.update(COLL, f(&json!({"_id": "a"})), u(json!({"$push": {"l": [3, 4]}}))).await, "push array");
    ok(
        store.update(COLL, f(&json!({"_id": "b"})), u(json!({"$push": {"l": {"k": 1}, "o.list": "x"}}))).await,
        "push create",
    );
    assert_eq!(doc(store, "a").await, json!({"_id": "a", "_version": 3, "l": [1, 2, [3, 4]]}));
    assert_eq!(doc(store, "b").await, json!({"_id": "b", "_version": 2, "l": [{"k": 1}], "o": {"list": ["x"]}}));
}

/// `update` reports how many documents matched and how many actually changed.
pub async fn update_reports_matched_and_modified(store: &dyn DocumentStore) {
    seed(
        store,
        json!([{"_id": "a", "s": "x", "g": 1}, {"_id": "b", "s": "y", "g": 1}, {"_id": "c", "s": "x", "g": 2}]),
    )
    .await;
    let r = ok(store.update(COLL, f(&json!({"g": 1})), u(json!({"$set": {"s": "x"}}))).await, "update g=1");
    assert_eq!((r.matched, r.modified), (2, 1));
    let r = ok(store.update(COLL, f(&json!({"g": 3})), u(json!({"$set": {"s": "x"}}))).await, "update g=3");
    assert_eq!((r.matched, r.modified), (0, 0));
    let r = ok(store.update(COLL, Filter::all(), u(json!({"$set": {"s": "z"}}))).await, "update all");
    assert_eq!((r.matched, r.modified), (3, 3));
    assert_eq!(found(store, &json!({"s": "z"})).await, strings(&["a", "b", "c"]));
}

/// `$inc` on a non-number in any matched document is `InvalidInput` and changes no document.
pub async fn update_inc_on_non_number_is_invalid_input_and_changes_nothing(store: &dyn DocumentStore) {
    seed(store, json!([{"_id": "a", "n": 1}, {"_id": "b", "n": "x"}, {"_id": "c", "n": 2}])).await;
    let before = all(store).await;
    let r = store.update(COLL, Filter::all(), u(json!({"$inc": {"n": 1}}))).await;
    assert_kind(r, ErrorKind::InvalidInput, "$inc over a string");
    let r = store.update(COLL, f(&json!({"_id": "c"})), u(json!({"$inc": {"n.m": 1}}))).await;
    assert_kind(r, ErrorKind::InvalidInput, "$inc through a number");
    assert_eq!(all(store).await, before);
}

/// `_version` goes up by one when an update changes a document, and stays when it changes nothing.
pub async fn update_increments_version_only_when_modified(store: &dyn DocumentStore) {
    seed(store, json!([{"_id": "a", "n": 1, "o": {"k": [1, 2]}}])).await;
    let by_id = json!({"_id": "a"});
    let version = |d: Value| d["_version"].as_u64();
    let r = ok(store.update(COLL, f(&by_id), u(json!({"$set": {"n": 1, "o": {"k": [1, 2]}}}))).await, "same values");
    assert_eq!((r.matched, r.modified), (1, 0));
    assert_eq!(version(doc(store, "a").await), Some(1));
    ok(store.update(COLL, f(&by_id), u(json!({"$unset": {"absent": ""}}))).await, "unset missing");
    assert_eq!(version(doc(store, "a").await), Some(1));
    let r = ok(store.update(COLL, f(&by_id), u(json!({"$set": {"n": 2}}))).await, "new value");
    assert_eq!((r.matched, r.modified), (1, 1));
    assert_eq!(version(doc(store, "a").await), Some(2));
    ok(store.update(COLL, f(&by_id), u(json!({"$push": {"o.k": 3}}))).await, "push");
    assert_eq!(version(doc(store, "a").await), Some(3));
}

// ---------------------------------------------------------------- delete, find, count

/// `delete` removes exactly the matching documents and returns how many went.
pub async fn delete_by_filter_returns_count(store: &dyn DocumentStore) {
    seed(
        store,
        json!([{"_id": "1", "a": 1}, {"_id": "2", "a": 2}, {"_id": "3", "a": 3}, {"_id": "x", "a": "x"}, {"_id": "m"}]),
    )
    .await;
    assert_eq!(ok(store.delete(COLL, f(&json!({"a": {"$gte": 2}}))).await, "delete"), 2);
    assert_eq!(ids(&all(store).await), strings(&["1", "m", "x"]));
    assert_eq!(ok(store.delete(COLL, f(&json!({"a": {"$gte": 2}}))).await, "delete again"), 0);
    assert_eq!(ok(store.delete(COLL, Filter::all()).await, "delete all"), 3);
    assert_eq!(count_all(store).await, 0);
}

/// `find` sorts by the keys (ascending or descending), then always by `_id` ascending.
pub async fn find_sort_asc_desc_with_id_tiebreak(store: &dyn DocumentStore) {
    seed(
        store,
        json!([
            {"_id": "d", "n": 2, "g": "y"}, {"_id": "b", "n": 1, "g": "x"}, {"_id": "c", "n": 2, "g": "x"},
            {"_id": "a", "n": 3, "g": "y"}, {"_id": "e", "n": 1, "g": "y"}
        ]),
    )
    .await;
    let all_of = || FindOptions::new(Filter::all());
    assert_eq!(find_ids(store, all_of()).await, strings(&["a", "b", "c", "d", "e"]), "default order is _id");
    assert_eq!(find_ids(store, all_of().sort(key("n"))).await, strings(&["b", "e", "c", "d", "a"]));
    assert_eq!(find_ids(store, all_of().sort(key_desc("n"))).await, strings(&["a", "c", "d", "b", "e"]));
    let two_keys = all_of().sort(key("g")).sort(key_desc("n"));
    assert_eq!(find_ids(store, two_keys).await, strings(&["c", "b", "a", "d", "e"]));
}

/// Sorts mix types in MongoDB's order (null < numbers < strings < objects < arrays < bools); arrays by min/max element.
pub async fn find_sort_mixed_types_in_type_order(store: &dyn DocumentStore) {
    seed(
        store,
        json!([
            {"_id": "m"}, {"_id": "n", "a": null}, {"_id": "i3", "a": 3}, {"_id": "f15", "a": 1.5},
            {"_id": "arr", "a": [2, 7]}, {"_id": "sB", "a": "B"}, {"_id": "sa", "a": "a"}, {"_id": "o", "a": {"x": 1}},
            {"_id": "nested", "a": [[0]]}, {"_id": "t", "a": true}, {"_id": "fa", "a": false}
        ]),
    )
    .await;
    let asc = find_ids(store, FindOptions::new(Filter::all()).sort(key("a"))).await;
    assert_eq!(asc, strings(&["m", "n", "f15", "arr", "i3", "sB", "sa", "o", "nested", "fa", "t"]));
    let desc = find_ids(store, FindOptions::new(Filter::all()).sort(key_desc("a"))).await;
    assert_eq!(desc, strings(&["t", "fa", "nested", "o", "sa", "sB", "arr", "i3", "f15", "m", "n"]));
}

/// `skip` and `limit` page through the sorted result.
pub async fn find_skip_and_limit(store: &dyn DocumentStore) {
    let docs_json: Vec<Value> = (0..10).map(|i| json!({"_id": format!("d{i}"), "n": 9 - i})).collect();
    seed(store, Value::Array(docs_json)).await;
    let by_n = || FindOptions::new(Filter::all()).sort(key_desc("n"));
    assert_eq!(find_ids(store, by_n().skip(3).limit(4)).await, strings(&["d3", "d4", "d5", "d6"]));
    assert_eq!(find_ids(store, by_n().skip(8).limit(5)).await, strings(&["d8", "d9"]));
    assert_eq!(find_ids(store, by_n().skip(20)).await, Vec::<String>::new());
    assert_eq!(find_ids(store, by_n().limit(2)).await, strings(&["d0", "d1"]));
    let filtered = FindOptions::new(f(&json!({"n": {"$lt": 5}}))).sort(key("n")).skip(1).limit(2);
    assert_eq!(find_ids(store, filtered).await, strings(&["d8", "d7"]));
}

/// Projections include or exclude (dotted) fields; `_id` and `_version` are always returned.
pub async fn find_projection_include_and_exclude(store: &dyn DocumentStore) {
    seed(store, json!([{"_id": "p", "a": 1, "b": {"c": 2, "d": 3}, "e": [{"f": 1, "g": 2}], "h": "x"}])).await;
    let paths = |ps: &[&str]| ps.iter().map(|p| p.parse::<FieldPath>().expect("path")).collect::<Vec<_>>();
    let one = move |p: Projection| async move {
        let got = ok(store.find(COLL, FindOptions::new(Filter::all()).project(p)).await, "find");
        assert_eq!(got.len(), 1);
        got.into_iter().next().expect("one document")
    };
    assert_eq!(
        one(Projection::Include(paths(&["a", "b.c"]))).await,
        json!({"_id": "p", "_version": 1, "a": 1, "b": {"c": 2}})
    );
    assert_eq!(one(Projection::Include(paths(&["e.f"]))).await, json!({"_id": "p", "_version": 1, "e": [{"f": 1}]}));
    assert_eq!(
        one(Projection::Exclude(paths(&["b.d", "h", "e"]))).await,
        json!({"_id": "p", "_version": 1, "a": 1, "b": {"c": 2}})
    );
    assert_eq!(
        one(Projection::Exclude(paths(&["_id", "_version", "a", "b", "e"]))).await,
        json!({"_id": "p", "_version": 1, "h": "x"})
    );
}

/// A `find` limit of 0 or above `MAX_FIND_LIMIT` is `InvalidInput`; `MAX_FIND_LIMIT` itself is accepted.
pub async fn find_limit_zero_is_invalid_input(store: &dyn DocumentStore) {
    seed(store, json!([{"_id": "a"}])).await;
    let all_of = || FindOptions::new(Filter::all());
    assert_kind(store.find(COLL, all_of().limit(0)).await, ErrorKind::InvalidInput, "limit 0");
    assert_kind(store.find(COLL, all_of().limit(MAX_FIND_LIMIT + 1)).await, ErrorKind::InvalidInput, "limit too big");
    assert_eq!(find_ids(store, all_of().limit(MAX_FIND_LIMIT)).await, strings(&["a"]));
}

/// `count(filter)` equals the number of documents `find(filter)` returns.
pub async fn count_matches_find(store: &dyn DocumentStore) {
    seed(store, shapes()).await;
    let filters = [
        json!({}),
        json!({"a": 5}),
        json!({"a": {"$exists": false}}),
        json!({"a": {"$gte": 5}}),
        json!({"a.b": 5}),
        json!({"$or": [{"a": "5"}, {"a": true}]}),
        json!({"a": {"$nin": [5, null]}}),
        json!({"a": "nothing"}),
    ];
    for filter in filters {
        let found = ok(store.find(COLL, FindOptions::new(f(&filter))).await, "find").len() as u64;
        let counted = ok(store.count(COLL, f(&filter)).await, "count");
        assert_eq!(counted, found, "count vs find for {filter}");
    }
    assert_eq!(count_all(store).await, 11);
}

// ---------------------------------------------------------------- TTL

/// Expired documents are invisible to `get`, `find` and `count` and not matched by `update`/`delete`, at once.
pub async fn ttl_expired_documents_are_invisible(store: &dyn DocumentStore) {
    let spec = ok(CollectionSpec::new(COLL).with_ttl("seen", 600), "ttl spec");
    ensure(store, spec).await;
    let now = Utc::now();
    let (past, future) = (now - TimeDelta::hours(1), now + TimeDelta::hours(1));
    let batch = vec![
        json!({"_id": "old", "k": 1, "seen": rfc3339(past)}),
        json!({"_id": "old_east", "k": 1, "seen": rfc3339_at_offset(past, 5)}),
        json!({"_id": "new", "k": 1, "seen": rfc3339(now)}),
        json!({"_id": "new_west", "k": 1, "seen": rfc3339_at_offset(future, -5)}),
    ];
    ok(store.insert_many(COLL, batch).await, "insert_many");
    assert_eq!(get(store, "old").await, None);
    assert_eq!(get(store, "old_east").await, None, "the offset of an RFC 3339 timestamp counts");
    assert!(get(store, "new_west").await.is_some(), "the offset of an RFC 3339 timestamp counts");
    assert_eq!(ids(&all(store).await), strings(&["new", "new_west"]));
    assert_eq!(ok(store.count(COLL, f(&json!({"k": 1}))).await, "count"), 2);
    let r = ok(store.update(COLL, f(&json!({"k": 1})), u(json!({"$set": {"touched": true}}))).await, "update");
    assert_eq!(r.matched, 2, "update must not match expired documents");
    assert_eq!(get(store, "old").await, None, "an update must not revive an expired document");
    assert_eq!(ok(store.delete(COLL, Filter::all()).await, "delete"), 2, "delete counts only live documents");
}

/// Documents whose TTL field is missing or not an RFC 3339 timestamp never expire.
pub async fn ttl_documents_without_the_field_never_expire(store: &dyn DocumentStore) {
    let spec = ok(CollectionSpec::new(COLL).with_ttl("seen", 0), "ttl spec");
    ensure(store, spec).await;
    let long_ago = Utc::now() - TimeDelta::days(400);
    let batch = vec![
        json!({"_id": "none"}),
        json!({"_id": "text", "seen": "yesterday"}),
        json!({"_id": "number", "seen": 12345}),
        json!({"_id": "null", "seen": null}),
        json!({"_id": "nested", "other": {"seen": rfc3339(long_ago)}}),
        json!({"_id": "expired", "seen": rfc3339(long_ago)}),
    ];
    ok(store.insert_many(COLL, batch).await, "insert_many");
    assert_eq!(ids(&all(store).await), strings(&["nested", "none", "null", "number", "text"]));
    assert_eq!(count_all(store).await, 5);
    assert!(get(store, "none").await.is_some());
}

/// `drop_collection` removes the collection and its documents; a re-created collection starts empty.
pub async fn drop_collection_removes_documents(store: &dyn DocumentStore) {
    seed(store, json!([{"_id": "a"}, {"_id": "b"}, {"_id": "c"}])).await;
    ensure(store, CollectionSpec::new("bystander")).await;
    ok(store.insert("bystander", json!({"_id": "z"})).await, "insert bystander");
    assert!(ok(store.drop_collection(COLL).await, "drop"), "drop reports the collection existed");
    assert_kind(store.get(COLL, "a").await, ErrorKind::NotFound, "get after drop");
    assert_kind(store.count(COLL, Filter::all()).await, ErrorKind::NotFound, "count after drop");
    assert!(!ok(store.drop_collection(COLL).await, "second drop"), "second drop reports it was gone");
    assert!(ok(store.ensure_collection(CollectionSpec::new(COLL)).await, "re-create"), "re-created");
    assert_eq!(count_all(store).await, 0, "old documents must not reappear");
    assert_eq!(ok(store.count("bystander", Filter::all()).await, "bystander count"), 1, "other collections untouched");
}

// ---------------------------------------------------------------- scale and concurrency

/// 20,000 documents in one `insert_many` are all stored (returned in order), counted and findable.
pub async fn large_insert_many_round_trips(store: &dyn DocumentStore) {
    const N: usize = 20_000;
    ensure(store, CollectionSpec::new(COLL)).await;
    let batch: Vec<Value> = (0..N).map(|i| json!({"_id": format!("d{i:05}"), "n": i, "tag": i % 7})).collect();
    let stored = ok(store.insert_many(COLL, batch).await, "insert_many");
    assert_eq!(stored.len(), N);
    assert_eq!(id_of(&stored[0]), "d00000");
    assert_eq!(id_of(&stored[N - 1]), format!("d{:05}", N - 1), "stored documents come back in order");
    assert!(stored.iter().all(|d| d["_version"] == json!(1)));
    assert_eq!(count_all(store).await, N as u64);
    let tag3 = (0..N).filter(|i| i % 7 == 3).count() as u64;
    assert_eq!(ok(store.count(COLL, f(&json!({"tag": 3}))).await, "count tag 3"), tag3);
    let top = find_ids(store, FindOptions::new(f(&json!({"n": {"$gte": N - 3}}))).sort(key_desc("n"))).await;
    assert_eq!(top, strings(&["d19999", "d19998", "d19997"]));
    assert_eq!(doc(store, "d12345").await["n"], json!(12345));
}

/// 32 concurrent `$inc` updates of one document all apply: no update is lost.
pub async fn concurrent_incs_lose_no_update(store: &dyn DocumentStore) {
    const N: u64 = 32;
    seed(store, json!([{"_id": "ctr", "n": 0}])).await;
    let (filter, ops) = (f(&json!({"_id": "ctr"})), u(json!({"$inc": {"n": 1}})));
    let results = join_all((0..N).map(|_| store.update(COLL, filter.clone(), ops.clone()))).await;
    for r in results {
        let r = ok(r, "concurrent update");
        assert_eq!((r.matched, r.modified), (1, 1));
    }
    let d = doc(store, "ctr").await;
    assert_eq!(d["n"].as_u64(), Some(N), "every increment applied: {d}");
    assert_eq!(d["_version"].as_u64(), Some(N + 1), "every increment bumped the version");
}

// ---------------------------------------------------------------- property test

mod generate {
    //! Random documents and filters over a small field set, so filters hit often.

    use proptest::prelude::*;
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    use serde_json::{json, Map, Value};

    const KEYS: [&str; 3] = ["a", "b", "c"];
    const DOTTED: [&str; 9] = ["a.b", "a.c", "b.a", "c.b", "a.0", "c.0", "b.1", "a.b.c", "c.1.a"];

    /// A top-level field or a dotted path into nested objects and arrays.
    fn path() -> BoxedStrategy<&'static str> {
        prop_oneof![3 => prop::sample::select(KEYS.to_vec()), 2 => prop::sample::select(DOTTED.to_vec())].boxed()
    }

    fn object(entries: std::collections::BTreeMap<&'static str, Value>) -> Value {
        Value::Object(entries.into_iter().map(|(k, v)| (k.to_owned(), v)).collect::<Map<_, _>>())
    }

    /// Operands of `$gt`-style comparisons: numbers, strings, booleans.
    fn comparable() -> BoxedStrategy<Value> {
        prop_oneof![
            any::<bool>().prop_map(Value::Bool),
            (-2i64..=2).prop_map(Value::from),
            prop::sample::select(vec![-1.5f64, 1.0, 2.5]).prop_map(Value::from),
            prop::sample::select(vec!["", "a", "B", "é", "1", "😀"]).prop_map(Value::from),
        ]
        .boxed()
    }

    fn scalar() -> BoxedStrategy<Value> {
        prop_oneof![1 => Just(Value::Null), 6 => comparable()].boxed()
    }

    /// Mostly scalars; otherwise small arrays and small objects keyed by `a`, `b`, `c`, two levels deep.
    fn value() -> BoxedStrategy<Value> {
        scalar()
            .prop_recursive(2, 12, 3, |inner| {
                prop_oneof![
                    3 => scalar(),
                    2 => prop::collection::vec(inner.clone(), 0..=3).prop_map(Value::Array),
                    2 => prop::collection::btree_map(prop::sample::select(KEYS.to_vec()), inner, 1..=3).prop_map(object),
                ]
            })
            .boxed()
    }

    /// An operand of `$eq`-style operators: usually a scalar, sometimes a whole array or object.
    fn operand() -> BoxedStrategy<Value> {
        prop_oneof![5 => scalar(), 1 => value()].boxed()
    }

    fn document() -> BoxedStrategy<Value> {
        prop::collection::btree_map(prop::sample::select(KEYS.to_vec()), value(), 1..=3).prop_map(object).boxed()
    }

    fn operator() -> BoxedStrategy<Value> {
        prop_oneof![
            operand().prop_map(|v| json!({"$eq": v})),
            operand().prop_map(|v| json!({"$ne": v})),
            (prop::sample::select(vec!["$gt", "$gte", "$lt", "$lte"]), comparable())
                .prop_map(|(op, v)| Value::Object(Map::from_iter([(op.to_owned(), v)]))),
            prop::collection::vec(operand(), 0..=3).prop_map(|v| json!({"$in": v})),
            prop::collection::vec(operand(), 0..=3).prop_map(|v| json!({"$nin": v})),
            any::<bool>().prop_map(|b| json!({"$exists": b})),
        ]
        .boxed()
    }

    /// One or two operators merged into one operator object.
    fn operators() -> BoxedStrategy<Value> {
        prop_oneof![3 => prop::collection::vec(operator(), 1..=1), 1 => prop::collection::vec(operator(), 2..=2)]
            .prop_map(|ops| {
                let mut merged = Map::new();
                for op in ops {
                    if let Value::Object(m) = op {
                        merged.extend(m);
                    }
                }
                Value::Object(merged)
            })
            .boxed()
    }

    fn condition() -> BoxedStrategy<Value> {
        prop_oneof![
            4 => operand(),
            6 => operators(),
            2 => operators().prop_map(|ops| json!({"$not": ops})),
        ]
        .boxed()
    }

    /// A condition on one field, sometimes two.
    fn leaf() -> BoxedStrategy<Value> {
        prop_oneof![
            3 => prop::collection::btree_map(path(), condition(), 1..=1),
            1 => prop::collection::btree_map(path(), condition(), 2..=2),
        ]
        .prop_map(object)
        .boxed()
    }

    /// Mostly single leaves; otherwise `$or`/`$and` of leaves, one level of
    /// nesting, and fields mixed with `$or`.
    fn filter() -> BoxedStrategy<Value> {
        let or_of = |inner: BoxedStrategy<Value>| prop::collection::vec(inner, 2..=3).prop_map(|fs| json!({"$or": fs}));
        let and_of =
            |inner: BoxedStrategy<Value>| prop::collection::vec(inner, 2..=2).prop_map(|fs| json!({"$and": fs}));
        let nested = prop_oneof![leaf(), and_of(leaf())].boxed();
        prop_oneof![
            5 => leaf(),
            2 => or_of(leaf()),
            1 => and_of(leaf()),
            1 => or_of(nested),
            1 => (path(), condition(), or_of(leaf())).prop_map(|(path, cond, or)| {
                let mut m = Map::from_iter([(path.to_owned(), cond)]);
                if let Value::Object(o) = or {
                    m.extend(o);
                }
                Value::Object(m)
            }),
        ]
        .boxed()
    }

    /// `n_docs` documents (ids `r000`, `r001`, …) and `n_filters` filters, deterministically.
    pub(super) fn docs_and_filters(n_docs: usize, n_filters: usize) -> (Vec<Value>, Vec<Value>) {
        let mut runner = TestRunner::deterministic();
        let mut sample = |s: &BoxedStrategy<Value>| s.new_tree(&mut runner).expect("strategy yields a value").current();
        let (doc_s, filter_s) = (document(), filter());
        let docs = (0..n_docs)
            .map(|i| {
                let mut d = sample(&doc_s);
                d["_id"] = json!(format!("r{i:03}"));
                d
            })
            .collect();
        let filters = (0..n_filters).map(|_| sample(&filter_s)).collect();
        (docs, filters)
    }
}

/// Random filters over random documents find exactly the documents the reference `matches` accepts.
pub async fn random_filters_agree_with_reference_semantics(store: &dyn DocumentStore) {
    let (docs, filters) = generate::docs_and_filters(150, 300);
    ensure(store, CollectionSpec::new(COLL)).await;
    ok(store.insert_many(COLL, docs.clone()).await, "insert_many");
    let (mut discriminating, mut none, mut every) = (0, 0, 0);
    for json_filter in &filters {
        let filter = f(json_filter);
        let mut want: Vec<String> = docs.iter().filter(|d| matches(&filter, d)).map(id_of).collect();
        want.sort();
        let got = found(store, json_filter).await;
        assert_eq!(got, want, "find disagrees with the reference for filter {json_filter}");
        let counted = ok(store.count(COLL, filter).await, "count");
        assert_eq!(counted, want.len() as u64, "count disagrees with the reference for filter {json_filter}");
        match want.len() {
            0 => none += 1,
            n if n == docs.len() => every += 1,
            _ => discriminating += 1,
        }
    }
    assert!(
        discriminating >= filters.len() / 2,
        "only {discriminating} filters split the documents ({none} match none, {every} all); the generator is too weak"
    );
}

// ---------------------------------------------------------------- namespaces

/// Two namespaces on one backend never see each other's collections or documents.
pub async fn namespaces_are_isolated(a: &dyn DocumentStore, b: &dyn DocumentStore) {
    ensure(a, CollectionSpec::new(COLL)).await;
    ok(a.insert(COLL, json!({"_id": "x", "v": "a"})).await, "insert in a");
    assert_kind(b.get(COLL, "x").await, ErrorKind::NotFound, "b does not see a's collection");
    assert!(ok(b.ensure_collection(CollectionSpec::new(COLL)).await, "ensure in b"), "b creates its own collection");
    assert_eq!(ok(b.count(COLL, Filter::all()).await, "count in b"), 0);
    ok(b.insert(COLL, json!({"_id": "x", "v": "b"})).await, "the same _id in b is no conflict");
    assert_eq!(ok(a.get(COLL, "x").await, "get in a").map(|d| d["v"].clone()), Some(json!("a")));
    assert_eq!(ok(b.get(COLL, "x").await, "get in b").map(|d| d["v"].clone()), Some(json!("b")));
    ok(b.update(COLL, Filter::all(), u(json!({"$set": {"v": "b2"}}))).await, "update in b");
    assert!(ok(b.drop_collection(COLL).await, "drop in b"));
    assert_eq!(
        ok(a.find(COLL, FindOptions::new(Filter::all())).await, "find in a"),
        vec![json!({"_id": "x", "_version": 1, "v": "a"})]
    );
}

mod hostile;
pub use hostile::*;
