//! `EventStore` for `Degradable<dyn EventStore>`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{Degradable, Replay, WritePolicy};
use crate::events::{
    AppendBatch, AppendOutcome, Cursor, Event, EventFilter, EventSubscription, ExpectedVersion, GroupBy, GroupCount,
    Page, PageRequest,
};
use crate::{EventStore, Result};

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
}

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
}
