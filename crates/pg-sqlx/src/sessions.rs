//! `SessionCache` on an UNLOGGED Postgres table. Multi-step operations are
//! single calls of the PL/pgSQL functions in `migrations/0002_sessions.sql`,
//! so each is one atomic statement.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use palisade_core::sessions::{check_history_len, check_key, Decision, KeyTtl, SetMode};
use palisade_core::time::ttl_millis;
use palisade_core::{Capabilities, Error, ErrorKind, Result, SessionCache};
use serde_json::Value;
use sqlx::Row;

use crate::error::{map, tagged};
use crate::{capabilities, PgBackend};

/// A row is live unless `now >= expires_at`.
macro_rules! live {
    () => {
        "(expires_at IS NULL OR expires_at > clock_timestamp())"
    };
}

/// The expiry instant for a TTL of `$3` milliseconds (NULL = never).
macro_rules! expiry {
    () => {
        "CASE WHEN $3::bigint IS NULL THEN NULL ELSE clock_timestamp() + $3 * interval '1 millisecond' END"
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
             (SELECT key FROM sessions WHERE expires_at <= clock_timestamp() LIMIT $1 FOR UPDATE SKIP LOCKED)",
        )
        .bind(SWEEP_BATCH)
        .execute(&self.backend.pool)
        .await;
        if let Err(e) = swept {
            tracing::debug!(error = %map("sweep", e), "sweeping expired sessions failed");
        }
    }

    /// Deletes expired rows (reads already ignore them).
    pub async fn sweep(&self) -> Result<u64> {
        sqlx::query("DELETE FROM sessions WHERE expires_at <= clock_timestamp()")
            .execute(&self.backend.pool)
            .await
            .map(|r| r.rows_affected())
            .map_err(|e| map("sweep", e))
    }
}

fn ttl_opt(ttl: Option<TimeDelta>) -> Result<Option<i64>> {
    ttl.map(ttl_millis).transpose()
}

fn decode_value(text: &str) -> Result<Value> {
    serde_json::from_str(text)
        .map_err(|e| Error::new(ErrorKind::Serialization, "stored session value is not JSON").with_source(e))
}

fn wrong_type(want: &'static str) -> Error {
    Error::new(ErrorKind::Conflict, format!("key holds another type than {want}"))
}

#[async_trait]
impl SessionCache for PgSessionCache {
    fn backend(&self) -> &'static str {
        crate::BACKEND
    }

    fn capabilities(&self) -> Capabilities {
        capabilities()
    }

    async fn ping(&self) -> Result<()> {
        self.backend.ping().await
    }

    #[tracing::instrument(name = "palisade.set", skip_all, fields(backend = crate::BACKEND, namespace = %self.backend.namespace))]
    async fn set(&self, key: &str, value: Value, ttl: Option<TimeDelta>, mode: SetMode) -> Result<bool> {
        check_key(key).map_err(tagged("set"))?;
        let ttl = ttl_opt(ttl).map_err(tagged("set"))?;
        let text = value.to_string();
        let sql: &'static str = match mode {
            SetMode::Always => concat!(
                "INSERT INTO sessions (key, value, list, expires_at) VALUES ($1, $2, NULL, ",
                expiry!(),
                ") ON CONFLICT (key) DO UPDATE SET value = excluded.value, list = NULL, expires_at = excluded.expires_at"
            ),
            SetMode::IfAbsent => concat!(
                "INSERT INTO sessions (key, value, list, expires_at) VALUES ($1, $2, NULL, ",
                expiry!(),
                ") ON CONFLICT (key) DO UPDATE SET value = excluded.value, list = NULL, expires_at = excluded.expires_at \
                 WHERE NOT (sessions.expires_at IS NULL OR sessions.expires_at > clock_timestamp())"
            ),
            SetMode::IfPresent => concat!(
                "UPDATE sessions SET value = $2, list = NULL, expires_at = ",
                expiry!(),
                " WHERE key = $1 AND ",
                live!()
            ),
        };
        let wrote = sqlx::query(sql)
            .bind(key.as_bytes())
            .bind(text)
            .bind(ttl)
            .execute(&self.backend.pool)
            .await
            .map(|r| r.rows_affected() > 0)
            .map_err(|e| map("set", e))?;
        self.maybe_sweep().await;
        Ok(wrote)
    }

    #[tracing::instrument(name = "palisade.get", skip_all, fields(backend = crate::BACKEND, namespace = %self.backend.namespace))]
    async fn get(&self, key: &str) -> Result<Option<Value>> {
        check_key(key).map_err(tagged("get"))?;
        let row = sqlx::query(concat!("SELECT value FROM sessions WHERE key = $1 AND ", live!()))
            .bind(key.as_bytes())
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

    #[tracing::instrument(name = "palisade.delete", skip_all, fields(backend = crate::BACKEND, namespace = %self.backend.namespace))]
    async fn delete(&self, key: &str) -> Result<bool> {
        check_key(key).map_err(tagged("delete"))?;
        let was_live: Option<bool> =
            sqlx::query_scalar(concat!("DELETE FROM sessions WHERE key = $1 RETURNING ", live!()))
                .bind(key.as_bytes())
                .fetch_optional(&self.backend.pool)
                .await
                .map_err(|e| map("delete", e))?;
        Ok(was_live.unwrap_or(false))
    }

    #[tracing::instrument(name = "palisade.expire", skip_all, fields(backend = crate::BACKEND, namespace = %self.backend.namespace))]
    async fn expire(&self, key: &str, ttl: TimeDelta) -> Result<bool> {
        check_key(key).map_err(tagged("expire"))?;
        let ms = ttl_millis(ttl).map_err(tagged("expire"))?;
        sqlx::query(concat!(
            "UPDATE sessions SET expires_at = clock_timestamp() + $2 * interval '1 millisecond' WHERE key = $1 AND ",
            live!()
        ))
        .bind(key.as_bytes())
        .bind(ms)
        .execute(&self.backend.pool)
        .await
        .map(|r| r.rows_affected() > 0)
        .map_err(|e| map("expire", e))
    }

    #[tracing::instrument(name = "palisade.ttl", skip_all, fields(backend = crate::BACKEND, namespace = %self.backend.namespace))]
    async fn ttl(&self, key: &str) -> Result<KeyTtl> {
        check_key(key).map_err(tagged("ttl"))?;
        let row = sqlx::query(concat!(
            "SELECT expires_at, clock_timestamp() AS now FROM sessions WHERE key = $1 AND ",
            live!()
        ))
        .bind(key.as_bytes())
        .fetch_optional(&self.backend.pool)
        .await
        .map_err(|e| map("ttl", e))?;
        let Some(row) = row else { return Ok(KeyTtl::Missing) };
        let (at, now): (Option<DateTime<Utc>>, DateTime<Utc>) =
            (row.try_get("expires_at").map_err(|e| map("ttl", e))?, row.try_get("now").map_err(|e| map("ttl", e))?);
        Ok(match at {
            None => KeyTtl::Persistent,
            Some(at) => KeyTtl::ExpiresIn(TimeDelta::milliseconds((at - now).num_milliseconds().max(1))),
        })
    }

    #[tracing::instrument(name = "palisade.push", skip_all, fields(backend = crate::BACKEND, namespace = %self.backend.namespace))]
    async fn push(&self, key: &str, entry: Value, max_len: usize, ttl: Option<TimeDelta>) -> Result<usize> {
        check_key(key).map_err(tagged("push"))?;
        check_history_len(max_len).map_err(tagged("push"))?;
        let ttl = ttl_opt(ttl).map_err(tagged("push"))?;
        self.maybe_sweep().await;
        let len: i32 = sqlx::query_scalar("SELECT palisade_session_push($1, $2, $3, $4)")
            .bind(key.as_bytes())
            .bind(entry.to_string())
            .bind(max_len as i32)
            .bind(ttl)
            .fetch_one(&self.backend.pool)
            .await
            .map_err(|e| map("push", e))?;
        Ok(len.max(0) as usize)
    }

    #[tracing::instrument(name = "palisade.range", skip_all, fields(backend = crate::BACKEND, namespace = %self.backend.namespace))]
    async fn range(&self, key: &str, limit: usize) -> Result<Vec<Value>> {
        check_key(key).map_err(tagged("range"))?;
        check_history_len(limit).map_err(tagged("range"))?;
        let row = sqlx::query(concat!("SELECT list[1:$2] AS list FROM sessions WHERE key = $1 AND ", live!()))
            .bind(key.as_bytes())
            .bind(limit as i32)
            .fetch_optional(&self.backend.pool)
            .await
            .map_err(|e| map("range", e))?;
        let Some(row) = row else { return Ok(Vec::new()) };
        match row.try_get::<Option<Vec<String>>, _>("list").map_err(|e| map("range", e))? {
            Some(list) => list.iter().map(|t| decode_value(t)).collect::<Result<_>>().map_err(tagged("range")),
            None => Err(wrong_type("a history list")).map_err(tagged("range")),
        }
    }

    #[tracing::instrument(name = "palisade.incr", skip_all, fields(backend = crate::BACKEND, namespace = %self.backend.namespace))]
    async fn incr(&self, key: &str, by: i64, ttl_on_create: Option<TimeDelta>) -> Result<i64> {
        check_key(key).map_err(tagged("incr"))?;
        let ttl = ttl_opt(ttl_on_create).map_err(tagged("incr"))?;
        sqlx::query_scalar("SELECT palisade_session_incr($1, $2, $3)")
            .bind(key.as_bytes())
            .bind(by)
            .bind(ttl)
            .fetch_one(&self.backend.pool)
            .await
            .map_err(|e| map("incr", e))
    }

    #[tracing::instrument(name = "palisade.hit", skip_all, fields(backend = crate::BACKEND, namespace = %self.backend.namespace))]
    async fn hit(&self, key: &str, limit: u32, window: TimeDelta) -> Result<Decision> {
        check_key(key).map_err(tagged("hit"))?;
        if limit == 0 {
            return Err(Error::invalid("rate limit must be at least 1")).map_err(tagged("hit"));
        }
        let window_ms = ttl_millis(window).map_err(tagged("hit"))?;
        self.maybe_sweep().await;
        let row = sqlx::query("SELECT hits, window_end, clock_timestamp() AS now FROM palisade_session_hit($1, $2)")
            .bind(key.as_bytes())
            .bind(window_ms)
            .fetch_one(&self.backend.pool)
            .await
            .map_err(|e| map("hit", e))?;
        let get = || -> std::result::Result<(i64, DateTime<Utc>, DateTime<Utc>), sqlx::Error> {
            Ok((row.try_get("hits")?, row.try_get("window_end")?, row.try_get("now")?))
        };
        let (hits, end, now) = get().map_err(|e| map("hit", e))?;
        Ok(Decision::from_count(u64::try_from(hits).unwrap_or(0), limit, end - now))
    }
}
