//! # palisade-pg-sqlx
//!
//! Palisade on PostgreSQL through sqlx. Every store lives in one Postgres
//! schema — its [`Namespace`] — set as the connections' `search_path`, so SQL
//! never concatenates identifiers or values.
//!
//! What every Postgres backend shares — the migrations, the document
//! store's SQL, the SQLSTATE table, the U+0000 encoding — comes from
//! [`palisade_pg_common`]; this crate binds, runs and decodes with sqlx.
//!
//! - **Driver**: sqlx `>=0.8.6, <0.9`. sqlx 0.9.0 does not set
//!   `TCP_NODELAY` (issue #4335, fixed upstream, unreleased), which stalls
//!   every request over 16 KiB ~40 ms on the server's delayed ACK; 0.8.6
//!   sets it on every TCP connection, LISTEN included.
//! - **Migrations**: pg-common's embedded set, applied by pg-common's runner
//!   plan (`migrate.rs`; the same statements pg-diesel runs) into the
//!   namespace at connect time (idempotent) and tracked in
//!   `<namespace>.palisade_migrations` — never the application's
//!   `_sqlx_migrations`. A database-wide advisory lock (sqlx's id) is held
//!   while migrating, so concurrent service starts are safe.
//! - **Events**: positions are `(transaction id + offset, place in batch)`
//!   and ordered reads stop below the snapshot's xmin (pg-common's `events`):
//!   gap-safe without a global lock. Appends take a transaction advisory
//!   lock per stream they write or expect (migration 0011), so expected
//!   versions hold even for a stream's first append; racing appends with
//!   the same id are retried. An append is one round trip:
//!   one call of `palisade_append` (migrations/0009) with the batch as column
//!   arrays, doing dedupe, version checks, `INSERT … SELECT FROM UNNEST(…)` and
//!   the NOTIFY in one statement, so any size is atomic. Measured against a
//!   raw `COPY` of the same rows (`cargo bench -p palisade-pg-diesel --bench append`,
//!   which measures both Postgres backends): ~0.7× its rows/s; COPY
//!   itself cannot dedupe or check versions without a staging table and a
//!   second statement, so the single statement stays. Live tails catch up by pages and then wait for
//!   `LISTEN/NOTIFY`, polling as a fallback, and re-listen after a dropped
//!   connection.
//! - **Sessions** live in an UNLOGGED table: fast, but emptied if Postgres
//!   crashes — acceptable for ephemeral state. Expiry instants are computed
//!   on the client when the call is made and bound into the SQL, together
//!   with the client's "now" for liveness checks, so a slow connection never
//!   stretches a TTL. Expired rows are filtered on read and swept by
//!   [`PgSessionCache::sweep`].
//! - **Hostile values**: JSON is decoded without serde_json's recursion limit,
//!   so one deep row written before the input policy existed never breaks a
//!   read; U+0000 inside values (which `jsonb` refuses) is stored with a
//!   reversible, order-preserving encoding ([`palisade_pg_common::json`]).
//! - **Reputation**: the event log plus per-period score rows kept in step in
//!   the same transaction; ranks come from `rank()` window functions.
//! - **Documents** on JSONB, one partition per collection: filters become SQL
//!   with bound parameters; every declared index is a btree expression index
//!   that filters on its fields use ([`PgDocumentStore::explain`] shows it);
//!   unique indexes are exclusion constraints over hash expression indexes
//!   (exact at any value size; `1` equals `1.0`; missing fields skipped).
//!   Declared indexes do not serve sorts yet: sorting runs over the matches.

mod config;
mod documents;
mod error;
mod events;
mod json;
mod migrate;
mod reputation;
mod sessions;
mod time;

use std::sync::Arc;

use async_trait::async_trait;
use palisade_core::backend::{Backend, ConnectOptions, Connector};
use palisade_core::{
    Capabilities, DocumentStore, Error, ErrorKind, EventStore, InputPolicy, Namespace, ReputationRepo, Result,
    SessionCache,
};
use palisade_pg_common::{migrations, namespace};
use sqlx::postgres::{PgConnection, PgPool, PgPoolOptions};
use sqlx::{Connection, Executor};

pub use config::PgConfig;
pub use documents::PgDocumentStore;
pub use events::PgEventStore;
pub use reputation::PgReputationRepo;
pub use sessions::PgSessionCache;

/// The backend id used in errors, spans and test names.
pub const BACKEND: &str = "pg_sqlx";

pub use palisade_pg_common::migrations::MigrationStatus;

/// What every pg-sqlx store guarantees: the shared schema's guarantees.
pub use palisade_pg_common::capabilities;

/// A connection pool confined to one namespace, migrated on connect.
#[derive(Clone)]
pub struct PgBackend {
    pool: PgPool,
    /// Live tails' LISTEN connections, apart from `pool` so that open
    /// subscriptions never starve queries of connections (`pool_size` each).
    listen_pool: PgPool,
    namespace: Namespace,
    policy: InputPolicy,
}

impl PgBackend {
    /// Connects (eagerly, so bad configuration fails here) and applies
    /// pending migrations — or, with [`PgConfig::migrate`] off, checks with
    /// read-only queries that none is pending (`Config` error naming them).
    pub async fn connect(config: &PgConfig) -> Result<Self> {
        let backend = PgBackend::connect_without_migrating(config).await?;
        if config.migrate {
            backend.migrate().await?;
        } else {
            let mut conn = backend.pool.acquire().await.map_err(|e| error::map("connect", e))?;
            let recorded = migrate::recorded(&mut conn, &backend.namespace).await?;
            drop(conn);
            palisade_pg_common::migrations::require_current(&backend.namespace, recorded, BACKEND)?;
            backend.guard_restore().await?;
        }
        Ok(backend)
    }

    /// Connects without touching the schema (for `palisade migrate --dry-run`).
    pub async fn connect_without_migrating(config: &PgConfig) -> Result<Self> {
        let options = config.connect_options()?;
        // One direct connection first, so an unreachable server or bad
        // credentials fail now with the real cause (the pool would retry until
        // its timeout and report only that).
        let probe = tokio::time::timeout(config.connect_timeout, PgConnection::connect_with(&options))
            .await
            .map_err(|_| {
                Error::new(ErrorKind::Timeout, "connecting to postgres timed out")
                    .with_backend(BACKEND)
                    .with_op("connect")
            })?
            .map_err(|e| error::map("connect", e))?;
        let _ = probe.close().await;
        let pool = PgPoolOptions::new()
            .max_connections(config.pool_size)
            .acquire_timeout(config.connect_timeout)
            .connect_lazy_with(options.clone());
        let listen_pool = PgPoolOptions::new()
            .max_connections(config.pool_size)
            .acquire_timeout(config.connect_timeout)
            .connect_lazy_with(options);
        Ok(PgBackend { pool, listen_pool, namespace: config.namespace.clone(), policy: config.policy })
    }

    /// The namespace (schema).
    pub fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    /// The pool, for callers who need raw access (benchmarks, admin).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Applies pending migrations into the namespace (a no-op when up to
    /// date), then lifts the event order above stored positions after a
    /// restore into another cluster ([`RESTORE_GUARD`](palisade_pg_common::events::RESTORE_GUARD)).
    pub async fn migrate(&self) -> Result<()> {
        let mut conn = self.pool.acquire().await.map_err(|e| error::map("migrate", e))?;
        migrate::run(&mut conn, &self.namespace).await?;
        drop(conn);
        self.guard_restore().await
    }

    /// Lifts the event order above stored positions if the namespace was
    /// restored into a younger cluster: one index lookup, and only then the
    /// guard (DML under a table lock, which a data-only role may run).
    async fn guard_restore(&self) -> Result<()> {
        let mut conn = self.pool.acquire().await.map_err(|e| error::map("migrate", e))?;
        let restored: bool = sqlx::query_scalar(palisade_pg_common::events::RESTORE_NEEDED)
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| error::map("migrate", e))?;
        if restored {
            conn.execute(palisade_pg_common::events::RESTORE_GUARD).await.map_err(|e| error::map("migrate", e))?;
        }
        Ok(())
    }

    /// Which migrations are applied in the namespace (nothing is changed).
    pub async fn migration_status(&self) -> Result<Vec<MigrationStatus>> {
        let table_exists: bool = sqlx::query_scalar(namespace::MIGRATION_TABLE_EXISTS)
            .bind(self.namespace.as_str())
            .fetch_one(&self.pool)
            .await
            .map_err(|e| error::map("migration_status", e))?;
        let applied: Vec<i64> = if table_exists {
            sqlx::query_scalar(namespace::APPLIED_MIGRATIONS)
                .fetch_all(&self.pool)
                .await
                .map_err(|e| error::map("migration_status", e))?
        } else {
            Vec::new()
        };
        Ok(migrations::status(&applied))
    }

    /// Deletes every row of every store in the namespace, leaving the schema
    /// as a fresh migration does (collections and their partitions gone, the
    /// event head reset). One transaction; much cheaper than dropping and
    /// re-migrating, so test suites recycle namespaces with it.
    pub async fn empty_namespace(&self) -> Result<()> {
        self.pool.execute(namespace::EMPTY).await.map(|_| ()).map_err(|e| error::map("empty_namespace", e))
    }

    /// Drops the namespace's schema and everything in it.
    pub async fn drop_namespace(&self) -> Result<()> {
        let sql = namespace::drop_schema(&self.namespace);
        self.pool.execute(sql.as_str()).await.map_err(|e| error::map("drop_namespace", e))?;
        Ok(())
    }

    /// Checks that Postgres answers.
    pub async fn ping(&self) -> Result<()> {
        self.pool.execute(namespace::PING).await.map(|_| ()).map_err(|e| error::map("ping", e))
    }

    /// The event store of this namespace.
    pub fn events(&self) -> PgEventStore {
        PgEventStore::new(self.clone())
    }

    /// The session cache of this namespace.
    pub fn sessions(&self) -> PgSessionCache {
        PgSessionCache::new(self.clone())
    }

    /// The document store of this namespace.
    pub fn documents(&self) -> PgDocumentStore {
        PgDocumentStore::new(self.clone())
    }

    /// The reputation repo of this namespace.
    pub fn reputation(&self) -> PgReputationRepo {
        PgReputationRepo::new(self.clone())
    }
}

#[async_trait]
impl Backend for PgBackend {
    fn events(&self) -> Result<Arc<dyn EventStore>> {
        Ok(Arc::new(PgBackend::events(self)))
    }
    fn sessions(&self) -> Result<Arc<dyn SessionCache>> {
        Ok(Arc::new(PgBackend::sessions(self)))
    }
    fn documents(&self) -> Result<Arc<dyn DocumentStore>> {
        Ok(Arc::new(PgBackend::documents(self)))
    }
    fn reputation(&self) -> Result<Arc<dyn ReputationRepo>> {
        Ok(Arc::new(PgBackend::reputation(self)))
    }
    async fn drop_namespace(&self) -> Result<()> {
        PgBackend::drop_namespace(self).await
    }
    /// A migrated namespace emptied in one statement costs a fraction of
    /// dropping it and applying every migration to a new one.
    async fn empty_namespace(&self) -> Result<bool> {
        PgBackend::empty_namespace(self).await.map(|()| true)
    }
}

/// The pg-sqlx connector (`postgres://`, `postgresql://`): one pool per
/// server and namespace, migrated on connect. Settings: [`PgConfig::from_options`].
#[derive(Debug, Clone, Copy, Default)]
pub struct PgSqlxConnector;

#[async_trait]
impl Connector for PgSqlxConnector {
    /// pg-common's [`grants`](palisade_pg_common::namespace::grants).
    fn grants(&self, ns: &Namespace, role: &str) -> Option<String> {
        Some(palisade_pg_common::namespace::grants(ns, role))
    }
    fn id(&self) -> &'static str {
        BACKEND
    }
    fn capabilities(&self) -> Capabilities {
        capabilities()
    }
    fn validate(&self, url: &str, options: &ConnectOptions) -> Result<()> {
        PgConfig::from_options(url, options).map(|_| ())
    }
    async fn connect(&self, url: &str, options: &ConnectOptions) -> Result<Arc<dyn Backend>> {
        Ok(Arc::new(PgBackend::connect(&PgConfig::from_options(url, options)?).await?))
    }
    async fn ping(&self, url: &str, options: &ConnectOptions) -> Result<()> {
        PgBackend::connect_without_migrating(&PgConfig::from_options(url, options)?).await?.ping().await
    }
    async fn drop_namespace(&self, url: &str, options: &ConnectOptions) -> Result<()> {
        PgBackend::connect_without_migrating(&PgConfig::from_options(url, options)?).await?.drop_namespace().await
    }
    async fn migrate(
        &self,
        url: &str,
        options: &ConnectOptions,
        dry_run: bool,
    ) -> Result<Option<Vec<MigrationStatus>>> {
        let backend = PgBackend::connect_without_migrating(&PgConfig::from_options(url, options)?).await?;
        if !dry_run {
            backend.migrate().await?;
        }
        backend.migration_status().await.map(Some)
    }
}

fn invalid_state(msg: &'static str) -> Error {
    Error::new(ErrorKind::Unexpected, msg).with_backend(BACKEND)
}

#[cfg(test)]
mod tests {
    #[test]
    fn migrations_keep_the_checksums_sqlx_migrate_gives_the_folder() {
        // Namespaces migrated by `sqlx::migrate!` builds recorded these
        // checksums; a mismatch would refuse to start on them.
        use palisade_pg_common::migrations::{runner, MIGRATIONS};
        let from_folder = sqlx::migrate!("../pg-common/migrations");
        assert_eq!(MIGRATIONS.len(), from_folder.iter().count());
        for (a, b) in MIGRATIONS.iter().zip(from_folder.iter()) {
            assert_eq!(
                (a.version, a.description, runner::checksum(a), a.no_transaction()),
                (b.version, &*b.description, b.checksum.to_vec(), b.no_tx)
            );
        }
    }
}
