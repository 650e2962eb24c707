//! Namespace-level statements. A namespace is one Postgres schema, set as
//! every connection's `search_path`, so the stores' statements name no
//! schema at all; only the statements here name it, quoted.

use palisade_core::Namespace;

use crate::migrations::TABLE;

/// `ident` as a quoted SQL identifier (`"` doubled), whatever it holds.
/// Namespaces are already validated as `[a-z][a-z0-9_]*`; quoting keeps any
/// identifier safe all the same.
pub fn quote_ident(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// The grants a runtime (data-only) role `role` needs in `ns`, as SQL for
/// the schema owner to run after `palisade migrate` (and again after any
/// later `palisade migrate`: a new migration's tables are granted only then;
/// every statement is idempotent): use of the schema; reading and writing
/// the store tables, but only reading the migrations table (a service with
/// auto-migration off checks it) and the list of event partitions (which
/// the purge function, running as the owner, keeps); executing the stores' functions (also
/// where `EXECUTE` was revoked from `PUBLIC`). Nothing else: no `CREATE`,
/// no DDL, no `TRUNCATE`, no sequences (identity columns need none). The
/// partitions of document collections need no grants of their own: the
/// stores reach them through the partitioned `documents` table, whose
/// privileges Postgres checks.
///
/// Creating or dropping a document collection adds or drops a partition and
/// its indexes: DDL, so part of the privileged step — run it as the schema
/// owner. A runtime role that tries gets `PermissionDenied` and nothing
/// changes; ensuring a collection that already exists with the same spec
/// needs no extra grant.
pub fn grants(ns: &Namespace, role: &str) -> String {
    let (s, r, m) = (quote_ident(ns.as_str()), quote_ident(role), quote_ident(TABLE));
    format!(
        "GRANT USAGE ON SCHEMA {s} TO {r};\n\
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {s} TO {r};\n\
         REVOKE INSERT, UPDATE, DELETE ON {s}.{m} FROM {r};\n\
         REVOKE INSERT, UPDATE, DELETE ON {s}.event_partitions FROM {r};\n\
         GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA {s} TO {r};\n"
    )
}

/// Drops the namespace's schema and everything in it (no-op when absent).
pub fn drop_schema(ns: &Namespace) -> String {
    format!("DROP SCHEMA IF EXISTS {} CASCADE", quote_ident(ns.as_str()))
}

/// Empties every store of the current namespace in one statement, leaving
/// the schema as a fresh migration does: collections and their partitions
/// gone, every table truncated (identities restarted; `events` with all its
/// partitions). Migrations, the event head (its position offset) and the
/// list of event partitions (which stay) stay.
pub const EMPTY: &str = "DO $$ DECLARE tables text; BEGIN \
    DELETE FROM collections; \
    SELECT string_agg(format('%I', c.relname), ', ') INTO tables \
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
     WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND NOT c.relispartition \
       AND c.relname NOT IN ('palisade_migrations', 'event_head', 'event_partitions'); \
    EXECUTE 'TRUNCATE ' || tables || ' RESTART IDENTITY CASCADE'; \
    END $$";

/// `$1` = the namespace: whether its migration table exists (a boolean).
pub const MIGRATION_TABLE_EXISTS: &str =
    "SELECT EXISTS (SELECT 1 FROM pg_tables WHERE schemaname = $1 AND tablename = 'palisade_migrations')";

/// The versions recorded as successfully applied (bigint rows), in the
/// current namespace. Only run after [`MIGRATION_TABLE_EXISTS`] said yes.
pub const APPLIED_MIGRATIONS: &str = "SELECT version FROM palisade_migrations WHERE success";

/// The schema-qualified migration table, for migrators that take a name.
pub fn migration_table(ns: &Namespace) -> String {
    format!("{}.{TABLE}", ns.as_str())
}

/// Checks that the server answers.
pub const PING: &str = "SELECT 1";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted_with_quotes_doubled() {
        assert_eq!(quote_ident("conf_1"), "\"conf_1\"");
        assert_eq!(quote_ident("a\"; DROP SCHEMA x; --"), "\"a\"\"; DROP SCHEMA x; --\"");
        let ns = Namespace::new("tenant_a").unwrap();
        assert_eq!(drop_schema(&ns), "DROP SCHEMA IF EXISTS \"tenant_a\" CASCADE");
        assert_eq!(migration_table(&ns), "tenant_a.palisade_migrations");
    }

    #[test]
    fn emptying_keeps_the_migration_record() {
        assert!(EMPTY.contains("NOT IN ('palisade_migrations', 'event_head', 'event_partitions')"));
        assert!(MIGRATION_TABLE_EXISTS.contains(TABLE) && APPLIED_MIGRATIONS.contains(TABLE));
    }
}
