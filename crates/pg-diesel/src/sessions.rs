//! `SessionCache` on the UNLOGGED `sessions` table (`migrations/0002`,
//! `0007`): single-row reads and writes in diesel's query builder, the
//! multi-step operations (`push`, `incr`, `hit`) as one call of the shared
//! PL/pgSQL functions, so each is one atomic statement. Semantics are
//! pg-sqlx's: a row is live unless the caller's "now" (bound, millisecond
//! precision) has reached `expires_at`.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use diesel::dsl::not;
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Binary, Integer, Nullable, Text, Timestamptz};
use diesel_async::RunQueryDsl;
use palisade_core::backend::check::{check_history_len, check_key};
use palisade_core::backend::clock::{now_ms, ttl_millis};
use palisade_core::sessions::{Decision, KeyTtl, SetMode};
use palisade_core::{Capabilities, Error, ErrorKind, Expiry, Result, SessionCache, Store};
use serde_json::Value;

use crate::cached::Cached;
use crate::error::tagged;
use crate::schema::sessions;
use crate::time::StoredTime;
use crate::{capabilities, PgDieselBackend};

/// How often writes sweep expired rows (reads never see them anyway).
const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// Most rows one opportunistic sweep deletes, so a write never waits long.
const SWEEP_BATCH: i64 = 10_000;

/// Whether a row is live at `now` (the caller's clock).
#[diesel::dsl::auto_type]
fn live(now: DateTime<Utc>) -> _ {
    sessions::expires_at.is_null().or(sessions::expires_at.gt(now))
}

/// Postgres [`SessionCache`] through diesel. Expired rows are invisible at
/// once; writes delete up to 10,000 of them at most once a minute per
/// instance, and [`sweep`](Self::sweep) deletes all of them on demand.
#[derive(Clone)]
pub struct PgDieselSessionCache {
    backend: PgDieselBackend,
    last_sweep: Arc<Mutex<Option<Instant>>>,
}

#[derive(QueryableByName)]
struct Listed {
    #[diesel(sql_type = Nullable<Array<Text>>)]
    list: Option<Vec<String>>,
}

#[derive(QueryableByName)]
struct Hit {
    #[diesel(sql_type = BigInt)]
    hits: i64,
    #[diesel(sql_type = Timestamptz)]
    window_end: StoredTime,
}

#[derive(QueryableByName)]
struct Len {
    #[diesel(sql_type = Integer)]
    n: i32,
}

#[derive(QueryableByName)]
struct Counter {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

impl PgDieselSessionCache {
    /// The session cache of `backend`'s namespace.
    pub fn new(backend: PgDieselBackend) -> Self {
        PgDieselSessionCache { backend, last_sweep: Arc::new(Mutex::new(None)) }
    }

    /// Deletes a batch of expired rows if this instance has not done so for a
    /// while. Called after writes; a failure is only logged.
    async fn maybe_sweep(&self) {
        let due = {
            let mut last = self.last_sweep.lock().unwrap_or_else(PoisonError::into_inner);
            let due = last.is_none_or(|at| at.elapsed() >= SWEEP_EVERY);
            if due {
                *last = Some(Instant::now());
            }
            due
        };
        if !due {
            return;
        }
        let swept = async {
            let mut conn = self.backend.conn("sweep").await?;
            diesel::sql_query(
                "DELETE FROM sessions WHERE key IN \
                 (SELECT key FROM sessions WHERE expires_at <= $2 LIMIT $1 FOR UPDATE SKIP LOCKED)",
            )
            .bind::<BigInt, _>(SWEEP_BATCH)
            .bind::<Timestamptz, _>(now_ms())
            .execute(&mut **conn)
            .await
            .map_err(conn.error("sweep"))
        };
        if let Err(e) = swept.await {
            tracing::debug!(error = %e, "sweeping expired sessions failed");
        }
    }

    /// Deletes expired rows (reads already ignore them).
    pub async fn sweep(&self) -> Result<u64> {
        let mut conn = self.backend.conn("sweep").await?;
        diesel::delete(sessions::table.filter(sessions::expires_at.le(now_ms())))
            .execute(&mut **conn)
            .await
            .map(|n| n as u64)
            .map_err(conn.error("sweep"))
    }
}

/// Values are JSON text (NUL-safe); decoded without a recursion limit.
fn decode_value(text: &str) -> Result<Value> {
    palisade_core::backend::stored::decode_stored_json(text.as_bytes())
}

fn wrong_type(want: &'static str) -> Error {
    Error::new(ErrorKind::Conflict, format!("key holds another type than {want}"))
}

#[async_trait]
impl Store for PgDieselSessionCache {
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
impl SessionCache for PgDieselSessionCache {
    async fn sweep_expired(&self) -> Result<u64> {
        self.sweep().await
    }

    async fn set(&self, key: &str, value: Value, expiry: Option<Expiry>, mode: SetMode) -> Result<bool> {
        const OP: &str = "set";
        check_key(key).map_err(tagged(OP))?;
        self.backend.policy.check_session_value(&value).map_err(tagged(OP))?;
        let now = now_ms();
        let expires_at = expiry.map(|e| e.deadline(now)).transpose().map_err(tagged(OP))?;
        let row = (
            sessions::key.eq(key.as_bytes()),
            sessions::value.eq(Some(value.to_string())),
            sessions::list.eq(None::<Vec<Option<String>>>),
            sessions::expires_at.eq(expires_at),
        );
        let mut conn = self.backend.conn(OP).await?;
        let upsert = diesel::insert_into(sessions::table).values(row).on_conflict(sessions::key).do_update().set((
            sessions::value.eq(diesel::upsert::excluded(sessions::value)),
            sessions::list.eq(None::<Vec<Option<String>>>),
            sessions::expires_at.eq(diesel::upsert::excluded(sessions::expires_at)),
        ));
        let wrote = match mode {
            SetMode::Always => upsert.execute(&mut **conn).await,
            // Over a row that is gone (expired), not over a live one.
            SetMode::IfAbsent => {
                diesel::query_dsl::methods::FilterDsl::filter(upsert, not(live(now))).execute(&mut **conn).await
            }
            SetMode::IfPresent => {
                diesel::update(sessions::table.filter(sessions::key.eq(key.as_bytes())).filter(live(now)))
                    .set((
                        sessions::value.eq(Some(value.to_string())),
                        sessions::list.eq(None::<Vec<Option<String>>>),
                        sessions::expires_at.eq(expires_at),
                    ))
                    .execute(&mut **conn)
                    .await
            }
        }
        .map(|n| n > 0)
        .map_err(conn.error(OP))?;
        drop(conn);
        self.maybe_sweep().await;
        Ok(wrote)
    }

    async fn get(&self, key: &str) -> Result<Option<Value>> {
        const OP: &str = "get";
        check_key(key).map_err(tagged(OP))?;
        let mut conn = self.backend.conn(OP).await?;
        let row: Option<Option<String>> = sessions::table
            .filter(sessions::key.eq(key.as_bytes()))
            .filter(live(now_ms()))
            .select(sessions::value)
            .first(&mut **conn)
            .await
            .optional()
            .map_err(conn.error(OP))?;
        match row {
            None => Ok(None),
            Some(Some(text)) => decode_value(&text).map(Some).map_err(tagged(OP)),
            Some(None) => Err(wrong_type("a value")).map_err(tagged(OP)),
        }
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        const OP: &str = "delete";
        check_key(key).map_err(tagged(OP))?;
        let mut conn = self.backend.conn(OP).await?;
        let was_live: Option<Option<bool>> = diesel::delete(sessions::table.filter(sessions::key.eq(key.as_bytes())))
            .returning(live(now_ms()))
            .get_result(&mut **conn)
            .await
            .optional()
            .map_err(conn.error(OP))?;
        Ok(was_live.flatten().unwrap_or(false))
    }

    async fn expire(&self, key: &str, expiry: Expiry) -> Result<bool> {
        const OP: &str = "expire";
        check_key(key).map_err(tagged(OP))?;
        let now = now_ms();
        let at = expiry.deadline(now).map_err(tagged(OP))?;
        let mut conn = self.backend.conn(OP).await?;
        diesel::update(sessions::table.filter(sessions::key.eq(key.as_bytes())).filter(live(now)))
            .set(sessions::expires_at.eq(Some(at)))
            .execute(&mut **conn)
            .await
            .map(|n| n > 0)
            .map_err(conn.error(OP))
    }

    async fn ttl(&self, key: &str) -> Result<KeyTtl> {
        const OP: &str = "ttl";
        check_key(key).map_err(tagged(OP))?;
        let now = now_ms();
        let mut conn = self.backend.conn(OP).await?;
        let row: Option<Option<StoredTime>> = sessions::table
            .filter(sessions::key.eq(key.as_bytes()))
            .filter(live(now))
            .select(sessions::expires_at)
            .first(&mut **conn)
            .await
            .optional()
            .map_err(conn.error(OP))?;
        Ok(match row {
            None => KeyTtl::Missing,
            Some(None) => KeyTtl::Persistent,
            Some(Some(at)) => KeyTtl::ExpiresIn(TimeDelta::milliseconds((at.0 - now).num_milliseconds().max(1))),
        })
    }

    async fn push(&self, key: &str, entry: Value, max_len: usize, expiry: Option<Expiry>) -> Result<usize> {
        const OP: &str = "push";
        check_key(key).map_err(tagged(OP))?;
        check_history_len(max_len).map_err(tagged(OP))?;
        self.backend.policy.check_session_value(&entry).map_err(tagged(OP))?;
        let now = now_ms();
        let expires_at = expiry.map(|e| e.deadline(now)).transpose().map_err(tagged(OP))?;
        self.maybe_sweep().await;
        let mut conn = self.backend.conn(OP).await?;
        let len: Len = Cached::new("SELECT palisade_session_push($1, $2, $3, $4, $5) AS n")
            .bind::<Binary, _>(key.as_bytes())
            .bind::<Text, _>(entry.to_string())
            .bind::<Integer, _>(i32::try_from(max_len).unwrap_or(i32::MAX))
            .bind::<Nullable<Timestamptz>, _>(expires_at)
            .bind::<Timestamptz, _>(now)
            .get_result(&mut **conn)
            .await
            .map_err(conn.error(OP))?;
        Ok(usize::try_from(len.n).unwrap_or(0))
    }

    async fn range(&self, key: &str, limit: usize) -> Result<Vec<Value>> {
        const OP: &str = "range";
        check_key(key).map_err(tagged(OP))?;
        check_history_len(limit).map_err(tagged(OP))?;
        let mut conn = self.backend.conn(OP).await?;
        // An array slice, which the query builder does not express.
        let row: Option<Listed> = Cached::new(
            "SELECT list[1:$2] AS list FROM sessions WHERE key = $1 AND (expires_at IS NULL OR expires_at > $3)",
        )
        .bind::<Binary, _>(key.as_bytes())
        .bind::<Integer, _>(i32::try_from(limit).unwrap_or(i32::MAX))
        .bind::<Timestamptz, _>(now_ms())
        .get_result(&mut **conn)
        .await
        .optional()
        .map_err(conn.error(OP))?;
        let Some(row) = row else { return Ok(Vec::new()) };
        match row.list {
            Some(list) => list.iter().map(|t| decode_value(t)).collect::<Result<_>>().map_err(tagged(OP)),
            None => Err(wrong_type("a history list")).map_err(tagged(OP)),
        }
    }

    async fn incr(&self, key: &str, by: i64, expiry_on_create: Option<Expiry>) -> Result<i64> {
        const OP: &str = "incr";
        check_key(key).map_err(tagged(OP))?;
        let now = now_ms();
        let expires_at = expiry_on_create.map(|e| e.deadline(now)).transpose().map_err(tagged(OP))?;
        let mut conn = self.backend.conn(OP).await?;
        let counter: Counter = Cached::new("SELECT palisade_session_incr($1, $2, $3, $4) AS n")
            .bind::<Binary, _>(key.as_bytes())
            .bind::<BigInt, _>(by)
            .bind::<Nullable<Timestamptz>, _>(expires_at)
            .bind::<Timestamptz, _>(now)
            .get_result(&mut **conn)
            .await
            .map_err(conn.error(OP))?;
        Ok(counter.n)
    }

    async fn hit(&self, key: &str, limit: u32, window: TimeDelta) -> Result<Decision> {
        const OP: &str = "hit";
        check_key(key).map_err(tagged(OP))?;
        if limit == 0 {
            return Err(Error::invalid("rate limit must be at least 1")).map_err(tagged(OP));
        }
        let window_ms = ttl_millis(window).map_err(tagged(OP))?;
        self.maybe_sweep().await;
        let now = now_ms();
        let mut conn = self.backend.conn(OP).await?;
        let hit: Hit = Cached::new("SELECT hits, window_end FROM palisade_session_hit($1, $2, $3)")
            .bind::<Binary, _>(key.as_bytes())
            .bind::<BigInt, _>(window_ms)
            .bind::<Timestamptz, _>(now)
            .get_result(&mut **conn)
            .await
            .map_err(conn.error(OP))?;
        Ok(Decision::from_count(u64::try_from(hit.hits).unwrap_or(0), limit, hit.window_end.0 - now))
    }
}
