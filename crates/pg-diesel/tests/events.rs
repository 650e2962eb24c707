//! Event queries and analytics on both Postgres backends agree with the
//! reference (the memory backend) for every filter field, alone and all
//! together, and for every grouping — the query builder's conditions
//! (pg-diesel) and SQL text (pg-sqlx, and pg-diesel's tag counts) alike.
//! Needs `PALISADE_TEST_POSTGRES_URL`; skipped with a notice without it,
//! unless `PALISADE_REQUIRE` names `postgres`.

mod common;

use chrono::{TimeDelta, TimeZone, Utc};
use palisade_core::events::{AppendBatch, EventFilter, GroupBy, NewEvent, PageRequest};
use palisade_core::time::TimeRange;
use palisade_core::EventStore;
use palisade_memory::{MemoryConfig, MemoryStores};
use serde_json::json;

use common::on_both;

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
