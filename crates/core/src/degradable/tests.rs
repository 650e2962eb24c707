//! Recovery timing and replay ordering of [`Degradable`], on a fake event
//! store in Tokio's paused time (the clock jumps whenever every task waits).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::json;
use tokio::time::Instant;

use super::recovery::jittered;
use super::{Degradable, DegradeConfig, Health};
use crate::error::{Error, ErrorKind};
use crate::events::{
    AppendBatch, AppendOutcome, Appended, Cursor, Event, EventFilter, EventSubscription, GroupBy, GroupCount, NewEvent,
    Page, PageRequest, Position,
};
use crate::{Capabilities, EventStore, Result, Store};

/// An event log that can be taken down, slowed per append, and made to
/// refuse events of kind `poison` (when `strict`).
struct Fake {
    up: AtomicBool,
    /// Appends still served before going down; `usize::MAX` = no limit.
    budget: AtomicUsize,
    delay: parking_lot::Mutex<Duration>,
    strict: bool,
    appends: AtomicUsize,
    log: parking_lot::Mutex<Vec<NewEvent>>,
}

impl Fake {
    fn new(strict: bool) -> Arc<Self> {
        Arc::new(Fake {
            up: AtomicBool::new(true),
            budget: AtomicUsize::new(usize::MAX),
            delay: parking_lot::Mutex::new(Duration::ZERO),
            strict,
            appends: AtomicUsize::new(0),
            log: parking_lot::Mutex::new(Vec::new()),
        })
    }

    fn set_up(&self, up: bool) {
        self.budget.store(usize::MAX, Ordering::SeqCst);
        self.up.store(up, Ordering::SeqCst);
    }

    fn go_down_after(&self, appends: usize) {
        self.budget.store(appends, Ordering::SeqCst);
    }

    fn slow_down(&self, each_append: Duration) {
        *self.delay.lock() = each_append;
    }

    fn appends(&self) -> usize {
        self.appends.load(Ordering::SeqCst)
    }

    /// The `n` of each stored event of `stream`, in stored order.
    fn stream(&self, stream: &str) -> Vec<u64> {
        let log = self.log.lock();
        log.iter().filter(|e| e.stream.as_deref() == Some(stream)).filter_map(|e| e.data["n"].as_u64()).collect()
    }

    fn check_up(&self) -> Result<()> {
        let budget = self.budget.load(Ordering::SeqCst);
        if budget == 0 {
            self.up.store(false, Ordering::SeqCst);
        }
        if !self.up.load(Ordering::SeqCst) {
            return Err(Error::new(ErrorKind::Unavailable, "fake store is down").set_temporary(true));
        }
        if budget != usize::MAX {
            self.budget.store(budget - 1, Ordering::SeqCst);
        }
        Ok(())
    }
}

fn unsupported<R>() -> Result<R> {
    Err(Error::new(ErrorKind::Unsupported, "not in the fake"))
}

#[async_trait]
impl Store for Fake {
    fn backend(&self) -> &'static str {
        "fake"
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::none()
    }
    async fn ping(&self) -> Result<()> {
        if self.up.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(Error::new(ErrorKind::Unavailable, "fake store is down").set_temporary(true))
        }
    }
}

#[async_trait]
impl EventStore for Fake {
    async fn append(&self, batch: AppendBatch) -> Result<AppendOutcome> {
        self.appends.fetch_add(1, Ordering::SeqCst);
        self.check_up()?;
        let delay = *self.delay.lock();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if self.strict && batch.events.iter().any(|e| e.kind == "poison") {
            return Err(Error::new(ErrorKind::InvalidInput, "poison refused"));
        }
        if self.strict {
            batch.validate(&crate::InputPolicy::default())?;
        }
        let mut log = self.log.lock();
        let mut events = Vec::new();
        for event in batch.events {
            let stored = log.iter().position(|e| e.id == event.id);
            let position = stored.unwrap_or(log.len());
            let id = event.id;
            if stored.is_none() {
                log.push(event);
            }
            let position = Position::new(0, position as u64 + 1);
            events.push(Appended { id, position, version: None, duplicate: stored.is_some() });
        }
        Ok(AppendOutcome { events })
    }
    async fn read(&self, _: Cursor, _: usize) -> Result<Vec<Event>> {
        unsupported()
    }
    async fn subscribe(&self, _: Cursor, _: EventFilter) -> Result<EventSubscription> {
        unsupported()
    }
    async fn query(&self, _: EventFilter, _: PageRequest) -> Result<Page<Event>> {
        unsupported()
    }
    async fn count_by(&self, _: EventFilter, _: GroupBy, _: usize) -> Result<Vec<GroupCount>> {
        unsupported()
    }
    async fn purge(&self, _: DateTime<Utc>) -> Result<u64> {
        unsupported()
    }
    async fn claim_consumer(&self, _: &crate::consumers::Claim) -> Result<Cursor> {
        self.check_up()?;
        Ok(Cursor::Start)
    }
    async fn consumers(&self) -> Result<Vec<crate::consumers::ConsumerInfo>> {
        self.check_up()?;
        Ok(Vec::new())
    }
}

/// A strict primary and a lenient secondary under one wrapper.
fn wrapped(config: DegradeConfig) -> (Arc<Fake>, Arc<Degradable<dyn EventStore>>) {
    let primary = Fake::new(true);
    let store =
        Degradable::new(primary.clone() as Arc<dyn EventStore>, Fake::new(false) as Arc<dyn EventStore>, config);
    (primary, Arc::new(store))
}

/// Probes only when the test calls `try_recover`; replays entry by entry
/// (the tests of the replay's rounds count one primary call per entry).
fn manual() -> DegradeConfig {
    DegradeConfig {
        probe_initial: Duration::from_secs(3600),
        probe_max: Duration::from_secs(3600),
        replay_grouped: false,
        ..Default::default()
    }
}

/// [`manual`] with grouped replay (the default's).
fn grouped() -> DegradeConfig {
    DegradeConfig { replay_grouped: true, ..manual() }
}

fn one(stream: &str, n: u64) -> AppendBatch {
    AppendBatch::new(vec![NewEvent::new("test", "tick").with_stream(stream).with_data(json!({ "n": n }))])
}

/// `n` writes of `stream`, numbered from 0, made while the primary is down.
async fn buffered(primary: &Fake, store: &Degradable<dyn EventStore>, stream: &str, n: u64) {
    primary.set_up(false);
    for i in 0..n {
        store.append(one(stream, i)).await.expect("served by the fallback");
    }
    assert!(store.is_degraded());
}

/// Checkpoints and leases live on the primary only: while it is down they
/// are `Unavailable`, never answered by the fallback (which would forget them).
#[tokio::test(start_paused = true)]
async fn consumer_leases_are_unavailable_while_degraded_never_served_by_the_fallback() {
    let (primary, store) = wrapped(manual());
    let claim = crate::consumers::Claim {
        name: "projection".into(),
        filter: EventFilter::all(),
        token: uuid::Uuid::new_v4(),
        lease: Duration::from_secs(1),
        renew: false,
    };
    assert_eq!(store.claim_consumer(&claim).await.expect("primary up"), Cursor::Start);
    primary.set_up(false);
    let e = store.claim_consumer(&claim).await.expect_err("primary down");
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(store.is_degraded(), "the failed claim switched to degraded mode");
    assert_eq!(store.consumers().await.expect_err("degraded").kind(), ErrorKind::Unavailable);
    assert_eq!(
        store.ack_consumer("projection", claim.token, Position::new(0, 1)).await.unwrap_err().kind(),
        ErrorKind::Unavailable
    );
    primary.set_up(true);
    store.try_recover().await.expect("recovered");
    assert_eq!(store.claim_consumer(&claim).await.expect("primary back"), Cursor::Start);
}

#[tokio::test(start_paused = true)]
async fn recovers_within_a_second_and_a_half_of_the_primary_returning_after_a_long_outage() {
    let (primary, store) = wrapped(DegradeConfig::default());
    buffered(&primary, &store, "s", 1).await;
    tokio::time::sleep(Duration::from_secs(600)).await;
    primary.set_up(true);
    let back = Instant::now();
    while store.health() != Health::Healthy {
        assert!(back.elapsed() <= Duration::from_millis(1500), "still degraded {:?} after the return", back.elapsed());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(primary.stream("s"), vec![0]);
}

#[test]
fn probe_waits_are_jittered_between_half_and_all_of_the_backoff() {
    let backoff = Duration::from_secs(1);
    let waits: Vec<Duration> = (0..200).map(|_| jittered(backoff)).collect();
    assert!(waits.iter().all(|w| *w >= backoff / 2 && *w <= backoff), "{waits:?}");
    assert!(waits.iter().any(|w| *w != waits[0]), "the waits vary");
}

#[tokio::test(start_paused = true)]
async fn writes_during_a_long_replay_finish_quickly_and_reach_the_primary_after_the_buffered_ones() {
    let (primary, store) = wrapped(manual());
    buffered(&primary, &store, "s", 200).await;
    primary.slow_down(Duration::from_millis(20));
    primary.set_up(true);
    let started = Instant::now();
    let recovery = tokio::spawn({
        let store = Arc::clone(&store);
        async move { store.try_recover().await }
    });
    while primary.appends() < 5 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let (mut n, mut slowest) = (200, Duration::ZERO);
    while !recovery.is_finished() {
        let write = Instant::now();
        store.append(one("s", n)).await.expect("accepted during the replay");
        slowest = slowest.max(write.elapsed());
        n += 1;
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    recovery.await.expect("recovery task").expect("recovered");
    let replay = started.elapsed();
    assert!(slowest < Duration::from_millis(100), "a write waited {slowest:?} during a {replay:?} replay");
    assert!(replay >= Duration::from_secs(4), "200 writes at 20 ms each: the replay took {replay:?}");
    assert!(n > 300, "writes went on during the replay: {}", n - 200);
    assert_eq!(store.health(), Health::Healthy);
    assert_eq!(primary.stream("s"), (0..n).collect::<Vec<_>>(), "every write once, in order");
}

#[tokio::test(start_paused = true)]
async fn interrupted_replay_resumes_at_the_first_unconfirmed_entry() {
    let (primary, store) = wrapped(manual());
    buffered(&primary, &store, "s", 50).await;
    primary.set_up(true);
    let before = primary.appends();
    primary.go_down_after(30);
    assert_eq!(store.try_recover().await.expect_err("down again").kind(), ErrorKind::Unavailable);
    assert!(store.is_degraded());
    assert_eq!(primary.stream("s"), (0..30).collect::<Vec<_>>());
    store.append(one("s", 50)).await.expect("served by the fallback");
    primary.set_up(true);
    store.try_recover().await.expect("recovered");
    assert_eq!(primary.stream("s"), (0..51).collect::<Vec<_>>());
    assert_eq!(primary.appends() - before, 31 + 21, "no confirmed entry replayed again");
}

/// Two writes, one the primary refuses, one more, all buffered under
/// `config`: the replay stores the good ones in order and reports only the
/// refused one.
async fn only_the_refused_write_is_rejected(config: DegradeConfig) {
    let (primary, store) = wrapped(config);
    buffered(&primary, &store, "s", 2).await;
    store.append(AppendBatch::new(vec![NewEvent::new("test", "poison")])).await.expect("the fallback takes it");
    store.append(one("s", 2)).await.expect("served by the fallback");
    primary.set_up(true);
    store.try_recover().await.expect("recovered");
    assert_eq!(primary.stream("s"), vec![0, 1, 2]);
    let rejected = store.take_rejected();
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert_eq!(rejected[0].error.kind(), ErrorKind::InvalidInput);
}

#[tokio::test(start_paused = true)]
async fn rejected_replayed_write_is_reported_and_the_replay_goes_on() {
    only_the_refused_write_is_rejected(manual()).await;
}

#[tokio::test(start_paused = true)]
async fn concurrent_recoveries_replay_each_entry_once() {
    let (primary, store) = wrapped(manual());
    buffered(&primary, &store, "s", 20).await;
    primary.slow_down(Duration::from_millis(5));
    primary.set_up(true);
    let before = primary.appends();
    let (a, b) = tokio::join!(store.try_recover(), store.try_recover());
    a.expect("recovered");
    b.expect("recovered");
    assert_eq!(primary.appends() - before, 20);
    assert_eq!(primary.stream("s"), (0..20).collect::<Vec<_>>());
}

#[tokio::test(start_paused = true)]
async fn replay_catches_up_with_writers_that_outpace_it() {
    let (primary, store) = wrapped(manual());
    buffered(&primary, &store, "s", 100).await;
    primary.slow_down(Duration::from_millis(20));
    primary.set_up(true);
    let recovery = tokio::spawn({
        let store = Arc::clone(&store);
        async move { store.try_recover().await }
    });
    let mut n = 100;
    while !recovery.is_finished() {
        store.append(one("s", n)).await.expect("accepted during the replay");
        n += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    recovery.await.expect("recovery task").expect("recovered despite the faster writers");
    assert_eq!(store.health(), Health::Healthy);
    assert_eq!(primary.stream("s"), (0..n).collect::<Vec<_>>(), "every write once, in order");
}

/// Against a primary slower than the writers, the replay notices within
/// about a second that it cannot catch up in rounds (rounds are bounded in
/// time, not only in entries) and replays the rest while writers wait —
/// instead of letting the buffer grow for thousands of entries first.
#[tokio::test(start_paused = true)]
async fn writers_outpacing_a_slow_primary_are_noticed_within_a_second() {
    let (primary, store) = wrapped(manual());
    buffered(&primary, &store, "s", 2000).await;
    primary.slow_down(Duration::from_millis(20));
    primary.set_up(true);
    let started = tokio::time::Instant::now();
    let recovery = tokio::spawn({
        let store = Arc::clone(&store);
        async move { store.try_recover().await }
    });
    let mut n = 2000;
    while !recovery.is_finished() {
        store.append(one("s", n)).await.expect("accepted during the replay");
        n += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    recovery.await.expect("recovery task").expect("recovered");
    // 2,000 buffered × 20 ms = 40 s, plus what arrived before the replay
    // stopped letting writers go on (≤ ~1 s of writes at 200/s).
    let took = started.elapsed();
    assert!(took < Duration::from_secs(50), "recovery took {took:?}: the stall was noticed late");
    assert_eq!(primary.stream("s"), (0..n).collect::<Vec<_>>(), "every write once, in order");
}

/// A writer that queued for the buffer while the final replay step held it,
/// and found the wrapper switched back when it got its turn, goes to the
/// primary — which failed again in between: the write fails over again and is
/// served by the secondary, never refused (the secondary is memory).
#[tokio::test(start_paused = true)]
async fn write_queued_behind_the_switch_back_fails_over_again_if_the_primary_is_down_again() {
    let (primary, store) = wrapped(manual());
    buffered(&primary, &store, "s", 2).await;
    primary.slow_down(Duration::from_millis(10));
    primary.set_up(true);
    // Two entries replayed in a round, one in the final step; down after those.
    primary.go_down_after(3);
    let before = primary.appends();
    let recovery = tokio::spawn({
        let store = Arc::clone(&store);
        async move { store.try_recover().await }
    });
    while primary.appends() < before + 1 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    store.append(one("s", 2)).await.expect("served by the fallback during the round");
    while primary.appends() < before + 3 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // The final step holds the buffer while it replays entry 2.
    assert!(store.is_degraded());
    store.append(one("s", 3)).await.expect("served by the fallback after the primary failed again");
    recovery.await.expect("recovery task").expect("recovered");
    assert!(store.is_degraded(), "the primary failed again after the switch back");
    assert_eq!(primary.stream("s"), vec![0, 1, 2]);
    primary.set_up(true);
    store.try_recover().await.expect("recovered");
    assert_eq!(store.health(), Health::Healthy);
    assert_eq!(primary.stream("s"), vec![0, 1, 2, 3], "every write once, in order");
}

/// A `try_recover` cancelled mid-round (say, under a shutdown timeout) must
/// not leave the entries the primary already confirmed in the buffer: the next
/// recovery would replay them again — twice for `$inc`/`$push` updates.
#[tokio::test(start_paused = true)]
async fn cancelled_recovery_does_not_replay_confirmed_entries_again() {
    let (primary, store) = wrapped(manual());
    buffered(&primary, &store, "s", 50).await;
    primary.slow_down(Duration::from_millis(10));
    primary.set_up(true);
    let before = primary.appends();
    // Ten entries confirmed (10 ms each), the eleventh in flight when cancelled.
    let cancelled = tokio::time::timeout(Duration::from_millis(105), store.try_recover()).await;
    assert!(cancelled.is_err(), "cancelled mid-round");
    assert_eq!(primary.stream("s"), (0..10).collect::<Vec<_>>());
    match store.health() {
        Health::Degraded { .. } => {}
        Health::Healthy => panic!("still degraded"),
    }
    store.try_recover().await.expect("recovered");
    assert_eq!(primary.stream("s"), (0..50).collect::<Vec<_>>());
    assert_eq!(primary.appends() - before, 50 + 1, "only the call cut off in flight is made again");
}

#[tokio::test(start_paused = true)]
async fn buffered_single_appends_replay_in_a_few_batches_in_order() {
    let (primary, store) = wrapped(grouped());
    buffered(&primary, &store, "s", 600).await;
    primary.set_up(true);
    let before = primary.appends();
    store.try_recover().await.expect("recovered");
    assert_eq!(store.health(), Health::Healthy);
    assert_eq!(primary.stream("s"), (0..600).collect::<Vec<_>>(), "every write once, in order");
    // Rounds of at most 256 entries, each one batch (not 600 calls).
    assert!(primary.appends() - before <= 4, "{} calls", primary.appends() - before);
}

#[tokio::test(start_paused = true)]
async fn a_refused_group_is_replayed_write_by_write_and_only_the_bad_write_is_rejected() {
    only_the_refused_write_is_rejected(grouped()).await;
}

/// A caller that retried an append during the outage buffered the same
/// event twice; a batch may not hold one id twice, so the group ends before
/// the retry (one call each, none refused) and the event is stored once.
#[tokio::test(start_paused = true)]
async fn a_retried_append_starts_a_new_group_and_is_stored_once() {
    let (primary, store) = wrapped(grouped());
    primary.set_up(false);
    let batch = one("s", 0);
    store.append(batch.clone()).await.expect("served by the fallback");
    store.append(batch).await.expect("the retry, served by the fallback");
    store.append(one("s", 1)).await.expect("served by the fallback");
    primary.set_up(true);
    let before = primary.appends();
    store.try_recover().await.expect("recovered");
    assert_eq!(primary.stream("s"), vec![0, 1]);
    assert!(store.take_rejected().is_empty());
    assert_eq!(primary.appends() - before, 2, "[first], [retry, next]");
}

/// A group the primary refuses is replayed write by write; when the primary
/// fails on a later write of it, the writes that settled before (the one
/// rejected included) are not replayed or reported again.
#[tokio::test(start_paused = true)]
async fn a_refused_group_interrupted_midway_resumes_after_the_writes_that_settled() {
    let (primary, store) = wrapped(grouped());
    primary.set_up(false);
    store.append(AppendBatch::new(vec![NewEvent::new("test", "poison")])).await.expect("the fallback takes it");
    for n in 0..3 {
        store.append(one("s", n)).await.expect("served by the fallback");
    }
    primary.set_up(true);
    // The group call (refused), the poison alone (rejected), entry 0; then down.
    primary.go_down_after(3);
    assert_eq!(store.try_recover().await.expect_err("down again").kind(), ErrorKind::Unavailable);
    assert_eq!(primary.stream("s"), vec![0]);
    primary.set_up(true);
    store.try_recover().await.expect("recovered");
    assert_eq!(primary.stream("s"), vec![0, 1, 2]);
    assert_eq!(store.take_rejected().len(), 1, "the poison is reported once");
}
