//! Conformance cases for [`EventStore`].
//!
//! Every case gets a store in a fresh, empty namespace. No case assumes where
//! positions start; only [`Capabilities::gap_free_order`](palisade_core::Capabilities)
//! stores must number them consecutively. Time-range cases use fixed instants
//! around `base()`, so their answers do not depend on the clock.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use futures::future::join_all;
use futures::StreamExt;
use ipnet::IpNet;
use serde_json::json;
use uuid::Uuid;

use super::{assert_kind, ok};
use palisade_core::backend::clock::now_ms;
use palisade_core::error::{ErrorDetail, ErrorKind, Result};
use palisade_core::events::{
    AppendBatch, AppendOutcome, Appended, Cursor, Event, EventFilter, EventSubscription, ExpectedVersion, GroupBy,
    GroupCount, NewEvent, Order, PageRequest, Position, SubscriptionItem, MAX_NAME_LEN, MAX_PAGE, MAX_TAGS,
};
use palisade_core::time::{truncate_ms, TimeRange};
use palisade_core::EventStore;

const SOURCE: &str = "conformance";
/// How long a subscription may take to deliver its next item.
const SUBSCRIBE_WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------- helpers

/// A fixed instant (2024-01-01T00:00:00Z) that time-range cases build around.
fn base() -> DateTime<Utc> {
    DateTime::from_timestamp_millis(1_704_067_200_000).expect("valid instant")
}

/// `base() + ms` milliseconds.
fn at(ms: i64) -> DateTime<Utc> {
    base() + TimeDelta::milliseconds(ms)
}

/// A minimal valid event of `kind`.
fn ev(kind: &str) -> NewEvent {
    NewEvent::new(SOURCE, kind)
}

/// `n` minimal events of `kind`.
fn evs(kind: &str, n: usize) -> Vec<NewEvent> {
    (0..n).map(|_| ev(kind)).collect()
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("valid IP literal")
}

fn net(s: &str) -> IpNet {
    s.parse().expect("valid CIDR literal")
}

async fn append(store: &dyn EventStore, events: Vec<NewEvent>) -> AppendOutcome {
    ok(store.append(AppendBatch::new(events)).await, "append")
}

async fn append_expecting(
    store: &dyn EventStore,
    events: Vec<NewEvent>,
    stream: &str,
    expected: ExpectedVersion,
) -> Result<AppendOutcome> {
    store.append(AppendBatch::new(events).expect(stream, expected)).await
}

/// Every stored event, in position order, checking that each page lies after the cursor.
async fn read_all(store: &dyn EventStore) -> Vec<Event> {
    let mut all: Vec<Event> = Vec::new();
    let mut cursor = Cursor::Start;
    loop {
        let page = ok(store.read(cursor, MAX_PAGE).await, "read");
        if page.is_empty() {
            return all;
        }
        for e in &page {
            assert!(cursor.admits(e.position), "read returned {} at or before its cursor {cursor:?}", e.position);
            cursor = Cursor::After(e.position);
        }
        all.extend(page);
    }
}

/// Every event matching `filter`, collected page by page in `order`.
async fn query_all(store: &dyn EventStore, filter: EventFilter, order: Order) -> Vec<Event> {
    let mut all = Vec::new();
    let mut page = PageRequest { limit: 1000, order, after: None };
    for _ in 0..10_000 {
        let got = ok(store.query(filter.clone(), page).await, "query");
        all.extend(got.items);
        match got.next {
            Some(next) => page = page.continue_after(next),
            None => return all,
        }
    }
    panic!("query kept returning `next` after 10000 pages");
}

/// Ids of events matching `filter`, oldest first.
async fn query_ids(store: &dyn EventStore, filter: EventFilter) -> Vec<Uuid> {
    ids(&query_all(store, filter, Order::OldestFirst).await)
}

fn ids(events: &[Event]) -> Vec<Uuid> {
    events.iter().map(|e| e.id).collect()
}

fn new_ids(events: &[NewEvent]) -> Vec<Uuid> {
    events.iter().map(|e| e.id).collect()
}

fn positions(events: &[Event]) -> Vec<Position> {
    events.iter().map(|e| e.position).collect()
}

#[track_caller]
fn assert_strictly_increasing(ps: &[Position], what: &str) {
    for w in ps.windows(2) {
        assert!(w[0] < w[1], "{what}: position {} is not below {}", w[0], w[1]);
    }
}

#[track_caller]
fn assert_version_conflict(r: Result<AppendOutcome>, stream: &str, expected: ExpectedVersion, actual: u64) {
    match r {
        Ok(o) => panic!("expected a version conflict on {stream:?}, got Ok({o:?})"),
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::Conflict, "expected Conflict, got {e}");
            let want = ErrorDetail::VersionConflict { stream: stream.to_owned(), expected, actual };
            assert_eq!(e.detail(), Some(&want), "conflict detail of {e}");
        }
    }
}

/// Whether the store offers `count_by`; without `analytics`, asserts that it
/// says `Unsupported` instead.
async fn analytics(store: &dyn EventStore) -> bool {
    if store.capabilities().analytics {
        return true;
    }
    let r = store.count_by(EventFilter::all(), GroupBy::Kind, 10).await;
    assert_kind(r, ErrorKind::Unsupported, "count_by without the analytics capability");
    crate::not_applicable("analytics");
    false
}

async fn count_by(store: &dyn EventStore, filter: EventFilter, group: GroupBy, top: usize) -> Vec<(String, u64)> {
    let groups: Vec<GroupCount> = ok(store.count_by(filter, group, top).await, "count_by");
    groups.into_iter().map(|g| (g.key, g.count)).collect()
}

fn groups(expected: &[(&str, u64)]) -> Vec<(String, u64)> {
    expected.iter().map(|(k, n)| ((*k).to_owned(), *n)).collect()
}

/// Opens a subscription; without `live_tail`, asserts `Unsupported` and returns `None`.
async fn subscribe(store: &dyn EventStore, after: Cursor, filter: EventFilter) -> Option<EventSubscription> {
    let r = store.subscribe(after, filter).await;
    if store.capabilities().live_tail {
        Some(ok(r, "subscribe"))
    } else {
        assert_kind(r.map(|_| ()), ErrorKind::Unsupported, "subscribe without the live_tail capability");
        crate::not_applicable("live_tail");
        None
    }
}

async fn next_item(sub: &mut EventSubscription, what: &str) -> SubscriptionItem {
    match tokio::time::timeout(SUBSCRIBE_WAIT, sub.next()).await {
        Err(_) => panic!("{what}: no subscription item within {SUBSCRIBE_WAIT:?}"),
        Ok(None) => panic!("{what}: the subscription ended"),
        Ok(Some(item)) => ok(item, what),
    }
}

async fn next_event(sub: &mut EventSubscription, what: &str) -> Event {
    match next_item(sub, what).await {
        SubscriptionItem::Event(e) => *e,
        SubscriptionItem::CaughtUp => panic!("{what}: expected an event, got CaughtUp"),
    }
}

async fn expect_caught_up(sub: &mut EventSubscription, what: &str) {
    match next_item(sub, what).await {
        SubscriptionItem::CaughtUp => {}
        SubscriptionItem::Event(e) => panic!("{what}: expected CaughtUp, got event {} ({})", e.id, e.kind),
    }
}

// ---------------------------------------------------------------- append

/// `append` stores a batch in order, reports each event's position, and stamps `recorded_at` at append time.
pub async fn append_stores_events_with_positions_and_recorded_at(store: &dyn EventStore) {
    let batch = evs("login_failed", 3);
    let before = now_ms() - TimeDelta::seconds(60);
    let outcome = append(store, batch.clone()).await;
    let after = now_ms() + TimeDelta::seconds(60);

    assert_eq!(outcome.events.iter().map(|a| a.id).collect::<Vec<_>>(), new_ids(&batch), "outcome order");
    assert_eq!(outcome.appended(), 3);
    assert_eq!(outcome.duplicates(), 0);
    let stored = read_all(store).await;
    assert_eq!(ids(&stored), new_ids(&batch), "stored events");
    assert_eq!(positions(&stored), outcome.events.iter().map(|a| a.position).collect::<Vec<_>>(), "reported positions");
    assert_strictly_increasing(&positions(&stored), "batch positions");
    for e in &stored {
        assert!(
            e.recorded_at >= before && e.recorded_at <= after,
            "recorded_at {} is not the time of the append",
            e.recorded_at
        );
        assert_eq!(e.recorded_at, truncate_ms(e.recorded_at), "recorded_at has sub-millisecond precision");
    }
}

/// A failing batch stores none of its events; the corrected retry stores each once (retry only without `atomic_batch`).
pub async fn append_is_atomic(store: &dyn EventStore) {
    let seed = append(store, vec![ev("seed")]).await;
    let mut batch = evs("probe", 100);
    let last = batch.len() - 1;
    batch[last].data = json!(["not", "an", "object"]);

    let r = store.append(AppendBatch::new(batch.clone())).await;
    assert_kind(r, ErrorKind::InvalidInput, "append with an invalid last event");
    if store.capabilities().atomic_batch {
        assert_eq!(ids(&read_all(store).await), vec![seed.events[0].id], "a failed batch left events behind");
    }

    batch[last].data = json!({});
    let retried = append(store, batch.clone()).await;
    if store.capabilities().atomic_batch {
        assert_eq!(retried.duplicates(), 0, "events of the failed batch were stored");
    }
    let stored = ids(&read_all(store).await);
    let mut want = vec![seed.events[0].id];
    want.extend(new_ids(&batch));
    assert_eq!(stored, want, "each event stored exactly once");
    if !store.capabilities().atomic_batch {
        crate::not_applicable("atomic_batch");
    }
}

/// Re-appending a batch reports each event as a duplicate at its original position and stores nothing twice.
pub async fn append_is_idempotent_by_event_id(store: &dyn EventStore) {
    let batch = evs("blocked", 3);
    let first = append(store, batch.clone()).await;
    let second = append(store, batch.clone()).await;

    assert_eq!(second.duplicates(), 3, "{second:?}");
    assert_eq!(second.appended(), 0);
    for (a, b) in first.events.iter().zip(&second.events) {
        assert_eq!((a.id, a.position), (b.id, b.position), "duplicate must report the original position");
    }
    assert_eq!(ids(&read_all(store).await), new_ids(&batch), "stored twice");
}

/// Retrying a batch whose prefix is stored stores only the new events and flags the old ones as duplicates.
pub async fn append_retry_of_partially_stored_batch_stores_only_new_events(store: &dyn EventStore) {
    let batch = evs("scan", 4);
    let first = append(store, batch[..2].to_vec()).await;
    let retry = append(store, batch.clone()).await;

    let flags: Vec<bool> = retry.events.iter().map(|a| a.duplicate).collect();
    assert_eq!(flags, vec![true, true, false, false], "duplicate flags");
    assert_eq!(retry.events[0].position, first.events[0].position);
    assert_eq!(retry.events[1].position, first.events[1].position);
    assert!(retry.events[2].position > first.events[1].position, "new events go after the stored ones");
    assert_eq!(ids(&read_all(store).await), new_ids(&batch), "stored events");
}

/// A duplicate reports the position and stream version it was first stored with, even after later appends.
pub async fn duplicate_reports_original_position_and_version(store: &dyn EventStore) {
    let first = ev("poi_tagged").with_stream("case-7");
    let original = append(store, vec![first.clone()]).await.events[0];
    append(store, vec![ev("poi_tagged").with_stream("case-7"), ev("other")]).await;

    let again = append(store, vec![first]).await.events[0];
    assert!(again.duplicate);
    assert_eq!(again.position, original.position, "position");
    assert_eq!(again.version, Some(1), "version");
    assert_eq!(read_all(store).await.len(), 3);
}

/// Two events with the same id in one batch are `InvalidInput`; nothing is stored.
pub async fn duplicate_id_within_one_batch_is_invalid_input(store: &dyn EventStore) {
    let seed = ids(&read_all(store).await);
    let a = ev("a");
    let twin = ev("b").with_id(a.id);
    let r = store.append(AppendBatch::new(vec![a, ev("c"), twin])).await;
    assert_kind(r, ErrorKind::InvalidInput, "append with a repeated id");
    assert_eq!(ids(&read_all(store).await), seed, "store changed");
}

/// An empty batch (with or without expectations) is `InvalidInput` and changes nothing.
pub async fn empty_batch_is_invalid_input(store: &dyn EventStore) {
    append(store, vec![ev("seed")]).await;
    let before = ids(&read_all(store).await);
    assert_kind(store.append(AppendBatch::new(vec![])).await, ErrorKind::InvalidInput, "empty batch");
    let expecting = AppendBatch::new(vec![]).expect("s", ExpectedVersion::NoStream);
    assert_kind(store.append(expecting).await, ErrorKind::InvalidInput, "empty batch with expectation");
    assert_eq!(ids(&read_all(store).await), before, "store changed");
    // The expectation must not have created the stream.
    ok(
        append_expecting(store, vec![ev("x").with_stream("s")], "s", ExpectedVersion::NoStream).await,
        "stream s is new",
    );
}

/// Each kind of bad event field is `InvalidInput`, and the batch around it is not stored.
pub async fn invalid_event_fields_are_invalid_input_and_store_nothing(store: &dyn EventStore) {
    append(store, vec![ev("seed")]).await;
    let before = ids(&read_all(store).await);
    let long = "k".repeat(MAX_NAME_LEN + 1);
    let bad: Vec<(&str, NewEvent)> = vec![
        ("empty source", NewEvent::new("", "k")),
        ("empty kind", ev("")),
        ("kind over 256 bytes", ev(&long)),
        ("kind with a newline", ev("a\nb")),
        ("kind with NUL", ev("a\0b")),
        ("empty stream", ev("k").with_stream("")),
        ("stream over 256 bytes", ev("k").with_stream(long.clone())),
        ("empty session", ev("k").with_session("")),
        ("empty tag", ev("k").with_tag("")),
        ("too many tags", (0..=MAX_TAGS).fold(ev("k"), |e, i| e.with_tag(format!("t{i}")))),
        ("array data", ev("k").with_data(json!([1, 2]))),
        ("string data", ev("k").with_data(json!("text"))),
        ("null data", ev("k").with_data(json!(null))),
    ];
    for (what, event) in bad {
        let r = store.append(AppendBatch::new(vec![ev("fine"), event])).await;
        assert_kind(r, ErrorKind::InvalidInput, what);
    }
    assert_eq!(ids(&read_all(store).await), before, "store changed");
}

// ---------------------------------------------------------------- expected versions

/// `NoStream` holds for a stream without events; its first event gets version 1.
pub async fn expected_version_no_stream_succeeds_on_new_stream(store: &dyn EventStore) {
    let r =
        append_expecting(store, vec![ev("opened").with_stream("case-1")], "case-1", ExpectedVersion::NoStream).await;
    let outcome = ok(r, "append with NoStream on a new stream");
    assert_eq!(outcome.events[0].version, Some(1));
    assert_eq!(read_all(store).await.len(), 1);
}

/// `NoStream` on a stream that has events is `Conflict` naming the actual version.
pub async fn expected_version_no_stream_conflicts_on_existing_stream(store: &dyn EventStore) {
    append(store, vec![ev("opened").with_stream("case-1")]).await;
    let r = append_expecting(store, vec![ev("again").with_stream("case-1")], "case-1", ExpectedVersion::NoStream).await;
    assert_version_conflict(r, "case-1", ExpectedVersion::NoStream, 1);
}

/// `Exact(n)` holds when the stream is at `n`, also for n ≥ 10 (versions compare as numbers).
pub async fn expected_version_exact_succeeds_at_version_ten_and_beyond(store: &dyn EventStore) {
    let r = append_expecting(store, vec![ev("v").with_stream("s")], "s", ExpectedVersion::NoStream).await;
    assert_eq!(ok(r, "first append").events[0].version, Some(1));
    for n in 1..=12u64 {
        let r = append_expecting(store, vec![ev("v").with_stream("s")], "s", ExpectedVersion::Exact(n)).await;
        assert_eq!(ok(r, &format!("append expecting Exact({n})")).events[0].version, Some(n + 1));
    }
    let r = append_expecting(store, vec![ev("v").with_stream("s")], "s", ExpectedVersion::Exact(9)).await;
    assert_version_conflict(r, "s", ExpectedVersion::Exact(9), 13);
}

/// `Exact(n)` on a stream at another version is `Conflict` with expected and actual versions.
pub async fn expected_version_exact_mismatch_is_conflict_with_versions(store: &dyn EventStore) {
    append(store, vec![ev("a").with_stream("s"), ev("b").with_stream("s"), ev("c").with_stream("s")]).await;
    for wrong in [2, 4] {
        let r = append_expecting(store, vec![ev("d").with_stream("s")], "s", ExpectedVersion::Exact(wrong)).await;
        assert_version_conflict(r, "s", ExpectedVersion::Exact(wrong), 3);
    }
    let r = append_expecting(store, vec![ev("d").with_stream("new")], "new", ExpectedVersion::Exact(1)).await;
    assert_version_conflict(r, "new", ExpectedVersion::Exact(1), 0);
}

/// A version conflict stores no event of the batch, not even those of other streams.
pub async fn expected_version_conflict_stores_nothing(store: &dyn EventStore) {
    append(store, vec![ev("a").with_stream("s")]).await;
    let before = ids(&read_all(store).await);
    let batch = AppendBatch::new(vec![ev("b").with_stream("other"), ev("c"), ev("d").with_stream("s")])
        .expect("s", ExpectedVersion::Exact(5));
    assert_kind(store.append(batch).await, ErrorKind::Conflict, "append with a wrong expectation");

    assert_eq!(ids(&read_all(store).await), before, "store changed");
    let r = append_expecting(store, vec![ev("b").with_stream("other")], "other", ExpectedVersion::NoStream).await;
    ok(r, "stream `other` must still be new");
    let r = append_expecting(store, vec![ev("e").with_stream("s")], "s", ExpectedVersion::Exact(1)).await;
    assert_eq!(ok(r, "stream `s` must still be at 1").events[0].version, Some(2));
}

/// `Any` appends whether or not the stream exists.
pub async fn expected_version_any_always_appends(store: &dyn EventStore) {
    for want in 1..=3u64 {
        let r = append_expecting(store, vec![ev("a").with_stream("s")], "s", ExpectedVersion::Any).await;
        assert_eq!(ok(r, "append with Any").events[0].version, Some(want));
    }
    assert_eq!(read_all(store).await.len(), 3);
}

/// `Exact(0)` is `InvalidInput` (callers must say `NoStream`) and stores nothing.
pub async fn exact_zero_expected_version_is_invalid_input(store: &dyn EventStore) {
    append(store, vec![ev("seed")]).await;
    let before = ids(&read_all(store).await);
    let r = append_expecting(store, vec![ev("a").with_stream("s")], "s", ExpectedVersion::Exact(0)).await;
    assert_kind(r, ErrorKind::InvalidInput, "Exact(0)");
    assert_eq!(ids(&read_all(store).await), before, "store changed");
}

/// Events of one stream get versions `current+1, …` in batch order, per stream.
pub async fn stream_versions_are_assigned_in_batch_order(store: &dyn EventStore) {
    let on = |s: &str| ev("step").with_stream(s);
    let first = append(store, vec![on("a"), on("b"), on("a"), ev("none"), on("a"), on("b")]).await;
    let versions: Vec<Option<u64>> = first.events.iter().map(|a| a.version).collect();
    assert_eq!(versions, vec![Some(1), Some(1), Some(2), None, Some(3), Some(2)]);

    let second = append(store, vec![on("b"), on("a")]).await;
    let versions: Vec<Option<u64>> = second.events.iter().map(|a| a.version).collect();
    assert_eq!(versions, vec![Some(3), Some(4)]);

    let stored: Vec<(Option<String>, Option<u64>)> =
        read_all(store).await.into_iter().map(|e| (e.stream, e.version)).collect();
    let s = |n: &str, v| (Some(n.to_owned()), Some(v));
    let want = vec![s("a", 1), s("b", 1), s("a", 2), (None, None), s("a", 3), s("b", 2), s("b", 3), s("a", 4)];
    assert_eq!(stored, want, "stored versions");
}

/// Retrying a fully stored batch succeeds as duplicates although its expectation no longer holds.
pub async fn retried_batch_with_expected_version_is_idempotent(store: &dyn EventStore) {
    let batch = vec![ev("a").with_stream("s"), ev("b").with_stream("s")];
    let first = ok(append_expecting(store, batch.clone(), "s", ExpectedVersion::NoStream).await, "first append");
    let retry = ok(append_expecting(store, batch.clone(), "s", ExpectedVersion::NoStream).await, "retried append");

    assert_eq!(retry.duplicates(), 2);
    assert_eq!(retry.events, first.events.iter().map(|a| Appended { duplicate: true, ..*a }).collect::<Vec<_>>());
    assert_eq!(ids(&read_all(store).await), new_ids(&batch));
}

// ---------------------------------------------------------------- order

/// Positions increase in the order events were appended, across and within batches.
pub async fn positions_increase_in_append_order(store: &dyn EventStore) {
    let mut appended = Vec::new();
    for _ in 0..5 {
        appended.extend(append(store, vec![ev("single")]).await.events);
    }
    appended.extend(append(store, evs("batch", 5)).await.events);
    appended.extend(append(store, vec![ev("single")]).await.events);

    let reported: Vec<Position> = appended.iter().map(|a| a.position).collect();
    assert_strictly_increasing(&reported, "reported positions");
    let stored = read_all(store).await;
    assert_eq!(ids(&stored), appended.iter().map(|a| a.id).collect::<Vec<_>>(), "read order");
    assert_eq!(positions(&stored), reported, "stored positions");
}

/// With `gap_free_order`, `major` grows by exactly 1 (`minor` fixed), even across failed appends.
pub async fn gap_free_positions_are_consecutive(store: &dyn EventStore) {
    let dup = ev("a");
    append(store, vec![dup.clone(), ev("b")]).await;
    let r = append_expecting(store, vec![ev("c").with_stream("s")], "s", ExpectedVersion::Exact(3)).await;
    assert_kind(r, ErrorKind::Conflict, "append with a wrong expectation");
    append(store, vec![ev("c")]).await;
    append(store, vec![dup]).await;
    append(store, evs("d", 4)).await;

    let ps = positions(&read_all(store).await);
    assert_eq!(ps.len(), 7);
    assert_strictly_increasing(&ps, "positions");
    if !store.capabilities().gap_free_order {
        // Gap-safe order (checked above) is all such a store promises.
        crate::not_applicable("gap_free_order");
        return;
    }
    for w in ps.windows(2) {
        assert_eq!(w[1], Position::new(w[0].major + 1, w[0].minor), "gap after {}", w[0]);
    }
}

// ---------------------------------------------------------------- read

/// `read(Start)` returns every event in append order.
pub async fn read_from_start_returns_all_in_order(store: &dyn EventStore) {
    let mut all = Vec::new();
    for n in [1, 3, 2] {
        let batch = evs("r", n);
        all.extend(new_ids(&batch));
        append(store, batch).await;
    }
    let page = ok(store.read(Cursor::Start, 100).await, "read");
    assert_eq!(ids(&page), all);
    assert_strictly_increasing(&positions(&page), "read");
}

/// `read(After(p))` returns only events strictly after `p`.
pub async fn read_after_cursor_excludes_the_cursor(store: &dyn EventStore) {
    let batch = evs("r", 5);
    let outcome = append(store, batch.clone()).await;
    let third = outcome.events[2].position;

    let page = ok(store.read(Cursor::After(third), 100).await, "read after the third");
    assert_eq!(ids(&page), new_ids(&batch[3..]));
    let last = outcome.events[4].position;
    assert!(ok(store.read(Cursor::After(last), 100).await, "read after the last").is_empty());
}

/// `read` returns at most `limit` events, the oldest first.
pub async fn read_respects_limit(store: &dyn EventStore) {
    let batch = evs("r", 10);
    append(store, batch.clone()).await;
    let first = ok(store.read(Cursor::Start, 3).await, "read 3");
    assert_eq!(ids(&first), new_ids(&batch[..3]));
    let next = ok(store.read(Cursor::After(first[2].position), 3).await, "read 3 more");
    assert_eq!(ids(&next), new_ids(&batch[3..6]));
    let one = ok(store.read(Cursor::Start, 1).await, "read 1");
    assert_eq!(ids(&one), new_ids(&batch[..1]));
}

/// A read limit of 0 or above `MAX_PAGE` is `InvalidInput`.
pub async fn read_limit_zero_is_invalid_input(store: &dyn EventStore) {
    append(store, vec![ev("seed")]).await;
    assert_kind(store.read(Cursor::Start, 0).await, ErrorKind::InvalidInput, "read limit 0");
    assert_kind(store.read(Cursor::Start, MAX_PAGE + 1).await, ErrorKind::InvalidInput, "read limit MAX_PAGE+1");
}

// ---------------------------------------------------------------- fields

/// `occurred_at` is stored at millisecond precision (truncated, not rounded).
pub async fn occurred_at_is_truncated_to_milliseconds(store: &dyn EventStore) {
    let precise = base() + TimeDelta::nanoseconds(123_999_999);
    append(store, vec![ev("t").with_occurred_at(precise)]).await;
    let stored = read_all(store).await;
    assert_eq!(stored[0].occurred_at, at(123), "occurred_at");
}

/// Every field of an event comes back as it was appended.
pub async fn event_fields_round_trip(store: &dyn EventStore) {
    let data = json!({
        "path": "/login?next=%2F",
        "attempts": 3,
        "score": 0.75,
        "big": i64::MAX,
        "negative": -42,
        "blocked": false,
        "none": null,
        "list": [1, "two", {"three": 3}, []],
        "nested": {"ünïcödé": "✓ 🚀", "quote\"key": "line\nbreak", "": {}}
    });
    let event = NewEvent::new("gatekeeper", "poi_tagged")
        .with_id(Uuid::new_v4())
        .with_stream("case-42")
        .with_session("sess-ünï 1")
        .with_client_ip(ip("2001:db8::7"))
        .with_tag("malicious")
        .with_tag("rule:sqli")
        .with_tag("ünï ✓")
        .with_data(data.clone())
        .with_occurred_at(at(1_234));
    let appended = append(store, vec![event.clone()]).await.events[0];
    let stored = read_all(store).await.remove(0);

    assert_eq!(stored.id, event.id);
    assert_eq!(stored.source, "gatekeeper");
    assert_eq!(stored.kind, "poi_tagged");
    assert_eq!(stored.stream.as_deref(), Some("case-42"));
    assert_eq!(stored.version, Some(1));
    assert_eq!(stored.session_id.as_deref(), Some("sess-ünï 1"));
    assert_eq!(stored.client_ip, Some(ip("2001:db8::7")));
    assert_eq!(stored.tags, vec!["malicious", "rule:sqli", "ünï ✓"]);
    assert_eq!(stored.data, data);
    assert_eq!(stored.occurred_at, at(1_234));
    assert_eq!(stored.position, appended.position);
}

/// A client IP `::ffff:1.2.3.4` is stored and returned as plain IPv4 `1.2.3.4`, and IPv4 filters find it.
pub async fn ipv4_mapped_client_ip_is_stored_as_ipv4(store: &dyn EventStore) {
    append(store, vec![ev("hit").with_client_ip(ip("::ffff:1.2.3.4"))]).await;
    let stored = read_all(store).await;
    assert_eq!(stored[0].client_ip, Some(ip("1.2.3.4")));
    let found = query_ids(store, EventFilter::all().client_ip(ip("1.2.3.4"))).await;
    assert_eq!(found, ids(&stored), "query by the IPv4 address");
    let found = query_ids(store, EventFilter::all().client_net(net("1.2.0.0/16"))).await;
    assert_eq!(found, ids(&stored), "query by an IPv4 network");
}

// ---------------------------------------------------------------- query filters

/// A kind filter matches events whose kind is any of the listed kinds.
pub async fn query_filters_by_kind(store: &dyn EventStore) {
    let batch = vec![ev("a"), ev("b"), ev("c"), ev("a")];
    let ids_of = new_ids(&batch);
    append(store, batch).await;
    assert_eq!(query_ids(store, EventFilter::all().kind("a")).await, vec![ids_of[0], ids_of[3]]);
    assert_eq!(query_ids(store, EventFilter::all().kind("a").kind("c")).await, vec![ids_of[0], ids_of[2], ids_of[3]]);
    assert!(query_ids(store, EventFilter::all().kind("z")).await.is_empty());
}

/// A source filter matches events whose source is any of the listed sources.
pub async fn query_filters_by_source(store: &dyn EventStore) {
    let batch = vec![
        NewEvent::new("waf", "k"),
        NewEvent::new("ids", "k"),
        NewEvent::new("waf", "k"),
        NewEvent::new("vpn", "k"),
    ];
    let ids_of = new_ids(&batch);
    append(store, batch).await;
    assert_eq!(query_ids(store, EventFilter::all().source("waf")).await, vec![ids_of[0], ids_of[2]]);
    assert_eq!(query_ids(store, EventFilter::all().source("ids").source("vpn")).await, vec![ids_of[1], ids_of[3]]);
}

/// A stream filter matches only that stream's events.
pub async fn query_filters_by_stream(store: &dyn EventStore) {
    let batch = vec![ev("k").with_stream("s1"), ev("k").with_stream("s2"), ev("k"), ev("k").with_stream("s1")];
    let ids_of = new_ids(&batch);
    append(store, batch).await;
    assert_eq!(query_ids(store, EventFilter::all().stream("s1")).await, vec![ids_of[0], ids_of[3]]);
    assert_eq!(query_ids(store, EventFilter::all().stream("s2")).await, vec![ids_of[1]]);
}

/// A session filter matches only that session's events.
pub async fn query_filters_by_session(store: &dyn EventStore) {
    let batch = vec![ev("k").with_session("x"), ev("k"), ev("k").with_session("y"), ev("k").with_session("x")];
    let ids_of = new_ids(&batch);
    append(store, batch).await;
    assert_eq!(query_ids(store, EventFilter::all().session("x")).await, vec![ids_of[0], ids_of[3]]);
    assert_eq!(query_ids(store, EventFilter::all().session("y")).await, vec![ids_of[2]]);
}

/// A single-address filter matches exactly that IPv4 or IPv6 address.
pub async fn query_filters_by_exact_client_ip(store: &dyn EventStore) {
    let addrs = ["10.0.0.1", "10.0.0.2", "2001:db8::1", "2001:db8::2"];
    let mut batch: Vec<NewEvent> = addrs.iter().map(|a| ev("k").with_client_ip(ip(a))).collect();
    batch.push(ev("k"));
    let ids_of = new_ids(&batch);
    append(store, batch).await;
    assert_eq!(query_ids(store, EventFilter::all().client_ip(ip("10.0.0.1"))).await, vec![ids_of[0]]);
    assert_eq!(query_ids(store, EventFilter::all().client_ip(ip("2001:db8::2"))).await, vec![ids_of[3]]);
    assert!(query_ids(store, EventFilter::all().client_ip(ip("10.0.0.3"))).await.is_empty());
}

/// A CIDR filter matches addresses inside the network, for IPv4 and IPv6.
pub async fn query_filters_by_cidr(store: &dyn EventStore) {
    let addrs = ["10.1.2.3", "10.200.0.1", "11.0.0.1", "192.168.1.1", "2001:db8::1", "2001:db8:ffff::5", "2001:db9::1"];
    let mut batch: Vec<NewEvent> = addrs.iter().map(|a| ev("k").with_client_ip(ip(a))).collect();
    batch.push(ev("k"));
    let i = new_ids(&batch);
    append(store, batch).await;
    let by = |n: &str| EventFilter::all().client_net(net(n));
    assert_eq!(query_ids(store, by("10.0.0.0/8")).await, vec![i[0], i[1]]);
    assert_eq!(query_ids(store, by("192.168.0.0/16")).await, vec![i[3]]);
    assert!(query_ids(store, by("172.16.0.0/12")).await.is_empty());
    assert_eq!(query_ids(store, by("2001:db8::/32")).await, vec![i[4], i[5]]);
    assert_eq!(query_ids(store, by("2001:db8::/64")).await, vec![i[4]]);
}

/// A tag filter matches events carrying every listed tag.
pub async fn query_filters_by_all_tags(store: &dyn EventStore) {
    let batch =
        vec![ev("k").with_tag("a").with_tag("b"), ev("k").with_tag("a"), ev("k").with_tag("b").with_tag("c"), ev("k")];
    let i = new_ids(&batch);
    append(store, batch).await;
    assert_eq!(query_ids(store, EventFilter::all().tag("a")).await, vec![i[0], i[1]]);
    assert_eq!(query_ids(store, EventFilter::all().tag("a").tag("b")).await, vec![i[0]]);
    assert!(query_ids(store, EventFilter::all().tag("a").tag("c")).await.is_empty());
}

/// A time range is half-open, `[from, to)`, at millisecond precision.
pub async fn query_filters_by_half_open_time_range(store: &dyn EventStore) {
    let offsets = [0, 1, 999, 1_000, 2_000];
    let batch: Vec<NewEvent> = offsets.iter().map(|&ms| ev("k").with_occurred_at(at(ms))).collect();
    let i = new_ids(&batch);
    append(store, batch).await;
    let within = |r: TimeRange| EventFilter::all().time(r);
    assert_eq!(query_ids(store, within(TimeRange::between(at(1), at(1_000)))).await, vec![i[1], i[2]]);
    assert_eq!(query_ids(store, within(TimeRange::since(at(1_000)))).await, vec![i[3], i[4]]);
    assert_eq!(query_ids(store, within(TimeRange::until(at(1)))).await, vec![i[0]]);
    assert!(query_ids(store, within(TimeRange::between(at(1), at(1)))).await.is_empty(), "empty range");
}

/// All given restrictions must hold at once.
pub async fn query_combines_filters_with_and(store: &dyn EventStore) {
    let batch = vec![
        NewEvent::new("waf", "blocked").with_tag("bad").with_occurred_at(at(0)),
        NewEvent::new("ids", "blocked").with_tag("bad").with_occurred_at(at(0)),
        NewEvent::new("waf", "allowed").with_tag("bad").with_occurred_at(at(0)),
        NewEvent::new("waf", "blocked").with_occurred_at(at(0)),
        NewEvent::new("waf", "blocked").with_tag("bad").with_occurred_at(at(5_000)),
    ];
    let i = new_ids(&batch);
    append(store, batch).await;
    let filter = EventFilter::all().source("waf").kind("blocked").tag("bad").time(TimeRange::until(at(1_000)));
    assert_eq!(query_ids(store, filter).await, vec![i[0]]);
}

/// The default order is newest first (highest position first).
pub async fn query_is_newest_first_by_default(store: &dyn EventStore) {
    let batch = evs("k", 4);
    append(store, batch.clone()).await;
    let page = PageRequest { limit: 10, order: Order::default(), after: None };
    let got = ok(store.query(EventFilter::all(), page).await, "query");
    let mut want = new_ids(&batch);
    want.reverse();
    assert_eq!(ids(&got.items), want);
}

/// `Order::OldestFirst` returns the lowest position first.
pub async fn query_oldest_first(store: &dyn EventStore) {
    let batch = evs("k", 4);
    append(store, batch.clone()).await;
    let got = ok(store.query(EventFilter::all(), PageRequest::oldest(10)).await, "query");
    assert_eq!(ids(&got.items), new_ids(&batch));
}

/// Following `next` visits every matching event once, in order, in both directions.
pub async fn query_paginates_without_duplicates_or_gaps(store: &dyn EventStore) {
    let mut batch = Vec::new();
    for n in 0..50 {
        batch.push(if n % 2 == 0 { ev("match") } else { ev("skip") });
    }
    let want: Vec<Uuid> = batch.iter().filter(|e| e.kind == "match").map(|e| e.id).collect();
    append(store, batch).await;

    for first in [PageRequest::oldest(7), PageRequest::newest(7)] {
        let mut got = Vec::new();
        let mut page = first;
        for _ in 0..10 {
            let p = ok(store.query(EventFilter::all().kind("match"), page).await, "query page");
            assert!(p.items.len() <= 7, "page over limit");
            got.extend(ids(&p.items));
            match p.next {
                Some(next) => page = first.continue_after(next),
                None => break,
            }
        }
        let mut expected = want.clone();
        if first.order == Order::NewestFirst {
            expected.reverse();
        }
        assert_eq!(got, expected, "pages in {:?}", first.order);
    }
}

/// `next` is `None` on the last page, also when that page is exactly full.
pub async fn query_next_is_none_on_last_page(store: &dyn EventStore) {
    assert_eq!(ok(store.query(EventFilter::all(), PageRequest::newest(3)).await, "empty").next, None, "empty result");
    append(store, evs("k", 6)).await;
    let first = ok(store.query(EventFilter::all(), PageRequest::oldest(3)).await, "first page");
    let next = first.next.expect("more events matched, so `next` must be set");
    let second = ok(store.query(EventFilter::all(), PageRequest::oldest(3).continue_after(next)).await, "second page");
    assert_eq!(second.items.len(), 3);
    assert_eq!(second.next, None, "exactly full last page");
    let all = ok(store.query(EventFilter::all(), PageRequest::oldest(10)).await, "one page");
    assert_eq!((all.items.len(), all.next), (6, None), "short page");
}

/// A time range with `from > to` is `InvalidInput`.
pub async fn query_reversed_time_range_is_invalid_input(store: &dyn EventStore) {
    append(store, vec![ev("k").with_occurred_at(at(500))]).await;
    let filter = EventFilter::all().time(TimeRange::between(at(1_000), at(0)));
    assert_kind(store.query(filter, PageRequest::newest(10)).await, ErrorKind::InvalidInput, "reversed range");
}

// ---------------------------------------------------------------- analytics

/// `count_by(Kind)` orders groups by count descending, then key by code point.
pub async fn count_by_kind_orders_by_count_then_key(store: &dyn EventStore) {
    if !analytics(store).await {
        return;
    }
    let mut batch = Vec::new();
    for (kind, n) in [("b", 3), ("a", 3), ("c", 1), ("d", 5), ("Z", 3)] {
        batch.extend(evs(kind, n));
    }
    append(store, batch).await;
    let got = count_by(store, EventFilter::all(), GroupBy::Kind, 10).await;
    assert_eq!(got, groups(&[("d", 5), ("Z", 3), ("a", 3), ("b", 3), ("c", 1)]));
}

/// `count_by(ClientIp)` keys groups by the canonical address text and keeps the top N.
pub async fn count_by_client_ip_returns_top_n(store: &dyn EventStore) {
    if !analytics(store).await {
        return;
    }
    let mut batch = Vec::new();
    for (addr, n) in [("10.0.0.1", 4), ("10.0.0.2", 3), ("2001:db8::1", 3), ("192.0.2.9", 1)] {
        batch.extend((0..n).map(|_| ev("k").with_client_ip(ip(addr))));
    }
    batch.extend(evs("k", 5));
    append(store, batch).await;
    let top2 = count_by(store, EventFilter::all(), GroupBy::ClientIp, 2).await;
    assert_eq!(top2, groups(&[("10.0.0.1", 4), ("10.0.0.2", 3)]));
    let all = count_by(store, EventFilter::all(), GroupBy::ClientIp, 10).await;
    assert_eq!(all, groups(&[("10.0.0.1", 4), ("10.0.0.2", 3), ("2001:db8::1", 3), ("192.0.2.9", 1)]));
}

/// `count_by(Tag)` counts an event once for each distinct tag it carries.
pub async fn count_by_tag_counts_each_tag(store: &dyn EventStore) {
    if !analytics(store).await {
        return;
    }
    let batch = vec![
        ev("k").with_tag("x").with_tag("y"),
        ev("k").with_tag("x"),
        ev("k").with_tag("y").with_tag("z"),
        ev("k").with_tag("z").with_tag("z"),
        ev("k"),
    ];
    append(store, batch).await;
    let got = count_by(store, EventFilter::all(), GroupBy::Tag, 10).await;
    assert_eq!(got, groups(&[("x", 2), ("y", 2), ("z", 2)]));
}

/// `count_by(Session)` does not count events without a session.
pub async fn count_by_session_skips_events_without_session(store: &dyn EventStore) {
    if !analytics(store).await {
        return;
    }
    let batch =
        vec![ev("k").with_session("s1"), ev("k"), ev("k").with_session("s2"), ev("k"), ev("k").with_session("s1")];
    append(store, batch).await;
    let got = count_by(store, EventFilter::all(), GroupBy::Session, 10).await;
    assert_eq!(got, groups(&[("s1", 2), ("s2", 1)]));
}

/// `count_by` counts only events matching the filter, including its time window.
pub async fn count_by_respects_filter_window(store: &dyn EventStore) {
    if !analytics(store).await {
        return;
    }
    let batch = vec![
        ev("sqli").with_occurred_at(at(-1)),
        ev("sqli").with_occurred_at(at(0)),
        ev("xss").with_occurred_at(at(500)),
        ev("sqli").with_occurred_at(at(999)),
        ev("sqli").with_occurred_at(at(1_000)),
        NewEvent::new("other", "sqli").with_occurred_at(at(10)),
    ];
    append(store, batch).await;
    let filter = EventFilter::all().source(SOURCE).time(TimeRange::between(at(0), at(1_000)));
    let got = count_by(store, filter, GroupBy::Kind, 10).await;
    assert_eq!(got, groups(&[("sqli", 2), ("xss", 1)]));
}

/// `count_by` with `top = 0` is `InvalidInput`.
pub async fn count_by_top_zero_is_invalid_input(store: &dyn EventStore) {
    if !analytics(store).await {
        return;
    }
    append(store, vec![ev("k")]).await;
    assert_kind(store.count_by(EventFilter::all(), GroupBy::Kind, 0).await, ErrorKind::InvalidInput, "top 0");
}

// ---------------------------------------------------------------- retention

/// `purge(before)` deletes exactly the events with `occurred_at < before`, counts them, and frees their ids.
pub async fn purge_removes_events_before_instant_and_returns_count(store: &dyn EventStore) {
    let batch: Vec<NewEvent> = [-2_000, -1, 0, 1_000].iter().map(|&ms| ev("k").with_occurred_at(at(ms))).collect();
    append(store, batch.clone()).await;

    assert_eq!(ok(store.purge(base()).await, "purge"), 2);
    assert_eq!(ids(&read_all(store).await), new_ids(&batch[2..]));
    assert_eq!(ok(store.purge(base()).await, "second purge"), 0);

    let again = append(store, vec![batch[0].clone()]).await;
    assert!(!again.events[0].duplicate, "a purged id must be appendable again");
}

/// Events that survive a purge keep their positions, and later events still go after them.
pub async fn purge_keeps_positions_of_remaining_events(store: &dyn EventStore) {
    let batch: Vec<NewEvent> = [-5, 5, -4, 6].iter().map(|&ms| ev("k").with_occurred_at(at(ms))).collect();
    let outcome = append(store, batch).await;
    ok(store.purge(base()).await, "purge");

    let kept = read_all(store).await;
    assert_eq!(positions(&kept), vec![outcome.events[1].position, outcome.events[3].position]);
    let later = append(store, vec![ev("later")]).await.events[0].position;
    assert!(later > outcome.events[3].position, "a new event went below an earlier position");
}

// ---------------------------------------------------------------- subscribe

/// `subscribe` yields stored events in order, one `CaughtUp`, then later events in order (needs `live_tail`).
pub async fn subscribe_catches_up_then_signals_caught_up_then_streams_live(store: &dyn EventStore) {
    let old = evs("old", 3);
    append(store, old.clone()).await;
    let Some(mut sub) = subscribe(store, Cursor::Start, EventFilter::all()).await else { return };

    for want in new_ids(&old) {
        assert_eq!(next_event(&mut sub, "catch-up").await.id, want);
    }
    expect_caught_up(&mut sub, "after catch-up").await;
    let live = evs("live", 3);
    append(store, live[..1].to_vec()).await;
    append(store, live[1..].to_vec()).await;
    let mut last = None;
    for want in new_ids(&live) {
        let e = next_event(&mut sub, "live").await;
        assert_eq!(e.id, want, "live order");
        assert!(last < Some(e.position));
        last = Some(e.position);
    }
}

/// A subscription after a cursor starts strictly after it.
pub async fn subscribe_after_cursor_skips_earlier_events(store: &dyn EventStore) {
    let batch = evs("k", 4);
    let outcome = append(store, batch.clone()).await;
    let Some(mut sub) = subscribe(store, Cursor::After(outcome.events[1].position), EventFilter::all()).await else {
        return;
    };
    for want in new_ids(&batch[2..]) {
        assert_eq!(next_event(&mut sub, "catch-up").await.id, want);
    }
    expect_caught_up(&mut sub, "after catch-up").await;
}

/// A subscription's filter applies to caught-up and live events alike.
pub async fn subscribe_applies_filter_to_catch_up_and_live(store: &dyn EventStore) {
    let old = vec![ev("a"), ev("b"), ev("a")];
    append(store, old.clone()).await;
    let Some(mut sub) = subscribe(store, Cursor::Start, EventFilter::all().kind("a")).await else { return };

    assert_eq!(next_event(&mut sub, "catch-up").await.id, old[0].id);
    assert_eq!(next_event(&mut sub, "catch-up").await.id, old[2].id);
    expect_caught_up(&mut sub, "after catch-up").await;
    let skipped = ev("b");
    let wanted = ev("a");
    append(store, vec![skipped]).await;
    append(store, vec![wanted.clone()]).await;
    assert_eq!(next_event(&mut sub, "live").await.id, wanted.id, "live event not filtered");
}

/// On an empty store the first item is `CaughtUp`, then live events follow.
pub async fn subscribe_on_empty_store_signals_caught_up_first(store: &dyn EventStore) {
    let Some(mut sub) = subscribe(store, Cursor::Start, EventFilter::all()).await else { return };
    expect_caught_up(&mut sub, "first item").await;
    let live = ev("first");
    append(store, vec![live.clone()]).await;
    assert_eq!(next_event(&mut sub, "live").await.id, live.id);
}

// ---------------------------------------------------------------- concurrency

/// Of 32 concurrent appends expecting one version, exactly one wins; the rest are `Conflict` naming the new version.
pub async fn concurrent_appends_with_expected_version_admit_one_winner(store: &dyn EventStore) {
    append(store, vec![ev("opened").with_stream("s")]).await;
    let attempts =
        (0..32).map(|_| append_expecting(store, vec![ev("claim").with_stream("s")], "s", ExpectedVersion::Exact(1)));
    let results = join_all(attempts).await;

    let winners = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(winners, 1, "winners among 32 concurrent appends");
    for r in results.into_iter().filter(|r| r.is_err()) {
        assert_version_conflict(r, "s", ExpectedVersion::Exact(1), 2);
    }
    assert_eq!(query_all(store, EventFilter::all().stream("s"), Order::OldestFirst).await.len(), 2);
}

/// Of 8 concurrent first appends to a stream, all expecting `NoStream`, exactly
/// one wins with version 1; the rest are `Conflict` naming version 1 — even
/// though the stream had nothing to lock when they began.
pub async fn concurrent_first_appends_expecting_no_stream_admit_one_winner(store: &dyn EventStore) {
    for round in 0..5 {
        let stream = format!("new-{round}");
        let attempts = (0..8).map(|_| {
            append_expecting(store, vec![ev("opened").with_stream(&stream)], &stream, ExpectedVersion::NoStream)
        });
        let results = join_all(attempts).await;
        let winners: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).map(|o| o.events[0].version).collect();
        assert_eq!(winners, vec![Some(1)], "round {round}: one winner among 8 concurrent first appends");
        for r in results.into_iter().filter(|r| r.is_err()) {
            assert_version_conflict(r, &stream, ExpectedVersion::NoStream, 1);
        }
    }
}

/// 32 concurrent appenders: every event is stored exactly once, batches stay in order.
pub async fn concurrent_appenders_lose_no_events(store: &dyn EventStore) {
    let writers = (0..32).map(|w| async move {
        let mut mine = Vec::new();
        for _ in 0..3 {
            let batch = evs(&format!("w{w}"), 5);
            let outcome = append(store, batch.clone()).await;
            let ps: Vec<Position> = outcome.events.iter().map(|a| a.position).collect();
            assert_strictly_increasing(&ps, "positions within a batch");
            mine.extend(new_ids(&batch));
        }
        mine
    });
    let appended: Vec<Uuid> = join_all(writers).await.into_iter().flatten().collect();

    let stored = read_all(store).await;
    assert_eq!(stored.len(), appended.len(), "stored count");
    let stored: HashSet<Uuid> = ids(&stored).into_iter().collect();
    assert_eq!(stored, appended.into_iter().collect::<HashSet<_>>(), "stored ids");
}

/// A 70 000-event batch (over Postgres' 65 535 binds) is stored whole; one with a bad last event stores nothing.
pub async fn large_batch_over_bind_parameter_limit_is_atomic(store: &dyn EventStore) {
    const N: usize = 70_000;
    let batch = evs("bulk_a", N);
    let outcome = append(store, batch.clone()).await;
    assert_eq!(outcome.appended(), N);

    let stored = read_all(store).await;
    assert_eq!(stored.len(), N);
    assert!(ids(&stored) == new_ids(&batch), "stored events differ from the batch");
    let last = stored[N - 1].position;

    let mut failing = evs("bulk_b", N);
    failing[N - 1].data = json!("not an object");
    assert_kind(store.append(AppendBatch::new(failing)).await, ErrorKind::InvalidInput, "batch with a bad last event");
    assert!(
        ok(store.read(Cursor::After(last), 1).await, "read after the batch").is_empty(),
        "part of the batch was stored"
    );
    let leaked = ok(store.query(EventFilter::all().kind("bulk_b"), PageRequest::newest(1)).await, "query bulk_b");
    assert!(leaked.items.is_empty(), "part of the failed batch was stored");
}

/// A cursor-following reader racing 32 appenders sees increasing positions and every appended event exactly once.
pub async fn reader_never_sees_a_position_below_one_already_seen(store: &dyn EventStore) {
    const WRITERS: usize = 32;
    const ROUNDS: usize = 8;
    let done = AtomicUsize::new(0);
    let done = &done;

    let writers = (0..WRITERS).map(|w| async move {
        let mut mine = Vec::new();
        for round in 0..ROUNDS {
            let batch = evs(&format!("w{w}"), 1 + (w + round) % 3);
            mine.extend(new_ids(&batch));
            append(store, batch).await;
            tokio::task::yield_now().await;
        }
        done.fetch_add(1, AtomicOrdering::SeqCst);
        mine
    });
    let reader = async move {
        let mut seen: HashMap<Uuid, usize> = HashMap::new();
        let mut last: Option<Position> = None;
        loop {
            let finished = done.load(AtomicOrdering::SeqCst) == WRITERS;
            let cursor = last.map_or(Cursor::Start, Cursor::After);
            let page = ok(store.read(cursor, 50).await, "read while appending");
            for e in &page {
                if let Some(p) = last {
                    assert!(e.position > p, "saw {} after having seen {p}", e.position);
                }
                last = Some(e.position);
                *seen.entry(e.id).or_default() += 1;
            }
            if page.is_empty() {
                if finished {
                    return seen;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    };
    let (appended, seen) = futures::join!(join_all(writers), reader);

    let appended: HashSet<Uuid> = appended.into_iter().flatten().collect();
    assert!(seen.values().all(|&n| n == 1), "an event was read twice");
    let seen: HashSet<Uuid> = seen.into_keys().collect();
    let missed = appended.difference(&seen).count();
    assert_eq!(missed, 0, "the reader never saw {missed} appended events (stored below its cursor)");
    assert_eq!(seen.len(), appended.len(), "the reader saw events nobody appended");
}

// ---------------------------------------------------------------- namespaces

/// Two namespaces on one backend share nothing: events, ids, stream versions, purges.
pub async fn namespaces_are_isolated(a: &dyn EventStore, b: &dyn EventStore) {
    let shared = ev("k").with_stream("s").with_occurred_at(at(0));
    let in_a = append(a, vec![shared.clone(), ev("only_a").with_occurred_at(at(0))]).await;
    assert!(read_all(b).await.is_empty(), "b reads a's events");
    assert!(query_ids(b, EventFilter::all()).await.is_empty(), "b queries a's events");

    let in_b = append(b, vec![shared.clone()]).await;
    assert!(!in_b.events[0].duplicate, "an id stored in a is a duplicate in b");
    assert_eq!(in_b.events[0].version, Some(1), "b continues a's stream");
    assert_eq!(ok(b.purge(at(1)).await, "purge b"), 1);
    let left: Vec<Uuid> = in_a.events.iter().map(|x| x.id).collect();
    assert_eq!(ids(&read_all(a).await), left, "purging b touched a");
}

mod hostile;
pub use hostile::*;
