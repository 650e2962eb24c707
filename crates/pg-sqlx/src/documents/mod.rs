//! `DocumentStore` on JSONB (`migrations/0003_documents.sql`,
//! `migrations/0006_document_indexes.sql`). The statements, the filter
//! translation and the collection specs are pg-common's
//! ([`palisade_pg_common::documents`]); this module binds and runs them with
//! sqlx, and owns transactions and retries.
//!
//! - **Storage**: one `documents` table, partitioned by collection: each
//!   collection has its own partition, created with its indexes when
//!   `ensure_collection` inserts the collection's row and dropped when
//!   `drop_collection` deletes it (triggers on `collections`). Both need an
//!   exclusive lock on the namespace's `documents` table: each try waits at
//!   most 500 ms for running statements (others queue meanwhile), and the
//!   store tries again for up to 15 s before reporting `Timeout`. `body` is the
//!   stored form (with `_id` and `_version`), `expires_at` comes from the
//!   collection's TTL rule at every write ([`TtlSpec::expires_at`]).
//! - **Expiry**: every read, update and delete adds `expires_at > now()` (the
//!   statement's, or the transaction's, start), so an expired document is
//!   invisible at once. Successful writes then delete the collection's expired
//!   rows now and then (at most once a minute per store instance);
//!   [`PgDocumentStore::sweep`] does it on demand.
//! - **Filters** become SQL over the `palisade_doc_*` functions, with every
//!   value a bound parameter (pg-common's `filter.rs`); they implement core's
//!   reference semantics ([`matches`](palisade_core::backend::eval::matches)).
//!   The collection name and the paths of indexed fields are written into
//!   the text once checked (identifier characters only), so a generic plan
//!   prunes to the partition and uses the index: such statements are
//!   prepared once per connection (sqlx's statement cache) and reused.
//! - **Writes** check the schema in Rust (core's `SchemaValidator`) before
//!   anything is written. `update` and `replace` lock the matching live rows
//!   (`FOR UPDATE`, in `_id` order), apply the operations in Rust and write
//!   back in the same transaction: concurrent updates lose nothing, and every
//!   write is all-or-nothing. `insert_many` runs its chunks in one transaction.
//! - **Indexes**: every [`IndexSpec`] is a btree expression index on the
//!   collection's partition over `palisade_doc_sort_key` of its fields (type
//!   bracket, then value; strings by code point); `$eq $in $gt $gte $lt $lte`
//!   on an indexed field add a key range that index answers (see
//!   pg-common's `filter.rs`). `$eq`/`$in` on any field also use the GIN index on `body`.
//!   [`PgDocumentStore::explain`] shows the plan of a `find`.
//! - **Uniqueness**: `_id` is the primary key (`ON CONFLICT DO NOTHING`, so
//!   the clashing ids are known). A unique index is an exclusion constraint
//!   over a hash index of the fields' values ([`IndexSpec::key_of`]'s
//!   semantics: `jsonb =`, so `1` and `1.0` collide; documents lacking a
//!   field are skipped; exact at any value size), checked at the end of each
//!   statement, so one update may move values between the documents it
//!   changes. A value held by an expired document is freed (the collection's
//!   expired documents are deleted) and the write retried once.
//! - **Sorting** happens in SQL (MongoDB's type order, strings by code point,
//!   then `_id`); when a sort value is an object or an array, whose order SQL
//!   does not reproduce, all matches are sorted in Rust with `cmp_docs`.
//!
//! [`TtlSpec::expires_at`]: palisade_core::documents::TtlSpec::expires_at
//! [`IndexSpec::key_of`]: palisade_core::documents::IndexSpec::key_of

use std::borrow::Borrow;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use palisade_core::backend::check::{check_collection_name, check_id, prepare_insert, prepare_replace};
use palisade_core::backend::eval::{cmp_docs, project};
use palisade_core::backend::stored::with_version;
use palisade_core::documents::{
    CollectionSpec, FieldPath, Filter, FindOptions, UpdateOps, UpdateResult, MAX_INSERT_MANY,
};
use palisade_core::{Capabilities, DocumentStore, Error, ErrorDetail, ErrorKind, Result, Store};
use palisade_pg_common::documents::{
    self as common, statements, version_of, Bind, Collection, DocumentFault, Staged, Statement, CHUNK,
};
use palisade_pg_common::json::{encode, encoded};
use serde_json::{Map, Value};
use sqlx::postgres::{PgArguments, Postgres};
use sqlx::query::Query;
use sqlx::{PgConnection, Row};

use crate::error::{is_lock_not_available, map, tagged};
use crate::json::{ExactJson, Json, StoredJson};
use crate::{capabilities, PgBackend};
/// Most tries of one document write that deadlocks (see `write_retrying`).
const WRITE_ATTEMPTS: u32 = 5;
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

/// pg-common's statement as a sqlx query: each bind with the Rust type of
/// its cast. Prepared once per connection (sqlx's statement cache) when a
/// generic plan serves it ([`Statement::reusable`]), else unnamed.
fn query(text: &str, binds: Vec<Bind>, reusable: bool) -> Query<'_, Postgres, PgArguments> {
    // pg-common builds the text from fixed fragments, `$n` placeholders and checked names only.
    let mut q = sqlx::query(text).persistent(reusable);
    for b in binds {
        q = match b {
            Bind::Text(v) => q.bind(v),
            Bind::TextArray(v) => q.bind(v),
            Bind::Jsonb(v) => q.bind(v),
            Bind::JsonbArray(v) => q.bind(v),
            Bind::BigInt(v) => q.bind(v),
        };
    }
    q
}

impl PgDocumentStore {
    /// The document store of `backend`'s namespace.
    pub fn new(backend: PgBackend) -> Self {
        PgDocumentStore { backend, state: Arc::new(State::default()) }
    }

    /// Deletes the expired documents of every collection (reads already
    /// ignore them); returns how many went.
    pub async fn sweep(&self) -> Result<u64> {
        sqlx::query(statements::SWEEP)
            .execute(&self.backend.pool)
            .await
            .map(|r| r.rows_affected())
            .map_err(|e| map("sweep", e))
    }

    /// The plan Postgres picks for `find(collection, options)`, as `EXPLAIN
    /// (FORMAT JSON)` prints it: which of the collection's indexes the query
    /// uses. Runs nothing. `NotFound` when the collection does not exist.
    pub async fn explain(&self, collection: &str, options: &FindOptions) -> Result<Value> {
        const OP: &str = "explain";
        check_collection_name(collection).map_err(tagged(OP))?;
        options.validate().map_err(tagged(OP))?;
        let Some(coll) = self.cached_collection(collection, OP).await? else {
            return Err(tagged(OP)(DocumentFault::NoCollection.into()));
        };
        let Statement { text, binds, reusable } =
            statements::find("EXPLAIN (FORMAT JSON) SELECT d.body", collection, options, &coll.indexed_paths())
                .into_statement();
        let row = query(&text, binds, reusable).fetch_one(&self.backend.pool).await.map_err(|e| map(OP, e))?;
        row.try_get::<Value, _>(0).map_err(|e| map(OP, e))
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
        if let Err(e) = self.purge_expired(collection, "sweep").await {
            tracing::debug!(error = %e, "sweeping expired documents failed");
        }
    }

    /// Deletes the expired documents of `collection`; returns how many went.
    async fn purge_expired(&self, collection: &str, op: &'static str) -> Result<u64> {
        sqlx::query(statements::PURGE_EXPIRED)
            .bind(collection)
            .execute(&self.backend.pool)
            .await
            .map(|r| r.rows_affected())
            .map_err(|e| map(op, e))
    }

    /// Runs `write` (one transaction) until it settles: again after a
    /// deadlock or serialization failure (two writers claiming one unique
    /// value can each wait for the other; Postgres aborts one), and once more
    /// when it clashes with a unique index and expired documents of
    /// `collection` were deleted (an expired document frees its values at once).
    async fn write_retrying<T, F, Fut>(&self, collection: &str, op: &'static str, write: F) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut freed = false;
        let mut attempts = 0;
        loop {
            attempts += 1;
            match write().await {
                Err(e) if e.kind() == ErrorKind::Conflict && e.is_temporary() && attempts < WRITE_ATTEMPTS => {
                    tracing::debug!(error = %e, "retrying a document write");
                }
                Err(e) if !freed && matches!(e.detail(), Some(ErrorDetail::UniqueViolation { .. })) => {
                    freed = true;
                    match self.purge_expired(collection, op).await {
                        Ok(0) => return Err(e),
                        Ok(_) => {}
                        Err(purge) => {
                            tracing::warn!(error = %purge, "could not delete expired documents holding unique values");
                            return Err(e);
                        }
                    }
                }
                r => return r,
            }
        }
    }

    /// The compiled spec of `name`, from this instance's cache when there;
    /// `None` when the collection does not exist. Only for choosing index
    /// shortcuts, which never change a result, so a stale copy is harmless.
    async fn cached_collection(&self, name: &str, op: &'static str) -> Result<Option<Arc<Collection>>> {
        if let Some(c) = lock(&self.state.collections).get(name) {
            return Ok(Some(Arc::clone(c)));
        }
        let stored: Option<StoredJson> = sqlx::query_scalar(statements::SPEC)
            .bind(name)
            .fetch_optional(&self.backend.pool)
            .await
            .map_err(|e| map(op, e))?;
        stored.map(|stored| self.compiled(name, stored.0)).transpose()
    }

    /// `stored` (the spec of collection `name`) compiled, from the cache when
    /// it holds that very spec; the cache keeps the result.
    fn compiled(&self, name: &str, stored: Value) -> Result<Arc<Collection>> {
        if let Some(c) = lock(&self.state.collections).get(name).filter(|c| c.stored == stored) {
            return Ok(Arc::clone(c));
        }
        let compiled = Arc::new(Collection::compile(name, stored)?);
        lock(&self.state.collections).insert(name.to_owned(), Arc::clone(&compiled));
        Ok(compiled)
    }

    /// The indexed paths of `collection`, for [`Sql::with_indexed`].
    async fn indexed_paths(&self, collection: &str, op: &'static str) -> Result<Vec<FieldPath>> {
        match self.cached_collection(collection, op).await {
            Ok(c) => Ok(c.map(|c| c.indexed_paths()).unwrap_or_default()),
            // Index shortcuts are optional; the query itself reports real failures.
            Err(e) if e.kind() == ErrorKind::Unexpected => {
                tracing::warn!(error = %e, "stored collection spec is unreadable; querying without index shortcuts");
                Ok(Vec::new())
            }
            Err(e) => Err(e),
        }
    }

    /// The compiled spec of `name`, whose row stays locked against a
    /// concurrent drop until the transaction ends.
    async fn collection(&self, conn: &mut PgConnection, name: &str, op: &'static str) -> Result<Arc<Collection>> {
        let stored: Option<StoredJson> = sqlx::query_scalar(statements::SPEC_LOCKED)
            .bind(name)
            .fetch_optional(&mut *conn)
            .await
            .map_err(|e| map(op, e))?;
        let stored = stored.ok_or(DocumentFault::NoCollection)?;
        self.compiled(name, stored.0)
    }

    /// `NotFound` unless collection `name` exists.
    async fn check_exists(&self, name: &str, op: &'static str) -> Result<()> {
        let exists: bool = sqlx::query_scalar(statements::EXISTS)
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
        let prepared = docs.into_iter().map(|d| prepare_insert(d, &self.backend.policy)).collect::<Result<Vec<_>>>()?;
        self.write_retrying(collection, op, || self.insert_prepared(op, collection, &prepared)).await
    }

    async fn insert_prepared(
        &self,
        op: &'static str,
        collection: &str,
        prepared: &[(String, Map<String, Value>)],
    ) -> Result<Vec<Value>> {
        let mut tx = self.backend.pool.begin().await.map_err(|e| map(op, e))?;
        let coll = self.collection(&mut tx, collection, op).await?;
        for (_, body) in prepared {
            coll.check_schema(body)?;
        }
        let mut ids = HashSet::with_capacity(prepared.len());
        if !prepared.iter().all(|(id, _)| ids.insert(id.as_str())) {
            return Err(DocumentFault::Unique("_id".to_owned()).into());
        }
        let staged: Vec<Staged> = prepared
            .iter()
            .map(|(id, body)| Staged::new(&coll, id.clone(), with_version(body.clone(), 1), 1))
            .collect();

        lock_unique_keys(&mut tx, &coll, collection, &staged, op).await?;
        let all: Vec<&Staged> = staged.iter().collect();
        let mut taken = insert_documents(&mut tx, &coll, collection, &all, op).await?;
        if !taken.is_empty() && purge_expired_ids(&mut tx, collection, &taken, op).await? > 0 {
            taken = insert_documents(&mut tx, &coll, collection, &taken, op).await?;
        }
        if !taken.is_empty() {
            return Err(DocumentFault::Unique("_id".to_owned()).into());
        }
        tx.commit().await.map_err(|e| coll.named_unique(map(op, e)))?;
        self.maybe_sweep(collection).await;
        Ok(staged.into_iter().map(|s| s.doc).collect())
    }

    async fn get_doc(&self, collection: &str, id: &str) -> Result<Option<Value>> {
        check_collection_name(collection)?;
        check_id(id)?;
        let row = sqlx::query(statements::GET)
            .bind(collection)
            .bind(id)
            .fetch_optional(&self.backend.pool)
            .await
            .map_err(|e| map("get", e))?;
        let row = row.ok_or(DocumentFault::NoCollection)?;
        let doc = row.try_get::<Option<StoredJson>, _>(0).map_err(|e| map("get", e))?;
        Ok(doc.map(|d| d.0))
    }

    async fn replace_doc(&self, collection: &str, id: &str, doc: Value, expected: Option<u64>) -> Result<Value> {
        const OP: &str = "replace";
        check_collection_name(collection)?;
        let (body, expected) = prepare_replace(id, doc, expected, &self.backend.policy)?;
        self.write_retrying(collection, OP, || self.replace_prepared(collection, id, &body, expected)).await
    }

    async fn replace_prepared(
        &self,
        collection: &str,
        id: &str,
        body: &Map<String, Value>,
        expected: Option<u64>,
    ) -> Result<Value> {
        const OP: &str = "replace";
        let mut tx = self.backend.pool.begin().await.map_err(|e| map(OP, e))?;
        let coll = self.collection(&mut tx, collection, OP).await?;
        let row = sqlx::query(statements::LOCK_VERSION)
            .bind(collection)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| map(OP, e))?;
        let row = row.ok_or(DocumentFault::NoDocument)?;
        let actual = version_of(row.try_get(0).map_err(|e| map(OP, e))?);
        if let Some(expected) = expected.filter(|e| *e != actual) {
            return Err(DocumentFault::Version { expected, actual }.into());
        }
        coll.check_schema(body)?;
        let stored = with_version(body.clone(), actual + 1);
        let staged = [Staged::new(&coll, id.to_owned(), stored.clone(), actual + 1)];
        write_back(&mut tx, &coll, collection, &staged, OP).await?;
        tx.commit().await.map_err(|e| coll.named_unique(map(OP, e)))?;
        self.maybe_sweep(collection).await;
        Ok(stored)
    }

    async fn update_docs(&self, collection: &str, filter: &Filter, ops: &UpdateOps) -> Result<UpdateResult> {
        check_collection_name(collection)?;
        self.write_retrying(collection, "update", || self.try_update(collection, filter, ops)).await
    }

    async fn try_update(&self, collection: &str, filter: &Filter, ops: &UpdateOps) -> Result<UpdateResult> {
        const OP: &str = "update";
        let mut tx = self.backend.pool.begin().await.map_err(|e| map(OP, e))?;
        let coll = self.collection(&mut tx, collection, OP).await?;
        let Statement { text, binds, reusable } =
            statements::lock_matching(collection, filter, &coll.indexed_paths()).into_statement();
        let rows = query(&text, binds, reusable).fetch_all(&mut *tx).await.map_err(|e| map(OP, e))?;
        let mut staged = Vec::new();
        for row in &rows {
            let id: String = row.try_get(0).map_err(|e| map(OP, e))?;
            // Written back: decoded exactly (see `ExactJson`).
            let doc = row.try_get::<ExactJson, _>(1).map_err(|e| map(OP, e))?.0;
            let version = version_of(row.try_get(2).map_err(|e| map(OP, e))?);
            let mut next = doc.clone();
            ops.apply(&mut next, &self.backend.policy)?;
            if next == doc {
                continue;
            }
            let Value::Object(mut body) = next else { continue };
            body.remove("_version");
            coll.check_schema(&body)?;
            staged.push(Staged::new(&coll, id, with_version(body, version + 1), version + 1));
        }
        write_back(&mut tx, &coll, collection, &staged, OP).await?;
        tx.commit().await.map_err(|e| coll.named_unique(map(OP, e)))?;
        self.maybe_sweep(collection).await;
        Ok(UpdateResult { matched: rows.len() as u64, modified: staged.len() as u64 })
    }

    async fn delete_docs(&self, collection: &str, filter: &Filter) -> Result<u64> {
        const OP: &str = "delete";
        check_collection_name(collection)?;
        let indexed = self.indexed_paths(collection, OP).await?;
        let Statement { text, binds, reusable } = statements::delete(collection, filter, &indexed).into_statement();
        let deleted =
            query(&text, binds, reusable).execute(&self.backend.pool).await.map_err(|e| map(OP, e))?.rows_affected();
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
        let indexed = self.indexed_paths(collection, OP).await?;
        let Statement { text, binds, reusable } =
            statements::find("SELECT d.body", collection, options, &indexed).into_statement();
        let rows = query(&text, binds, reusable).fetch_all(&self.backend.pool).await.map_err(|e| map(OP, e))?;
        let Some(first) = rows.first() else {
            self.check_exists(collection, OP).await?;
            return Ok(Vec::new());
        };
        let containers = !keys.is_empty() && first.try_get::<Option<bool>, _>(1).map_err(|e| map(OP, e))? == Some(true);
        let docs = if containers {
            self.find_sorted_in_rust(collection, options, &indexed).await?
        } else {
            rows.iter()
                .map(|r| r.try_get::<StoredJson, _>(0).map(|d| d.0))
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| map(OP, e))?
        };
        Ok(match &options.projection {
            Some(p) => docs.iter().map(|d| project(d, p)).collect(),
            None => docs,
        })
    }

    /// `find` for sorts SQL cannot order: every match, sorted with `cmp_docs`.
    async fn find_sorted_in_rust(
        &self,
        collection: &str,
        options: &FindOptions,
        indexed: &[FieldPath],
    ) -> Result<Vec<Value>> {
        let Statement { text, binds, reusable } =
            statements::matching(collection, &options.filter, indexed).into_statement();
        let mut docs: Vec<Value> = query(&text, binds, reusable)
            .fetch_all(&self.backend.pool)
            .await
            .map_err(|e| map("find", e))?
            .iter()
            .map(|r| r.try_get::<StoredJson, _>(0).map(|d| d.0))
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| map("find", e))?;
        docs.sort_by(|a, b| cmp_docs(a, b, &options.sort));
        Ok(docs.into_iter().skip(options.skip).take(options.limit.unwrap_or(usize::MAX)).collect())
    }

    async fn count_docs(&self, collection: &str, filter: &Filter) -> Result<u64> {
        const OP: &str = "count";
        check_collection_name(collection)?;
        let indexed = self.indexed_paths(collection, OP).await?;
        let Statement { text, binds, reusable } = statements::count(collection, filter, &indexed).into_statement();
        let row = query(&text, binds, reusable).fetch_one(&self.backend.pool).await.map_err(|e| map(OP, e))?;
        if !row.try_get::<bool, _>(0).map_err(|e| map(OP, e))? {
            return Err(DocumentFault::NoCollection.into());
        }
        let n: i64 = row.try_get(1).map_err(|e| map(OP, e))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn ensure(&self, spec: CollectionSpec) -> Result<bool> {
        const OP: &str = "ensure_collection";
        spec.validate()?;
        let stored = encoded(common::to_json(&spec));
        // A concurrent drop between the two statements is retried.
        for _ in 0..3 {
            let created = ddl_retrying(|| {
                sqlx::query(statements::CREATE_COLLECTION).bind(&spec.name).bind(&stored).execute(&self.backend.pool)
            })
            .await
            .map_err(|e| map(OP, e))?
            .rows_affected()
                > 0;
            if created {
                return Ok(true);
            }
            let existing: Option<StoredJson> = sqlx::query_scalar(statements::SPEC)
                .bind(&spec.name)
                .fetch_optional(&self.backend.pool)
                .await
                .map_err(|e| map(OP, e))?;
            if let Some(Json(existing)) = existing {
                return if common::from_json(&spec.name, &existing)? == spec {
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
        let dropped =
            ddl_retrying(|| sqlx::query(statements::DROP_COLLECTION).bind(collection).execute(&self.backend.pool))
                .await
                .map_err(|e| map("drop_collection", e))?
                .rows_affected()
                > 0;
        lock(&self.state.collections).remove(collection);
        Ok(dropped)
    }
}

/// How long collection DDL keeps trying to get its table lock (each try
/// waits at most 500 ms, see `migrations/0006_document_indexes.sql`).
const DDL_PATIENCE: Duration = Duration::from_secs(15);

/// Runs a statement that adds or drops a collection's partition, again while
/// it fails with `lock_not_available`: between tries the document statements
/// it queued go ahead.
async fn ddl_retrying<T, F, Fut>(statement: F) -> std::result::Result<T, sqlx::Error>
where
    F: Fn() -> Fut,
    Fut: Future<Output = std::result::Result<T, sqlx::Error>>,
{
    let started = Instant::now();
    let mut pause = Duration::from_millis(20);
    loop {
        match statement().await {
            Err(e) if is_lock_not_available(&e) && started.elapsed() < DDL_PATIENCE => {
                tracing::debug!("collection DDL is waiting for the documents table");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(500));
            }
            r => return r,
        }
    }
}

/// `sql` with `$1` = the collection and `$2…$5` = the id, body, version and
/// expiry columns of `rows`, as arrays (for `unnest`).
fn with_rows<S: Borrow<Staged>>(
    sql: &'static str,
    collection: &str,
    rows: &[S],
) -> Query<'static, Postgres, PgArguments> {
    let rows: Vec<&Staged> = rows.iter().map(Borrow::borrow).collect();
    sqlx::query(sql)
        .bind(collection.to_owned())
        .bind(rows.iter().map(|s| s.id.clone()).collect::<Vec<_>>())
        .bind(rows.iter().map(|s| encode(&s.doc).into_owned()).collect::<Vec<_>>())
        .bind(rows.iter().map(|s| s.version).collect::<Vec<_>>())
        .bind(rows.iter().map(|s| s.expires_at).collect::<Vec<_>>())
}

/// Inserts new documents; returns those whose `_id` was taken.
async fn insert_documents<'a>(
    conn: &mut PgConnection,
    coll: &Collection,
    collection: &str,
    docs: &[&'a Staged],
    op: &'static str,
) -> Result<Vec<&'a Staged>> {
    let mut taken = Vec::new();
    for chunk in docs.chunks(CHUNK) {
        let rows = with_rows(statements::INSERT, collection, chunk)
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| coll.named_unique(map(op, e)))?;
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
    sqlx::query(statements::PURGE_EXPIRED_IDS)
        .bind(collection)
        .bind(docs.iter().map(|s| s.id.clone()).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await
        .map(|r| r.rows_affected())
        .map_err(|e| map(op, e))
}

/// Queues behind concurrent writers of the same unique values (see
/// `palisade_doc_lock_unique_keys`); nothing to do without unique indexes.
async fn lock_unique_keys(
    conn: &mut PgConnection,
    coll: &Collection,
    collection: &str,
    staged: &[Staged],
    op: &'static str,
) -> Result<()> {
    let Some(paths) = coll.unique_paths() else { return Ok(()) };
    if staged.is_empty() {
        return Ok(());
    }
    sqlx::query(statements::LOCK_UNIQUE_KEYS)
        .bind(collection)
        .bind(staged.iter().map(|s| encode(&s.doc).into_owned()).collect::<Vec<_>>())
        .bind(paths)
        .execute(&mut *conn)
        .await
        .map_err(|e| map(op, e))?;
    Ok(())
}

/// Writes changed documents back, one statement per chunk; unique indexes
/// see all of them together (at the end of the statement, or at commit when
/// there are several chunks).
async fn write_back(
    conn: &mut PgConnection,
    coll: &Collection,
    collection: &str,
    staged: &[Staged],
    op: &'static str,
) -> Result<()> {
    lock_unique_keys(conn, coll, collection, staged, op).await?;
    if staged.len() > CHUNK && coll.unique_paths().is_some() {
        // Values may move between chunks: check uniqueness at commit.
        sqlx::query(statements::DEFER_CONSTRAINTS).execute(&mut *conn).await.map_err(|e| map(op, e))?;
    }
    for chunk in staged.chunks(CHUNK) {
        with_rows(statements::UPDATE, collection, chunk)
            .execute(&mut *conn)
            .await
            .map_err(|e| coll.named_unique(map(op, e)))?;
    }
    Ok(())
}

#[async_trait]
impl Store for PgDocumentStore {
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
impl DocumentStore for PgDocumentStore {
    async fn ensure_collection(&self, spec: CollectionSpec) -> Result<bool> {
        self.ensure(spec).await.map_err(tagged("ensure_collection"))
    }

    async fn drop_collection(&self, collection: &str) -> Result<bool> {
        self.drop_coll(collection).await.map_err(tagged("drop_collection"))
    }

    async fn insert(&self, collection: &str, doc: Value) -> Result<Value> {
        let stored = self.insert_docs("insert", collection, vec![doc]).await.map_err(tagged("insert"))?;
        stored.into_iter().next().ok_or_else(|| crate::invalid_state("insert stored nothing").with_op("insert"))
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
