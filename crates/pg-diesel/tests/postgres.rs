//! pg-diesel against a live Postgres (`PALISADE_TEST_POSTGRES_URL`; skipped
//! with a notice without it, failed when `PALISADE_REQUIRE` names postgres):
//! migrations interoperate with pg-sqlx both ways, both drivers build the
//! same catalog, and the `schema` module matches it.

use diesel::{ExpressionMethods, QueryDsl};
use diesel_async::RunQueryDsl;
use palisade_conformance::server_url;
use palisade_core::Namespace;
use palisade_pg_common::migrations::MIGRATIONS;
use palisade_pg_diesel::{PgDieselBackend, PgDieselConfig};
use palisade_pg_sqlx::{PgBackend, PgConfig};

fn url() -> Option<String> {
    server_url("postgres", "PALISADE_TEST_POSTGRES_URL")
}

fn diesel_config(url: &str, ns: &Namespace) -> PgDieselConfig {
    PgDieselConfig::new(url, ns.clone()).with_pool_size(2)
}

async fn sqlx(url: &str, ns: &Namespace) -> PgBackend {
    PgBackend::connect(&PgConfig::new(url, ns.clone()).with_pool_size(2)).await.expect("pg-sqlx connects")
}

/// The catalog of `ns` as text, with the schema's name replaced: tables and
/// their columns, indexes, constraints, functions, triggers.
async fn catalog(url: &str, ns: &Namespace) -> Vec<String> {
    let pool = sqlx::PgPool::connect(url).await.expect("catalog connection");
    let queries = [
        "SELECT format('column %s.%s %s %s', c.relname, a.attname, format_type(a.atttypid, a.atttypmod), \
           CASE WHEN a.attnotnull THEN 'not null' ELSE 'null' END || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '')) \
         FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
         LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
         WHERE n.nspname = $1 AND a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'v', 'm')",
        "SELECT format('table %s kind %s persistence %s', c.relname, c.relkind, c.relpersistence) \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1",
        "SELECT 'index ' || indexdef FROM pg_indexes WHERE schemaname = $1",
        "SELECT format('constraint %s %s', conname, pg_get_constraintdef(oid)) FROM pg_constraint \
         WHERE connamespace = (SELECT oid FROM pg_namespace WHERE nspname = $1)",
        "SELECT format('function %s(%s) %s', p.proname, pg_get_function_identity_arguments(p.oid), md5(p.prosrc)) \
         FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = $1",
        "SELECT format('trigger %s', pg_get_triggerdef(t.oid)) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid \
         JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND NOT t.tgisinternal",
    ];
    let mut lines = Vec::new();
    for q in queries {
        let rows: Vec<String> = sqlx::query_scalar(q).bind(ns.as_str()).fetch_all(&pool).await.expect("catalog query");
        lines.extend(rows.into_iter().map(|l| l.replace(ns.as_str(), "<ns>")));
    }
    lines.sort();
    lines
}

#[tokio::test]
async fn a_namespace_migrated_by_either_driver_is_served_by_the_other() {
    let Some(url) = url() else { return };
    // diesel migrates, sqlx serves (its migrator finds nothing to do and no mismatch).
    let ns = Namespace::random("pgd").unwrap();
    let diesel = PgDieselBackend::connect(&diesel_config(&url, &ns)).await.expect("pg-diesel connects and migrates");
    let by_sqlx = sqlx(&url, &ns).await;
    assert!(by_sqlx.migration_status().await.unwrap().iter().all(|m| m.applied));
    assert!(diesel.migration_status().await.unwrap().iter().all(|m| m.applied));
    diesel.drop_namespace().await.unwrap();

    // sqlx migrates, diesel serves without re-migrating.
    let ns = Namespace::random("pgd").unwrap();
    let by_sqlx = sqlx(&url, &ns).await;
    let diesel = PgDieselBackend::connect(&diesel_config(&url, &ns)).await.expect("pg-diesel accepts sqlx's namespace");
    let status = diesel.migration_status().await.unwrap();
    assert_eq!(status.len(), MIGRATIONS.len());
    assert!(status.iter().all(|m| m.applied), "{status:?}");
    by_sqlx.drop_namespace().await.unwrap();
}

#[tokio::test]
async fn a_changed_migration_is_refused_not_reapplied() {
    let Some(url) = url() else { return };
    let ns = Namespace::random("pgd").unwrap();
    let by_sqlx = sqlx(&url, &ns).await;
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::query(&format!("UPDATE {}.palisade_migrations SET checksum = '\\x00' WHERE version = 2", ns.as_str()))
        .execute(&pool)
        .await
        .unwrap();
    let err = PgDieselBackend::connect(&diesel_config(&url, &ns)).await.err().expect("a changed checksum is refused");
    assert_eq!(err.kind(), palisade_core::ErrorKind::Config, "{err}");
    by_sqlx.drop_namespace().await.unwrap();
}

/// A migration recorded as failed (dirty) or a version this build does not
/// know stops the migrator with a `Config` error, as sqlx's does.
#[tokio::test]
async fn a_dirty_or_unknown_migration_is_refused() {
    let Some(url) = url() else { return };
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    for (what, change) in [
        ("dirty", "UPDATE {ns}.palisade_migrations SET success = false WHERE version = 3"),
        (
            "unknown",
            "INSERT INTO {ns}.palisade_migrations (version, description, success, checksum, execution_time) \
             VALUES (9999, 'from the future', true, '\\x00', 0)",
        ),
    ] {
        let ns = Namespace::random("pgd").unwrap();
        let by_sqlx = sqlx(&url, &ns).await;
        sqlx::query(&change.replace("{ns}", ns.as_str())).execute(&pool).await.unwrap();
        let err = PgDieselBackend::connect(&diesel_config(&url, &ns)).await.err().expect(what);
        assert_eq!(err.kind(), palisade_core::ErrorKind::Config, "{what}: {err}");
        by_sqlx.drop_namespace().await.unwrap();
    }
}

#[tokio::test]
async fn both_drivers_build_identical_catalogs() {
    let Some(url) = url() else { return };
    let (a, b) = (Namespace::random("pgd").unwrap(), Namespace::random("pgd").unwrap());
    let by_sqlx = sqlx(&url, &a).await;
    let by_diesel = PgDieselBackend::connect(&diesel_config(&url, &b)).await.unwrap();
    let (ca, cb) = (catalog(&url, &a).await, catalog(&url, &b).await);
    assert!(ca.len() > 40, "the catalog query sees the schema: {ca:?}");
    let only_a: Vec<_> = ca.iter().filter(|l| !cb.contains(l)).collect();
    let only_b: Vec<_> = cb.iter().filter(|l| !ca.contains(l)).collect();
    assert!(only_a.is_empty() && only_b.is_empty(), "sqlx only: {only_a:#?}\ndiesel only: {only_b:#?}");
    by_sqlx.drop_namespace().await.unwrap();
    by_diesel.drop_namespace().await.unwrap();
}

/// Postgres' name (`format_type`) and nullability of a diesel SQL type.
trait PgType {
    const NAME: &'static str;
    const NULLABLE: bool = false;
}
macro_rules! pg_type {
    ($($t:ty => $name:literal),* $(,)?) => { $(impl PgType for $t { const NAME: &'static str = $name; })* };
}
use diesel::sql_types::{
    Array, BigInt, Binary, Bool, Inet, Integer, Interval, Jsonb, Nullable, Text, Timestamptz, Uuid,
};
pg_type!(BigInt => "bigint", Integer => "integer", Text => "text", Uuid => "uuid", Bool => "boolean", Jsonb => "jsonb",
    Timestamptz => "timestamp with time zone", Inet => "inet", Binary => "bytea", Array<Nullable<Text>> => "text[]",
    Interval => "interval");
impl<T: PgType + diesel::sql_types::SqlType> PgType for Nullable<T> {
    const NAME: &'static str = T::NAME;
    const NULLABLE: bool = true;
}

/// The (name, nullable) of every column type of a `table!`'s `all_columns`.
trait PgTypes {
    fn pg_types() -> Vec<(&'static str, bool)>;
}
macro_rules! pg_types {
    ($($t:ident),+) => {
        impl<$($t: PgType),+> PgTypes for ($($t,)+) {
            fn pg_types() -> Vec<(&'static str, bool)> { vec![$(($t::NAME, $t::NULLABLE)),+] }
        }
    };
}
pg_types!(A, B);
pg_types!(A, B, C);
pg_types!(A, B, C, D);
pg_types!(A, B, C, D, E);
pg_types!(A, B, C, D, E, F);
pg_types!(A, B, C, D, E, F, G, H, I, J, K, L);
pg_types!(A, B, C, D, E, F, G, H, I, J, K, L, M);

/// `table`'s columns as `schema` declares them: `column <table>.<name> <type> <null|not null>`.
fn declared<T>(table: T) -> Vec<String>
where
    T: diesel::Table + diesel::query_dsl::methods::SelectDsl<T::AllColumns>,
    T::AllColumns: diesel::Expression,
    <T::AllColumns as diesel::Expression>::SqlType: PgTypes,
    diesel::dsl::Select<T, T::AllColumns>: diesel::query_builder::QueryFragment<diesel::pg::Pg>,
{
    let query = diesel::query_dsl::methods::SelectDsl::select(table, T::all_columns());
    // `SELECT "t"."a", "t"."b" FROM "t" -- binds: []`
    let sql = format!("{}", diesel::debug_query::<diesel::pg::Pg, _>(&query));
    let (select, from) = sql.split_once(" FROM ").unwrap_or_default();
    let name = from.split('"').nth(1).unwrap_or_default().to_owned();
    let columns: Vec<&str> = select.split(", ").map(|c| c.rsplit('"').nth(1).unwrap_or_default()).collect();
    let types = <<T::AllColumns as diesel::Expression>::SqlType as PgTypes>::pg_types();
    assert_eq!(columns.len(), types.len(), "{sql}");
    columns
        .iter()
        .zip(types)
        .map(|(c, (ty, null))| format!("column {name}.{c} {ty} {}", if null { "null" } else { "not null" }))
        .collect()
}

#[tokio::test]
async fn the_schema_module_matches_the_live_catalog() {
    use palisade_pg_diesel::schema::*;
    let Some(url) = url() else { return };
    let ns = Namespace::random("pgd").unwrap();
    let backend = PgDieselBackend::connect(&diesel_config(&url, &ns)).await.unwrap();
    let live: Vec<String> = catalog(&url, &ns)
        .await
        .into_iter()
        .filter(|l| l.starts_with("column "))
        // The partitions of `events` (archive, default, one per interval) are
        // reached through `events`; schema.rs declares the parent only.
        .filter(|l| !l.starts_with("column events_"))
        .map(|l| l.split(" default ").next().unwrap_or_default().to_owned())
        .collect();
    let mut declared: Vec<String> = [
        declared(events::table),
        declared(event_head::table),
        declared(event_streams::table),
        declared(event_ids::table),
        declared(event_partitions::table),
        declared(event_consumers::table),
        declared(sessions::table),
        declared(collections::table),
        declared(documents::table),
        declared(reputation_events::table),
        declared(reputation_scores::table),
        declared(palisade_migrations::table),
    ]
    .concat();
    declared.sort();
    let missing: Vec<_> = declared.iter().filter(|c| !live.contains(c)).collect();
    let undeclared: Vec<_> = live.iter().filter(|c| !declared.contains(c)).collect();
    assert!(missing.is_empty(), "declared but not live: {missing:#?}\nlive: {live:#?}");
    assert!(undeclared.is_empty(), "live tables' columns missing from schema.rs: {undeclared:#?}");
    backend.drop_namespace().await.unwrap();
}

#[tokio::test]
async fn the_schema_module_reads_the_tables() {
    use palisade_pg_diesel::schema::{events, palisade_migrations};
    let Some(url) = url() else { return };
    let ns = Namespace::random("pgd").unwrap();
    let backend = PgDieselBackend::connect(&diesel_config(&url, &ns)).await.unwrap();
    let mut conn = backend.connection().await.unwrap();
    let versions: Vec<i64> = palisade_migrations::table
        .select(palisade_migrations::version)
        .filter(palisade_migrations::success.eq(true))
        .order(palisade_migrations::version)
        .load(&mut *conn)
        .await
        .unwrap();
    assert_eq!(versions, MIGRATIONS.iter().map(|m| m.version).collect::<Vec<_>>());
    let n: i64 = events::table.count().get_result(&mut *conn).await.unwrap();
    assert_eq!(n, 0);
    drop(conn);
    backend.drop_namespace().await.unwrap();
}
