//! `append_in` (the transactional outbox) on both Postgres backends: events
//! appended inside the caller's own transaction, on the caller's own
//! connection (default `search_path`, not the namespace), commit or roll
//! back with the caller's writes, stay gap-safe and idempotent.
//! Needs `PALISADE_TEST_POSTGRES_URL`; skipped with a notice without it,
//! unless `PALISADE_REQUIRE` names `postgres`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use diesel_async::{AnsiTransactionManager, AsyncConnection, AsyncPgConnection, RunQueryDsl, TransactionManager};
use futures::StreamExt;
use palisade_core::consumers::{Consumer, ConsumerOptions};
use palisade_core::events::{
    AppendBatch, AppendOutcome, Cursor, EventFilter, ExpectedVersion, NewEvent, SubscriptionItem,
};
use palisade_core::{ErrorKind, EventStore, Namespace, Result};
use palisade_pg_diesel::{PgDieselBackend, PgDieselConfig, PgDieselEventStore};
use palisade_pg_sqlx::{PgBackend, PgConfig, PgEventStore};
use serde_json::json;
use sqlx::{Postgres, Transaction};

use common::{url, DRIVERS};

/// The caller's side: its own connection (default `search_path`) and an
/// open transaction, through either driver. (One per case: its size does not matter.)
#[allow(clippy::large_enum_variant)]
enum Caller {
    Sqlx { store: PgEventStore, tx: Option<Transaction<'static, Postgres>>, pool: sqlx::PgPool },
    Diesel { store: PgDieselEventStore, conn: Box<AsyncPgConnection> },
}

impl Caller {
    async fn open(driver: &str, url: &str, ns: &Namespace) -> (Caller, Arc<dyn EventStore>) {
        match driver {
            "pg_sqlx" => {
                let backend = PgBackend::connect(&PgConfig::new(url, ns.clone())).await.expect("pg-sqlx connects");
                let pool =
                    sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(url).await.expect("caller pool");
                let shared: Arc<dyn EventStore> = Arc::new(backend.events());
                (Caller::Sqlx { store: backend.events(), tx: None, pool }, shared)
            }
            _ => {
                let config = PgDieselConfig::new(url, ns.clone());
                let backend = PgDieselBackend::connect(&config).await.expect("pg-diesel connects");
                let conn = AsyncPgConnection::establish(url).await.expect("caller connection");
                let shared: Arc<dyn EventStore> = Arc::new(backend.events());
                (Caller::Diesel { store: backend.events(), conn: Box::new(conn) }, shared)
            }
        }
    }

    async fn begin(&mut self) {
        match self {
            Caller::Sqlx { tx, pool, .. } => *tx = Some(pool.begin().await.expect("begin")),
            Caller::Diesel { conn, .. } => AnsiTransactionManager::begin_transaction(&mut **conn).await.expect("begin"),
        }
    }

    /// A statement of the caller's own (its business data).
    async fn exec(&mut self, sql: &str) {
        match self {
            Caller::Sqlx { tx, .. } => {
                sqlx::query(sql).execute(&mut **tx.as_mut().expect("in a transaction")).await.expect("caller write");
            }
            Caller::Diesel { conn, .. } => {
                diesel::sql_query(sql).execute(&mut **conn).await.expect("caller write");
            }
        }
    }

    async fn append_in(&mut self, batch: AppendBatch) -> Result<AppendOutcome> {
        match self {
            Caller::Sqlx { store, tx, pool } => match tx.as_mut() {
                Some(tx) => store.append_in(tx, batch).await,
                None => store.append_in(&mut pool.acquire().await.expect("connection"), batch).await,
            },
            Caller::Diesel { store, conn } => store.append_in(conn, batch).await,
        }
    }

    async fn commit(&mut self) {
        match self {
            Caller::Sqlx { tx, .. } => tx.take().expect("open").commit().await.expect("commit"),
            Caller::Diesel { conn, .. } => {
                AnsiTransactionManager::commit_transaction(&mut **conn).await.expect("commit")
            }
        }
    }

    async fn rollback(&mut self) {
        match self {
            Caller::Sqlx { tx, .. } => tx.take().expect("open").rollback().await.expect("rollback"),
            Caller::Diesel { conn, .. } => {
                AnsiTransactionManager::rollback_transaction(&mut **conn).await.expect("rollback")
            }
        }
    }

    /// The caller connection's `search_path` (outside any transaction).
    async fn search_path(&mut self) -> String {
        #[derive(diesel::QueryableByName)]
        struct Path {
            #[diesel(sql_type = diesel::sql_types::Text)]
            search_path: String,
        }
        match self {
            Caller::Sqlx { tx: Some(tx), .. } => {
                sqlx::query_scalar("SHOW search_path").fetch_one(&mut **tx).await.expect("show")
            }
            Caller::Sqlx { pool, .. } => sqlx::query_scalar("SHOW search_path").fetch_one(&*pool).await.expect("show"),
            Caller::Diesel { conn, .. } => {
                diesel::sql_query("SHOW search_path").get_result::<Path>(&mut **conn).await.expect("show").search_path
            }
        }
    }
}

fn ev(n: usize) -> NewEvent {
    NewEvent::new("orders", "order_placed").with_data(json!({ "n": n }))
}

/// Runs `case` on both drivers, each in a fresh namespace holding the
/// caller's own `orders` table (dropped afterwards, also on panic).
async fn on_both<F, Fut>(case: F)
where
    F: Fn(&'static str, Caller, Arc<dyn EventStore>, String) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let Some(url) = url() else { return };
    for driver in DRIVERS {
        let ns = Namespace::random("outbox").unwrap();
        let (caller, store) = Caller::open(driver, &url, &ns).await;
        let raw = common::raw(&url, &ns).await;
        sqlx::query("CREATE TABLE orders (id int PRIMARY KEY)").execute(&raw).await.unwrap();
        let orders = format!("{}.orders", ns.as_str());
        let outcome = tokio::spawn(case(driver, caller, store, orders)).await;
        let config = PgConfig::new(url.clone(), ns.clone());
        PgBackend::connect_without_migrating(&config).await.unwrap().drop_namespace().await.unwrap();
        if let Err(e) = outcome {
            eprintln!("failed on {driver}");
            std::panic::resume_unwind(e.into_panic());
        }
    }
}

async fn count(caller: &mut Caller, table: &str) -> i64 {
    match caller {
        Caller::Sqlx { pool, .. } => {
            sqlx::query_scalar(&format!("SELECT count(*) FROM {table}")).fetch_one(&*pool).await.unwrap()
        }
        Caller::Diesel { conn, .. } => {
            #[derive(diesel::QueryableByName)]
            struct N {
                #[diesel(sql_type = diesel::sql_types::BigInt)]
                n: i64,
            }
            diesel::sql_query(format!("SELECT count(*) AS n FROM {table}"))
                .get_result::<N>(&mut **conn)
                .await
                .unwrap()
                .n
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_leaves_no_event_and_no_business_row() {
    on_both(|_, mut caller, store, orders| async move {
        caller.begin().await;
        caller.exec(&format!("INSERT INTO {orders} VALUES (1)")).await;
        let outcome = caller.append_in(AppendBatch::new(vec![ev(1), ev(2)])).await.expect("append_in");
        assert_eq!(outcome.appended(), 2);
        caller.rollback().await;
        assert_eq!(count(&mut caller, &orders).await, 0);
        assert!(store.read(Cursor::Start, 10).await.unwrap().is_empty(), "a rolled-back append left events");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_is_visible_to_read_subscribe_and_consumers_in_order() {
    on_both(|_, mut caller, store, orders| async move {
        let mut tail = store.subscribe(Cursor::Start, EventFilter::all()).await.unwrap();
        assert_eq!(tail.next().await.unwrap().unwrap(), SubscriptionItem::CaughtUp);
        let mut consumer =
            Consumer::start(Arc::clone(&store), "projection", EventFilter::all(), ConsumerOptions::default())
                .await
                .unwrap();
        caller.begin().await;
        caller.exec(&format!("INSERT INTO {orders} VALUES (7)")).await;
        let batch = vec![ev(1), ev(2), ev(3)];
        let ids: Vec<_> = batch.iter().map(|e| e.id).collect();
        caller.append_in(AppendBatch::new(batch)).await.expect("append_in");
        caller.commit().await;
        assert_eq!(count(&mut caller, &orders).await, 1);
        let read: Vec<_> = store.read(Cursor::Start, 10).await.unwrap().into_iter().map(|e| e.id).collect();
        assert_eq!(read, ids, "read after commit");
        for want in &ids {
            let item =
                tokio::time::timeout(Duration::from_secs(10), tail.next()).await.expect("live").unwrap().unwrap();
            match item {
                SubscriptionItem::Event(e) => assert_eq!(e.id, *want, "subscribe order"),
                other => panic!("expected an event, got {other:?}"),
            }
        }
        let mut seen = Vec::new();
        while seen.len() < 3 {
            match tokio::time::timeout(Duration::from_secs(10), consumer.next()).await.expect("consumer").unwrap() {
                Ok(SubscriptionItem::Event(e)) => seen.push(e.id),
                Ok(SubscriptionItem::CaughtUp) => {}
                Err(e) => panic!("consumer: {e}"),
            }
        }
        assert_eq!(seen, ids, "consumer order");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_open_caller_transaction_delays_readers_but_never_reorders() {
    on_both(|_, mut caller, store, _| async move {
        caller.begin().await;
        let first = ev(1);
        let early = caller.append_in(AppendBatch::new(vec![first.clone()])).await.expect("append_in").events[0];
        // A pooled append commits while the caller's transaction is still open.
        let later = store.append(AppendBatch::new(vec![ev(2)])).await.unwrap().events[0];
        assert!(later.position > early.position, "the caller's transaction started first");
        let notes = store.notes().await.unwrap();
        assert!(notes.iter().any(|n| n.contains("held back")), "the held-back note names the wait: {notes:?}");
        let reader = {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.read(Cursor::Start, 10).await })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        caller.commit().await;
        let got: Vec<_> = reader.await.unwrap().unwrap().into_iter().map(|e| e.position).collect();
        assert_eq!(got, vec![early.position, later.position], "the reader waited and saw both, in order");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_by_id_against_pooled_appends() {
    on_both(|_, mut caller, store, _| async move {
        let (a, b) = (ev(1), ev(2));
        let stored = store.append(AppendBatch::new(vec![a.clone()])).await.unwrap().events[0];
        caller.begin().await;
        let outcome = caller.append_in(AppendBatch::new(vec![a.clone(), b.clone()])).await.expect("append_in");
        assert!(outcome.events[0].duplicate && outcome.events[0].position == stored.position);
        assert!(!outcome.events[1].duplicate);
        // Retried inside the same transaction: both are duplicates now.
        let again = caller.append_in(AppendBatch::new(vec![a, b])).await.expect("retry");
        assert_eq!(again.duplicates(), 2);
        caller.commit().await;
        assert_eq!(store.read(Cursor::Start, 10).await.unwrap().len(), 2);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_appends_in_one_transaction_keep_their_order() {
    on_both(|_, mut caller, store, orders| async move {
        caller.begin().await;
        let mut ids = Vec::new();
        for n in 0..3 {
            caller.exec(&format!("INSERT INTO {orders} VALUES ({n})")).await;
            let batch = vec![ev(n * 2), ev(n * 2 + 1).with_stream("orders")];
            ids.extend(batch.iter().map(|e| e.id));
            let outcome = caller.append_in(AppendBatch::new(batch)).await.expect("append_in");
            assert_eq!(outcome.appended(), 2, "call {n}");
        }
        caller.commit().await;
        let read = store.read(Cursor::Start, 10).await.unwrap();
        assert_eq!(read.iter().map(|e| e.id).collect::<Vec<_>>(), ids, "one transaction's appends, in call order");
        let versions: Vec<_> = read.iter().filter_map(|e| e.version).collect();
        assert_eq!(versions, vec![1, 2, 3]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_conflict_changes_nothing_and_keeps_the_callers_transaction() {
    on_both(|_, mut caller, store, orders| async move {
        store.append(AppendBatch::new(vec![ev(0).with_stream("order-9")])).await.unwrap();
        caller.begin().await;
        caller.exec(&format!("INSERT INTO {orders} VALUES (1)")).await;
        let clash = AppendBatch::new(vec![ev(1).with_stream("order-9")]).expect("order-9", ExpectedVersion::NoStream);
        let e = caller.append_in(clash).await.expect_err("version conflict");
        assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
        caller.exec(&format!("INSERT INTO {orders} VALUES (2)")).await;
        let next = AppendBatch::new(vec![ev(2).with_stream("order-9")]).expect("order-9", ExpectedVersion::Exact(1));
        assert_eq!(caller.append_in(next).await.expect("right version").events[0].version, Some(2));
        caller.commit().await;
        assert_eq!(count(&mut caller, &orders).await, 2, "the caller's writes survived the conflict");
        assert_eq!(store.read(Cursor::Start, 10).await.unwrap().len(), 2);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_from_any_search_path_and_leaves_it_unchanged() {
    on_both(|driver, mut caller, store, _| async move {
        let before = caller.search_path().await;
        assert!(before.contains("public"), "{driver}: the caller's connection has the default path: {before}");
        caller.begin().await;
        caller.append_in(AppendBatch::new(vec![ev(1)])).await.expect("append_in from the default path");
        assert_eq!(caller.search_path().await, before, "inside the transaction");
        caller.commit().await;
        assert_eq!(caller.search_path().await, before, "after commit");
        assert_eq!(store.read(Cursor::Start, 10).await.unwrap().len(), 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_outside_a_transaction_is_refused_before_any_io() {
    on_both(|_, mut caller, store, _| async move {
        let e = caller.append_in(AppendBatch::new(vec![ev(1)])).await.expect_err("no transaction");
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
        caller.begin().await;
        let bad = caller.append_in(AppendBatch::new(vec![])).await.expect_err("empty batch");
        assert_eq!(bad.kind(), ErrorKind::InvalidInput);
        caller.commit().await;
        assert!(store.read(Cursor::Start, 10).await.unwrap().is_empty());
    })
    .await;
}

/// sqlx: a transaction opened with a raw `BEGIN` (which sqlx does not track)
/// is refused, since a savepoint and its release cannot be placed in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlx_refuses_a_transaction_it_did_not_open() {
    let Some(url) = url() else { return };
    let ns = Namespace::random("outbox").unwrap();
    let backend = PgBackend::connect(&PgConfig::new(url.clone(), ns)).await.unwrap();
    let store = backend.events();
    let mut conn = backend.pool().acquire().await.unwrap();
    sqlx::query("BEGIN").execute(&mut *conn).await.unwrap();
    let e = store.append_in(&mut conn, AppendBatch::new(vec![ev(1)])).await.expect_err("raw BEGIN");
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    sqlx::query("ROLLBACK").execute(&mut *conn).await.unwrap();
    drop(conn);
    assert!(store.read(Cursor::Start, 10).await.unwrap().is_empty());
    backend.drop_namespace().await.unwrap();
}
