//! A case whose capability the store lacks is reported as n/a — never as a
//! pass — after checking that the store says `Unsupported`.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use palisade_conformance::{
    consumers, event_store, execute, open_event_store, open_shared_event_store, CaseBody, Harness, Outcome,
};
use palisade_core::events::{
    AppendBatch, AppendOutcome, Cursor, Event, EventFilter, EventSubscription, GroupBy, GroupCount, Page, PageRequest,
};
use palisade_core::{
    Capabilities, DocumentStore, Error, ErrorKind, EventStore, Namespace, ReputationRepo, Result, SessionCache, Store,
};
use palisade_memory::{MemoryConfig, MemoryEventStore};

/// A memory event store that offers neither live tails nor analytics —
/// honestly (`Unsupported`) or, with `lying`, by answering anyway.
struct Reduced {
    inner: MemoryEventStore,
    lying: bool,
}

#[async_trait]
impl Store for Reduced {
    fn backend(&self) -> &'static str {
        "reduced"
    }

    fn capabilities(&self) -> Capabilities {
        let mut caps = self.inner.capabilities();
        caps.live_tail = false;
        caps.analytics = false;
        caps.durable_consumers = false;
        caps
    }

    async fn ping(&self) -> Result<()> {
        self.inner.ping().await
    }
}

#[async_trait]
impl EventStore for Reduced {
    async fn append(&self, batch: AppendBatch) -> Result<AppendOutcome> {
        self.inner.append(batch).await
    }
    async fn read(&self, after: Cursor, limit: usize) -> Result<Vec<Event>> {
        self.inner.read(after, limit).await
    }
    async fn subscribe(&self, after: Cursor, filter: EventFilter) -> Result<EventSubscription> {
        if self.lying {
            return self.inner.subscribe(after, filter).await;
        }
        Err(Error::unsupported("no live tail", &["memory"]))
    }
    async fn query(&self, filter: EventFilter, page: PageRequest) -> Result<Page<Event>> {
        self.inner.query(filter, page).await
    }
    async fn count_by(&self, filter: EventFilter, group: GroupBy, top: usize) -> Result<Vec<GroupCount>> {
        if self.lying {
            return self.inner.count_by(filter, group, top).await;
        }
        Err(Error::unsupported("no analytics", &["memory"]))
    }
    async fn purge(&self, before: DateTime<Utc>) -> Result<u64> {
        self.inner.purge(before).await
    }
}

struct ReducedHarness {
    lying: bool,
}

#[async_trait]
impl Harness for ReducedHarness {
    fn backend(&self) -> &'static str {
        "reduced"
    }
    async fn event_store(&self, ns: &Namespace) -> Result<Arc<dyn EventStore>> {
        let inner = MemoryEventStore::new(ns.clone(), &MemoryConfig::default());
        Ok(Arc::new(Reduced { inner, lying: self.lying }))
    }
    async fn session_cache(&self, _: &Namespace) -> Result<Arc<dyn SessionCache>> {
        Err(Error::new(ErrorKind::Unsupported, "events only"))
    }
    async fn document_store(&self, _: &Namespace) -> Result<Arc<dyn DocumentStore>> {
        Err(Error::new(ErrorKind::Unsupported, "events only"))
    }
    async fn reputation_repo(&self, _: &Namespace) -> Result<Arc<dyn ReputationRepo>> {
        Err(Error::new(ErrorKind::Unsupported, "events only"))
    }
    async fn drop_namespace(&self, _: &Namespace) -> Result<()> {
        Ok(())
    }
}

fn case(f: for<'a> fn(&'a dyn EventStore) -> futures::future::BoxFuture<'a, ()>) -> CaseBody<dyn EventStore> {
    CaseBody::Single(f)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cases_of_missing_capabilities_are_not_applicable() {
    let h = ReducedHarness { lying: false };
    let tail = case(|s| Box::pin(event_store::subscribe_catches_up_then_signals_caught_up_then_streams_live(s)));
    assert_eq!(execute(&h, open_event_store, tail).await.ok(), Some(Outcome::NotApplicable("live_tail")));
    let counts = case(|s| Box::pin(event_store::count_by_kind_orders_by_count_then_key(s)));
    assert_eq!(execute(&h, open_event_store, counts).await.ok(), Some(Outcome::NotApplicable("analytics")));
    let plain = case(|s| Box::pin(event_store::read_respects_limit(s)));
    assert_eq!(execute(&h, open_event_store, plain).await.ok(), Some(Outcome::Passed), "other cases still pass");
}

/// A store that lacks a capability yet does not say `Unsupported` fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_capability_must_answer_unsupported() {
    let h = ReducedHarness { lying: true };
    let counts = case(|s| Box::pin(event_store::count_by_kind_orders_by_count_then_key(s)));
    assert!(execute(&h, open_event_store, counts).await.is_err());
}

/// Consumer cases, whether they open with `Consumer::start` or with a raw
/// claim, are n/a on a store without durable consumers (whose primitives
/// keep the trait's `Unsupported` defaults).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_cases_without_durable_consumers_are_not_applicable() {
    type Shared = Arc<dyn EventStore>;
    let h = ReducedHarness { lying: false };
    let cases: [for<'a> fn(&'a Shared) -> futures::future::BoxFuture<'a, ()>; 3] = [
        |s| Box::pin(consumers::resume_after_drop_continues_after_the_last_ack(s)),
        |s| Box::pin(consumers::takeover_after_heartbeats_stop(s)),
        |s| Box::pin(consumers::an_expired_lease_neither_acks_nor_renews(s)),
    ];
    for f in cases {
        let outcome = execute(&h, open_shared_event_store, CaseBody::Single(f)).await.ok();
        assert_eq!(outcome, Some(Outcome::NotApplicable("durable_consumers")));
    }
}
