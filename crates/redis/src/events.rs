//! `EventStore` on Redis Streams, under `{<ns>:e}:`.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `log` | stream | every event: fields `i` (id), `t` (occurred_at ms), `j` (JSON), `v`/`s` (version, stream), `x` (session) |
//! | `ids` | hash | event id → its stream id and version (dedupe, original position) |
//! | `ver` | hash | stream name → current version |
//! | `x:s:<stream>`, `x:x:<session>` | stream | index entries carrying the *same* stream id as the log entry |
//! | `c:filters`, `c:checkpoints` | hash | durable consumer name → its filter (canonical JSON), its checkpoint (`major-minor`) |
//! | `c:lease:<name>` | string | the lease holder's token, expiring with the lease (`SET PX`, the server's clock) |
//!
//! - **Append** is one script per batch ([`scripts::EVENTS_APPEND`]): dedupe,
//!   expected versions, then `XADD *` per new event and its index entries. A
//!   script runs alone, so a batch is atomic and all-or-nothing (validation
//!   happens before any I/O), and concurrent appends serialize.
//! - **Order.** Positions are stream ids: `Position { major: ms, minor: seq }`.
//!   Redis keeps them strictly increasing (also when the clock goes back) and
//!   assigns them inside the atomic script, so a reader that saw `p` never
//!   later sees a new event below `p` (gap-safe). They are not consecutive
//!   (`gap_free_order = false`). `recorded_at` is the id's millisecond part —
//!   Redis' clock when it accepted the event.
//! - **Queries.** A `stream` or `session` filter reads that index stream;
//!   every other filter (kinds, sources, IPs/CIDRs, tags, time ranges) is
//!   evaluated on the client while scanning the log (or the index) in position
//!   order. One `query` call examines at most
//!   [`RedisConfig::scan_limit`](crate::RedisConfig::scan_limit) entries: when
//!   it stops there, the page may hold fewer than `limit` items and `next` is
//!   the last *examined* position — keep following `next`. `count_by` scans
//!   every candidate and fails with `Unsupported` when there are more than
//!   `scan_limit`; narrow it with a stream or session.
//! - **Retention.** `purge(before)` deletes by `occurred_at`, which stream ids
//!   do not encode (`XTRIM MINID` trims by *append* time), so it walks the log
//!   in steps of 1000 entries ([`scripts::EVENTS_PURGE`]) and `XDEL`s matching
//!   entries with their id and index entries. Survivors keep their positions;
//!   a purged id can be appended again. Steps are atomic, the walk is not.
//! - **Durable consumers** are scripts over the `c:` keys (claim, ack, release,
//!   list, delete), in the events hash tag, so they work on a cluster. Streams
//!   consumer groups are not used: a group shares entries among its
//!   consumers (no exclusive holder), acks entries one by one (no single
//!   checkpoint), and would have to ack every entry a filter skips. The
//!   consumer follows the log with the live tail below.
//! - **Live tail**: catch-up by `XRANGE` pages, then `CaughtUp`, then
//!   `XREAD BLOCK` on a separate connection (a blocking read would stall the
//!   shared one). Temporary failures (a restarted server) are retried for up
//!   to 30 s before the stream yields the error and ends.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt};
use palisade_core::backend::check::check_limit;
use palisade_core::backend::eval::{canonical_ip, group_keys, rank_groups};
use palisade_core::consumers::{check_consumer_name, errors as consumer_errors, Claim, ConsumerInfo};
use palisade_core::events::{
    AppendBatch, AppendOutcome, Appended, Cursor, Event, EventFilter, EventSubscription, ExpectedVersion, GroupBy,
    GroupCount, NewEvent, Order, Page, PageRequest, Position, SubscriptionItem,
};
use palisade_core::time::truncate_ms;
use palisade_core::{Capabilities, Error, ErrorDetail, ErrorKind, EventStore, Result};

use crate::clients::{Client, Cmd, Reply};
use crate::error::corrupt;
use crate::{capabilities, key, prefix, scripts, RedisBackend, Store};
use uuid::Uuid;

/// Entries one scan or purge step reads.
const STEP: usize = 1000;
/// Entries a live tail reads per `XRANGE` / `XREAD`.
const TAIL_PAGE: usize = 512;
/// How long a live tail retries temporary failures before giving up.
const TAIL_PATIENCE: Duration = Duration::from_secs(30);

/// Redis Streams [`EventStore`] (see the module docs).
#[derive(Clone)]
pub struct RedisEventStore {
    backend: RedisBackend,
    prefix: String,
}

fn stream_id(p: Position) -> String {
    format!("{}-{}", p.major, p.minor)
}

/// The exclusive `XRANGE`/`XREVRANGE` bound just past `p` in `order`, or
/// `None` when no stream id lies beyond it (Redis refuses `(` on the largest
/// id going up and on `0-0` going down), so the page is empty.
fn exclusive(p: Position, order: Order) -> Option<String> {
    let edge = match order {
        Order::OldestFirst => Position::new(u64::MAX, u64::MAX),
        Order::NewestFirst => Position::new(0, 0),
    };
    (p != edge).then(|| format!("({}", stream_id(p)))
}

/// A stored event's JSON. `data` may nest deeper than serde_json's recursion
/// limit (written before the input policy, or by another writer): it is
/// decoded without one and kept out of the typed decoding of the rest.
fn decode_event(bytes: &[u8]) -> Result<NewEvent> {
    let mut v = palisade_core::backend::stored::decode_stored_json(bytes)?;
    let data = match v.as_object_mut() {
        Some(m) => m.insert("data".to_owned(), serde_json::Value::Null),
        None => None,
    };
    let mut new: NewEvent = serde_json::from_value(v)?;
    new.data = data.unwrap_or_default();
    Ok(new)
}

fn parse_position(s: &str) -> Option<Position> {
    let (a, b) = s.split_once('-')?;
    Some(Position::new(a.parse().ok()?, b.parse().ok()?))
}

/// Where a scan reads candidates from.
enum Source {
    Log,
    Index(Vec<u8>),
}

impl RedisEventStore {
    /// The event store of `backend`'s namespace.
    pub fn new(backend: RedisBackend) -> Self {
        let prefix = prefix(&backend.namespace, Store::Events);
        RedisEventStore { backend, prefix }
    }

    fn log_key(&self) -> Vec<u8> {
        key(&self.prefix, b"log")
    }

    /// Durable consumers: name → filter key.
    fn consumer_filters(&self) -> Vec<u8> {
        key(&self.prefix, b"c:filters")
    }

    /// Durable consumers: name → checkpoint (`major-minor`).
    fn consumer_checkpoints(&self) -> Vec<u8> {
        key(&self.prefix, b"c:checkpoints")
    }

    /// Durable consumers: the lease of `name` (its holder's token, expiring).
    fn lease_key(&self, name: impl AsRef<[u8]>) -> Vec<u8> {
        let mut k = key(&self.prefix, LEASE);
        k.extend_from_slice(name.as_ref());
        k
    }

    fn index_prefix(&self) -> String {
        format!("{}x:", self.prefix)
    }

    fn source(&self, filter: &EventFilter) -> Source {
        if let Some(s) = &filter.stream {
            Source::Index(key(&self.index_prefix(), format!("s:{s}").as_bytes()))
        } else if let Some(s) = &filter.session_id {
            Source::Index(key(&self.index_prefix(), format!("x:{s}").as_bytes()))
        } else {
            Source::Log
        }
    }

    /// Decodes a stored entry.
    fn event(&self, id: &Reply, version: &Reply, json: &Reply) -> Result<Event> {
        let position =
            id.text().ok().and_then(parse_position).ok_or_else(|| corrupt(self.backend.backend(), "stream id"))?;
        let version = match version.bytes().unwrap_or_default() {
            b"" => None,
            v => Some(
                std::str::from_utf8(v)
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| corrupt(self.backend.backend(), "stream version"))?,
            ),
        };
        let bytes = json.bytes().map_err(|_| corrupt(self.backend.backend(), "event JSON"))?;
        let new = decode_event(bytes).map_err(|e| e.with_backend(self.backend.backend()))?;
        let recorded_at = DateTime::<Utc>::from_timestamp_millis(position.major as i64)
            .ok_or_else(|| corrupt(self.backend.backend(), "stream id time"))?;
        Ok(Event::from_new(new, position, version, recorded_at))
    }

    /// One scan step: up to `count` entries of `source` from `start` (an
    /// `XRANGE` bound). Returns the last examined id, how many entries were
    /// examined, and the events still in the log.
    async fn scan_step(
        &self,
        op: &'static str,
        source: &Source,
        order: Order,
        start: &str,
        count: usize,
    ) -> Result<(Option<Position>, usize, Vec<Event>)> {
        let src = match source {
            Source::Log => self.log_key(),
            Source::Index(k) => k.clone(),
        };
        let dir = match order {
            Order::OldestFirst => "asc",
            Order::NewestFirst => "desc",
        };
        let args = vec![dir.as_bytes().to_vec(), start.as_bytes().to_vec(), count.to_string().into_bytes()];
        let reply = self.backend.client.eval(op, &scripts::EVENTS_SCAN, vec![self.log_key(), src], args).await?;
        let parts = reply.array().map_err(|e| e.with_backend(self.backend.backend()).with_op(op))?;
        let [last, scanned, entries] = parts.as_slice() else {
            return Err(corrupt(self.backend.backend(), "scan script reply").with_op(op));
        };
        let last = last.text().ok().and_then(parse_position);
        let scanned = usize::try_from(scanned.int().map_err(|e| e.with_backend(self.backend.backend()).with_op(op))?)
            .unwrap_or(0);
        let entries = entries.clone().array().map_err(|e| e.with_backend(self.backend.backend()).with_op(op))?;
        let events = entries
            .chunks(3)
            .map(|c| match c {
                [id, v, j] => self.event(id, v, j),
                _ => Err(corrupt(self.backend.backend(), "scan entry")),
            })
            .collect::<Result<Vec<_>>>()
            .map_err(|e| e.with_op(op))?;
        Ok((last, scanned, events))
    }

    fn append_args(&self, batch: &AppendBatch) -> Vec<Vec<u8>> {
        let checks: Vec<(&String, &str, String)> = batch
            .expected
            .iter()
            .filter_map(|(s, e)| match e {
                ExpectedVersion::Any => None,
                ExpectedVersion::NoStream => Some((s, "n", "0".to_owned())),
                ExpectedVersion::Exact(v) => Some((s, "x", v.to_string())),
            })
            .collect();
        let mut args = Vec::with_capacity(3 + checks.len() * 3 + batch.events.len() * 5);
        args.push(self.index_prefix().into_bytes());
        args.push(batch.events.len().to_string().into_bytes());
        args.push(checks.len().to_string().into_bytes());
        for (s, mode, v) in checks {
            args.push(s.clone().into_bytes());
            args.push(mode.as_bytes().to_vec());
            args.push(v.into_bytes());
        }
        args
    }

    fn parse_rec(&self, rec: &[u8]) -> Result<(Position, Option<u64>)> {
        let text = std::str::from_utf8(rec).map_err(|_| corrupt(self.backend.backend(), "id record"))?;
        let (id, version) = text.split_once('|').ok_or_else(|| corrupt(self.backend.backend(), "id record"))?;
        let position = parse_position(id).ok_or_else(|| corrupt(self.backend.backend(), "id record position"))?;
        let version = match version {
            "" => None,
            v => Some(v.parse().map_err(|_| corrupt(self.backend.backend(), "id record version"))?),
        };
        Ok((position, version))
    }
}

#[async_trait]
impl palisade_core::Store for RedisEventStore {
    fn backend(&self) -> &'static str {
        self.backend.backend()
    }

    fn capabilities(&self) -> Capabilities {
        capabilities()
    }

    async fn ping(&self) -> Result<()> {
        self.backend.ping().await
    }
}

#[async_trait]
impl EventStore for RedisEventStore {
    async fn append(&self, batch: AppendBatch) -> Result<AppendOutcome> {
        batch.validate(&self.backend.options.policy).map_err(self.backend.tagged("append"))?;
        let mut args = self.append_args(&batch);
        for e in &batch.events {
            let stored = NewEvent {
                client_ip: e.client_ip.map(canonical_ip),
                occurred_at: truncate_ms(e.occurred_at),
                ..e.clone()
            };
            let json =
                serde_json::to_vec(&stored).map_err(|err| Error::from(err).with_backend(self.backend.backend()))?;
            args.push(e.id.to_string().into_bytes());
            args.push(e.stream.clone().unwrap_or_default().into_bytes());
            args.push(e.session_id.clone().unwrap_or_default().into_bytes());
            args.push(stored.occurred_at.timestamp_millis().to_string().into_bytes());
            args.push(json);
        }
        let keys = vec![self.log_key(), key(&self.prefix, b"ids"), key(&self.prefix, b"ver")];
        let reply = self.backend.client.eval("append", &scripts::EVENTS_APPEND, keys, args).await?;
        let parts = reply.array().map_err(|e| e.with_backend(self.backend.backend()).with_op("append"))?;
        let tag = parts.first().and_then(|t| t.text().ok()).unwrap_or_default().to_owned();
        match (tag.as_str(), parts.as_slice()) {
            ("conflict", [_, stream, actual]) => {
                let stream = stream.text().map_err(|e| e.with_backend(self.backend.backend()))?.to_owned();
                let actual: u64 = actual.text().ok().and_then(|a| a.parse().ok()).unwrap_or(0);
                let expected = batch.expected.get(&stream).copied().unwrap_or(ExpectedVersion::Any);
                Err(Error::new(ErrorKind::Conflict, "stream version differs from the expected version")
                    .with_detail(ErrorDetail::VersionConflict { stream, expected, actual })
                    .with_backend(self.backend.backend())
                    .with_op("append"))
            }
            ("dup" | "ok", [_, recs]) => {
                let recs =
                    recs.clone().array().map_err(|e| e.with_backend(self.backend.backend()).with_op("append"))?;
                if recs.len() != batch.events.len() {
                    return Err(corrupt(self.backend.backend(), "append reply length").with_op("append"));
                }
                let events = recs
                    .iter()
                    .zip(&batch.events)
                    .map(|(rec, e)| {
                        let rec = rec.bytes().map_err(|_| corrupt(self.backend.backend(), "id record"))?;
                        let (duplicate, rec) = match (tag.as_str(), rec.split_first()) {
                            ("dup", _) => (true, rec),
                            (_, Some((b'd', rest))) => (true, rest),
                            (_, Some((b'n', rest))) => (false, rest),
                            _ => return Err(corrupt(self.backend.backend(), "id record")),
                        };
                        let (position, version) = self.parse_rec(rec)?;
                        Ok(Appended { id: e.id, position, version, duplicate })
                    })
                    .collect::<Result<Vec<_>>>()
                    .map_err(|e| e.with_op("append"))?;
                Ok(AppendOutcome { events })
            }
            _ => Err(corrupt(self.backend.backend(), "append script reply").with_op("append")),
        }
    }

    async fn read(&self, after: Cursor, limit: usize) -> Result<Vec<Event>> {
        check_limit(limit).map_err(self.backend.tagged("read"))?;
        let start = match after {
            Cursor::Start => "-".to_owned(),
            Cursor::After(p) => match exclusive(p, Order::OldestFirst) {
                Some(start) => start,
                None => return Ok(Vec::new()),
            },
        };
        let (_, _, events) = self.scan_step("read", &Source::Log, Order::OldestFirst, &start, limit).await?;
        Ok(events)
    }

    async fn subscribe(&self, after: Cursor, filter: EventFilter) -> Result<EventSubscription> {
        filter.validate().map_err(self.backend.tagged("subscribe"))?;
        let tail = Tail {
            store: self.clone(),
            filter,
            cursor: match after {
                Cursor::Start => None,
                Cursor::After(p) => Some(p),
            },
            caught_up: false,
            pending: VecDeque::new(),
            blocker: None,
            failing_since: None,
        };
        Ok(stream::unfold(Some(tail), |tail| async move {
            let mut tail = tail?;
            match tail.next().await {
                Ok(item) => Some((Ok(item), Some(tail))),
                Err(e) => Some((Err(e), None)),
            }
        })
        .boxed())
    }

    async fn query(&self, filter: EventFilter, page: PageRequest) -> Result<Page<Event>> {
        filter.validate().map_err(self.backend.tagged("query"))?;
        page.validate().map_err(self.backend.tagged("query"))?;
        let source = self.source(&filter);
        let mut start = match (page.after, page.order) {
            (Some(p), order) => match exclusive(p, order) {
                Some(start) => start,
                None => return Ok(Page { items: Vec::new(), next: None }),
            },
            (None, Order::OldestFirst) => "-".to_owned(),
            (None, Order::NewestFirst) => "+".to_owned(),
        };
        let chunk = (page.limit + 1).clamp(100, STEP);
        let mut items = Vec::new();
        let mut examined = 0usize;
        let mut stopped_at = None;
        loop {
            let (last, scanned, events) = self.scan_step("query", &source, page.order, &start, chunk).await?;
            examined += scanned;
            items.extend(events.into_iter().filter(|e| filter.matches(e)));
            if items.len() > page.limit || scanned < chunk {
                break;
            }
            let Some(last) = last else { break };
            if examined >= self.backend.options.scan_limit {
                stopped_at = Some(last);
                break;
            }
            start = format!("({}", stream_id(last));
        }
        let next = if items.len() > page.limit {
            items.truncate(page.limit);
            items.last().map(|e| e.position)
        } else {
            stopped_at
        };
        Ok(Page { items, next })
    }

    async fn count_by(&self, filter: EventFilter, group: GroupBy, top: usize) -> Result<Vec<GroupCount>> {
        filter.validate().map_err(self.backend.tagged("count_by"))?;
        check_limit(top).map_err(self.backend.tagged("count_by"))?;
        let source = self.source(&filter);
        let mut counts: HashMap<String, u64> = HashMap::new();
        let mut start = "-".to_owned();
        let mut examined = 0usize;
        loop {
            let (last, scanned, events) = self.scan_step("count_by", &source, Order::OldestFirst, &start, STEP).await?;
            examined += scanned;
            for e in events.iter().filter(|e| filter.matches(e)) {
                for k in group_keys(e, group) {
                    *counts.entry(k).or_default() += 1;
                }
            }
            let Some(last) = last else { break };
            if scanned < STEP {
                break;
            }
            if examined >= self.backend.options.scan_limit {
                return Err(Error::new(
                    ErrorKind::Unsupported,
                    format!(
                        "count_by on redis scans at most {} events; narrow the filter with a stream or session",
                        self.backend.options.scan_limit
                    ),
                ))
                .map_err(self.backend.tagged("count_by"));
            }
            start = format!("({}", stream_id(last));
        }
        let groups = counts.into_iter().map(|(key, count)| GroupCount { key, count }).collect();
        Ok(rank_groups(groups, top))
    }

    async fn purge(&self, before: DateTime<Utc>) -> Result<u64> {
        let before = truncate_ms(before).timestamp_millis().to_string();
        let keys = vec![self.log_key(), key(&self.prefix, b"ids")];
        let mut start = "-".to_owned();
        let mut gone = 0u64;
        loop {
            let args = vec![
                self.index_prefix().into_bytes(),
                start.clone().into_bytes(),
                before.clone().into_bytes(),
                STEP.to_string().into_bytes(),
            ];
            let reply = self.backend.client.eval("purge", &scripts::EVENTS_PURGE, keys.clone(), args).await?;
            let parts = reply.array().map_err(|e| e.with_backend(self.backend.backend()).with_op("purge"))?;
            let [last, scanned, deleted] = parts.as_slice() else {
                return Err(corrupt(self.backend.backend(), "purge script reply").with_op("purge"));
            };
            gone += u64::try_from(deleted.int().map_err(|e| e.with_backend(self.backend.backend()))?).unwrap_or(0);
            let scanned = scanned.int().map_err(|e| e.with_backend(self.backend.backend()))?;
            match last.text().ok().filter(|s| !s.is_empty()) {
                Some(last) if scanned >= STEP as i64 => start = format!("({last}"),
                _ => return Ok(gone),
            }
        }
    }

    async fn claim_consumer(&self, claim: &Claim) -> Result<Cursor> {
        const OP: &str = "claim_consumer";
        claim.validate().map_err(self.backend.tagged(OP))?;
        let filter = claim.filter_key().map_err(self.backend.tagged(OP))?;
        let keys = vec![self.consumer_filters(), self.consumer_checkpoints(), self.lease_key(&claim.name)];
        let args = vec![
            claim.name.clone().into_bytes(),
            filter.into_bytes(),
            claim.token.to_string().into_bytes(),
            claim.lease_ms().to_string().into_bytes(),
            if claim.renew { b"1".to_vec() } else { b"0".to_vec() },
        ];
        let reply = self.backend.client.eval(OP, &scripts::CONSUMER_CLAIM, keys, args).await?;
        let bad = || corrupt(self.backend.backend(), "consumer claim reply").with_op(OP);
        let parts = reply.array().map_err(|_| bad())?;
        match parts.as_slice() {
            [status, cp] if status.bytes().ok() == Some(b"ok") => match cp.bytes().map_err(|_| bad())? {
                b"" => Ok(Cursor::Start),
                text => std::str::from_utf8(text)
                    .ok()
                    .and_then(parse_position)
                    .map(Cursor::After)
                    .ok_or_else(|| corrupt(self.backend.backend(), "consumer checkpoint").with_op(OP)),
            },
            [status] if status.bytes().ok() == Some(b"held") => {
                Err(consumer_errors::held(&claim.name).with_backend(self.backend.backend()).with_op(OP))
            }
            [status] if status.bytes().ok() == Some(b"lost") => {
                Err(consumer_errors::lease_lost(&claim.name).with_backend(self.backend.backend()).with_op(OP))
            }
            [status] if status.bytes().ok() == Some(b"filter") => {
                Err(consumer_errors::other_filter(&claim.name).with_backend(self.backend.backend()).with_op(OP))
            }
            _ => Err(bad()),
        }
    }

    async fn ack_consumer(&self, name: &str, token: Uuid, position: Position) -> Result<()> {
        const OP: &str = "ack_consumer";
        check_consumer_name(name).map_err(self.backend.tagged(OP))?;
        // Lua compares checkpoints as doubles: exact below 2^53 (stream ids' milliseconds are).
        const EXACT: u64 = 1 << 53;
        if position.major >= EXACT || position.minor >= EXACT {
            return Err(Error::invalid("position is beyond any Redis stream id")
                .with_backend(self.backend.backend())
                .with_op(OP));
        }
        let keys = vec![self.consumer_checkpoints(), self.lease_key(name)];
        let args = vec![
            name.as_bytes().to_vec(),
            token.to_string().into_bytes(),
            position.major.to_string().into_bytes(),
            position.minor.to_string().into_bytes(),
        ];
        let reply = self.backend.client.eval(OP, &scripts::CONSUMER_ACK, keys, args).await?;
        match reply.int().map_err(|e| e.with_backend(self.backend.backend()).with_op(OP))? {
            1 => Ok(()),
            _ => Err(consumer_errors::lease_lost(name).with_backend(self.backend.backend()).with_op(OP)),
        }
    }

    async fn release_consumer(&self, name: &str, token: Uuid) -> Result<()> {
        const OP: &str = "release_consumer";
        check_consumer_name(name).map_err(self.backend.tagged(OP))?;
        let keys = vec![self.lease_key(name)];
        let args = vec![token.to_string().into_bytes()];
        self.backend.client.eval(OP, &scripts::CONSUMER_RELEASE, keys, args).await.map(|_| ())
    }

    async fn consumers(&self) -> Result<Vec<ConsumerInfo>> {
        const OP: &str = "consumers";
        // The names first, then one script reads each consumer with every key
        // it touches declared (its lease key is derived from the name).
        let names = self.backend.client.call(OP, Cmd::keyed("HKEYS", self.consumer_filters())).await?;
        let names: Vec<Vec<u8>> = names
            .array()
            .and_then(|names| names.iter().map(|n| n.bytes().map(<[u8]>::to_vec)).collect())
            .map_err(|e| e.with_backend(self.backend.backend()).with_op(OP))?;
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let mut keys = vec![self.consumer_filters(), self.consumer_checkpoints()];
        keys.extend(names.iter().map(|n| self.lease_key(n)));
        let reply = self.backend.client.eval(OP, &scripts::CONSUMER_LIST, keys, names).await?;
        let flat = reply.array().map_err(|e| e.with_backend(self.backend.backend()).with_op(OP))?;
        let now = palisade_core::backend::clock::now_ms();
        let mut all = Vec::with_capacity(flat.len() / 4);
        for row in flat.chunks(4) {
            let [name, filter, checkpoint, pttl] = row else { continue };
            // One undecodable record is skipped (and logged), never fails the list.
            let decoded = (|| {
                let name = name.text().ok()?.to_owned();
                let filter: EventFilter = serde_json::from_slice(filter.bytes().ok()?).ok()?;
                let checkpoint = match checkpoint.bytes().ok()? {
                    b"" => Cursor::Start,
                    text => Cursor::After(parse_position(std::str::from_utf8(text).ok()?)?),
                };
                let pttl = pttl.int().ok()?;
                let lease_expires_at = (pttl > 0).then(|| now + chrono::TimeDelta::milliseconds(pttl));
                Some(ConsumerInfo { name, filter, checkpoint, lease_expires_at })
            })();
            match decoded {
                Some(info) => all.push(info),
                None => tracing::warn!(
                    backend = self.backend.backend(),
                    "palisade: a stored consumer does not decode; not listed"
                ),
            }
        }
        all.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(all)
    }

    async fn delete_consumer(&self, name: &str) -> Result<bool> {
        const OP: &str = "delete_consumer";
        check_consumer_name(name).map_err(self.backend.tagged(OP))?;
        let keys = vec![self.consumer_filters(), self.consumer_checkpoints(), self.lease_key(name)];
        let reply =
            self.backend.client.eval(OP, &scripts::CONSUMER_DELETE, keys, vec![name.as_bytes().to_vec()]).await?;
        Ok(reply.int().map_err(|e| e.with_backend(self.backend.backend()).with_op(OP))? > 0)
    }
}

/// Where a consumer's lease key starts, after the store prefix.
const LEASE: &[u8] = b"c:lease:";

/// State of one live tail.
struct Tail {
    store: RedisEventStore,
    filter: EventFilter,
    /// The last examined position.
    cursor: Option<Position>,
    caught_up: bool,
    pending: VecDeque<SubscriptionItem>,
    /// The separate connection for `XREAD BLOCK`.
    blocker: Option<Arc<dyn Client>>,
    failing_since: Option<Instant>,
}

impl Tail {
    fn examine(&mut self, events: Vec<Event>) {
        for e in events {
            if self.cursor.is_none_or(|c| e.position > c) {
                self.cursor = Some(e.position);
                if self.filter.matches(&e) {
                    self.pending.push_back(SubscriptionItem::Event(Box::new(e)));
                }
            }
        }
    }

    async fn next(&mut self) -> Result<SubscriptionItem> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                return Ok(item);
            }
            let step = if self.caught_up { self.live_step().await } else { self.catch_up_step().await };
            match step {
                Ok(()) => self.failing_since = None,
                Err(e) => {
                    let since = *self.failing_since.get_or_insert_with(Instant::now);
                    if !e.is_temporary() || since.elapsed() > TAIL_PATIENCE {
                        return Err(e.with_op("subscribe"));
                    }
                    self.blocker = None;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    async fn catch_up_step(&mut self) -> Result<()> {
        let start = match self.cursor {
            None => Some("-".to_owned()),
            Some(p) => exclusive(p, Order::OldestFirst),
        };
        let Some(start) = start else {
            // Nothing can follow the largest position: caught up for good.
            self.caught_up = true;
            self.pending.push_back(SubscriptionItem::CaughtUp);
            return Ok(());
        };
        let (_, scanned, events) =
            self.store.scan_step("subscribe", &Source::Log, Order::OldestFirst, &start, TAIL_PAGE).await?;
        self.examine(events);
        if scanned < TAIL_PAGE {
            self.caught_up = true;
            self.pending.push_back(SubscriptionItem::CaughtUp);
        }
        Ok(())
    }

    async fn live_step(&mut self) -> Result<()> {
        let block = self.store.backend.options.tail_block;
        let client = match &self.blocker {
            Some(c) => Arc::clone(c),
            None => {
                let c = self.store.backend.client.blocking(block).await?;
                self.blocker = Some(Arc::clone(&c));
                c
            }
        };
        let last = self.cursor.map_or_else(|| "0-0".to_owned(), stream_id);
        let cmd = Cmd {
            name: "XREAD",
            args: vec![
                b"COUNT".to_vec(),
                TAIL_PAGE.to_string().into_bytes(),
                b"BLOCK".to_vec(),
                block.as_millis().to_string().into_bytes(),
                b"STREAMS".to_vec(),
                self.store.log_key(),
                last.into_bytes(),
            ],
            key_at: Some(5),
        };
        let reply = client.call("subscribe", cmd).await?;
        let id = self.store.backend.backend();
        let mut events = Vec::new();
        for per_key in reply.array().map_err(|e| e.with_backend(id))? {
            let mut parts = per_key.array().map_err(|e| e.with_backend(id))?.into_iter();
            let (Some(_key), Some(entries)) = (parts.next(), parts.next()) else { continue };
            for entry in entries.array().map_err(|e| e.with_backend(id))? {
                let mut entry = entry.array().map_err(|e| e.with_backend(id))?.into_iter();
                let (Some(sid), Some(fields)) = (entry.next(), entry.next()) else { continue };
                let fields = fields.array().map_err(|e| e.with_backend(id))?;
                let (mut j, mut v) = (Reply::Nil, Reply::Data(Vec::new()));
                for pair in fields.chunks(2) {
                    if let [name, value] = pair {
                        match name.bytes().unwrap_or_default() {
                            b"j" => j = value.clone(),
                            b"v" => v = value.clone(),
                            _ => {}
                        }
                    }
                }
                events.push(self.store.event(&sid, &v, &j)?);
            }
        }
        self.examine(events);
        Ok(())
    }
}
