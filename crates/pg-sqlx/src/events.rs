//! `EventStore` on Postgres: gap-safe transaction-id positions (see
//! pg-common's `events`), appends that lock only their streams, one-statement
//! batch appends; LISTEN/NOTIFY live tail with polling fallback.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ipnet::IpNet;
use palisade_core::backend::check::check_limit;
use palisade_core::backend::eval::{canonical_ip, rank_groups};
use palisade_core::backend::tail::{follow, TailSource};
use palisade_core::consumers::{check_consumer_name, errors as consumer_errors, Claim, ConsumerInfo};
use palisade_core::events::{
    AppendBatch, AppendOutcome, Appended, Cursor, Event, EventFilter, EventSubscription, ExpectedVersion, GroupBy,
    GroupCount, Order, Page, PageRequest, Position,
};
use palisade_core::time::truncate_ms;
use palisade_core::{Capabilities, Error, ErrorDetail, ErrorKind, EventStore, Result, Store};
use sqlx::postgres::{PgListener, PgRow};
use sqlx::{Postgres, QueryBuilder, Row};
use uuid::Uuid;

use palisade_pg_common::{consumers as pg_consumers, events as pg_events, sqlstate};

use crate::error::{map, tagged};
use crate::json::StoredJson;
use crate::time::StoredTime;
use crate::{capabilities, PgBackend};

macro_rules! columns {
    () => {
        "position, seq, id, source, kind, stream, version, session_id, client_ip, tags, data, occurred_at, recorded_at"
    };
}

/// Postgres [`EventStore`].
#[derive(Clone)]
pub struct PgEventStore {
    backend: PgBackend,
    channel: String,
    /// The append statement with the function schema-qualified (`append_in`).
    append_in_sql: String,
}

/// The pooled append statement (the pool's `search_path` is the namespace).
const APPEND: &str = "SELECT * FROM palisade_append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";

impl PgEventStore {
    /// The event store of `backend`'s namespace.
    pub fn new(backend: PgBackend) -> Self {
        let channel = format!("palisade_events_{}", backend.namespace);
        let append_in_sql = pg_events::append_in_sql(&backend.namespace);
        PgEventStore { backend, channel, append_in_sql }
    }

    /// The plan Postgres picks for `query(filter, page)`, as `EXPLAIN (FORMAT
    /// JSON)` prints it: which of the events indexes (session, client IP by
    /// `inet <<=`, kind and time, BRIN on time, tags) serve the filter. Runs
    /// nothing.
    pub async fn explain(&self, filter: &EventFilter, page: &PageRequest) -> Result<serde_json::Value> {
        filter.validate().map_err(tagged("explain"))?;
        page.validate().map_err(tagged("explain"))?;
        let mut q = query_sql(concat!("EXPLAIN (FORMAT JSON) SELECT ", columns!(), " FROM events"), filter, page);
        let row = q.build().fetch_one(&self.backend.pool).await.map_err(|e| map("explain", e))?;
        row.try_get::<serde_json::Value, _>(0).map_err(|e| map("explain", e))
    }

    /// One round trip: `palisade_append` (migrations/0009) does the whole batch
    /// in one statement — and so in one transaction, whatever its size.
    /// Appends racing to create the same stream or to store the same id meet
    /// on a unique index (or, storing ids in different orders, in a
    /// deadlock); the loser is sent again, a bounded number of times, and
    /// then sees the winner's rows.
    async fn append_once(&self, batch: &AppendBatch) -> Result<AppendOutcome> {
        let mut attempt = 0;
        loop {
            match self.append_attempt(batch, APPEND, &self.backend.pool, "append").await {
                Err(e) if attempt < APPEND_RACE_RETRIES && e.is_race() => attempt += 1,
                other => return other.map_err(|e| e.error),
            }
        }
    }

    /// Appends `batch` **inside the caller's open transaction** on `conn`
    /// (the transactional outbox): the events commit or roll back with the
    /// caller's own writes. Pass `&mut *tx` for a `sqlx::Transaction`.
    ///
    /// - **Same contract as [`append`](EventStore::append)**: validated
    ///   before any I/O, atomic, idempotent by id (also against pooled
    ///   appends), expected versions checked; a version conflict changes
    ///   nothing and leaves the caller's transaction usable.
    /// - **Gap-safe**: the events take the caller's transaction id as their
    ///   position, so readers (`read`, `subscribe`, consumers) do not see
    ///   anything committed after the caller's transaction began writing
    ///   until it ends — a long-open caller transaction delays readers (see
    ///   `palisade health`'s held-back note), never reorders them. Live
    ///   tails are notified at commit; a rollback notifies nothing.
    /// - **No side effects on the connection**: each attempt runs in a
    ///   savepoint (a lost race is retried there without aborting the
    ///   caller's transaction), and the append function runs with the
    ///   namespace's `search_path` pinned on the function itself, so the
    ///   caller's `search_path` is neither needed nor changed.
    /// - The connection must be in a transaction sqlx opened
    ///   (`pool.begin()`, `conn.begin()`): otherwise `InvalidInput` — a
    ///   savepoint cannot be taken, and a raw `BEGIN` sent with `execute` is
    ///   not tracked by sqlx. Under `REPEATABLE READ`/`SERIALIZABLE` a lost
    ///   race is a serialization failure (`Conflict`, temporary): retry the
    ///   whole transaction.
    /// - The connection may be to the same database through any pool; the
    ///   namespace must be migrated (the pooled store's connect does that).
    pub async fn append_in(&self, conn: &mut sqlx::PgConnection, batch: AppendBatch) -> Result<AppendOutcome> {
        use sqlx::Connection;
        const OP: &str = "append_in";
        batch.validate(&self.backend.policy).map_err(tagged(OP))?;
        if !conn.is_in_transaction() {
            return Err(Error::invalid("append_in needs a connection inside a transaction opened with begin()"))
                .map_err(tagged(OP));
        }
        let mut attempt = 0;
        loop {
            let mut savepoint = conn.begin().await.map_err(|e| map(OP, e))?;
            match self.append_attempt(&batch, &self.append_in_sql, &mut *savepoint, OP).await {
                Ok(outcome) => {
                    savepoint.commit().await.map_err(|e| map(OP, e))?;
                    return Ok(outcome);
                }
                Err(e) => {
                    // The attempt's error says more than a failed rollback
                    // (after which the caller's transaction is broken anyway).
                    if savepoint.rollback().await.is_err() {
                        return Err(e.error);
                    }
                    if !(attempt < APPEND_RACE_RETRIES && e.is_race()) {
                        return Err(e.error);
                    }
                    attempt += 1;
                }
            }
        }
    }

    async fn append_attempt<'c, E>(
        &self,
        batch: &AppendBatch,
        sql: &str,
        executor: E,
        op: &'static str,
    ) -> std::result::Result<AppendOutcome, Raced>
    where
        E: sqlx::Executor<'c, Database = Postgres>,
    {
        let n = batch.events.len();
        let (mut ids, mut sources, mut kinds) = (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
        let (mut streams, mut sessions, mut ips) =
            (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
        let (mut tags, mut data, mut occurred) = (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
        for e in &batch.events {
            ids.push(e.id);
            sources.push(e.source.as_str());
            kinds.push(e.kind.as_str());
            streams.push(e.stream.as_deref());
            sessions.push(e.session_id.as_deref());
            ips.push(e.client_ip.map(|ip| IpNet::from(canonical_ip(ip))));
            tags.push(serde_json::Value::from(e.tags.clone()));
            data.push(palisade_pg_common::json::encoded(e.data.clone()));
            occurred.push(truncate_ms(e.occurred_at));
        }
        let mut expect_streams = Vec::new();
        let mut expect_versions = Vec::new();
        for (stream, expected) in &batch.expected {
            let version = match expected {
                ExpectedVersion::Any => continue,
                ExpectedVersion::NoStream => 0,
                ExpectedVersion::Exact(v) => i64::try_from(*v).unwrap_or(i64::MAX),
            };
            expect_streams.push(stream.as_str());
            expect_versions.push(version);
        }
        let rows = sqlx::query(sql)
            .bind(&ids)
            .bind(&sources)
            .bind(&kinds)
            .bind(&streams)
            .bind(&sessions)
            .bind(&ips)
            .bind(&tags)
            .bind(&data)
            .bind(&occurred)
            .bind(&expect_streams)
            .bind(&expect_versions)
            .bind(&self.channel)
            .fetch_all(executor)
            .await
            .map_err(Raced::from_sqlx(op))?;
        let decode = |r: &PgRow| -> std::result::Result<std::result::Result<Appended, (String, i64)>, sqlx::Error> {
            if let Some(stream) = r.try_get::<Option<String>, _>("conflict_stream")? {
                return Ok(Err((stream, r.try_get::<Option<i64>, _>("conflict_actual")?.unwrap_or(0))));
            }
            let (pos, seq): (i64, i32) = (r.try_get("pos")?, r.try_get("seq")?);
            let ver: Option<i64> = r.try_get("ver")?;
            Ok(Ok(Appended {
                id: r.try_get("id")?,
                position: Position::new(pos as u64, seq as u64),
                version: ver.map(|v| v as u64),
                duplicate: r.try_get("dup")?,
            }))
        };
        let mut events = Vec::with_capacity(rows.len());
        for row in &rows {
            match decode(row).map_err(|e| map(op, e))? {
                Ok(appended) => events.push(appended),
                Err((stream, actual)) => {
                    let expected = batch.expected.get(&stream).copied().unwrap_or(ExpectedVersion::Any);
                    return Err(Error::new(ErrorKind::Conflict, "stream version differs from the expected version")
                        .with_detail(ErrorDetail::VersionConflict { stream, expected, actual: actual.max(0) as u64 })
                        .into());
                }
            }
        }
        if events.len() != n {
            return Err(crate::invalid_state("append returned fewer outcomes than events").into());
        }
        Ok(AppendOutcome { events })
    }

    /// [`read_after`](Self::read_after), waiting (bounded) while committed
    /// events beyond the page are held back: pg-common's `settled`.
    async fn read_settled(&self, after: Cursor, limit: usize) -> Result<Vec<Event>> {
        pg_events::settled(|| self.read_after(after, limit)).await
    }

    /// The next events after `after` below the gap-safe bound (one
    /// statement), and whether committed events beyond them are held back.
    async fn read_after(&self, after: Cursor, limit: usize) -> Result<(Vec<Event>, bool)> {
        let (major, minor) = pg_events::cursor(cursor_pair(after));
        let rows = sqlx::query(pg_events::READ_AFTER)
            .bind(major)
            .bind(minor)
            .bind(limit as i64)
            .fetch_all(&self.backend.pool)
            .await
            .map_err(|e| map("read", e))?;
        let rows = rows
            .iter()
            .map(|r| Ok((decode(r)?, r.try_get::<bool, _>("safe").map_err(|e| map("read", e))?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(pg_events::safe_prefix(rows))
    }
}

/// A cursor as the `(major, minor)` it has seen.
fn cursor_pair(c: Cursor) -> Option<(u64, u64)> {
    match c {
        Cursor::Start => None,
        Cursor::After(p) => Some((p.major, p.minor)),
    }
}

/// How often an append that lost a race (unique index, deadlock) is sent
/// again before the error is returned.
const APPEND_RACE_RETRIES: u32 = 8;

/// An append attempt's error, and whether it lost a race worth retrying.
struct Raced {
    error: Error,
    race: bool,
}

impl Raced {
    fn is_race(&self) -> bool {
        self.race
    }

    fn from_sqlx(op: &'static str) -> impl Fn(sqlx::Error) -> Raced {
        move |e| {
            let code = match &e {
                sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
                _ => None,
            };
            let race = code.as_deref().is_some_and(sqlstate::append_race);
            Raced { error: map(op, e), race }
        }
    }
}

impl From<Error> for Raced {
    fn from(error: Error) -> Self {
        Raced { error, race: false }
    }
}

fn decode(row: &PgRow) -> Result<Event> {
    let get = || -> std::result::Result<Event, sqlx::Error> {
        let (position, seq): (i64, i32) = (row.try_get("position")?, row.try_get("seq")?);
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
            // A NULL element (written around the store) is dropped, not a failed read.
            tags: row.try_get::<Vec<Option<String>>, _>("tags")?.into_iter().flatten().collect(),
            data: row.try_get::<StoredJson, _>("data")?.0,
            occurred_at: row.try_get::<StoredTime, _>("occurred_at")?.0,
            position: Position::new(position as u64, seq as u64),
            recorded_at: row.try_get::<StoredTime, _>("recorded_at")?.0,
        })
    };
    get().map_err(|e| map("decode", e))
}

/// Appends the WHERE conditions of `filter` (all values bound).
fn push_filter(q: &mut QueryBuilder<'_, Postgres>, f: &EventFilter) {
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

/// The statement of `query(filter, page)`, after `select` (`… FROM events`).
fn query_sql(select: &'static str, filter: &EventFilter, page: &PageRequest) -> QueryBuilder<'static, Postgres> {
    let mut q = QueryBuilder::<Postgres>::new(select);
    push_filter(&mut q, filter);
    let desc = page.order == Order::NewestFirst;
    if let Some(after) = page.after {
        let (major, minor) = pg_events::cursor(Some((after.major, after.minor)));
        q.push(if desc { " AND (position, seq) < (" } else { " AND (position, seq) > (" });
        q.push_bind(major).push(", ").push_bind(minor).push(")");
    }
    q.push(if desc { " ORDER BY position DESC, seq DESC LIMIT " } else { " ORDER BY position, seq LIMIT " });
    q.push_bind(page.limit as i64 + 1);
    q
}

/// A live tail's source ([`palisade_core::backend::tail`]): reads through
/// the pool, `LISTEN`s on a connection of the listen pool.
struct Listening {
    store: PgEventStore,
    listener: Option<PgListener>,
}

#[async_trait]
impl TailSource for Listening {
    async fn read_after(&self, after: Cursor, limit: usize) -> Result<Vec<Event>> {
        self.store.read_settled(after, limit).await
    }

    async fn listen(&mut self) {
        if self.listener.is_some() {
            return;
        }
        match PgListener::connect_with(&self.store.backend.listen_pool).await {
            Ok(mut l) => match l.listen(&self.store.channel).await {
                Ok(()) => self.listener = Some(l),
                Err(e) => tracing::debug!(error = %e, "palisade: LISTEN failed; polling"),
            },
            Err(e) => tracing::debug!(error = %e, "palisade: listener connect failed; polling"),
        }
    }

    async fn wait(&mut self, timeout: Duration) {
        let Some(listener) = self.listener.as_mut() else {
            tokio::time::sleep(timeout).await;
            return;
        };
        match tokio::time::timeout(timeout, listener.try_recv()).await {
            Ok(Ok(Some(_))) | Err(_) => {}
            Ok(Ok(None)) | Ok(Err(_)) => self.listener = None,
        }
    }

    fn drop_listener(&mut self) {
        self.listener = None;
    }
}

#[async_trait]
impl Store for PgEventStore {
    fn backend(&self) -> &'static str {
        crate::BACKEND
    }

    fn capabilities(&self) -> Capabilities {
        capabilities()
    }

    async fn ping(&self) -> Result<()> {
        self.backend.ping().await
    }

    /// How many committed events the gap-safe bound holds back, if any.
    async fn notes(&self) -> Result<Vec<String>> {
        let row = sqlx::query(pg_events::HELD_BACK).fetch_one(&self.backend.pool).await.map_err(|e| map("notes", e))?;
        let (held, waiting): (i64, i64) =
            (row.try_get("held").map_err(|e| map("notes", e))?, row.try_get("waiting").map_err(|e| map("notes", e))?);
        Ok(pg_events::held_back_note(held, waiting).into_iter().collect())
    }
}

#[async_trait]
impl EventStore for PgEventStore {
    async fn append(&self, batch: AppendBatch) -> Result<AppendOutcome> {
        batch.validate(&self.backend.policy).map_err(tagged("append"))?;
        self.append_once(&batch).await.map_err(tagged("append"))
    }

    async fn read(&self, after: Cursor, limit: usize) -> Result<Vec<Event>> {
        check_limit(limit).map_err(tagged("read"))?;
        self.read_settled(after, limit).await
    }

    async fn subscribe(&self, after: Cursor, filter: EventFilter) -> Result<EventSubscription> {
        filter.validate().map_err(tagged("subscribe"))?;
        Ok(follow(Listening { store: self.clone(), listener: None }, after, filter).await)
    }

    async fn query(&self, filter: EventFilter, page: PageRequest) -> Result<Page<Event>> {
        filter.validate().map_err(tagged("query"))?;
        page.validate().map_err(tagged("query"))?;
        let mut q = query_sql(concat!("SELECT ", columns!(), " FROM events"), &filter, &page);
        let rows = q.build().fetch_all(&self.backend.pool).await.map_err(|e| map("query", e))?;
        let mut items = rows.iter().map(decode).collect::<Result<Vec<_>>>()?;
        let more = items.len() > page.limit;
        items.truncate(page.limit);
        let next = if more { items.last().map(|e| e.position) } else { None };
        Ok(Page { items, next })
    }

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

    async fn purge(&self, before: DateTime<Utc>) -> Result<u64> {
        let gone: i64 = sqlx::query_scalar(pg_events::PURGE)
            .bind(palisade_core::backend::clock::clamp_instant(truncate_ms(before)))
            .fetch_one(&self.backend.pool)
            .await
            .map_err(|e| map("purge", e))?;
        Ok(gone.max(0) as u64)
    }

    async fn claim_consumer(&self, claim: &Claim) -> Result<Cursor> {
        const OP: &str = "claim_consumer";
        claim.validate().map_err(tagged(OP))?;
        let key = claim.filter_key().map_err(tagged(OP))?;
        pg_consumers::claim_rounds(claim, || async {
            sqlx::query_as(pg_consumers::CLAIM)
                .bind(&claim.name)
                .bind(&key)
                .bind(claim.token)
                .bind(claim.lease_ms())
                .bind(claim.renew)
                .fetch_optional(&self.backend.pool)
                .await
                .map_err(|e| map(OP, e))
        })
        .await
        .map_err(tagged(OP))
    }

    async fn ack_consumer(&self, name: &str, token: Uuid, position: Position) -> Result<()> {
        const OP: &str = "ack_consumer";
        check_consumer_name(name).map_err(tagged(OP))?;
        let (major, minor) = pg_consumers::position_columns(position).map_err(tagged(OP))?;
        let done = sqlx::query(pg_consumers::ACK)
            .bind(name)
            .bind(token)
            .bind(major)
            .bind(minor)
            .execute(&self.backend.pool)
            .await
            .map_err(|e| map(OP, e))?;
        if done.rows_affected() == 0 {
            return Err(consumer_errors::lease_lost(name).with_op(OP));
        }
        Ok(())
    }

    async fn release_consumer(&self, name: &str, token: Uuid) -> Result<()> {
        const OP: &str = "release_consumer";
        check_consumer_name(name).map_err(tagged(OP))?;
        sqlx::query(pg_consumers::RELEASE)
            .bind(name)
            .bind(token)
            .execute(&self.backend.pool)
            .await
            .map(|_| ())
            .map_err(|e| map(OP, e))
    }

    async fn consumers(&self) -> Result<Vec<ConsumerInfo>> {
        let rows: Vec<(String, String, Option<i64>, Option<i32>, Option<i64>)> =
            sqlx::query_as(pg_consumers::LIST).fetch_all(&self.backend.pool).await.map_err(|e| map("consumers", e))?;
        let all =
            rows.into_iter().filter_map(|(name, filter, p, s, lease)| pg_consumers::info(name, &filter, p, s, lease));
        Ok(pg_consumers::sorted(all.collect()))
    }

    async fn delete_consumer(&self, name: &str) -> Result<bool> {
        const OP: &str = "delete_consumer";
        check_consumer_name(name).map_err(tagged(OP))?;
        let done =
            sqlx::query(pg_consumers::DELETE).bind(name).execute(&self.backend.pool).await.map_err(|e| map(OP, e))?;
        Ok(done.rows_affected() > 0)
    }
}
