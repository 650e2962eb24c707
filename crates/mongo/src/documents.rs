//! `DocumentStore` on one Mongo collection per Palisade collection
//! (`docs.<name>`), with the specs in `doc_collections`
//! (`{_id: name, spec: <JSON text>}`, core's stored-spec form).
//!
//! - **Stored form**: `{_id, v: <_version>, j: <the document as JSON text>,
//!   d: <the document without _id as BSON>, exp?: <date>, u0?, u1?, …}`.
//!   Reads return `j`, so every document round-trips exactly (U+0000,
//!   numbers beyond `i64`, key order); filters and sorts run on `d`, whose
//!   object keys are stored in key order (so whole-object equality does not
//!   depend on the order a writer used) and whose numbers are `Int64` or,
//!   beyond `i64`, `Double`.
//! - **Filters** are core's AST translated to a query on `d` (`_id` and
//!   `_version` map to `_id` and `v`): MongoDB's own semantics, which core's
//!   reference semantics follow (type bracketing, `null` matching missing,
//!   negations matching missing). `$not` becomes `$nor` of the conditions,
//!   which every server accepts at any nesting. Conditions on dotted paths
//!   (array traversal, numeric segments, `null` through arrays — where
//!   Mongo-wire servers other than MongoDB differ) narrow nothing on the
//!   server: it selects a superset by the other conditions and core's
//!   matcher decides in process (then sorting, skip and limit happen in
//!   process too). See [`prefilter`]. A filter on top-level fields only is
//!   answered, sorted and limited by the server alone.
//! - **Expiry**: `exp` from the collection's TTL rule at every write; every
//!   read, update and delete also requires `exp` unset or in the future, so
//!   an expired document is invisible at once; a TTL index on `exp` reclaims
//!   it later.
//! - **Writes** check core's schema validator before anything is written;
//!   a collection with a schema also gets a `$jsonSchema` validator that
//!   enforces its `required` fields and simple `type`s on `d` (a server
//!   refusal, code 121, is `SchemaViolation`). `insert_many` and `update`
//!   run in one transaction (updates apply core's operators in process and
//!   write each changed document back guarded by its version); `replace` is
//!   one write guarded by the version it read.
//! - **Unique indexes** hold core's whole-value keys
//!   ([`IndexSpec::key_of`]) in `u<i>` under a sparse unique index, so
//!   arrays are one value (not multikey), `1` equals `1.0`, and documents
//!   lacking a field are skipped. A clash (code 11000) is `Conflict` naming
//!   the index; a value held only by an expired document is freed and the
//!   write tried once more. Within one `update`, documents are written one
//!   by one: moving a unique value between two matched documents clashes.
//!   Other indexes are Mongo indexes on `d.<path>`.
//! - **Sorting** runs on the server unless a sort field holds an array or
//!   an object in some matching document, whose order MongoDB defines
//!   differently from core; then the matches are sorted in process.
//!
//! [`IndexSpec::key_of`]: palisade_core::documents::IndexSpec::key_of

use std::collections::HashSet;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use mongodb::bson::{doc, Bson, Document};
use mongodb::options::IndexOptions;
use mongodb::{ClientSession, Collection, IndexModel};
use palisade_core::backend::check::{check_collection_name, check_id, prepare_insert, prepare_replace};
use palisade_core::backend::clock::now_ms;
use palisade_core::backend::documents::{from_json, to_json, DocumentFault};
use palisade_core::backend::eval::{cmp_docs, matches, project};
use palisade_core::backend::stored::{decode_stored_json, with_version};
use palisade_core::documents::{
    CollectionSpec, FieldOp, FieldPath, Filter, FindOptions, SchemaValidator, SortOrder, UpdateOps, UpdateResult,
    MAX_INSERT_MANY,
};
use palisade_core::{Capabilities, DocumentStore, Error, ErrorDetail, ErrorKind, Result, Store};
use serde_json::{Map, Value};

use crate::error::{is_duplicate_key, map, server_code, tagged};
use crate::txn::{abort_with, commit, is_transient, Attempt, Rerun, Retry};
use crate::{bson_date as date, capabilities, invalid_state, MongoBackend};

/// Largest stored form of one document: MongoDB's 16 MiB limit, less room
/// for the command around it.
const MAX_STORED_BYTES: usize = 16 * 1024 * 1024 - 16 * 1024;

/// `InvalidInput` when the stored form of a document (its JSON text plus
/// its BSON tree) would exceed what MongoDB stores in one document.
fn check_stored_size(d: &Document) -> Result<()> {
    let bytes = mongodb::bson::serialize_to_vec(d).map(|v| v.len()).unwrap_or(usize::MAX);
    if bytes > MAX_STORED_BYTES {
        return Err(Error::invalid(format!(
            "the document's stored form ({bytes} bytes: JSON text and BSON tree) exceeds MongoDB's 16 MiB document limit"
        )));
    }
    Ok(())
}

/// The specs of a namespace's collections.
pub(crate) const SPECS: &str = "doc_collections";
/// Documents per `insert_many` call inside a transaction.
const INSERT_CHUNK: usize = 5_000;
/// `NamespaceExists`: `create` of a collection that exists.
const NAMESPACE_EXISTS: i32 = 48;

/// The Mongo collection holding Palisade collection `name`.
pub(crate) fn data_collection(name: &str) -> String {
    format!("docs.{name}")
}

// ---------------------------------------------------------------- values

/// `v` as BSON for `d` and for filter operands: numbers as `Int64` (or
/// `Double` beyond it), objects with their keys in key order.
pub(crate) fn to_bson(v: &Value) -> Bson {
    match v {
        Value::Null => Bson::Null,
        Value::Bool(b) => Bson::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Bson::Int64(i),
            None => Bson::Double(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => Bson::String(s.clone()),
        Value::Array(a) => Bson::Array(a.iter().map(to_bson).collect()),
        Value::Object(m) => Bson::Document(object(m)),
    }
}

fn object(m: &Map<String, Value>) -> Document {
    let mut keys: Vec<(&String, &Value)> = m.iter().collect();
    keys.sort_by(|a, b| a.0.cmp(b.0));
    keys.into_iter().map(|(k, v)| (k.clone(), to_bson(v))).collect()
}

/// The stored field a path addresses: `_id` and `_version` are top-level
/// (`_id`, `v`), everything else lives under `d`.
pub(crate) fn field(path: &FieldPath) -> String {
    let segments = path.segments();
    match segments.first().map(String::as_str) {
        Some("_id") => segments.join("."),
        Some("_version") => {
            std::iter::once("v").chain(segments[1..].iter().map(String::as_str)).collect::<Vec<_>>().join(".")
        }
        _ => format!("d.{}", segments.join(".")),
    }
}

// ---------------------------------------------------------------- filters

/// Core's whole filter as a Mongo query (for MongoDB's semantics; the
/// store sends [`prefilter`]'s part of it).
#[cfg(test)]
pub(crate) fn filter_doc(f: &Filter) -> Document {
    match f {
        Filter::And(all) if all.is_empty() => Document::new(),
        Filter::And(all) => doc! {"$and": all.iter().map(filter_doc).collect::<Vec<_>>()},
        Filter::Or(any) => doc! {"$or": any.iter().map(filter_doc).collect::<Vec<_>>()},
        Filter::Field { path, op } => condition(&field(path), op),
    }
}

fn condition(field: &str, op: &FieldOp) -> Document {
    let on = |operator: &str, operand: Bson| doc! {field: {operator: operand}};
    let list = |xs: &[Value]| Bson::Array(xs.iter().map(to_bson).collect());
    match op {
        FieldOp::Eq(v) => on("$eq", to_bson(v)),
        FieldOp::Ne(v) => on("$ne", to_bson(v)),
        FieldOp::Gt(v) => on("$gt", to_bson(v)),
        FieldOp::Gte(v) => on("$gte", to_bson(v)),
        FieldOp::Lt(v) => on("$lt", to_bson(v)),
        FieldOp::Lte(v) => on("$lte", to_bson(v)),
        FieldOp::In(xs) => on("$in", list(xs)),
        FieldOp::Nin(xs) => on("$nin", list(xs)),
        FieldOp::Exists(b) => on("$exists", Bson::Boolean(*b)),
        FieldOp::Not(ops) => {
            let all: Vec<Document> = ops.iter().map(|o| condition(field, o)).collect();
            doc! {"$nor": [{"$and": all}]}
        }
    }
}

/// What the server is asked for a filter: a query selecting a superset of
/// the matching documents, and whether it selects exactly them.
/// Conditions on top-level fields (and `_id`, `_version`) are sent as they
/// are; conditions on dotted paths — where Mongo-wire servers other than
/// MongoDB implement array traversal, numeric segments and `null` unevenly —
/// are left out (read as "true") wherever leaving them out only widens the
/// selection, and core's matcher decides in process.
pub(crate) struct Prefilter {
    pub(crate) query: Document,
    pub(crate) exact: bool,
}

pub(crate) fn prefilter(f: &Filter) -> Prefilter {
    let (query, exact) = relax(f);
    Prefilter { query: query.unwrap_or_default(), exact }
}

/// `None` = no condition (everything); the flag says whether nothing was left out.
fn relax(f: &Filter) -> (Option<Document>, bool) {
    match f {
        Filter::And(all) => {
            let mut exact = true;
            let mut parts = Vec::new();
            for c in all {
                let (q, e) = relax(c);
                exact &= e;
                parts.extend(q);
            }
            match parts.len() {
                0 => (None, exact),
                1 => (parts.pop(), exact),
                _ => (Some(doc! {"$and": parts}), exact),
            }
        }
        Filter::Or(any) => {
            let mut exact = true;
            let mut parts = Vec::new();
            for c in any {
                match relax(c) {
                    (Some(q), e) => {
                        exact &= e;
                        parts.push(q);
                    }
                    // One branch selects everything: so does the `$or`.
                    (None, e) => return (None, e),
                }
            }
            (Some(doc! {"$or": parts}), exact)
        }
        Filter::Field { path, op } => {
            let segments = path.segments();
            if (segments.len() == 1 || path.is_reserved()) && !beyond_i64(op) {
                (Some(condition(&field(path), op)), true)
            } else {
                (None, false)
            }
        }
    }
}

/// Whether a stored document (with `exp` projected) is live at `now`.
fn is_live(d: &Document, now: DateTime<Utc>) -> bool {
    match d.get("exp") {
        Some(Bson::DateTime(exp)) => exp.timestamp_millis() > now.timestamp_millis(),
        _ => true,
    }
}

/// Whether an operand holds an integer beyond `i64`, which `d` stores as a
/// `Double` (compared approximately on the server; core compares exactly).
fn beyond_i64(op: &FieldOp) -> bool {
    fn big(v: &Value) -> bool {
        match v {
            Value::Number(n) => n.is_u64() && n.as_i64().is_none(),
            Value::Array(a) => a.iter().any(big),
            Value::Object(m) => m.values().any(big),
            _ => false,
        }
    }
    match op {
        FieldOp::Eq(v) | FieldOp::Ne(v) | FieldOp::Gt(v) | FieldOp::Gte(v) | FieldOp::Lt(v) | FieldOp::Lte(v) => big(v),
        FieldOp::In(xs) | FieldOp::Nin(xs) => xs.iter().any(big),
        FieldOp::Exists(_) => false,
        FieldOp::Not(ops) => ops.iter().any(beyond_i64),
    }
}

/// Live at `now`: no `exp`, or `exp` after `now`.
fn live(now: DateTime<Utc>) -> Document {
    doc! {"$nor": [{"exp": {"$lte": date(now)}}]}
}

fn live_and(now: DateTime<Utc>, f: Document) -> Document {
    if f.is_empty() {
        live(now)
    } else {
        doc! {"$and": [live(now), f]}
    }
}

// ---------------------------------------------------------------- specs

/// A collection's spec as the store uses it.
struct Compiled {
    spec: CollectionSpec,
    schema: Option<SchemaValidator>,
}

impl Compiled {
    fn new(spec: CollectionSpec) -> Result<Self> {
        let schema = spec.validate()?;
        Ok(Compiled { spec, schema })
    }

    fn check_schema(&self, body: &Map<String, Value>) -> Result<()> {
        match &self.schema {
            Some(s) => s.validate(&Value::Object(body.clone())),
            None => Ok(()),
        }
    }

    /// The stored form of document `id` at `version` (`body` with `_id`, without `_version`).
    fn stored(&self, id: &str, body: Map<String, Value>, version: u64) -> (Value, Document) {
        let full = with_version(body, version);
        let mut d = Document::new();
        d.insert("_id", id);
        d.insert("v", i64::try_from(version).unwrap_or(i64::MAX));
        d.insert("j", full.to_string());
        if let Value::Object(m) = &full {
            let mut tree = object(m);
            tree.remove("_id");
            tree.remove("_version");
            d.insert("d", tree);
        }
        if let Some(at) = self.spec.ttl.as_ref().and_then(|t| t.expires_at(&full)) {
            d.insert("exp", date(at));
        }
        for (i, idx) in self.spec.indexes.iter().enumerate().filter(|(_, idx)| idx.unique) {
            if let Some(key) = idx.key_of(&full) {
                d.insert(format!("u{i}"), key);
            }
        }
        (full, d)
    }

    /// The Mongo indexes of the collection: unique keys, other indexes, TTL.
    fn indexes(&self) -> Vec<IndexModel> {
        let mut models = Vec::new();
        for (i, idx) in self.spec.indexes.iter().enumerate() {
            let model = if idx.unique {
                IndexModel::builder()
                    .keys(doc! {format!("u{i}"): 1})
                    .options(IndexOptions::builder().unique(true).sparse(true).name(format!("u{i}")).build())
                    .build()
            } else {
                let keys: Document = idx
                    .fields
                    .iter()
                    .map(|k| (field(&k.path), Bson::Int32(if k.order == SortOrder::Asc { 1 } else { -1 })))
                    .collect();
                IndexModel::builder().keys(keys).options(IndexOptions::builder().name(format!("i{i}")).build()).build()
            };
            models.push(model);
        }
        models.push(
            IndexModel::builder()
                .keys(doc! {"exp": 1})
                .options(IndexOptions::builder().expire_after(Duration::ZERO).name("exp_ttl".to_owned()).build())
                .build(),
        );
        models
    }
}

/// The collection validator for `spec`'s schema, if it has one.
fn validator(spec: &CollectionSpec) -> Option<Document> {
    let schema = spec.schema.as_ref()?;
    Some(
        doc! {"$jsonSchema": {"bsonType": "object", "required": ["d"], "properties": {"d": mongo_schema(schema, true)}}},
    )
}

/// The part of a schema of core's subset that MongoDB's `$jsonSchema`
/// checks the same way: `required` and `properties` with simple `type`s
/// (no `integer`, whose meaning for `1.0` differs), recursively. Never
/// stricter than the schema, so the server refuses nothing core accepts.
pub(crate) fn mongo_schema(schema: &Value, top: bool) -> Document {
    let mut out = doc! {};
    let Some(m) = schema.as_object() else { return out };
    if let Some(types) = m.get("type").and_then(bson_types) {
        out.insert("bsonType", types);
    }
    if let Some(required) = m.get("required").and_then(Value::as_array) {
        let names: Vec<&str> =
            required.iter().filter_map(Value::as_str).filter(|n| !(top && (*n == "_id" || *n == "_version"))).collect();
        if !names.is_empty() {
            out.insert("required", names);
        }
    }
    if let Some(props) = m.get("properties").and_then(Value::as_object) {
        let mut p = Document::new();
        for (k, v) in props {
            if top && (k == "_id" || k == "_version") {
                continue;
            }
            let sub = mongo_schema(v, false);
            if !sub.is_empty() {
                p.insert(k.clone(), sub);
            }
        }
        if !p.is_empty() {
            out.insert("properties", p);
        }
    }
    out
}

fn bson_types(t: &Value) -> Option<Bson> {
    let one = |name: &str| -> Option<Vec<&'static str>> {
        Some(match name {
            "string" => vec!["string"],
            "boolean" => vec!["bool"],
            "object" => vec!["object"],
            "array" => vec!["array"],
            "null" => vec!["null"],
            "number" => vec!["int", "long", "double", "decimal"],
            _ => return None,
        })
    };
    let names: Vec<&'static str> = match t {
        Value::String(s) => one(s)?,
        Value::Array(a) => {
            let mut all = Vec::new();
            for v in a {
                all.extend(one(v.as_str()?)?);
            }
            all
        }
        _ => return None,
    };
    Some(Bson::Array(names.into_iter().map(Bson::from).collect()))
}

// ---------------------------------------------------------------- store

/// Mongo [`DocumentStore`].
#[derive(Clone)]
pub struct MongoDocumentStore {
    backend: MongoBackend,
    specs: Collection<Document>,
}

fn decode(d: &Document) -> Option<Value> {
    let decoded = d.get_str("j").ok().and_then(|j| decode_stored_json(j.as_bytes()).ok());
    if decoded.is_none() {
        tracing::warn!(backend = crate::BACKEND, "palisade: skipping a malformed stored document");
    }
    decoded
}

impl MongoDocumentStore {
    /// The document store of `backend`'s namespace.
    pub fn new(backend: MongoBackend) -> Self {
        let specs = backend.database().collection(SPECS);
        MongoDocumentStore { backend, specs }
    }

    fn data(&self, name: &str) -> Collection<Document> {
        self.backend.database().collection(&data_collection(name))
    }

    /// The compiled spec of `name`; `NotFound` when it does not exist.
    async fn compiled(&self, name: &str, session: Option<&mut ClientSession>, op: &'static str) -> Result<Compiled> {
        let find = self.specs.find_one(doc! {"_id": name});
        let found = match session {
            Some(s) => find.session(s).await,
            None => find.await,
        };
        let stored = found.map_err(|e| map(op, e))?.ok_or(DocumentFault::NoCollection)?;
        let text = stored.get_str("spec").map_err(|_| invalid_state("a stored collection spec is unreadable"))?;
        let json = decode_stored_json(text.as_bytes())?;
        Compiled::new(from_json(name, &json)?)
    }

    async fn check_exists(&self, name: &str, op: &'static str) -> Result<()> {
        match self.specs.find_one(doc! {"_id": name}).await.map_err(|e| map(op, e))? {
            Some(_) => Ok(()),
            None => Err(DocumentFault::NoCollection.into()),
        }
    }

    async fn ensure(&self, spec: CollectionSpec) -> Result<bool> {
        const OP: &str = "ensure_collection";
        let compiled = Compiled::new(spec.clone())?;
        if let Some(existing) = self.specs.find_one(doc! {"_id": &spec.name}).await.map_err(|e| map(OP, e))? {
            return self.same_spec(&spec, &existing);
        }
        // The collection and its indexes first, then the spec: a spec
        // stored means the collection is ready.
        let db = self.backend.database();
        let mut create = db.create_collection(data_collection(&spec.name));
        if let Some(validator) = validator(&spec) {
            create = create.validator(validator);
        }
        match create.await {
            Ok(()) => {}
            Err(e) if server_code(&e) == Some(NAMESPACE_EXISTS) => {
                // Left over from a drop that raced an insert, or being set
                // up by a concurrent `ensure_collection` (whose documents
                // cannot exist yet: inserts need the stored spec). Either
                // way: no documents, this spec's validator.
                self.data(&spec.name).delete_many(doc! {}).await.map_err(|e| map(OP, e))?;
                self.set_validator(&spec, OP).await?;
            }
            Err(e) => return Err(map(OP, e)),
        }
        self.data(&spec.name).create_indexes(compiled.indexes()).await.map_err(|e| map(OP, e))?;
        let text = to_json(&spec).to_string();
        match self.specs.insert_one(doc! {"_id": &spec.name, "spec": text}).await {
            Ok(_) => Ok(true),
            Err(e) if is_duplicate_key(&e) => {
                let existing = self.specs.find_one(doc! {"_id": &spec.name}).await.map_err(|e| map(OP, e))?;
                let existing = existing.ok_or_else(|| {
                    Error::new(ErrorKind::Conflict, "collection was dropped and re-created concurrently")
                        .set_temporary(true)
                })?;
                let same = self.same_spec(&spec, &existing);
                if same.is_err() {
                    // A concurrent creator with another spec won: its validator, not ours.
                    let text = existing
                        .get_str("spec")
                        .map_err(|_| invalid_state("a stored collection spec is unreadable"))?;
                    let winner = from_json(&spec.name, &decode_stored_json(text.as_bytes())?)?;
                    self.set_validator(&winner, OP).await?;
                }
                same
            }
            Err(e) => Err(map(OP, e)),
        }
    }

    /// Makes `spec`'s validator (or none) the collection's.
    async fn set_validator(&self, spec: &CollectionSpec, op: &'static str) -> Result<()> {
        let command = doc! {
            "collMod": data_collection(&spec.name),
            "validator": validator(spec).unwrap_or_default(),
        };
        self.backend.database().run_command(command).await.map(|_| ()).map_err(|e| map(op, e))
    }

    fn same_spec(&self, spec: &CollectionSpec, existing: &Document) -> Result<bool> {
        let text = existing.get_str("spec").map_err(|_| invalid_state("a stored collection spec is unreadable"))?;
        if from_json(&spec.name, &decode_stored_json(text.as_bytes())?)? == *spec {
            Ok(false)
        } else {
            Err(DocumentFault::SpecMismatch.into())
        }
    }

    async fn drop_coll(&self, name: &str) -> Result<bool> {
        const OP: &str = "drop_collection";
        check_collection_name(name)?;
        // Documents first: a spec without documents is harmless, documents
        // without a spec would show up in the next collection of that name.
        self.data(name).drop().await.map_err(|e| map(OP, e))?;
        let deleted = self.specs.delete_one(doc! {"_id": name}).await.map_err(|e| map(OP, e))?.deleted_count > 0;
        Ok(deleted)
    }

    /// After a duplicate key: `_id` or the name of the unique index whose
    /// value one of `docs` repeats (checked against live documents and
    /// within `docs`).
    async fn clash(&self, name: &str, coll: &Compiled, docs: &[Document], op: &'static str) -> Result<String> {
        const CHUNK: usize = 1_000;
        let data = self.data(name);
        let now = now_ms();
        let ids: Vec<&str> = docs.iter().filter_map(|d| d.get_str("_id").ok()).collect();
        let mut seen = HashSet::new();
        if !ids.iter().all(|id| seen.insert(*id)) {
            return Ok("_id".to_owned());
        }
        for chunk in ids.chunks(CHUNK) {
            let q = doc! {"$and": [live(now), {"_id": {"$in": chunk}}]};
            if data.count_documents(q).await.map_err(|e| map(op, e))? > 0 {
                return Ok("_id".to_owned());
            }
        }
        for (i, idx) in coll.spec.indexes.iter().enumerate().filter(|(_, idx)| idx.unique) {
            let field = format!("u{i}");
            let keys: Vec<&str> = docs.iter().filter_map(|d| d.get_str(&field).ok()).collect();
            let mut seen = HashSet::new();
            if !keys.iter().all(|k| seen.insert(*k)) {
                return Ok(idx.name());
            }
            for chunk in keys.chunks(CHUNK) {
                // A few documents being rewritten (`replace`, `update`) hold
                // their own old keys; inserted ones are not stored.
                let mut q = doc! {"$and": [live(now), {&field: {"$in": chunk}}]};
                if ids.len() <= CHUNK {
                    q = doc! {"$and": [q, {"_id": {"$nin": &ids}}]};
                }
                if data.count_documents(q).await.map_err(|e| map(op, e))? > 0 {
                    return Ok(idx.name());
                }
            }
        }
        Ok("_id".to_owned())
    }

    /// Deletes the expired documents of `name`; returns how many went.
    async fn purge_expired(&self, name: &str, op: &'static str) -> Result<u64> {
        self.data(name)
            .delete_many(doc! {"exp": {"$lte": date(now_ms())}})
            .await
            .map(|r| r.deleted_count)
            .map_err(|e| map(op, e))
    }

    /// Runs `write` again once after a unique clash, expired documents
    /// (which may hold the value) deleted first.
    async fn freeing<T, F, Fut>(&self, name: &str, op: &'static str, write: F) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        match write().await {
            // Once more after deleting expired documents (the TTL monitor
            // may have deleted the holder itself meanwhile).
            Err(e) if matches!(e.detail(), Some(ErrorDetail::UniqueViolation { .. })) => {
                self.purge_expired(name, op).await?;
                write().await
            }
            r => r,
        }
    }

    async fn insert_docs(&self, op: &'static str, name: &str, docs: Vec<Value>) -> Result<Vec<Value>> {
        check_collection_name(name)?;
        if docs.is_empty() || docs.len() > MAX_INSERT_MANY {
            return Err(Error::invalid(format!("insert_many takes 1..={MAX_INSERT_MANY} documents")));
        }
        let policy = self.backend.policy();
        let prepared = docs.into_iter().map(|d| prepare_insert(d, &policy)).collect::<Result<Vec<_>>>()?;
        let coll = self.compiled(name, None, op).await?;
        for (_, body) in &prepared {
            coll.check_schema(body)?;
        }
        let (stored, docs): (Vec<Value>, Vec<Document>) =
            prepared.into_iter().map(|(id, body)| coll.stored(&id, body, 1)).unzip();
        docs.iter().try_for_each(check_stored_size)?;
        let mut ids = HashSet::with_capacity(docs.len());
        if !docs.iter().all(|d| ids.insert(d.get_str("_id").unwrap_or_default())) {
            return Err(DocumentFault::Unique("_id".to_owned()).into());
        }
        self.freeing(name, op, || self.insert_prepared(op, name, &coll, &docs)).await?;
        Ok(stored)
    }

    async fn insert_prepared(&self, op: &'static str, name: &str, coll: &Compiled, docs: &[Document]) -> Result<()> {
        let data = self.data(name);
        let result = if let [one] = docs {
            data.insert_one(one).await.map(|_| ())
        } else {
            let mut session = self.backend.client().start_session().await.map_err(|e| map(op, e))?;
            let mut retry = Retry::new(self.backend.op_timeout());
            loop {
                if !retry.may_start() {
                    return Err(retry.exhausted());
                }
                match self.insert_once(&mut session, &data, docs, op).await? {
                    Attempt::Done(r) => break r,
                    Attempt::Retry(e) => retry.back_off(&mut session, &e).await,
                }
            }
        };
        match result {
            Ok(()) => Ok(()),
            Err(e) if is_duplicate_key(&e) => {
                Err(DocumentFault::Unique(self.clash(name, coll, docs, op).await?).into())
            }
            Err(e) => Err(map(op, e)),
        }
    }

    /// One transaction inserting `docs`; a duplicate key comes back as `Done(Err)`.
    async fn insert_once(
        &self,
        session: &mut ClientSession,
        data: &Collection<Document>,
        docs: &[Document],
        op: &'static str,
    ) -> Result<Attempt<std::result::Result<(), mongodb::error::Error>>> {
        session.start_transaction().await.map_err(|e| map(op, e))?;
        for chunk in docs.chunks(INSERT_CHUNK) {
            match data.insert_many(chunk).session(&mut *session).await {
                Ok(_) => {}
                Err(e) if is_duplicate_key(&e) => {
                    let _ = session.abort_transaction().await;
                    return Ok(Attempt::Done(Err(e)));
                }
                Err(e) if is_transient(&e) => return Ok(Attempt::Retry(e)),
                Err(e) => return abort_with(session, map(op, e)).await,
            }
        }
        Ok(match commit(session, op, Rerun::Unsafe).await? {
            Attempt::Done(()) => Attempt::Done(Ok(())),
            Attempt::Retry(e) => Attempt::Retry(e),
        })
    }

    async fn get_doc(&self, name: &str, id: &str) -> Result<Option<Value>> {
        check_collection_name(name)?;
        check_id(id)?;
        // By `_id` alone (one index lookup on any server), expiry checked here.
        let found = self
            .data(name)
            .find_one(doc! {"_id": id})
            .projection(doc! {"j": 1, "exp": 1})
            .await
            .map_err(|e| map("get", e))?;
        match found {
            Some(d) if is_live(&d, now_ms()) => Ok(decode(&d)),
            _ => self.check_exists(name, "get").await.map(|()| None),
        }
    }

    async fn replace_doc(&self, name: &str, id: &str, doc: Value, expected: Option<u64>) -> Result<Value> {
        const OP: &str = "replace";
        check_collection_name(name)?;
        let (body, expected) = prepare_replace(id, doc, expected, &self.backend.policy())?;
        let coll = self.compiled(name, None, OP).await?;
        coll.check_schema(&body)?;
        self.freeing(name, OP, || self.replace_once(name, &coll, id, &body, expected)).await
    }

    async fn replace_once(
        &self,
        name: &str,
        coll: &Compiled,
        id: &str,
        body: &Map<String, Value>,
        expected: Option<u64>,
    ) -> Result<Value> {
        const OP: &str = "replace";
        let data = self.data(name);
        // A concurrent change between the read and the guarded write: read again.
        for _ in 0..100 {
            let current = data
                .find_one(doc! {"_id": id})
                .projection(doc! {"v": 1, "exp": 1})
                .await
                .map_err(|e| map(OP, e))?
                .filter(|d| is_live(d, now_ms()))
                .ok_or(DocumentFault::NoDocument)?;
            let actual = current.get_i64("v").ok().and_then(|v| u64::try_from(v).ok()).unwrap_or(0);
            if let Some(expected) = expected.filter(|e| *e != actual) {
                return Err(DocumentFault::Version { expected, actual }.into());
            }
            let (stored, replacement) = coll.stored(id, body.clone(), actual + 1);
            check_stored_size(&replacement)?;
            // Guarded by the version as stored (even a corrupt one).
            let guard = doc! {"_id": id, "v": current.get("v").cloned().unwrap_or(Bson::Null)};
            match data.replace_one(guard, &replacement).await {
                Ok(r) if r.matched_count == 1 => return Ok(stored),
                Ok(_) => continue,
                Err(e) if is_duplicate_key(&e) => {
                    return Err(DocumentFault::Unique(self.clash(name, coll, &[replacement], OP).await?).into())
                }
                Err(e) => return Err(map(OP, e)),
            }
        }
        Err(Error::new(ErrorKind::Conflict, "the document kept changing; retry").set_temporary(true))
    }

    async fn update_docs(&self, name: &str, filter: &Filter, ops: &UpdateOps) -> Result<UpdateResult> {
        const OP: &str = "update";
        check_collection_name(name)?;
        let coll = self.compiled(name, None, OP).await?;
        self.freeing(name, OP, || async {
            let mut session = self.backend.client().start_session().await.map_err(|e| map(OP, e))?;
            let mut retry = Retry::new(self.backend.op_timeout());
            while retry.may_start() {
                match self.update_once(&mut session, name, &coll, filter, ops).await? {
                    Attempt::Done(r) => return r,
                    Attempt::Retry(e) => retry.back_off(&mut session, &e).await,
                }
            }
            Err(retry.exhausted())
        })
        .await
    }

    async fn update_once(
        &self,
        session: &mut ClientSession,
        name: &str,
        coll: &Compiled,
        filter: &Filter,
        ops: &UpdateOps,
    ) -> Result<Attempt<Result<UpdateResult>>> {
        const OP: &str = "update";
        macro_rules! step {
            ($e:expr) => {
                match $e {
                    Ok(v) => v,
                    Err(e) if is_transient(&e) => return Ok(Attempt::Retry(e)),
                    Err(e) => return abort_with(session, map(OP, e)).await,
                }
            };
        }
        let data = self.data(name);
        session.start_transaction().await.map_err(|e| map(OP, e))?;
        // The spec again, inside the transaction: a concurrent drop conflicts.
        if let Err(e) = self.compiled(name, Some(&mut *session), OP).await {
            return abort_with(session, e).await;
        }
        let mut cursor = step!(
            data.find(live_and(now_ms(), prefilter(filter).query))
                .projection(doc! {"j": 1, "v": 1})
                .session(&mut *session)
                .await
        );
        let mut matched = Vec::new();
        while let Some(d) = step!(cursor.next(&mut *session).await.transpose()) {
            if let Some(doc) = decode(&d).filter(|doc| matches(filter, doc)) {
                matched.push((d, doc));
            }
        }
        let policy = self.backend.policy();
        let mut modified = 0u64;
        for (d, doc) in &matched {
            let doc = doc.clone();
            let id = d.get_str("_id").map_err(|_| invalid_state("a stored document has no string `_id`"))?;
            let version = d.get_i64("v").ok().and_then(|v| u64::try_from(v).ok()).unwrap_or(0);
            let mut next = doc.clone();
            if let Err(e) = ops.apply(&mut next, &policy) {
                return abort_with(session, e).await;
            }
            if next == doc {
                continue;
            }
            let Value::Object(mut body) = next else { continue };
            body.remove("_version");
            if let Err(e) = coll.check_schema(&body) {
                return abort_with(session, e).await;
            }
            let (_, replacement) = coll.stored(id, body, version + 1);
            if let Err(e) = check_stored_size(&replacement) {
                return abort_with(session, e).await;
            }
            let guard = doc! {"_id": id, "v": d.get("v").cloned().unwrap_or(Bson::Null)};
            match data.replace_one(guard, &replacement).session(&mut *session).await {
                Ok(r) => modified += r.matched_count.min(1),
                Err(e) if is_duplicate_key(&e) => {
                    let _ = session.abort_transaction().await;
                    let index = self.clash(name, coll, &[replacement], OP).await?;
                    return Ok(Attempt::Done(Err(DocumentFault::Unique(index).into())));
                }
                Err(e) if is_transient(&e) => return Ok(Attempt::Retry(e)),
                Err(e) => return abort_with(session, map(OP, e)).await,
            }
        }
        Ok(match commit(session, OP, Rerun::Unsafe).await? {
            Attempt::Done(()) => Attempt::Done(Ok(UpdateResult { matched: matched.len() as u64, modified })),
            Attempt::Retry(e) => Attempt::Retry(e),
        })
    }

    /// Streams the live documents `query` selects to `visit` (stored form
    /// and decoded document), for what the server cannot decide alone;
    /// `NotFound` when there are none and the collection does not exist.
    async fn scan(
        &self,
        name: &str,
        query: Document,
        op: &'static str,
        mut visit: impl FnMut(&Document, Value) + Send,
    ) -> Result<()> {
        let mut cursor = self
            .data(name)
            .find(live_and(now_ms(), query))
            .projection(doc! {"j": 1, "v": 1})
            .max_time(self.backend.op_timeout())
            .await
            .map_err(|e| map(op, e))?;
        let mut any = false;
        while let Some(d) = cursor.try_next().await.map_err(|e| map(op, e))? {
            any = true;
            if let Some(doc) = decode(&d) {
                visit(&d, doc);
            }
        }
        if !any {
            self.check_exists(name, op).await?;
        }
        Ok(())
    }

    /// `find` in process: the documents `query` selects that `filter` (if
    /// any) matches, sorted, skipped and limited — holding at most a few
    /// times `skip + limit` of them at once.
    async fn find_in_process(
        &self,
        name: &str,
        query: Document,
        filter: Option<&Filter>,
        options: &FindOptions,
    ) -> Result<Vec<Value>> {
        let keep = options.limit.map(|l| options.skip.saturating_add(l));
        let mut docs: Vec<Value> = Vec::new();
        self.scan(name, query, "find", |_, doc| {
            if filter.is_none_or(|f| matches(f, &doc)) {
                docs.push(doc);
                if let Some(k) = keep {
                    if docs.len() >= k.saturating_mul(2).max(1_024) {
                        docs.sort_by(|a, b| cmp_docs(a, b, &options.sort));
                        docs.truncate(k);
                    }
                }
            }
        })
        .await?;
        docs.sort_by(|a, b| cmp_docs(a, b, &options.sort));
        Ok(docs.into_iter().skip(options.skip).take(options.limit.unwrap_or(usize::MAX)).collect())
    }

    async fn delete_docs(&self, name: &str, filter: &Filter) -> Result<u64> {
        const OP: &str = "delete";
        check_collection_name(name)?;
        let pf = prefilter(filter);
        let data = self.data(name);
        let deleted = if pf.exact {
            data.delete_many(live_and(now_ms(), pf.query)).await.map_err(|e| map(OP, e))?.deleted_count
        } else {
            // Each matching document is deleted unless it changed since it was read.
            let mut deleted = 0;
            let mut doomed: Vec<Document> = Vec::new();
            self.scan(name, pf.query, OP, |d, doc| {
                if matches(filter, &doc) {
                    let id = d.get("_id").cloned().unwrap_or(Bson::Null);
                    doomed.push(doc! {"_id": id, "v": d.get("v").cloned().unwrap_or(Bson::Null)});
                }
            })
            .await?;
            for chunk in doomed.chunks(1_000) {
                let q = doc! {"$and": [live(now_ms()), {"$or": chunk}]};
                deleted += data.delete_many(q).await.map_err(|e| map(OP, e))?.deleted_count;
            }
            deleted
        };
        if deleted == 0 {
            self.check_exists(name, OP).await?;
        }
        Ok(deleted)
    }

    async fn find_docs(&self, name: &str, options: &FindOptions) -> Result<Vec<Value>> {
        const OP: &str = "find";
        check_collection_name(name)?;
        options.validate()?;
        let now = now_ms();
        let pf = prefilter(&options.filter);
        if !pf.exact {
            let docs = self.find_in_process(name, pf.query, Some(&options.filter), options).await?;
            return Ok(match &options.projection {
                Some(p) => docs.iter().map(|d| project(d, p)).collect(),
                None => docs,
            });
        }
        let query = live_and(now, pf.query.clone());
        let data = self.data(name);
        let in_process = !options.sort.is_empty() && {
            let containers: Vec<Document> = options
                .sort
                .iter()
                .flat_map(|k| {
                    let f = field(&k.path);
                    [doc! {&f: {"$type": "array"}}, doc! {&f: {"$type": "object"}}]
                })
                .collect();
            let probe = doc! {"$and": [query.clone(), {"$or": containers}]};
            data.find_one(probe).projection(doc! {"_id": 1}).await.map_err(|e| map(OP, e))?.is_some()
        };
        let docs = if in_process {
            self.find_in_process(name, pf.query, None, options).await?
        } else {
            // First occurrence of a path wins, as in core's comparison.
            let mut sort = Document::new();
            for k in &options.sort {
                let f = field(&k.path);
                if !sort.contains_key(&f) {
                    sort.insert(f, Bson::Int32(if k.order == SortOrder::Asc { 1 } else { -1 }));
                }
            }
            if !sort.contains_key("_id") {
                sort.insert("_id", 1);
            }
            let found: Vec<Document> = data
                .find(query)
                .projection(doc! {"j": 1})
                .max_time(self.backend.op_timeout())
                .sort(sort)
                .skip(u64::try_from(options.skip).unwrap_or(u64::MAX).min(i64::MAX as u64))
                .limit(options.limit.map_or(0, |l| i64::try_from(l).unwrap_or(i64::MAX)))
                .await
                .map_err(|e| map(OP, e))?
                .try_collect()
                .await
                .map_err(|e| map(OP, e))?;
            if found.is_empty() {
                self.check_exists(name, OP).await?;
            }
            found.iter().filter_map(decode).collect()
        };
        Ok(match &options.projection {
            Some(p) => docs.iter().map(|d| project(d, p)).collect(),
            None => docs,
        })
    }

    async fn count_docs(&self, name: &str, filter: &Filter) -> Result<u64> {
        const OP: &str = "count";
        check_collection_name(name)?;
        let pf = prefilter(filter);
        let n = if pf.exact {
            self.data(name).count_documents(live_and(now_ms(), pf.query)).await.map_err(|e| map(OP, e))?
        } else {
            let mut n = 0u64;
            self.scan(name, pf.query, OP, |_, doc| n += u64::from(matches(filter, &doc))).await?;
            n
        };
        if n == 0 {
            self.check_exists(name, OP).await?;
        }
        Ok(n)
    }
}

#[async_trait]
impl Store for MongoDocumentStore {
    fn backend(&self) -> &'static str {
        crate::BACKEND
    }

    fn capabilities(&self) -> Capabilities {
        capabilities()
    }

    async fn ping(&self) -> Result<()> {
        self.backend.ping().await
    }
}

#[async_trait]
impl DocumentStore for MongoDocumentStore {
    async fn ensure_collection(&self, spec: CollectionSpec) -> Result<bool> {
        self.ensure(spec).await.map_err(tagged("ensure_collection"))
    }

    async fn drop_collection(&self, collection: &str) -> Result<bool> {
        self.drop_coll(collection).await.map_err(tagged("drop_collection"))
    }

    async fn insert(&self, collection: &str, doc: Value) -> Result<Value> {
        let stored = self.insert_docs("insert", collection, vec![doc]).await.map_err(tagged("insert"))?;
        stored.into_iter().next().ok_or_else(|| invalid_state("insert stored nothing").with_op("insert"))
    }

    async fn insert_many(&self, collection: &str, docs: Vec<Value>) -> Result<Vec<Value>> {
        self.insert_docs("insert_many", collection, docs).await.map_err(tagged("insert_many"))
    }

    async fn get(&self, collection: &str, id: &str) -> Result<Option<Value>> {
        self.get_doc(collection, id).await.map_err(tagged("get"))
    }

    async fn replace(&self, collection: &str, id: &str, doc: Value, expected_version: Option<u64>) -> Result<Value> {
        self.replace_doc(collection, id, doc, expected_version).await.map_err(tagged("replace"))
    }

    async fn update(&self, collection: &str, filter: Filter, ops: UpdateOps) -> Result<UpdateResult> {
        self.update_docs(collection, &filter, &ops).await.map_err(tagged("update"))
    }

    async fn delete(&self, collection: &str, filter: Filter) -> Result<u64> {
        self.delete_docs(collection, &filter).await.map_err(tagged("delete"))
    }

    async fn find(&self, collection: &str, options: FindOptions) -> Result<Vec<Value>> {
        self.find_docs(collection, &options).await.map_err(tagged("find"))
    }

    async fn count(&self, collection: &str, filter: Filter) -> Result<u64> {
        self.count_docs(collection, &filter).await.map_err(tagged("count"))
    }
}

#[cfg(test)]
mod tests {
    use palisade_core::documents::{IndexSpec, SortKey};
    use serde_json::json;

    use super::*;

    fn q(filter: Value) -> Document {
        filter_doc(&Filter::parse(&filter).unwrap())
    }

    #[test]
    fn filters_translate_to_queries_on_the_stored_tree() {
        assert_eq!(q(json!({})), Document::new());
        assert_eq!(q(json!({"a.b": 5})), doc! {"d.a.b": {"$eq": 5_i64}});
        assert_eq!(q(json!({"_id": "x"})), doc! {"_id": {"$eq": "x"}});
        assert_eq!(q(json!({"_version": {"$gt": 1}})), doc! {"v": {"$gt": 1_i64}});
        assert_eq!(
            q(json!({"$or": [{"n": {"$in": [1, 2.5]}}, {"s": {"$exists": false}}]})),
            doc! {"$or": [{"d.n": {"$in": [1_i64, 2.5]}}, {"d.s": {"$exists": false}}]}
        );
        // `$not` becomes `$nor`, which servers accept at any nesting.
        assert_eq!(
            q(json!({"n": {"$not": {"$gt": 1, "$lt": 5}}})),
            doc! {"$nor": [{"$and": [{"d.n": {"$gt": 1_i64}}, {"d.n": {"$lt": 5_i64}}]}]}
        );
    }

    #[test]
    fn dotted_paths_are_decided_in_process_over_a_superset() {
        let pf = |f: Value| {
            let p = prefilter(&Filter::parse(&f).unwrap());
            (p.query, p.exact)
        };
        assert_eq!(
            pf(json!({"a": 1, "b": {"$gt": 2}})),
            (doc! {"$and": [{"d.a": {"$eq": 1_i64}}, {"d.b": {"$gt": 2_i64}}]}, true)
        );
        // Left out of a conjunction: the rest still narrows.
        assert_eq!(pf(json!({"a": 1, "b.0": null})), (doc! {"d.a": {"$eq": 1_i64}}, false));
        // Left out of a disjunction: everything.
        assert_eq!(pf(json!({"$or": [{"a": 1}, {"b.c": 2}]})), (Document::new(), false));
        assert!(pf(json!({"$or": [{"a": 1}, {"_id": "x"}]})).1);
        assert_eq!(pf(json!({})), (Document::new(), true));
    }

    #[test]
    fn object_operands_and_stored_objects_have_their_keys_in_key_order() {
        let b = to_bson(&json!({"b": 1, "a": {"d": 2, "c": [1.5, null]}}));
        let Bson::Document(d) = b else { panic!("an object is a document") };
        assert_eq!(d.keys().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(d.get_document("a").unwrap().keys().collect::<Vec<_>>(), ["c", "d"]);
        assert_eq!(to_bson(&json!(u64::MAX)), Bson::Double(u64::MAX as f64));
    }

    #[test]
    fn index_specs_become_mongo_indexes() {
        let spec = CollectionSpec::new("c")
            .with_index(IndexSpec::unique(vec![SortKey::asc("ip").unwrap()]))
            .with_index(IndexSpec::on(vec![SortKey::asc("a.b").unwrap(), SortKey::desc("n").unwrap()]));
        let coll = Compiled::new(spec).unwrap();
        let models = coll.indexes();
        assert_eq!(models[0].keys, doc! {"u0": 1});
        let unique = models[0].options.as_ref().unwrap();
        assert_eq!((unique.unique, unique.sparse), (Some(true), Some(true)));
        assert_eq!(models[1].keys, doc! {"d.a.b": 1, "d.n": -1});
        assert_eq!(models[2].keys, doc! {"exp": 1}, "every collection has the TTL index");
        let (_, stored) = coll.stored("x", json!({"_id": "x", "ip": [1, 2.0]}).as_object().unwrap().clone(), 1);
        assert_eq!(stored.get_str("u0").unwrap(), r#"[[1,2]]"#, "arrays are one whole value; 2.0 is 2");
        assert!(stored.get_document("d").unwrap().get("_id").is_none());
    }

    #[test]
    fn the_server_schema_is_never_stricter_than_cores() {
        let schema = json!({
            "type": "object",
            "required": ["_id", "name"],
            "properties": {
                "_id": {"type": "string"},
                "name": {"type": "string", "minLength": 1},
                "n": {"type": "integer"},
                "tags": {"type": ["array", "null"]},
            },
        });
        assert_eq!(
            mongo_schema(&schema, true),
            doc! {
                "bsonType": ["object"],
                "required": ["name"],
                "properties": {"name": {"bsonType": ["string"]}, "tags": {"bsonType": ["array", "null"]}},
            }
        );
    }
}
