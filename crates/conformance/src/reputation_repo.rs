//! Conformance cases for [`ReputationRepo`].
//!
//! Events use fixed instants, so every period a case looks at is deterministic;
//! every case starts in a fresh, empty namespace.

use chrono::{DateTime, FixedOffset, NaiveDate, TimeDelta, TimeZone, Utc};
use futures::future::join_all;
use uuid::Uuid;

use super::{assert_kind, ok};
use palisade_core::reputation::{
    Period, PeriodKind, Ranked, ReputationEvent, Subject, SubjectKind, MAX_RANKED, MAX_SCORE,
};
use palisade_core::time::TimeRange;
use palisade_core::{ErrorKind, ReputationRepo};

// ---------------------------------------------------------------- helpers

/// A UTC instant (a case bug if it does not exist).
fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, s).single().expect("valid instant")
}

/// A fixed mid-year instant most cases record at.
fn t0() -> DateTime<Utc> {
    at(2026, 6, 15, 12, 0, 0)
}

fn ms(t: DateTime<Utc>, millis: i64) -> DateTime<Utc> {
    t + TimeDelta::milliseconds(millis)
}

fn user(id: &str) -> Subject {
    Subject::user(id)
}

fn day(y: i32, m: u32, d: u32) -> Period {
    Period::Day(NaiveDate::from_ymd_opt(y, m, d).expect("valid date"))
}

fn week(year: i32, week: u32) -> Period {
    Period::IsoWeek { year, week }
}

fn month(year: i32, month: u32) -> Period {
    Period::Month { year, month }
}

fn event(subject: &Subject, delta: i64, when: DateTime<Utc>) -> ReputationEvent {
    ReputationEvent::new(subject.clone(), delta, "conformance").at(when)
}

/// Records `delta` for `subject` at `when`; returns the new all-time score.
async fn add(repo: &dyn ReputationRepo, subject: &Subject, delta: i64, when: DateTime<Utc>) -> i64 {
    let recorded = ok(repo.record(event(subject, delta, when)).await, "record");
    assert!(!recorded.duplicate, "a fresh event id is not a duplicate");
    recorded.score
}

type Row = (String, i64, u64);

fn rows(entries: &[Ranked]) -> Vec<Row> {
    entries.iter().map(|r| (r.subject.id.clone(), r.score, r.rank)).collect()
}

fn expect(entries: &[(&str, i64, u64)]) -> Vec<Row> {
    entries.iter().map(|(id, score, rank)| ((*id).to_owned(), *score, *rank)).collect()
}

/// The whole leaderboard of `kind` in `period`, as `(id, score, rank)` rows.
async fn board(repo: &dyn ReputationRepo, kind: SubjectKind, period: Period) -> Vec<Row> {
    rows(&ok(repo.leaderboard(kind, period, 0, MAX_RANKED).await, "leaderboard"))
}

async fn users(repo: &dyn ReputationRepo, period: Period) -> Vec<Row> {
    board(repo, SubjectKind::User, period).await
}

async fn score(repo: &dyn ReputationRepo, subject: &Subject) -> i64 {
    ok(repo.score(subject).await, "score")
}

async fn history(repo: &dyn ReputationRepo, subject: &Subject) -> Vec<ReputationEvent> {
    ok(repo.history(subject, TimeRange::all(), MAX_RANKED).await, "history")
}

/// Records the given `(user id, score)` pairs at `t0`, one event each.
async fn seed(repo: &dyn ReputationRepo, scores: &[(&str, i64)]) {
    for (id, s) in scores {
        add(repo, &user(id), *s, t0()).await;
    }
}

// ---------------------------------------------------------------- record and score

/// `record` returns the subject's new all-time score, and `score` agrees.
pub async fn record_returns_new_score(repo: &dyn ReputationRepo) {
    let alice = user("alice");
    assert_eq!(add(repo, &alice, 5, t0()).await, 5);
    assert_eq!(add(repo, &alice, 3, ms(t0(), 1)).await, 8);
    assert_eq!(add(repo, &alice, 4, at(2020, 1, 1, 0, 0, 0)).await, 12, "the all-time score, whatever the event time");
    assert_eq!(score(repo, &alice).await, 12);
}

/// Recording an event id again changes nothing (whatever its content) and reports the current score as a duplicate.
pub async fn record_is_idempotent_by_id(repo: &dyn ReputationRepo) {
    let alice = user("alice");
    let first = event(&alice, 10, t0());
    assert_eq!(ok(repo.record(first.clone()).await, "record").score, 10);
    add(repo, &alice, 5, t0()).await;
    let again = ok(repo.record(first.clone()).await, "record again");
    assert!(again.duplicate, "the second record of an id is a duplicate");
    assert_eq!(again.score, 15, "a duplicate reports the current score");
    let mut altered = first.clone();
    altered.delta = 99;
    let altered = ok(repo.record(altered).await, "record same id, other content");
    assert!(altered.duplicate);
    assert_eq!(altered.score, 15);
    assert_eq!(score(repo, &alice).await, 15);
    assert_eq!(history(repo, &alice).await.len(), 2, "the log holds the id once");
    assert_eq!(users(repo, Period::AllTime).await, expect(&[("alice", 15, 1)]));
}

/// A subject without events scores 0; user and engine ids are separate subjects.
pub async fn score_of_unknown_subject_is_zero(repo: &dyn ReputationRepo) {
    assert_eq!(score(repo, &user("ghost")).await, 0);
    add(repo, &user("x"), 5, t0()).await;
    assert_eq!(score(repo, &Subject::engine("x")).await, 0, "engine x is not user x");
    assert_eq!(score(repo, &user("X")).await, 0, "ids are case-sensitive");
}

/// Negative deltas lower the score, below zero too, and rank it accordingly.
pub async fn negative_deltas_lower_the_score(repo: &dyn ReputationRepo) {
    let alice = user("alice");
    assert_eq!(add(repo, &alice, 10, t0()).await, 10);
    assert_eq!(add(repo, &alice, -15, t0()).await, -5);
    add(repo, &user("bob"), 0, t0()).await;
    assert_eq!(score(repo, &alice).await, -5);
    assert_eq!(users(repo, Period::AllTime).await, expect(&[("bob", 0, 1), ("alice", -5, 2)]));
}

/// A delta with magnitude above 2^53 − 1 is `InvalidInput` and records nothing; 2^53 − 1 itself is accepted.
pub async fn delta_beyond_2_pow_53_is_invalid_input(repo: &dyn ReputationRepo) {
    let alice = user("alice");
    for delta in [MAX_SCORE + 1, -(MAX_SCORE + 1), i64::MAX, i64::MIN] {
        assert_kind(repo.record(event(&alice, delta, t0())).await, ErrorKind::InvalidInput, &format!("delta {delta}"));
    }
    assert_eq!(score(repo, &alice).await, 0);
    assert!(history(repo, &alice).await.is_empty());
    assert_eq!(ok(repo.rank(&alice, Period::AllTime).await, "rank"), None);
    assert_eq!(add(repo, &alice, MAX_SCORE, t0()).await, MAX_SCORE);
    assert_eq!(add(repo, &user("bob"), -MAX_SCORE, t0()).await, -MAX_SCORE);
}

/// A record that would push any period's score beyond ±(2^53 − 1) is `InvalidInput`, logs nothing and changes no score.
pub async fn score_overflow_is_invalid_input_and_changes_nothing(repo: &dyn ReputationRepo) {
    let (alice, bob) = (user("alice"), user("bob"));
    add(repo, &alice, MAX_SCORE, t0()).await;
    let over = event(&alice, 1, t0());
    assert_kind(repo.record(over.clone()).await, ErrorKind::InvalidInput, "all-time overflow");
    add(repo, &bob, -MAX_SCORE, t0()).await;
    assert_kind(repo.record(event(&bob, -1, t0())).await, ErrorKind::InvalidInput, "all-time underflow");
    // Carol's all-time score stays small, but one day would overflow.
    let carol = user("carol");
    let (fri, sat) = (at(2026, 11, 20, 10, 0, 0), at(2026, 11, 21, 10, 0, 0));
    add(repo, &carol, MAX_SCORE, fri).await;
    add(repo, &carol, -MAX_SCORE, sat).await;
    assert_kind(repo.record(event(&carol, 1, fri)).await, ErrorKind::InvalidInput, "day overflow");
    assert_eq!(
        (score(repo, &alice).await, score(repo, &bob).await, score(repo, &carol).await),
        (MAX_SCORE, -MAX_SCORE, 0)
    );
    assert_eq!(history(repo, &alice).await.len(), 1);
    assert_eq!(history(repo, &carol).await.len(), 2);
    assert_eq!(users(repo, day(2026, 11, 20)).await, expect(&[("carol", MAX_SCORE, 1)]));
    // The rejected id was not logged: it can still be recorded with a valid delta.
    let later = ok(repo.record(ReputationEvent { delta: -1, ..over }).await, "reuse a rejected id");
    assert!(!later.duplicate, "a rejected event must not be in the log");
    assert_eq!(later.score, MAX_SCORE - 1);
}

/// Subject ids that are empty, longer than 256 bytes or hold control characters are `InvalidInput` everywhere.
pub async fn invalid_subject_id_is_invalid_input(repo: &dyn ReputationRepo) {
    let too_long = "x".repeat(257);
    for id in ["", "a\nb", "nul\0", "tab\t", too_long.as_str()] {
        let bad = user(id);
        let what = format!("subject id {id:?}");
        assert_kind(repo.record(event(&bad, 1, t0())).await, ErrorKind::InvalidInput, &what);
        assert_kind(repo.score(&bad).await, ErrorKind::InvalidInput, &what);
        assert_kind(repo.history(&bad, TimeRange::all(), 10).await, ErrorKind::InvalidInput, &what);
        assert_kind(repo.rank(&bad, Period::AllTime).await, ErrorKind::InvalidInput, &what);
        assert_kind(repo.around(&bad, Period::AllTime, 1).await, ErrorKind::InvalidInput, &what);
    }
    assert!(users(repo, Period::AllTime).await.is_empty(), "nothing was recorded");
    let longest = "y".repeat(256);
    assert_eq!(add(repo, &user(&longest), 1, t0()).await, 1, "a 256-byte id is accepted");
}

// ---------------------------------------------------------------- history

/// `history` returns the subject's events with `at` in the half-open range, newest first, ties by id descending.
pub async fn history_is_newest_first_within_range(repo: &dyn ReputationRepo) {
    let (alice, bob) = (user("alice"), user("bob"));
    let h = |n: i64| t0() + TimeDelta::hours(n);
    let e0 = event(&alice, 1, h(0));
    let e1 = ReputationEvent::new(alice.clone(), 2, "détecté 🚩 'x' \"y\"").at(h(1));
    let e2a = event(&alice, 3, h(2)).with_id(Uuid::from_u128(1));
    let e2b = event(&alice, 4, h(2)).with_id(Uuid::from_u128(2));
    let e3 = event(&alice, 5, h(3));
    for e in [e2b.clone(), e0.clone(), e3.clone(), e1.clone(), e2a.clone(), event(&bob, 9, h(2))] {
        ok(repo.record(e).await, "record");
    }
    let got = ok(repo.history(&alice, TimeRange::between(h(1), h(3)), 10).await, "history");
    assert_eq!(got, vec![e2b.clone(), e2a.clone(), e1.clone()], "events round-trip, newest first, [from, to)");
    let all = history(repo, &alice).await;
    assert_eq!(all, vec![e3, e2b, e2a, e1, e0]);
}

/// `history` returns at most `limit` (the newest) events; a limit of 0 or above `MAX_RANKED` is `InvalidInput`.
pub async fn history_respects_limit(repo: &dyn ReputationRepo) {
    let alice = user("alice");
    for i in 0..5 {
        add(repo, &alice, i + 1, t0() + TimeDelta::minutes(i)).await;
    }
    let got = ok(repo.history(&alice, TimeRange::all(), 2).await, "history");
    assert_eq!(got.iter().map(|e| e.delta).collect::<Vec<_>>(), vec![5, 4]);
    assert_kind(repo.history(&alice, TimeRange::all(), 0).await, ErrorKind::InvalidInput, "limit 0");
    assert_kind(repo.history(&alice, TimeRange::all(), MAX_RANKED + 1).await, ErrorKind::InvalidInput, "limit too big");
}

// ---------------------------------------------------------------- leaderboards

/// Leaderboards list by score descending, then subject id ascending.
pub async fn leaderboard_orders_by_score_then_subject_id(repo: &dyn ReputationRepo) {
    seed(repo, &[("carol", 5), ("alice", 7), ("bob", 5), ("dave", 1), ("Eve", 5)]).await;
    let expected = expect(&[("alice", 7, 1), ("Eve", 5, 2), ("bob", 5, 2), ("carol", 5, 2), ("dave", 1, 5)]);
    assert_eq!(users(repo, Period::AllTime).await, expected);
}

/// Ranks are standard competition ranks ("1224"), the same in `leaderboard` and `rank`.
pub async fn leaderboard_uses_competition_ranking(repo: &dyn ReputationRepo) {
    seed(repo, &[("a", 10), ("b", 8), ("c", 8), ("d", 5), ("e", 5), ("f", 5), ("g", 1)]).await;
    let expected =
        expect(&[("a", 10, 1), ("b", 8, 2), ("c", 8, 2), ("d", 5, 4), ("e", 5, 4), ("f", 5, 4), ("g", 1, 7)]);
    assert_eq!(users(repo, Period::AllTime).await, expected);
    for (id, s, rank) in &expected {
        let got = ok(repo.rank(&user(id), Period::AllTime).await, "rank");
        assert_eq!(got, Some(Ranked { subject: user(id), score: *s, rank: *rank }), "rank of {id}");
    }
}

/// `offset` and `limit` page through the leaderboard, keeping absolute ranks.
pub async fn leaderboard_offset_and_limit(repo: &dyn ReputationRepo) {
    seed(repo, &[("a", 6), ("b", 5), ("c", 5), ("d", 5), ("e", 2), ("f", 1)]).await;
    let page = move |offset, limit| async move {
        rows(&ok(repo.leaderboard(SubjectKind::User, Period::AllTime, offset, limit).await, "leaderboard"))
    };
    assert_eq!(page(0, 2).await, expect(&[("a", 6, 1), ("b", 5, 2)]));
    assert_eq!(page(2, 2).await, expect(&[("c", 5, 2), ("d", 5, 2)]));
    assert_eq!(page(4, 10).await, expect(&[("e", 2, 5), ("f", 1, 6)]));
    assert_eq!(page(6, 10).await, vec![]);
}

/// Users and engines have separate leaderboards, even when their ids coincide.
pub async fn leaderboard_separates_users_and_engines(repo: &dyn ReputationRepo) {
    add(repo, &user("x"), 5, t0()).await;
    add(repo, &Subject::engine("x"), 9, t0()).await;
    add(repo, &Subject::engine("y"), 3, t0()).await;
    assert_eq!(users(repo, Period::AllTime).await, expect(&[("x", 5, 1)]));
    assert_eq!(board(repo, SubjectKind::Engine, Period::AllTime).await, expect(&[("x", 9, 1), ("y", 3, 2)]));
    let rank = ok(repo.rank(&user("x"), Period::AllTime).await, "rank").expect("ranked");
    assert_eq!((rank.score, rank.rank), (5, 1));
    assert_eq!(score(repo, &Subject::engine("x")).await, 9);
}

// ---------------------------------------------------------------- periods

/// Day periods are UTC calendar days: 23:59:59.999 and 00:00:00.000 fall on different days, whatever the event's offset.
pub async fn day_period_uses_utc_boundaries(repo: &dyn ReputationRepo) {
    let last_ms = ms(at(2026, 11, 23, 0, 0, 0), -1);
    add(repo, &user("alice"), 1, last_ms).await;
    add(repo, &user("bob"), 2, at(2026, 11, 23, 0, 0, 0)).await;
    let paris = FixedOffset::east_opt(3600).expect("offset");
    let local_next_day = paris.with_ymd_and_hms(2026, 11, 23, 0, 30, 0).single().expect("instant").with_timezone(&Utc);
    add(repo, &user("carol"), 4, local_next_day).await;
    assert_eq!(users(repo, day(2026, 11, 22)).await, expect(&[("carol", 4, 1), ("alice", 1, 2)]));
    assert_eq!(users(repo, day(2026, 11, 23)).await, expect(&[("bob", 2, 1)]));
    assert!(users(repo, day(2026, 11, 21)).await.is_empty());
}

/// ISO weeks run Monday–Sunday in UTC and belong to their ISO year: 2026-12-31 and 2027-01-01 are both 2026-W53.
pub async fn iso_week_period_spans_year_boundary(repo: &dyn ReputationRepo) {
    let (thu, fri) = (at(2026, 12, 31, 12, 0, 0), at(2027, 1, 1, 12, 0, 0));
    let next_monday = at(2027, 1, 4, 0, 0, 0);
    let last_sunday = ms(at(2026, 12, 28, 0, 0, 0), -1);
    assert_eq!(Period::containing(PeriodKind::IsoWeek, thu), week(2026, 53));
    assert_eq!(Period::containing(PeriodKind::IsoWeek, fri), week(2026, 53));
    assert_eq!(Period::containing(PeriodKind::IsoWeek, next_monday), week(2027, 1));
    assert_eq!(Period::containing(PeriodKind::IsoWeek, last_sunday), week(2026, 52));
    let (alice, bob) = (user("alice"), user("bob"));
    add(repo, &alice, 1, thu).await;
    add(repo, &alice, 2, fri).await;
    add(repo, &alice, 4, next_monday).await;
    add(repo, &bob, 8, last_sunday).await;
    assert_eq!(users(repo, week(2026, 53)).await, expect(&[("alice", 3, 1)]));
    assert_eq!(users(repo, week(2027, 1)).await, expect(&[("alice", 4, 1)]));
    assert_eq!(users(repo, week(2026, 52)).await, expect(&[("bob", 8, 1)]));
    assert_eq!(users(repo, month(2026, 12)).await, expect(&[("bob", 8, 1), ("alice", 1, 2)]));
    assert_eq!(users(repo, month(2027, 1)).await, expect(&[("alice", 6, 1)]));
}

/// Month periods are UTC calendar months, leap days included.
pub async fn month_period_boundaries(repo: &dyn ReputationRepo) {
    let alice = user("alice");
    add(repo, &alice, 1, ms(at(2026, 3, 1, 0, 0, 0), -1)).await;
    add(repo, &alice, 2, at(2026, 3, 1, 0, 0, 0)).await;
    add(repo, &user("bob"), 5, ms(at(2026, 2, 1, 0, 0, 0), -1)).await;
    add(repo, &user("carol"), 7, at(2028, 2, 29, 23, 59, 59)).await;
    assert_eq!(users(repo, month(2026, 1)).await, expect(&[("bob", 5, 1)]));
    assert_eq!(users(repo, month(2026, 2)).await, expect(&[("alice", 1, 1)]));
    assert_eq!(users(repo, month(2026, 3)).await, expect(&[("alice", 2, 1)]));
    assert_eq!(users(repo, month(2028, 2)).await, expect(&[("carol", 7, 1)]));
    assert!(users(repo, month(2028, 3)).await.is_empty());
}

/// The all-time board sums every event, across days, weeks, months and years.
pub async fn all_time_includes_every_period(repo: &dyn ReputationRepo) {
    let alice = user("alice");
    add(repo, &alice, 1, at(2025, 1, 1, 0, 0, 0)).await;
    add(repo, &alice, 2, at(2026, 6, 15, 8, 0, 0)).await;
    add(repo, &alice, 4, at(2027, 3, 3, 23, 0, 0)).await;
    add(repo, &user("bob"), 6, at(2026, 6, 15, 9, 0, 0)).await;
    assert_eq!(users(repo, Period::AllTime).await, expect(&[("alice", 7, 1), ("bob", 6, 2)]));
    assert_eq!(users(repo, day(2026, 6, 15)).await, expect(&[("bob", 6, 1), ("alice", 2, 2)]));
    assert_eq!(users(repo, month(2025, 1)).await, expect(&[("alice", 1, 1)]));
    assert_eq!(
        users(repo, Period::containing(PeriodKind::IsoWeek, at(2027, 3, 3, 0, 0, 0))).await,
        expect(&[("alice", 4, 1)])
    );
}

/// Periods follow the event's `at`, not when it was recorded (old and out-of-order events included).
pub async fn period_is_decided_by_event_time_not_record_time(repo: &dyn ReputationRepo) {
    let alice = user("alice");
    add(repo, &alice, 5, at(2020, 5, 5, 5, 5, 5)).await;
    add(repo, &user("bob"), 1, at(2026, 11, 23, 1, 0, 0)).await;
    add(repo, &user("bob"), 2, at(2026, 11, 22, 1, 0, 0)).await;
    let today = Period::containing(PeriodKind::Day, Utc::now());
    assert!(!users(repo, today).await.iter().any(|r| r.0 == "alice"), "an old event does not count today");
    assert_eq!(users(repo, day(2020, 5, 5)).await, expect(&[("alice", 5, 1)]));
    assert_eq!(users(repo, month(2020, 5)).await, expect(&[("alice", 5, 1)]));
    assert_eq!(users(repo, day(2026, 11, 22)).await, expect(&[("bob", 2, 1)]));
    assert_eq!(users(repo, day(2026, 11, 23)).await, expect(&[("bob", 1, 1)]));
}

// ---------------------------------------------------------------- rank and around

/// `rank` returns the subject's score and competition rank within the given period.
pub async fn rank_of_subject(repo: &dyn ReputationRepo) {
    let (a, b, c) = (user("a"), user("b"), user("c"));
    let (d1, d2) = (at(2026, 11, 20, 10, 0, 0), at(2026, 11, 21, 10, 0, 0));
    add(repo, &a, 10, d1).await;
    add(repo, &b, 8, d1).await;
    add(repo, &c, 8, d1).await;
    add(repo, &c, 5, d2).await;
    add(repo, &b, 1, d2).await;
    let rank = move |s: &Subject, p: Period| {
        let s = s.clone();
        async move { ok(repo.rank(&s, p).await, "rank") }
    };
    assert_eq!(rank(&c, Period::AllTime).await, Some(Ranked { subject: c.clone(), score: 13, rank: 1 }));
    assert_eq!(rank(&a, Period::AllTime).await, Some(Ranked { subject: a.clone(), score: 10, rank: 2 }));
    assert_eq!(rank(&b, day(2026, 11, 20)).await, Some(Ranked { subject: b.clone(), score: 8, rank: 2 }));
    assert_eq!(rank(&c, day(2026, 11, 20)).await, Some(Ranked { subject: c.clone(), score: 8, rank: 2 }));
    assert_eq!(rank(&b, day(2026, 11, 21)).await, Some(Ranked { subject: b, score: 1, rank: 2 }));
}

/// `rank` is `None` for a subject without events in the period.
pub async fn rank_of_unranked_subject_is_none(repo: &dyn ReputationRepo) {
    add(repo, &user("alice"), 3, at(2026, 11, 20, 10, 0, 0)).await;
    assert_eq!(ok(repo.rank(&user("ghost"), Period::AllTime).await, "rank ghost"), None);
    assert_eq!(ok(repo.rank(&user("alice"), day(2026, 11, 21)).await, "rank other day"), None);
    assert_eq!(ok(repo.rank(&Subject::engine("alice"), Period::AllTime).await, "rank engine"), None);
    assert!(ok(repo.rank(&user("alice"), day(2026, 11, 20)).await, "rank that day").is_some());
}

async fn seed_seven(repo: &dyn ReputationRepo) {
    seed(repo, &[("s1", 70), ("s2", 60), ("s3", 50), ("s4", 40), ("s5", 30), ("s6", 20), ("s7", 10)]).await;
}

async fn around_ids(repo: &dyn ReputationRepo, id: &str, k: usize) -> Vec<Row> {
    rows(&ok(repo.around(&user(id), Period::AllTime, k).await, "around"))
}

/// `around` returns the subject with up to `k` neighbours each side, in leaderboard order with ranks.
pub async fn around_returns_neighbours(repo: &dyn ReputationRepo) {
    seed_seven(repo).await;
    assert_eq!(
        around_ids(repo, "s4", 2).await,
        expect(&[("s2", 60, 2), ("s3", 50, 3), ("s4", 40, 4), ("s5", 30, 5), ("s6", 20, 6)])
    );
    assert_eq!(around_ids(repo, "s4", 0).await, expect(&[("s4", 40, 4)]));
    assert_eq!(around_ids(repo, "s7", 2).await, expect(&[("s5", 30, 5), ("s6", 20, 6), ("s7", 10, 7)]));
    assert_eq!(around_ids(repo, "s4", 100).await.len(), 7, "a large k returns the whole board");
}

/// At the top of the board `around` returns fewer neighbours above (none for the leader).
pub async fn around_at_the_top_edge(repo: &dyn ReputationRepo) {
    seed_seven(repo).await;
    assert_eq!(around_ids(repo, "s1", 2).await, expect(&[("s1", 70, 1), ("s2", 60, 2), ("s3", 50, 3)]));
    assert_eq!(
        around_ids(repo, "s2", 3).await,
        expect(&[("s1", 70, 1), ("s2", 60, 2), ("s3", 50, 3), ("s4", 40, 4), ("s5", 30, 5)])
    );
}

/// `around` a subject that is not ranked in the period is empty.
pub async fn around_unknown_subject_is_empty(repo: &dyn ReputationRepo) {
    seed_seven(repo).await;
    assert!(around_ids(repo, "ghost", 3).await.is_empty());
    let other_day = ok(repo.around(&user("s1"), day(2020, 1, 1), 3).await, "around in an empty period");
    assert!(other_day.is_empty());
    assert!(ok(repo.around(&Subject::engine("s1"), Period::AllTime, 3).await, "around engine").is_empty());
}

/// A subject whose deltas sum to zero in a period still appears on that period's board.
pub async fn zero_sum_subject_is_still_ranked(repo: &dyn ReputationRepo) {
    add(repo, &user("alice"), 5, t0()).await;
    add(repo, &user("alice"), -5, t0()).await;
    add(repo, &user("bob"), -3, t0()).await;
    add(repo, &user("carol"), 2, t0()).await;
    add(repo, &user("dave"), 0, t0()).await;
    let expected = expect(&[("carol", 2, 1), ("alice", 0, 2), ("dave", 0, 2), ("bob", -3, 4)]);
    assert_eq!(users(repo, Period::AllTime).await, expected);
    assert_eq!(users(repo, Period::containing(PeriodKind::Day, t0())).await, expected);
    let alice = ok(repo.rank(&user("alice"), Period::AllTime).await, "rank").expect("alice is ranked");
    assert_eq!((alice.score, alice.rank), (0, 2));
}

/// 32 concurrent records for one subject all count, each seeing its own increment.
pub async fn concurrent_records_lose_no_update(repo: &dyn ReputationRepo) {
    const N: i64 = 32;
    let alice = user("alice");
    let events: Vec<ReputationEvent> = (0..N).map(|_| event(&alice, 1, t0())).collect();
    let results = join_all(events.into_iter().map(|e| repo.record(e))).await;
    let mut scores: Vec<i64> = results
        .into_iter()
        .map(|r| {
            let r = ok(r, "concurrent record");
            assert!(!r.duplicate);
            r.score
        })
        .collect();
    scores.sort_unstable();
    assert_eq!(scores, (1..=N).collect::<Vec<_>>(), "each record returns a distinct new score");
    assert_eq!(score(repo, &alice).await, N);
    assert_eq!(history(repo, &alice).await.len(), N as usize);
    assert_eq!(users(repo, Period::containing(PeriodKind::Month, t0())).await, expect(&[("alice", N, 1)]));
}

/// `rebuild` recomputes a period from the log and reproduces the same boards and scores.
pub async fn rebuild_reproduces_scores(repo: &dyn ReputationRepo) {
    let (sun, mon) = (at(2026, 11, 22, 23, 0, 0), at(2026, 11, 23, 1, 0, 0));
    let dup = event(&user("alice"), 4, sun);
    ok(repo.record(dup.clone()).await, "record");
    ok(repo.record(dup).await, "record duplicate");
    add(repo, &user("alice"), -1, mon).await;
    add(repo, &user("bob"), 3, sun).await;
    add(repo, &user("carol"), 3, mon).await;
    add(repo, &Subject::engine("e1"), 9, mon).await;
    let periods =
        [Period::AllTime, day(2026, 11, 22), day(2026, 11, 23), week(2026, 47), week(2026, 48), month(2026, 11)];
    let holds = [4, 2, 3, 2, 3, 4];
    for (period, subjects) in periods.into_iter().zip(holds) {
        let before = (users(repo, period).await, board(repo, SubjectKind::Engine, period).await);
        assert_eq!(ok(repo.rebuild(period).await, "rebuild"), subjects, "subjects held by {}", period.key());
        let after = (users(repo, period).await, board(repo, SubjectKind::Engine, period).await);
        assert_eq!(after, before, "rebuild of {} changed the board", period.key());
    }
    assert_eq!(users(repo, Period::AllTime).await, expect(&[("alice", 3, 1), ("bob", 3, 1), ("carol", 3, 1)]));
    assert_eq!(score(repo, &user("alice")).await, 3);
    assert_eq!(ok(repo.rebuild(day(2020, 1, 1)).await, "rebuild empty period"), 0);
    assert!(users(repo, day(2020, 1, 1)).await.is_empty());
}

/// Weeks and months that do not exist are `InvalidInput` for every period-taking call.
pub async fn invalid_period_is_invalid_input(repo: &dyn ReputationRepo) {
    add(repo, &user("alice"), 1, t0()).await;
    let bad = [week(2026, 54), week(2027, 53), week(2026, 0), month(2026, 13), month(2026, 0)];
    for period in bad {
        let what = format!("{period:?}");
        assert_kind(repo.leaderboard(SubjectKind::User, period, 0, 10).await, ErrorKind::InvalidInput, &what);
        assert_kind(repo.rank(&user("alice"), period).await, ErrorKind::InvalidInput, &what);
        assert_kind(repo.around(&user("alice"), period, 1).await, ErrorKind::InvalidInput, &what);
        assert_kind(repo.rebuild(period).await, ErrorKind::InvalidInput, &what);
    }
    assert!(users(repo, week(2026, 53)).await.is_empty(), "2026-W53 exists");
    assert_eq!(users(repo, Period::AllTime).await, expect(&[("alice", 1, 1)]));
}

/// A leaderboard limit of 0 or above `MAX_RANKED` is `InvalidInput`; `MAX_RANKED` itself is accepted.
pub async fn leaderboard_limit_zero_is_invalid_input(repo: &dyn ReputationRepo) {
    add(repo, &user("alice"), 1, t0()).await;
    let lb = |limit| repo.leaderboard(SubjectKind::User, Period::AllTime, 0, limit);
    assert_kind(lb(0).await, ErrorKind::InvalidInput, "limit 0");
    assert_kind(lb(MAX_RANKED + 1).await, ErrorKind::InvalidInput, "limit too big");
    assert_eq!(rows(&ok(lb(MAX_RANKED).await, "limit MAX_RANKED")), expect(&[("alice", 1, 1)]));
}

/// Tied subjects are listed by id in code point order ("B" < "a" < "é" < "\u{FFFD}" < "😀"), whatever the characters.
pub async fn unicode_subject_ids_order_by_code_point(repo: &dyn ReputationRepo) {
    let ids = ["é", "a", "😀", "B", "\u{FFFD}", "user:1", "a b", "'; DROP", "ä", "Z", "e\u{301}"];
    for id in ids {
        add(repo, &user(id), 5, t0()).await;
    }
    let expected = ["'; DROP", "B", "Z", "a", "a b", "e\u{301}", "user:1", "ä", "é", "\u{FFFD}", "😀"];
    let mut by_code_point = ids.to_vec();
    by_code_point.sort_by(|x, y| x.chars().cmp(y.chars()));
    assert_eq!(by_code_point, expected, "case sanity: expected order is code point order");
    let got = users(repo, Period::AllTime).await;
    assert_eq!(got.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(), expected);
    assert!(got.iter().all(|r| r.1 == 5 && r.2 == 1), "all tie at rank 1: {got:?}");
    assert_eq!(score(repo, &user("e\u{301}")).await, 5, "ids are not normalised");
}

// ---------------------------------------------------------------- namespaces

/// Two namespaces on one backend never see each other's events, scores or boards.
pub async fn namespaces_are_isolated(a: &dyn ReputationRepo, b: &dyn ReputationRepo) {
    let alice = user("alice");
    let e = event(&alice, 5, t0());
    assert_eq!(ok(a.record(e.clone()).await, "record in a").score, 5);
    assert_eq!(ok(b.score(&alice).await, "score in b"), 0);
    assert!(users(b, Period::AllTime).await.is_empty());
    let in_b = ok(b.record(e).await, "the same event id in b");
    assert!(!in_b.duplicate, "b has its own log");
    assert_eq!(add(a, &alice, 1, t0()).await, 6);
    assert_eq!(score(b, &alice).await, 5);
    assert_eq!(ok(b.rebuild(Period::AllTime).await, "rebuild in b"), 1);
    assert_eq!(users(a, Period::AllTime).await, expect(&[("alice", 6, 1)]));
    assert_eq!(history(b, &alice).await.len(), 1);
}

mod hostile;
pub use hostile::*;
