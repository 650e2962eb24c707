//! Event queries and analytics on both Postgres backends agree with the
//! reference (the memory backend) for every filter field, alone and all
//! together, and for every grouping — the query builder's conditions
//! (pg-diesel) and SQL text (pg-sqlx, and pg-diesel's tag counts) alike.
//! Needs `PALISADE_TEST_POSTGRES_URL`; skipped with a notice without it,
//! unless `PALISADE_REQUIRE` names `postgres`.

mod common;

use chrono::{TimeDelta, TimeZone, Utc};
use palisade_core::events::{AppendBatch, Cursor, EventFilter, GroupBy, NewEvent, PageRequest};
use palisade_core::time::TimeRange;
use palisade_core::{EventStore, InputPolicy};
use palisade_memory::{MemoryConfig, MemoryStores};
use serde_json::json;

use common::{backend, on_both};

fn events() -> Vec<NewEvent> {
    let start = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();
    (0..240)
        .map(|n: i64| {
            let mut e =
                NewEvent::new(["waf", "gateway", "ids"][n as usize % 3], ["blocked", "allowed"][n as usize % 2])
                    .with_session(format!("s{}", n % 7))
                    .with_client_ip(std::net::IpAddr::from([10, (n % 3) as u8, 0, (n % 11) as u8]))
                    .with_occurred_at(start + TimeDelta::minutes(n))
                    .with_data(json!({"n": n}));
            if n % 4 == 0 {
                e = e.with_stream(format!("st{}", n % 3));
            }
            for t in 0..(n % 4) {
                e = e.with_tag(["sqli", "xss", "bot"][t as usize]);
            }
            if n % 5 == 0 {
                e = e.with_tag("sqli"); // a tag twice on one event counts once
            }
            e
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_and_counts_agree_with_the_reference_for_every_filter_field() {
    on_both(|ctx| async move {
        let store = ctx.backend.events().unwrap();
        let reference = MemoryStores::new(ctx.ns.clone(), &MemoryConfig::default()).events;
        let batch = events();
        store.append(AppendBatch::new(batch.clone())).await.unwrap();
        reference.append(AppendBatch::new(batch)).await.unwrap();
        let start = Utc.with_ymd_and_hms(2026, 11, 1, 1, 0, 0).unwrap();
        let window = TimeRange::between(start, start + TimeDelta::minutes(90));
        let filters = [
            EventFilter::all(),
            EventFilter::all().kind("blocked"),
            EventFilter::all().source("waf").source("ids"),
            EventFilter::all().stream("st1"),
            EventFilter::all().session("s3"),
            EventFilter::all().client_net("10.1.0.0/16".parse().unwrap()),
            EventFilter::all().tag("sqli").tag("xss"),
            EventFilter::all().time(window),
            EventFilter::all()
                .kind("blocked")
                .source("waf")
                .source("gateway")
                .session("s2")
                .client_net("10.0.0.0/8".parse().unwrap())
                .tag("sqli")
                .time(TimeRange::since(Utc.with_ymd_and_hms(2026, 11, 1, 0, 30, 0).unwrap())),
        ];
        for filter in filters {
            for page in [PageRequest::oldest(1000), PageRequest::newest(7)] {
                let ids = |p: palisade_core::events::Page<palisade_core::events::Event>| {
                    p.items.into_iter().map(|e| e.id).collect::<Vec<_>>()
                };
                let got = ids(store.query(filter.clone(), page).await.unwrap());
                let want = ids(reference.query(filter.clone(), page).await.unwrap());
                assert_eq!(got, want, "{}: query {filter:?} {page:?}", ctx.driver);
            }
            for group in [GroupBy::Kind, GroupBy::Source, GroupBy::Tag, GroupBy::ClientIp, GroupBy::Session] {
                for top in [2, 100] {
                    let got = store.count_by(filter.clone(), group, top).await.unwrap();
                    let want = reference.count_by(filter.clone(), group, top).await.unwrap();
                    assert_eq!(got, want, "{}: count_by {group:?} top {top} of {filter:?}", ctx.driver);
                }
            }
        }
    })
    .await;
}

/// A namespace restored into a cluster whose transaction ids are lower than
/// its stored positions (as after `pg_restore` elsewhere) goes on numbering
/// appends above the stored events once a store connects: a reader that
/// passed the stored events still gets the new ones, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_after_a_restore_into_a_younger_cluster_are_numbered_above_the_stored_events() {
    on_both(|ctx| async move {
        let events = ctx.backend.events().unwrap();
        events.append(AppendBatch::new(vec![NewEvent::new("test", "before")])).await.unwrap();
        // The stored positions now lie far above this cluster's transaction ids.
        sqlx::query("UPDATE events SET position = position + 1000000000000").execute(&ctx.raw).await.unwrap();
        let restarted = backend(ctx.driver, &ctx.url, &ctx.ns, InputPolicy::default()).await;
        let after = restarted.events().unwrap();
        let stored = after.read(Cursor::Start, 10).await.unwrap();
        assert_eq!(stored.len(), 1);
        after.append(AppendBatch::new(vec![NewEvent::new("test", "after")])).await.unwrap();
        let later = after.read(Cursor::After(stored[0].position), 10).await.unwrap();
        let kinds: Vec<&str> = later.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["after"], "{}: the new event follows the stored one", ctx.driver);
        // A store connecting again changes nothing more (the guard is a no-op now).
        let head: i64 = sqlx::query_scalar("SELECT xid_offset FROM event_head").fetch_one(&ctx.raw).await.unwrap();
        drop(backend(ctx.driver, &ctx.url, &ctx.ns, InputPolicy::default()).await);
        let again: i64 = sqlx::query_scalar("SELECT xid_offset FROM event_head").fetch_one(&ctx.raw).await.unwrap();
        assert_eq!(head, again);
    })
    .await;
}
