//! `SessionCache` on an UNLOGGED Postgres table. Multi-step operations are
//! single calls of the PL/pgSQL functions in `migrations/0002_sessions.sql`,
//! so each is one atomic statement.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::TimeDelta;
use palisade_core::backend::check::{check_history_len, check_key};
use palisade_core::backend::clock::{now_ms, ttl_millis};
use palisade_core::sessions::{Decision, KeyTtl, SetMode};
use palisade_core::{Capabilities, Error, ErrorKind, Expiry, Result, SessionCache, Store};
use serde_json::Value;
use sqlx::Row;

use crate::error::{map, tagged};
use crate::time::StoredTime;
use crate::{capabilities, PgBackend};

/// A row is live unless `now >= expires_at`, with `now` bound as `$now`
/// (the caller's clock, like the expiry instants it wrote).
macro_rules! live {
    ($now:literal) => {
        concat!("(expires_at IS NULL OR expires_at > $", $now, ")")
    };
}

/// How often writes sweep expired rows (reads never see them anyway).
const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// Most rows one opportunistic sweep deletes, so a write never waits long.
const SWEEP_BATCH: i64 = 10_000;

/// Postgres [`SessionCache`]. Expired rows are invisible at once; writes
/// delete up to 10,000 of them at most once a minute per instance, and
/// [`sweep`](Self::sweep) deletes all of them on demand.
#[derive(Clone)]
pub struct PgSessionCache {
    backend: PgBackend,
    last_sweep: Arc<Mutex<Option<Instant>>>,
}

impl PgSessionCache {
    /// The session cache of `backend`'s namespace.
    pub fn new(backend: PgBackend) -> Self {
        PgSessionCache { backend, last_sweep: Arc::new(Mutex::new(None)) }
    }

    /// Deletes a batch of expired rows if this instance has not done so for a
    /// while. Called after writes; a failure is only logged.
    async fn maybe_sweep(&self) {
        let due = {
            let mut last = self.last_sweep.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let due = last.is_none_or(|at| at.elapsed() >= SWEEP_EVERY);
            if due {
                *last = Some(Instant::now());
            }
            due
        };
        if !due {
            return;
        }
        let swept = sqlx::query(
            "DELETE FROM sessions WHERE key IN \
             (SELECT key FROM sessions WHERE expires_at <= $2 LIMIT $1 FOR UPDATE SKIP LOCKED)",
        )
        .bind(SWEEP_BATCH)
        .bind(now_ms())
        .execute(&self.backend.pool)
        .await;
        if let Err(e) = swept {
            tracing::debug!(error = %map("sweep", e), "sweeping expired sessions failed");
        }
    }

    /// Deletes expired rows (reads already ignore them).
    pub async fn sweep(&self) -> Result<u64> {
        sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(now_ms())
            .execute(&self.backend.pool)
            .await
            .map(|r| r.rows_affected())
            .map_err(|e| map("sweep", e))
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
impl Store for PgSessionCache {
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
impl SessionCache for PgSessionCache {
    async fn sweep_expired(&self) -> Result<u64> {
        self.sweep().await
    }

    async fn set(&self, key: &str, value: Value, expiry: Option<Expiry>, mode: SetMode) -> Result<bool> {
        check_key(key).map_err(tagged("set"))?;
        self.backend.policy.check_session_value(&value).map_err(tagged("set"))?;
        let now = now_ms();
        let expires_at = expiry.map(|e| e.deadline(now)).transpose().map_err(tagged("set"))?;
        let sql: &'static str = match mode {
            SetMode::Always => {
                "INSERT INTO sessions (key, value, list, expires_at) VALUES ($1, $2, NULL, $3) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value, list = NULL, expires_at = excluded.expires_at"
            }
            SetMode::IfAbsent => {
                "INSERT INTO sessions (key, value, list, expires_at) VALUES ($1, $2, NULL, $3) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value, list = NULL, expires_at = excluded.expires_at \
                 WHERE NOT (sessions.expires_at IS NULL OR sessions.expires_at > $4)"
            }
            SetMode::IfPresent => {
                concat!("UPDATE sessions SET value = $2, list = NULL, expires_at = $3 WHERE key = $1 AND ", live!(4))
            }
        };
        let wrote = sqlx::query(sql)
            .bind(key.as_bytes())
            .bind(value.to_string())
            .bind(expires_at)
            .bind(now)
            .execute(&self.backend.pool)
            .await
            .map(|r| r.rows_affected() > 0)
            .map_err(|e| map("set", e))?;
        self.maybe_sweep().await;
        Ok(wrote)
    }

    async fn get(&self, key: &str) -> Result<Option<Value>> {
        check_key(key).map_err(tagged("get"))?;
        let row = sqlx::query(concat!("SELECT value FROM sessions WHERE key = $1 AND ", live!(2)))
            .bind(key.as_bytes())
            .bind(now_ms())
            .fetch_optional(&self.backend.pool)
            .await
            .map_err(|e| map("get", e))?;
        match row {
            None => Ok(None),
            Some(r) => match r.try_get::<Option<String>, _>("value").map_err(|e| map("get", e))? {
                Some(text) => decode_value(&text).map(Some).map_err(tagged("get")),
                None => Err(wrong_type("a value")).map_err(tagged("get")),
            },
        }
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        check_key(key).map_err(tagged("delete"))?;
        let was_live: Option<bool> =
            sqlx::query_scalar(concat!("DELETE FROM sessions WHERE key = $1 RETURNING ", live!(2)))
                .bind(key.as_bytes())
                .bind(now_ms())
                .fetch_optional(&self.backend.pool)
                .await
                .map_err(|e| map("delete", e))?;
        Ok(was_live.unwrap_or(false))
    }

    async fn expire(&self, key: &str, expiry: Expiry) -> Result<bool> {
        check_key(key).map_err(tagged("expire"))?;
        let now = now_ms();
        let at = expiry.deadline(now).map_err(tagged("expire"))?;
        sqlx::query(concat!("UPDATE sessions SET expires_at = $2 WHERE key = $1 AND ", live!(3)))
            .bind(key.as_bytes())
            .bind(at)
            .bind(now)
            .execute(&self.backend.pool)
            .await
            .map(|r| r.rows_affected() > 0)
            .map_err(|e| map("expire", e))
    }

    async fn ttl(&self, key: &str) -> Result<KeyTtl> {
        check_key(key).map_err(tagged("ttl"))?;
        let now = now_ms();
        let row = sqlx::query(concat!("SELECT expires_at FROM sessions WHERE key = $1 AND ", live!(2)))
            .bind(key.as_bytes())
            .bind(now)
            .fetch_optional(&self.backend.pool)
            .await
            .map_err(|e| map("ttl", e))?;
        let Some(row) = row else { return Ok(KeyTtl::Missing) };
        let at: Option<StoredTime> = row.try_get("expires_at").map_err(|e| map("ttl", e))?;
        let at = at.map(|t| t.0);
        Ok(match at {
            None => KeyTtl::Persistent,
            Some(at) => KeyTtl::ExpiresIn(TimeDelta::milliseconds((at - now).num_milliseconds().max(1))),
        })
    }

    async fn push(&self, key: &str, entry: Value, max_len: usize, expiry: Option<Expiry>) -> Result<usize> {
        check_key(key).map_err(tagged("push"))?;
        check_history_len(max_len).map_err(tagged("push"))?;
        self.backend.policy.check_session_value(&entry).map_err(tagged("push"))?;
        let now = now_ms();
        let expires_at = expiry.map(|e| e.deadline(now)).transpose().map_err(tagged("push"))?;
        self.maybe_sweep().await;
        let len: i32 = sqlx::query_scalar("SELECT palisade_session_push($1, $2, $3, $4, $5)")
            .bind(key.as_bytes())
            .bind(entry.to_string())
            .bind(max_len as i32)
            .bind(expires_at)
            .bind(now)
            .fetch_one(&self.backend.pool)
            .await
            .map_err(|e| map("push", e))?;
        Ok(len.max(0) as usize)
    }

    async fn range(&self, key: &str, limit: usize) -> Result<Vec<Value>> {
        check_key(key).map_err(tagged("range"))?;
        check_history_len(limit).map_err(tagged("range"))?;
        let row = sqlx::query(concat!("SELECT list[1:$2] AS list FROM sessions WHERE key = $1 AND ", live!(3)))
            .bind(key.as_bytes())
            .bind(limit as i32)
            .bind(now_ms())
            .fetch_optional(&self.backend.pool)
            .await
            .map_err(|e| map("range", e))?;
        let Some(row) = row else { return Ok(Vec::new()) };
        match row.try_get::<Option<Vec<String>>, _>("list").map_err(|e| map("range", e))? {
            Some(list) => list.iter().map(|t| decode_value(t)).collect::<Result<_>>().map_err(tagged("range")),
            None => Err(wrong_type("a history list")).map_err(tagged("range")),
        }
    }

    async fn incr(&self, key: &str, by: i64, expiry_on_create: Option<Expiry>) -> Result<i64> {
        check_key(key).map_err(tagged("incr"))?;
        let now = now_ms();
        let expires_at = expiry_on_create.map(|e| e.deadline(now)).transpose().map_err(tagged("incr"))?;
        sqlx::query_scalar("SELECT palisade_session_incr($1, $2, $3, $4)")
            .bind(key.as_bytes())
            .bind(by)
            .bind(expires_at)
            .bind(now)
            .fetch_one(&self.backend.pool)
            .await
            .map_err(|e| map("incr", e))
    }

    async fn hit(&self, key: &str, limit: u32, window: TimeDelta) -> Result<Decision> {
        check_key(key).map_err(tagged("hit"))?;
        if limit == 0 {
            return Err(Error::invalid("rate limit must be at least 1")).map_err(tagged("hit"));
        }
        let window_ms = ttl_millis(window).map_err(tagged("hit"))?;
        self.maybe_sweep().await;
        let now = now_ms();
        let row = sqlx::query("SELECT hits, window_end FROM palisade_session_hit($1, $2, $3)")
            .bind(key.as_bytes())
            .bind(window_ms)
            .bind(now)
            .fetch_one(&self.backend.pool)
            .await
            .map_err(|e| map("hit", e))?;
        let get = || -> std::result::Result<(i64, StoredTime), sqlx::Error> {
            Ok((row.try_get("hits")?, row.try_get("window_end")?))
        };
        let (hits, StoredTime(end)) = get().map_err(|e| map("hit", e))?;
        Ok(Decision::from_count(u64::try_from(hits).unwrap_or(0), limit, end - now))
    }
}
