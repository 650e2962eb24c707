//! Applies pg-common's migrations with pg-common's [`runner`] plan — the
//! statements and decisions every Postgres driver shares — so pg-sqlx and
//! pg-diesel accept each other's namespaces (and namespaces migrated by
//! sqlx 0.9's `Migrator`, whose table layout and lock the plan keeps).
//!
//! sqlx 0.8's own migrator cannot be pointed at the namespace's
//! `palisade_migrations` table (it always uses `_sqlx_migrations`).

use std::time::Instant;

use palisade_core::{Error, ErrorKind, Namespace, Result};
use palisade_pg_common::migrations::runner::{self, Runner};
use palisade_pg_common::migrations::{Migration, Recorded};
use sqlx::{Acquire, Executor, PgConnection};

use crate::error::map;
use crate::BACKEND;

/// Applies every pending migration into `ns` on `conn` (held for the whole
/// run: the advisory lock is the session's). A no-op when up to date.
pub(crate) async fn run(conn: &mut PgConnection, ns: &Namespace) -> Result<()> {
    let db: String =
        sqlx::query_scalar(runner::CURRENT_DATABASE).fetch_one(&mut *conn).await.map_err(|e| map("migrate", e))?;
    let lock = runner::lock_id(&db);
    sqlx::query(runner::LOCK).bind(lock).execute(&mut *conn).await.map_err(|e| map("migrate", e))?;
    let outcome = apply_pending(conn, ns).await;
    // Unlock whatever happened (a broken connection drops the lock anyway).
    let unlocked = sqlx::query(runner::UNLOCK).bind(lock).execute(&mut *conn).await;
    outcome?;
    unlocked.map(|_| ()).map_err(|e| map("migrate", e))
}

/// What `ns` recorded of its migrations, reading only: `None` without a
/// migrations table, else the dirty version (if any) and every applied
/// `(version, checksum)` — for [`require_current`](palisade_pg_common::migrations::require_current).
pub(crate) async fn recorded(conn: &mut PgConnection, ns: &Namespace) -> Result<Option<Recorded>> {
    let exists: bool = sqlx::query_scalar(palisade_pg_common::namespace::MIGRATION_TABLE_EXISTS)
        .bind(ns.as_str())
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| map("connect", e))?;
    if !exists {
        return Ok(None);
    }
    read_recorded(conn, &Runner::new(ns), "connect").await.map(Some)
}

/// The dirty version and the applied migrations of `plan`'s table (which exists).
async fn read_recorded(conn: &mut PgConnection, plan: &Runner, op: &'static str) -> Result<Recorded> {
    let dirty: Option<i64> =
        sqlx::query_scalar(&plan.dirty()).fetch_optional(&mut *conn).await.map_err(|e| map(op, e))?;
    let applied: Vec<(i64, Vec<u8>)> =
        sqlx::query_as(&plan.applied()).fetch_all(&mut *conn).await.map_err(|e| map(op, e))?;
    Ok(Recorded { dirty, applied })
}

async fn apply_pending(conn: &mut PgConnection, ns: &Namespace) -> Result<()> {
    let plan = Runner::new(ns);
    conn.execute(plan.ddl().as_str()).await.map_err(|e| map("migrate", e))?;
    let Recorded { dirty, applied } = read_recorded(conn, &plan, "migrate").await?;
    let pending = runner::pending(dirty, &applied).map_err(|msg| {
        Error::new(ErrorKind::Config, format!("migrations could not be applied: {msg}"))
            .with_backend(BACKEND)
            .with_op("migrate")
    })?;
    let (insert, finish) = (plan.insert(), plan.finish());
    for m in pending {
        let started = Instant::now();
        apply_one(conn, m, &insert).await.map_err(|e| runner::failed(m.version, map("migrate", e), BACKEND))?;
        let elapsed = i64::try_from(started.elapsed().as_nanos()).unwrap_or(i64::MAX);
        sqlx::query(&finish).bind(elapsed).bind(m.version).execute(&mut *conn).await.map_err(|e| map("migrate", e))?;
    }
    Ok(())
}

/// Runs one migration's file and records it, in one transaction unless the
/// file opts out.
async fn apply_one(conn: &mut PgConnection, m: &Migration, insert: &str) -> sqlx::Result<()> {
    let record = sqlx::query(insert).bind(m.version).bind(m.description).bind(runner::checksum(m));
    if m.no_transaction() {
        conn.execute(m.sql).await?;
        record.execute(&mut *conn).await?;
        return Ok(());
    }
    let mut tx = conn.begin().await?;
    tx.execute(m.sql).await?;
    record.execute(&mut *tx).await?;
    tx.commit().await
}
