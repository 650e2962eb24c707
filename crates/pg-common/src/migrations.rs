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
    fn status_marks_the_recorded_versions() {
        let s = status(&[1, 2]);
        assert_eq!(s.len(), MIGRATIONS.len());
        assert!(s[0].applied && s[1].applied && !s[2].applied);
        assert_eq!(s[4].description, "events append");
    }
}
