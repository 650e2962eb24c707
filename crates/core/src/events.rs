//! Security events and the [`EventStore`] trait.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::IpAddr;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::backend::check::check_limit;
use crate::backend::clock::now_ms;
use crate::backend::eval::canonical_ip;
use crate::consumers::{Claim, ConsumerInfo};
use crate::error::{Error, Result};
use crate::store::Store;
use crate::time::{truncate_ms, TimeRange};
pub use crate::version::ExpectedVersion;

/// Most events one `append` call accepts.
pub const MAX_BATCH: usize = 200_000;
/// Most items one `read` / `query` page returns, and most groups `count_by` returns.
pub const MAX_PAGE: usize = 10_000;
/// Longest `source`, `kind`, `stream`, `session_id` or tag, in bytes.
pub const MAX_NAME_LEN: usize = 256;
/// Most tags on one event.
pub const MAX_TAGS: usize = 64;

/// An event as a producer hands it to [`EventStore::append`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewEvent {
    /// Idempotency key. UUID v7 by default; client-supplied ids are allowed.
    pub id: Uuid,
    /// The producing service, e.g. `gatekeeper`.
    pub source: String,
    /// What happened, e.g. `poi_tagged`, `blocked`.
    pub kind: String,
    /// Optional stream the event belongs to; the store assigns per-stream versions.
    pub stream: Option<String>,
    /// Optional session the event concerns.
    pub session_id: Option<String>,
    /// Optional client address.
    pub client_ip: Option<IpAddr>,
    /// Free-form labels, e.g. `malicious`, `rule:sqli`.
    pub tags: Vec<String>,
    /// Event payload; must be a JSON object.
    pub data: serde_json::Value,
    /// When it happened (stored at millisecond precision).
    pub occurred_at: DateTime<Utc>,
}

impl NewEvent {
    /// A new event with a fresh UUID v7, empty data and `occurred_at = now`.
    pub fn new(source: impl Into<String>, kind: impl Into<String>) -> Self {
        NewEvent {
            id: Uuid::now_v7(),
            source: source.into(),
            kind: kind.into(),
            stream: None,
            session_id: None,
            client_ip: None,
            tags: Vec::new(),
            data: serde_json::Value::Object(Default::default()),
            occurred_at: now_ms(),
        }
    }

    /// Sets the id.
    pub fn with_id(mut self, id: Uuid) -> Self {
        self.id = id;
        self
    }
    /// Sets the stream.
    pub fn with_stream(mut self, stream: impl Into<String>) -> Self {
        self.stream = Some(stream.into());
        self
    }
    /// Sets the session id.
    pub fn with_session(mut self, session_id: impl Into<String>) -> Self {
        self.session_id = Some(session_id.into());
        self
    }
    /// Sets the client IP.
    pub fn with_client_ip(mut self, ip: IpAddr) -> Self {
        self.client_ip = Some(ip);
        self
    }
    /// Adds a tag.
    pub fn with_tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }
    /// Sets the payload.
    pub fn with_data(mut self, data: serde_json::Value) -> Self {
        self.data = data;
        self
    }
    /// Sets when it happened.
    pub fn with_occurred_at(mut self, at: DateTime<Utc>) -> Self {
        self.occurred_at = at;
        self
    }

    /// Checks the event's fields; `InvalidInput` names the first bad one.
    pub fn validate(&self) -> Result<()> {
        check_name("source", &self.source)?;
        check_name("kind", &self.kind)?;
        if let Some(s) = &self.stream {
            check_name("stream", s)?;
        }
        if let Some(s) = &self.session_id {
            check_name("session_id", s)?;
        }
        if self.tags.len() > MAX_TAGS {
            return Err(Error::invalid(format!("an event has at most {MAX_TAGS} tags")));
        }
        for t in &self.tags {
            check_name("tag", t)?;
        }
        if !self.data.is_object() {
            return Err(Error::invalid("event data must be a JSON object"));
        }
        crate::time::check_instant("occurred_at", self.occurred_at)
    }
}

/// Validates a short name: 1..=256 bytes, no control characters.
pub(crate) fn check_name(what: &str, value: &str) -> Result<()> {
    if value.is_empty() || value.len() > MAX_NAME_LEN {
        return Err(Error::invalid(format!("{what} must be 1..={MAX_NAME_LEN} bytes")));
    }
    if value.chars().any(char::is_control) {
        return Err(Error::invalid(format!("{what} must not contain control characters")));
    }
    Ok(())
}

/// Global order of an event. Ordered by `(major, minor)`; backends choose how to
/// fill the two halves (memory: `(n, 0)`; Postgres: transaction id and sequence;
/// Redis: stream id). Displayed as `major-minor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct Position {
    /// Most significant half.
    pub major: u64,
    /// Least significant half.
    pub minor: u64,
}

impl Position {
    /// A position from its two halves.
    pub const fn new(major: u64, minor: u64) -> Self {
        Position { major, minor }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.major, self.minor)
    }
}

impl std::str::FromStr for Position {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::invalid("position must look like `<major>-<minor>`");
        let (a, b) = s.split_once('-').ok_or_else(bad)?;
        Ok(Position { major: a.parse().map_err(|_| bad())?, minor: b.parse().map_err(|_| bad())? })
    }
}

/// Where a `read` or `subscribe` starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Cursor {
    /// From the first stored event.
    #[default]
    Start,
    /// Strictly after this position.
    After(Position),
}

impl Cursor {
    /// Whether an event at `p` lies after the cursor.
    pub fn admits(&self, p: Position) -> bool {
        match self {
            Cursor::Start => true,
            Cursor::After(c) => p > *c,
        }
    }
}

/// A stored event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// See [`NewEvent::id`].
    pub id: Uuid,
    /// See [`NewEvent::source`].
    pub source: String,
    /// See [`NewEvent::kind`].
    pub kind: String,
    /// See [`NewEvent::stream`].
    pub stream: Option<String>,
    /// 1-based version within `stream`; `None` when the event has no stream.
    pub version: Option<u64>,
    /// See [`NewEvent::session_id`].
    pub session_id: Option<String>,
    /// See [`NewEvent::client_ip`].
    pub client_ip: Option<IpAddr>,
    /// See [`NewEvent::tags`].
    pub tags: Vec<String>,
    /// See [`NewEvent::data`].
    pub data: serde_json::Value,
    /// See [`NewEvent::occurred_at`] (millisecond precision).
    pub occurred_at: DateTime<Utc>,
    /// Global order, assigned by the store.
    pub position: Position,
    /// When the store accepted the event (millisecond precision).
    pub recorded_at: DateTime<Utc>,
}

impl Event {
    /// Builds the stored form of `e`.
    pub fn from_new(e: NewEvent, position: Position, version: Option<u64>, recorded_at: DateTime<Utc>) -> Self {
        Event {
            id: e.id,
            source: e.source,
            kind: e.kind,
            stream: e.stream,
            version,
            session_id: e.session_id,
            client_ip: e.client_ip,
            tags: e.tags,
            data: e.data,
            occurred_at: truncate_ms(e.occurred_at),
            position,
            recorded_at: truncate_ms(recorded_at),
        }
    }
}

/// One `append` call: events plus optional per-stream version expectations.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AppendBatch {
    /// The events, stored in this order.
    pub events: Vec<NewEvent>,
    /// Expected versions, by stream.
    pub expected: BTreeMap<String, ExpectedVersion>,
}

impl AppendBatch {
    /// A batch without expectations.
    pub fn new(events: Vec<NewEvent>) -> Self {
        AppendBatch { events, expected: BTreeMap::new() }
    }

    /// Adds an expectation on `stream`.
    pub fn expect(mut self, stream: impl Into<String>, expected: ExpectedVersion) -> Self {
        self.expected.insert(stream.into(), expected);
        self
    }

    /// Checks the whole batch before any I/O: 1..=[`MAX_BATCH`] valid events,
    /// no id twice, valid stream names in expectations, `Exact(0)` rejected
    /// (use `NoStream`).
    ///
    /// Each event's `data` is held to `policy` (depth, serialized size).
    pub fn validate(&self, policy: &crate::InputPolicy) -> Result<()> {
        if self.events.is_empty() || self.events.len() > MAX_BATCH {
            return Err(Error::invalid(format!("a batch holds 1..={MAX_BATCH} events")).with_op("append"));
        }
        let mut ids = HashSet::with_capacity(self.events.len());
        for e in &self.events {
            e.validate().map_err(|err| err.with_op("append"))?;
            policy.check_event_data(&e.data).map_err(|err| err.with_op("append"))?;
            if !ids.insert(e.id) {
                return Err(Error::invalid("the same event id appears twice in one batch").with_op("append"));
            }
        }
        for (stream, exp) in &self.expected {
            check_name("stream", stream).map_err(|err| err.with_op("append"))?;
            if *exp == ExpectedVersion::Exact(0) {
                return Err(Error::invalid("ExpectedVersion::Exact(0) is invalid; use NoStream").with_op("append"));
            }
        }
        Ok(())
    }
}

/// The outcome for one event of an `append`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Appended {
    /// The event id.
    pub id: Uuid,
    /// Where the event is stored (its original position for a duplicate).
    pub position: Position,
    /// Its stream version, if it has a stream.
    pub version: Option<u64>,
    /// True when the id was already stored; nothing was written for it.
    pub duplicate: bool,
}

/// The outcome of an `append`, one entry per event in batch order.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AppendOutcome {
    /// Per-event outcomes.
    pub events: Vec<Appended>,
}

impl AppendOutcome {
    /// How many events were newly stored.
    pub fn appended(&self) -> usize {
        self.events.iter().filter(|a| !a.duplicate).count()
    }
    /// How many were duplicates.
    pub fn duplicates(&self) -> usize {
        self.events.iter().filter(|a| a.duplicate).count()
    }
}

/// Which events a `query`, `subscribe` or `count_by` considers. Empty lists and
/// `None` mean "no restriction"; all given restrictions must hold.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct EventFilter {
    /// The event's kind is one of these.
    pub kinds: Vec<String>,
    /// The event's source is one of these.
    pub sources: Vec<String>,
    /// The event belongs to this stream.
    pub stream: Option<String>,
    /// The event belongs to this session.
    pub session_id: Option<String>,
    /// The event's client IP lies in this network (a single address is a /32 or /128).
    pub client_ip: Option<IpNet>,
    /// The event carries every one of these tags.
    pub tags: Vec<String>,
    /// `occurred_at` lies in this range.
    pub time: TimeRange,
}

impl EventFilter {
    /// Matches everything.
    pub fn all() -> Self {
        EventFilter::default()
    }
    /// Restricts to one more kind.
    pub fn kind(mut self, kind: impl Into<String>) -> Self {
        self.kinds.push(kind.into());
        self
    }
    /// Restricts to one more source.
    pub fn source(mut self, source: impl Into<String>) -> Self {
        self.sources.push(source.into());
        self
    }
    /// Restricts to a stream.
    pub fn stream(mut self, stream: impl Into<String>) -> Self {
        self.stream = Some(stream.into());
        self
    }
    /// Restricts to a session.
    pub fn session(mut self, session_id: impl Into<String>) -> Self {
        self.session_id = Some(session_id.into());
        self
    }
    /// Restricts to a network or single address.
    pub fn client_net(mut self, net: IpNet) -> Self {
        self.client_ip = Some(net);
        self
    }
    /// Restricts to one address.
    pub fn client_ip(self, ip: IpAddr) -> Self {
        self.client_net(IpNet::from(ip))
    }
    /// Requires one more tag.
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }
    /// Restricts `occurred_at`.
    pub fn time(mut self, range: TimeRange) -> Self {
        self.time = range;
        self
    }

    /// Checks names, list lengths (at most [`MAX_IN_LIST`](crate::policy::MAX_IN_LIST)
    /// kinds, sources and tags) and the time range.
    pub fn validate(&self) -> Result<()> {
        let max = crate::policy::MAX_IN_LIST;
        if self.kinds.len() > max || self.sources.len() > max || self.tags.len() > max {
            return Err(Error::invalid(format!("an event filter lists at most {max} kinds, sources and tags each")));
        }
        for k in &self.kinds {
            check_name("kind", k)?;
        }
        for s in &self.sources {
            check_name("source", s)?;
        }
        if let Some(s) = &self.stream {
            check_name("stream", s)?;
        }
        if let Some(s) = &self.session_id {
            check_name("session_id", s)?;
        }
        for t in &self.tags {
            check_name("tag", t)?;
        }
        self.time.validate()
    }

    /// The reference semantics of the filter, used by the memory backend and by
    /// tests of the others.
    pub fn matches(&self, e: &Event) -> bool {
        (self.kinds.is_empty() || self.kinds.contains(&e.kind))
            && (self.sources.is_empty() || self.sources.contains(&e.source))
            && self.stream.as_ref().is_none_or(|s| e.stream.as_ref() == Some(s))
            && self.session_id.as_ref().is_none_or(|s| e.session_id.as_ref() == Some(s))
            && self.client_ip.is_none_or(|net| e.client_ip.is_some_and(|ip| net.contains(&canonical_ip(ip))))
            && self.tags.iter().all(|t| e.tags.contains(t))
            && self.time.contains(e.occurred_at)
    }
}

/// Result order of a `query`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Order {
    /// Highest position first.
    #[default]
    NewestFirst,
    /// Lowest position first.
    OldestFirst,
}

/// One page request for keyset pagination by position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageRequest {
    /// 1..=[`MAX_PAGE`] items.
    pub limit: usize,
    /// Direction.
    pub order: Order,
    /// Continue after this position (the previous page's `next`).
    pub after: Option<Position>,
}

impl PageRequest {
    /// First page, newest first.
    pub fn newest(limit: usize) -> Self {
        PageRequest { limit, order: Order::NewestFirst, after: None }
    }
    /// First page, oldest first.
    pub fn oldest(limit: usize) -> Self {
        PageRequest { limit, order: Order::OldestFirst, after: None }
    }
    /// The page that follows a previous page's `next` token.
    pub fn continue_after(mut self, next: Position) -> Self {
        self.after = Some(next);
        self
    }
    /// Checks the limit.
    pub fn validate(&self) -> Result<()> {
        check_limit(self.limit)
    }
    /// Whether position `p` lies beyond the page's starting point in its direction.
    pub fn admits(&self, p: Position) -> bool {
        match (self.after, self.order) {
            (None, _) => true,
            (Some(a), Order::OldestFirst) => p > a,
            (Some(a), Order::NewestFirst) => p < a,
        }
    }
}

/// A page of results.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Page<T> {
    /// The items, in the requested order.
    pub items: Vec<T>,
    /// Token for the next page; `Some` exactly when more items matched.
    pub next: Option<Position>,
}

/// What `count_by` groups on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum GroupBy {
    /// The event kind ("rule effectiveness").
    Kind,
    /// The producing service.
    Source,
    /// Each tag of the event (an event with three tags counts once per tag).
    Tag,
    /// The client IP, as its canonical text ("top attackers").
    ClientIp,
    /// The session id.
    Session,
}

/// One group of a `count_by`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupCount {
    /// The group's key (kind, source, tag, IP text or session id).
    pub key: String,
    /// Matching events in the group.
    pub count: u64,
}

/// An item of a live tail.
#[derive(Debug, Clone, PartialEq)]
pub enum SubscriptionItem {
    /// A matching event, in position order.
    Event(Box<Event>),
    /// Sent exactly once, after every event stored before the subscription
    /// started has been delivered; everything after it is live.
    CaughtUp,
}

/// A live tail: catch-up events, one `CaughtUp`, then live events. An `Err`
/// item reports a failure the subscription could not recover from; the stream
/// ends after it.
pub type EventSubscription = BoxStream<'static, Result<SubscriptionItem>>;

/// An append-only, gap-safe log of security events.
///
/// # Contract
/// - **Atomic batches.** All events of one [`append`](Self::append) are stored or
///   none are (where [`Capabilities::atomic_batch`](crate::Capabilities::atomic_batch) is set).
/// - **Idempotent by id.** An id already stored is reported as a duplicate with its
///   original position and version, and not stored again — also when only part of
///   a batch was stored before. If *every* event of a batch is a duplicate, the
///   call succeeds without checking expectations, so a retried append is safe.
/// - **Expected versions.** Checked against each named stream's current version
///   (0 = no stream) before anything is written; a mismatch is `Conflict` with
///   [`ErrorDetail::VersionConflict`](crate::ErrorDetail::VersionConflict) and
///   nothing is stored. New events of a stream get versions `current+1, …` in
///   batch order.
/// - **Gap-safe order.** A reader that has seen position `p` never later sees a
///   new event at a position below `p`. Positions need not be consecutive unless
///   [`Capabilities::gap_free_order`](crate::Capabilities::gap_free_order) is set.
/// - **Time** is stored at millisecond precision. `purge(before)` deletes events
///   whose `occurred_at < before`; a purged id may be appended again.
///
/// # Errors
/// Bad input (empty or oversized batch, bad names, non-object data, limit 0,
/// reversed time range) is `InvalidInput` before any I/O and changes nothing.
/// A backend failure is `Unavailable`/`Timeout`, never an empty result.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait EventStore: Store {
    /// Stores a batch; see the trait contract.
    async fn append(&self, batch: AppendBatch) -> Result<AppendOutcome>;
    /// Up to `limit` events after `after`, in ascending position order.
    async fn read(&self, after: Cursor, limit: usize) -> Result<Vec<Event>>;
    /// A live tail from `after` over events matching `filter`: catch-up, then
    /// [`SubscriptionItem::CaughtUp`], then live events. `Unsupported` without
    /// [`Capabilities::live_tail`](crate::Capabilities::live_tail).
    async fn subscribe(&self, after: Cursor, filter: EventFilter) -> Result<EventSubscription>;
    /// One page of events matching `filter`, keyset-paginated by position.
    async fn query(&self, filter: EventFilter, page: PageRequest) -> Result<Page<Event>>;
    /// Counts of matching events grouped by `group`, the `top` largest first
    /// (ties by key ascending). Events lacking the grouped field are not counted.
    /// `Unsupported` without [`Capabilities::analytics`](crate::Capabilities::analytics).
    async fn count_by(&self, filter: EventFilter, group: GroupBy, top: usize) -> Result<Vec<GroupCount>>;
    /// Deletes events with `occurred_at < before`; returns how many went.
    async fn purge(&self, before: DateTime<Utc>) -> Result<u64>;

    /// Durable consumers, primitive 1 of 5 (services use
    /// [`Consumer`](crate::consumers::Consumer)): takes the named consumer's
    /// lease for `claim.token`, or renews it when that token holds it, and
    /// returns the checkpoint. The first claim creates the consumer with
    /// `claim.filter` and no checkpoint. A [`renew`](Claim::renew) claim only
    /// extends a lease the token holds (`Conflict`, lease lost, otherwise).
    ///
    /// `Conflict` with [`ErrorDetail::ConsumerLease`](crate::ErrorDetail::ConsumerLease)
    /// while another token's lease runs; `Conflict` when the consumer exists
    /// with another filter; `InvalidInput` (before any I/O) for a bad name,
    /// filter or lease. `Unsupported` without
    /// [`Capabilities::durable_consumers`](crate::Capabilities::durable_consumers).
    async fn claim_consumer(&self, claim: &Claim) -> Result<Cursor> {
        let _ = claim;
        Err(unsupported_consumers("claim_consumer"))
    }
    /// Durable consumers: moves the checkpoint of `name` forward to
    /// `position` if `token` holds its lease (a position at or before the
    /// checkpoint changes nothing). `Conflict` when the token does not hold it
    /// (taken over, released, deleted) — also when its lease ran out and
    /// another instance took it.
    async fn ack_consumer(&self, name: &str, token: Uuid, position: Position) -> Result<()> {
        let _ = (name, token, position);
        Err(unsupported_consumers("ack_consumer"))
    }
    /// Durable consumers: gives up the lease if `token` holds it (otherwise
    /// nothing happens). The checkpoint stays.
    async fn release_consumer(&self, name: &str, token: Uuid) -> Result<()> {
        let _ = (name, token);
        Err(unsupported_consumers("release_consumer"))
    }
    /// Durable consumers: every consumer of the namespace, by name.
    async fn consumers(&self) -> Result<Vec<ConsumerInfo>> {
        Err(unsupported_consumers("consumers"))
    }
    /// Durable consumers: removes `name` (checkpoint, filter, lease); a
    /// running holder loses its lease. Returns whether it existed.
    async fn delete_consumer(&self, name: &str) -> Result<bool> {
        let _ = name;
        Err(unsupported_consumers("delete_consumer"))
    }
}

fn unsupported_consumers(op: &'static str) -> Error {
    Error::new(crate::ErrorKind::Unsupported, "this event store has no durable consumers").with_op(op)
}

/// Convenience methods for every [`EventStore`].
#[async_trait]
pub trait EventStoreExt: EventStore {
    /// Appends one event.
    async fn append_one(&self, event: NewEvent) -> Result<Appended> {
        let outcome = self.append(AppendBatch::new(vec![event])).await?;
        outcome
            .events
            .into_iter()
            .next()
            .ok_or_else(|| Error::new(crate::ErrorKind::Unexpected, "append returned no outcome").with_op("append_one"))
    }

    /// Appends an event whose payload is `data` serialized with serde.
    async fn append_typed<T: Serialize + Sync>(&self, source: &str, kind: &str, data: &T) -> Result<Appended> {
        let event = NewEvent::new(source, kind).with_data(serde_json::to_value(data)?);
        self.append_one(event).await
    }

    /// The most recent events tagged `tag` since `since`, newest first
    /// ("recent attacks" with `tag = "malicious"`).
    async fn recent_tagged(&self, tag: &str, since: DateTime<Utc>, limit: usize) -> Result<Vec<Event>> {
        let filter = EventFilter::all().tag(tag).time(TimeRange::since(since));
        Ok(self.query(filter, PageRequest::newest(limit)).await?.items)
    }

    /// The `top` client IPs by number of events matching `filter` ("top attackers").
    async fn top_client_ips(&self, filter: EventFilter, top: usize) -> Result<Vec<GroupCount>> {
        self.count_by(filter, GroupBy::ClientIp, top).await
    }

    /// How far `consumer` is behind: events in the log after its checkpoint
    /// (whatever its filter), counted up to `cap` (at most [`MAX_PAGE`]).
    async fn consumer_lag(&self, consumer: &ConsumerInfo, cap: usize) -> Result<u64> {
        Ok(self.read(consumer.checkpoint, cap.clamp(1, MAX_PAGE)).await?.len() as u64)
    }
}

impl<T: EventStore + ?Sized> EventStoreExt for T {}
