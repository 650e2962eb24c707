//! `DocumentStore` on JSONB, with pg-sqlx's semantics on the same tables:
//! the statements, the filter translation and the collection specs are
//! pg-common's ([`palisade_pg_common::documents`]); this module binds them
//! as diesel queries (a filter's statement is built at run time: SQL text
//! with every value a bound parameter — never a value spliced in — prepared
//! once per connection when a generic plan serves it, see `crate::cached`),
//! and owns transactions and retries.
//!
//! - **Writes** check the schema in Rust before anything is written.
//!   `insert_many`, `replace` and `update` each run in one diesel-async
//!   transaction (matching rows locked `FOR UPDATE` in `_id` order, changed
//!   in Rust, written back), so concurrent updates lose nothing and every
//!   write is all-or-nothing. A call cancelled mid-transaction leaves its
//!   connection inside the transaction; the pool discards it (diesel-async's
//!   transaction state and the server's `ReadyForQuery` status are both
//!   checked on recycle), so the transaction rolls back and no one reuses it.
//! - **Expiry, indexes, uniqueness, sorting, partitions**: exactly pg-sqlx's
//!   (see `palisade_pg_sqlx::documents`): expired documents are invisible at
//!   once and swept by writes at most once a minute per instance; unique
//!   indexes are exclusion constraints checked per statement; a value held
//!   by an expired document is freed and the write retried once; deadlocks
//!   are retried; collection DDL retries on `lock_not_available` (55P03, read
//!   off the wire by the connection's tap) for up to 15 s.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::sql_types::{Array, BigInt, Bool, Jsonb, Nullable, Text, Timestamptz};
use diesel::{OptionalExtension, QueryableByName};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use palisade_core::backend::check::{check_collection_name, check_id, prepare_insert, prepare_replace};
use palisade_core::backend::eval::{cmp_docs, project};
use palisade_core::backend::stored::with_version;
use palisade_core::documents::{
    CollectionSpec, FieldPath, Filter, FindOptions, UpdateOps, UpdateResult, MAX_INSERT_MANY,
};
use palisade_core::{Capabilities, DocumentStore, Error, ErrorDetail, ErrorKind, Result, Store};
use palisade_pg_common::documents::{
    self as common, statements, version_of, Bind, Collection, DocumentFault, Sql, Staged, Statement, CHUNK,
};
use palisade_pg_common::json::{encode, encoded};
use palisade_pg_common::sqlstate;
use serde_json::{Map, Value};

use crate::cached::Cached;
use crate::error::{tagged, TxError};
use crate::json::{ExactJson, StoredJson};
use crate::{capabilities, invalid_state, PgDieselBackend};

/// Most tries of one document write that deadlocks (see `write_retrying`).
const WRITE_ATTEMPTS: u32 = 5;
/// How often writes sweep a collection's expired rows.
const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// How long collection DDL keeps trying to get its table lock (each try
/// waits at most 500 ms, see `migrations/0006_document_indexes.sql`).
const DDL_PATIENCE: Duration = Duration::from_secs(15);

impl From<DocumentFault> for TxError {
    fn from(f: DocumentFault) -> Self {
        TxError::Palisade(f.into())
    }
}

#[derive(QueryableByName)]
struct Body {
    #[diesel(sql_type = Nullable<Jsonb>)]
    body: Option<StoredJson>,
}

#[derive(QueryableByName)]
struct SortedBody {
    #[diesel(sql_type = Jsonb)]
    body: StoredJson,
    #[diesel(sql_type = Nullable<Bool>)]
    bool_or: Option<bool>,
}

#[derive(QueryableByName)]
struct Spec {
    #[diesel(sql_type = Jsonb)]
    spec: StoredJson,
}

#[derive(QueryableByName)]
struct Exists {
    #[diesel(sql_type = Bool)]
    exists: bool,
}

#[derive(QueryableByName)]
struct Counted {
    #[diesel(sql_type = Bool)]
    exists: bool,
    #[diesel(sql_type = BigInt)]
    count: i64,
}

#[derive(QueryableByName)]
struct Version {
    #[diesel(sql_type = BigInt)]
    version: i64,
}

#[derive(QueryableByName)]
struct Id {
    #[diesel(sql_type = Text)]
    id: String,
}

#[derive(QueryableByName)]
struct Locked {
    #[diesel(sql_type = Text)]
    id: String,
    /// Written back: decoded exactly (see `ExactJson`).
    #[diesel(sql_type = Jsonb)]
    body: ExactJson,
    #[diesel(sql_type = BigInt)]
    version: i64,
}

/// pg-common's statement as a diesel query: each bind with the SQL type of
/// its cast. Prepared once per connection (diesel's statement cache, see
/// [`Cached`]) when a generic plan serves it and `admit` lets its text in,
/// else run unnamed.
fn query(sql: Sql, admit: impl FnOnce(&str) -> bool) -> Cached<'static> {
    let Statement { text, binds, reusable } = sql.into_statement();
    let cache = reusable && admit(&text);
    // pg-common builds the text from fixed fragments, `$n` placeholders and checked names only.
    let mut q = Cached::new(text);
    if !cache {
        q = q.uncached();
    }
    for b in binds {
        q = match b {
            Bind::Text(v) => q.bind::<Text, _>(v),
            Bind::TextArray(v) => q.bind::<Array<Text>, _>(v),
            Bind::Jsonb(v) => q.bind::<Jsonb, _>(v),
            Bind::JsonbArray(v) => q.bind::<Array<Jsonb>, _>(v),
            Bind::BigInt(v) => q.bind::<BigInt, _>(v),
        };
    }
    q
}

impl State {
    /// Whether filter statement `text` may enter the statement caches (see
    /// [`ADMITTED_FILTER_STATEMENTS`]).
    fn admit(&self, text: &str) -> bool {
        let mut admitted = lock(&self.admitted);
        if admitted.contains(text) {
            return true;
        }
        admitted.len() < ADMITTED_FILTER_STATEMENTS && admitted.insert(text.to_owned())
    }
}

/// Postgres [`DocumentStore`] through diesel. Cheap to clone; clones share
/// the cache of compiled collection specs.
#[derive(Clone)]
pub struct PgDieselDocumentStore {
    backend: PgDieselBackend,
    state: Arc<State>,
}

#[derive(Default)]
struct State {
    /// Compiled specs by collection name (checked against the stored spec on use).
    collections: Mutex<HashMap<String, Arc<Collection>>>,
    /// When this instance last swept each collection.
    swept: Mutex<HashMap<String, Instant>>,
    /// Filter statements admitted to the connections' statement caches.
    admitted: Mutex<HashSet<String>>,
}

/// Most distinct filter statements one store lets into the connections'
/// statement caches. diesel's cache is unbounded and filter shapes come from
/// callers, so the first 256 shapes a store runs are prepared once per
/// connection and later new shapes run unnamed (planned per call).
const ADMITTED_FILTER_STATEMENTS: usize = 256;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl PgDieselDocumentStore {
    /// The document store of `backend`'s namespace.
    pub fn new(backend: PgDieselBackend) -> Self {
        PgDieselDocumentStore { backend, state: Arc::new(State::default()) }
    }

    /// Deletes the expired documents of every collection (reads already
    /// ignore them); returns how many went.
    pub async fn sweep(&self) -> Result<u64> {
        let mut conn = self.backend.conn("sweep").await?;
        diesel::sql_query(statements::SWEEP).execute(&mut **conn).await.map(|n| n as u64).map_err(conn.error("sweep"))
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
        if due {
            if let Err(e) = self.purge_expired(collection, "sweep").await {
                tracing::debug!(error = %e, "sweeping expired documents failed");
            }
        }
    }

    /// Deletes the expired documents of `collection`; returns how many went.
    async fn purge_expired(&self, collection: &str, op: &'static str) -> Result<u64> {
        let mut conn = self.backend.conn(op).await?;
        diesel::sql_query(statements::PURGE_EXPIRED)
            .bind::<Text, _>(collection)
            .execute(&mut **conn)
            .await
            .map(|n| n as u64)
            .map_err(conn.error(op))
    }

    /// Runs `write` (one transaction) until it settles: again after a
    /// deadlock or serialization failure, and once more when it clashes with
    /// a unique index and expired documents of `collection` were deleted.
    async fn write_retrying<T, F, Fut>(&self, collection: &str, op: &'static str, write: F) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut freed = false;
        let mut attempts = 0;
        loop {
            attempts += 1;
            match write().await.map_err(|e| self.named_unique(collection, e)) {
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

    /// A violated unique constraint named after the spec's index (the
    /// compiled spec is cached by the write that raised it).
    fn named_unique(&self, collection: &str, e: Error) -> Error {
        match lock(&self.state.collections).get(collection) {
            Some(coll) => coll.named_unique(e),
            None => e,
        }
    }

    /// The compiled spec of `name`, from this instance's cache when there;
    /// `None` when the collection does not exist. Only for choosing index
    /// shortcuts, which never change a result, so a stale copy is harmless.
    async fn cached_collection(&self, name: &str, op: &'static str) -> Result<Option<Arc<Collection>>> {
        if let Some(c) = lock(&self.state.collections).get(name) {
            return Ok(Some(Arc::clone(c)));
        }
        let mut conn = self.backend.conn(op).await?;
        let stored: Option<Spec> = Cached::new(statements::SPEC)
            .bind::<Text, _>(name)
            .get_result(&mut **conn)
            .await
            .optional()
            .map_err(conn.error(op))?;
        stored.map(|s| self.compiled(name, s.spec.0)).transpose()
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

    /// The indexed paths of `collection`, for index shortcuts.
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
    async fn collection(&self, c: &mut AsyncPgConnection, name: &str) -> std::result::Result<Arc<Collection>, TxError> {
        let stored: Option<Spec> =
            Cached::new(statements::SPEC_LOCKED).bind::<Text, _>(name).get_result(c).await.optional()?;
        let stored = stored.ok_or(DocumentFault::NoCollection)?;
        Ok(self.compiled(name, stored.spec.0)?)
    }

    /// `NotFound` unless collection `name` exists.
    async fn check_exists(&self, name: &str, op: &'static str) -> Result<()> {
        let mut conn = self.backend.conn(op).await?;
        let row: Exists = Cached::new(statements::EXISTS)
            .bind::<Text, _>(name)
            .get_result(&mut **conn)
            .await
            .map_err(conn.error(op))?;
        if row.exists {
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
        let mut conn = self.backend.conn(op).await?;
        let staged = (**conn)
            .transaction::<_, TxError, _>(async |c| {
                let coll = self.collection(c, collection).await?;
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
                lock_unique_keys(c, &coll, collection, &staged).await?;
                let all: Vec<&Staged> = staged.iter().collect();
                let mut taken = insert_documents(c, collection, &all).await?;
                if !taken.is_empty() && purge_expired_ids(c, collection, &taken).await? > 0 {
                    taken = insert_documents(c, collection, &taken).await?;
                }
                if !taken.is_empty() {
                    return Err(DocumentFault::Unique("_id".to_owned()).into());
                }
                Ok(staged)
            })
            .await
            .map_err(conn.tx_error(op))?;
        drop(conn);
        self.maybe_sweep(collection).await;
        Ok(staged.into_iter().map(|s| s.doc).collect())
    }

    async fn get_doc(&self, collection: &str, id: &str) -> Result<Option<Value>> {
        const OP: &str = "get";
        check_collection_name(collection)?;
        check_id(id)?;
        let mut conn = self.backend.conn(OP).await?;
        let row: Option<Body> = Cached::new(statements::GET)
            .bind::<Text, _>(collection)
            .bind::<Text, _>(id)
            .get_result(&mut **conn)
            .await
            .optional()
            .map_err(conn.error(OP))?;
        let row = row.ok_or(DocumentFault::NoCollection)?;
        Ok(row.body.map(|d| d.0))
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
        let mut conn = self.backend.conn(OP).await?;
        let stored = (**conn)
            .transaction::<_, TxError, _>(async |c| {
                let coll = self.collection(c, collection).await?;
                let row: Option<Version> = Cached::new(statements::LOCK_VERSION)
                    .bind::<Text, _>(collection)
                    .bind::<Text, _>(id)
                    .get_result(c)
                    .await
                    .optional()?;
                let actual = version_of(row.ok_or(DocumentFault::NoDocument)?.version);
                if let Some(expected) = expected.filter(|e| *e != actual) {
                    return Err(DocumentFault::Version { expected, actual }.into());
                }
                coll.check_schema(body)?;
                let stored = with_version(body.clone(), actual + 1);
                let staged = [Staged::new(&coll, id.to_owned(), stored.clone(), actual + 1)];
                write_back(c, &coll, collection, &staged).await?;
                Ok(stored)
            })
            .await
            .map_err(conn.tx_error(OP))?;
        drop(conn);
        self.maybe_sweep(collection).await;
        Ok(stored)
    }

    async fn update_docs(&self, collection: &str, filter: &Filter, ops: &UpdateOps) -> Result<UpdateResult> {
        check_collection_name(collection)?;
        self.write_retrying(collection, "update", || self.try_update(collection, filter, ops)).await
    }

    async fn try_update(&self, collection: &str, filter: &Filter, ops: &UpdateOps) -> Result<UpdateResult> {
        const OP: &str = "update";
        let policy = self.backend.policy;
        let mut conn = self.backend.conn(OP).await?;
        let result = (**conn)
            .transaction::<_, TxError, _>(async |c| {
                let coll = self.collection(c, collection).await?;
                let sql = statements::lock_matching(collection, filter, &coll.indexed_paths());
                let rows: Vec<Locked> = query(sql, |t| self.state.admit(t)).load(c).await?;
                let mut staged = Vec::new();
                for row in &rows {
                    let doc = &row.body.0;
                    let version = version_of(row.version);
                    let mut next = doc.clone();
                    ops.apply(&mut next, &policy)?;
                    if &next == doc {
                        continue;
                    }
                    let Value::Object(mut body) = next else { continue };
                    body.remove("_version");
                    coll.check_schema(&body)?;
                    staged.push(Staged::new(&coll, row.id.clone(), with_version(body, version + 1), version + 1));
                }
                write_back(c, &coll, collection, &staged).await?;
                Ok(UpdateResult { matched: rows.len() as u64, modified: staged.len() as u64 })
            })
            .await
            .map_err(conn.tx_error(OP))?;
        drop(conn);
        self.maybe_sweep(collection).await;
        Ok(result)
    }

    async fn delete_docs(&self, collection: &str, filter: &Filter) -> Result<u64> {
        const OP: &str = "delete";
        check_collection_name(collection)?;
        let indexed = self.indexed_paths(collection, OP).await?;
        let sql = statements::delete(collection, filter, &indexed);
        let mut conn = self.backend.conn(OP).await?;
        let deleted = query(sql, |t| self.state.admit(t)).execute(&mut **conn).await.map_err(conn.error(OP))? as u64;
        drop(conn);
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
        let indexed = self.indexed_paths(collection, OP).await?;
        let sql = statements::find("SELECT d.body", collection, options, &indexed);
        let mut conn = self.backend.conn(OP).await?;
        let (docs, containers) = if options.sort.is_empty() {
            let rows: Vec<Body> =
                query(sql, |t| self.state.admit(t)).load(&mut **conn).await.map_err(conn.error(OP))?;
            (rows.into_iter().filter_map(|r| r.body.map(|b| b.0)).collect::<Vec<_>>(), false)
        } else {
            let rows: Vec<SortedBody> =
                query(sql, |t| self.state.admit(t)).load(&mut **conn).await.map_err(conn.error(OP))?;
            let containers = <[SortedBody]>::first(&rows).and_then(|r| r.bool_or) == Some(true);
            (rows.into_iter().map(|r| r.body.0).collect(), containers)
        };
        drop(conn);
        if docs.is_empty() {
            self.check_exists(collection, OP).await?;
            return Ok(Vec::new());
        }
        let docs = if containers { self.find_sorted_in_rust(collection, options, &indexed).await? } else { docs };
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
        const OP: &str = "find";
        let sql = statements::matching(collection, &options.filter, indexed);
        let mut conn = self.backend.conn(OP).await?;
        let rows: Vec<Body> = query(sql, |t| self.state.admit(t)).load(&mut **conn).await.map_err(conn.error(OP))?;
        let mut docs: Vec<Value> = rows.into_iter().filter_map(|r| r.body.map(|b| b.0)).collect();
        docs.sort_by(|a, b| cmp_docs(a, b, &options.sort));
        Ok(docs.into_iter().skip(options.skip).take(options.limit.unwrap_or(usize::MAX)).collect())
    }

    async fn count_docs(&self, collection: &str, filter: &Filter) -> Result<u64> {
        const OP: &str = "count";
        check_collection_name(collection)?;
        let indexed = self.indexed_paths(collection, OP).await?;
        let sql = statements::count(collection, filter, &indexed);
        let mut conn = self.backend.conn(OP).await?;
        let row: Counted = query(sql, |t| self.state.admit(t)).get_result(&mut **conn).await.map_err(conn.error(OP))?;
        if !row.exists {
            return Err(DocumentFault::NoCollection.into());
        }
        Ok(u64::try_from(row.count).unwrap_or(0))
    }

    async fn ensure(&self, spec: CollectionSpec) -> Result<bool> {
        const OP: &str = "ensure_collection";
        spec.validate()?;
        let stored = encoded(common::to_json(&spec));
        // A concurrent drop between the two statements is retried.
        for _ in 0..3 {
            let created = self.ddl_retrying(OP, statements::CREATE_COLLECTION, &spec.name, Some(&stored)).await? > 0;
            if created {
                return Ok(true);
            }
            let mut conn = self.backend.conn(OP).await?;
            let existing: Option<Spec> = diesel::sql_query(statements::SPEC)
                .bind::<Text, _>(&spec.name)
                .get_result(&mut **conn)
                .await
                .optional()
                .map_err(conn.error(OP))?;
            if let Some(existing) = existing {
                return if common::from_json(&spec.name, &existing.spec.0)? == spec {
                    Ok(false)
                } else {
                    Err(DocumentFault::SpecMismatch.into())
                };
            }
        }
        Err(Error::new(ErrorKind::Conflict, "collection was dropped and re-created concurrently").set_temporary(true))
    }

    async fn drop_coll(&self, collection: &str) -> Result<bool> {
        const OP: &str = "drop_collection";
        check_collection_name(collection)?;
        let dropped = self.ddl_retrying(OP, statements::DROP_COLLECTION, collection, None).await? > 0;
        lock(&self.state.collections).remove(collection);
        Ok(dropped)
    }

    /// Runs `sql` (`$1` the collection, `$2` its stored spec if given), a
    /// statement that adds or drops a collection's partition, again while it
    /// fails with `lock_not_available`: between tries the document
    /// statements it queued go ahead.
    async fn ddl_retrying(
        &self,
        op: &'static str,
        sql: &'static str,
        collection: &str,
        spec: Option<&Value>,
    ) -> Result<usize> {
        let started = Instant::now();
        let mut pause = Duration::from_millis(20);
        loop {
            let mut statement = diesel::sql_query(sql).into_boxed::<Pg>().bind::<Text, _>(collection.to_owned());
            if let Some(spec) = spec {
                statement = statement.bind::<Jsonb, _>(spec.clone());
            }
            let mut conn = self.backend.conn(op).await?;
            let outcome = statement.execute(&mut **conn).await.map_err(|e| {
                let code = conn.take_sqlstate();
                let waiting = code.as_deref() == Some(sqlstate::LOCK_NOT_AVAILABLE);
                (waiting, crate::error::map(op, e, code))
            });
            match outcome {
                Err((true, _)) if started.elapsed() < DDL_PATIENCE => {
                    drop(conn);
                    tracing::debug!("collection DDL is waiting for the documents table");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(500));
                }
                Err((_, e)) => return Err(e),
                Ok(n) => return Ok(n),
            }
        }
    }
}

/// `sql` with `$1` = the collection and `$2…$5` = the id, body, version and
/// expiry columns of `rows`, as arrays (for `unnest`).
fn with_rows(
    sql: &'static str,
    collection: &str,
    rows: &[&Staged],
) -> diesel::query_builder::BoxedSqlQuery<'static, Pg, diesel::query_builder::SqlQuery> {
    diesel::sql_query(sql)
        .into_boxed::<Pg>()
        .bind::<Text, _>(collection.to_owned())
        .bind::<Array<Text>, _>(rows.iter().map(|s| s.id.clone()).collect::<Vec<_>>())
        .bind::<Array<Jsonb>, _>(rows.iter().map(|s| encode(&s.doc).into_owned()).collect::<Vec<_>>())
        .bind::<Array<BigInt>, _>(rows.iter().map(|s| s.version).collect::<Vec<_>>())
        .bind::<Array<Nullable<Timestamptz>>, _>(
            rows.iter().map(|s| s.expires_at).collect::<Vec<Option<DateTime<Utc>>>>(),
        )
}

/// Inserts new documents; returns those whose `_id` was taken.
async fn insert_documents<'a>(
    c: &mut AsyncPgConnection,
    collection: &str,
    docs: &[&'a Staged],
) -> diesel::QueryResult<Vec<&'a Staged>> {
    let mut taken = Vec::new();
    for chunk in docs.chunks(CHUNK) {
        let rows: Vec<Id> = with_rows(statements::INSERT, collection, chunk).load(c).await?;
        if rows.len() < chunk.len() {
            let inserted: HashSet<String> = rows.into_iter().map(|r| r.id).collect();
            taken.extend(chunk.iter().filter(|s| !inserted.contains(&s.id)).copied());
        }
    }
    Ok(taken)
}

/// Deletes the expired documents holding the `_id`s of `docs`; returns how many went.
async fn purge_expired_ids(
    c: &mut AsyncPgConnection,
    collection: &str,
    docs: &[&Staged],
) -> diesel::QueryResult<usize> {
    diesel::sql_query(statements::PURGE_EXPIRED_IDS)
        .bind::<Text, _>(collection)
        .bind::<Array<Text>, _>(docs.iter().map(|s| s.id.clone()).collect::<Vec<_>>())
        .execute(c)
        .await
}

/// Queues behind concurrent writers of the same unique values (see
/// `palisade_doc_lock_unique_keys`); nothing to do without unique indexes.
async fn lock_unique_keys(
    c: &mut AsyncPgConnection,
    coll: &Collection,
    collection: &str,
    staged: &[Staged],
) -> diesel::QueryResult<()> {
    let Some(paths) = coll.unique_paths() else { return Ok(()) };
    if staged.is_empty() {
        return Ok(());
    }
    Cached::new(statements::LOCK_UNIQUE_KEYS)
        .bind::<Text, _>(collection)
        .bind::<Array<Jsonb>, _>(staged.iter().map(|s| encode(&s.doc).into_owned()).collect::<Vec<_>>())
        .bind::<Jsonb, _>(paths)
        .execute(c)
        .await?;
    Ok(())
}

/// Writes changed documents back, one statement per chunk; unique indexes
/// see all of them together (at the end of the statement, or at commit when
/// there are several chunks).
async fn write_back(
    c: &mut AsyncPgConnection,
    coll: &Collection,
    collection: &str,
    staged: &[Staged],
) -> diesel::QueryResult<()> {
    lock_unique_keys(c, coll, collection, staged).await?;
    if staged.len() > CHUNK && coll.unique_paths().is_some() {
        // Values may move between chunks: check uniqueness at commit.
        diesel::sql_query(statements::DEFER_CONSTRAINTS).execute(c).await?;
    }
    let all: Vec<&Staged> = staged.iter().collect();
    for chunk in all.chunks(CHUNK) {
        with_rows(statements::UPDATE, collection, chunk).execute(c).await?;
    }
    Ok(())
}

#[async_trait]
impl Store for PgDieselDocumentStore {
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
impl DocumentStore for PgDieselDocumentStore {
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
