//! Retention by partitions (migration 0013) on both Postgres backends:
//! partitions premade ahead, `purge` dropping whole partitions and deleting
//! only the remainder, ids unique across partitions, a purged id appendable
//! again, and a namespace migrated before 0013 moved over with its
//! positions, ids, versions and cursors. Needs `PALISADE_TEST_POSTGRES_URL`;
//! skipped with a notice without it, unless `PALISADE_REQUIRE` names
//! `postgres`.

mod common;

use chrono::{DateTime, Datelike, TimeDelta, TimeZone, Utc};
use palisade_core::events::{AppendBatch, Cursor, EventFilter, ExpectedVersion, NewEvent, PageRequest};
use palisade_core::{InputPolicy, Namespace};
use palisade_pg_common::migrations::runner::{self, Runner};
use palisade_pg_common::migrations::MIGRATIONS;
use serde_json::json;
use sqlx::{Executor, Row};

use common::{on_both, url};

/// The first instant of the month `months` after the current one (UTC).
fn month_start(months: i32) -> DateTime<Utc> {
    let now = Utc::now();
    let total = now.year() * 12 + now.month0() as i32 + months;
    Utc.with_ymd_and_hms(total.div_euclid(12), total.rem_euclid(12) as u32 + 1, 1, 0, 0, 0).unwrap()
}

fn at(t: DateTime<Utc>, n: usize) -> NewEvent {
    NewEvent::new("test", "tick").with_occurred_at(t).with_data(json!({ "n": n }))
}

async fn partitions(raw: &sqlx::PgPool) -> Vec<(String, DateTime<Utc>)> {
    sqlx::query("SELECT name, upper FROM event_partitions ORDER BY lower")
        .fetch_all(raw)
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get("name"), r.get("upper")))
        .collect()
}

async fn rows_in(raw: &sqlx::PgPool, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM {table}")).fetch_one(raw).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_are_premade_three_months_ahead() {
    on_both(|ctx| async move {
        let parts = partitions(&ctx.raw).await;
        let names: Vec<&str> = parts.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names[0], "events_archive");
        assert_eq!(parts[0].1, month_start(1), "the archive ends where next month starts");
        assert!(parts.last().unwrap().1 >= Utc::now() + TimeDelta::days(85), "premade three months ahead: {parts:?}");
        let relkind: String = sqlx::query_scalar("SELECT relkind::text FROM pg_class WHERE oid = 'events'::regclass")
            .fetch_one(&ctx.raw)
            .await
            .unwrap();
        assert_eq!(relkind, "p", "events is partitioned");
        // An event far ahead lands in the default partition; premaking a
        // partition for its range moves it there (here: after the interval
        // grew to 5 years, at the next purge).
        let store = ctx.backend.events().unwrap();
        let far = store.append(AppendBatch::new(vec![at(month_start(40), 0)])).await.unwrap().events[0];
        assert_eq!(rows_in(&ctx.raw, "events_default").await, 1);
        sqlx::query("UPDATE event_head SET partition_interval = '5 years'").execute(&ctx.raw).await.unwrap();
        assert_eq!(store.purge(Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).unwrap()).await.unwrap(), 0);
        assert_eq!(rows_in(&ctx.raw, "events_default").await, 0, "moved out of the default partition");
        let home: String =
            sqlx::query_scalar("SELECT tableoid::regclass::text FROM events").fetch_one(&ctx.raw).await.unwrap();
        assert!(home.starts_with("events_p"), "{home}");
        let read = store.read(Cursor::Start, 10).await.unwrap();
        assert_eq!((read.len(), read[0].position), (1, far.position), "the moved event reads the same");
        let dup = store.append(AppendBatch::new(vec![at(month_start(40), 0).with_id(read[0].id)])).await.unwrap();
        assert!(dup.events[0].duplicate, "its id is still known");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_drops_whole_partitions_and_deletes_only_the_boundary_remainder() {
    on_both(|ctx| async move {
        let store = ctx.backend.events().unwrap();
        let (m1, m2, m3) = (month_start(1), month_start(2), month_start(3));
        let mut batch: Vec<NewEvent> = (0..30).map(|n| at(m1 + TimeDelta::hours(n as i64), n)).collect();
        batch.extend((0..20).map(|n| at(m2 + TimeDelta::hours(n as i64), 100 + n)));
        batch.extend((0..5).map(|n| at(m3 + TimeDelta::hours(n as i64), 200 + n)));
        store.append(AppendBatch::new(batch)).await.unwrap();
        let before = partitions(&ctx.raw).await;
        let m1_part = before.iter().find(|(_, upper)| *upper == m2).map(|(n, _)| n.clone()).expect("m1 partition");
        let m1_oid: i64 = sqlx::query_scalar(&format!("SELECT '{m1_part}'::regclass::oid::bigint"))
            .fetch_one(&ctx.raw)
            .await
            .unwrap();

        // Cut inside month 2: the archive and month 1 go whole, month 2 loses 10 hours of rows.
        let cut = m2 + TimeDelta::hours(10);
        assert_eq!(store.purge(cut).await.unwrap(), 40, "30 + 10 events before the cut");
        let after = partitions(&ctx.raw).await;
        assert!(after.iter().all(|(n, _)| *n != m1_part && n != "events_archive"), "dropped: {after:?}");
        let gone: Option<String> = sqlx::query_scalar("SELECT relname::text FROM pg_class WHERE oid = $1::bigint::oid")
            .bind(m1_oid)
            .fetch_optional(&ctx.raw)
            .await
            .unwrap();
        assert_eq!(gone, None, "month 1's table is gone, not emptied");
        let left = store.read(Cursor::Start, 100).await.unwrap();
        assert_eq!(left.len(), 15);
        assert!(left.iter().all(|e| e.occurred_at >= cut));
        assert_eq!(rows_in(&ctx.raw, "event_ids").await, 15, "the removed events' ids went with them");
        assert_eq!(store.query(EventFilter::all(), PageRequest::oldest(100)).await.unwrap().items.len(), 15);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_are_unique_across_partitions_and_a_purged_id_comes_back() {
    on_both(|ctx| async move {
        let store = ctx.backend.events().unwrap();
        let first = at(month_start(1) + TimeDelta::days(3), 1);
        let stored = store.append(AppendBatch::new(vec![first.clone()])).await.unwrap().events[0];
        // The same id dated in another partition is a duplicate of the first.
        let moved = first.clone().with_occurred_at(month_start(2) + TimeDelta::days(3));
        let again = store.append(AppendBatch::new(vec![moved.clone()])).await.unwrap().events[0];
        assert!(again.duplicate && again.position == stored.position, "{again:?}");
        // Concurrent appends of one id dated in different partitions store it once.
        let racer = at(month_start(1), 9);
        let tasks = (0..8).map(|i| {
            let store = ctx.backend.events().unwrap();
            let e = racer.clone().with_occurred_at(month_start(i % 3) + TimeDelta::hours(1));
            tokio::spawn(async move { store.append(AppendBatch::new(vec![e])).await.unwrap().events[0] })
        });
        let outcomes: Vec<_> = futures::future::join_all(tasks).await.into_iter().map(|r| r.unwrap()).collect();
        assert_eq!(outcomes.iter().filter(|o| !o.duplicate).count(), 1, "{outcomes:?}");
        let all = store.read(Cursor::Start, 100).await.unwrap();
        assert_eq!(all.iter().filter(|e| e.id == racer.id).count(), 1);
        // Purged, the id can be appended again.
        store.purge(month_start(3)).await.unwrap();
        let back = store.append(AppendBatch::new(vec![moved])).await.unwrap().events[0];
        assert!(!back.duplicate, "a purged id is appendable again");
        // Streams and expectations work across partitions too.
        let s1 = at(month_start(1), 1).with_stream("host-1");
        let s2 = at(month_start(2), 2).with_stream("host-1");
        store.append(AppendBatch::new(vec![s1]).expect("host-1", ExpectedVersion::NoStream)).await.unwrap();
        let v = store.append(AppendBatch::new(vec![s2]).expect("host-1", ExpectedVersion::Exact(1))).await.unwrap();
        assert_eq!(v.events[0].version, Some(2));
    })
    .await;
}

/// A namespace migrated up to 0012 (one unpartitioned `events` table) moves
/// over: positions, ids, versions and stored cursors unchanged; old events
/// land in the archive partition; idempotency by id still holds for them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrading_an_unpartitioned_namespace_keeps_positions_ids_and_cursors() {
    let Some(url) = url() else { return };
    for driver in common::DRIVERS {
        let ns = Namespace::random("pgupg").unwrap();
        let raw = common::raw(&url, &ns).await;
        raw.execute(format!("CREATE SCHEMA {}", ns.as_str()).as_str()).await.unwrap();
        let plan = Runner::new(&ns);
        raw.execute(plan.ddl().as_str()).await.unwrap();
        for m in MIGRATIONS.iter().filter(|m| m.version <= 12) {
            raw.execute(m.sql).await.unwrap();
            sqlx::query(&plan.insert())
                .bind(m.version)
                .bind(m.description)
                .bind(runner::checksum(m))
                .execute(&raw)
                .await
                .unwrap();
        }
        // Events stored by 0011's function: past, stream, and one far ahead.
        let call = "SELECT * FROM palisade_append($1, $2, $3, $4, $5, $6, $7, $8, $9, '{}', '{}', 'ch')";
        let ids: Vec<uuid::Uuid> = (0..4).map(|_| uuid::Uuid::now_v7()).collect();
        let instants = [Utc::now() - TimeDelta::days(400), Utc::now(), Utc::now(), month_start(6)];
        sqlx::query(call)
            .bind(&ids)
            .bind(vec!["old"; 4])
            .bind(vec!["tick"; 4])
            .bind(vec![None, Some("s"), Some("s"), None::<&str>])
            .bind(vec![None::<&str>; 4])
            .bind(vec![None::<ipnet::IpNet>; 4])
            .bind(vec![json!([]); 4])
            .bind(vec![json!({}); 4])
            .bind(instants.to_vec())
            .fetch_all(&raw)
            .await
            .unwrap();
        let before: Vec<(i64, i32, uuid::Uuid, Option<i64>)> =
            sqlx::query_as("SELECT position, seq, id, version FROM events ORDER BY position, seq")
                .fetch_all(&raw)
                .await
                .unwrap();

        let backend = common::backend(driver, &url, &ns, InputPolicy::default()).await;
        let store = backend.events().unwrap();
        let read = store.read(Cursor::Start, 10).await.unwrap();
        let after: Vec<(i64, i32, uuid::Uuid, Option<i64>)> = read
            .iter()
            .map(|e| (e.position.major as i64, e.position.minor as i32, e.id, e.version.map(|v| v as i64)))
            .collect();
        assert_eq!(after, before, "{driver}: positions, ids and versions unchanged");
        let cursor = Cursor::After(read[1].position);
        assert_eq!(store.read(cursor, 10).await.unwrap().len(), 2, "{driver}: a stored cursor reads on");
        let where_: Vec<String> =
            sqlx::query_scalar("SELECT tableoid::regclass::text FROM events ORDER BY position, seq")
                .fetch_all(&raw)
                .await
                .unwrap();
        assert_eq!(where_[..3], ["events_archive", "events_archive", "events_archive"], "{driver}");
        assert_ne!(where_[3], "events_archive", "{driver}: the far-future event left the archive");
        let dup = store.append(AppendBatch::new(vec![NewEvent::new("old", "tick").with_id(ids[0])])).await.unwrap();
        assert!(dup.events[0].duplicate, "{driver}: ids stored before the upgrade stay unique");
        let next = store.append(AppendBatch::new(vec![at(Utc::now(), 1)])).await.unwrap().events[0];
        assert!(next.position > read[3].position, "{driver}: new events go after the old ones");
        assert_eq!(
            store.purge(Utc::now() - TimeDelta::days(1)).await.unwrap(),
            1,
            "{driver}: the archive purges by rows"
        );
        backend.drop_namespace().await.unwrap();
    }
}
