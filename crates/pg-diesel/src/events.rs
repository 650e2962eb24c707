//! `EventStore` on the shared tables (`migrations/0001`, `0009`): the same
//! gap-safe scheme as pg-sqlx (transaction-id positions, ordered reads bounded
//! by the snapshot's xmin: pg-common's `events`). An append is one call of `palisade_append`
//! (12 array parameters, whatever the batch size: atomic and idempotent in
//! one statement, so a cancelled call can leave nothing half-written).
//! Reads, queries and the group-by analytics are diesel's query builder over
//! [`schema::events`](crate::schema::events); counting by tag needs a lateral
//! `unnest`, so it is SQL text with every value bound. The live tail holds a
//! dedicated `AsyncPgConnection` outside the pool that `LISTEN`s on the
//! namespace's channel; a notification only prompts a re-read by position,
//! so a lost or killed listener loses nothing (the tail polls every 500 ms
//! and reconnects).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::dsl::{count_star, sql};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Bool, Inet, Jsonb, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use futures::StreamExt;
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
use tokio::sync::OwnedSemaphorePermit;
use uuid::Uuid;

use palisade_pg_common::{consumers as pg_consumers, events as pg_events, sqlstate};

use crate::cached::Cached;
use crate::error::tagged;
use crate::json::StoredJson;
use crate::schema::events;
use crate::time::StoredTime;
use crate::{capabilities, invalid_state, PgDieselBackend};

/// One stored event as the query builder (or, by column name, SQL text) loads it.
#[derive(Queryable, QueryableByName, Selectable)]
#[diesel(table_name = events, check_for_backend(Pg))]
struct EventRow {
    position: i64,
    seq: i32,
    id: Uuid,
    source: String,
    kind: String,
    stream: Option<String>,
    version: Option<i64>,
    session_id: Option<String>,
    client_ip: Option<IpNet>,
    tags: Vec<Option<String>>,
    data: StoredJson,
    occurred_at: StoredTime,
    recorded_at: StoredTime,
}

impl From<EventRow> for Event {
    fn from(r: EventRow) -> Self {
        Event {
            id: r.id,
            source: r.source,
            kind: r.kind,
            stream: r.stream,
            version: r.version.map(|v| v as u64),
            session_id: r.session_id,
            client_ip: r.client_ip.map(|n| n.addr()),
            tags: r.tags.into_iter().flatten().collect(),
            data: r.data.0,
            occurred_at: r.occurred_at.0,
            position: Position::new(r.position as u64, r.seq as u64),
            recorded_at: r.recorded_at.0,
        }
    }
}

/// One row `palisade_append` returns: an outcome, or the conflict that
/// refused the whole batch.
#[derive(QueryableByName)]
struct AppendRow {
    #[diesel(sql_type = Nullable<diesel::sql_types::Uuid>)]
    id: Option<Uuid>,
    #[diesel(sql_type = Nullable<BigInt>)]
    pos: Option<i64>,
    #[diesel(sql_type = Nullable<diesel::sql_types::Integer>)]
    seq: Option<i32>,
    #[diesel(sql_type = Nullable<BigInt>)]
    ver: Option<i64>,
    #[diesel(sql_type = Nullable<Bool>)]
    dup: Option<bool>,
    #[diesel(sql_type = Nullable<Text>)]
    conflict_stream: Option<String>,
    #[diesel(sql_type = Nullable<BigInt>)]
    conflict_actual: Option<i64>,
}

/// A filter condition on `events`, boxed so conditions can be chained.
type Predicate = Box<dyn BoxableExpression<events::table, Pg, SqlType = Nullable<Bool>>>;

/// The conditions of `filter`, every value bound.
fn predicate(f: &EventFilter) -> Predicate {
    let mut p: Predicate = Box::new(sql::<Bool>("true").nullable());
    if !f.kinds.is_empty() {
        p = Box::new(p.and(events::kind.eq_any(f.kinds.clone()).nullable()));
    }
    if !f.sources.is_empty() {
        p = Box::new(p.and(events::source.eq_any(f.sources.clone()).nullable()));
    }
    if let Some(s) = &f.stream {
        p = Box::new(p.and(events::stream.eq(s.clone())));
    }
    if let Some(s) = &f.session_id {
        p = Box::new(p.and(events::session_id.eq(s.clone())));
    }
    if let Some(net) = f.client_ip {
        p = Box::new(p.and(events::client_ip.is_contained_by_or_eq(net)));
    }
    if !f.tags.is_empty() {
        let tags: Vec<Option<String>> = f.tags.iter().cloned().map(Some).collect();
        p = Box::new(p.and(events::tags.contains(tags).nullable()));
    }
    if let Some(from) = f.time.from {
        p = Box::new(p.and(events::occurred_at.ge(truncate_ms(from)).nullable()));
    }
    if let Some(to) = f.time.to {
        p = Box::new(p.and(events::occurred_at.lt(truncate_ms(to)).nullable()));
    }
    p
}

/// A cursor as the `(major, minor)` it has seen.
fn cursor_pair(c: Cursor) -> Option<(u64, u64)> {
    match c {
        Cursor::Start => None,
        Cursor::After(p) => Some((p.major, p.minor)),
    }
}

/// One row of pg-common's `READ_AFTER`: an event and whether it lies below
/// the gap-safe bound.
#[derive(QueryableByName)]
struct ReadRow {
    #[diesel(embed)]
    event: EventRow,
    #[diesel(sql_type = Bool)]
    safe: bool,
}

/// How often an append that lost a race (unique index, deadlock) is sent
/// again before the error is returned.
const APPEND_RACE_RETRIES: u32 = 8;

/// Postgres [`EventStore`] through diesel.
#[derive(Clone)]
pub struct PgDieselEventStore {
    backend: PgDieselBackend,
    channel: String,
    /// The append statement with the function schema-qualified (`append_in`).
    append_in_sql: String,
}

/// The pooled append statement (the pool's `search_path` is the namespace).
const APPEND: &str = "SELECT * FROM palisade_append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";

impl PgDieselEventStore {
    /// The event store of `backend`'s namespace.
    pub fn new(backend: PgDieselBackend) -> Self {
        let channel = format!("palisade_events_{}", backend.namespace.as_str());
        let append_in_sql = pg_events::append_in_sql(&backend.namespace);
        PgDieselEventStore { backend, channel, append_in_sql }
    }

    /// One call of `palisade_append`. Appends racing to create the same
    /// stream or to store the same id meet on a unique index (or, storing
    /// ids in different orders, in a deadlock); the loser is sent again, a
    /// bounded number of times, and then sees the winner's rows.
    async fn append_once(&self, batch: &AppendBatch) -> Result<AppendOutcome> {
        let mut attempt = 0;
        loop {
            let attempted = async {
                let mut conn = self.backend.conn("append").await.map_err(|e| (e, None))?;
                let rows = self.append_rows(&mut conn, APPEND.into(), batch).await.map_err(|e| {
                    let code = conn.take_sqlstate();
                    (crate::error::map("append", e, code.clone()), code)
                })?;
                drop(conn);
                append_outcome(batch, rows)
            };
            match attempted.await {
                Err((_, Some(code))) if attempt < APPEND_RACE_RETRIES && sqlstate::append_race(&code) => attempt += 1,
                other => return other.map_err(|(e, _)| e),
            }
        }
    }

    /// Appends `batch` **inside the caller's open transaction** on `conn`
    /// (the transactional outbox): the events commit or roll back with the
    /// caller's own writes.
    ///
    /// - **Same contract as [`append`](EventStore::append)**: validated
    ///   before any I/O, atomic, idempotent by id (also against pooled
    ///   appends), expected versions checked; a version conflict changes
    ///   nothing and leaves the caller's transaction usable.
    /// - **Gap-safe**: the events take the caller's transaction id as their
    ///   position, so readers (`read`, `subscribe`, consumers) do not see
    ///   anything committed after the caller's transaction began writing
    ///   until it ends — a long-open caller transaction delays readers,
    ///   never reorders them. Live tails are notified at commit.
    /// - **No side effects on the connection**: each attempt runs in a
    ///   savepoint (diesel-async nests `transaction` as savepoints; a lost
    ///   race is retried there without aborting the caller's transaction),
    ///   and the append function carries the namespace's `search_path`
    ///   itself, so the caller's `search_path` is neither needed nor changed.
    /// - `conn` must be inside `conn.transaction(…)` (diesel's transaction
    ///   manager must know it): otherwise `InvalidInput`. A caller's
    ///   connection has no SQLSTATE tap, so kinds come from diesel's own
    ///   error kinds (a deadlock is `Unexpected`, not retried).
    pub async fn append_in(&self, conn: &mut AsyncPgConnection, batch: AppendBatch) -> Result<AppendOutcome> {
        use diesel_async::{AnsiTransactionManager, AsyncConnection, TransactionManager};
        const OP: &str = "append_in";
        batch.validate(&self.backend.policy()).map_err(tagged(OP))?;
        let depth = AnsiTransactionManager::transaction_manager_status_mut(conn).transaction_depth();
        if !matches!(depth, Ok(Some(_))) {
            return Err(Error::invalid("append_in needs a connection inside conn.transaction(…)")).map_err(tagged(OP));
        }
        let mut attempt = 0;
        loop {
            let sql = self.append_in_sql.clone();
            let rows = conn
                .transaction::<_, diesel::result::Error, _>(async |c| self.append_rows(c, sql.into(), &batch).await)
                .await;
            let outcome = match rows {
                Ok(rows) => append_outcome(&batch, rows),
                Err(e) => {
                    let code = crate::error::sqlstate_of(&e);
                    Err((crate::error::map(OP, e, None), code))
                }
            };
            match outcome {
                Err((_, Some(code))) if attempt < APPEND_RACE_RETRIES && sqlstate::append_race(&code) => attempt += 1,
                other => return other.map_err(|(e, _)| e.with_op(OP)),
            }
        }
    }

    /// One call of `palisade_append` (`sql`: pooled or schema-qualified) on `conn`.
    async fn append_rows(
        &self,
        conn: &mut AsyncPgConnection,
        sql: std::borrow::Cow<'static, str>,
        batch: &AppendBatch,
    ) -> QueryResult<Vec<AppendRow>> {
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
        Cached::new(sql)
            .bind::<Array<diesel::sql_types::Uuid>, _>(&ids)
            .bind::<Array<Text>, _>(&sources)
            .bind::<Array<Text>, _>(&kinds)
            .bind::<Array<Nullable<Text>>, _>(&streams)
            .bind::<Array<Nullable<Text>>, _>(&sessions)
            .bind::<Array<Nullable<Inet>>, _>(&ips)
            .bind::<Array<Jsonb>, _>(&tags)
            .bind::<Array<Jsonb>, _>(&data)
            .bind::<Array<Timestamptz>, _>(&occurred)
            .bind::<Array<Text>, _>(&expect_streams)
            .bind::<Array<BigInt>, _>(&expect_versions)
            .bind::<Text, _>(&self.channel)
            .load(conn)
            .await
    }

    /// [`read_after`](Self::read_after), waiting (bounded) while committed
    /// events beyond the page are held back: pg-common's `settled`.
    async fn read_settled(&self, after: Cursor, limit: usize) -> Result<Vec<Event>> {
        pg_events::settled(|| self.read_after(after, limit)).await
    }

    /// The next events after `after` below the gap-safe bound (one
    /// statement), and whether committed events beyond them are held back.
    async fn read_after(&self, after: Cursor, limit: usize) -> Result<(Vec<Event>, bool)> {
        const OP: &str = "read";
        let (major, minor) = pg_events::cursor(cursor_pair(after));
        let mut conn = self.backend.conn(OP).await?;
        let rows: Vec<ReadRow> = Cached::new(pg_events::READ_AFTER)
            .bind::<BigInt, _>(major)
            .bind::<diesel::sql_types::Integer, _>(minor)
            .bind::<BigInt, _>(i64::try_from(limit).unwrap_or(i64::MAX))
            .load(&mut **conn)
            .await
            .map_err(conn.error(OP))?;
        let (rows, held_back) = pg_events::safe_prefix(rows.into_iter().map(|r| (r.event, r.safe)).collect());
        Ok((rows.into_iter().map(Event::from).collect(), held_back))
    }

    /// Counts by tag: each event's distinct tags through a lateral `unnest`,
    /// which the query builder does not express. Same conditions as
    /// [`predicate`], as SQL text with bound values.
    async fn count_by_tag(&self, f: &EventFilter, top: usize) -> Result<Vec<GroupCount>> {
        const OP: &str = "count_by";
        #[derive(QueryableByName)]
        struct Row {
            #[diesel(sql_type = Text)]
            key: String,
            #[diesel(sql_type = BigInt)]
            n: i64,
        }
        let mut q = diesel::sql_query(
            "SELECT t.tag AS key, count(*) AS n FROM events \
             CROSS JOIN LATERAL (SELECT DISTINCT unnest(tags) AS tag) t WHERE t.tag IS NOT NULL",
        )
        .into_boxed::<Pg>();
        let mut n = 0;
        let mut next = |cond: &str| {
            n += 1;
            format!(" AND {cond}${n}")
        };
        if !f.kinds.is_empty() {
            q = q.sql(next("kind = ANY(")).sql(")").bind::<Array<Text>, _>(f.kinds.clone());
        }
        if !f.sources.is_empty() {
            q = q.sql(next("source = ANY(")).sql(")").bind::<Array<Text>, _>(f.sources.clone());
        }
        if let Some(s) = &f.stream {
            q = q.sql(next("stream = ")).bind::<Text, _>(s.clone());
        }
        if let Some(s) = &f.session_id {
            q = q.sql(next("session_id = ")).bind::<Text, _>(s.clone());
        }
        if let Some(net) = f.client_ip {
            q = q.sql(next("client_ip <<= ")).bind::<Inet, _>(net);
        }
        if !f.tags.is_empty() {
            q = q.sql(next("tags @> ")).bind::<Array<Text>, _>(f.tags.clone());
        }
        if let Some(from) = f.time.from {
            q = q.sql(next("occurred_at >= ")).bind::<Timestamptz, _>(truncate_ms(from));
        }
        if let Some(to) = f.time.to {
            q = q.sql(next("occurred_at < ")).bind::<Timestamptz, _>(truncate_ms(to));
        }
        n += 1;
        q = q
            .sql(format!(" GROUP BY t.tag ORDER BY n DESC, t.tag COLLATE \"C\" LIMIT ${n}"))
            .bind::<BigInt, _>(i64::try_from(top).unwrap_or(i64::MAX));
        let mut conn = self.backend.conn(OP).await?;
        let rows: Vec<Row> = q.load(&mut **conn).await.map_err(conn.error(OP))?;
        Ok(rows.into_iter().map(|r| GroupCount { key: r.key, count: u64::try_from(r.n).unwrap_or(0) }).collect())
    }
}

/// `count_by` over one column in the query builder: the filtered events
/// grouped by `$column`, most frequent first, ties by key in code point order.
macro_rules! count_grouped {
    ($self:ident, $filter:expr, $top:expr, $column:expr, $name:literal, $key:ty) => {{
        const OP: &str = "count_by";
        let mut conn = $self.backend.conn(OP).await?;
        let rows: Vec<($key, i64)> = events::table
            .filter(predicate($filter))
            .filter($column.is_not_null())
            .group_by($column)
            .select(($column, count_star()))
            .order((count_star().desc(), sql::<Text>(concat!($name, " COLLATE \"C\""))))
            .limit(i64::try_from($top).unwrap_or(i64::MAX))
            .load(&mut **conn)
            .await
            .map_err(conn.error(OP))?;
        rows
    }};
}

/// A live tail's source ([`palisade_core::backend::tail`]): reads through
/// the pool, `LISTEN`s on a dedicated connection outside it, holding one of
/// the backend's `pool_size` listener slots.
struct Listening {
    store: PgDieselEventStore,
    listener: Option<(AsyncPgConnection, OwnedSemaphorePermit)>,
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
        let Ok(slot) = Arc::clone(&self.store.backend.listen_slots).try_acquire_owned() else {
            tracing::debug!("palisade: every listener slot is taken; polling");
            return;
        };
        match crate::connection::listener(&self.store.backend.target).await {
            Ok(mut conn) => {
                let listen = format!("LISTEN {}", palisade_pg_common::namespace::quote_ident(&self.store.channel));
                match diesel::sql_query(listen).execute(&mut conn).await {
                    Ok(_) => self.listener = Some((conn, slot)),
                    Err(e) => tracing::debug!(error = %e, "palisade: LISTEN failed; polling"),
                }
            }
            Err(e) => tracing::debug!(error = %e, "palisade: listener connect failed; polling"),
        }
    }

    /// A burst of notifications costs one re-read.
    async fn wait(&mut self, timeout: Duration) {
        let Some((listener, _)) = self.listener.as_mut() else {
            tokio::time::sleep(timeout).await;
            return;
        };
        let broken = {
            let mut notifications = std::pin::pin!(listener.notifications_stream());
            match tokio::time::timeout(timeout, notifications.next()).await {
                Ok(Some(Ok(_))) => {
                    while let Some(Some(Ok(_))) = futures::FutureExt::now_or_never(notifications.next()) {}
                    false
                }
                Err(_) => false,
                Ok(Some(Err(_)) | None) => true,
            }
        };
        if broken {
            self.listener = None;
        }
    }

    fn drop_listener(&mut self) {
        self.listener = None;
    }
}

#[async_trait]
impl Store for PgDieselEventStore {
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
        const OP: &str = "notes";
        #[derive(QueryableByName)]
        struct HeldBack {
            #[diesel(sql_type = BigInt)]
            held: i64,
            #[diesel(sql_type = BigInt)]
            waiting: i64,
        }
        let mut conn = self.backend.conn(OP).await?;
        let row: HeldBack =
            diesel::sql_query(pg_events::HELD_BACK).get_result(&mut **conn).await.map_err(conn.error(OP))?;
        Ok(pg_events::held_back_note(row.held, row.waiting).into_iter().collect())
    }
}

#[async_trait]
impl EventStore for PgDieselEventStore {
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
        const OP: &str = "query";
        filter.validate().map_err(tagged(OP))?;
        page.validate().map_err(tagged(OP))?;
        let mut q = events::table.filter(predicate(&filter)).select(EventRow::as_select()).into_boxed();
        let desc = page.order == Order::NewestFirst;
        if let Some(after) = page.after {
            // (position, seq) beyond the cursor, with an index condition on position.
            let (major, minor) = pg_events::cursor(Some((after.major, after.minor)));
            q = if desc {
                q.filter(events::position.le(major)).filter(events::position.lt(major).or(events::seq.lt(minor)))
            } else {
                q.filter(events::position.ge(major)).filter(events::position.gt(major).or(events::seq.gt(minor)))
            };
        }
        q = if desc {
            q.order((events::position.desc(), events::seq.desc()))
        } else {
            q.order((events::position.asc(), events::seq.asc()))
        };
        q = q.limit(i64::try_from(page.limit).unwrap_or(i64::MAX - 1) + 1);
        let mut conn = self.backend.conn(OP).await?;
        let rows: Vec<EventRow> = q.load(&mut **conn).await.map_err(conn.error(OP))?;
        let mut items: Vec<Event> = rows.into_iter().map(Event::from).collect();
        let more = items.len() > page.limit;
        items.truncate(page.limit);
        let next = if more { items.last().map(|e| e.position) } else { None };
        Ok(Page { items, next })
    }

    async fn count_by(&self, filter: EventFilter, group: GroupBy, top: usize) -> Result<Vec<GroupCount>> {
        filter.validate().map_err(tagged("count_by"))?;
        check_limit(top).map_err(tagged("count_by"))?;
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        let groups: Vec<GroupCount> = match group {
            GroupBy::Kind => count_grouped!(self, &filter, top, events::kind, "kind", String)
                .into_iter()
                .map(|(key, n)| GroupCount { key, count: count(n) })
                .collect(),
            GroupBy::Source => count_grouped!(self, &filter, top, events::source, "source", String)
                .into_iter()
                .map(|(key, n)| GroupCount { key, count: count(n) })
                .collect(),
            GroupBy::Session => count_grouped!(self, &filter, top, events::session_id, "session_id", Option<String>)
                .into_iter()
                .filter_map(|(key, n)| Some(GroupCount { key: key?, count: count(n) }))
                .collect(),
            GroupBy::Tag => self.count_by_tag(&filter, top).await.map_err(tagged("count_by"))?,
            GroupBy::ClientIp => {
                // IP text order differs from inet order: every group, ranked here.
                const OP: &str = "count_by";
                let mut conn = self.backend.conn(OP).await?;
                let rows: Vec<(Option<IpNet>, i64)> = events::table
                    .filter(predicate(&filter))
                    .filter(events::client_ip.is_not_null())
                    .group_by(events::client_ip)
                    .select((events::client_ip, count_star()))
                    .load(&mut **conn)
                    .await
                    .map_err(conn.error(OP))?;
                rows.into_iter()
                    .filter_map(|(ip, n)| Some(GroupCount { key: ip?.addr().to_string(), count: count(n) }))
                    .collect()
            }
        };
        Ok(rank_groups(groups, top))
    }

    async fn purge(&self, before: DateTime<Utc>) -> Result<u64> {
        const OP: &str = "purge";
        let before = palisade_core::backend::clock::clamp_instant(truncate_ms(before));
        let mut conn = self.backend.conn(OP).await?;
        let gone: Purged = Cached::new(pg_events::PURGE)
            .bind::<Timestamptz, _>(before)
            .get_result(&mut **conn)
            .await
            .map_err(conn.error(OP))?;
        Ok(gone.gone.max(0) as u64)
    }

    async fn claim_consumer(&self, claim: &Claim) -> Result<Cursor> {
        const OP: &str = "claim_consumer";
        claim.validate().map_err(tagged(OP))?;
        let key = claim.filter_key().map_err(tagged(OP))?;
        pg_consumers::claim_rounds(claim, || async {
            let mut conn = self.backend.conn(OP).await?;
            let row: Option<ClaimRow> = Cached::new(pg_consumers::CLAIM)
                .bind::<Text, _>(&claim.name)
                .bind::<Text, _>(&key)
                .bind::<diesel::sql_types::Uuid, _>(claim.token)
                .bind::<BigInt, _>(claim.lease_ms())
                .bind::<Bool, _>(claim.renew)
                .get_result(&mut **conn)
                .await
                .optional()
                .map_err(conn.error(OP))?;
            Ok(row.map(|r| (r.taken, r.same_filter, r.position, r.seq)))
        })
        .await
        .map_err(tagged(OP))
    }

    async fn ack_consumer(&self, name: &str, token: Uuid, position: Position) -> Result<()> {
        const OP: &str = "ack_consumer";
        check_consumer_name(name).map_err(tagged(OP))?;
        let (major, minor) = pg_consumers::position_columns(position).map_err(tagged(OP))?;
        let mut conn = self.backend.conn(OP).await?;
        let n = Cached::new(pg_consumers::ACK)
            .bind::<Text, _>(name)
            .bind::<diesel::sql_types::Uuid, _>(token)
            .bind::<BigInt, _>(major)
            .bind::<diesel::sql_types::Integer, _>(minor)
            .execute(&mut **conn)
            .await
            .map_err(conn.error(OP))?;
        if n == 0 {
            return Err(consumer_errors::lease_lost(name).with_op(OP));
        }
        Ok(())
    }

    async fn release_consumer(&self, name: &str, token: Uuid) -> Result<()> {
        const OP: &str = "release_consumer";
        check_consumer_name(name).map_err(tagged(OP))?;
        let mut conn = self.backend.conn(OP).await?;
        Cached::new(pg_consumers::RELEASE)
            .bind::<Text, _>(name)
            .bind::<diesel::sql_types::Uuid, _>(token)
            .execute(&mut **conn)
            .await
            .map(|_| ())
            .map_err(conn.error(OP))
    }

    async fn consumers(&self) -> Result<Vec<ConsumerInfo>> {
        const OP: &str = "consumers";
        let mut conn = self.backend.conn(OP).await?;
        let rows: Vec<ConsumerRow> = Cached::new(pg_consumers::LIST).load(&mut **conn).await.map_err(conn.error(OP))?;
        let all = rows.into_iter().filter_map(|r| pg_consumers::info(r.name, &r.filter, r.position, r.seq, r.lease_ms));
        Ok(pg_consumers::sorted(all.collect()))
    }

    async fn delete_consumer(&self, name: &str) -> Result<bool> {
        const OP: &str = "delete_consumer";
        check_consumer_name(name).map_err(tagged(OP))?;
        let mut conn = self.backend.conn(OP).await?;
        let n = Cached::new(pg_consumers::DELETE)
            .bind::<Text, _>(name)
            .execute(&mut **conn)
            .await
            .map_err(conn.error(OP))?;
        Ok(n > 0)
    }
}

/// The outcome `palisade_append`'s rows report for `batch`; a failure
/// carries no SQLSTATE (it is not a race to retry).
fn append_outcome(
    batch: &AppendBatch,
    rows: Vec<AppendRow>,
) -> std::result::Result<AppendOutcome, (Error, Option<String>)> {
    let n = batch.events.len();
    let mut events = Vec::with_capacity(rows.len());
    for row in rows {
        if let Some(stream) = row.conflict_stream {
            let expected = batch.expected.get(&stream).copied().unwrap_or(ExpectedVersion::Any);
            let actual = row.conflict_actual.unwrap_or(0).max(0) as u64;
            return Err((
                Error::new(ErrorKind::Conflict, "stream version differs from the expected version")
                    .with_detail(ErrorDetail::VersionConflict { stream, expected, actual }),
                None,
            ));
        }
        let (Some(id), Some(pos), Some(seq), Some(duplicate)) = (row.id, row.pos, row.seq, row.dup) else {
            return Err((invalid_state("append returned an incomplete outcome"), None));
        };
        events.push(Appended {
            id,
            position: Position::new(pos as u64, seq as u64),
            version: row.ver.map(|v| v as u64),
            duplicate,
        });
    }
    if events.len() != n {
        return Err((invalid_state("append returned fewer outcomes than events"), None));
    }
    Ok(AppendOutcome { events })
}

#[derive(QueryableByName)]
struct Purged {
    #[diesel(sql_type = BigInt)]
    gone: i64,
}

#[derive(QueryableByName)]
struct ClaimRow {
    #[diesel(sql_type = Bool)]
    taken: bool,
    #[diesel(sql_type = Bool)]
    same_filter: bool,
    #[diesel(sql_type = Nullable<BigInt>)]
    position: Option<i64>,
    #[diesel(sql_type = Nullable<diesel::sql_types::Integer>)]
    seq: Option<i32>,
}

#[derive(QueryableByName)]
struct ConsumerRow {
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    filter: String,
    #[diesel(sql_type = Nullable<BigInt>)]
    position: Option<i64>,
    #[diesel(sql_type = Nullable<diesel::sql_types::Integer>)]
    seq: Option<i32>,
    #[diesel(sql_type = Nullable<BigInt>)]
    lease_ms: Option<i64>,
}
