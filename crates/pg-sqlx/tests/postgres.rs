//! Postgres-specific proofs beyond the shared conformance suite: the
//! slow-commit ordering test, 100,000-event atomic batches, migrations,
//! event queries planned on the index of their filter.
//! Needs `PALISADE_TEST_POSTGRES_URL`; skipped with a notice without it,
//! unless `PALISADE_REQUIRE` names `postgres`.

mod common;

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use futures::StreamExt;
use ipnet::IpNet;
use palisade_conformance::{restart, server_url};
use palisade_core::events::{
    AppendBatch, Cursor, EventFilter, ExpectedVersion, NewEvent, PageRequest, Position, SubscriptionItem,
};
use palisade_core::time::TimeRange;
use palisade_core::{ErrorKind, EventStore, Namespace, Store};
use palisade_memory::{MemoryConfig, MemoryStores};
use palisade_pg_sqlx::{PgBackend, PgConfig};
use serde_json::json;

/// The shared server's URL; `None` (skip) without one, unless required.
fn url() -> Option<String> {
    server_url("postgres", "PALISADE_TEST_POSTGRES_URL")
}

async fn backend() -> Option<PgBackend> {
    let url = url()?;
    let config = PgConfig::new(url, Namespace::random("pgtest").unwrap());
    Some(PgBackend::connect(&config).await.expect("postgres is reachable"))
}

fn ev(n: usize) -> NewEvent {
    NewEvent::new("test", "tick").with_data(json!({ "n": n }))
}

/// A reader never sees a position and later a lower one, even while an append
/// transaction is held open: appends that started later (and took later
/// transaction ids) commit without waiting for it, but stay held back from
/// ordered reads until it ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reader_never_skips_a_slow_commit() {
    let Some(b) = backend().await else { return };
    let store = b.events();
    store.append(AppendBatch::new(vec![ev(0).with_stream("slow")])).await.unwrap();

    // Hold the `slow` stream row: the next append to that stream takes its
    // transaction id (its position), then waits on this lock (at its
    // `event_streams` update) before it can commit.
    let mut blocker = b.pool().begin().await.unwrap();
    sqlx::query("SELECT version FROM event_streams WHERE stream = 'slow' FOR UPDATE")
        .execute(&mut *blocker)
        .await
        .unwrap();

    let slow_store = store.clone();
    let slow = tokio::spawn(async move { slow_store.append(AppendBatch::new(vec![ev(1).with_stream("slow")])).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut later_pos = Vec::new();
    for n in 2..6 {
        // Appends to other streams (or none) do not wait for the slow one.
        let appended = tokio::time::timeout(Duration::from_secs(10), store.append(AppendBatch::new(vec![ev(n)])))
            .await
            .expect("an append without a stream never waits for another stream's lock")
            .unwrap();
        later_pos.push(appended.events[0].position);
    }
    assert!(!slow.is_finished(), "the slow append is still in flight");

    // The later events are committed (a query sees them) but held back from
    // ordered reads: a read waits rather than return them before the slow one.
    let committed = store.query(EventFilter::all(), PageRequest::oldest(100)).await.unwrap();
    assert_eq!(committed.items.len(), 5, "the first and the four later events are committed");
    let early = tokio::time::timeout(Duration::from_millis(300), store.read(Cursor::Start, 100)).await;
    assert!(early.is_err(), "a read waits while committed events are held back: {early:?}");
    let mut tail = store.subscribe(Cursor::Start, EventFilter::all()).await.unwrap();
    let mut tailed = Vec::new();
    while let Ok(Some(item)) = tokio::time::timeout(Duration::from_millis(700), tail.next()).await {
        if let SubscriptionItem::Event(e) = item.unwrap() {
            tailed.push(e.position);
        }
    }
    assert!(tailed.len() <= 1, "the tail delivers no later event while the slow append is open: {tailed:?}");

    blocker.rollback().await.unwrap();
    let slow_pos = slow.await.unwrap().unwrap().events[0].position;
    assert!(later_pos.iter().all(|p| *p > slow_pos), "later appends got later positions");

    let all = store.read(Cursor::Start, 100).await.unwrap();
    let positions: Vec<_> = all.iter().map(|e| e.position).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    assert_eq!(all.len(), 6);
    while tailed.len() < 6 {
        match tokio::time::timeout(Duration::from_secs(10), tail.next()).await {
            Ok(Some(Ok(SubscriptionItem::Event(e)))) => {
                assert!(tailed.last().is_none_or(|p| e.position > *p), "the tail never goes back");
                tailed.push(e.position);
            }
            Ok(Some(Ok(_))) => {}
            other => panic!("the tail stopped: {other:?}"),
        }
    }
    assert_eq!(tailed, positions, "the tail delivered every event once, in order");
    b.drop_namespace().await.unwrap();
}

/// While another write transaction is open, health notes how many committed
/// events ordered readers do not see yet; once it ends, the note goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_notes_events_held_back_by_an_open_transaction() {
    let Some(b) = backend().await else { return };
    let store = b.events();
    assert!(store.notes().await.unwrap().is_empty(), "nothing held back in a fresh namespace");
    let mut blocker = b.pool().begin().await.unwrap();
    sqlx::query("SELECT pg_current_xact_id()").execute(&mut *blocker).await.unwrap();
    store.append(AppendBatch::new(vec![ev(1)])).await.unwrap();
    let notes = store.notes().await.unwrap();
    assert!(notes.len() == 1 && notes[0].starts_with("1 committed events held back"), "{notes:?}");
    blocker.rollback().await.unwrap();
    let mut cleared = false;
    for _ in 0..200 {
        if store.notes().await.unwrap().is_empty() {
            cleared = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(cleared, "the note clears once older transactions end");
    assert_eq!(store.read(Cursor::Start, 10).await.unwrap().len(), 1);
    b.drop_namespace().await.unwrap();
}

/// Single-event appends from several pools (separate services) run side by
/// side — none waits on a global lock — while a reader following the order
/// never sees a position below one it has seen and misses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_from_several_pools_keep_readers_in_order() {
    let Some(b) = backend().await else { return };
    let url = url().unwrap();
    let mut pools = Vec::new();
    for _ in 0..4 {
        let config = PgConfig::new(url.clone(), b.namespace().clone()).with_pool_size(4);
        pools.push(PgBackend::connect(&config).await.unwrap().events());
    }
    const PER_TASK: usize = 40;
    let writers: Vec<_> = (0..16)
        .map(|t| {
            let store = pools[t % pools.len()].clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for n in 0..PER_TASK {
                    let e = ev(t * 1000 + n);
                    ids.push(e.id);
                    store.append(AppendBatch::new(vec![e])).await.unwrap();
                }
                ids
            })
        })
        .collect();
    let reader_store = b.events();
    let reader = tokio::spawn(async move {
        let mut seen = Vec::new();
        let mut last: Option<Position> = None;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while seen.len() < 16 * PER_TASK && tokio::time::Instant::now() < deadline {
            let page = reader_store.read(last.map_or(Cursor::Start, Cursor::After), 100).await.unwrap();
            for e in page {
                if let Some(p) = last {
                    assert!(e.position > p, "saw {} after {p}", e.position);
                }
                last = Some(e.position);
                seen.push(e.id);
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        seen
    });
    let mut appended = HashSet::new();
    for w in writers {
        appended.extend(w.await.unwrap());
    }
    let seen = reader.await.unwrap();
    assert_eq!(seen.len(), appended.len(), "every append read exactly once");
    assert_eq!(seen.into_iter().collect::<HashSet<_>>(), appended);
    b.drop_namespace().await.unwrap();
}

/// Appends racing to create one new stream (or to store one id) both
/// succeed or conflict as if they had taken turns: versions 1 and 2, or one
/// `Conflict` under `NoStream`, and a duplicate id stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn appends_racing_on_a_new_stream_take_turns() {
    let Some(b) = backend().await else { return };
    let store = b.events();
    for round in 0..30 {
        let stream = format!("race{round}");
        let (a, c) = (ev(1).with_stream(&stream), ev(2).with_stream(&stream));
        let (x, y) = tokio::join!(store.append(AppendBatch::new(vec![a])), store.append(AppendBatch::new(vec![c])));
        let mut versions = vec![x.unwrap().events[0].version, y.unwrap().events[0].version];
        versions.sort();
        assert_eq!(versions, vec![Some(1), Some(2)], "round {round}");

        // Four appends expecting `NoStream` on a stream none has created yet:
        // one stores version 1, three conflict (migration 0011; with only
        // row locks, a later one could number itself 2 and succeed).
        let guarded = format!("guarded{round}");
        let attempts = (0..4).map(|i| {
            let batch = AppendBatch::new(vec![ev(3 + i).with_stream(&guarded)]);
            store.append(batch.expect(&guarded, ExpectedVersion::NoStream))
        });
        let results = futures::future::join_all(attempts).await;
        let conflicts = results.iter().filter(|r| matches!(r, Err(e) if e.kind() == ErrorKind::Conflict)).count();
        let stored: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).map(|o| o.events[0].version).collect();
        assert_eq!((conflicts, stored), (3, vec![Some(1)]), "round {round}: {results:?}");

        let same = ev(7);
        let (x, y) = tokio::join!(
            store.append(AppendBatch::new(vec![same.clone()])),
            store.append(AppendBatch::new(vec![same.clone()]))
        );
        let (x, y) = (x.unwrap().events[0], y.unwrap().events[0]);
        assert_eq!(x.position, y.position, "round {round}: one row for the id");
        assert!(x.duplicate != y.duplicate, "round {round}: exactly one call stored it");
    }
    b.drop_namespace().await.unwrap();
}

/// 100,000 events (far over the 65,535 bind-parameter limit) append in one
/// atomic call; a batch of the same size that Postgres itself rejects in its
/// last row stores nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_of_100_000_events_is_atomic() {
    let Some(b) = backend().await else { return };
    let store = b.events();
    let batch: Vec<NewEvent> = (0..100_000).map(ev).collect();
    let out = store.append(AppendBatch::new(batch)).await.unwrap();
    assert_eq!(out.appended(), 100_000);

    // A trigger of the test's own fails the last row on the server, mid-statement.
    sqlx::raw_sql(
        "CREATE FUNCTION fail_poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
           IF NEW.kind = 'poison' THEN RAISE EXCEPTION 'poisoned row' USING ERRCODE = '22023'; END IF; \
           RETURN NEW; END $$; \
         CREATE TRIGGER fail_poison BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION fail_poison();",
    )
    .execute(b.pool())
    .await
    .unwrap();
    let mut bad: Vec<NewEvent> = (0..100_000).map(ev).collect();
    bad[99_999].kind = "poison".into();
    let err = store.append(AppendBatch::new(bad)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");

    let mut ids = HashSet::new();
    let mut cursor = Cursor::Start;
    loop {
        let page = store.read(cursor, 10_000).await.unwrap();
        let Some(last) = page.last() else { break };
        cursor = Cursor::After(last.position);
        ids.extend(page.iter().map(|e| e.id));
    }
    assert_eq!(ids.len(), 100_000, "the rejected batch left nothing behind");
    b.drop_namespace().await.unwrap();
}

/// Migrations are tracked in the namespace's own table, never `_sqlx_migrations`,
/// and re-running them is a no-op.
#[tokio::test]
async fn migrations_are_idempotent_and_tracked_in_the_namespace() {
    let Some(b) = backend().await else { return };
    b.migrate().await.unwrap();
    let status = b.migration_status().await.unwrap();
    assert!(!status.is_empty() && status.iter().all(|m| m.applied), "{status:?}");
    let tables: Vec<String> = sqlx::query_scalar("SELECT tablename::text FROM pg_tables WHERE schemaname = $1")
        .bind(b.namespace().as_str())
        .fetch_all(b.pool())
        .await
        .unwrap();
    assert!(tables.contains(&"palisade_migrations".to_owned()), "{tables:?}");
    assert!(!tables.contains(&"_sqlx_migrations".to_owned()));
    b.drop_namespace().await.unwrap();
}

/// Many services starting at once migrate the same namespace safely.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_starts_migrate_once() {
    let Ok(url) = std::env::var("PALISADE_TEST_POSTGRES_URL") else { return };
    let ns = Namespace::random("pgtest").unwrap();
    let starts: Vec<_> = (0..6)
        .map(|_| {
            let config = PgConfig::new(url.clone(), ns.clone());
            tokio::spawn(async move { PgBackend::connect(&config).await.map(|_| ()) })
        })
        .collect();
    for s in starts {
        s.await.unwrap().unwrap();
    }
    let b = PgBackend::connect(&PgConfig::new(url, ns)).await.unwrap();
    let applied: i64 =
        sqlx::query_scalar("SELECT count(*) FROM palisade_migrations").fetch_one(b.pool()).await.unwrap();
    assert_eq!(applied as usize, palisade_pg_common::migrations::MIGRATIONS.len());
    b.drop_namespace().await.unwrap();
}

/// A wrong password fails at connect with `Unavailable`/`Config`, and the
/// error never contains it.
#[tokio::test]
async fn bad_credentials_fail_early_without_echoing_them() {
    let config = PgConfig::new("postgres://nobody:sup3rs3cret@127.0.0.1:1/test", Namespace::random("pgtest").unwrap());
    let err = PgBackend::connect(&config).await.err().expect("nothing listens on port 1");
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(!format!("{err} {err:?} {config:?}").contains("sup3rs3cret"));
}

/// Expired session rows are reclaimed: by `sweep` on demand, and by writes.
#[tokio::test]
async fn expired_sessions_are_swept() {
    use palisade_core::sessions::SetMode;
    use palisade_core::SessionCache;
    let Some(b) = backend().await else { return };
    let sessions = b.sessions();
    // The instance's first write sweeps; make it one that never expires.
    sessions.set("warm", json!(0), None, SetMode::Always).await.unwrap();
    for i in 0..20 {
        sessions
            .set(&format!("k{i}"), json!(i), Some(chrono::TimeDelta::milliseconds(50).into()), SetMode::Always)
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    let rows =
        || async { sqlx::query_scalar::<_, i64>("SELECT count(*) FROM sessions").fetch_one(b.pool()).await.unwrap() };
    assert_eq!(rows().await, 21, "expired rows linger until a sweep");
    // A fresh instance sweeps on its first write.
    b.sessions().set("fresh", json!(1), None, SetMode::Always).await.unwrap();
    assert_eq!(rows().await, 2, "the write swept the 20 expired rows");
    sessions.set("gone", json!(1), Some(chrono::TimeDelta::milliseconds(20).into()), SetMode::Always).await.unwrap();
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert_eq!(sessions.sweep().await.unwrap(), 1);
    b.drop_namespace().await.unwrap();
}

/// A live tail keeps delivering after its LISTEN connection is killed: it
/// polls, re-listens, and resumes from its cursor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_tail_survives_a_dropped_listen_connection() {
    use palisade_core::events::{EventFilter, SubscriptionItem};
    let Some(b) = backend().await else { return };
    let store = b.events();
    let mut tail = store.subscribe(Cursor::Start, EventFilter::all()).await.unwrap();
    assert_eq!(next(&mut tail).await, SubscriptionItem::CaughtUp);
    for round in 0..2 {
        let killed: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'LISTEN %' AND query LIKE '%' || $1 || '%'",
        )
        .bind(b.namespace().as_str())
        .fetch_all(b.pool())
        .await
        .unwrap();
        assert!(!killed.is_empty(), "round {round}: the tail's LISTEN connection was found and killed");
        store.append(AppendBatch::new(vec![ev(round), ev(round + 10)])).await.unwrap();
        for want in [round, round + 10] {
            match next(&mut tail).await {
                SubscriptionItem::Event(e) => assert_eq!(e.data["n"], want),
                other => panic!("expected an event, got {other:?}"),
            }
        }
        // Drive the idle tail for a while (nothing new arrives): it re-listens.
        use futures::StreamExt;
        let idle = tokio::time::timeout(Duration::from_millis(1500), tail.next()).await;
        assert!(idle.is_err(), "no further events: {idle:?}");
    }
    b.drop_namespace().await.unwrap();
}

async fn next(tail: &mut palisade_core::events::EventSubscription) -> palisade_core::events::SubscriptionItem {
    use futures::StreamExt;
    tokio::time::timeout(Duration::from_secs(10), tail.next())
        .await
        .expect("tail delivers")
        .expect("stream open")
        .expect("no error")
}

/// Selective event queries use the index made for their filter: session,
/// client network (`inet <<=`), kind with a time window.
#[tokio::test]
async fn event_queries_use_the_index_of_their_filter() {
    let Some(b) = backend().await else { return };
    let store = b.events();
    let start = Utc::now() - TimeDelta::days(60);
    let batch: Vec<NewEvent> = (0..30_000u32)
        .map(|i| {
            NewEvent::new("waf", format!("kind{}", i % 20))
                .with_session(format!("s{}", i % 500))
                .with_client_ip(IpAddr::from([10, (i % 40) as u8, (i / 256 % 256) as u8, (i % 256) as u8]))
                .with_occurred_at(start + TimeDelta::minutes(i64::from(i) * 2))
        })
        .collect();
    store.append(AppendBatch::new(batch)).await.unwrap();
    sqlx::query("ANALYZE events").execute(b.pool()).await.unwrap();

    // Plans name the partitions' indexes: each is reported as the
    // partitioned index of `events` it belongs to.
    let uses = |filter: EventFilter| {
        let (store, pool, ns) = (store.clone(), b.pool().clone(), b.namespace().as_str().to_owned());
        async move {
            let names = common::index_names(&store.explain(&filter, &PageRequest::oldest(100)).await.unwrap());
            sqlx::query_scalar::<_, String>(
                "SELECT coalesce(p.relname, c.relname)::text FROM pg_class c \
                 LEFT JOIN pg_inherits i ON i.inhrelid = c.oid LEFT JOIN pg_class p ON p.oid = i.inhparent \
                 WHERE c.relnamespace = $2::regnamespace AND c.relname = ANY($1)",
            )
            .bind(&names)
            .bind(ns)
            .fetch_all(&pool)
            .await
            .unwrap()
        }
    };
    let names = uses(EventFilter::all().session("s42")).await;
    assert!(names.contains(&"events_session".to_owned()), "session: {names:?}");
    let net: IpNet = "10.7.3.0/24".parse().unwrap();
    let names = uses(EventFilter::all().client_net(net)).await;
    assert!(names.contains(&"events_client_ip".to_owned()), "client network: {names:?}");
    let day = TimeRange::between(start + TimeDelta::days(10), start + TimeDelta::days(11));
    let names = uses(EventFilter::all().kind("kind3").time(day)).await;
    assert!(names.contains(&"events_kind_time".to_owned()), "kind and time: {names:?}");
    let page = store.query(EventFilter::all().session("s42"), PageRequest::oldest(100)).await.unwrap();
    assert_eq!(page.items.len(), 60, "the planned query returns the session's events");
    b.drop_namespace().await.unwrap();
}

/// `Degradable` over a Postgres server that crashes and restarts loses no
/// acknowledged event: the pool notices, writes go to memory, and the probe
/// replays them once the server is back. Runs its own server (`PgServer`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn degraded_store_loses_no_acknowledged_event_across_a_server_crash() {
    // Postgres tests run where a server is (or must be) available; this one
    // starts its own from the same installation.
    if url().is_none() {
        return;
    }
    let server = palisade_conformance::pg_server::PgServer::init(5442);
    server.start();
    let namespace = Namespace::random("pgcrash").unwrap();
    let mut config = PgConfig::new(server.url(), namespace.clone());
    config.connect_timeout = Duration::from_secs(1);
    config.statement_timeout = Duration::from_secs(2);
    let backend = PgBackend::connect(&config).await.expect("connect to the test's own server");
    let fallback = MemoryStores::new(namespace, &MemoryConfig::default()).events;
    restart::no_acknowledged_event_is_lost_across_a_restart(
        Arc::new(backend.events()),
        fallback,
        || server.crash(),
        || server.start(),
    )
    .await;
}
