//! `DocumentStore` on JSONB (`migrations/0003_documents.sql`).
//!
//! - **Storage**: one `documents` table for every collection of the namespace;
//!   `body` is the stored form (with `_id` and `_version`), `expires_at` comes
//!   from the collection's TTL rule at every write ([`TtlSpec::expires_at`]).
//! - **Expiry**: every read, update and delete adds `expires_at > now()` (the
//!   statement's, or the transaction's, start), so an expired document is
//!   invisible at once. Successful writes then delete the collection's expired
//!   rows now and then (at most once a minute per store instance);
//!   [`PgDocumentStore::sweep`] does it on demand.
//! - **Filters** become SQL over the `palisade_doc_*` functions, with every
//!   value and path a bound parameter (see `filter.rs`); they implement core's
//!   reference semantics ([`matches`](palisade_core::documents::matches)).
//! - **Writes** check the schema in Rust (core's `SchemaValidator`) before
//!   anything is written. `update` and `replace` lock the matching live rows
//!   (`FOR UPDATE`, in `_id` order), apply the operations in Rust and write
//!   back in the same transaction: concurrent updates lose nothing, and every
//!   write is all-or-nothing. `insert_many` runs its chunks in one transaction.
//! - **Uniqueness** of `_id` and of unique indexes is enforced by primary keys
//!   (`documents`, `document_keys`) with `ON CONFLICT DO NOTHING`, so it holds
//!   under concurrency and the violated index is known without parsing errors.
//!   A value held by an expired document is freed (that document is deleted)
//!   and the write retried once. Keys are [`IndexSpec::key_of`]'s canonical
//!   form, so `1` and `1.0` collide and documents lacking a field are skipped.
//!   Non-unique indexes are part of the spec but create nothing in Postgres:
//!   equality filters on any field use the one GIN index on `body`.
//! - **Sorting** happens in SQL (MongoDB's type order, strings by code point,
//!   then `_id`); when a sort value is an object or an array, whose order SQL
//!   does not reproduce, all matches are sorted in Rust with `cmp_docs`.
//!
//! [`TtlSpec::expires_at`]: palisade_core::documents::TtlSpec::expires_at
//! [`IndexSpec::key_of`]: palisade_core::documents::IndexSpec::key_of

mod filter;
mod spec;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use palisade_core::documents::{
    check_collection_name, check_id, cmp_docs, prepare_insert, prepare_replace, project, with_version, CollectionSpec,
    Filter, FindOptions, UpdateOps, UpdateResult, MAX_INSERT_MANY,
};
use palisade_core::{Capabilities, DocumentStore, Error, ErrorKind, Result};
use serde_json::Value;
use sqlx::{PgConnection, Row};

use self::filter::{Bind, Sql};
use self::spec::Collection;
use crate::error::{map, tagged, DocumentFault};
use crate::{capabilities, PgBackend};

/// A row of `documents d` is live unless `now >= expires_at`.
macro_rules! live {
    () => {
        "(d.expires_at IS NULL OR d.expires_at > now())"
    };
}

/// Rows per statement when writing many documents (each column is one array parameter).
const CHUNK: usize = 5_000;
/// How often writes sweep a collection's expired rows.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Postgres [`DocumentStore`]. Cheap to clone; clones share the cache of
/// compiled collection specs.
#[derive(Clone)]
pub struct PgDocumentStore {
    backend: PgBackend,
    state: Arc<State>,
}

#[derive(Default)]
struct State {
    /// Compiled specs by collection name (checked against the stored spec on use).
    collections: Mutex<HashMap<String, Arc<Collection>>>,
    /// When this instance last swept each collection.
    swept: Mutex<HashMap<String, Instant>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A document about to be written.
struct Staged {
    id: String,
    /// The stored form (with `_id` and `_version`).
    doc: Value,
    version: i64,
    expires_at: Option<DateTime<Utc>>,
    /// The stored form it replaces, if any.
    old: Option<Value>,
}

impl Staged {
    fn new(coll: &Collection, id: String, doc: Value, version: u64, old: Option<Value>) -> Self {
        let expires_at = coll.expiry(&doc);
        Staged { id, doc, version: i64::try_from(version).unwrap_or(i64::MAX), expires_at, old }
    }
}

/// A unique-index key a document claims.
struct KeyRow {
    index_no: i32,
    key: Vec<u8>,
    id: String,
}

/// A stored `bigint` version as the `u64` the API speaks.
fn version_of(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

impl PgDocumentStore {
    /// The document store of `backend`'s namespace.
    pub fn new(backend: PgBackend) -> Self {
        PgDocumentStore { backend, state: Arc::new(State::default()) }
    }

    /// Deletes the expired documents of every collection (reads already
    /// ignore them); returns how many went.
    pub async fn sweep(&self) -> Result<u64> {
        sqlx::query("DELETE FROM documents WHERE expires_at <= now()")
            .execute(&self.backend.pool)
            .await
            .map(|r| r.rows_affected())
            .map_err(|e| map("sweep", e))
    }

    /// Sweeps `collection` if this instance has not done so for a while.
    /// Called after a successful write; a failure is only logged.
    async fn maybe_sweep(&self, collection: &str) {
        let due = {
            let mut swept = lock(&self.state.swept);
            let now = Instant::now();
            match swept.get(collection) {
                Some(at) if now.duration_since(*at) < SWEEP_EVERY => false,
                _ => {
                    swept.insert(collection.to_owned(), now);
                    true
                }
            }
        };
        if !due {
            return;
        }
        let swept = sqlx::query("DELETE FROM documents WHERE collection = $1 AND expires_at <= now()")
            .bind(collection)
            .execute(&self.backend.pool)
            .await;
        if let Err(e) = swept {
            tracing::debug!(error = %map("sweep", e), "sweeping expired documents failed");
        }
    }

    /// The compiled spec of `name`, whose row stays locked against a
    /// concurrent drop until the transaction ends.
    async fn collection(&self, conn: &mut PgConnection, name: &str, op: &'static str) -> Result<Arc<Collection>> {
        let stored: Option<Value> = sqlx::query_scalar("SELECT spec FROM collections WHERE name = $1 FOR KEY SHARE")
            .bind(name)
            .fetch_optional(&mut *conn)
            .await
            .map_err(|e| map(op, e))?;
        let stored = stored.ok_or(DocumentFault::NoCollection)?;
        if let Some(c) = lock(&self.state.collections).get(name).filter(|c| c.stored == stored) {
            return Ok(Arc::clone(c));
        }
        let compiled = Arc::new(Collection::compile(name, stored)?);
        lock(&self.state.collections).insert(name.to_owned(), Arc::clone(&compiled));
        Ok(compiled)
    }

    /// `NotFound` unless collection `name` exists.
    async fn check_exists(&self, name: &str, op: &'static str) -> Result<()> {
        let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM collections WHERE name = $1)")
            .bind(name)
            .fetch_one(&self.backend.pool)
            .await
            .map_err(|e| map(op, e))?;
        if exists {
            Ok(())
        } else {
            Err(DocumentFault::NoCollection.into())
        }
    }

    async fn insert_docs(&self, op: &'static str, collection: &str, docs: Vec<Value>) -> Result<Vec<Value>> {
        check_collection_name(collection)?;
        if docs.is_empty() || docs.len() > MAX_INSERT_MANY {
            return Err(Error::invalid(format!("insert_many takes 1..={MAX_INSERT_MANY} documents")));
        }
        let prepared = docs.into_iter().map(prepare_insert).collect::<Result<Vec<_>>>()?;
        let mut tx = self.backend.pool.begin().await.map_err(|e| map(op, e))?;
        let coll = self.collection(&mut tx, collection, op).await?;
        for (_, body) in &prepared {
            coll.check_schema(body)?;
        }
        let mut ids = HashSet::with_capacity(prepared.len());
        if !prepared.iter().all(|(id, _)| ids.insert(id.as_str())) {
            return Err(DocumentFault::Unique("_id".to_owned()).into());
        }
        let staged: Vec<Staged> =
            prepared.into_iter().map(|(id, body)| Staged::new(&coll, id, with_version(body, 1), 1, None)).collect();

        let all: Vec<&Staged> = staged.iter().collect();
        let mut taken = insert_documents(&mut tx, collection, &all, op).await?;
        if !taken.is_empty() && purge_expired_ids(&mut tx, collection, &taken, op).await? > 0 {
            taken = insert_documents(&mut tx, collection, &taken, op).await?;
        }
        if !taken.is_empty() {
            return Err(DocumentFault::Unique("_id".to_owned()).into());
        }
        let keys: Vec<KeyRow> = staged
            .iter()
            .flat_map(|s| {
                coll.unique_indexes().filter_map(|(index_no, idx)| {
                    idx.key_of(&s.doc).map(|k| KeyRow { index_no, key: k.into_bytes(), id: s.id.clone() })
                })
            })
            .collect();
        insert_keys(&mut tx, &coll, collection, &staged, keys, op).await?;
        tx.commit().await.map_err(|e| map(op, e))?;
        self.maybe_sweep(collection).await;
        Ok(staged.into_iter().map(|s| s.doc).collect())
    }

    async fn get_doc(&self, collection: &str, id: &str) -> Result<Option<Value>> {
        check_collection_name(collection)?;
        check_id(id)?;
        let row = sqlx::query(concat!(
            "SELECT d.body FROM collections c LEFT JOIN documents d ON d.collection = c.name AND d.id = $2 AND ",
            live!(),
            " WHERE c.name = $1"
        ))
        .bind(collection)
        .bind(id)
        .fetch_optional(&self.backend.pool)
        .await
        .map_err(|e| map("get", e))?;
        let row = row.ok_or(DocumentFault::NoCollection)?;
        row.try_get::<Option<Value>, _>(0).map_err(|e| map("get", e))
    }

    async fn replace_doc(&self, collection: &str, id: &str, doc: Value, expected: Option<u64>) -> Result<Value> {
        const OP: &str = "replace";
        check_collection_name(collection)?;
        let (body, expected) = prepare_replace(id, doc, expected)?;
        let mut tx = self.backend.pool.begin().await.map_err(|e| map(OP, e))?;
        let coll = self.collection(&mut tx, collection, OP).await?;
        let row = sqlx::query(concat!(
            "SELECT d.body, d.version FROM documents d WHERE d.collection = $1 AND d.id = $2 AND ",
            live!(),
            " FOR UPDATE"
        ))
        .bind(collection)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| map(OP, e))?;
        let row = row.ok_or(DocumentFault::NoDocument)?;
        let old: Value = row.try_get(0).map_err(|e| map(OP, e))?;
        let actual = version_of(row.try_get(1).map_err(|e| map(OP, e))?);
        if let Some(expected) = expected.filter(|e| *e != actual) {
            return Err(DocumentFault::Version { expected, actual }.into());
        }
        coll.check_schema(&body)?;
        let stored = with_version(body, actual + 1);
        let staged = [Staged::new(&coll, id.to_owned(), stored.clone(), actual + 1, Some(old))];
        write_back(&mut tx, &coll, collection, &staged, OP).await?;
        tx.commit().await.map_err(|e| map(OP, e))?;
        self.maybe_sweep(collection).await;
        Ok(stored)
    }

    async fn update_docs(&self, collection: &str, filter: &Filter, ops: &UpdateOps) -> Result<UpdateResult> {
        const OP: &str = "update";
        check_collection_name(collection)?;
        let mut tx = self.backend.pool.begin().await.map_err(|e| map(OP, e))?;
        let coll = self.collection(&mut tx, collection, OP).await?;
        let mut sql = Sql::new("SELECT d.id, d.body, d.version FROM documents d WHERE d.collection = ");
        sql.bind(Bind::Text(collection.to_owned()), "::text").push(concat!(" AND ", live!(), " AND "));
        sql.filter(filter).push(" ORDER BY d.id FOR UPDATE");
        let rows = sql.query().fetch_all(&mut *tx).await.map_err(|e| map(OP, e))?;
        let mut staged = Vec::new();
        for row in &rows {
            let id: String = row.try_get(0).map_err(|e| map(OP, e))?;
            let doc: Value = row.try_get(1).map_err(|e| map(OP, e))?;
            let version = version_of(row.try_get(2).map_err(|e| map(OP, e))?);
            let mut next = doc.clone();
            ops.apply(&mut next)?;
            if next == doc {
                continue;
            }
            let Value::Object(mut body) = next else { continue };
            body.remove("_version");
            coll.check_schema(&body)?;
            staged.push(Staged::new(&coll, id, with_version(body, version + 1), version + 1, Some(doc)));
        }
        write_back(&mut tx, &coll, collection, &staged, OP).await?;
        tx.commit().await.map_err(|e| map(OP, e))?;
        self.maybe_sweep(collection).await;
        Ok(UpdateResult { matched: rows.len() as u64, modified: staged.len() as u64 })
    }

    async fn delete_docs(&self, collection: &str, filter: &Filter) -> Result<u64> {
        const OP: &str = "delete";
        check_collection_name(collection)?;
        let mut sql = Sql::new("DELETE FROM documents d WHERE d.collection = ");
        sql.bind(Bind::Text(collection.to_owned()), "::text").push(concat!(" AND ", live!(), " AND "));
        sql.filter(filter);
        let deleted = sql.query().execute(&self.backend.pool).await.map_err(|e| map(OP, e))?.rows_affected();
        if deleted == 0 {
            self.check_exists(collection, OP).await?;
        }
        self.maybe_sweep(collection).await;
        Ok(deleted)
    }

    async fn find_docs(&self, collection: &str, options: &FindOptions) -> Result<Vec<Value>> {
        const OP: &str = "find";
        check_collection_name(collection)?;
        options.validate()?;
        let keys = &options.sort;
        let mut sql = Sql::new("SELECT d.body");
        if !keys.is_empty() {
            sql.push(", ").containers_flag(keys);
        }
        sql.push(" FROM documents d");
        if !keys.is_empty() {
            sql.sort_values(keys);
        }
        sql.push(" WHERE d.collection = ").bind(Bind::Text(collection.to_owned()), "::text");
        sql.push(concat!(" AND ", live!(), " AND ")).filter(&options.filter).order_by(keys);
        if options.skip > 0 {
            sql.push(" OFFSET ").bind(Bind::BigInt(i64::try_from(options.skip).unwrap_or(i64::MAX)), "::bigint");
        }
        if let Some(limit) = options.limit {
            sql.push(" LIMIT ").bind(Bind::BigInt(i64::try_from(limit).unwrap_or(i64::MAX)), "::bigint");
        }
        let rows = sql.query().fetch_all(&self.backend.pool).await.map_err(|e| map(OP, e))?;
        let Some(first) = rows.first() else {
            self.check_exists(collection, OP).await?;
            return Ok(Vec::new());
        };
        let containers = !keys.is_empty() && first.try_get::<Option<bool>, _>(1).map_err(|e| map(OP, e))? == Some(true);
        let docs = if containers {
            self.find_sorted_in_rust(collection, options).await?
        } else {
            rows.iter()
                .map(|r| r.try_get::<Value, _>(0))
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| map(OP, e))?
        };
        Ok(match &options.projection {
            Some(p) => docs.iter().map(|d| project(d, p)).collect(),
            None => docs,
        })
    }

    /// `find` for sorts SQL cannot order: every match, sorted with `cmp_docs`.
    async fn find_sorted_in_rust(&self, collection: &str, options: &FindOptions) -> Result<Vec<Value>> {
        let mut sql = Sql::new("SELECT d.body FROM documents d WHERE d.collection = ");
        sql.bind(Bind::Text(collection.to_owned()), "::text").push(concat!(" AND ", live!(), " AND "));
        sql.filter(&options.filter);
        let mut docs: Vec<Value> = sql
            .query()
            .fetch_all(&self.backend.pool)
            .await
            .map_err(|e| map("find", e))?
            .iter()
            .map(|r| r.try_get::<Value, _>(0))
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| map("find", e))?;
        docs.sort_by(|a, b| cmp_docs(a, b, &options.sort));
        Ok(docs.into_iter().skip(options.skip).take(options.limit.unwrap_or(usize::MAX)).collect())
    }

    async fn count_docs(&self, collection: &str, filter: &Filter) -> Result<u64> {
        const OP: &str = "count";
        check_collection_name(collection)?;
        let mut sql = Sql::new("SELECT EXISTS (SELECT 1 FROM collections WHERE name = ");
        sql.bind(Bind::Text(collection.to_owned()), "::text");
        sql.push(concat!("), (SELECT count(*) FROM documents d WHERE d.collection = $1 AND ", live!(), " AND "));
        sql.filter(filter).push(")");
        let row = sql.query().fetch_one(&self.backend.pool).await.map_err(|e| map(OP, e))?;
        if !row.try_get::<bool, _>(0).map_err(|e| map(OP, e))? {
            return Err(DocumentFault::NoCollection.into());
        }
        let n: i64 = row.try_get(1).map_err(|e| map(OP, e))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn ensure(&self, spec: CollectionSpec) -> Result<bool> {
        const OP: &str = "ensure_collection";
        spec.validate()?;
        let stored = spec::to_json(&spec);
        // A concurrent drop between the two statements is retried.
        for _ in 0..3 {
            let created =
                sqlx::query("INSERT INTO collections (name, spec) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
                    .bind(&spec.name)
                    .bind(&stored)
                    .execute(&self.backend.pool)
                    .await
                    .map_err(|e| map(OP, e))?
                    .rows_affected()
                    > 0;
            if created {
                return Ok(true);
            }
            let existing: Option<Value> = sqlx::query_scalar("SELECT spec FROM collections WHERE name = $1")
                .bind(&spec.name)
                .fetch_optional(&self.backend.pool)
                .await
                .map_err(|e| map(OP, e))?;
            if let Some(existing) = existing {
                return if spec::from_json(&spec.name, &existing)? == spec {
                    Ok(false)
                } else {
                    Err(DocumentFault::SpecMismatch.into())
                };
            }
        }
        Err(Error::new(ErrorKind::Conflict, "collection was dropped and re-created concurrently").set_temporary(true))
    }

    async fn drop_coll(&self, collection: &str) -> Result<bool> {
        check_collection_name(collection)?;
        let dropped = sqlx::query("DELETE FROM collections WHERE name = $1")
            .bind(collection)
            .execute(&self.backend.pool)
            .await
            .map_err(|e| map("drop_collection", e))?
            .rows_affected()
            > 0;
        lock(&self.state.collections).remove(collection);
        Ok(dropped)
    }
}

/// Inserts new documents; returns those whose `_id` was taken.
async fn insert_documents<'a>(
    conn: &mut PgConnection,
    collection: &str,
    docs: &[&'a Staged],
    op: &'static str,
) -> Result<Vec<&'a Staged>> {
    let mut taken = Vec::new();
    for chunk in docs.chunks(CHUNK) {
        let rows = sqlx::query(concat!(
            "INSERT INTO documents (collection, id, body, version, expires_at) ",
            "SELECT $1, t.id, t.body, t.version, t.expires_at ",
            "FROM unnest($2::text[], $3::jsonb[], $4::bigint[], $5::timestamptz[]) AS t(id, body, version, expires_at) ",
            "ON CONFLICT DO NOTHING RETURNING id"
        ))
        .bind(collection)
        .bind(chunk.iter().map(|s| s.id.clone()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|s| s.doc.clone()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|s| s.version).collect::<Vec<_>>())
        .bind(chunk.iter().map(|s| s.expires_at).collect::<Vec<_>>())
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| map(op, e))?;
        if rows.len() < chunk.len() {
            let inserted =
                rows.iter().map(|r| r.try_get::<String, _>(0)).collect::<std::result::Result<HashSet<_>, _>>();
            let inserted = inserted.map_err(|e| map(op, e))?;
            taken.extend(chunk.iter().filter(|s| !inserted.contains(&s.id)).copied());
        }
    }
    Ok(taken)
}

/// Deletes the expired documents holding the `_id`s of `docs`; returns how many went.
async fn purge_expired_ids(
    conn: &mut PgConnection,
    collection: &str,
    docs: &[&Staged],
    op: &'static str,
) -> Result<u64> {
    sqlx::query("DELETE FROM documents WHERE collection = $1 AND id = ANY($2::text[]) AND expires_at <= now()")
        .bind(collection)
        .bind(docs.iter().map(|s| s.id.clone()).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await
        .map(|r| r.rows_affected())
        .map_err(|e| map(op, e))
}

/// Writes changed documents back, with their unique keys.
async fn write_back(
    conn: &mut PgConnection,
    coll: &Collection,
    collection: &str,
    staged: &[Staged],
    op: &'static str,
) -> Result<()> {
    for chunk in staged.chunks(CHUNK) {
        sqlx::query(concat!(
            "UPDATE documents AS d SET body = t.body, version = t.version, expires_at = t.expires_at ",
            "FROM unnest($2::text[], $3::jsonb[], $4::bigint[], $5::timestamptz[]) AS t(id, body, version, expires_at) ",
            "WHERE d.collection = $1 AND d.id = t.id"
        ))
        .bind(collection)
        .bind(chunk.iter().map(|s| s.id.clone()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|s| s.doc.clone()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|s| s.version).collect::<Vec<_>>())
        .bind(chunk.iter().map(|s| s.expires_at).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await
        .map_err(|e| map(op, e))?;
    }
    // Keys that changed: release the old ones first, so values can move between documents.
    let (mut released, mut claimed) = (Vec::new(), Vec::new());
    for s in staged {
        for (index_no, idx) in coll.unique_indexes() {
            let new = idx.key_of(&s.doc);
            let old = s.old.as_ref().and_then(|o| idx.key_of(o));
            if new == old {
                continue;
            }
            if old.is_some() {
                released.push((s.id.clone(), index_no));
            }
            if let Some(k) = new {
                claimed.push(KeyRow { index_no, key: k.into_bytes(), id: s.id.clone() });
            }
        }
    }
    for chunk in released.chunks(CHUNK) {
        sqlx::query(concat!(
            "DELETE FROM document_keys AS k USING unnest($2::text[], $3::int[]) AS t(id, index_no) ",
            "WHERE k.collection = $1 AND k.id = t.id AND k.index_no = t.index_no"
        ))
        .bind(collection)
        .bind(chunk.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|(_, no)| *no).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await
        .map_err(|e| map(op, e))?;
    }
    insert_keys(conn, coll, collection, staged, claimed, op).await
}

/// Claims unique keys for `staged` documents: `Conflict` (`UniqueViolation`
/// naming the first index, in spec order, that clashed) if another live
/// document, or another document of the same write, holds one.
async fn insert_keys(
    conn: &mut PgConnection,
    coll: &Collection,
    collection: &str,
    staged: &[Staged],
    keys: Vec<KeyRow>,
    op: &'static str,
) -> Result<()> {
    if keys.is_empty() {
        return Ok(());
    }
    let all: Vec<&KeyRow> = keys.iter().collect();
    let mut taken = insert_key_rows(conn, collection, &all, op).await?;
    if !taken.is_empty() && purge_expired_holders(conn, collection, staged, &taken, op).await? > 0 {
        taken = insert_key_rows(conn, collection, &taken, op).await?;
    }
    match taken.iter().map(|k| k.index_no).min() {
        Some(index_no) => Err(DocumentFault::Unique(coll.index_name(index_no)).into()),
        None => Ok(()),
    }
}

/// Inserts key rows; returns those already held.
async fn insert_key_rows<'a>(
    conn: &mut PgConnection,
    collection: &str,
    keys: &[&'a KeyRow],
    op: &'static str,
) -> Result<Vec<&'a KeyRow>> {
    let mut taken = Vec::new();
    for chunk in keys.chunks(CHUNK) {
        let rows = sqlx::query(concat!(
            "INSERT INTO document_keys (collection, index_no, key_hash, id) ",
            "SELECT $1, t.index_no, sha256(t.key), t.id FROM unnest($2::int[], $3::bytea[], $4::text[]) AS t(index_no, key, id) ",
            "ON CONFLICT DO NOTHING RETURNING index_no, id"
        ))
        .bind(collection)
        .bind(chunk.iter().map(|k| k.index_no).collect::<Vec<_>>())
        .bind(chunk.iter().map(|k| k.key.clone()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|k| k.id.clone()).collect::<Vec<_>>())
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| map(op, e))?;
        if rows.len() < chunk.len() {
            let mut inserted = HashSet::with_capacity(rows.len());
            for r in &rows {
                let index_no: i32 = r.try_get(0).map_err(|e| map(op, e))?;
                let id: String = r.try_get(1).map_err(|e| map(op, e))?;
                inserted.insert((index_no, id));
            }
            taken.extend(chunk.iter().filter(|k| !inserted.contains(&(k.index_no, k.id.clone()))).copied());
        }
    }
    Ok(taken)
}

/// Deletes expired documents holding `keys` (never one of `staged`, which
/// clash among themselves); returns how many went.
async fn purge_expired_holders(
    conn: &mut PgConnection,
    collection: &str,
    staged: &[Staged],
    keys: &[&KeyRow],
    op: &'static str,
) -> Result<u64> {
    sqlx::query(concat!(
        "DELETE FROM documents AS d USING document_keys AS k, unnest($2::int[], $3::bytea[]) AS t(index_no, key) ",
        "WHERE k.collection = $1 AND k.index_no = t.index_no AND k.key_hash = sha256(t.key) ",
        "AND d.collection = $1 AND d.id = k.id AND d.expires_at <= now() AND d.id <> ALL($4::text[])"
    ))
    .bind(collection)
    .bind(keys.iter().map(|k| k.index_no).collect::<Vec<_>>())
    .bind(keys.iter().map(|k| k.key.clone()).collect::<Vec<_>>())
    .bind(staged.iter().map(|s| s.id.clone()).collect::<Vec<_>>())
    .execute(&mut *conn)
    .await
    .map(|r| r.rows_affected())
    .map_err(|e| map(op, e))
}

#[async_trait]
impl DocumentStore for PgDocumentStore {
    fn backend(&self) -> &'static str {
        crate::BACKEND
    }

    fn capabilities(&self) -> Capabilities {
        capabilities()
    }

    async fn ping(&self) -> Result<()> {
        self.backend.ping().await
    }

    #[tracing::instrument(name = "palisade.ensure_collection", skip_all, fields(backend = crate::BACKEND, namespace = %self.backend.namespace))]
    async fn ensure_collection(&self, spec: CollectionSpec) -> Result<bool> {
        self.ensure(spec).await.map_err(tagged("ensure_collection"))
    }

    #[tracing::instrument(name = "palisade.drop_collection", skip_all, fields(backend = crate::BACKEND, namespace = %self.backend.namespace))]
    async fn drop_collection(&self, collection: &str) -> Result<bool> {
        self.drop_coll(collection).await.map_err(tagged("drop_collection"))
    }

    #[tracing::instrument(name = "palisade.insert", skip_all, fields(backend = crate::BACKEND, namespace = %self.backend.namespace))]
    async fn insert(&self, collection: &str, doc: Value) -> Result<Value> {
        let stored = self.insert_docs("insert", collection, vec![doc]).await.map_err(tagged("insert"))?;
        stored.into_iter().next().ok_or_else(|| crate::invalid_state("insert stored nothing").with_op("insert"))
    }

    #[tracing::instrument(name = "palisade.insert_many", skip_all, fields(backend = crate::BACKEND, namespace = %self.backend.namespace, docs = docs.len()))]
    async fn insert_many(&self, collection: &str, docs: Vec<Value>) -> Result<Vec<Value>> {
        self.insert_docs("insert_many", collection, docs).await.map_err(tagged("insert_many"))
    }

    #[tracing::instrument(name = "palisade.get", skip_all, fields(backend = crate::BACKEND, namespace = %self.backend.namespace))]
    async fn get(&self, collection: &str, id: &str) -> Result<Option<Value>> {
        self.get_doc(collection, id).await.map_err(tagged("get"))
    }

    #[tracing::instrument(name = "palisade.replace", skip_all, fields(backend = crate::BACKEND, namespace = %self.backend.namespace))]
    async fn replace(&self, collection: &str, id: &str, doc: Value, expected_version: Option<u64>) -> Result<Value> {
        self.replace_doc(collection, id, doc, expected_version).await.map_err(tagged("replace"))
    }

    #[tracing::instrument(name = "palisade.update", skip_all, fields(backend = crate::BACKEND, namespace = %self.backend.namespace))]
    async fn update(&self, collection: &str, filter: Filter, ops: UpdateOps) -> Result<UpdateResult> {
        self.update_docs(collection, &filter, &ops).await.map_err(tagged("update"))
    }

    #[tracing::instrument(name = "palisade.delete", skip_all, fields(backend = crate::BACKEND, namespace = %self.backend.namespace))]
    async fn delete(&self, collection: &str, filter: Filter) -> Result<u64> {
        self.delete_docs(collection, &filter).await.map_err(tagged("delete"))
    }

    #[tracing::instrument(name = "palisade.find", skip_all, fields(backend = crate::BACKEND, namespace = %self.backend.namespace))]
    async fn find(&self, collection: &str, options: FindOptions) -> Result<Vec<Value>> {
        self.find_docs(collection, &options).await.map_err(tagged("find"))
    }

    #[tracing::instrument(name = "palisade.count", skip_all, fields(backend = crate::BACKEND, namespace = %self.backend.namespace))]
    async fn count(&self, collection: &str, filter: Filter) -> Result<u64> {
        self.count_docs(collection, &filter).await.map_err(tagged("count"))
    }
}
