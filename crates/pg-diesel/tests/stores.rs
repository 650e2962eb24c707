//! pg-diesel's stores against a live Postgres (`PALISADE_TEST_POSTGRES_URL`;
//! skipped with a notice without it, failed when `PALISADE_REQUIRE` names
//! postgres), beyond the conformance suite: data written by either Postgres
//! backend is read by the other; a live tail outlives its killed listener; a
//! cancelled transaction never reaches a later caller; no acknowledged event
//! is lost when the server crashes under `Degradable`.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use palisade_conformance::pg_server::PgServer;
use palisade_conformance::{restart, server_url};
use palisade_core::backend::Backend;
use palisade_core::documents::{CollectionSpec, Filter, FindOptions, IndexSpec, SortKey, UpdateOps};
use palisade_core::events::{AppendBatch, Cursor, EventFilter, EventSubscription, GroupBy, NewEvent, SubscriptionItem};
use palisade_core::reputation::{Period, ReputationEvent, Subject, SubjectKind};
use palisade_core::sessions::SetMode;
use palisade_core::time::TimeRange;
use palisade_core::{DocumentStore, EventStore, Namespace};
use palisade_memory::{MemoryConfig, MemoryStores};
use palisade_pg_diesel::{PgDieselBackend, PgDieselConfig};
use palisade_pg_sqlx::{PgBackend, PgConfig};
use serde_json::json;

fn url() -> Option<String> {
    server_url("postgres", "PALISADE_TEST_POSTGRES_URL")
}

async fn diesel(url: &str, ns: &Namespace, pool: u32) -> PgDieselBackend {
    PgDieselBackend::connect(&PgDieselConfig::new(url, ns.clone()).with_pool_size(pool)).await.expect("pg-diesel")
}

async fn sqlx(url: &str, ns: &Namespace) -> PgBackend {
    PgBackend::connect(&PgConfig::new(url, ns.clone()).with_pool_size(2)).await.expect("pg-sqlx connects")
}

/// Writes one of everything (hostile bytes included) through `b`.
async fn write_everything(b: &dyn Backend) {
    let events = b.events().unwrap();
    let batch = AppendBatch::new(vec![
        NewEvent::new("waf", "blocked")
            .with_stream("s-1")
            .with_session("sess-1")
            .with_client_ip("10.0.0.7".parse().unwrap())
            .with_tag("sqli")
            .with_data(json!({"payload": "' OR 1=1 --\u{0}", "deep": [[[1]]]})),
        NewEvent::new("waf", "allowed").with_stream("s-1"),
    ]);
    events.append(batch).await.unwrap();
    let sessions = b.sessions().unwrap();
    sessions.set("k\u{0}ey", json!({"user": "ünï\u{0}"}), None, SetMode::Always).await.unwrap();
    sessions.push("hist", json!(1), 10, None).await.unwrap();
    sessions.push("hist", json!(2), 10, None).await.unwrap();
    sessions.incr("n", 41, None).await.unwrap();
    let docs = b.documents().unwrap();
    let spec = CollectionSpec::new("iocs").with_index(IndexSpec::unique(vec![SortKey::asc("sha").unwrap()]));
    docs.ensure_collection(spec).await.unwrap();
    docs.insert("iocs", json!({"_id": "a", "sha": "00ff", "score": 7, "note": "x\u{0}y"})).await.unwrap();
    docs.insert("iocs", json!({"_id": "b", "sha": "11ee", "score": 3})).await.unwrap();
    let rep = b.reputation().unwrap();
    rep.record(ReputationEvent::new(Subject::user("mallory"), -50, "sqli")).await.unwrap();
    rep.record(ReputationEvent::new(Subject::user("alice"), 10, "ok")).await.unwrap();
}

/// Reads back what [`write_everything`] wrote, through `b`, and changes it
/// (so the writer's own structures are used by the reader too).
async fn read_everything(b: &dyn Backend) {
    let events = b.events().unwrap();
    let all = events.read(Cursor::Start, 10).await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].data["payload"], json!("' OR 1=1 --\u{0}"), "U+0000 round-trips across drivers");
    assert_eq!(all[0].session_id.as_deref(), Some("sess-1"));
    assert_eq!((all[0].version, all[1].version), (Some(1), Some(2)));
    let by_tag = events.count_by(EventFilter::all().tag("sqli"), GroupBy::ClientIp, 5).await.unwrap();
    assert_eq!(by_tag[0].key, "10.0.0.7");
    let next = events.append(AppendBatch::new(vec![NewEvent::new("waf", "third")])).await.unwrap();
    assert!(next.events[0].position > all[1].position, "ordered across drivers");

    let sessions = b.sessions().unwrap();
    assert_eq!(sessions.get("k\u{0}ey").await.unwrap(), Some(json!({"user": "ünï\u{0}"})));
    assert_eq!(sessions.range("hist", 10).await.unwrap(), vec![json!(2), json!(1)]);
    assert_eq!(sessions.incr("n", 1, None).await.unwrap(), 42);

    let docs = b.documents().unwrap();
    let found = docs.find("iocs", FindOptions::new(Filter::all()).sort(SortKey::desc("score").unwrap())).await.unwrap();
    let ids: Vec<_> = found.iter().map(|d| d["_id"].clone()).collect();
    assert_eq!(ids, vec![json!("a"), json!("b")]);
    assert_eq!(found[0]["note"], json!("x\u{0}y"));
    let clash = docs.insert("iocs", json!({"_id": "c", "sha": "00ff"})).await.unwrap_err();
    assert_eq!(clash.kind(), palisade_core::ErrorKind::Conflict, "the other driver's unique index holds: {clash}");
    let ops = UpdateOps::parse(&json!({"$inc": {"score": 1}})).unwrap();
    let updated = docs.update("iocs", Filter::parse(&json!({"_id": "b"})).unwrap(), ops).await.unwrap();
    assert_eq!(updated.modified, 1);

    let rep = b.reputation().unwrap();
    assert_eq!(rep.score(&Subject::user("mallory")).await.unwrap(), -50);
    let board = rep.leaderboard(SubjectKind::User, Period::AllTime, 0, 10).await.unwrap();
    assert_eq!(board.iter().map(|r| r.subject.id.as_str()).collect::<Vec<_>>(), ["alice", "mallory"]);
    let history = rep.history(&Subject::user("alice"), TimeRange::all(), 10).await.unwrap();
    assert_eq!(history.len(), 1);
}

#[tokio::test]
async fn data_written_by_either_postgres_backend_is_served_by_the_other() {
    let Some(url) = url() else { return };
    let ns = Namespace::random("pgd").unwrap();
    let (by_sqlx, by_diesel) = (sqlx(&url, &ns).await, diesel(&url, &ns, 2).await);
    write_everything(&by_sqlx).await;
    read_everything(&by_diesel).await;
    by_sqlx.drop_namespace().await.unwrap();

    let ns = Namespace::random("pgd").unwrap();
    let (by_diesel, by_sqlx) = (diesel(&url, &ns, 2).await, sqlx(&url, &ns).await);
    write_everything(&by_diesel).await;
    read_everything(&by_sqlx).await;
    by_diesel.drop_namespace().await.unwrap();
}

async fn next(tail: &mut EventSubscription) -> SubscriptionItem {
    tokio::time::timeout(Duration::from_secs(10), tail.next())
        .await
        .expect("tail delivers")
        .expect("stream open")
        .expect("no error")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_tail_outlives_its_killed_listener() {
    let Some(url) = url() else { return };
    let ns = Namespace::random("pgd").unwrap();
    let b = diesel(&url, &ns, 2).await;
    let observer = sqlx::PgPool::connect(&url).await.unwrap();
    let store = b.events();
    let mut tail = store.subscribe(Cursor::Start, EventFilter::all()).await.unwrap();
    assert_eq!(next(&mut tail).await, SubscriptionItem::CaughtUp);
    for round in 0..2 {
        // Drive the idle tail so it (re-)listens.
        let idle = tokio::time::timeout(Duration::from_millis(1200), tail.next()).await;
        assert!(idle.is_err(), "nothing new: {idle:?}");
        let killed: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'LISTEN %' AND query LIKE '%' || $1 || '%'",
        )
        .bind(ns.as_str())
        .fetch_all(&observer)
        .await
        .unwrap();
        assert_eq!(killed, vec![true], "round {round}: the tail's one LISTEN connection was found and killed");
        let event = NewEvent::new("t", "tick").with_data(json!({"n": round}));
        store.append(AppendBatch::new(vec![event])).await.unwrap();
        match next(&mut tail).await {
            SubscriptionItem::Event(e) => assert_eq!(e.data["n"], round),
            other => panic!("expected an event, got {other:?}"),
        }
    }
    drop(tail);
    b.drop_namespace().await.unwrap();
}

/// A write cancelled while its transaction is open (waiting for a row lock)
/// never commits, releases its locks at once — its connection is closed, not
/// parked in the pool with the transaction open — and never reaches the next
/// caller (diesel-async issue #198).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_write_leaves_no_open_transaction_behind() {
    let Some(url) = url() else { return };
    let ns = Namespace::random("pgd").unwrap();
    // Two pooled connections: the cancelled one is not the next one handed out.
    let b = diesel(&url, &ns, 2).await;
    let docs = b.documents();
    docs.ensure_collection(CollectionSpec::new("c")).await.unwrap();
    docs.insert("c", json!({"_id": "a", "n": 1})).await.unwrap();

    let observer = sqlx::PgPool::connect(&url).await.unwrap();
    let lock_row = format!("SELECT 1 FROM {}.documents WHERE id = 'a' FOR UPDATE", ns.as_str());
    let mut blocker = observer.begin().await.unwrap();
    sqlx::query(&lock_row).execute(&mut *blocker).await.unwrap();
    let ops = UpdateOps::parse(&json!({"$set": {"n": 2}})).unwrap();
    let cancelled =
        tokio::time::timeout(Duration::from_millis(500), docs.update("c", Filter::all(), ops.clone())).await;
    assert!(cancelled.is_err(), "the update waits for the row lock and is cancelled");
    // The cancelled transaction now gets the row lock; it must not keep it.
    blocker.commit().await.unwrap();
    let mut free = false;
    for _ in 0..40 {
        let mut probe = observer.begin().await.unwrap();
        let nowait = sqlx::query(&format!("{lock_row} NOWAIT")).execute(&mut *probe).await;
        probe.rollback().await.unwrap();
        if nowait.is_ok() {
            free = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(free, "the cancelled write's row lock was released within 2 s");
    assert_eq!(docs.get("c", "a").await.unwrap().unwrap()["n"], json!(1), "the cancelled update never committed");
    for _ in 0..3 {
        // Whichever pooled connection comes next, it is outside any transaction.
        assert_eq!(docs.update("c", Filter::all(), ops.clone()).await.unwrap().matched, 1);
    }
    assert_eq!(docs.get("c", "a").await.unwrap().unwrap()["n"], json!(2));
    b.drop_namespace().await.unwrap();
}

/// `Degradable` over a Postgres server that crashes and restarts loses no
/// acknowledged event: the pool notices, writes go to memory, and the probe
/// replays them once the server is back. Runs its own server.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn degraded_store_loses_no_acknowledged_event_across_a_server_crash() {
    if url().is_none() {
        return;
    }
    let server = PgServer::init(5443);
    server.start();
    let namespace = Namespace::random("pgdcrash").unwrap();
    let config = PgDieselConfig::new(server.url(), namespace.clone())
        .with_connect_timeout(Duration::from_secs(1))
        .with_statement_timeout(Duration::from_secs(2));
    let backend = PgDieselBackend::connect(&config).await.expect("connect to the test's own server");
    let fallback = MemoryStores::new(namespace, &MemoryConfig::default()).events;
    restart::no_acknowledged_event_is_lost_across_a_restart(
        Arc::new(backend.events()),
        fallback,
        || server.crash(),
        || server.start(),
    )
    .await;
}

/// Live tails hold at most `pool_size` LISTEN connections; a tail beyond
/// that polls, and still delivers everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tails_beyond_pool_size_poll_instead_of_opening_connections() {
    let Some(url) = url() else { return };
    let ns = Namespace::random("pgd").unwrap();
    let b = diesel(&url, &ns, 1).await;
    let store = b.events();
    let mut tails = Vec::new();
    for _ in 0..3 {
        let mut tail = store.subscribe(Cursor::Start, EventFilter::all()).await.unwrap();
        assert_eq!(next(&mut tail).await, SubscriptionItem::CaughtUp);
        tails.push(tail);
    }
    let observer = sqlx::PgPool::connect(&url).await.unwrap();
    let listening: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'LISTEN %' AND query LIKE '%' || $1 || '%'",
    )
    .bind(ns.as_str())
    .fetch_one(&observer)
    .await
    .unwrap();
    assert_eq!(listening, 1, "one listener slot for a pool of one");
    store.append(AppendBatch::new(vec![NewEvent::new("t", "tick")])).await.unwrap();
    for tail in &mut tails {
        assert!(matches!(next(tail).await, SubscriptionItem::Event(e) if e.kind == "tick"));
    }
    drop(tails);
    b.drop_namespace().await.unwrap();
}
