//! `SessionCache` for `Degradable<dyn SessionCache>`.

use async_trait::async_trait;
use chrono::TimeDelta;
use serde_json::Value;

use super::{Degradable, Replay, WritePolicy};
use crate::sessions::{Decision, KeyTtl, SetMode};
use crate::{Capabilities, Result, SessionCache};

/// A buffered session write (only with `DegradeConfig::replay_sessions`).
/// TTLs are replayed as given, so they restart at replay time.
/// Fields mirror the parameters of the trait method of the same name.
#[allow(missing_docs)]
#[derive(Debug, Clone)]
pub enum SessionOp {
    /// `set` (replayed only if it wrote).
    Set { key: String, value: Value, ttl: Option<TimeDelta>, mode: SetMode },
    /// `delete`.
    Delete { key: String },
    /// `expire`.
    Expire { key: String, ttl: TimeDelta },
    /// `push`.
    Push { key: String, entry: Value, max_len: usize, ttl: Option<TimeDelta> },
    /// `incr`.
    Incr { key: String, by: i64, ttl: Option<TimeDelta> },
}

#[async_trait]
impl<'a> Replay for dyn SessionCache + 'a {
    type Op = SessionOp;

    async fn replay(&self, op: &SessionOp) -> Result<()> {
        match op.clone() {
            SessionOp::Set { key, value, ttl, mode } => self.set(&key, value, ttl, mode).await.map(|_| ()),
            SessionOp::Delete { key } => self.delete(&key).await.map(|_| ()),
            SessionOp::Expire { key, ttl } => self.expire(&key, ttl).await.map(|_| ()),
            SessionOp::Push { key, entry, max_len, ttl } => self.push(&key, entry, max_len, ttl).await.map(|_| ()),
            SessionOp::Incr { key, by, ttl } => self.incr(&key, by, ttl).await.map(|_| ()),
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
    fn keep(&self, op: SessionOp) -> Option<SessionOp> {
        self.config.replay_sessions.then_some(op)
    }
}

#[async_trait]
impl SessionCache for Degradable<dyn SessionCache> {
    fn backend(&self) -> &'static str {
        self.primary.backend()
    }

    fn capabilities(&self) -> Capabilities {
        self.primary.capabilities()
    }

    async fn ping(&self) -> Result<()> {
        self.read("ping", |s| s.ping()).await
    }

    async fn set(&self, key: &str, value: Value, ttl: Option<TimeDelta>, mode: SetMode) -> Result<bool> {
        let op = SessionOp::Set { key: key.to_owned(), value: value.clone(), ttl, mode };
        self.write(
            "set",
            WritePolicy::Idempotent,
            |s| s.set(key, value.clone(), ttl, mode),
            |wrote| if *wrote { self.keep(op) } else { None },
        )
        .await
    }

    async fn get(&self, key: &str) -> Result<Option<Value>> {
        self.read("get", |s| s.get(key)).await
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        let op = SessionOp::Delete { key: key.to_owned() };
        self.write("delete", WritePolicy::Idempotent, |s| s.delete(key), |_| self.keep(op)).await
    }

    async fn expire(&self, key: &str, ttl: TimeDelta) -> Result<bool> {
        let op = SessionOp::Expire { key: key.to_owned(), ttl };
        self.write("expire", WritePolicy::Idempotent, |s| s.expire(key, ttl), |_| self.keep(op)).await
    }

    async fn ttl(&self, key: &str) -> Result<KeyTtl> {
        self.read("ttl", |s| s.ttl(key)).await
    }

    async fn push(&self, key: &str, entry: Value, max_len: usize, ttl: Option<TimeDelta>) -> Result<usize> {
        let op = SessionOp::Push { key: key.to_owned(), entry: entry.clone(), max_len, ttl };
        self.write("push", WritePolicy::NotIdempotent, |s| s.push(key, entry.clone(), max_len, ttl), |_| self.keep(op))
            .await
    }

    async fn range(&self, key: &str, limit: usize) -> Result<Vec<Value>> {
        self.read("range", |s| s.range(key, limit)).await
    }

    async fn incr(&self, key: &str, by: i64, ttl_on_create: Option<TimeDelta>) -> Result<i64> {
        let op = SessionOp::Incr { key: key.to_owned(), by, ttl: ttl_on_create };
        self.write("incr", WritePolicy::NotIdempotent, |s| s.incr(key, by, ttl_on_create), |_| self.keep(op)).await
    }

    async fn hit(&self, key: &str, limit: u32, window: TimeDelta) -> Result<Decision> {
        self.write("hit", WritePolicy::Idempotent, |s| s.hit(key, limit, window), |_| None).await
    }
}
