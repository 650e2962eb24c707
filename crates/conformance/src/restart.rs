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

/// Eight writers append events one at a time through [`Degradable`] over
/// `primary` (falling back to `fallback`) while `stop` takes the primary's
/// server down and `start` brings it back; afterwards the primary holds every
/// acknowledged event exactly once, each writer's in acknowledgement order.
/// Also checks that writes go on being acknowledged during the outage and
/// that the store reports `Healthy` again on its own.
///
/// `stop` and `start` block (they run server commands); call this from a
/// multi-threaded runtime.
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
    let store = Arc::new(Degradable::new(Arc::clone(&primary), fallback, degrade));
    let writing = Arc::new(AtomicBool::new(true));
    let acks = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (store, writing, acks) = (Arc::clone(&store), Arc::clone(&writing), Arc::clone(&acks));
            tokio::spawn(async move {
                let mut acked = Vec::new();
                let mut n = 0u32;
                while writing.load(Ordering::Acquire) || n < MIN_PER_WRITER {
                    let event = NewEvent::new("restart", "tick").with_data(serde_json::json!({"w": w, "n": n}));
                    if let Ok(out) = store.append(AppendBatch::new(vec![event])).await {
                        acked.extend(out.events.first().map(|e| e.id));
                        acks.fetch_add(1, Ordering::AcqRel);
                    }
                    n += 1;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                acked
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(300)).await;
    tokio::task::block_in_place(stop);
    // The first write to notice the outage (after at most the response timeout) fails over.
    let deadline = Instant::now() + Duration::from_secs(15);
    while !store.is_degraded() {
        assert!(Instant::now() < deadline, "writes did not move to the fallback within 15 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let acked_when_degraded = acks.load(Ordering::Acquire);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(acks.load(Ordering::Acquire) > acked_when_degraded + 8, "writes are acknowledged while the server is down");
    tokio::task::block_in_place(start);
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.health() != Health::Healthy {
        assert!(Instant::now() < deadline, "not recovered within 30 s: {:?}", store.health());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    writing.store(false, Ordering::Release);
    let mut acked = Vec::new();
    for w in writers {
        acked.push(w.await.expect("writer task"));
    }

    let mut stored = Vec::new();
    let mut cursor = Cursor::Start;
    loop {
        let page = primary.read(cursor, 1_000).await.expect("read the primary");
        let Some(last) = page.last() else { break };
        cursor = Cursor::After(last.position);
        stored.extend(page.iter().map(|e| e.id));
    }
    let unique: HashSet<_> = stored.iter().collect();
    assert_eq!(unique.len(), stored.len(), "no event stored twice");
    for (w, ids) in acked.iter().enumerate() {
        assert!(ids.len() >= MIN_PER_WRITER as usize, "writer {w} got only {} acknowledgements", ids.len());
        let mine: HashSet<_> = ids.iter().collect();
        let order: Vec<_> = stored.iter().filter(|id| mine.contains(id)).collect();
        let want: Vec<_> = ids.iter().collect();
        assert_eq!(order, want, "writer {w}: every acknowledged event, in acknowledgement order");
    }
    assert!(store.take_rejected().is_empty(), "the primary rejected no replayed event");
}
