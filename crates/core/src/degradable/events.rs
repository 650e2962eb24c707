//! `EventStore` for `Degradable<dyn EventStore>`.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{Degradable, Replay, WritePolicy};
use crate::consumers::{Claim, ConsumerInfo};
use crate::events::Position;
use crate::events::{
    AppendBatch, AppendOutcome, Cursor, Event, EventFilter, EventSubscription, ExpectedVersion, GroupBy, GroupCount,
    Page, PageRequest,
};
use crate::{EventStore, Result};
use uuid::Uuid;

/// A buffered event-store write.
#[derive(Debug, Clone)]
pub enum EventOp {
    /// An append (replayed idempotently by event id).
    Append(AppendBatch),
    /// A retention purge.
    Purge(DateTime<Utc>),
}

#[async_trait]
impl<'a> Replay for dyn EventStore + 'a {
    type Op = EventOp;

    async fn replay(&self, op: &EventOp) -> Result<()> {
        match op {
            EventOp::Append(batch) => self.append(batch.clone()).await.map(|_| ()),
            EventOp::Purge(before) => self.purge(*before).await.map(|_| ()),
        }
    }

    async fn probe(&self) -> Result<()> {
        self.ping().await
    }

    fn describe(op: &EventOp) -> String {
        match op {
            EventOp::Append(b) => format!("append of {} events", b.events.len()),
            EventOp::Purge(before) => format!("purge before {before}"),
        }
    }

    fn idempotent(_: &EventOp) -> bool {
        true
    }

    /// Consecutive appends without expectations (the only ones buffered),
    /// up to 500 events (`GROUP_EVENTS`) and never the same id twice, replay as
    /// one batch: the same events in the same order, idempotent by id, in
    /// one round trip instead of one per buffered call.
    fn group_len(ops: &[Arc<EventOp>]) -> usize {
        let (mut ids, mut events, mut n) = (HashSet::new(), 0, 0);
        for op in ops {
            let EventOp::Append(b) = &**op else { break };
            let fits = n == 0 || events + b.events.len() <= GROUP_EVENTS;
            if !fits || b.expected.values().any(|e| *e != ExpectedVersion::Any) {
                break;
            }
            if !b.events.iter().all(|e| ids.insert(e.id)) {
                break;
            }
            events += b.events.len();
            n += 1;
        }
        n.max(ops.len().min(1))
    }

    async fn replay_group(&self, ops: &[Arc<EventOp>]) -> Result<()> {
        let appends: Option<Vec<&AppendBatch>> = ops
            .iter()
            .map(|op| match &**op {
                EventOp::Append(b) => Some(b),
                EventOp::Purge(_) => None,
            })
            .collect();
        match appends {
            Some(batches) if batches.len() > 1 => {
                let events = batches.iter().flat_map(|b| b.events.iter().cloned()).collect();
                self.append(AppendBatch::new(events)).await.map(|_| ())
            }
            _ => {
                for op in ops {
                    self.replay(op).await?;
                }
                Ok(())
            }
        }
    }
}

/// Most events one replayed group appends.
const GROUP_EVENTS: usize = 500;

#[async_trait]
impl EventStore for Degradable<dyn EventStore> {
    async fn append(&self, batch: AppendBatch) -> Result<AppendOutcome> {
        let policy = if batch.expected.values().any(|e| *e != ExpectedVersion::Any) {
            WritePolicy::PrimaryOnly
        } else {
            WritePolicy::Idempotent
        };
        // The batch is copied for the buffer only when it is buffered.
        self.write("append", policy, |s| s.append(batch.clone()), |_| Some(EventOp::Append(batch.clone()))).await
    }

    async fn read(&self, after: Cursor, limit: usize) -> Result<Vec<Event>> {
        self.read("read", |s| s.read(after, limit)).await
    }

    async fn subscribe(&self, after: Cursor, filter: EventFilter) -> Result<EventSubscription> {
        self.read("subscribe", |s| s.subscribe(after, filter.clone())).await
    }

    async fn query(&self, filter: EventFilter, page: PageRequest) -> Result<Page<Event>> {
        self.read("query", |s| s.query(filter.clone(), page)).await
    }

    async fn count_by(&self, filter: EventFilter, group: GroupBy, top: usize) -> Result<Vec<GroupCount>> {
        self.read("count_by", |s| s.count_by(filter.clone(), group, top)).await
    }

    async fn purge(&self, before: DateTime<Utc>) -> Result<u64> {
        self.write("purge", WritePolicy::Idempotent, |s| s.purge(before), |_| Some(EventOp::Purge(before))).await
    }

    // Checkpoints and leases live on the primary only: while degraded these
    // are `Unavailable`, never served by the fallback (which would forget them).
    async fn claim_consumer(&self, claim: &Claim) -> Result<Cursor> {
        self.write("claim_consumer", WritePolicy::PrimaryOnly, |s| s.claim_consumer(claim), |_| None).await
    }
    async fn ack_consumer(&self, name: &str, token: Uuid, position: Position) -> Result<()> {
        self.write("ack_consumer", WritePolicy::PrimaryOnly, |s| s.ack_consumer(name, token, position), |_| None).await
    }
    async fn release_consumer(&self, name: &str, token: Uuid) -> Result<()> {
        self.write("release_consumer", WritePolicy::PrimaryOnly, |s| s.release_consumer(name, token), |_| None).await
    }
    async fn consumers(&self) -> Result<Vec<ConsumerInfo>> {
        self.write("consumers", WritePolicy::PrimaryOnly, |s| s.consumers(), |_| None).await
    }
    async fn delete_consumer(&self, name: &str) -> Result<bool> {
        self.write("delete_consumer", WritePolicy::PrimaryOnly, |s| s.delete_consumer(name), |_| None).await
    }
}
