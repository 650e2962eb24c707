//! `EventStore` on an in-process log with gap-free positions and a broadcast
//! live tail.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Bound;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt};
use palisade_core::backend::check::check_limit;
use palisade_core::backend::clock::now_ms;
use palisade_core::backend::eval::{canonical_ip, group_keys, rank_groups};
use palisade_core::consumers::{canonical, check_consumer_name, errors as consumer_errors, Claim, ConsumerInfo};
use palisade_core::events::{
    AppendBatch, AppendOutcome, Appended, Cursor, Event, EventFilter, EventSubscription, GroupBy, GroupCount, Order,
    Page, PageRequest, Position, SubscriptionItem,
};
use palisade_core::time::truncate_ms;
use palisade_core::{Capabilities, Error, ErrorDetail, ErrorKind, EventStore, InputPolicy, Namespace, Result, Store};
use parking_lot::RwLock;
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::error::tagged;
use crate::{capabilities, MemoryConfig};

/// Events a live tail reads from the log per step while catching up.
const CATCH_UP_PAGE: usize = 512;

#[derive(Default)]
struct Log {
    events: BTreeMap<Position, Arc<Event>>,
    by_id: HashMap<Uuid, Position>,
    streams: HashMap<String, u64>,
    last: u64,
}

impl Log {
    fn after(&self, cursor: Cursor) -> impl DoubleEndedIterator<Item = &Arc<Event>> {
        let lower = match cursor {
            Cursor::Start => Bound::Unbounded,
            Cursor::After(p) => Bound::Excluded(p),
        };
        self.events.range((lower, Bound::Unbounded)).map(|(_, e)| e)
    }

    fn high(&self) -> Position {
        self.events.keys().next_back().copied().unwrap_or_default()
    }
}

struct Shared {
    log: RwLock<Log>,
    live: broadcast::Sender<Arc<Event>>,
    consumers: parking_lot::Mutex<BTreeMap<String, StoredConsumer>>,
}

/// A durable consumer as memory keeps it (durable for the process's life).
struct StoredConsumer {
    filter_key: String,
    filter: EventFilter,
    checkpoint: Option<Position>,
    holder: Option<(Uuid, DateTime<Utc>)>,
}

impl StoredConsumer {
    /// The holder's token while its lease runs (process clock).
    fn live_holder(&self, now: DateTime<Utc>) -> Option<Uuid> {
        self.holder.filter(|(_, until)| *until > now).map(|(t, _)| t)
    }
}

/// In-memory [`EventStore`]: atomic, idempotent batches; gap-free positions
/// `(n, 0)` starting at `(1, 0)`; live tail via a broadcast channel.
pub struct MemoryEventStore {
    namespace: Namespace,
    shared: Arc<Shared>,
    policy: InputPolicy,
}

impl MemoryEventStore {
    /// The namespace this store is confined to.
    pub fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    /// An empty store for `namespace`.
    pub fn new(namespace: Namespace, config: &MemoryConfig) -> Self {
        let (live, _) = broadcast::channel(config.live_buffer.max(16));
        let shared =
            Arc::new(Shared { log: RwLock::new(Log::default()), live, consumers: parking_lot::Mutex::default() });
        MemoryEventStore { namespace, shared, policy: config.policy }
    }

    fn append_sync(&self, batch: AppendBatch) -> Result<AppendOutcome> {
        batch.validate(&self.policy)?;
        let recorded_at = now_ms();
        let mut log = self.shared.log.write();
        let known: Vec<Option<Position>> = batch.events.iter().map(|e| log.by_id.get(&e.id).copied()).collect();
        if known.iter().all(Option::is_some) {
            let events = known
                .iter()
                .flatten()
                .filter_map(|p| log.events.get(p))
                .map(|e| Appended { id: e.id, position: e.position, version: e.version, duplicate: true })
                .collect();
            return Ok(AppendOutcome { events });
        }
        for (stream, expected) in &batch.expected {
            let actual = log.streams.get(stream).copied().unwrap_or(0);
            if !expected.holds(actual) {
                return Err(Error::new(ErrorKind::Conflict, "stream version differs from the expected version")
                    .with_detail(ErrorDetail::VersionConflict {
                        stream: stream.clone(),
                        expected: *expected,
                        actual,
                    }));
            }
        }
        let mut outcomes = Vec::with_capacity(batch.events.len());
        for (mut new, known) in batch.events.into_iter().zip(known) {
            if let Some(p) = known {
                if let Some(e) = log.events.get(&p) {
                    outcomes.push(Appended { id: e.id, position: p, version: e.version, duplicate: true });
                    continue;
                }
            }
            log.last += 1;
            let position = Position::new(log.last, 0);
            let version = new.stream.as_ref().map(|s| {
                let v = log.streams.entry(s.clone()).or_insert(0);
                *v += 1;
                *v
            });
            new.client_ip = new.client_ip.map(canonical_ip);
            let event = Arc::new(Event::from_new(new, position, version, recorded_at));
            outcomes.push(Appended { id: event.id, position, version, duplicate: false });
            log.by_id.insert(event.id, position);
            log.events.insert(position, Arc::clone(&event));
            // Sent under the write lock so live subscribers see positions in order.
            let _ = self.shared.live.send(event);
        }
        Ok(AppendOutcome { events: outcomes })
    }

    fn query_sync(&self, filter: &EventFilter, page: PageRequest) -> Result<Page<Event>> {
        filter.validate()?;
        page.validate()?;
        let log = self.shared.log.read();
        let matching = |e: &&Arc<Event>| page.admits(e.position) && filter.matches(e);
        let mut items: Vec<Event> = match page.order {
            Order::OldestFirst => {
                log.events.values().filter(matching).take(page.limit + 1).map(|e| Event::clone(e)).collect()
            }
            Order::NewestFirst => {
                log.events.values().rev().filter(matching).take(page.limit + 1).map(|e| Event::clone(e)).collect()
            }
        };
        let more = items.len() > page.limit;
        items.truncate(page.limit);
        let next = if more { items.last().map(|e| e.position) } else { None };
        Ok(Page { items, next })
    }
}

/// State of one live tail.
struct Tail {
    shared: Arc<Shared>,
    filter: EventFilter,
    rx: broadcast::Receiver<Arc<Event>>,
    /// Highest position examined so far.
    cursor: Cursor,
    /// While catching up: read the log up to here, then switch to the channel.
    catch_up_to: Option<Position>,
    caught_up_sent: bool,
    pending: VecDeque<SubscriptionItem>,
}

impl Tail {
    fn examine(&mut self, e: &Event) {
        if self.cursor.admits(e.position) {
            self.cursor = Cursor::After(e.position);
            if self.filter.matches(e) {
                self.pending.push_back(SubscriptionItem::Event(Box::new(e.clone())));
            }
        }
    }

    fn catch_up_step(&mut self, high: Position) {
        let page: Vec<Arc<Event>> = {
            let log = self.shared.log.read();
            log.after(self.cursor).take_while(|e| e.position <= high).take(CATCH_UP_PAGE).cloned().collect()
        };
        if page.is_empty() {
            self.catch_up_to = None;
            if !self.caught_up_sent {
                self.caught_up_sent = true;
                self.pending.push_back(SubscriptionItem::CaughtUp);
            }
        }
        for e in page {
            self.examine(&e);
        }
    }

    async fn next_item(mut self) -> Option<(Result<SubscriptionItem>, Self)> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                return Some((Ok(item), self));
            }
            if let Some(high) = self.catch_up_to {
                self.catch_up_step(high);
                continue;
            }
            match self.rx.recv().await {
                Ok(e) => self.examine(&e),
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    // Fell behind the channel: re-read the log up to its current end.
                    self.catch_up_to = Some(self.shared.log.read().high());
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

#[async_trait]
impl Store for MemoryEventStore {
    fn backend(&self) -> &'static str {
        crate::BACKEND
    }

    fn capabilities(&self) -> Capabilities {
        capabilities()
    }

    async fn ping(&self) -> Result<()> {
        Ok(())
    }
}

#[async_trait]
impl EventStore for MemoryEventStore {
    async fn append(&self, batch: AppendBatch) -> Result<AppendOutcome> {
        self.append_sync(batch).map_err(tagged("append"))
    }

    async fn read(&self, after: Cursor, limit: usize) -> Result<Vec<Event>> {
        check_limit(limit).map_err(tagged("read"))?;
        let log = self.shared.log.read();
        Ok(log.after(after).take(limit).map(|e| Event::clone(e)).collect())
    }

    async fn subscribe(&self, after: Cursor, filter: EventFilter) -> Result<EventSubscription> {
        filter.validate().map_err(tagged("subscribe"))?;
        // Subscribing under the read lock splits the log cleanly: everything up
        // to `high` is read from the log, everything after arrives on `rx`.
        let (rx, high) = {
            let log = self.shared.log.read();
            (self.shared.live.subscribe(), log.high())
        };
        let tail = Tail {
            shared: Arc::clone(&self.shared),
            filter,
            rx,
            cursor: after,
            catch_up_to: Some(high),
            caught_up_sent: false,
            pending: VecDeque::new(),
        };
        Ok(stream::unfold(tail, Tail::next_item).boxed())
    }

    async fn query(&self, filter: EventFilter, page: PageRequest) -> Result<Page<Event>> {
        self.query_sync(&filter, page).map_err(tagged("query"))
    }

    async fn count_by(&self, filter: EventFilter, group: GroupBy, top: usize) -> Result<Vec<GroupCount>> {
        let run = || {
            filter.validate()?;
            check_limit(top)?;
            let mut counts: HashMap<String, u64> = HashMap::new();
            let log = self.shared.log.read();
            for e in log.events.values().filter(|e| filter.matches(e)) {
                for key in group_keys(e, group) {
                    *counts.entry(key).or_default() += 1;
                }
            }
            let groups = counts.into_iter().map(|(key, count)| GroupCount { key, count }).collect();
            Ok(rank_groups(groups, top))
        };
        run().map_err(tagged("count_by"))
    }

    async fn purge(&self, before: DateTime<Utc>) -> Result<u64> {
        let before = truncate_ms(before);
        let mut log = self.shared.log.write();
        let doomed: Vec<(Position, Uuid)> =
            log.events.values().filter(|e| e.occurred_at < before).map(|e| (e.position, e.id)).collect();
        for (p, id) in &doomed {
            log.events.remove(p);
            log.by_id.remove(id);
        }
        Ok(doomed.len() as u64)
    }

    async fn claim_consumer(&self, claim: &Claim) -> Result<Cursor> {
        claim.validate().map_err(tagged("claim_consumer"))?;
        let filter_key = claim.filter_key().map_err(tagged("claim_consumer"))?;
        let now = now_ms();
        let until = now + chrono::TimeDelta::milliseconds(claim.lease_ms());
        let mut consumers = self.shared.consumers.lock();
        if claim.renew {
            return match consumers.get_mut(&claim.name) {
                Some(c) if c.live_holder(now) == Some(claim.token) && c.filter_key == filter_key => {
                    c.holder = Some((claim.token, until));
                    Ok(c.checkpoint.map_or(Cursor::Start, Cursor::After))
                }
                _ => Err(consumer_errors::lease_lost(&claim.name).with_op("claim_consumer")),
            };
        }
        let c = consumers.entry(claim.name.clone()).or_insert_with(|| StoredConsumer {
            filter_key: filter_key.clone(),
            filter: canonical(&claim.filter),
            checkpoint: None,
            holder: None,
        });
        if c.filter_key != filter_key {
            return Err(consumer_errors::other_filter(&claim.name).with_op("claim_consumer"));
        }
        if c.live_holder(now).is_some_and(|t| t != claim.token) {
            return Err(consumer_errors::held(&claim.name).with_op("claim_consumer"));
        }
        c.holder = Some((claim.token, until));
        Ok(c.checkpoint.map_or(Cursor::Start, Cursor::After))
    }

    async fn ack_consumer(&self, name: &str, token: Uuid, position: Position) -> Result<()> {
        check_consumer_name(name).map_err(tagged("ack_consumer"))?;
        let now = now_ms();
        let mut consumers = self.shared.consumers.lock();
        match consumers.get_mut(name) {
            Some(c) if c.live_holder(now) == Some(token) => {
                c.checkpoint = c.checkpoint.max(Some(position));
                Ok(())
            }
            _ => Err(consumer_errors::lease_lost(name).with_op("ack_consumer")),
        }
    }

    async fn release_consumer(&self, name: &str, token: Uuid) -> Result<()> {
        check_consumer_name(name).map_err(tagged("release_consumer"))?;
        if let Some(c) = self.shared.consumers.lock().get_mut(name) {
            if c.holder.is_some_and(|(t, _)| t == token) {
                c.holder = None;
            }
        }
        Ok(())
    }

    async fn consumers(&self) -> Result<Vec<ConsumerInfo>> {
        let now = now_ms();
        let consumers = self.shared.consumers.lock();
        Ok(consumers
            .iter()
            .map(|(name, c)| ConsumerInfo {
                name: name.clone(),
                filter: c.filter.clone(),
                checkpoint: c.checkpoint.map_or(Cursor::Start, Cursor::After),
                lease_expires_at: c.holder.filter(|(_, until)| *until > now).map(|(_, until)| until),
            })
            .collect())
    }

    async fn delete_consumer(&self, name: &str) -> Result<bool> {
        check_consumer_name(name).map_err(tagged("delete_consumer"))?;
        Ok(self.shared.consumers.lock().remove(name).is_some())
    }
}
