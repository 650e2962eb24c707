//! The migrations every Postgres backend applies, embedded from the
//! workspace's one `migrations/` folder (this crate's `migrations` is a link
//! to it, so the files ship inside the package).
//!
//! Each namespace tracks them in its own `palisade_migrations` table (never
//! the application's `_sqlx_migrations` or `__diesel_schema_migrations`), in
//! the layout sqlx's migrator writes: `version`, `description`,
//! `installed_on`, `success`, `checksum` (SHA-384 of [`Migration::sql`]),
//! `execution_time`. A backend that runs migrations with another tool must
//! read and write that table the same way, so every driver accepts a
//! namespace any other one migrated.
//!
//! Migrations are append-only: a file that has been released never changes
//! (its checksum is checked on every start). A new file needs a line in
//! [`MIGRATIONS`]; a test fails until the list matches the folder.

/// The table, in the namespace, that records applied migrations.
pub const TABLE: &str = "palisade_migrations";

/// One migration file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migration {
    /// The file's numeric prefix.
    pub version: i64,
    /// The rest of the file name, `_` read as a space, without `.sql` (as
    /// sqlx records it).
    pub description: &'static str,
    /// The file's text, byte for byte.
    pub sql: &'static str,
}

impl Migration {
    /// Whether the file opts out of running in a transaction (it starts with
    /// `-- no-transaction`, sqlx's marker).
    pub fn no_transaction(&self) -> bool {
        self.sql.starts_with("-- no-transaction")
    }
}

macro_rules! migration {
    ($version:literal, $description:literal, $file:literal) => {
        Migration { version: $version, description: $description, sql: include_str!(concat!("../migrations/", $file)) }
    };
}

/// Every migration, in the order they apply.
pub static MIGRATIONS: &[Migration] = &[
    migration!(1, "events", "0001_events.sql"),
    migration!(2, "sessions", "0002_sessions.sql"),
    migration!(3, "documents", "0003_documents.sql"),
    migration!(4, "reputation", "0004_reputation.sql"),
    migration!(5, "events append", "0005_events_append.sql"),
    migration!(6, "document indexes", "0006_document_indexes.sql"),
    migration!(7, "sessions absolute expiry", "0007_sessions_absolute_expiry.sql"),
    migration!(8, "encode existing u0001", "0008_encode_existing_u0001.sql"),
    migration!(9, "events transaction order", "0009_events_transaction_order.sql"),
    migration!(10, "document key costs", "0010_document_key_costs.sql"),
    migration!(11, "events stream locks", "0011_events_stream_locks.sql"),
    migration!(12, "event consumers", "0012_event_consumers.sql"),
    migration!(13, "events partitioned", "0013_events_partitioned.sql"),
];

pub use palisade_core::backend::MigrationStatus;

/// The state of every migration, given the versions recorded as applied
/// (successfully) in the namespace's [`TABLE`].
pub fn status(applied: &[i64]) -> Vec<MigrationStatus> {
    MIGRATIONS
        .iter()
        .map(|m| MigrationStatus {
            version: m.version,
            description: m.description.to_owned(),
            applied: applied.contains(&m.version),
        })
        .collect()
}

/// What a namespace's migrations table records (read by each driver).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recorded {
    /// The first migration recorded as failed, if any.
    pub dirty: Option<i64>,
    /// Every recorded `(version, checksum)`.
    pub applied: Vec<(i64, Vec<u8>)>,
}

/// `Ok` when `ns` is exactly at this build's schema, judged from what the
/// namespace recorded — `None` when it has no migrations table, else the
/// dirty (failed) version if any and every applied `(version, checksum)` —
/// by the same rules as migrating ([`runner::pending`]): a dirty namespace,
/// a migration unknown to this build or one whose file changed is refused,
/// and so is any pending migration. The `Config` error a backend with
/// auto-migration off refuses to connect with says which, and that
/// `palisade migrate` (as the schema owner) is the fix.
pub fn require_current(
    ns: &palisade_core::Namespace,
    recorded: Option<Recorded>,
    backend: &'static str,
) -> palisade_core::Result<()> {
    let refuse = |what: String| {
        palisade_core::Error::new(
            palisade_core::ErrorKind::Config,
            format!("namespace {ns} {what}, and auto-migration is off: run `palisade migrate` as the schema owner"),
        )
        .with_backend(backend)
        .with_op("connect")
    };
    let Recorded { dirty, applied } = recorded.unwrap_or_default();
    let pending = runner::pending(dirty, &applied).map_err(|msg| refuse(format!("cannot be used: {msg}")))?;
    if pending.is_empty() {
        return Ok(());
    }
    let missing: Vec<String> = pending.iter().map(|m| format!("{:04} {}", m.version, m.description)).collect();
    Err(refuse(format!("is missing migrations {}", missing.join(", "))))
}

#[cfg(test)]
mod check_tests {
    use super::*;

    fn ns() -> palisade_core::Namespace {
        palisade_core::Namespace::new("shop").unwrap_or_default()
    }

    fn all_applied() -> Vec<(i64, Vec<u8>)> {
        MIGRATIONS.iter().map(|m| (m.version, runner::checksum(m))).collect()
    }

    #[test]
    fn a_current_namespace_passes_and_anything_else_is_refused_by_name() {
        assert!(require_current(&ns(), Some(Recorded { dirty: None, applied: all_applied() }), "pg").is_ok());
        let bare = require_current(&ns(), None, "pg").unwrap_err();
        assert!(bare.to_string().contains("0001") && bare.to_string().contains("palisade migrate"), "{bare}");
        let mut behind = all_applied();
        behind.pop();
        let e = require_current(&ns(), Some(Recorded { dirty: None, applied: behind }), "pg").unwrap_err();
        assert!(e.to_string().contains("missing migrations 00"), "{e}");
        assert!(require_current(&ns(), Some(Recorded { dirty: Some(3), applied: all_applied() }), "pg")
            .unwrap_err()
            .to_string()
            .contains("dirty"));
        let mut ahead = all_applied();
        ahead.push((9999, vec![1]));
        assert!(require_current(&ns(), Some(Recorded { dirty: None, applied: ahead }), "pg")
            .unwrap_err()
            .to_string()
            .contains("unknown"));
        let mut changed = all_applied();
        changed[0].1 = vec![0];
        assert_eq!(
            require_current(&ns(), Some(Recorded { dirty: None, applied: changed }), "pg").unwrap_err().kind(),
            palisade_core::ErrorKind::Config
        );
    }
}

pub mod runner {
    //! How a backend applies [`MIGRATIONS`]: driver-neutral statements and
    //! decisions, so every driver migrates a namespace the same way, byte for
    //! byte as sqlx 0.9's `Migrator::run` did (namespaces migrated by it stay
    //! valid). A backend's runner:
    //! 1. takes [`LOCK`] with [`lock_id`] of [`CURRENT_DATABASE`] (sqlx's
    //!    database-wide advisory lock, so every migrator excludes the others),
    //!    and releases it with [`UNLOCK`] whatever happens;
    //! 2. runs [`Runner::ddl`] (schema and bookkeeping table, idempotent);
    //! 3. reads [`Runner::dirty`] and [`Runner::applied`] and asks
    //!    [`pending`] what to run — a failed (dirty) migration, an applied
    //!    version this binary does not know, or a changed checksum refuse;
    //! 4. runs each pending migration's file and [`Runner::insert`] in one
    //!    transaction (`execution_time` -1), then [`Runner::finish`] with the
    //!    elapsed nanoseconds.

    use palisade_core::Namespace;
    use sha2::{Digest, Sha384};

    use super::{Migration, MIGRATIONS, TABLE};

    /// The database's name (one text row), for [`lock_id`].
    pub const CURRENT_DATABASE: &str = "SELECT current_database() AS name";
    /// `$1` = [`lock_id`]: waits for the migration lock.
    pub const LOCK: &str = "SELECT pg_advisory_lock($1)";
    /// `$1` = [`lock_id`]: releases it.
    pub const UNLOCK: &str = "SELECT pg_advisory_unlock($1)";

    /// sqlx's advisory lock id for `database`: `0x3d32ad9e` × CRC-32 of the name.
    pub fn lock_id(database: &str) -> i64 {
        const CRC_IEEE: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);
        0x3d32_ad9e * i64::from(CRC_IEEE.checksum(database.as_bytes()))
    }

    /// The SHA-384 of a migration's file, as recorded.
    pub fn checksum(m: &Migration) -> Vec<u8> {
        Sha384::digest(m.sql.as_bytes()).to_vec()
    }

    /// The statements for one namespace. Its name is validated by core as
    /// `[a-z][a-z0-9_]*`; sqlx wrote it unquoted, so this does too.
    pub struct Runner {
        schema: String,
        table: String,
    }

    impl Runner {
        /// The runner for `ns`.
        pub fn new(ns: &Namespace) -> Self {
            Runner { schema: ns.as_str().to_owned(), table: format!("{}.{TABLE}", ns.as_str()) }
        }

        /// Creates the schema and the bookkeeping table (sqlx's columns).
        pub fn ddl(&self) -> String {
            format!(
                "CREATE SCHEMA IF NOT EXISTS {schema};
CREATE TABLE IF NOT EXISTS {table} (
    version BIGINT PRIMARY KEY,
    description TEXT NOT NULL,
    installed_on TIMESTAMPTZ NOT NULL DEFAULT now(),
    success BOOLEAN NOT NULL,
    checksum BYTEA NOT NULL,
    execution_time BIGINT NOT NULL
);",
                schema = self.schema,
                table = self.table
            )
        }

        /// The first failed migration's version (bigint `version`), if any.
        pub fn dirty(&self) -> String {
            format!("SELECT version FROM {} WHERE success = false ORDER BY version LIMIT 1", self.table)
        }

        /// Every recorded migration: bigint `version`, bytea `checksum`.
        pub fn applied(&self) -> String {
            format!("SELECT version, checksum FROM {} ORDER BY version", self.table)
        }

        /// `$1` version, `$2` description, `$3` checksum: records a migration.
        pub fn insert(&self) -> String {
            format!(
                "INSERT INTO {} ( version, description, success, checksum, execution_time ) VALUES ( $1, $2, TRUE, $3, -1 )",
                self.table
            )
        }

        /// `$1` elapsed nanoseconds, `$2` version: completes the record.
        pub fn finish(&self) -> String {
            format!("UPDATE {} SET execution_time = $1 WHERE version = $2", self.table)
        }
    }

    /// The error for migration `version` failing with `cause` (already
    /// mapped by the driver): its kind and temporariness, this message.
    pub fn failed(version: i64, cause: palisade_core::Error, backend: &'static str) -> palisade_core::Error {
        let (kind, temporary) = (cause.kind(), cause.is_temporary());
        palisade_core::Error::new(kind, format!("migration {version} failed"))
            .with_backend(backend)
            .with_op("migrate")
            .set_temporary(temporary)
            .with_source(cause)
    }

    /// What to run given the namespace's records: the pending migrations in
    /// order, or why migrating is refused (the namespace is dirty, knows a
    /// version this binary does not, or a file changed since it ran).
    pub fn pending(dirty: Option<i64>, applied: &[(i64, Vec<u8>)]) -> Result<Vec<&'static Migration>, String> {
        if let Some(version) = dirty {
            return Err(format!("migration {version} failed earlier and left the namespace dirty"));
        }
        for (version, sum) in applied {
            match MIGRATIONS.iter().find(|m| m.version == *version) {
                None => return Err(format!("migration {version} was applied but is unknown to this binary")),
                Some(m) if checksum(m) != *sum => {
                    return Err(format!("migration {version} was applied with different contents"))
                }
                Some(_) => {}
            }
        }
        Ok(MIGRATIONS.iter().filter(|m| !applied.iter().any(|(v, _)| *v == m.version)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `0001_events.sql` → (1, "events"), as sqlx's file resolver reads names.
    fn parse(file: &str) -> (i64, String) {
        let (version, rest) = file.split_once('_').unwrap_or_else(|| panic!("{file}: no `_`"));
        let description = rest.strip_suffix(".sql").unwrap_or_else(|| panic!("{file}: not .sql"));
        (version.parse().unwrap_or_else(|_| panic!("{file}: no version")), description.replace('_', " "))
    }

    #[test]
    fn the_list_matches_the_migrations_folder() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|f| f.ends_with(".sql"))
            .collect();
        files.sort();
        let listed: Vec<(i64, String)> = MIGRATIONS.iter().map(|m| (m.version, m.description.to_owned())).collect();
        let on_disk: Vec<(i64, String)> = files.iter().map(|f| parse(f)).collect();
        assert_eq!(listed, on_disk, "every file in migrations/ needs its line in MIGRATIONS, in order");
        for (m, file) in MIGRATIONS.iter().zip(&files) {
            assert_eq!(m.sql, std::fs::read_to_string(dir.join(file)).unwrap(), "{file} embedded verbatim");
        }
    }

    #[test]
    fn versions_increase_and_none_opts_out_of_transactions() {
        assert!(MIGRATIONS.windows(2).all(|w| w[0].version < w[1].version));
        assert!(MIGRATIONS.iter().all(|m| !m.no_transaction()), "every migration is all-or-nothing");
    }

    #[test]
    fn the_lock_id_is_sqlx_s() {
        // sqlx: 0x3d32ad9e * crc32_ieee(name); crc32("test") = 0xd87f7e0c.
        assert_eq!(runner::lock_id("test"), 0x3d32_ad9e * 0xd87f_7e0c_i64);
    }

    #[test]
    fn pending_runs_what_is_missing_and_refuses_dirty_unknown_or_changed_records() {
        let all = runner::pending(None, &[]).unwrap();
        assert_eq!(all.len(), MIGRATIONS.len());
        let first = (1, runner::checksum(&MIGRATIONS[0]));
        let rest = runner::pending(None, std::slice::from_ref(&first)).unwrap();
        assert_eq!(rest.first().map(|m| m.version), Some(2));
        assert!(runner::pending(Some(3), &[]).unwrap_err().contains("dirty"));
        assert!(runner::pending(None, &[(999, vec![])]).unwrap_err().contains("unknown"));
        assert!(runner::pending(None, &[(1, vec![0; 48])]).unwrap_err().contains("different contents"));
    }

    #[test]
    fn status_marks_the_recorded_versions() {
        let s = status(&[1, 2]);
        assert_eq!(s.len(), MIGRATIONS.len());
        assert!(s[0].applied && s[1].applied && !s[2].applied);
        assert_eq!(s[4].description, "events append");
    }
}
