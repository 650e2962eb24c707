//! Degraded mode against a real server that goes away: the scenario a backend
//! runs with its own server process, which it knows how to stop and start.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use palisade_core::events::{AppendBatch, Cursor, NewEvent};
use palisade_core::{Degradable, DegradeConfig, EventStore, Health};

/// Writers appending concurrently.
const WRITERS: u32 = 8;
/// Events each writer appends at least.
const MIN_PER_WRITER: u32 = 20;

/// What one restart scenario saw, for tests to check and benchmarks to report.
#[derive(Debug, Clone)]
pub struct Recovery {
    /// From stopping the server to the first write served by the fallback.
    pub failover: Duration,
    /// From `start` returning (the server accepting connections again) to
    /// `Healthy`, looked at every 5 ms.
    pub healthy_after: Duration,
    /// Writes waiting for replay when the server came back.
    pub buffered_at_restart: usize,
    /// From `start` returning to the buffer first shrinking (the end of the
    /// first replay round: the probe's reconnect and ping, plus that round);
    /// `None` if replay was never seen under way (it finished between two
    /// looks).
    pub replay_started_after: Option<Duration>,
    /// The longest call made from the restart until shortly after `Healthy`
    /// (replay included): how long a writer waited at worst while replay ran.
    pub longest_wait_in_recovery: Duration,
    /// Calls that failed (they were not acknowledged, so nothing is owed).
    pub failed: usize,
    /// Acknowledged events that the primary does not hold, or holds twice.
    pub lost_or_doubled: usize,
    /// Acknowledged events.
    pub acknowledged: usize,
    /// Each writer's acknowledged ids, in acknowledgement order, and what
    /// the primary holds, in its order.
    acked: Vec<Vec<uuid::Uuid>>,
    stored: Vec<uuid::Uuid>,
    rejected: usize,
}

/// One timed call: when it started and how long it took.
type Timed = (Instant, Duration);

/// Eight writers append events one at a time through [`Degradable`] over
/// `primary` (falling back to `fallback`, with `degrade`'s settings) while
/// `stop` takes the primary's server down and, after `outage`, `start`
/// brings it back; then it reads back what the primary holds. Panics only
/// when the store never fails over or never recovers (15 s / 30 s).
///
/// `stop` and `start` block (they run server commands); call this from a
/// multi-threaded runtime.
pub async fn run(
    primary: Arc<dyn EventStore>,
    fallback: Arc<dyn EventStore>,
    degrade: DegradeConfig,
    outage: Duration,
    stop: impl FnOnce(),
    start: impl FnOnce(),
) -> Recovery {
    let store = Arc::new(Degradable::new(Arc::clone(&primary), fallback, degrade));
    let writing = Arc::new(AtomicBool::new(true));
    let acks = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (store, writing, acks) = (Arc::clone(&store), Arc::clone(&writing), Arc::clone(&acks));
            tokio::spawn(async move {
                let (mut acked, mut calls, mut failed) = (Vec::new(), Vec::<Timed>::new(), 0);
                let mut n = 0u32;
                while writing.load(Ordering::Acquire) || n < MIN_PER_WRITER {
                    let event = NewEvent::new("restart", "tick").with_data(serde_json::json!({"w": w, "n": n}));
                    let began = Instant::now();
                    match store.append(AppendBatch::new(vec![event])).await {
                        Ok(out) => {
                            acked.extend(out.events.first().map(|e| e.id));
                            acks.fetch_add(1, Ordering::AcqRel);
                        }
                        Err(_) => failed += 1,
                    }
                    calls.push((began, began.elapsed()));
                    n += 1;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                (acked, calls, failed)
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopped = Instant::now();
    tokio::task::block_in_place(stop);
    // The first write to notice the outage (after at most the response timeout) fails over.
    let deadline = Instant::now() + Duration::from_secs(15);
    while !store.is_degraded() {
        assert!(Instant::now() < deadline, "writes did not move to the fallback within 15 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let failover = stopped.elapsed();
    let acked_when_degraded = acks.load(Ordering::Acquire);
    tokio::time::sleep(outage.max(Duration::from_millis(500))).await;
    assert!(acks.load(Ordering::Acquire) > acked_when_degraded + 8, "writes are acknowledged while the server is down");
    tokio::task::block_in_place(start);
    let restarted = Instant::now();
    let buffered = |h: &Health| match h {
        Health::Degraded { buffered, .. } => Some(*buffered),
        _ => None,
    };
    let buffered_at_restart = buffered(&store.health()).unwrap_or_default();
    let (mut most, mut replay_started_after) = (buffered_at_restart, None);
    let deadline = restarted + Duration::from_secs(30);
    loop {
        let health = store.health();
        let Some(now_buffered) = buffered(&health) else { break };
        if now_buffered < most && replay_started_after.is_none() {
            replay_started_after = Some(restarted.elapsed());
        }
        most = most.max(now_buffered);
        assert!(Instant::now() < deadline, "not recovered within 30 s: {health:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let healthy_after = restarted.elapsed();
    tokio::time::sleep(Duration::from_millis(300)).await;
    writing.store(false, Ordering::Release);
    let (mut acked, mut failed, mut longest) = (Vec::new(), 0, Duration::ZERO);
    let recovery_ends = restarted + healthy_after + Duration::from_millis(200);
    for w in writers {
        let (ids, calls, f) = w.await.expect("writer task");
        acked.push(ids);
        failed += f;
        let waits = calls.iter().filter(|(began, took)| *began + *took >= restarted && *began <= recovery_ends);
        longest = longest.max(waits.map(|(_, took)| *took).max().unwrap_or_default());
    }

    let mut stored = Vec::new();
    let mut cursor = Cursor::Start;
    loop {
        let page = primary.read(cursor, 1_000).await.expect("read the primary");
        let Some(last) = page.last() else { break };
        cursor = Cursor::After(last.position);
        stored.extend(page.iter().map(|e| e.id));
    }
    let held: HashSet<_> = stored.iter().collect();
    let acknowledged = acked.iter().map(Vec::len).sum();
    let missing = acked.iter().flatten().filter(|id| !held.contains(id)).count();
    let lost_or_doubled = missing + (stored.len() - held.len());
    let rejected = store.take_rejected().len();
    Recovery {
        failover,
        healthy_after,
        buffered_at_restart,
        replay_started_after,
        longest_wait_in_recovery: longest,
        failed,
        lost_or_doubled,
        acknowledged,
        acked,
        stored,
        rejected,
    }
}

/// [`run`] with probes quickened (100–500 ms) and a short outage; afterwards
/// the primary holds every acknowledged event exactly once, each writer's in
/// acknowledgement order; writes went on being acknowledged during the
/// outage and the store reported `Healthy` again on its own. Timings are
/// not asserted (benchmarks report them).
pub async fn no_acknowledged_event_is_lost_across_a_restart(
    primary: Arc<dyn EventStore>,
    fallback: Arc<dyn EventStore>,
    stop: impl FnOnce(),
    start: impl FnOnce(),
) {
    let degrade = DegradeConfig {
        probe_initial: Duration::from_millis(100),
        probe_max: Duration::from_millis(500),
        ..DegradeConfig::default()
    };
    let r = run(primary, fallback, degrade, Duration::from_millis(500), stop, start).await;
    let unique: HashSet<_> = r.stored.iter().collect();
    assert_eq!(unique.len(), r.stored.len(), "no event stored twice");
    for (w, ids) in r.acked.iter().enumerate() {
        assert!(ids.len() >= MIN_PER_WRITER as usize, "writer {w} got only {} acknowledgements", ids.len());
        let mine: HashSet<_> = ids.iter().collect();
        let order: Vec<_> = r.stored.iter().filter(|id| mine.contains(id)).collect();
        let want: Vec<_> = ids.iter().collect();
        assert_eq!(order, want, "writer {w}: every acknowledged event, in acknowledgement order");
    }
    assert_eq!(r.lost_or_doubled, 0);
    assert_eq!(r.rejected, 0, "the primary rejected no replayed event");
}
