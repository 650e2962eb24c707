//! `SessionCache` for `Degradable<dyn SessionCache>`.

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::Value;

use super::{Degradable, Replay, WritePolicy};
use crate::backend::clock::{deadline, now_ms};
use crate::sessions::{Decision, KeyTtl, SetMode};
use crate::{Expiry, Result, SessionCache};

/// A buffered session write (only with `DegradeConfig::replay_sessions`).
/// Expiries are pinned to absolute instants when the call is made, so a
/// replayed write expires when the original would have: one whose instant
/// has passed by replay time still applies, and leaves its key expired (a
/// `set` hides the old value, an `incr` still counts on an existing counter).
/// Fields mirror the parameters of the trait method of the same name.
#[allow(missing_docs)]
#[derive(Debug, Clone)]
pub enum SessionOp {
    /// `set` (replayed only if it wrote).
    Set { key: String, value: Value, expires_at: Option<DateTime<Utc>>, mode: SetMode },
    /// `delete`.
    Delete { key: String },
    /// `expire`.
    Expire { key: String, expires_at: DateTime<Utc> },
    /// `push`.
    Push { key: String, entry: Value, max_len: usize, expires_at: Option<DateTime<Utc>> },
    /// `incr`.
    Incr { key: String, by: i64, expires_at: Option<DateTime<Utc>> },
}

#[async_trait]
impl<'a> Replay for dyn SessionCache + 'a {
    type Op = SessionOp;

    async fn replay(&self, op: &SessionOp) -> Result<()> {
        let at = |t: Option<DateTime<Utc>>| t.map(Expiry::At);
        match op.clone() {
            SessionOp::Set { key, value, expires_at, mode } => {
                self.set(&key, value, at(expires_at), mode).await.map(|_| ())
            }
            SessionOp::Delete { key } => self.delete(&key).await.map(|_| ()),
            SessionOp::Expire { key, expires_at } => self.expire(&key, Expiry::At(expires_at)).await.map(|_| ()),
            SessionOp::Push { key, entry, max_len, expires_at } => {
                self.push(&key, entry, max_len, at(expires_at)).await.map(|_| ())
            }
            SessionOp::Incr { key, by, expires_at } => self.incr(&key, by, at(expires_at)).await.map(|_| ()),
        }
    }

    async fn probe(&self) -> Result<()> {
        self.ping().await
    }

    fn describe(op: &SessionOp) -> String {
        let name = match op {
            SessionOp::Set { .. } => "set",
            SessionOp::Delete { .. } => "delete",
            SessionOp::Expire { .. } => "expire",
            SessionOp::Push { .. } => "push",
            SessionOp::Incr { .. } => "incr",
        };
        format!("session {name}")
    }

    fn idempotent(op: &SessionOp) -> bool {
        !matches!(op, SessionOp::Push { .. } | SessionOp::Incr { .. })
    }
}

impl Degradable<dyn SessionCache> {
    /// The op to buffer, built only when sessions are replayed at all.
    fn keep(&self, op: impl FnOnce() -> SessionOp) -> Option<SessionOp> {
        self.config.replay_sessions.then(op)
    }
}

#[async_trait]
impl SessionCache for Degradable<dyn SessionCache> {
    /// Evictions of the primary and the memory secondary together.
    fn evictions(&self) -> u64 {
        let primary = self.primary.get().map_or(0, |p| p.evictions());
        primary.saturating_add(self.secondary.evictions())
    }

    /// Sweeps the store that serves reads now; nothing is buffered (expired
    /// keys are invisible either way).
    async fn sweep_expired(&self) -> Result<u64> {
        self.read("sweep_expired", |s| s.sweep_expired()).await
    }

    async fn set(&self, key: &str, value: Value, expiry: Option<Expiry>, mode: SetMode) -> Result<bool> {
        let expires_at = deadline(expiry).map_err(|e| e.with_op("set"))?;
        let op = || SessionOp::Set { key: key.to_owned(), value: value.clone(), expires_at, mode };
        self.write(
            "set",
            WritePolicy::Idempotent,
            |s| s.set(key, value.clone(), expires_at.map(Expiry::At), mode),
            |wrote| if *wrote { self.keep(op) } else { None },
        )
        .await
    }

    async fn get(&self, key: &str) -> Result<Option<Value>> {
        self.read("get", |s| s.get(key)).await
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        let op = SessionOp::Delete { key: key.to_owned() };
        self.write("delete", WritePolicy::Idempotent, |s| s.delete(key), |_| self.keep(|| op)).await
    }

    async fn expire(&self, key: &str, expiry: Expiry) -> Result<bool> {
        let expires_at = expiry.deadline(now_ms()).map_err(|e| e.with_op("expire"))?;
        let op = SessionOp::Expire { key: key.to_owned(), expires_at };
        self.write("expire", WritePolicy::Idempotent, |s| s.expire(key, Expiry::At(expires_at)), |_| self.keep(|| op))
            .await
    }

    async fn ttl(&self, key: &str) -> Result<KeyTtl> {
        self.read("ttl", |s| s.ttl(key)).await
    }

    async fn push(&self, key: &str, entry: Value, max_len: usize, expiry: Option<Expiry>) -> Result<usize> {
        let expires_at = deadline(expiry).map_err(|e| e.with_op("push"))?;
        let op = || SessionOp::Push { key: key.to_owned(), entry: entry.clone(), max_len, expires_at };
        self.write(
            "push",
            WritePolicy::NotIdempotent,
            |s| s.push(key, entry.clone(), max_len, expires_at.map(Expiry::At)),
            |_| self.keep(op),
        )
        .await
    }

    async fn range(&self, key: &str, limit: usize) -> Result<Vec<Value>> {
        self.read("range", |s| s.range(key, limit)).await
    }

    async fn incr(&self, key: &str, by: i64, expiry_on_create: Option<Expiry>) -> Result<i64> {
        let expires_at = deadline(expiry_on_create).map_err(|e| e.with_op("incr"))?;
        let op = SessionOp::Incr { key: key.to_owned(), by, expires_at };
        self.write(
            "incr",
            WritePolicy::NotIdempotent,
            |s| s.incr(key, by, expires_at.map(Expiry::At)),
            |_| self.keep(|| op),
        )
        .await
    }

    async fn hit(&self, key: &str, limit: u32, window: TimeDelta) -> Result<Decision> {
        self.write("hit", WritePolicy::Idempotent, |s| s.hit(key, limit, window), |_| None).await
    }
}
