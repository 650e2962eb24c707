//! pg-sqlx's own document-store proofs: declared indexes are Postgres
//! indexes that filters use (`PgDocumentStore::explain`), and namespaces
//! migrated before document partitions keep their documents. What holds for
//! both Postgres backends (random filters against the reference, uniqueness
//! under concurrency, expiry freeing unique values, DDL waiting for readers)
//! is proved for both in `crates/pg-diesel/tests/documents.rs`.
//! Needs `PALISADE_TEST_POSTGRES_URL`; skipped with a notice without it,
//! unless `PALISADE_REQUIRE` names `postgres`.

mod common;

use std::future::Future;

use palisade_conformance::server_url;
use palisade_core::documents::{CollectionSpec, Filter, FindOptions, IndexSpec, SortKey};
use palisade_core::{DocumentStore, ErrorDetail, ErrorKind, Namespace};
use palisade_pg_common::migrations::runner::{self, Runner};
use palisade_pg_common::migrations::MIGRATIONS;
use palisade_pg_sqlx::{PgBackend, PgConfig};
use serde_json::{json, Value};
use sqlx::{Connection, Executor, PgConnection};

fn unique_violation<T: std::fmt::Debug>(r: palisade_core::Result<T>) -> String {
    let e = r.expect_err("expected a unique violation");
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    match e.detail() {
        Some(ErrorDetail::UniqueViolation { index }) => index.clone(),
        other => panic!("expected UniqueViolation, got {other:?}: {e:?}"),
    }
}

/// Connects to a fresh namespace (migrated unless `migrate` is false), runs
/// `case` with the backend, drops the namespace.
async fn with_backend<F, Fut>(migrate: bool, case: F)
where
    F: FnOnce(PgBackend) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(url) = server_url("postgres", "PALISADE_TEST_POSTGRES_URL") else { return };
    let config = PgConfig::new(url, Namespace::random("pgdocs").unwrap());
    let backend = if migrate {
        PgBackend::connect(&config).await.expect("postgres is reachable")
    } else {
        PgBackend::connect_without_migrating(&config).await.expect("postgres is reachable")
    };
    let outcome = tokio::spawn(case(backend.clone())).await;
    backend.drop_namespace().await.unwrap();
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// Declared indexes exist in Postgres (a btree per index, an exclusion
/// constraint per unique one, on the collection's own partition), range and
/// equality filters on indexed fields use them, and dropping the collection
/// drops them.
#[tokio::test]
async fn declared_indexes_are_postgres_indexes_that_filters_use() {
    with_backend(true, |backend| async move {
        let store = backend.documents();
        let spec = CollectionSpec::new("alerts")
            .with_index(IndexSpec::on(vec![SortKey::desc("seen").unwrap()]))
            .with_index(IndexSpec::unique(vec![SortKey::asc("ip").unwrap(), SortKey::asc("port").unwrap()]))
            .with_index(IndexSpec::on(vec![SortKey::asc("meta.score").unwrap()]));
        store.ensure_collection(spec).await.unwrap();
        let docs: Vec<Value> = (0..4000)
            .map(|i| {
                json!({
                    "seen": format!("2026-11-{:02}T{:02}:00:00Z", 1 + i % 28, i % 24),
                    "ip": format!("10.0.{}.{}", i / 256, i % 256), "port": 443,
                    "meta": {"score": i},
                })
            })
            .collect();
        store.insert_many("alerts", docs).await.unwrap();
        let ns = backend.namespace().as_str().to_owned();
        let pool = backend.pool();
        sqlx::query("ANALYZE documents").execute(pool).await.unwrap();

        let btrees: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_indexes WHERE schemaname = $1 AND indexdef LIKE '%palisade_doc_sort_key%'",
        )
        .bind(&ns)
        .fetch_one(pool)
        .await
        .unwrap();
        assert_eq!(btrees, 3, "one btree expression index per declared index");
        let exclusions: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace \
             WHERE n.nspname = $1 AND c.contype = 'x'",
        )
        .bind(&ns)
        .fetch_one(pool)
        .await
        .unwrap();
        assert_eq!(exclusions, 1, "one exclusion constraint per unique index");

        // Index expressions work from any search_path (ANALYZE, REINDEX,
        // autovacuum and restores do not use the namespace's).
        let url = std::env::var("PALISADE_TEST_POSTGRES_URL").unwrap();
        let mut plain = PgConnection::connect(&url).await.unwrap();
        plain.execute("SET search_path TO public").await.unwrap();
        for sql in [
            format!("ANALYZE \"{ns}\".documents"),
            format!("REINDEX SCHEMA \"{ns}\""),
            format!(
                "INSERT INTO \"{ns}\".documents (collection, id, body, version) \
                 VALUES ('alerts', 'raw', '{{\"_id\": \"raw\", \"_version\": 1, \"ip\": \"10.9.9.9\", \"port\": 1, \"meta\": {{\"score\": -1}}}}', 1)"
            ),
        ] {
            plain.execute(sql.as_str()).await.unwrap();
        }
        plain.close().await.unwrap();
        let raw = Filter::parse(&json!({"meta.score": {"$lt": 0}})).unwrap();
        assert_eq!(store.count("alerts", raw).await.unwrap(), 1);

        let uses = |filter: Value| {
            let store = store.clone();
            async move {
                let plan = store.explain("alerts", &FindOptions::new(Filter::parse(&filter).unwrap())).await.unwrap();
                common::index_names(&plan)
            }
        };
        let names = uses(json!({"seen": {"$gte": "2026-11-28T20:00:00Z"}})).await;
        assert!(names.iter().any(|n| n.ends_with("_index_0")), "seen range uses index 0: {names:?}");
        let names = uses(json!({"meta.score": {"$lt": 10}})).await;
        assert!(names.iter().any(|n| n.ends_with("_index_2")), "nested score range uses index 2: {names:?}");
        let names = uses(json!({"meta.score": {"$in": [7, 3000]}})).await;
        assert!(names.iter().any(|n| n.ends_with("_index_2")), "$in uses index 2: {names:?}");
        let names = uses(json!({"port": {"$gt": 100}})).await;
        assert!(names.is_empty(), "port leads no index: {names:?}");
        let found = store
            .find("alerts", FindOptions::new(Filter::parse(&json!({"meta.score": {"$lt": 10}})).unwrap()))
            .await
            .unwrap();
        assert_eq!(found.len(), 11, "ten generated, one inserted raw");

        assert!(store.drop_collection("alerts").await.unwrap());
        let left: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname LIKE 'documents\\_%' AND c.relkind IN ('r', 'i')",
        )
        .bind(&ns)
        .fetch_one(pool)
        .await
        .unwrap();
        assert_eq!(left, 0, "the collection's partition and its indexes are gone");
        let e = store.explain("alerts", &FindOptions::new(Filter::all())).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
    })
    .await;
}

/// A namespace migrated before document partitions (0005) keeps its
/// collections and live documents through the upgrade, and their unique
/// indexes hold afterwards.
#[tokio::test]
async fn upgrading_from_unpartitioned_documents_keeps_them() {
    with_backend(false, |backend| async move {
        // Migrations 1-5 only, recorded as the runner records them.
        let plan = Runner::new(backend.namespace());
        backend.pool().execute(plan.ddl().as_str()).await.unwrap();
        for m in MIGRATIONS.iter().filter(|m| m.version <= 5) {
            backend.pool().execute(m.sql).await.unwrap();
            sqlx::query(&plan.insert())
                .bind(m.version)
                .bind(m.description)
                .bind(runner::checksum(m))
                .execute(backend.pool())
                .await
                .unwrap();
        }
        let spec = json!({"schema": null, "ttl": null, "indexes": [
            {"fields": [{"path": ["ip"], "order": "asc"}], "unique": true}]});
        sqlx::query("INSERT INTO collections (name, spec) VALUES ('hosts', $1), ('empty', $2)")
            .bind(&spec)
            .bind(json!({"schema": null, "ttl": null, "indexes": []}))
            .execute(backend.pool())
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO documents (collection, id, body, version, expires_at) VALUES \
             ('hosts', 'h1', '{\"_id\": \"h1\", \"_version\": 1, \"ip\": \"10.0.0.1\"}', 1, NULL), \
             ('hosts', 'h2', '{\"_id\": \"h2\", \"_version\": 3, \"ip\": \"10.0.0.2\"}', 3, NULL), \
             ('hosts', 'gone', '{\"_id\": \"gone\", \"_version\": 1, \"ip\": \"10.0.0.3\"}', 1, now() - interval '1 hour')",
        )
        .execute(backend.pool())
        .await
        .unwrap();

        backend.migrate().await.unwrap();
        let store = backend.documents();
        assert_eq!(store.count("hosts", Filter::all()).await.unwrap(), 2);
        assert_eq!(store.get("hosts", "h2").await.unwrap().unwrap()["_version"], json!(3));
        unique_violation(store.insert("hosts", json!({"_id": "h3", "ip": "10.0.0.1"})).await);
        store.insert("hosts", json!({"_id": "h3", "ip": "10.0.0.3"})).await.expect("the expired value was not moved");
        assert_eq!(store.count("empty", Filter::all()).await.unwrap(), 0);
        let unchanged = CollectionSpec::new("hosts").with_index(IndexSpec::unique(vec![SortKey::asc("ip").unwrap()]));
        assert!(!store.ensure_collection(unchanged).await.unwrap(), "the stored spec is unchanged");
        assert!(store.drop_collection("hosts").await.unwrap());
    })
    .await;
}
