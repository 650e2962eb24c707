//! Behaviour specific to the memory backend as a production fallback:
//! bounded session capacity, and live tails that fall behind the broadcast
//! channel without losing events.

use std::time::Duration;

use futures::StreamExt;
use palisade_core::events::{AppendBatch, Cursor, EventFilter, NewEvent, SubscriptionItem};
use palisade_core::sessions::SetMode;
use palisade_core::{EventStore, Namespace, SessionCache};
use palisade_memory::{MemoryConfig, MemoryEventStore, MemorySessionCache};
use serde_json::json;

#[tokio::test]
async fn sessions_stay_within_capacity_evicting_least_recently_used() {
    let config = MemoryConfig::default().with_session_capacity(100);
    let cache = MemorySessionCache::new(Namespace::new("cap").unwrap(), &config);
    for i in 0..1_000 {
        cache.set(&format!("k{i}"), json!(i), None, SetMode::Always).await.unwrap();
    }
    cache.sweep();
    let mut present = 0;
    for i in 0..1_000 {
        if cache.get(&format!("k{i}")).await.unwrap().is_some() {
            present += 1;
        }
    }
    assert!(present <= 100, "{present} keys kept with a capacity of 100");
    assert!(cache.evictions() >= 900, "evictions are counted: {}", cache.evictions());
    assert_eq!(cache.get("k999").await.unwrap(), Some(json!(999)), "the newest key survives");
}

#[tokio::test]
async fn expired_keys_are_not_counted_as_evictions() {
    let cache = MemorySessionCache::new(Namespace::new("exp").unwrap(), &MemoryConfig::default());
    for i in 0..100 {
        let ttl = Some(chrono::TimeDelta::milliseconds(1).into());
        cache.set(&format!("k{i}"), json!(i), ttl, SetMode::Always).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    cache.sweep();
    assert_eq!(cache.evictions(), 0);
}

#[tokio::test]
async fn lagging_live_tail_rereads_the_log_and_loses_nothing() {
    let config = MemoryConfig::default().with_live_buffer(16);
    let store = MemoryEventStore::new(Namespace::new("lag").unwrap(), &config);
    let mut tail = store.subscribe(Cursor::Start, EventFilter::all()).await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(5), tail.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(first, SubscriptionItem::CaughtUp);
    // 1,000 events while nobody reads: far more than the 16-slot channel holds.
    for chunk in 0..10 {
        let batch = (0..100).map(|n| NewEvent::new("t", "tick").with_data(json!({ "n": chunk * 100 + n }))).collect();
        store.append(AppendBatch::new(batch)).await.unwrap();
    }
    let mut seen = Vec::new();
    while seen.len() < 1_000 {
        match tokio::time::timeout(Duration::from_secs(5), tail.next()).await.unwrap().unwrap().unwrap() {
            SubscriptionItem::Event(e) => seen.push(e.data["n"].as_u64().unwrap()),
            SubscriptionItem::CaughtUp => panic!("CaughtUp is sent once"),
        }
    }
    assert_eq!(seen, (0..1_000).collect::<Vec<u64>>(), "every event once, in order");
}
