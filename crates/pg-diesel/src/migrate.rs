//! Applies pg-common's migrations with pg-common's [`runner`] plan (the
//! statements and decisions every Postgres driver shares, sqlx-compatible
//! byte for byte), so pg-diesel and pg-sqlx accept each other's namespaces.
//!
//! diesel_migrations cannot: its table is fixed (`__diesel_schema_migrations`,
//! another layout) and diesel-async's `AsyncMigrationHarness` blocks in place,
//! which panics on a current-thread runtime. This runner is async all the way.

use std::time::Instant;

use diesel::sql_types::{BigInt, Binary, Bool, Text};
use diesel::{OptionalExtension, QueryableByName};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use palisade_core::{Error, ErrorKind, Namespace, Result};
use palisade_pg_common::migrations::runner::{self, Runner};
use palisade_pg_common::migrations::{self, Migration, MigrationStatus, Recorded};
use palisade_pg_common::namespace;

use crate::connection::Conn;
use crate::BACKEND;

#[derive(QueryableByName)]
struct Applied {
    #[diesel(sql_type = BigInt)]
    version: i64,
    #[diesel(sql_type = Binary)]
    checksum: Vec<u8>,
}

#[derive(QueryableByName)]
struct Version {
    #[diesel(sql_type = BigInt)]
    version: i64,
}

#[derive(QueryableByName)]
struct Database {
    #[diesel(sql_type = Text)]
    name: String,
}

#[derive(QueryableByName)]
struct Exists {
    #[diesel(sql_type = Bool)]
    exists: bool,
}

/// Applies every pending migration into `ns` on `conn` (a connection of its
/// own, whose `search_path` is `ns`). A no-op when up to date.
pub(crate) async fn run(conn: &mut Conn, ns: &Namespace) -> Result<()> {
    let db: Database =
        diesel::sql_query(runner::CURRENT_DATABASE).get_result(&mut **conn).await.map_err(conn.error("migrate"))?;
    let lock = runner::lock_id(&db.name);
    diesel::sql_query(runner::LOCK)
        .bind::<BigInt, _>(lock)
        .execute(&mut **conn)
        .await
        .map_err(conn.error("migrate"))?;
    let outcome = apply_pending(conn, ns).await;
    // Unlock whatever happened; the connection is closed afterwards anyway.
    let unlocked = diesel::sql_query(runner::UNLOCK).bind::<BigInt, _>(lock).execute(&mut **conn).await;
    outcome?;
    unlocked.map(|_| ()).map_err(conn.error("migrate"))
}

/// What `ns` recorded of its migrations, reading only: `None` without a
/// migrations table, else the dirty version (if any) and every applied
/// `(version, checksum)` — for [`require_current`](palisade_pg_common::migrations::require_current).
pub(crate) async fn recorded(conn: &mut Conn, ns: &Namespace) -> Result<Option<Recorded>> {
    let exists: Exists = diesel::sql_query(namespace::MIGRATION_TABLE_EXISTS)
        .bind::<Text, _>(ns.as_str())
        .get_result(&mut **conn)
        .await
        .map_err(conn.error("connect"))?;
    if !exists.exists {
        return Ok(None);
    }
    read_recorded(conn, &Runner::new(ns), "connect").await.map(Some)
}

/// The dirty version and the applied migrations of `plan`'s table (which exists).
async fn read_recorded(conn: &mut Conn, plan: &Runner, op: &'static str) -> Result<Recorded> {
    let dirty: Option<Version> =
        diesel::sql_query(plan.dirty()).get_result(&mut **conn).await.optional().map_err(conn.error(op))?;
    let applied: Vec<Applied> = diesel::sql_query(plan.applied()).load(&mut **conn).await.map_err(conn.error(op))?;
    Ok(Recorded {
        dirty: dirty.map(|d| d.version),
        applied: applied.into_iter().map(|a| (a.version, a.checksum)).collect(),
    })
}

async fn apply_pending(conn: &mut Conn, ns: &Namespace) -> Result<()> {
    let plan = Runner::new(ns);
    conn.batch_execute(&plan.ddl()).await.map_err(conn.error("migrate"))?;
    let Recorded { dirty, applied } = read_recorded(conn, &plan, "migrate").await?;
    let pending = runner::pending(dirty, &applied).map_err(refused)?;
    let insert = plan.insert();
    for m in pending {
        let started = Instant::now();
        let checksum = runner::checksum(m);
        let outcome = if m.no_transaction() {
            apply_one(conn, m, &insert, &checksum).await
        } else {
            conn.transaction::<_, diesel::result::Error, _>(async |c| apply_one(c, m, &insert, &checksum).await).await
        };
        outcome.map_err(|e| runner::failed(m.version, conn.error("migrate")(e), BACKEND))?;
        let elapsed = i64::try_from(started.elapsed().as_nanos()).unwrap_or(i64::MAX);
        diesel::sql_query(plan.finish())
            .bind::<BigInt, _>(elapsed)
            .bind::<BigInt, _>(m.version)
            .execute(&mut **conn)
            .await
            .map_err(conn.error("migrate"))?;
    }
    Ok(())
}

/// Runs one migration's file and records it (sqlx's statements).
async fn apply_one(c: &mut AsyncPgConnection, m: &Migration, insert: &str, checksum: &[u8]) -> diesel::QueryResult<()> {
    c.batch_execute(m.sql).await?;
    diesel::sql_query(insert)
        .bind::<BigInt, _>(m.version)
        .bind::<Text, _>(m.description)
        .bind::<Binary, _>(checksum)
        .execute(c)
        .await
        .map(|_| ())
}

/// Which migrations are applied in `ns` (nothing is changed).
pub(crate) async fn status(conn: &mut Conn, ns: &Namespace) -> Result<Vec<MigrationStatus>> {
    let exists: Exists = diesel::sql_query(namespace::MIGRATION_TABLE_EXISTS)
        .bind::<Text, _>(ns.as_str())
        .get_result(&mut **conn)
        .await
        .map_err(conn.error("migration_status"))?;
    let applied: Vec<i64> = if exists.exists {
        let rows: Vec<Version> = diesel::sql_query(namespace::APPLIED_MIGRATIONS)
            .load(&mut **conn)
            .await
            .map_err(conn.error("migration_status"))?;
        rows.into_iter().map(|v| v.version).collect()
    } else {
        Vec::new()
    };
    Ok(migrations::status(&applied))
}

fn refused(msg: String) -> Error {
    Error::new(ErrorKind::Config, format!("migrations could not be applied: {msg}"))
        .with_backend(BACKEND)
        .with_op("migrate")
}
