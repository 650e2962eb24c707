//! Applies pg-common's migrations the way sqlx's migrator does, byte for
//! byte, so pg-diesel and pg-sqlx accept each other's namespaces.
//!
//! diesel_migrations cannot: its table is fixed (`__diesel_schema_migrations`,
//! another layout) and diesel-async's `AsyncMigrationHarness` blocks in place,
//! which panics on a current-thread runtime. This runner is async all the
//! way and mirrors sqlx 0.9's `Migrator::run`:
//! - the same database-wide advisory lock (`0x3d32ad9e` × CRC-32 of the
//!   database name), so migrators of either driver exclude each other;
//! - `CREATE SCHEMA IF NOT EXISTS <ns>` and `<ns>.palisade_migrations` with
//!   sqlx's columns;
//! - a failed (dirty) migration, an applied version this binary does not
//!   know, or a changed checksum (SHA-384 of the file) stop it with an error;
//! - each pending migration runs with its bookkeeping row in one
//!   transaction (`execution_time` -1, then updated after commit).

use std::time::Instant;

use diesel::sql_types::{BigInt, Binary, Bool, Text};
use diesel::{OptionalExtension, QueryableByName};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use palisade_core::{Error, ErrorKind, Namespace, Result};
use palisade_pg_common::migrations::{self, Migration, MigrationStatus, MIGRATIONS};
use palisade_pg_common::namespace;
use sha2::{Digest, Sha384};

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

/// sqlx's advisory lock id for `database`.
pub(crate) fn lock_id(database: &str) -> i64 {
    const CRC_IEEE: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);
    0x3d32_ad9e * i64::from(CRC_IEEE.checksum(database.as_bytes()))
}

/// Applies every pending migration into `ns` on `conn` (a connection of its
/// own, whose `search_path` is `ns`). A no-op when up to date.
pub(crate) async fn run(conn: &mut Conn, ns: &Namespace) -> Result<()> {
    let db: Database = diesel::sql_query("SELECT current_database() AS name")
        .get_result(&mut **conn)
        .await
        .map_err(conn.error("migrate"))?;
    let lock = lock_id(&db.name);
    diesel::sql_query("SELECT pg_advisory_lock($1)")
        .bind::<BigInt, _>(lock)
        .execute(&mut **conn)
        .await
        .map_err(conn.error("migrate"))?;
    let outcome = apply_pending(conn, ns).await;
    // Unlock whatever happened; the connection is closed afterwards anyway.
    let unlocked =
        diesel::sql_query("SELECT pg_advisory_unlock($1)").bind::<BigInt, _>(lock).execute(&mut **conn).await;
    outcome?;
    unlocked.map(|_| ()).map_err(conn.error("migrate"))
}

async fn apply_pending(conn: &mut Conn, ns: &Namespace) -> Result<()> {
    let table = namespace::migration_table(ns);
    // sqlx writes the schema and table names unquoted; namespaces are
    // validated as [a-z][a-z0-9_]*, so quoting would change nothing.
    let ddl = format!(
        "CREATE SCHEMA IF NOT EXISTS {schema};
CREATE TABLE IF NOT EXISTS {table} (
    version BIGINT PRIMARY KEY,
    description TEXT NOT NULL,
    installed_on TIMESTAMPTZ NOT NULL DEFAULT now(),
    success BOOLEAN NOT NULL,
    checksum BYTEA NOT NULL,
    execution_time BIGINT NOT NULL
);",
        schema = ns.as_str()
    );
    conn.batch_execute(&ddl).await.map_err(conn.error("migrate"))?;
    let dirty: Option<Version> =
        diesel::sql_query(format!("SELECT version FROM {table} WHERE success = false ORDER BY version LIMIT 1"))
            .get_result(&mut **conn)
            .await
            .optional()
            .map_err(conn.error("migrate"))?;
    if let Some(Version { version }) = dirty {
        return Err(refused(format!("migration {version} failed earlier and left the namespace dirty")));
    }
    let applied: Vec<Applied> = diesel::sql_query(format!("SELECT version, checksum FROM {table} ORDER BY version"))
        .load(&mut **conn)
        .await
        .map_err(conn.error("migrate"))?;
    for a in &applied {
        match MIGRATIONS.iter().find(|m| m.version == a.version) {
            None => return Err(refused(format!("migration {} was applied but is unknown to this binary", a.version))),
            Some(m) if Sha384::digest(m.sql.as_bytes())[..] != a.checksum[..] => {
                return Err(refused(format!("migration {} was applied with different contents", a.version)))
            }
            Some(_) => {}
        }
    }
    for m in MIGRATIONS.iter().filter(|m| !applied.iter().any(|a| a.version == m.version)) {
        let started = Instant::now();
        let checksum = Sha384::digest(m.sql.as_bytes()).to_vec();
        let insert = format!(
            "INSERT INTO {table} ( version, description, success, checksum, execution_time ) VALUES ( $1, $2, TRUE, $3, -1 )"
        );
        let outcome = if m.no_transaction() {
            apply_one(conn, m, &insert, &checksum).await
        } else {
            conn.transaction::<_, diesel::result::Error, _>(async |c| apply_one(c, m, &insert, &checksum).await).await
        };
        outcome.map_err(|e| {
            let e = conn.error("migrate")(e);
            let (kind, temporary) = (e.kind(), e.is_temporary());
            Error::new(kind, format!("migration {} failed", m.version))
                .with_backend(BACKEND)
                .with_op("migrate")
                .set_temporary(temporary)
                .with_source(e)
        })?;
        let elapsed = i64::try_from(started.elapsed().as_nanos()).unwrap_or(i64::MAX);
        diesel::sql_query(format!("UPDATE {table} SET execution_time = $1 WHERE version = $2"))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_id_is_sqlx_s() {
        // sqlx 0.9: 0x3d32ad9e * crc32_ieee(name); crc32("test") = 0xd87f7e0c.
        assert_eq!(lock_id("test"), 0x3d32_ad9e * 0xd87f_7e0c_i64);
    }
}
