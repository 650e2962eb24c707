//! [`Flaky`]: a store wrapper that fails on command, for testing failover
//! (`Degradable`) and a service's own error handling without stopping a server.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use parking_lot::Mutex;
use serde_json::Value;

use palisade_core::consumers::{Claim, ConsumerInfo};
use palisade_core::documents::{CollectionSpec, Filter, FindOptions, UpdateOps, UpdateResult};
use palisade_core::events::{
    AppendBatch, AppendOutcome, Cursor, Event, EventFilter, EventSubscription, GroupBy, GroupCount, Page, PageRequest,
    Position,
};
use palisade_core::reputation::{Period, Ranked, Recorded, ReputationEvent, Subject, SubjectKind};
use palisade_core::sessions::{Decision, KeyTtl, SetMode};
use palisade_core::time::TimeRange;
use palisade_core::{
    Capabilities, DocumentStore, Error, ErrorKind, EventStore, Expiry, ReputationRepo, Result, SessionCache, Store,
};

/// How a [`Flaky`] store behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlakyMode {
    /// Forwards every call.
    Up,
    /// Fails every call with `Unavailable` before forwarding it.
    Down,
    /// Forwards every call, then reports `Timeout` anyway (the write happened,
    /// the caller was not told).
    ApplyThenTimeout,
}

/// Wraps a store and fails on command. After [`Flaky::go_down_after`]`(n)` the
/// next `n` calls are forwarded and then the store goes [`FlakyMode::Down`].
pub struct Flaky<T: ?Sized> {
    inner: Arc<T>,
    mode: AtomicU8,
    /// Calls left before going down; `u64::MAX` = never.
    budget: AtomicU64,
    calls: AtomicU64,
    /// Operations whose calls never complete ([`Flaky::stall`]).
    stalled: Mutex<Vec<&'static str>>,
}

impl<T: ?Sized> Flaky<T> {
    /// A healthy wrapper around `inner`.
    pub fn new(inner: Arc<T>) -> Self {
        Flaky {
            inner,
            mode: AtomicU8::new(0),
            budget: AtomicU64::new(u64::MAX),
            calls: AtomicU64::new(0),
            stalled: Mutex::new(Vec::new()),
        }
    }

    /// From now on every call of `op` (the trait method's name, e.g.
    /// `"subscribe"`) hangs without reaching the inner store, as on a hung
    /// connection: for testing what a caller's timeout or cancellation leaves
    /// behind. Other operations behave as the mode says.
    pub fn stall(&self, op: &'static str) {
        self.stalled.lock().push(op);
    }

    /// The wrapped store, bypassing the failures.
    pub fn inner(&self) -> &Arc<T> {
        &self.inner
    }

    /// Switches the behaviour now.
    pub fn set_mode(&self, mode: FlakyMode) {
        self.budget.store(u64::MAX, Ordering::SeqCst);
        self.mode.store(mode as u8, Ordering::SeqCst);
    }

    /// Forwards `n` more calls, then goes down.
    pub fn go_down_after(&self, n: u64) {
        self.mode.store(FlakyMode::Up as u8, Ordering::SeqCst);
        self.budget.store(n, Ordering::SeqCst);
    }

    /// Calls received so far (failed ones included).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    fn mode(&self) -> FlakyMode {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let left = self.budget.load(Ordering::SeqCst);
        if left != u64::MAX {
            if left == 0 {
                self.set_mode(FlakyMode::Down);
            } else {
                self.budget.store(left - 1, Ordering::SeqCst);
            }
        }
        match self.mode.load(Ordering::SeqCst) {
            1 => FlakyMode::Down,
            2 => FlakyMode::ApplyThenTimeout,
            _ => FlakyMode::Up,
        }
    }

    async fn call<R, F>(&self, op: &'static str, f: F) -> Result<R>
    where
        F: std::future::Future<Output = Result<R>>,
    {
        let down = || Error::new(ErrorKind::Unavailable, "flaky store is down").with_backend("flaky").with_op(op);
        let mode = self.mode();
        if self.stalled.lock().contains(&op) {
            return std::future::pending().await;
        }
        match mode {
            FlakyMode::Down => Err(down()),
            FlakyMode::Up => f.await,
            FlakyMode::ApplyThenTimeout => {
                let _ = f.await;
                Err(Error::new(ErrorKind::Timeout, "flaky store timed out after applying")
                    .with_backend("flaky")
                    .with_op(op))
            }
        }
    }
}

/// The inner store's identity; `ping` fails like any call while down.
#[async_trait]
impl<T: ?Sized + Store> Store for Flaky<T> {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn ping(&self) -> Result<()> {
        self.call("ping", self.inner.ping()).await
    }
    async fn notes(&self) -> Result<Vec<String>> {
        self.call("notes", self.inner.notes()).await
    }
}

#[async_trait]
impl EventStore for Flaky<dyn EventStore> {
    async fn append(&self, batch: AppendBatch) -> Result<AppendOutcome> {
        self.call("append", self.inner.append(batch)).await
    }
    async fn read(&self, after: Cursor, limit: usize) -> Result<Vec<Event>> {
        self.call("read", self.inner.read(after, limit)).await
    }
    async fn subscribe(&self, after: Cursor, filter: EventFilter) -> Result<EventSubscription> {
        self.call("subscribe", self.inner.subscribe(after, filter)).await
    }
    async fn query(&self, filter: EventFilter, page: PageRequest) -> Result<Page<Event>> {
        self.call("query", self.inner.query(filter, page)).await
    }
    async fn count_by(&self, filter: EventFilter, group: GroupBy, top: usize) -> Result<Vec<GroupCount>> {
        self.call("count_by", self.inner.count_by(filter, group, top)).await
    }
    async fn purge(&self, before: DateTime<Utc>) -> Result<u64> {
        self.call("purge", self.inner.purge(before)).await
    }
    async fn claim_consumer(&self, claim: &Claim) -> Result<Cursor> {
        self.call("claim_consumer", self.inner.claim_consumer(claim)).await
    }
    async fn ack_consumer(&self, name: &str, token: uuid::Uuid, position: Position) -> Result<()> {
        self.call("ack_consumer", self.inner.ack_consumer(name, token, position)).await
    }
    async fn release_consumer(&self, name: &str, token: uuid::Uuid) -> Result<()> {
        self.call("release_consumer", self.inner.release_consumer(name, token)).await
    }
    async fn consumers(&self) -> Result<Vec<ConsumerInfo>> {
        self.call("consumers", self.inner.consumers()).await
    }
    async fn delete_consumer(&self, name: &str) -> Result<bool> {
        self.call("delete_consumer", self.inner.delete_consumer(name)).await
    }
}

#[async_trait]
impl SessionCache for Flaky<dyn SessionCache> {
    fn evictions(&self) -> u64 {
        self.inner.evictions()
    }
    async fn sweep_expired(&self) -> Result<u64> {
        self.call("sweep_expired", self.inner.sweep_expired()).await
    }
    async fn set(&self, key: &str, value: Value, expiry: Option<Expiry>, mode: SetMode) -> Result<bool> {
        self.call("set", self.inner.set(key, value, expiry, mode)).await
    }
    async fn get(&self, key: &str) -> Result<Option<Value>> {
        self.call("get", self.inner.get(key)).await
    }
    async fn delete(&self, key: &str) -> Result<bool> {
        self.call("delete", self.inner.delete(key)).await
    }
    async fn expire(&self, key: &str, expiry: Expiry) -> Result<bool> {
        self.call("expire", self.inner.expire(key, expiry)).await
    }
    async fn ttl(&self, key: &str) -> Result<KeyTtl> {
        self.call("ttl", self.inner.ttl(key)).await
    }
    async fn push(&self, key: &str, entry: Value, max_len: usize, expiry: Option<Expiry>) -> Result<usize> {
        self.call("push", self.inner.push(key, entry, max_len, expiry)).await
    }
    async fn range(&self, key: &str, limit: usize) -> Result<Vec<Value>> {
        self.call("range", self.inner.range(key, limit)).await
    }
    async fn incr(&self, key: &str, by: i64, expiry_on_create: Option<Expiry>) -> Result<i64> {
        self.call("incr", self.inner.incr(key, by, expiry_on_create)).await
    }
    async fn hit(&self, key: &str, limit: u32, window: TimeDelta) -> Result<Decision> {
        self.call("hit", self.inner.hit(key, limit, window)).await
    }
}

#[async_trait]
impl DocumentStore for Flaky<dyn DocumentStore> {
    async fn ensure_collection(&self, spec: CollectionSpec) -> Result<bool> {
        self.call("ensure_collection", self.inner.ensure_collection(spec)).await
    }
    async fn drop_collection(&self, collection: &str) -> Result<bool> {
        self.call("drop_collection", self.inner.drop_collection(collection)).await
    }
    async fn insert(&self, collection: &str, doc: Value) -> Result<Value> {
        self.call("insert", self.inner.insert(collection, doc)).await
    }
    async fn insert_many(&self, collection: &str, docs: Vec<Value>) -> Result<Vec<Value>> {
        self.call("insert_many", self.inner.insert_many(collection, docs)).await
    }
    async fn get(&self, collection: &str, id: &str) -> Result<Option<Value>> {
        self.call("get", self.inner.get(collection, id)).await
    }
    async fn replace(&self, collection: &str, id: &str, doc: Value, expected_version: Option<u64>) -> Result<Value> {
        self.call("replace", self.inner.replace(collection, id, doc, expected_version)).await
    }
    async fn update(&self, collection: &str, filter: Filter, ops: UpdateOps) -> Result<UpdateResult> {
        self.call("update", self.inner.update(collection, filter, ops)).await
    }
    async fn delete(&self, collection: &str, filter: Filter) -> Result<u64> {
        self.call("delete", self.inner.delete(collection, filter)).await
    }
    async fn find(&self, collection: &str, options: FindOptions) -> Result<Vec<Value>> {
        self.call("find", self.inner.find(collection, options)).await
    }
    async fn count(&self, collection: &str, filter: Filter) -> Result<u64> {
        self.call("count", self.inner.count(collection, filter)).await
    }
}

#[async_trait]
impl ReputationRepo for Flaky<dyn ReputationRepo> {
    async fn record(&self, event: ReputationEvent) -> Result<Recorded> {
        self.call("record", self.inner.record(event)).await
    }
    async fn score(&self, subject: &Subject) -> Result<i64> {
        self.call("score", self.inner.score(subject)).await
    }
    async fn history(&self, subject: &Subject, range: TimeRange, limit: usize) -> Result<Vec<ReputationEvent>> {
        self.call("history", self.inner.history(subject, range, limit)).await
    }
    async fn leaderboard(&self, kind: SubjectKind, period: Period, offset: usize, limit: usize) -> Result<Vec<Ranked>> {
        self.call("leaderboard", self.inner.leaderboard(kind, period, offset, limit)).await
    }
    async fn rank(&self, subject: &Subject, period: Period) -> Result<Option<Ranked>> {
        self.call("rank", self.inner.rank(subject, period)).await
    }
    async fn around(&self, subject: &Subject, period: Period, k: usize) -> Result<Vec<Ranked>> {
        self.call("around", self.inner.around(subject, period, k)).await
    }
    async fn rebuild(&self, period: Period) -> Result<u64> {
        self.call("rebuild", self.inner.rebuild(period)).await
    }
}
