//! [`Traced`]: the layer that gives every operation of any store a `tracing`
//! span, so a service's existing subscriber shows what the store did and how
//! long it took.
//!
//! Each call runs in a span named `palisade.<op>` (e.g. `palisade.append`)
//! with the fields `backend`, `op` and `namespace` — never keys, values,
//! filters or documents, which are attacker data. A failed call records
//! `error` (the error's `Display`, which holds no stored values or
//! credentials) and `error.kind` on its span. Backends carry no tracing
//! attributes of their own: wrapping in this layer is the one place spans come
//! from (`palisade::Stores` does it for every store it opens).

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::Value;
use uuid::Uuid;

use crate::consumers::{Claim, ConsumerInfo};
use crate::documents::{CollectionSpec, DocumentStore, Filter, FindOptions, UpdateOps, UpdateResult};
use crate::error::Result;
use crate::events::{
    AppendBatch, AppendOutcome, Cursor, Event, EventFilter, EventStore, EventSubscription, GroupBy, GroupCount, Page,
    PageRequest, Position,
};
use crate::reputation::{Period, Ranked, Recorded, ReputationEvent, ReputationRepo, Subject, SubjectKind};
use crate::sessions::{Decision, Expiry, KeyTtl, SessionCache, SetMode};
use crate::time::TimeRange;
use crate::{Capabilities, Namespace, Store};

/// A store of any of the four kinds, with a span around every operation
/// (see the module docs). Implements the same trait as what it wraps.
pub struct Traced<T: ?Sized> {
    inner: Arc<T>,
    namespace: Namespace,
}

impl<T: ?Sized> Traced<T> {
    /// Wraps `inner`, whose stores live in `namespace` (shown on every span).
    pub fn new(inner: Arc<T>, namespace: Namespace) -> Self {
        Traced { inner, namespace }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &Arc<T> {
        &self.inner
    }
}

/// Runs `$call` in the span of `$op` and records a failure on it.
macro_rules! traced {
    ($self:ident, $op:literal, $call:expr) => {{
        let span = tracing::info_span!(
            concat!("palisade.", $op),
            backend = $self.inner.backend(),
            op = $op,
            namespace = %$self.namespace,
            error = tracing::field::Empty,
            error.kind = tracing::field::Empty,
        );
        let result = tracing::Instrument::instrument($call, span.clone()).await;
        if let Err(e) = &result {
            span.record("error", tracing::field::display(e));
            span.record("error.kind", e.kind().as_str());
        }
        result
    }};
}

#[async_trait]
impl<T: ?Sized + Store> Store for Traced<T> {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn ping(&self) -> Result<()> {
        traced!(self, "ping", self.inner.ping())
    }
    async fn notes(&self) -> Result<Vec<String>> {
        traced!(self, "notes", self.inner.notes())
    }
}

#[async_trait]
impl EventStore for Traced<dyn EventStore> {
    async fn append(&self, batch: AppendBatch) -> Result<AppendOutcome> {
        traced!(self, "append", self.inner.append(batch))
    }
    async fn read(&self, after: Cursor, limit: usize) -> Result<Vec<Event>> {
        traced!(self, "read", self.inner.read(after, limit))
    }
    async fn subscribe(&self, after: Cursor, filter: EventFilter) -> Result<EventSubscription> {
        traced!(self, "subscribe", self.inner.subscribe(after, filter))
    }
    async fn query(&self, filter: EventFilter, page: PageRequest) -> Result<Page<Event>> {
        traced!(self, "query", self.inner.query(filter, page))
    }
    async fn count_by(&self, filter: EventFilter, group: GroupBy, top: usize) -> Result<Vec<GroupCount>> {
        traced!(self, "count_by", self.inner.count_by(filter, group, top))
    }
    async fn purge(&self, before: DateTime<Utc>) -> Result<u64> {
        traced!(self, "purge", self.inner.purge(before))
    }
    async fn claim_consumer(&self, claim: &Claim) -> Result<Cursor> {
        traced!(self, "claim_consumer", self.inner.claim_consumer(claim))
    }
    async fn ack_consumer(&self, name: &str, token: Uuid, position: Position) -> Result<()> {
        traced!(self, "ack_consumer", self.inner.ack_consumer(name, token, position))
    }
    async fn release_consumer(&self, name: &str, token: Uuid) -> Result<()> {
        traced!(self, "release_consumer", self.inner.release_consumer(name, token))
    }
    async fn consumers(&self) -> Result<Vec<ConsumerInfo>> {
        traced!(self, "consumers", self.inner.consumers())
    }
    async fn delete_consumer(&self, name: &str) -> Result<bool> {
        traced!(self, "delete_consumer", self.inner.delete_consumer(name))
    }
}

#[async_trait]
impl SessionCache for Traced<dyn SessionCache> {
    fn evictions(&self) -> u64 {
        self.inner.evictions()
    }
    async fn sweep_expired(&self) -> Result<u64> {
        traced!(self, "sweep_expired", self.inner.sweep_expired())
    }
    async fn set(&self, key: &str, value: Value, expiry: Option<Expiry>, mode: SetMode) -> Result<bool> {
        traced!(self, "set", self.inner.set(key, value, expiry, mode))
    }
    async fn get(&self, key: &str) -> Result<Option<Value>> {
        traced!(self, "get", self.inner.get(key))
    }
    async fn delete(&self, key: &str) -> Result<bool> {
        traced!(self, "delete", self.inner.delete(key))
    }
    async fn expire(&self, key: &str, expiry: Expiry) -> Result<bool> {
        traced!(self, "expire", self.inner.expire(key, expiry))
    }
    async fn ttl(&self, key: &str) -> Result<KeyTtl> {
        traced!(self, "ttl", self.inner.ttl(key))
    }
    async fn push(&self, key: &str, entry: Value, max_len: usize, expiry: Option<Expiry>) -> Result<usize> {
        traced!(self, "push", self.inner.push(key, entry, max_len, expiry))
    }
    async fn range(&self, key: &str, limit: usize) -> Result<Vec<Value>> {
        traced!(self, "range", self.inner.range(key, limit))
    }
    async fn incr(&self, key: &str, by: i64, expiry_on_create: Option<Expiry>) -> Result<i64> {
        traced!(self, "incr", self.inner.incr(key, by, expiry_on_create))
    }
    async fn hit(&self, key: &str, limit: u32, window: TimeDelta) -> Result<Decision> {
        traced!(self, "hit", self.inner.hit(key, limit, window))
    }
}

#[async_trait]
impl DocumentStore for Traced<dyn DocumentStore> {
    async fn ensure_collection(&self, spec: CollectionSpec) -> Result<bool> {
        traced!(self, "ensure_collection", self.inner.ensure_collection(spec))
    }
    async fn drop_collection(&self, collection: &str) -> Result<bool> {
        traced!(self, "drop_collection", self.inner.drop_collection(collection))
    }
    async fn insert(&self, collection: &str, doc: Value) -> Result<Value> {
        traced!(self, "insert", self.inner.insert(collection, doc))
    }
    async fn insert_many(&self, collection: &str, docs: Vec<Value>) -> Result<Vec<Value>> {
        traced!(self, "insert_many", self.inner.insert_many(collection, docs))
    }
    async fn get(&self, collection: &str, id: &str) -> Result<Option<Value>> {
        traced!(self, "get", self.inner.get(collection, id))
    }
    async fn replace(&self, collection: &str, id: &str, doc: Value, expected_version: Option<u64>) -> Result<Value> {
        traced!(self, "replace", self.inner.replace(collection, id, doc, expected_version))
    }
    async fn update(&self, collection: &str, filter: Filter, ops: UpdateOps) -> Result<UpdateResult> {
        traced!(self, "update", self.inner.update(collection, filter, ops))
    }
    async fn delete(&self, collection: &str, filter: Filter) -> Result<u64> {
        traced!(self, "delete", self.inner.delete(collection, filter))
    }
    async fn find(&self, collection: &str, options: FindOptions) -> Result<Vec<Value>> {
        traced!(self, "find", self.inner.find(collection, options))
    }
    async fn count(&self, collection: &str, filter: Filter) -> Result<u64> {
        traced!(self, "count", self.inner.count(collection, filter))
    }
}

#[async_trait]
impl ReputationRepo for Traced<dyn ReputationRepo> {
    async fn record(&self, event: ReputationEvent) -> Result<Recorded> {
        traced!(self, "record", self.inner.record(event))
    }
    async fn score(&self, subject: &Subject) -> Result<i64> {
        traced!(self, "score", self.inner.score(subject))
    }
    async fn history(&self, subject: &Subject, range: TimeRange, limit: usize) -> Result<Vec<ReputationEvent>> {
        traced!(self, "history", self.inner.history(subject, range, limit))
    }
    async fn leaderboard(&self, kind: SubjectKind, period: Period, offset: usize, limit: usize) -> Result<Vec<Ranked>> {
        traced!(self, "leaderboard", self.inner.leaderboard(kind, period, offset, limit))
    }
    async fn rank(&self, subject: &Subject, period: Period) -> Result<Option<Ranked>> {
        traced!(self, "rank", self.inner.rank(subject, period))
    }
    async fn around(&self, subject: &Subject, period: Period, k: usize) -> Result<Vec<Ranked>> {
        traced!(self, "around", self.inner.around(subject, period, k))
    }
    async fn rebuild(&self, period: Period) -> Result<u64> {
        traced!(self, "rebuild", self.inner.rebuild(period))
    }
}
