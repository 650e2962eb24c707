//! `rebuild` in steps: events recorded while a rebuild runs — behind its
//! cursor and ahead of it — all end up on the rebuilt boards, for both
//! clients. Uses the server of `PALISADE_TEST_REDIS_URL` (skipped without it,
//! unless `PALISADE_REQUIRE` names `redis`).
#![cfg(all(feature = "redis-rs", feature = "fred"))]

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{TimeDelta, TimeZone, Utc};
use palisade_conformance::server_url;
use palisade_core::reputation::{Period, PeriodKind, ReputationEvent, Subject, SubjectKind};
use palisade_core::{Namespace, ReputationRepo};
use palisade_redis::{RedisBackend, RedisConfig};

/// The `n`th event: one of 7 users or 3 engines, somewhere in the day.
fn event(n: u32) -> ReputationEvent {
    let day = Utc.with_ymd_and_hms(2026, 3, 14, 0, 0, 0).single().unwrap_or_default();
    let subject = if n.is_multiple_of(3) {
        Subject::engine(format!("e{}", n % 9 / 3))
    } else {
        Subject::user(format!("u{}", n % 7))
    };
    let delta = i64::from(n % 11) - 4;
    ReputationEvent::new(subject, delta, "test").at(day + TimeDelta::seconds(i64::from(n * 7919 % 86_400)))
}

async fn board(repo: &dyn ReputationRepo, kind: SubjectKind, period: Period) -> BTreeMap<String, i64> {
    let ranked = repo.leaderboard(kind, period, 0, 1_000).await.expect("leaderboard");
    ranked.into_iter().map(|r| (r.subject.id, r.score)).collect()
}

async fn concurrent_records_land_on_the_rebuilt_board(scheme: &str) {
    let Some(url) = server_url("redis", "PALISADE_TEST_REDIS_URL") else { return };
    let url = url.replacen("redis://", &format!("{scheme}://"), 1);
    let mut config = RedisConfig::new(url, Namespace::random("rebuild").unwrap());
    config.rebuild_chunk = 25;
    let backend = RedisBackend::connect(&config).await.expect("connect");
    let repo: Arc<dyn ReputationRepo> = Arc::new(backend.reputation());
    let mut expected: BTreeMap<(bool, String), i64> = BTreeMap::new();
    let mut remember = |e: &ReputationEvent| {
        *expected.entry((e.subject.kind == SubjectKind::User, e.subject.id.clone())).or_default() += e.delta;
    };
    let first: Vec<ReputationEvent> = (0..1_000).map(event).collect();
    for e in &first {
        repo.record(e.clone()).await.expect("record");
        remember(e);
    }
    let period = Period::containing(PeriodKind::Day, first[0].at);

    let later: Vec<ReputationEvent> = (1_000..1_400).map(event).collect();
    let rebuilding = tokio::spawn({
        let repo = Arc::clone(&repo);
        async move { repo.rebuild(period).await }
    });
    for e in &later {
        repo.record(e.clone()).await.expect("record during the rebuild");
        remember(e);
        tokio::task::yield_now().await;
    }
    let subjects = rebuilding.await.expect("rebuild task").expect("rebuild");
    assert_eq!(subjects, 10, "7 users and 3 engines");

    for kind in [SubjectKind::User, SubjectKind::Engine] {
        let want: BTreeMap<String, i64> = expected
            .iter()
            .filter(|((user, _), _)| *user == (kind == SubjectKind::User))
            .map(|((_, id), score)| (id.clone(), *score))
            .collect();
        assert_eq!(board(repo.as_ref(), kind, period).await, want, "{kind:?} board after a concurrent rebuild");
    }
    // A rebuild with nothing recorded meanwhile gives the same boards.
    assert_eq!(repo.rebuild(period).await.expect("second rebuild"), 10);
    let users = board(repo.as_ref(), SubjectKind::User, period).await;
    assert_eq!(users.values().sum::<i64>(), expected.iter().filter(|(k, _)| k.0).map(|(_, v)| v).sum::<i64>());
    backend.drop_namespace().await.expect("drop namespace");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_rs_records_during_a_rebuild_land_on_the_rebuilt_board() {
    concurrent_records_land_on_the_rebuilt_board("redis").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fred_records_during_a_rebuild_land_on_the_rebuilt_board() {
    concurrent_records_land_on_the_rebuilt_board("redis+fred").await;
}
