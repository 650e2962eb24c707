//! `EventStore` on Postgres: serialized, gap-free positions; UNNEST batch
//! inserts; LISTEN/NOTIFY live tail with polling fallback.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt};
use ipnet::IpNet;
use palisade_core::events::{
    canonical_ip, check_limit, rank_groups, AppendBatch, AppendOutcome, Appended, Cursor, Event, EventFilter,
    EventSubscription, GroupBy, GroupCount, Order, Page, PageRequest, Position, SubscriptionItem,
};
use palisade_core::time::truncate_ms;
use palisade_core::{Capabilities, Error, ErrorDetail, ErrorKind, EventStore, Result};
use sqlx::postgres::{PgListener, PgRow};
use sqlx::{Postgres, QueryBuilder, Row};
use uuid::Uuid;

use crate::error::{map, tagged};
use crate::{capabilities, PgBackend};

/// Rows per INSERT statement inside one append transaction.
const CHUNK: usize = 10_000;
/// Events a live tail reads per catch-up query.
const TAIL_PAGE: usize = 1_000;
/// How long a live tail waits for a notification before polling anyway.
const POLL_EVERY: Duration = Duration::from_millis(500);

macro_rules! columns {
    () => {
        "position, id, source, kind, stream, version, session_id, client_ip, tags, data, occurred_at, recorded_at"
    };
}

/// Postgres [`EventStore`].
#[derive(Clone)]
pub struct PgEventStore {
    backend: PgBackend,
    channel: String,
}

impl PgEventStore {
    /// The event store of `backend`'s namespace.
    pub fn new(backend: PgBackend) -> Self {
        let channel = format!("palisade_events_{}", backend.namespace);
        PgEventStore { backend, channel }
    }

    async fn append_tx(&self, batch: AppendBatch) -> Result<AppendOutcome> {
        let op = "append";
        let mut tx = self.backend.pool.begin().await.map_err(|e| map(op, e))?;
        // Serializes appends in this namespace until commit: positions are handed
        // out only after every lower one is committed or rolled back.
        let last: i64 = sqlx::query_scalar("SELECT last_position FROM event_head FOR UPDATE")
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| map(op, e))?;
        let ids: Vec<Uuid> = batch.events.iter().map(|e| e.id).collect();
        let known: HashMap<Uuid, (i64, Option<i64>)> =
            sqlx::query("SELECT id, position, version FROM events WHERE id = ANY($1)")
                .bind(&ids)
                .fetch_all(&mut *tx)
                .await
                .map_err(|e| map(op, e))?
                .into_iter()
                .map(|r| Ok((r.try_get("id")?, (r.try_get("position")?, r.try_get("version")?))))
                .collect::<std::result::Result<_, sqlx::Error>>()
                .map_err(|e| map(op, e))?;
        let duplicate = |id: &Uuid| {
            known.get(id).map(|(p, v)| Appended {
                id: *id,
                position: Position::new(*p as u64, 0),
                version: v.map(|v| v as u64),
                duplicate: true,
            })
        };
        if known.len() == ids.len() {
            tx.commit().await.map_err(|e| map(op, e))?;
            return Ok(AppendOutcome { events: ids.iter().filter_map(duplicate).collect() });
        }

        let mut streams: Vec<String> = batch.events.iter().filter_map(|e| e.stream.clone()).collect();
        streams.extend(batch.expected.keys().cloned());
        streams.sort();
        streams.dedup();
        let mut versions: HashMap<String, i64> =
            sqlx::query("SELECT stream, version FROM event_streams WHERE stream = ANY($1)")
                .bind(&streams)
                .fetch_all(&mut *tx)
                .await
                .map_err(|e| map(op, e))?
                .into_iter()
                .map(|r| Ok((r.try_get("stream")?, r.try_get("version")?)))
                .collect::<std::result::Result<_, sqlx::Error>>()
                .map_err(|e| map(op, e))?;
        for (stream, expected) in &batch.expected {
            let actual = versions.get(stream).copied().unwrap_or(0) as u64;
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
        let mut rows = Rows::default();
        let mut next = last;
        for e in batch.events {
            if let Some(dup) = duplicate(&e.id) {
                outcomes.push(dup);
                continue;
            }
            next += 1;
            let version = e.stream.as_ref().map(|s| {
                let v = versions.entry(s.clone()).or_insert(0);
                *v += 1;
                *v
            });
            outcomes.push(Appended {
                id: e.id,
                position: Position::new(next as u64, 0),
                version: version.map(|v| v as u64),
                duplicate: false,
            });
            rows.push(next, version, e);
        }
        for chunk in rows.chunks(CHUNK) {
            chunk.insert(&mut tx).await.map_err(|e| map(op, e))?;
        }
        let (touched, touched_versions): (Vec<String>, Vec<i64>) = versions.into_iter().unzip();
        sqlx::query(
            "INSERT INTO event_streams (stream, version) SELECT * FROM UNNEST($1::text[], $2::bigint[]) \
             ON CONFLICT (stream) DO UPDATE SET version = excluded.version",
        )
        .bind(&touched)
        .bind(&touched_versions)
        .execute(&mut *tx)
        .await
        .map_err(|e| map(op, e))?;
        sqlx::query("UPDATE event_head SET last_position = $1")
            .bind(next)
            .execute(&mut *tx)
            .await
            .map_err(|e| map(op, e))?;
        // Delivered at commit, in commit order: wakes live tails.
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(&self.channel)
            .bind(next.to_string())
            .execute(&mut *tx)
            .await
            .map_err(|e| map(op, e))?;
        tx.commit().await.map_err(|e| map(op, e))?;
        Ok(AppendOutcome { events: outcomes })
    }

    async fn read_after(&self, after: Cursor, limit: usize) -> Result<Vec<Event>> {
        let rows =
            sqlx::query(concat!("SELECT ", columns!(), " FROM events WHERE position > $1 ORDER BY position LIMIT $2"))
                .bind(cursor_floor(after))
                .bind(limit as i64)
                .fetch_all(&self.backend.pool)
                .await
                .map_err(|e| map("read", e))?;
        rows.iter().map(decode).collect()
    }
}

/// The highest stored position a cursor has seen (positions are `(n, 0)`).
fn cursor_floor(c: Cursor) -> i64 {
    match c {
        Cursor::Start => 0,
        Cursor::After(p) => i64::try_from(p.major).unwrap_or(i64::MAX),
    }
}

/// Column arrays of one INSERT … SELECT FROM UNNEST.
#[derive(Default)]
struct Rows {
    position: Vec<i64>,
    id: Vec<Uuid>,
    source: Vec<String>,
    kind: Vec<String>,
    stream: Vec<Option<String>>,
    version: Vec<Option<i64>>,
    session_id: Vec<Option<String>>,
    client_ip: Vec<Option<IpNet>>,
    tags: Vec<serde_json::Value>,
    data: Vec<serde_json::Value>,
    occurred_at: Vec<DateTime<Utc>>,
}

impl Rows {
    fn push(&mut self, position: i64, version: Option<i64>, e: palisade_core::events::NewEvent) {
        self.position.push(position);
        self.id.push(e.id);
        self.source.push(e.source);
        self.kind.push(e.kind);
        self.stream.push(e.stream);
        self.version.push(version);
        self.session_id.push(e.session_id);
        self.client_ip.push(e.client_ip.map(|ip| IpNet::from(canonical_ip(ip))));
        self.tags.push(serde_json::Value::from(e.tags));
        self.data.push(e.data);
        self.occurred_at.push(truncate_ms(e.occurred_at));
    }

    fn chunks(&self, size: usize) -> Vec<RowsRef<'_>> {
        (0..self.position.len())
            .step_by(size.max(1))
            .map(|start| RowsRef { rows: self, range: start..(start + size).min(self.position.len()) })
            .collect()
    }
}

struct RowsRef<'a> {
    rows: &'a Rows,
    range: std::ops::Range<usize>,
}

impl RowsRef<'_> {
    async fn insert(&self, tx: &mut sqlx::PgConnection) -> std::result::Result<(), sqlx::Error> {
        let r = self.range.clone();
        let rows = self.rows;
        sqlx::query(
            "INSERT INTO events (position, id, source, kind, stream, version, session_id, client_ip, tags, data, occurred_at, recorded_at) \
             SELECT p, i, s, k, st, v, se, ip, ARRAY(SELECT jsonb_array_elements_text(t)), d, o, date_trunc('milliseconds', now()) \
             FROM UNNEST($1::bigint[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::text[], $8::inet[], $9::jsonb[], $10::jsonb[], $11::timestamptz[]) \
             AS u(p, i, s, k, st, v, se, ip, t, d, o)",
        )
        .bind(&rows.position[r.clone()])
        .bind(&rows.id[r.clone()])
        .bind(&rows.source[r.clone()])
        .bind(&rows.kind[r.clone()])
        .bind(&rows.stream[r.clone()])
        .bind(&rows.version[r.clone()])
        .bind(&rows.session_id[r.clone()])
        .bind(&rows.client_ip[r.clone()])
        .bind(&rows.tags[r.clone()])
        .bind(&rows.data[r.clone()])
        .bind(&rows.occurred_at[r])
        .execute(tx)
        .await
        .map(|_| ())
    }
}

fn decode(row: &PgRow) -> Result<Event> {
    let get = || -> std::result::Result<Event, sqlx::Error> {
        let position: i64 = row.try_get("position")?;
        let version: Option<i64> = row.try_get("version")?;
        let client_ip: Option<IpNet> = row.try_get("client_ip")?;
        Ok(Event {
            id: row.try_get("id")?,
            source: row.try_get("source")?,
            kind: row.try_get("kind")?,
            stream: row.try_get("stream")?,
            version: version.map(|v| v as u64),
            session_id: row.try_get("session_id")?,
            client_ip: client_ip.map(|n| n.addr()),
            tags: row.try_get("tags")?,
            data: row.try_get("data")?,
            occurred_at: row.try_get("occurred_at")?,
            position: Position::new(position as u64, 0),
            recorded_at: row.try_get("recorded_at")?,
        })
    };
    get().map_err(|e| map("decode", e))
}

/// Appends the WHERE conditions of `filter` (all values bound).
fn push_filter(q: &mut QueryBuilder<Postgres>, f: &EventFilter) {
    q.push(" WHERE true");
    if !f.kinds.is_empty() {
        q.push(" AND kind = ANY(").push_bind(f.kinds.clone()).push(")");
    }
    if !f.sources.is_empty() {
        q.push(" AND source = ANY(").push_bind(f.sources.clone()).push(")");
    }
    if let Some(s) = &f.stream {
        q.push(" AND stream = ").push_bind(s.clone());
    }
    if let Some(s) = &f.session_id {
        q.push(" AND session_id = ").push_bind(s.clone());
    }
    if let Some(net) = f.client_ip {
        q.push(" AND client_ip <<= ").push_bind(net);
    }
    if !f.tags.is_empty() {
        q.push(" AND tags @> ").push_bind(f.tags.clone());
    }
    if let Some(from) = f.time.from {
        q.push(" AND occurred_at >= ").push_bind(truncate_ms(from));
    }
    if let Some(to) = f.time.to {
        q.push(" AND occurred_at < ").push_bind(truncate_ms(to));
    }
}

/// State of one live tail.
struct Tail {
    store: PgEventStore,
    filter: EventFilter,
    cursor: Cursor,
    listener: Option<PgListener>,
    caught_up: bool,
    pending: VecDeque<SubscriptionItem>,
    backoff: Duration,
}

impl Tail {
    async fn listen(&mut self) {
        if self.listener.is_some() {
            return;
        }
        match PgListener::connect_with(&self.store.backend.pool).await {
            Ok(mut l) => match l.listen(&self.store.channel).await {
                Ok(()) => self.listener = Some(l),
                Err(e) => tracing::debug!(error = %e, "palisade: LISTEN failed; polling"),
            },
            Err(e) => tracing::debug!(error = %e, "palisade: listener connect failed; polling"),
        }
    }

    /// Waits for a notification (or the poll interval); drops a broken listener
    /// so the next round re-listens.
    async fn wait(&mut self) {
        let Some(listener) = self.listener.as_mut() else {
            tokio::time::sleep(POLL_EVERY).await;
            return;
        };
        match tokio::time::timeout(POLL_EVERY, listener.try_recv()).await {
            Ok(Ok(Some(_))) | Err(_) => {}
            Ok(Ok(None)) | Ok(Err(_)) => self.listener = None,
        }
    }

    async fn next_item(mut self) -> Option<(Result<SubscriptionItem>, Self)> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                return Some((Ok(item), self));
            }
            if self.caught_up {
                self.listen().await;
                self.wait().await;
            }
            match self.store.read_after(self.cursor, TAIL_PAGE).await {
                Ok(page) => {
                    self.backoff = Duration::from_millis(50);
                    if page.is_empty() && !self.caught_up {
                        self.caught_up = true;
                        self.pending.push_back(SubscriptionItem::CaughtUp);
                    }
                    for e in page {
                        self.cursor = Cursor::After(e.position);
                        if self.filter.matches(&e) {
                            self.pending.push_back(SubscriptionItem::Event(Box::new(e)));
                        }
                    }
                }
                Err(e) if e.is_temporary() => {
                    // Dropped connection or restart: keep the cursor, retry with backoff.
                    tracing::warn!(error = %e, "palisade: live tail read failed; retrying");
                    self.listener = None;
                    tokio::time::sleep(self.backoff).await;
                    self.backoff = (self.backoff * 2).min(Duration::from_secs(5));
                }
                Err(e) => return Some((Err(e), self)),
            }
        }
    }
}

#[async_trait]
impl EventStore for PgEventStore {
    fn backend(&self) -> &'static str {
        crate::BACKEND
    }

    fn capabilities(&self) -> Capabilities {
        capabilities()
    }

    async fn ping(&self) -> Result<()> {
        self.backend.ping().await
    }

    #[tracing::instrument(name = "palisade.append", skip_all, fields(backend = crate::BACKEND, namespace = %self.backend.namespace, events = batch.events.len()))]
    async fn append(&self, batch: AppendBatch) -> Result<AppendOutcome> {
        batch.validate().map_err(tagged("append"))?;
        self.append_tx(batch).await.map_err(tagged("append"))
    }

    #[tracing::instrument(name = "palisade.read", skip_all, fields(backend = crate::BACKEND, namespace = %self.backend.namespace))]
    async fn read(&self, after: Cursor, limit: usize) -> Result<Vec<Event>> {
        check_limit(limit).map_err(tagged("read"))?;
        self.read_after(after, limit).await
    }

    #[tracing::instrument(name = "palisade.subscribe", skip_all, fields(backend = crate::BACKEND, namespace = %self.backend.namespace))]
    async fn subscribe(&self, after: Cursor, filter: EventFilter) -> Result<EventSubscription> {
        filter.validate().map_err(tagged("subscribe"))?;
        let mut tail = Tail {
            store: self.clone(),
            filter,
            cursor: after,
            listener: None,
            caught_up: false,
            pending: VecDeque::new(),
            backoff: Duration::from_millis(50),
        };
        // Listen before catching up, so nothing committed in between is missed.
        tail.listen().await;
        Ok(stream::unfold(tail, Tail::next_item).boxed())
    }

    #[tracing::instrument(name = "palisade.query", skip_all, fields(backend = crate::BACKEND, namespace = %self.backend.namespace))]
    async fn query(&self, filter: EventFilter, page: PageRequest) -> Result<Page<Event>> {
        filter.validate().map_err(tagged("query"))?;
        page.validate().map_err(tagged("query"))?;
        let mut q = QueryBuilder::<Postgres>::new(concat!("SELECT ", columns!(), " FROM events"));
        push_filter(&mut q, &filter);
        let desc = page.order == Order::NewestFirst;
        if let Some(after) = page.after {
            let floor = i64::try_from(after.major).unwrap_or(i64::MAX);
            q.push(if desc { " AND position < " } else { " AND position > " }).push_bind(floor);
        }
        q.push(if desc { " ORDER BY position DESC LIMIT " } else { " ORDER BY position LIMIT " });
        q.push_bind(page.limit as i64 + 1);
        let rows = q.build().fetch_all(&self.backend.pool).await.map_err(|e| map("query", e))?;
        let mut items = rows.iter().map(decode).collect::<Result<Vec<_>>>()?;
        let more = items.len() > page.limit;
        items.truncate(page.limit);
        let next = if more { items.last().map(|e| e.position) } else { None };
        Ok(Page { items, next })
    }

    #[tracing::instrument(name = "palisade.count_by", skip_all, fields(backend = crate::BACKEND, namespace = %self.backend.namespace))]
    async fn count_by(&self, filter: EventFilter, group: GroupBy, top: usize) -> Result<Vec<GroupCount>> {
        filter.validate().map_err(tagged("count_by"))?;
        check_limit(top).map_err(tagged("count_by"))?;
        let key = match group {
            GroupBy::Kind => "kind",
            GroupBy::Source => "source",
            GroupBy::Session => "session_id",
            GroupBy::Tag => "t.tag",
            GroupBy::ClientIp => "client_ip",
        };
        let mut q = QueryBuilder::<Postgres>::new(format!("SELECT {key} AS key, count(*) AS n FROM events"));
        if group == GroupBy::Tag {
            q.push(" CROSS JOIN LATERAL (SELECT DISTINCT unnest(tags) AS tag) t");
        }
        push_filter(&mut q, &filter);
        q.push(format!(" AND {key} IS NOT NULL GROUP BY {key}"));
        if group != GroupBy::ClientIp {
            q.push(format!(" ORDER BY n DESC, {key} COLLATE \"C\" LIMIT ")).push_bind(top as i64);
        }
        let rows = q.build().fetch_all(&self.backend.pool).await.map_err(|e| map("count_by", e))?;
        let groups = rows
            .iter()
            .map(|r| {
                let key = if group == GroupBy::ClientIp {
                    let ip: IpNet = r.try_get("key")?;
                    ip.addr().to_string()
                } else {
                    r.try_get("key")?
                };
                Ok(GroupCount { key, count: r.try_get::<i64, _>("n")? as u64 })
            })
            .collect::<std::result::Result<Vec<_>, sqlx::Error>>()
            .map_err(|e| map("count_by", e))?;
        // IP text order differs from inet order, so those are ranked here.
        Ok(rank_groups(groups, top))
    }

    #[tracing::instrument(name = "palisade.purge", skip_all, fields(backend = crate::BACKEND, namespace = %self.backend.namespace))]
    async fn purge(&self, before: DateTime<Utc>) -> Result<u64> {
        sqlx::query("DELETE FROM events WHERE occurred_at < $1")
            .bind(truncate_ms(before))
            .execute(&self.backend.pool)
            .await
            .map(|r| r.rows_affected())
            .map_err(|e| map("purge", e))
    }
}
