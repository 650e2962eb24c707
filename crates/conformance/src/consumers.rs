//! Conformance cases for durable named consumers
//! ([`Consumer`] over a backend's
//! [`EventStore`] lease and checkpoint primitives).
//!
//! Every case gets the event store of a fresh namespace as the shared handle
//! a `Consumer` holds (trait id `consumers`). Leases are short (a second or
//! less) so takeover cases stay quick; bounds on takeover time are generous
//! (several leases) because CI machines stall.

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use palisade_core::consumers::{Claim, Consumer, ConsumerOptions};
use palisade_core::error::{ErrorDetail, ErrorKind};
use palisade_core::events::{AppendBatch, Cursor, Event, EventFilter, NewEvent, Position, SubscriptionItem};
use palisade_core::{EventStore, EventStoreExt};
use uuid::Uuid;

use super::{assert_kind, ok};
use crate::flaky::{Flaky, FlakyMode};

type Store = Arc<dyn EventStore>;

const SOURCE: &str = "conformance";
/// How long a consumer may take to deliver its next item.
const WAIT: Duration = Duration::from_secs(10);
/// A short lease for takeover cases.
const SHORT: Duration = Duration::from_millis(800);
/// The lease of an instance that must keep holding through a case: long
/// enough that a starved runtime (suites run hundreds of cases at once, some
/// harnesses spawn processes) does not delay a renewal past its fence.
const HOLDER: Duration = Duration::from_secs(3);

// ---------------------------------------------------------------- helpers

fn ev(kind: &str) -> NewEvent {
    NewEvent::new(SOURCE, kind)
}

fn evs(kind: &str, n: usize) -> Vec<NewEvent> {
    (0..n).map(|_| ev(kind)).collect()
}

async fn append(store: &Store, events: Vec<NewEvent>) -> Vec<Position> {
    let outcome = ok(store.append(AppendBatch::new(events)).await, "append");
    outcome.events.iter().map(|a| a.position).collect()
}

fn opts() -> ConsumerOptions {
    ConsumerOptions::default().with_lease(Duration::from_secs(5))
}

fn claim(name: &str, filter: EventFilter, lease: Duration) -> Claim {
    Claim { name: name.to_owned(), filter, token: Uuid::new_v4(), lease, renew: false }
}

/// The value of a case's first consumer operation `what`; without
/// `durable_consumers`, asserts it was `Unsupported`, reports the case n/a
/// and returns `None`.
fn applies<T: std::fmt::Debug>(store: &Store, r: palisade_core::Result<T>, what: &str) -> Option<T> {
    if store.capabilities().durable_consumers {
        Some(ok(r, what))
    } else {
        assert_kind(r, ErrorKind::Unsupported, &format!("{what} without the durable_consumers capability"));
        crate::not_applicable("durable_consumers");
        None
    }
}

/// Starts a consumer; without `durable_consumers`, asserts `Unsupported` and returns `None`.
async fn start(store: &Store, name: &str, filter: EventFilter, options: ConsumerOptions) -> Option<Consumer> {
    applies(store, Consumer::start(Arc::clone(store), name, filter, options).await, "start a consumer")
}

async fn next_item(c: &mut Consumer, what: &str) -> SubscriptionItem {
    match tokio::time::timeout(WAIT, c.next()).await {
        Err(_) => panic!("{what}: no item within {WAIT:?}"),
        Ok(None) => panic!("{what}: the consumer ended"),
        Ok(Some(item)) => ok(item, what),
    }
}

/// The next event, skipping the one `CaughtUp`.
async fn next_event(c: &mut Consumer, what: &str) -> Event {
    loop {
        if let SubscriptionItem::Event(e) = next_item(c, what).await {
            return *e;
        }
    }
}

async fn expect_caught_up(c: &mut Consumer, what: &str) {
    match next_item(c, what).await {
        SubscriptionItem::CaughtUp => {}
        SubscriptionItem::Event(e) => panic!("{what}: expected CaughtUp, got event {} ({})", e.id, e.kind),
    }
}

fn is_held_elsewhere<T>(r: &palisade_core::Result<T>) -> bool {
    matches!(r, Err(e) if e.kind() == ErrorKind::Conflict
        && matches!(e.detail(), Some(ErrorDetail::ConsumerLease { held_elsewhere: true, .. })))
}

async fn checkpoint_of(store: &Store, name: &str) -> Cursor {
    let all = ok(store.consumers().await, "consumers");
    all.into_iter().find(|c| c.name == name).map(|c| c.checkpoint).unwrap_or_else(|| panic!("consumer {name} listed"))
}

// ---------------------------------------------------------------- cases

/// A consumer restarted after a drop resumes strictly after its last ack:
/// acked events are not delivered again, delivered-but-unacked ones are.
pub async fn resume_after_drop_continues_after_the_last_ack(store: &Store) {
    let positions = append(store, evs("k", 5)).await;
    let Some(mut c) = start(store, "projection", EventFilter::all(), opts()).await else { return };
    for want in &positions {
        assert_eq!(next_event(&mut c, "first run").await.position, *want);
    }
    ok(c.ack(positions[2]).await, "ack the third");
    drop(c);

    let mut again = ok(
        Consumer::start(
            Arc::clone(store),
            "projection",
            EventFilter::all(),
            opts().waiting().with_retry_every(SHORT / 8),
        )
        .await,
        "restart",
    );
    assert_eq!(again.started_after(), Cursor::After(positions[2]));
    assert_eq!(next_event(&mut again, "second run").await.position, positions[3], "redelivers the unacked");
    assert_eq!(next_event(&mut again, "second run").await.position, positions[4]);
    expect_caught_up(&mut again, "second run").await;
}

/// A consumer catches up on stored events, says `CaughtUp` once, then
/// delivers events appended later, in order.
pub async fn catch_up_then_live(store: &Store) {
    let old = append(store, evs("old", 3)).await;
    let Some(mut c) = start(store, "live", EventFilter::all(), opts()).await else { return };
    for want in &old {
        assert_eq!(next_event(&mut c, "catch-up").await.position, *want);
    }
    expect_caught_up(&mut c, "after catch-up").await;
    let live = append(store, evs("new", 2)).await;
    for want in &live {
        assert_eq!(next_event(&mut c, "live").await.position, *want, "live order");
    }
}

/// While one instance holds a consumer, another start is `Conflict`
/// (`ConsumerLease`, held elsewhere), as is a direct claim under another token.
pub async fn lease_is_exclusive(store: &Store) {
    let Some(c) = start(store, "exclusive", EventFilter::all(), opts()).await else { return };
    let second = Consumer::start(Arc::clone(store), "exclusive", EventFilter::all(), opts()).await;
    assert!(is_held_elsewhere(&second), "a second start must be refused, got {:?}", second.map(|_| ()));
    let direct = store.claim_consumer(&claim("exclusive", EventFilter::all(), SHORT)).await;
    assert!(is_held_elsewhere(&direct), "a claim under another token must be refused");
    let listed = ok(store.consumers().await, "consumers");
    assert!(listed[0].lease_expires_at.is_some(), "a held consumer lists its lease");
    ok(c.release().await, "release");
    let listed = ok(store.consumers().await, "consumers");
    assert!(listed[0].lease_expires_at.is_none(), "a released consumer lists no lease");
}

/// When the holder stops renewing, a waiting instance takes over within a
/// few leases, continues after the checkpoint, and the old holder's acks
/// are refused.
pub async fn takeover_after_heartbeats_stop(store: &Store) {
    let positions = append(store, evs("k", 3)).await;
    let stale = claim("takeover", EventFilter::all(), SHORT);
    // A holder that claims once and never renews (a crashed process).
    let Some(first) = applies(store, store.claim_consumer(&stale).await, "first claim") else { return };
    assert_eq!(first, Cursor::Start);
    ok(store.ack_consumer("takeover", stale.token, positions[0]).await, "ack under a live lease");

    let started = tokio::time::Instant::now();
    // The new holder's own lease is longer: renewals under a loaded CI machine
    // must not make it miss its own lease (which the last check relies on).
    let options = ConsumerOptions::default().with_lease(HOLDER).waiting().with_retry_every(SHORT / 8);
    let mut next = ok(Consumer::start(Arc::clone(store), "takeover", EventFilter::all(), options).await, "take over");
    let took = started.elapsed();
    assert!(took >= SHORT / 2, "took over a live lease after {took:?}");
    assert!(took < SHORT * 6, "takeover took {took:?} with a lease of {SHORT:?}");
    assert_eq!(next.started_after(), Cursor::After(positions[0]), "continues from the checkpoint");
    assert_eq!(next_event(&mut next, "after takeover").await.position, positions[1]);

    let late = store.ack_consumer("takeover", stale.token, positions[2]).await;
    assert_kind(late, ErrorKind::Conflict, "an ack under a lost lease");
    assert_eq!(checkpoint_of(store, "takeover").await, Cursor::After(positions[0]), "the stale ack moved nothing");
    // The new holder keeps its lease past two of its lease times (heartbeats).
    tokio::time::sleep(HOLDER * 2 + SHORT / 2).await;
    ok(next.ack(positions[1]).await, "the new holder acks after more than two leases");
    assert_eq!(checkpoint_of(store, "takeover").await, Cursor::After(positions[1]));
}

/// A released lease is taken by a waiting instance at once.
pub async fn release_hands_over_at_once(store: &Store) {
    let Some(first) = start(store, "handover", EventFilter::all(), opts()).await else { return };
    let store2 = Arc::clone(store);
    let waiter = tokio::spawn(async move {
        let options = opts().waiting().with_retry_every(Duration::from_millis(50));
        Consumer::start(store2, "handover", EventFilter::all(), options).await.map(|c| c.name().to_owned())
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiter.is_finished(), "the waiter took a live lease");
    ok(first.release().await, "release");
    let got = tokio::time::timeout(Duration::from_secs(3), waiter).await;
    let name = ok(got.expect("the waiter took over within 3 s (lease 5 s)").expect("waiter task"), "waiter");
    assert_eq!(name, "handover");
}

/// A start cancelled after its claim took the lease (a timeout around it, a
/// shutdown; here its subscribe hangs and the task is aborted) gives the
/// lease up: another instance starts at once, not when the lease runs out.
pub async fn a_cancelled_start_gives_the_lease_up(store: &Store) {
    let Some(first) = start(store, "cancelled", EventFilter::all(), opts()).await else { return };
    ok(first.release().await, "release");
    let flaky = Arc::new(Flaky::new(Arc::clone(store)));
    flaky.stall("subscribe");
    let stalling: Store = flaky.clone();
    let long = ConsumerOptions::default().with_lease(Duration::from_secs(120));
    let starting = tokio::spawn(Consumer::start(stalling, "cancelled", EventFilter::all(), long));
    // The claim is call 1; call 2 is the subscribe that hangs.
    let claimed = tokio::time::timeout(WAIT, async {
        while flaky.calls() < 2 && !starting.is_finished() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(claimed.is_ok(), "the start claimed and subscribed within {WAIT:?}");
    if starting.is_finished() {
        let ended = starting.await.expect("start task");
        panic!("start returned although its subscribe hangs: {:?}", ended.map(|c| c.name().to_owned()));
    }
    starting.abort();
    assert!(starting.await.is_err_and(|e| e.is_cancelled()), "the start was cancelled");
    let again = tokio::time::timeout(WAIT, async {
        loop {
            let r = Consumer::start(Arc::clone(store), "cancelled", EventFilter::all(), opts()).await;
            if !is_held_elsewhere(&r) {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let again = again.expect("the lease of the cancelled start (120 s) was given up within 10 s");
    ok(again, "start after the cancelled one");
}

/// A start whose claim took the lease but reported a failure (here the
/// store applies it and then times out) gives the lease up before it
/// returns the error: the caller's retry starts at once.
pub async fn a_start_that_failed_after_claiming_gives_the_lease_up(store: &Store) {
    let Some(first) = start(store, "timed-out", EventFilter::all(), opts()).await else { return };
    ok(first.release().await, "release");
    let flaky = Arc::new(Flaky::new(Arc::clone(store)));
    flaky.set_mode(FlakyMode::ApplyThenTimeout);
    let failing: Store = flaky.clone();
    let long = ConsumerOptions::default().with_lease(Duration::from_secs(120));
    let r = Consumer::start(failing, "timed-out", EventFilter::all(), long).await;
    assert_kind(r.map(|_| ()), ErrorKind::Timeout, "a claim applied and then timed out");
    let again = Consumer::start(Arc::clone(store), "timed-out", EventFilter::all(), opts()).await;
    ok(again, "start right after the failed one (its 120 s lease was given up)");
}

/// Four writers append concurrently while a consumer follows and acks every
/// tenth event: it sees every event once, in increasing position order, and a
/// restart resumes exactly after the last ack.
pub async fn no_skip_under_concurrent_appends(store: &Store) {
    let Some(mut c) = start(store, "busy", EventFilter::all(), opts()).await else { return };
    expect_caught_up(&mut c, "empty log").await;
    let writers = (0..4).map(|w| {
        let store = Arc::clone(store);
        tokio::spawn(async move {
            for _ in 0..25 {
                ok(store.append(AppendBatch::new(evs(&format!("w{w}"), 2))).await, "concurrent append");
            }
        })
    });
    let writers = tokio::spawn(join_all(writers));
    let mut seen: Vec<Position> = Vec::new();
    while seen.len() < 200 {
        let e = next_event(&mut c, "concurrent").await;
        assert!(seen.last().is_none_or(|l| *l < e.position), "out of order at {}", e.position);
        seen.push(e.position);
        if seen.len() % 10 == 7 {
            ok(c.ack(e.position).await, "ack");
        }
    }
    for w in writers.await.expect("writers") {
        w.expect("writer");
    }
    let mut stored: Vec<Position> =
        ok(store.read(Cursor::Start, 1_000).await, "read").into_iter().map(|e| e.position).collect();
    stored.sort();
    assert_eq!(seen, stored, "the consumer saw exactly the stored events");
    let last_ack = seen[196];
    ok(c.release().await, "release");
    let mut again = ok(Consumer::start(Arc::clone(store), "busy", EventFilter::all(), opts()).await, "restart");
    for want in &seen[197..] {
        assert_eq!(next_event(&mut again, "resume").await.position, *want);
    }
    assert_eq!(again.started_after(), Cursor::After(last_ack));
}

/// A consumer's filter applies to catch-up and live events; starting its
/// name with another filter is `Conflict` and changes nothing.
pub async fn filter_applies_and_a_different_filter_conflicts(store: &Store) {
    let old = vec![ev("a"), ev("b"), ev("a")];
    let at = append(store, old).await;
    let filter = EventFilter::all().kind("a");
    let Some(mut c) = start(store, "only-a", filter.clone(), opts()).await else { return };
    assert_eq!(next_event(&mut c, "catch-up").await.position, at[0]);
    assert_eq!(next_event(&mut c, "catch-up").await.position, at[2]);
    expect_caught_up(&mut c, "after catch-up").await;
    append(store, vec![ev("b")]).await;
    let live = append(store, vec![ev("a")]).await;
    assert_eq!(next_event(&mut c, "live").await.position, live[0], "live event not filtered");
    ok(c.ack(live[0]).await, "ack");
    ok(c.release().await, "release");

    let other = Consumer::start(Arc::clone(store), "only-a", EventFilter::all().kind("b"), opts()).await;
    assert_kind(other.map(|_| ()), ErrorKind::Conflict, "same name, other filter");
    let listed = ok(store.consumers().await, "consumers");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].filter, filter, "the stored filter is unchanged");
    assert_eq!(listed[0].checkpoint, Cursor::After(live[0]));
}

/// An ack must name a delivered position (`InvalidInput` otherwise, before
/// any I/O); acks only move the checkpoint forward.
pub async fn ack_moves_forward_only_and_never_past_delivery(store: &Store) {
    let at = append(store, evs("k", 3)).await;
    let Some(mut c) = start(store, "acks", EventFilter::all(), opts()).await else { return };
    assert_kind(c.ack(at[0]).await, ErrorKind::InvalidInput, "ack before any delivery");
    next_event(&mut c, "first").await;
    next_event(&mut c, "second").await;
    assert_kind(c.ack(at[2]).await, ErrorKind::InvalidInput, "ack past the last delivered");
    assert_eq!(checkpoint_of(store, "acks").await, Cursor::Start, "refused acks changed nothing");
    ok(c.ack(at[1]).await, "ack the second");
    ok(c.ack(at[0]).await, "an older ack is a no-op");
    assert_eq!(checkpoint_of(store, "acks").await, Cursor::After(at[1]));
    assert_eq!(c.checkpoint(), Cursor::After(at[1]));
    // The primitive itself never moves a checkpoint back either.
    ok(c.release().await, "release");
    let token = claim("acks", EventFilter::all(), SHORT);
    ok(store.claim_consumer(&token).await, "claim");
    ok(store.ack_consumer("acks", token.token, at[0]).await, "older ack through the primitive");
    assert_eq!(checkpoint_of(store, "acks").await, Cursor::After(at[1]), "the checkpoint went back");
}

/// `consumers()` lists each consumer with its filter, checkpoint and lease;
/// `consumer_lag` counts the log after the checkpoint.
pub async fn consumers_lists_position_and_lag(store: &Store) {
    let at = append(store, evs("k", 6)).await;
    let Some(mut c) = start(store, "b-lagging", EventFilter::all().kind("k"), opts()).await else { return };
    for _ in 0..2 {
        next_event(&mut c, "deliver").await;
    }
    ok(c.ack(at[1]).await, "ack");
    let idle = Consumer::start(Arc::clone(store), "a-idle", EventFilter::all(), opts()).await;
    ok(ok(idle, "second consumer").release().await, "release");

    let listed = ok(store.consumers().await, "consumers");
    let names: Vec<&str> = listed.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["a-idle", "b-lagging"], "listed by name");
    assert_eq!(listed[1].checkpoint, Cursor::After(at[1]));
    assert_eq!(listed[1].filter, EventFilter::all().kind("k"));
    assert!(listed[1].lease_expires_at.is_some() && listed[0].lease_expires_at.is_none());
    assert_eq!(ok(store.consumer_lag(&listed[1], 100).await, "lag"), 4);
    assert_eq!(ok(store.consumer_lag(&listed[0], 100).await, "lag"), 6);
    assert_eq!(ok(store.consumer_lag(&listed[0], 3).await, "capped lag"), 3);
}

/// Deleting a consumer forgets its checkpoint and filter; its holder's next
/// ack is `Conflict`; the name starts afresh (also with another filter).
pub async fn delete_consumer_forgets_it_and_fences_the_holder(store: &Store) {
    let at = append(store, evs("k", 2)).await;
    let Some(mut c) = start(store, "doomed", EventFilter::all(), opts()).await else { return };
    next_event(&mut c, "deliver").await;
    ok(c.ack(at[0]).await, "ack");
    next_event(&mut c, "deliver").await;
    assert!(ok(store.delete_consumer("doomed").await, "delete"));
    assert!(!ok(store.delete_consumer("doomed").await, "delete again"));
    assert_kind(c.ack(at[1]).await, ErrorKind::Conflict, "ack after delete");
    assert!(ok(store.consumers().await, "consumers").is_empty());
    drop(c);
    let fresh = Consumer::start(Arc::clone(store), "doomed", EventFilter::all().kind("k"), opts()).await;
    assert_eq!(ok(fresh, "fresh start").started_after(), Cursor::Start);
}

/// A holder whose consumer is deleted stops within about a lease: its
/// renewal (a heartbeat) never re-creates the consumer, and `next` yields
/// `Conflict`. A renewal under a token that holds nothing is `Conflict`.
pub async fn a_deleted_consumer_stops_its_holder_and_stays_deleted(store: &Store) {
    let options = ConsumerOptions::default().with_lease(SHORT);
    let Some(mut c) = start(store, "deleted-while-running", EventFilter::all(), options).await else { return };
    expect_caught_up(&mut c, "empty log").await;
    assert!(ok(store.delete_consumer("deleted-while-running").await, "delete"));
    let stopped = tokio::time::timeout(SHORT * 4, c.next()).await;
    match stopped {
        Ok(Some(Err(e))) => assert_eq!(e.kind(), ErrorKind::Conflict, "{e}"),
        Ok(other) => panic!("expected the holder to stop with Conflict, got {:?}", other.map(|r| r.map(|_| ()))),
        Err(_) => panic!("the holder of a deleted consumer still runs after {:?}", SHORT * 4),
    }
    assert!(c.next().await.is_none(), "a consumer that lost its lease ends");
    assert!(ok(store.consumers().await, "consumers").is_empty(), "a heartbeat re-created the deleted consumer");
    let stranger = Claim { renew: true, ..claim("never-held", EventFilter::all(), SHORT) };
    let r = store.claim_consumer(&stranger).await;
    assert!(
        matches!(&r, Err(e) if matches!(e.detail(), Some(ErrorDetail::ConsumerLease { held_elsewhere: false, .. }))),
        "renewing what the token never held: {:?}",
        r.map(|_| ())
    );
    assert!(ok(store.consumers().await, "consumers").is_empty(), "a renewal created a consumer");
}

/// A lease that ran out, even with nobody else taking it, no longer acks or
/// renews (`Conflict`): its holder must start again. A fresh claim takes it.
pub async fn an_expired_lease_neither_acks_nor_renews(store: &Store) {
    let at = append(store, evs("k", 2)).await;
    let first = claim("expiring", EventFilter::all(), SHORT);
    if applies(store, store.claim_consumer(&first).await, "claim").is_none() {
        return;
    }
    ok(store.ack_consumer("expiring", first.token, at[0]).await, "ack under the running lease");
    tokio::time::sleep(SHORT + Duration::from_millis(400)).await;
    assert_kind(store.ack_consumer("expiring", first.token, at[1]).await, ErrorKind::Conflict, "ack after expiry");
    let renew = Claim { renew: true, ..first.clone() };
    assert_kind(store.claim_consumer(&renew).await, ErrorKind::Conflict, "renewal after expiry");
    let listed = ok(store.consumers().await, "consumers");
    assert_eq!(listed[0].lease_expires_at, None, "an expired lease is not listed as held");
    assert_eq!(listed[0].checkpoint, Cursor::After(at[0]), "the late ack moved nothing");
    let next = claim("expiring", EventFilter::all(), SHORT);
    assert_eq!(ok(store.claim_consumer(&next).await, "a fresh claim"), Cursor::After(at[0]));
}

/// A filter is compared as the filter means it: kinds, sources and tags as
/// sets (order and repeats do not make another filter).
pub async fn filters_are_compared_as_sets(store: &Store) {
    let written = EventFilter::all().kind("b").kind("a").tag("x").tag("x");
    let Some(c) = start(store, "sets", written, opts()).await else { return };
    ok(c.release().await, "release");
    let same = EventFilter::all().kind("a").kind("b").tag("x");
    let again = Consumer::start(Arc::clone(store), "sets", same.clone(), opts()).await;
    ok(ok(again, "the same filter written another way").release().await, "release");
    assert_eq!(ok(store.consumers().await, "consumers")[0].filter, same, "stored in its canonical form");
    let other = Consumer::start(Arc::clone(store), "sets", EventFilter::all().kind("a"), opts()).await;
    assert_kind(other.map(|_| ()), ErrorKind::Conflict, "a smaller set is another filter");
}

/// A checkpoint survives a purge of the events it points at; the consumer
/// resumes after it.
pub async fn checkpoint_survives_purge(store: &Store) {
    let base = palisade_core::backend::clock::now_ms();
    let old: Vec<NewEvent> =
        evs("old", 3).into_iter().map(|e| e.with_occurred_at(base - chrono::TimeDelta::hours(2))).collect();
    let at = append(store, old).await;
    let Some(mut c) = start(store, "purged", EventFilter::all(), opts()).await else { return };
    for _ in 0..2 {
        next_event(&mut c, "deliver").await;
    }
    ok(c.ack(at[1]).await, "ack");
    ok(c.release().await, "release");
    let kept = append(store, vec![ev("new")]).await;
    assert_eq!(ok(store.purge(base - chrono::TimeDelta::hours(1)).await, "purge"), 3);
    let mut again = ok(Consumer::start(Arc::clone(store), "purged", EventFilter::all(), opts()).await, "restart");
    assert_eq!(again.started_after(), Cursor::After(at[1]));
    assert_eq!(next_event(&mut again, "after purge").await.position, kept[0]);
}

/// Bad names, leases and filters are `InvalidInput` before any I/O and
/// create nothing.
pub async fn invalid_consumer_input_is_invalid_input(store: &Store) {
    let caps = store.capabilities().durable_consumers;
    let bad = [
        claim("", EventFilter::all(), SHORT),
        claim("bad\u{0}name", EventFilter::all(), SHORT),
        claim(&"n".repeat(257), EventFilter::all(), SHORT),
        claim("short", EventFilter::all(), Duration::from_millis(99)),
        claim("long", EventFilter::all(), Duration::from_secs(3_601)),
        claim("fraction", EventFilter::all(), Duration::from_micros(150_500)),
        claim("filter", EventFilter::all().kind(""), SHORT),
    ];
    for c in &bad {
        let r = store.claim_consumer(c).await;
        let want = if caps { ErrorKind::InvalidInput } else { ErrorKind::Unsupported };
        assert_kind(r, want, &format!("claim {:?}", c.name));
    }
    if !caps {
        crate::not_applicable("durable_consumers");
        return;
    }
    let token = Uuid::new_v4();
    assert_kind(store.ack_consumer("", token, Position::new(1, 0)).await, ErrorKind::InvalidInput, "ack, empty name");
    assert_kind(store.release_consumer("a\nb", token).await, ErrorKind::InvalidInput, "release, bad name");
    assert_kind(store.delete_consumer("").await, ErrorKind::InvalidInput, "delete, empty name");
    assert_kind(
        store.ack_consumer("nobody", token, Position::new(1, 0)).await,
        ErrorKind::Conflict,
        "ack of an unknown consumer",
    );
    assert!(ok(store.consumers().await, "consumers").is_empty(), "nothing was created");
}

/// Checkpoints and leases of one namespace are invisible to another.
pub async fn checkpoints_are_isolated_by_namespace(a: &Store, b: &Store) {
    let at_a = append(a, evs("k", 2)).await;
    let Some(mut ca) = start(a, "shared-name", EventFilter::all(), opts()).await else { return };
    next_event(&mut ca, "a").await;
    ok(ca.ack(at_a[0]).await, "ack in a");
    // The same name in b is a different consumer: not held, no checkpoint.
    let mut cb = ok(Consumer::start(Arc::clone(b), "shared-name", EventFilter::all(), opts()).await, "start in b");
    assert_eq!(cb.started_after(), Cursor::Start);
    let at_b = append(b, evs("k", 1)).await;
    assert_eq!(next_event(&mut cb, "b").await.position, at_b[0]);
    assert_eq!(ok(b.consumers().await, "b consumers").len(), 1);
    assert_eq!(checkpoint_of(a, "shared-name").await, Cursor::After(at_a[0]));
    assert!(ok(b.delete_consumer("shared-name").await, "delete in b"));
    assert_eq!(checkpoint_of(a, "shared-name").await, Cursor::After(at_a[0]), "a's consumer survived b's delete");
}
