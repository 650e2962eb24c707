//! `SessionCache` on plain Redis keys under `{<ns>:s}:<key bytes>`.
//!
//! - Values are JSON text in strings; `set` is `SET [NX|XX] [PX ms]`, whose
//!   nil reply (condition not met) is `Ok(false)`, never an error. Without a
//!   TTL `SET` clears any old expiry, as the contract wants.
//! - Histories are lists (`LPUSH` newest first); counters and rate limits are
//!   strings holding a JSON integer, which is what `INCRBY` reads. Values,
//!   lists and counters share the keyspace: a wrong type is `Conflict`.
//! - `push`, `incr` and `hit` are one script each (atomic); `hit` is a
//!   **fixed window** starting at the first hit, counted in the key that
//!   expires with the window.
//! - Expiry is Redis' own, exact on access: an expired key is invisible at
//!   once. Instants are fixed on the client when the call is made and sent as
//!   absolute unix milliseconds (`SET PXAT`, `PEXPIREAT`), so a slow network
//!   never stretches them; Redis compares them with its own clock (keep the
//!   clocks in sync). Redis treats a key as expired when `now > expires_at`
//!   (ours: `>=`), one millisecond later than the contract.
//! - Values are JSON text (U+0000 is an escape in it, so it round-trips), held
//!   to the input policy before any I/O and decoded without a recursion limit.
//! - TTLs and keys are validated before any I/O.

use async_trait::async_trait;
use chrono::TimeDelta;
use palisade_core::backend::check::{check_history_len, check_key};
use palisade_core::backend::clock::deadline;
use palisade_core::backend::clock::{now_ms, ttl_millis};
use palisade_core::sessions::{Decision, KeyTtl, SetMode};
use palisade_core::{Capabilities, Error, Expiry, Result, SessionCache};
use serde_json::Value;

use crate::clients::{Cmd, Reply};
use crate::error::corrupt;
use crate::{capabilities, key, prefix, scripts, RedisBackend, Store};

/// Redis [`SessionCache`] (see the module docs).
#[derive(Clone)]
pub struct RedisSessionCache {
    backend: RedisBackend,
    prefix: String,
}

impl RedisSessionCache {
    /// The session cache of `backend`'s namespace.
    pub fn new(backend: RedisBackend) -> Self {
        let prefix = prefix(&backend.namespace, Store::Sessions);
        RedisSessionCache { backend, prefix }
    }

    fn key(&self, k: &str) -> Vec<u8> {
        key(&self.prefix, k.as_bytes())
    }
}

/// The deadline of `expiry` as unix milliseconds (see the module docs); at
/// least 1, since Redis refuses 0 (an instant that far back is long past anyway).
fn unix_ms(expiry: Option<Expiry>) -> Result<Option<i64>> {
    Ok(deadline(expiry)?.map(|at| at.timestamp_millis().max(1)))
}

fn decode(backend: &'static str, reply: &Reply) -> Result<Value> {
    palisade_core::backend::stored::decode_stored_json(reply.bytes()?).map_err(|e| e.with_backend(backend))
}

fn decimal(reply: &Reply, backend: &'static str) -> Result<i64> {
    reply.int().map_err(|_| corrupt(backend, "counter is not a 64-bit integer"))
}

#[async_trait]
impl palisade_core::Store for RedisSessionCache {
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
impl SessionCache for RedisSessionCache {
    async fn set(&self, key: &str, value: Value, expiry: Option<Expiry>, mode: SetMode) -> Result<bool> {
        check_key(key).map_err(self.backend.tagged("set"))?;
        self.backend.options.policy.check_session_value(&value).map_err(self.backend.tagged("set"))?;
        let at = unix_ms(expiry).map_err(self.backend.tagged("set"))?;
        let mut cmd = Cmd::keyed("SET", self.key(key)).arg(value.to_string());
        if let Some(ms) = at {
            cmd = cmd.arg("PXAT").arg(ms.to_string());
        }
        cmd = match mode {
            SetMode::Always => cmd,
            SetMode::IfAbsent => cmd.arg("NX"),
            SetMode::IfPresent => cmd.arg("XX"),
        };
        // OK = written; nil = the NX/XX condition did not hold.
        let reply = self.backend.client.call("set", cmd).await?;
        Ok(!reply.is_nil())
    }

    async fn get(&self, key: &str) -> Result<Option<Value>> {
        check_key(key).map_err(self.backend.tagged("get"))?;
        let reply = self.backend.client.call("get", Cmd::keyed("GET", self.key(key))).await?;
        if reply.is_nil() {
            return Ok(None);
        }
        decode(self.backend.backend(), &reply).map(Some).map_err(|e| e.with_op("get"))
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        check_key(key).map_err(self.backend.tagged("delete"))?;
        let reply = self.backend.client.call("delete", Cmd::keyed("DEL", self.key(key))).await?;
        Ok(reply.int().map_err(|e| e.with_backend(self.backend.backend()).with_op("delete"))? > 0)
    }

    async fn expire(&self, key: &str, expiry: Expiry) -> Result<bool> {
        check_key(key).map_err(self.backend.tagged("expire"))?;
        let at = expiry.deadline(now_ms()).map_err(self.backend.tagged("expire"))?;
        let cmd = Cmd::keyed("PEXPIREAT", self.key(key)).arg(at.timestamp_millis().max(1).to_string());
        let reply = self.backend.client.call("expire", cmd).await?;
        Ok(reply.int().map_err(|e| e.with_backend(self.backend.backend()).with_op("expire"))? == 1)
    }

    async fn ttl(&self, key: &str) -> Result<KeyTtl> {
        check_key(key).map_err(self.backend.tagged("ttl"))?;
        let reply = self.backend.client.call("ttl", Cmd::keyed("PTTL", self.key(key))).await?;
        Ok(match reply.int().map_err(|e| e.with_backend(self.backend.backend()).with_op("ttl"))? {
            -1 => KeyTtl::Persistent,
            // -2: no such key; 0: expires this millisecond (expired by the contract).
            ms if ms <= 0 => KeyTtl::Missing,
            ms => KeyTtl::ExpiresIn(TimeDelta::milliseconds(ms)),
        })
    }

    async fn push(&self, key: &str, entry: Value, max_len: usize, expiry: Option<Expiry>) -> Result<usize> {
        check_key(key).map_err(self.backend.tagged("push"))?;
        check_history_len(max_len).map_err(self.backend.tagged("push"))?;
        self.backend.options.policy.check_session_value(&entry).map_err(self.backend.tagged("push"))?;
        let at = unix_ms(expiry).map_err(self.backend.tagged("push"))?;
        let args = vec![
            entry.to_string().into_bytes(),
            max_len.to_string().into_bytes(),
            at.map(|ms| ms.to_string()).unwrap_or_default().into_bytes(),
        ];
        let reply = self.backend.client.eval("push", &scripts::SESSION_PUSH, vec![self.key(key)], args).await?;
        let len = reply.int().map_err(|e| e.with_backend(self.backend.backend()).with_op("push"))?;
        usize::try_from(len).map_err(|_| corrupt(self.backend.backend(), "negative list length").with_op("push"))
    }

    async fn range(&self, key: &str, limit: usize) -> Result<Vec<Value>> {
        check_key(key).map_err(self.backend.tagged("range"))?;
        check_history_len(limit).map_err(self.backend.tagged("range"))?;
        let cmd = Cmd::keyed("LRANGE", self.key(key)).arg("0").arg((limit - 1).to_string());
        let reply = self.backend.client.call("range", cmd).await?;
        let items = reply.array().map_err(|e| e.with_backend(self.backend.backend()).with_op("range"))?;
        items.iter().map(|r| decode(self.backend.backend(), r).map_err(|e| e.with_op("range"))).collect()
    }

    async fn incr(&self, key: &str, by: i64, expiry_on_create: Option<Expiry>) -> Result<i64> {
        check_key(key).map_err(self.backend.tagged("incr"))?;
        let at = unix_ms(expiry_on_create).map_err(self.backend.tagged("incr"))?;
        let args = vec![by.to_string().into_bytes(), at.map(|ms| ms.to_string()).unwrap_or_default().into_bytes()];
        let reply = self.backend.client.eval("incr", &scripts::SESSION_INCR, vec![self.key(key)], args).await?;
        decimal(&reply, self.backend.backend()).map_err(|e| e.with_op("incr"))
    }

    async fn hit(&self, key: &str, limit: u32, window: TimeDelta) -> Result<Decision> {
        check_key(key).map_err(self.backend.tagged("hit"))?;
        if limit == 0 {
            return Err(Error::invalid("rate limit must be at least 1")).map_err(self.backend.tagged("hit"));
        }
        let window_ms = ttl_millis(window).map_err(self.backend.tagged("hit"))?;
        let reply = self
            .backend
            .client
            .eval("hit", &scripts::SESSION_HIT, vec![self.key(key)], vec![window_ms.to_string().into_bytes()])
            .await?;
        let parts = reply.array().map_err(|e| e.with_backend(self.backend.backend()).with_op("hit"))?;
        let [count, pttl] = parts.as_slice() else {
            return Err(corrupt(self.backend.backend(), "rate-limit script reply").with_op("hit"));
        };
        let count = decimal(count, self.backend.backend()).map_err(|e| e.with_op("hit"))?;
        let pttl = pttl.int().map_err(|e| e.with_backend(self.backend.backend()).with_op("hit"))?;
        Ok(Decision::from_count(u64::try_from(count).unwrap_or(0), limit, TimeDelta::milliseconds(pttl)))
    }
}
