//! Rows that break today's input policy, written by another writer (an older
//! version, another service, a permissive [`InputPolicy`])
//! must never make a read fail — for any backend that stores JSON.
//!
//! Each scenario takes a `writer` with a permissive policy and a `reader`
//! with the default one, both on the same namespace, and checks that every
//! read path returns the deep row intact next to ordinary ones.

use futures::StreamExt;
use serde_json::json;

use super::{nested, ok};
use palisade_core::events::{AppendBatch, Cursor, EventFilter, GroupBy, NewEvent, PageRequest, SubscriptionItem};
use palisade_core::sessions::SetMode;
use palisade_core::{EventStore, InputPolicy, SessionCache};

/// How deep the poisoned rows nest: far past serde_json's recursion limit (128).
pub const POISON_DEPTH: usize = 1_000;

/// The policy a permissive writer uses.
pub fn permissive() -> InputPolicy {
    InputPolicy::default().with_max_depth(POISON_DEPTH + 10)
}

/// A deep event stored next to a shallow one reads back intact through
/// `read`, `query` (all and filtered), `subscribe` and `count_by`.
pub async fn deep_event_reads_back_intact(writer: &dyn EventStore, reader: &dyn EventStore) {
    let deep = nested(POISON_DEPTH);
    let poisoned = NewEvent::new("legacy", "deep").with_session("s1").with_data(json!({ "d": deep }));
    let plain = NewEvent::new("legacy", "plain").with_session("s1");
    ok(writer.append(AppendBatch::new(vec![poisoned.clone(), plain.clone()])).await, "permissive append");
    assert!(
        reader
            .append(AppendBatch::new(vec![NewEvent::new("x", "y").with_data(json!({"d": nested(POISON_DEPTH)}))]))
            .await
            .is_err(),
        "the reader's policy refuses such data"
    );

    let read = ok(reader.read(Cursor::Start, 10).await, "read");
    assert_eq!(read.len(), 2);
    assert_eq!(read[0].data, poisoned.data, "read returns the deep row intact");
    let page = ok(reader.query(EventFilter::all(), PageRequest::oldest(10)).await, "query all");
    assert_eq!(page.items[0].data, poisoned.data, "query");
    let page = ok(reader.query(EventFilter::all().kind("plain"), PageRequest::oldest(10)).await, "query other kind");
    assert_eq!(page.items.len(), 1, "an unrelated query is unaffected");
    let page = ok(reader.query(EventFilter::all().session("s1"), PageRequest::oldest(10)).await, "query session");
    assert_eq!(page.items.len(), 2);
    let counts = ok(reader.count_by(EventFilter::all(), GroupBy::Kind, 10).await, "count_by");
    assert_eq!(counts.iter().map(|g| g.count).sum::<u64>(), 2, "analytics count the deep row");
    if reader.capabilities().live_tail {
        let mut sub = ok(reader.subscribe(Cursor::Start, EventFilter::all()).await, "subscribe");
        match sub.next().await {
            Some(Ok(SubscriptionItem::Event(e))) => assert_eq!(e.data, poisoned.data, "subscribe"),
            other => panic!("subscribe: expected the deep event, got {:?}", other.map(|r| r.map(|_| ()))),
        }
    }
}

/// A deep session value and history entry read back intact.
pub async fn deep_session_value_reads_back_intact(writer: &dyn SessionCache, reader: &dyn SessionCache) {
    let deep = nested(POISON_DEPTH);
    ok(writer.set("deep", deep.clone(), None, SetMode::Always).await, "permissive set");
    ok(writer.push("list", deep.clone(), 10, None).await, "permissive push");
    ok(writer.push("list", json!("plain"), 10, None).await, "push");
    assert_eq!(ok(reader.get("deep").await, "get"), Some(deep.clone()));
    assert_eq!(ok(reader.range("list", 10).await, "range"), vec![json!("plain"), deep]);
}
