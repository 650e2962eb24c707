//! Hostile input against an [`EventStore`]: the input policy, U+0000 and edge
//! cursors (see [`palisade_core::policy`]).

use serde_json::json;

use super::{append, ev, expect_caught_up, ids, next_event, query_all, read_all};
use crate::{assert_kind, nested, ok};
use palisade_core::error::ErrorKind;
use palisade_core::events::{AppendBatch, Cursor, EventFilter, Order, PageRequest, Position};
use palisade_core::policy::{DEFAULT_MAX_DEPTH, DEFAULT_MAX_EVENT_DATA_BYTES, MAX_IN_LIST};
use palisade_core::EventStore;

/// Event data nested deeper than the policy allows is `InvalidInput` and
/// stores nothing of its batch; data at the limit round-trips.
pub async fn event_data_nested_beyond_the_depth_limit_is_invalid_input(store: &dyn EventStore) {
    let fine = ev("fine").with_data(nested(DEFAULT_MAX_DEPTH));
    let deep = ev("deep").with_data(nested(DEFAULT_MAX_DEPTH + 1));
    let e = store.append(AppendBatch::new(vec![fine.clone(), deep])).await;
    assert_kind(e, ErrorKind::InvalidInput, "data one level too deep");
    assert!(read_all(store).await.is_empty(), "the refused batch stored something");
    append(store, vec![fine.clone()]).await;
    assert_eq!(read_all(store).await[0].data, fine.data, "data at the depth limit round-trips");
}

/// Event data larger than the policy allows (serialized) is `InvalidInput`.
pub async fn event_data_over_the_size_limit_is_invalid_input(store: &dyn EventStore) {
    let big = json!({ "payload": "x".repeat(DEFAULT_MAX_EVENT_DATA_BYTES) });
    assert_kind(store.append(AppendBatch::new(vec![ev("big").with_data(big)])).await, ErrorKind::InvalidInput, "big");
    assert!(read_all(store).await.is_empty());
}

/// U+0000 in strings and keys of event data is stored and returned
/// byte-exact by `read`, `query` and `subscribe`.
pub async fn nul_in_event_data_round_trips_byte_exact(store: &dyn EventStore) {
    let data = json!({"pay\u{0}load": "GET /etc/passwd\u{0}.png", "list": ["\u{0}", "\u{1}", "\u{1}\u{1}", ""]});
    let e = ev("waf").with_data(data.clone());
    append(store, vec![e.clone()]).await;
    assert_eq!(read_all(store).await[0].data, data, "read");
    assert_eq!(query_all(store, EventFilter::all(), Order::NewestFirst).await[0].data, data, "query");
    if store.capabilities().live_tail {
        let mut sub = ok(store.subscribe(Cursor::Start, EventFilter::all()).await, "subscribe");
        assert_eq!(next_event(&mut sub, "catch-up").await.data, data, "subscribe");
    }
}

/// Cursors at the edges of the position space give empty pages, never errors:
/// after the largest position (`read`, oldest-first `query`, `subscribe`) and
/// before the smallest (newest-first `query` after `0-0`).
pub async fn cursors_at_the_edges_give_empty_pages(store: &dyn EventStore) {
    append(store, vec![ev("a"), ev("b")]).await;
    let max = Position::new(u64::MAX, u64::MAX);
    assert!(ok(store.read(Cursor::After(max), 10).await, "read after max").is_empty());
    let page = |after, order| match order {
        Order::OldestFirst => PageRequest::oldest(10).continue_after(after),
        Order::NewestFirst => PageRequest::newest(10).continue_after(after),
    };
    let got = ok(store.query(EventFilter::all(), page(max, Order::OldestFirst)).await, "query after max");
    assert!(got.items.is_empty() && got.next.is_none(), "oldest first after the largest position");
    let zero = Position::new(0, 0);
    let got = ok(store.query(EventFilter::all(), page(zero, Order::NewestFirst)).await, "query before 0-0");
    assert!(got.items.is_empty() && got.next.is_none(), "newest first after 0-0");
    let got = ok(store.query(EventFilter::all(), page(zero, Order::OldestFirst)).await, "query after 0-0");
    assert_eq!(ids(&got.items).len(), 2, "oldest first after 0-0 sees everything");
    if store.capabilities().live_tail {
        let mut sub = ok(store.subscribe(Cursor::After(max), EventFilter::all()).await, "subscribe after max");
        expect_caught_up(&mut sub, "subscribe after max").await;
    }
}

/// An event filter listing more kinds, sources or tags than the policy's
/// list bound is `InvalidInput`.
pub async fn event_filter_with_too_many_values_is_invalid_input(store: &dyn EventStore) {
    let many: Vec<String> = (0..=MAX_IN_LIST).map(|i| format!("k{i}")).collect();
    let mut filter = EventFilter::all();
    filter.kinds = many.clone();
    assert_kind(store.query(filter.clone(), PageRequest::newest(10)).await, ErrorKind::InvalidInput, "query kinds");
    assert_kind(store.subscribe(Cursor::Start, filter).await.map(|_| ()), ErrorKind::InvalidInput, "subscribe kinds");
    let mut filter = EventFilter::all();
    filter.tags = many;
    assert_kind(store.query(filter, PageRequest::newest(10)).await, ErrorKind::InvalidInput, "query tags");
}

/// Instants outside years 1 to 9999 (chrono's range is far wider than what
/// Postgres or BSON hold) are `InvalidInput` in events and time filters, and
/// store nothing.
pub async fn instants_outside_years_1_to_9999_are_invalid_input(store: &dyn EventStore) {
    use chrono::{DateTime, Utc};
    for t in [DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC] {
        let e = ev("far").with_occurred_at(t);
        assert_kind(store.append(AppendBatch::new(vec![e])).await, ErrorKind::InvalidInput, "occurred_at");
        let filter = EventFilter::all().time(palisade_core::time::TimeRange::since(t));
        assert_kind(store.query(filter, PageRequest::newest(10)).await, ErrorKind::InvalidInput, "time filter");
    }
    assert!(read_all(store).await.is_empty());
}

/// `purge` takes any instant: before everything it removes nothing, after
/// everything it removes all.
pub async fn purge_with_extreme_instants_removes_nothing_or_everything(store: &dyn EventStore) {
    use chrono::{DateTime, Utc};
    append(store, vec![ev("a"), ev("b")]).await;
    assert_eq!(ok(store.purge(DateTime::<Utc>::MIN_UTC).await, "purge before everything"), 0);
    assert_eq!(read_all(store).await.len(), 2);
    assert_eq!(ok(store.purge(DateTime::<Utc>::MAX_UTC).await, "purge after everything"), 2);
    assert!(read_all(store).await.is_empty());
}
