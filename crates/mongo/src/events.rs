//! `EventStore` on three collections: `events` (one document per event,
//! `_id` = the event id, so appends are idempotent by id),
//! `event_streams` (`{_id: stream, v: <current version>}`) and
//! `event_head` (`{_id: "head", n: <last position>}`).
//!
//! - **Atomic, gap-free appends**: one multi-document transaction per
//!   `append` looks up the batch's ids, checks the expected versions,
//!   raises the head by the number of new events, raises each stream's
//!   version and inserts the events. Every append writes the head, so
//!   overlapping appends conflict and all but one are retried (see
//!   `txn.rs`; appends through one store instance take turns instead of
//!   conflicting): positions are `(n, 0)` with `n` = 1, 2, 3, … and no
//!   reader ever sees `n + 1` before `n`. A batch of any size up to
//!   [`MAX_BATCH`](palisade_core::events::MAX_BATCH) events is one
//!   transaction — unless its stored form exceeds [`MAX_TRANSACTION_BYTES`],
//!   which is refused as `InvalidInput` before any I/O (MongoDB has no hard
//!   size limit for transactions since 4.2, but a transaction must finish
//!   within `transactionLifetimeLimitSeconds`, 60 s by default).
//! - **Stored form**: fields by name; `data` as JSON text (any JSON
//!   round-trips exactly, however deep); `tag_set` holds the distinct tags
//!   for filters and grouping next to `tags` as given; `ip_key` orders
//!   addresses for CIDR ranges (`4` + 8 hex digits for IPv4, `6` + 32 for
//!   IPv6, so an IPv6 network never matches an IPv4 address, as in core).
//! - **Indexes** (created at connect): `pos` (unique), `{session, pos}`,
//!   `{ip_key, pos}`, `{kind, at}`, `{tag_set, pos}`, `{stream, version}`,
//!   `at` (retention).
//! - **Analytics** are aggregation pipelines (`$match`, `$unwind` of
//!   `tag_set`, `$group`, `$sort` by count then key, `$limit`).
//! - **Live tail**: core's [`follow`](palisade_core::backend::tail::follow)
//!   over reads by position, woken by a change stream on `events` (inserts
//!   only). Where change streams are unavailable (a server or role without
//!   them) the tail polls every 500 ms instead; a dropped connection only
//!   costs a re-read from the last position seen.
//! - **Durable consumers**: collection `event_consumers` (see the crate's
//!   `consumers` module: single-document conditional updates, leases on the
//!   caller's clock).
//! - **A malformed stored event** (written around the store) is skipped
//!   with a warning; it never fails a read.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use ipnet::IpNet;
use mongodb::bson::{doc, Bson, Document};
use mongodb::change_stream::event::ChangeStreamEvent;
use mongodb::change_stream::ChangeStream;
use mongodb::options::ReturnDocument;
use mongodb::{ClientSession, Collection};
use palisade_core::backend::check::check_limit;
use palisade_core::backend::clock::{clamp_instant, now_ms};
use palisade_core::backend::eval::canonical_ip;
use palisade_core::backend::stored::decode_stored_json;
use palisade_core::backend::tail::{follow, TailSource};
use palisade_core::events::{
    AppendBatch, AppendOutcome, Appended, Cursor, Event, EventFilter, EventSubscription, GroupBy, GroupCount, Order,
    Page, PageRequest, Position,
};
use palisade_core::time::truncate_ms;
use palisade_core::{Capabilities, Error, ErrorDetail, ErrorKind, EventStore, Result, Store};
use uuid::Uuid;

use crate::consumers;
use crate::error::{is_duplicate_key, map, tagged};
use crate::txn::{abort_with, commit, is_transient, Attempt, Rerun, Retry};
use crate::{bson_date as date, capabilities, invalid_state, MongoBackend};
use palisade_core::consumers::{Claim, ConsumerInfo};

/// The events.
pub(crate) const EVENTS: &str = "events";
/// Current version per stream.
pub(crate) const STREAMS: &str = "event_streams";
/// The last position handed out.
pub(crate) const HEAD: &str = "event_head";

/// Largest stored form of one batch (BSON bytes): one transaction's worth.
pub const MAX_TRANSACTION_BYTES: usize = 64 * 1024 * 1024;
/// Ids per `$in` lookup of already stored events.
const LOOKUP_CHUNK: usize = 10_000;

/// Most events one `insert` statement of an append carries. The test server
/// (SecantusDB) aborts a transaction that stayed 60 s past its last
/// statement's start, and one 70,000-event statement can take it longer than
/// that; on MongoDB this is only a few more round trips for huge batches.
const INSERT_CHUNK: usize = 5_000;

/// Mongo [`EventStore`].
#[derive(Clone)]
pub struct MongoEventStore {
    backend: MongoBackend,
    events: Collection<Document>,
    streams: Collection<Document>,
    head: Collection<Document>,
    consumers: Collection<Document>,
    /// Appends of this instance take turns: concurrent transactions on the
    /// head would only conflict and retry (other processes still do).
    turn: Arc<tokio::sync::Mutex<()>>,
}

/// The key that orders client addresses (see the module docs).
fn ip_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(a) => format!("4{:08x}", u32::from(a)),
        IpAddr::V6(a) => format!("6{:032x}", u128::from(a)),
    }
}

/// The lowest and highest [`ip_key`] in `net`.
fn net_range(net: IpNet) -> (String, String) {
    (ip_key(net.network()), ip_key(net.broadcast()))
}

fn as_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The query form of `filter` (fields of the stored form).
pub(crate) fn filter_doc(filter: &EventFilter) -> Document {
    let mut all: Vec<Document> = Vec::new();
    let one_of = |field: &str, values: &[String]| match values {
        [one] => doc! {field: one},
        many => doc! {field: {"$in": many}},
    };
    if !filter.kinds.is_empty() {
        all.push(one_of("kind", &filter.kinds));
    }
    if !filter.sources.is_empty() {
        all.push(one_of("source", &filter.sources));
    }
    if let Some(s) = &filter.stream {
        all.push(doc! {"stream": s});
    }
    if let Some(s) = &filter.session_id {
        all.push(doc! {"session": s});
    }
    if let Some(net) = filter.client_ip {
        let (lo, hi) = net_range(net);
        all.push(doc! {"ip_key": {"$gte": lo, "$lte": hi}});
    }
    for t in &filter.tags {
        all.push(doc! {"tag_set": t});
    }
    let mut at = Document::new();
    if let Some(from) = filter.time.from {
        at.insert("$gte", date(truncate_ms(from)));
    }
    if let Some(to) = filter.time.to {
        at.insert("$lt", date(truncate_ms(to)));
    }
    if !at.is_empty() {
        all.push(doc! {"at": at});
    }
    match all.len() {
        0 => Document::new(),
        1 => all.remove(0),
        _ => doc! {"$and": all},
    }
}

/// Positions `(n, 0)` beyond `after` in `order`, as a condition on `pos`.
fn beyond(after: Position, order: Order) -> Document {
    let major = as_i64(after.major);
    match order {
        // (n, 0) > (a, b) ⟺ n > a
        Order::OldestFirst => doc! {"pos": {"$gt": major}},
        // (n, 0) < (a, b) ⟺ n < a, or n = a when b > 0
        Order::NewestFirst if after.minor > 0 => doc! {"pos": {"$lte": major}},
        Order::NewestFirst => doc! {"pos": {"$lt": major}},
    }
}

/// The stored form of an event without its position, version and recording time.
fn stored_form(e: &palisade_core::events::NewEvent) -> Document {
    let mut d = doc! {
        "_id": e.id.to_string(),
        "source": &e.source,
        "kind": &e.kind,
        "tags": &e.tags,
        "data": e.data.to_string(),
        "at": date(truncate_ms(e.occurred_at)),
    };
    let mut set = e.tags.clone();
    set.sort();
    set.dedup();
    d.insert("tag_set", set);
    if let Some(s) = &e.stream {
        d.insert("stream", s);
    }
    if let Some(s) = &e.session_id {
        d.insert("session", s);
    }
    if let Some(ip) = e.client_ip.map(canonical_ip) {
        d.insert("ip", ip.to_string());
        d.insert("ip_key", ip_key(ip));
    }
    d
}

/// A stored event, or `None` (with a warning) when the document is malformed.
fn event_of(d: &Document) -> Option<Event> {
    let decoded = (|| -> Option<Event> {
        let opt_str = |k: &str| match d.get(k) {
            None | Some(Bson::Null) => Some(None),
            Some(Bson::String(s)) => Some(Some(s.clone())),
            Some(_) => None,
        };
        let when =
            |k: &str| d.get_datetime(k).ok().and_then(|t| DateTime::<Utc>::from_timestamp_millis(t.timestamp_millis()));
        let pos = u64::try_from(d.get_i64("pos").ok()?).ok()?;
        let version = match d.get("version") {
            None | Some(Bson::Null) => None,
            Some(Bson::Int64(v)) => Some(u64::try_from(*v).ok()?),
            Some(_) => return None,
        };
        let client_ip = match opt_str("ip")? {
            Some(text) => Some(text.parse::<IpAddr>().ok()?),
            None => None,
        };
        let tags =
            d.get_array("tags").ok()?.iter().map(|t| t.as_str().map(str::to_owned)).collect::<Option<Vec<_>>>()?;
        Some(Event {
            id: Uuid::parse_str(d.get_str("_id").ok()?).ok()?,
            source: d.get_str("source").ok()?.to_owned(),
            kind: d.get_str("kind").ok()?.to_owned(),
            stream: opt_str("stream")?,
            version,
            session_id: opt_str("session")?,
            client_ip,
            tags,
            data: decode_stored_json(d.get_str("data").ok()?.as_bytes()).ok()?,
            occurred_at: when("at")?,
            position: Position::new(pos, 0),
            recorded_at: when("rec")?,
        })
    })();
    if decoded.is_none() {
        tracing::warn!(backend = crate::BACKEND, "palisade: skipping a malformed stored event");
    }
    decoded
}

/// The outcome of an event already stored, from its stored form.
fn known(d: &Document) -> Option<(Uuid, Position, Option<u64>)> {
    let id = Uuid::parse_str(d.get_str("_id").ok()?).ok()?;
    let pos = u64::try_from(d.get_i64("pos").ok()?).ok()?;
    let version = d.get_i64("version").ok().and_then(|v| u64::try_from(v).ok());
    Some((id, Position::new(pos, 0), version))
}

impl MongoEventStore {
    /// The event store of `backend`'s namespace.
    pub fn new(backend: MongoBackend) -> Self {
        let db = backend.database();
        MongoEventStore {
            events: db.collection(EVENTS),
            streams: db.collection(STREAMS),
            head: db.collection(HEAD),
            consumers: db.collection(consumers::CONSUMERS),
            turn: Arc::default(),
            backend,
        }
    }

    /// One attempt of `append` in a transaction on `session`.
    async fn append_once(
        &self,
        session: &mut ClientSession,
        batch: &AppendBatch,
        forms: &[Document],
    ) -> Result<Attempt<AppendOutcome>> {
        const OP: &str = "append";
        macro_rules! step {
            ($e:expr) => {
                match $e {
                    Ok(v) => v,
                    Err(e) if is_transient(&e) || is_duplicate_key(&e) => return Ok(Attempt::Retry(e)),
                    Err(e) => return abort_with(session, map(OP, e)).await,
                }
            };
        }
        session.start_transaction().await.map_err(|e| map(OP, e))?;
        // Which ids are stored already.
        let ids: Vec<String> = batch.events.iter().map(|e| e.id.to_string()).collect();
        let mut stored: HashMap<Uuid, (Position, Option<u64>)> = HashMap::new();
        for chunk in ids.chunks(LOOKUP_CHUNK) {
            let mut cursor = step!(
                self.events
                    .find(doc! {"_id": {"$in": chunk}})
                    .projection(doc! {"pos": 1, "version": 1})
                    .session(&mut *session)
                    .await
            );
            while let Some(d) = step!(cursor.next(&mut *session).await.transpose()) {
                let (id, pos, version) =
                    known(&d).ok_or_else(|| invalid_state("a stored event has no readable position").with_op(OP))?;
                stored.insert(id, (pos, version));
            }
        }
        let duplicate =
            |id: &Uuid| stored.get(id).map(|(p, v)| Appended { id: *id, position: *p, version: *v, duplicate: true });
        if stored.len() == batch.events.len() {
            let _ = session.abort_transaction().await;
            let events = batch.events.iter().filter_map(|e| duplicate(&e.id)).collect();
            return Ok(Attempt::Done(AppendOutcome { events }));
        }
        // Expected versions, against the streams as this transaction sees them.
        for (stream, expected) in &batch.expected {
            let current = step!(self.streams.find_one(doc! {"_id": stream}).session(&mut *session).await);
            let actual = match current {
                Some(d) => {
                    u64::try_from(d.get_i64("v").map_err(|_| invalid_state("a stream version is not an Int64"))?)
                        .unwrap_or(0)
                }
                None => 0,
            };
            if !expected.holds(actual) {
                let conflict = Error::new(ErrorKind::Conflict, "stream version differs from the expected version")
                    .with_detail(ErrorDetail::VersionConflict { stream: stream.clone(), expected: *expected, actual });
                return abort_with(session, conflict).await;
            }
        }
        // Positions: the head, raised by the number of new events.
        let fresh = batch.events.iter().filter(|e| !stored.contains_key(&e.id)).count();
        let head = step!(
            self.head
                .find_one_and_update(doc! {"_id": "head"}, doc! {"$inc": {"n": as_i64(fresh as u64)}})
                .upsert(true)
                .return_document(ReturnDocument::After)
                .session(&mut *session)
                .await
        );
        let last = head
            .and_then(|d| d.get_i64("n").ok())
            .and_then(|n| u64::try_from(n).ok())
            .ok_or_else(|| invalid_state("the event head is not a position").with_op(OP))?;
        let Some(mut next) = (last + 1).checked_sub(fresh as u64) else {
            return abort_with(session, invalid_state("the event head is below the events it counts").with_op(OP))
                .await;
        };
        // Versions: each stream raised by its number of new events.
        let mut per_stream: BTreeMap<&str, u64> = BTreeMap::new();
        for e in batch.events.iter().filter(|e| !stored.contains_key(&e.id)) {
            if let Some(s) = &e.stream {
                *per_stream.entry(s.as_str()).or_default() += 1;
            }
        }
        let mut next_version: HashMap<&str, u64> = HashMap::new();
        for (stream, n) in &per_stream {
            let after = step!(
                self.streams
                    .find_one_and_update(doc! {"_id": *stream}, doc! {"$inc": {"v": as_i64(*n)}})
                    .upsert(true)
                    .return_document(ReturnDocument::After)
                    .session(&mut *session)
                    .await
            );
            let v = after
                .and_then(|d| d.get_i64("v").ok())
                .and_then(|v| u64::try_from(v).ok())
                .ok_or_else(|| invalid_state("a stream version is not an Int64").with_op(OP))?;
            let Some(first) = (v + 1).checked_sub(*n) else {
                return abort_with(session, invalid_state("a stream version is below its events").with_op(OP)).await;
            };
            next_version.insert(stream, first);
        }
        let recorded_at = date(now_ms());
        let mut outcomes = Vec::with_capacity(batch.events.len());
        let mut docs = Vec::with_capacity(fresh);
        for (e, form) in batch.events.iter().zip(forms) {
            if let Some(d) = duplicate(&e.id) {
                outcomes.push(d);
                continue;
            }
            let position = Position::new(next, 0);
            let mut d = form.clone();
            d.insert("pos", as_i64(next));
            d.insert("rec", recorded_at);
            next += 1;
            let version = e.stream.as_deref().and_then(|s| next_version.get_mut(s)).map(|v| {
                *v += 1;
                *v - 1
            });
            if let Some(v) = version {
                d.insert("version", as_i64(v));
            }
            docs.push(d);
            outcomes.push(Appended { id: e.id, position, version, duplicate: false });
        }
        for chunk in docs.chunks(INSERT_CHUNK) {
            step!(self.events.insert_many(chunk).session(&mut *session).await);
        }
        match commit(session, OP, Rerun::Safe).await? {
            Attempt::Done(()) => Ok(Attempt::Done(AppendOutcome { events: outcomes })),
            Attempt::Retry(e) => Ok(Attempt::Retry(e)),
        }
    }

    async fn append_batch(&self, batch: AppendBatch) -> Result<AppendOutcome> {
        const OP: &str = "append";
        batch.validate(&self.backend.policy())?;
        let forms: Vec<Document> = batch.events.iter().map(stored_form).collect();
        // Each event's bytes plus what the transaction adds to it (position, version, recorded_at).
        let mut bytes = 0usize;
        for f in &forms {
            bytes += mongodb::bson::serialize_to_vec(f).map(|v| v.len()).unwrap_or(usize::MAX / 2) + 48;
            if bytes > MAX_TRANSACTION_BYTES {
                return Err(Error::invalid(format!(
                    "a mongo append is one transaction of at most {} MiB of stored events (MAX_TRANSACTION_BYTES); split the batch",
                    MAX_TRANSACTION_BYTES / (1024 * 1024)
                )));
            }
        }
        let _turn = self.turn.lock().await;
        let mut session = self.backend.client().start_session().await.map_err(|e| map(OP, e))?;
        let mut retry = Retry::new(self.backend.op_timeout());
        while retry.may_start() {
            match self.append_once(&mut session, &batch, &forms).await? {
                Attempt::Done(outcome) => return Ok(outcome),
                Attempt::Retry(e) => retry.back_off(&mut session, &e).await,
            }
        }
        Err(retry.exhausted())
    }

    /// Up to `limit` events matching `query`, ordered by `pos` (`1` or `-1`).
    /// Up to `limit` events matching `query`, ordered by `pos` (`1` or
    /// `-1`). Malformed stored events are skipped and more are read in
    /// their place, so they never shorten a page or stop a tail.
    async fn fetch(&self, query: Document, direction: i32, limit: usize, op: &'static str) -> Result<Vec<Event>> {
        let mut events = Vec::with_capacity(limit.min(1_024));
        let mut last_pos: Option<i64> = None;
        loop {
            let need = limit - events.len();
            let q = match last_pos {
                None => query.clone(),
                Some(p) if direction > 0 => doc! {"$and": [query.clone(), {"pos": {"$gt": p}}]},
                Some(p) => doc! {"$and": [query.clone(), {"pos": {"$lt": p}}]},
            };
            let docs: Vec<Document> = self
                .events
                .find(q)
                .sort(doc! {"pos": direction})
                .limit(i64::try_from(need).unwrap_or(i64::MAX))
                .max_time(self.backend.op_timeout())
                .await
                .map_err(|e| map(op, e))?
                .try_collect()
                .await
                .map_err(|e| map(op, e))?;
            let fetched = docs.len();
            let before = last_pos;
            for d in &docs {
                if let Ok(p) = d.get_i64("pos") {
                    last_pos = Some(p);
                }
                events.extend(event_of(d));
            }
            // Done when the log ran out or nothing was skipped; a page
            // without a readable `pos` (nowhere to go on from) also ends it.
            if fetched < need || events.len() == limit || last_pos == before {
                return Ok(events);
            }
        }
    }

    async fn read_after(&self, after: Cursor, limit: usize, op: &'static str) -> Result<Vec<Event>> {
        let query = match after {
            Cursor::Start => Document::new(),
            Cursor::After(p) => beyond(p, Order::OldestFirst),
        };
        self.fetch(query, 1, limit, op).await
    }

    async fn query_page(&self, filter: &EventFilter, page: PageRequest) -> Result<Page<Event>> {
        const OP: &str = "query";
        filter.validate()?;
        page.validate()?;
        let mut query = filter_doc(filter);
        if let Some(after) = page.after {
            query = doc! {"$and": [query, beyond(after, page.order)]};
        }
        let direction = if page.order == Order::OldestFirst { 1 } else { -1 };
        let mut items = self.fetch(query, direction, page.limit + 1, OP).await?;
        let more = items.len() > page.limit;
        items.truncate(page.limit);
        let next = if more { items.last().map(|e| e.position) } else { None };
        Ok(Page { items, next })
    }

    async fn counts(&self, filter: &EventFilter, group: GroupBy, top: usize) -> Result<Vec<GroupCount>> {
        const OP: &str = "count_by";
        filter.validate()?;
        check_limit(top)?;
        let field = match group {
            GroupBy::Kind => "kind",
            GroupBy::Source => "source",
            GroupBy::Tag => "tag_set",
            GroupBy::ClientIp => "ip",
            GroupBy::Session => "session",
        };
        let mut pipeline = vec![doc! {"$match": filter_doc(filter)}];
        if group == GroupBy::Tag {
            pipeline.push(doc! {"$unwind": "$tag_set"});
        }
        pipeline.extend([
            doc! {"$match": {field: {"$type": "string"}}},
            doc! {"$group": {"_id": format!("${field}"), "count": {"$sum": 1}}},
            doc! {"$sort": {"count": -1, "_id": 1}},
            doc! {"$limit": i64::try_from(top).unwrap_or(i64::MAX)},
        ]);
        let docs: Vec<Document> = self
            .events
            .aggregate(pipeline)
            .max_time(self.backend.op_timeout())
            .await
            .map_err(|e| map(OP, e))?
            .try_collect()
            .await
            .map_err(|e| map(OP, e))?;
        docs.iter()
            .map(|d| {
                let key = d.get_str("_id").map_err(|_| invalid_state("a group key is not a string"))?.to_owned();
                let count = match d.get("count") {
                    Some(Bson::Int32(n)) => u64::try_from(*n).ok(),
                    Some(Bson::Int64(n)) => u64::try_from(*n).ok(),
                    _ => None,
                };
                let count = count.ok_or_else(|| invalid_state("a group count is not an integer"))?;
                Ok(GroupCount { key, count })
            })
            .collect()
    }

    async fn purge_before(&self, before: DateTime<Utc>) -> Result<u64> {
        self.events
            .delete_many(doc! {"at": {"$lt": date(clamp_instant(truncate_ms(before)))}})
            .await
            .map(|r| r.deleted_count)
            .map_err(|e| map("purge", e))
    }
}

/// The live tail's source: reads by position, woken by a change stream.
struct Tail {
    store: MongoEventStore,
    /// In a mutex only so the tail is `Sync` (it is only used through `&mut`).
    changes: std::sync::Mutex<Option<ChangeStream<ChangeStreamEvent<Document>>>>,
    /// Change streams failed for good here: poll.
    polling: bool,
    /// The highest position a read returned, to skip stale notifications.
    seen: AtomicU64,
}

impl Tail {
    fn changes(&mut self) -> &mut Option<ChangeStream<ChangeStreamEvent<Document>>> {
        self.changes.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl TailSource for Tail {
    async fn read_after(&self, after: Cursor, limit: usize) -> Result<Vec<Event>> {
        let events = self.store.read_after(after, limit, "subscribe").await?;
        if let Some(last) = events.last() {
            self.seen.fetch_max(last.position.major, Ordering::Relaxed);
        }
        Ok(events)
    }

    async fn listen(&mut self) {
        if self.changes().is_some() || self.polling {
            return;
        }
        let watch = self.store.events.watch().pipeline([doc! {"$match": {"operationType": "insert"}}]).await;
        match watch {
            Ok(changes) => *self.changes() = Some(changes),
            Err(e) => {
                let e = map("subscribe", e);
                if !e.is_temporary() {
                    tracing::info!(error = %e, "palisade: no change streams here; the live tail polls");
                    self.polling = true;
                }
            }
        }
    }

    async fn wait(&mut self, timeout: Duration) {
        let seen = self.seen.load(Ordering::Relaxed);
        let slot = self.changes();
        let Some(changes) = slot.as_mut() else {
            tokio::time::sleep(timeout).await;
            return;
        };
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, changes.next()).await {
                Err(_) => return,
                Ok(Some(Ok(change))) => {
                    let pos = change.full_document.as_ref().and_then(|d| d.get_i64("pos").ok());
                    // A notification for an event already read only costs a loop.
                    if pos.is_none_or(|p| u64::try_from(p).unwrap_or(0) > seen) {
                        return;
                    }
                }
                Ok(Some(Err(_)) | None) => {
                    *slot = None;
                    return;
                }
            }
        }
    }

    fn drop_listener(&mut self) {
        *self.changes() = None;
    }
}

#[async_trait]
impl Store for MongoEventStore {
    fn backend(&self) -> &'static str {
        crate::BACKEND
    }

    fn capabilities(&self) -> Capabilities {
        capabilities()
    }

    async fn ping(&self) -> Result<()> {
        self.backend.ping().await
    }
}

#[async_trait]
impl EventStore for MongoEventStore {
    async fn append(&self, batch: AppendBatch) -> Result<AppendOutcome> {
        self.append_batch(batch).await.map_err(tagged("append"))
    }

    async fn read(&self, after: Cursor, limit: usize) -> Result<Vec<Event>> {
        check_limit(limit).map_err(tagged("read"))?;
        self.read_after(after, limit, "read").await
    }

    async fn subscribe(&self, after: Cursor, filter: EventFilter) -> Result<EventSubscription> {
        filter.validate().map_err(tagged("subscribe"))?;
        let tail =
            Tail { store: self.clone(), changes: std::sync::Mutex::new(None), polling: false, seen: AtomicU64::new(0) };
        Ok(follow(tail, after, filter).await)
    }

    async fn query(&self, filter: EventFilter, page: PageRequest) -> Result<Page<Event>> {
        self.query_page(&filter, page).await.map_err(tagged("query"))
    }

    async fn count_by(&self, filter: EventFilter, group: GroupBy, top: usize) -> Result<Vec<GroupCount>> {
        self.counts(&filter, group, top).await.map_err(tagged("count_by"))
    }

    async fn purge(&self, before: DateTime<Utc>) -> Result<u64> {
        self.purge_before(before).await.map_err(tagged("purge"))
    }

    async fn claim_consumer(&self, claim: &Claim) -> Result<Cursor> {
        consumers::claim(&self.consumers, claim).await
    }

    async fn ack_consumer(&self, name: &str, token: Uuid, position: Position) -> Result<()> {
        consumers::ack(&self.consumers, name, token, position).await
    }

    async fn release_consumer(&self, name: &str, token: Uuid) -> Result<()> {
        consumers::release(&self.consumers, name, token).await
    }

    async fn consumers(&self) -> Result<Vec<ConsumerInfo>> {
        consumers::list(&self.consumers).await
    }

    async fn delete_consumer(&self, name: &str) -> Result<bool> {
        consumers::delete(&self.consumers, name).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_keys_order_addresses_and_keep_families_apart() {
        let v4 = |s: &str| ip_key(s.parse().unwrap());
        assert!(v4("10.0.0.2") < v4("10.0.0.10"), "numeric, not textual, order");
        let (lo, hi) = net_range("10.0.0.0/8".parse().unwrap());
        assert!(lo <= v4("10.255.255.255") && v4("10.255.255.255") <= hi);
        assert!(v4("11.0.0.0") > hi);
        // An IPv6 network covering the IPv4-mapped space matches no stored IPv4 key.
        let (lo, hi) = net_range("::ffff:0:0/96".parse().unwrap());
        assert!(!(lo <= v4("10.0.0.1") && v4("10.0.0.1") <= hi));
    }

    #[test]
    fn filters_become_queries_on_the_stored_fields() {
        let f = EventFilter::all().kind("blocked").tag("a").tag("b");
        let q = filter_doc(&f);
        assert_eq!(q, doc! {"$and": [{"kind": "blocked"}, {"tag_set": "a"}, {"tag_set": "b"}]});
        assert_eq!(filter_doc(&EventFilter::all()), Document::new());
        let f = EventFilter::all().kind("a").kind("b");
        assert_eq!(filter_doc(&f), doc! {"kind": {"$in": ["a", "b"]}});
    }

    #[test]
    fn positions_beyond_a_cursor_follow_the_order_of_positions() {
        assert_eq!(beyond(Position::new(5, 0), Order::OldestFirst), doc! {"pos": {"$gt": 5_i64}});
        assert_eq!(beyond(Position::new(5, 0), Order::NewestFirst), doc! {"pos": {"$lt": 5_i64}});
        // (5, 0) < (5, 3): a foreign cursor inside position 5 still admits 5 going down.
        assert_eq!(beyond(Position::new(5, 3), Order::NewestFirst), doc! {"pos": {"$lte": 5_i64}});
    }

    #[test]
    fn malformed_stored_events_are_skipped() {
        let e = palisade_core::events::NewEvent::new("s", "k").with_tag("t");
        let mut d = stored_form(&e);
        d.insert("pos", 1_i64);
        d.insert("rec", date(now_ms()));
        let back = event_of(&d).expect("a well-formed event decodes");
        assert_eq!((back.id, back.tags.clone(), back.position), (e.id, e.tags.clone(), Position::new(1, 0)));
        d.insert("pos", "one");
        assert!(event_of(&d).is_none());
    }
}
