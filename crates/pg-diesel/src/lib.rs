//! # palisade-pg-diesel
//!
//! Palisade on PostgreSQL through diesel 2.3 and diesel-async 0.9, for
//! services that already use diesel (facade feature `pg-diesel`, URLs
//! `postgres+diesel://user:password@host:5432/database`). The same schema,
//! semantics and conformance results as pg-sqlx: either backend serves a
//! namespace the other migrated and wrote, and both are held to the whole
//! conformance suite.
//!
//! - **Connections** ([`connection`]): tokio-postgres over a socket this
//!   crate opens (`TCP_NODELAY`, keepalive, connect timeout, TLS per
//!   `sslmode` — see [`tls`]), with `search_path` set to the namespace and
//!   `statement_timeout` sent as startup options, wrapped in diesel-async's
//!   `AsyncPgConnection` and pooled by deadpool. A connection closed or left
//!   inside a transaction (a call cancelled mid-transaction, diesel-async
//!   issue #198) is discarded on recycle, never handed out again.
//! - **Error kinds from SQLSTATE codes**: diesel 2.3 does not expose a
//!   server error's code, so each connection reads it off the protocol
//!   (see [`connection`]) and one function maps it with pg-common's table —
//!   never from message text.
//! - **Migrations**: pg-common's set, applied into the namespace exactly as
//!   sqlx's migrator does (same advisory lock, same
//!   `<namespace>.palisade_migrations` table and SHA-384 checksums), by an
//!   async runner that works on any runtime flavour (diesel's
//!   `AsyncMigrationHarness` blocks in place and cannot record sqlx's layout).
//! - **[`schema`]**: diesel `table!` definitions of Palisade's tables,
//!   checked against the live catalog, for services that read them in their
//!   own diesel queries ([`PgDieselBackend::connection`]).
//! - **Events** ([`PgDieselEventStore`]): an append is one call of the shared
//!   `palisade_append` with the batch as 12 array parameters (gap-safe
//!   transaction-id positions, no global lock, idempotent, atomic at any
//!   size, one statement); ordered reads are pg-common's `READ_AFTER`
//!   (bounded by the snapshot's xmin); queries and group-by analytics are
//!   diesel's query builder; live tails `LISTEN` on a dedicated connection outside the
//!   pool (at most `pool_size` of them; a tail without one polls) and treat
//!   each notification only as a prompt to re-read by position.
//! - **Sessions** ([`PgDieselSessionCache`]): the UNLOGGED table through the
//!   query builder (`ON CONFLICT … DO UPDATE … WHERE` for `IfAbsent`), the
//!   shared PL/pgSQL functions for `push`/`incr`/`hit`; expiry instants and
//!   "now" come from the caller's clock.
//! - **Documents** ([`PgDieselDocumentStore`]): pg-common's statements and
//!   filter translation as `sql_query` with every value bound; multi-statement
//!   writes run in diesel-async transactions (async closures).
//! - **Reputation** ([`PgDieselReputationRepo`]): log and period scores in one
//!   transaction; leaderboards ranked by diesel's `rank()` window function.
//! - **Benchmark** (`cargo bench -p palisade-pg-diesel --bench append`): both
//!   Postgres backends next to a raw `COPY` of the same rows, in one run.

mod cached;
pub mod config;
pub mod connection;
mod documents;
mod error;
mod events;
mod json;
mod migrate;
mod reputation;
pub mod schema;
mod sessions;
mod time;
pub mod tls;

use std::sync::Arc;

use async_trait::async_trait;
use diesel_async::{RunQueryDsl, SimpleAsyncConnection};
use palisade_core::backend::{Backend, ConnectOptions, Connector};
use palisade_core::{
    Capabilities, DocumentStore, Error, ErrorKind, EventStore, InputPolicy, Namespace, ReputationRepo, Result,
    SessionCache,
};
use palisade_pg_common::namespace;

pub use config::PgDieselConfig;
pub use documents::PgDieselDocumentStore;
pub use events::PgDieselEventStore;
pub use palisade_pg_common::migrations::MigrationStatus;
pub use reputation::PgDieselReputationRepo;
pub use sessions::PgDieselSessionCache;

use crate::config::Target;
pub use crate::connection::PooledConnection;
use crate::connection::{Manager, Pool};

/// The backend id used in errors, spans and test names.
pub const BACKEND: &str = "pg_diesel";

/// What every pg-diesel store guarantees: the shared schema's guarantees,
/// the same as pg-sqlx's.
pub use palisade_pg_common::capabilities;

/// [`RESTORE_NEEDED`](palisade_pg_common::events::RESTORE_NEEDED)'s answer.
#[derive(diesel::QueryableByName)]
struct Restored {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    exists: bool,
}

/// Lifts the event order above stored positions if the namespace was
/// restored into a younger cluster: one index lookup, and only then the
/// guard (DML under a table lock, which a data-only role may run).
async fn guard_restore(conn: &mut connection::Conn) -> Result<()> {
    let restored = diesel::sql_query(palisade_pg_common::events::RESTORE_NEEDED).get_result::<Restored>(conn).await;
    if restored.map_err(conn.error("migrate"))?.exists {
        let guarded = conn.batch_execute(palisade_pg_common::events::RESTORE_GUARD).await;
        guarded.map_err(conn.error("migrate"))?;
    }
    Ok(())
}

/// A connection pool confined to one namespace, migrated on connect.
#[derive(Clone)]
pub struct PgDieselBackend {
    pool: Pool,
    target: Target,
    namespace: Namespace,
    policy: InputPolicy,
    /// Live tails' `LISTEN` connections (outside the pool): at most
    /// `pool_size` at once; a tail without a slot polls.
    listen_slots: Arc<tokio::sync::Semaphore>,
}

impl PgDieselBackend {
    /// Connects (eagerly, so bad configuration or an unreachable server
    /// fails here with its cause) and applies pending migrations — or, with
    /// [`PgDieselConfig::migrate`] off, checks with read-only queries that
    /// none is pending (`Config` error naming them).
    pub async fn connect(config: &PgDieselConfig) -> Result<Self> {
        let backend = PgDieselBackend::connect_without_migrating(config).await?;
        if config.migrate {
            backend.migrate().await?;
        } else {
            let mut conn = backend.conn("connect").await?;
            let recorded = migrate::recorded(&mut conn, &backend.namespace).await?;
            palisade_pg_common::migrations::require_current(&backend.namespace, recorded, BACKEND)?;
            guard_restore(&mut conn).await?;
        }
        Ok(backend)
    }

    /// Connects without touching the schema (for `palisade migrate --dry-run`).
    pub async fn connect_without_migrating(config: &PgDieselConfig) -> Result<Self> {
        let target = config.target()?;
        // One direct connection first, so an unreachable server or bad
        // credentials fail now with the real cause.
        drop(connection::connect(&target).await?);
        let pool = Pool::builder(Manager { target: target.clone() })
            .max_size(usize::try_from(config.pool_size).unwrap_or(usize::MAX).max(1))
            .runtime(deadpool::Runtime::Tokio1)
            .wait_timeout(Some(config.connect_timeout))
            .create_timeout(Some(config.connect_timeout))
            .recycle_timeout(Some(config.connect_timeout))
            .build()
            .map_err(|e| {
                palisade_core::Error::new(palisade_core::ErrorKind::Config, "the postgres pool cannot be built")
                    .with_backend(BACKEND)
                    .with_source(e)
            })?;
        let listen_slots = Arc::new(tokio::sync::Semaphore::new(usize::try_from(config.pool_size).unwrap_or(1).max(1)));
        Ok(PgDieselBackend { pool, target, namespace: config.namespace.clone(), policy: config.policy, listen_slots })
    }

    /// The namespace (schema).
    pub fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    /// The input policy the stores enforce.
    pub fn policy(&self) -> InputPolicy {
        self.policy
    }

    /// A pooled connection in the namespace (its `search_path`), for a
    /// service's own diesel queries over [`schema`]. Give it back (drop it)
    /// promptly: it is one of the stores' `pool_size` connections. Open
    /// transactions with diesel-async's `transaction()`: a connection
    /// dropped inside one is closed, never reused (see [`PooledConnection`]);
    /// a raw `BEGIN` whose call is dropped before the server answers is
    /// invisible to that check.
    pub async fn connection(&self) -> Result<PooledConnection> {
        self.conn("connection").await
    }

    pub(crate) async fn conn(&self, op: &'static str) -> Result<PooledConnection> {
        self.pool.get().await.map(PooledConnection).map_err(|e| error::pool(op, e))
    }

    /// Applies pending migrations into the namespace; a no-op when up to
    /// date. Runs on a connection of its own (it holds a session-level
    /// advisory lock), closed afterwards.
    ///
    /// Then lifts the event order above stored positions after a restore
    /// into another cluster ([`RESTORE_GUARD`](palisade_pg_common::events::RESTORE_GUARD)).
    pub async fn migrate(&self) -> Result<()> {
        let mut conn = connection::connect(&self.target).await?;
        migrate::run(&mut conn, &self.namespace).await?;
        guard_restore(&mut conn).await
    }

    /// Which migrations are applied in the namespace (nothing is changed).
    pub async fn migration_status(&self) -> Result<Vec<MigrationStatus>> {
        let mut conn = self.conn("migration_status").await?;
        migrate::status(&mut conn, &self.namespace).await
    }

    /// Deletes every row of every store in the namespace, leaving the schema
    /// as a fresh migration does (pg-common's one statement).
    pub async fn empty_namespace(&self) -> Result<()> {
        let mut conn = self.conn("empty_namespace").await?;
        conn.batch_execute(namespace::EMPTY).await.map_err(conn.error("empty_namespace"))
    }

    /// Drops the namespace's schema and everything in it.
    pub async fn drop_namespace(&self) -> Result<()> {
        let mut conn = self.conn("drop_namespace").await?;
        conn.batch_execute(&namespace::drop_schema(&self.namespace)).await.map_err(conn.error("drop_namespace"))
    }

    /// Checks that Postgres answers.
    pub async fn ping(&self) -> Result<()> {
        let mut conn = self.conn("ping").await?;
        diesel::sql_query(namespace::PING).execute(&mut **conn).await.map(|_| ()).map_err(conn.error("ping"))
    }

    /// The event store of this namespace.
    pub fn events(&self) -> PgDieselEventStore {
        PgDieselEventStore::new(self.clone())
    }

    /// The session cache of this namespace.
    pub fn sessions(&self) -> PgDieselSessionCache {
        PgDieselSessionCache::new(self.clone())
    }

    /// The document store of this namespace.
    pub fn documents(&self) -> PgDieselDocumentStore {
        PgDieselDocumentStore::new(self.clone())
    }

    /// The reputation repo of this namespace.
    pub fn reputation(&self) -> PgDieselReputationRepo {
        PgDieselReputationRepo::new(self.clone())
    }
}

#[async_trait]
impl Backend for PgDieselBackend {
    fn events(&self) -> Result<Arc<dyn EventStore>> {
        Ok(Arc::new(PgDieselBackend::events(self)))
    }
    fn sessions(&self) -> Result<Arc<dyn SessionCache>> {
        Ok(Arc::new(PgDieselBackend::sessions(self)))
    }
    fn documents(&self) -> Result<Arc<dyn DocumentStore>> {
        Ok(Arc::new(PgDieselBackend::documents(self)))
    }
    fn reputation(&self) -> Result<Arc<dyn ReputationRepo>> {
        Ok(Arc::new(PgDieselBackend::reputation(self)))
    }
    async fn drop_namespace(&self) -> Result<()> {
        PgDieselBackend::drop_namespace(self).await
    }
    /// A migrated namespace emptied in one statement costs a fraction of
    /// dropping it and applying every migration to a new one.
    async fn empty_namespace(&self) -> Result<bool> {
        PgDieselBackend::empty_namespace(self).await.map(|()| true)
    }
}

/// The pg-diesel connector (`postgres+diesel://`, `postgresql+diesel://`):
/// one pool per server and namespace, migrated on connect. Settings:
/// [`PgDieselConfig::from_options`].
#[derive(Debug, Clone, Copy, Default)]
pub struct PgDieselConnector;

#[async_trait]
impl Connector for PgDieselConnector {
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
        PgDieselConfig::from_options(url, options).map(|_| ())
    }
    async fn connect(&self, url: &str, options: &ConnectOptions) -> Result<Arc<dyn Backend>> {
        Ok(Arc::new(PgDieselBackend::connect(&PgDieselConfig::from_options(url, options)?).await?))
    }
    async fn ping(&self, url: &str, options: &ConnectOptions) -> Result<()> {
        PgDieselBackend::connect_without_migrating(&PgDieselConfig::from_options(url, options)?).await?.ping().await
    }
    async fn drop_namespace(&self, url: &str, options: &ConnectOptions) -> Result<()> {
        PgDieselBackend::connect_without_migrating(&PgDieselConfig::from_options(url, options)?)
            .await?
            .drop_namespace()
            .await
    }
    async fn migrate(
        &self,
        url: &str,
        options: &ConnectOptions,
        dry_run: bool,
    ) -> Result<Option<Vec<MigrationStatus>>> {
        let backend = PgDieselBackend::connect_without_migrating(&PgDieselConfig::from_options(url, options)?).await?;
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

    use palisade_core::ErrorKind;

    use super::*;

    /// A backend in a fresh namespace, or `None` (skipped) without a server.
    async fn backend() -> Option<PgDieselBackend> {
        let url = palisade_conformance::server_url("postgres", "PALISADE_TEST_POSTGRES_URL")?;
        let config = PgDieselConfig::new(url, Namespace::random("pgd").ok()?).with_pool_size(1);
        Some(PgDieselBackend::connect(&config).await.expect("connects"))
    }

    async fn kind_of(backend: &PgDieselBackend, sql: &str) -> (ErrorKind, bool) {
        let mut conn = backend.connection().await.unwrap();
        // A short statement_timeout for this session only (migrating under
        // it could time out waiting for another migrator's lock).
        conn.batch_execute("SET statement_timeout = '300ms'").await.unwrap();
        let e = diesel::sql_query(sql).execute(&mut **conn).await.map_err(conn.error("test")).unwrap_err();
        (e.kind(), e.is_temporary())
    }

    #[tokio::test]
    async fn an_error_inside_a_transaction_keeps_its_code_through_the_rollback() {
        use diesel_async::AsyncConnection;
        let Some(b) = backend().await else { return };
        let mut conn = b.connection().await.unwrap();
        let failed = conn
            .transaction::<(), diesel::result::Error, _>(async |c| {
                diesel::sql_query("SELECT 9223372036854775807::bigint + 1").execute(c).await.map(|_| ())
            })
            .await;
        let e = failed.map_err(conn.error("test")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Conflict, "22003 survives diesel-async's ROLLBACK: {e}");
        drop(conn);
        b.drop_namespace().await.unwrap();
    }

    #[tokio::test]
    async fn a_connection_left_inside_a_raw_transaction_is_not_handed_out_again() {
        let Some(b) = backend().await else { return };
        {
            let mut conn = b.connection().await.unwrap();
            conn.batch_execute("BEGIN").await.unwrap();
            assert!(!conn.idle());
        }
        // The pool holds one connection: this is it again, or a new one.
        let mut conn = b.connection().await.unwrap();
        diesel::sql_query("SELECT 1").execute(&mut **conn).await.unwrap();
        assert!(conn.idle(), "the abandoned transaction's connection was recycled");
        drop(conn);
        b.drop_namespace().await.unwrap();
    }

    #[tokio::test]
    async fn server_errors_get_their_kind_from_the_sqlstate_on_the_wire() {
        let Some(b) = backend().await else { return };
        // diesel reports all of these as DatabaseErrorKind::Unknown.
        assert_eq!(kind_of(&b, "SELECT pg_sleep(5)").await, (ErrorKind::Timeout, true), "57014");
        assert_eq!(kind_of(&b, "SELECT * FROM no_such_table").await, (ErrorKind::Config, false), "42P01");
        assert_eq!(kind_of(&b, "SELECT 1 / 0").await, (ErrorKind::InvalidInput, false), "22012");
        assert_eq!(kind_of(&b, "SELECT 9223372036854775807::bigint + 1").await, (ErrorKind::Conflict, false), "22003");
        // A later success leaves no stale code behind for a code-less error.
        let mut conn = b.connection().await.unwrap();
        let _ = diesel::sql_query("SELECT 1 / 0").execute(&mut **conn).await;
        diesel::sql_query("SELECT 1").execute(&mut **conn).await.unwrap();
        assert_eq!(conn.take_sqlstate(), None);
        drop(conn);
        b.drop_namespace().await.unwrap();
    }

    #[tokio::test]
    async fn bad_credentials_fail_at_connect_without_echoing_them() {
        let Some(url) = palisade_conformance::server_url("postgres", "PALISADE_TEST_POSTGRES_URL") else { return };
        let Ok(mut url) = url::Url::parse(&url) else { panic!("test URL") };
        url.set_username("palisade_no_such_role").unwrap();
        url.set_password(Some("s3cret-pw")).unwrap();
        let config = PgDieselConfig::new(url.as_str(), Namespace::new("t").unwrap());
        let e = PgDieselBackend::connect(&config).await.err().expect("an unknown role is refused");
        assert_eq!((e.kind(), e.is_temporary()), (ErrorKind::Config, false), "{e}");
        let shown = format!("{e} {e:?} {config:?}");
        assert!(!shown.contains("s3cret-pw"), "{shown}");
    }

    #[tokio::test]
    async fn an_unreachable_server_is_temporarily_unavailable() {
        // A loopback port nothing listens on (connection refused at once).
        let config = PgDieselConfig::new("postgres+diesel://postgres@127.0.0.1:9/test", Namespace::new("t").unwrap());
        let e = PgDieselBackend::connect(&config).await.err().expect("refused");
        assert_eq!((e.kind(), e.is_temporary()), (ErrorKind::Unavailable, true), "{e}");
    }
}
