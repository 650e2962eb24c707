//! `SessionCache` on a bounded moka cache with exact expiry on read.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use moka::notification::RemovalCause;
use moka::ops::compute::Op;
use moka::policy::{EvictionPolicy, Expiry as MokaExpiry};
use moka::sync::Cache;
use palisade_core::backend::check::{check_history_len, check_key};
use palisade_core::backend::clock::deadline;
use palisade_core::backend::clock::{expiry_after, now_ms, ttl_millis};
use palisade_core::sessions::{Decision, KeyTtl, SetMode};
use palisade_core::{Capabilities, Error, Expiry, InputPolicy, Namespace, Result, SessionCache, Store};
use serde_json::Value;

use crate::error::{tagged, Fault};
use crate::{capabilities, MemoryConfig};

#[derive(Clone)]
enum Data {
    Value(Arc<Value>),
    List(Arc<VecDeque<Value>>),
}

#[derive(Clone)]
struct Slot {
    data: Data,
    expires_at: Option<DateTime<Utc>>,
}

impl Slot {
    fn live(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_none_or(|at| now < at)
    }
}

/// Lets moka reclaim entries at their absolute expiry instant.
struct SlotExpiry;

fn until(at: Option<DateTime<Utc>>) -> Option<Duration> {
    at.map(|at| (at - Utc::now()).to_std().unwrap_or(Duration::ZERO))
}

impl MokaExpiry<String, Slot> for SlotExpiry {
    fn expire_after_create(&self, _: &String, v: &Slot, _: Instant) -> Option<Duration> {
        until(v.expires_at)
    }
    fn expire_after_update(&self, _: &String, v: &Slot, _: Instant, _: Option<Duration>) -> Option<Duration> {
        until(v.expires_at)
    }
}

/// In-memory [`SessionCache`]: bounded (LRU eviction beyond
/// [`MemoryConfig::session_capacity`]), atomic per key, expired keys invisible at once.
/// Keys evicted for capacity are counted ([`evictions`](Self::evictions)) so
/// health reports show memory pressure.
pub struct MemorySessionCache {
    namespace: Namespace,
    cache: Cache<String, Slot>,
    policy: InputPolicy,
    evictions: Arc<AtomicU64>,
}

impl MemorySessionCache {
    /// The namespace this store is confined to.
    pub fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    /// An empty cache for `namespace`.
    pub fn new(namespace: Namespace, config: &MemoryConfig) -> Self {
        let evictions = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&evictions);
        let cache = Cache::builder()
            .max_capacity(config.session_capacity)
            .eviction_policy(EvictionPolicy::lru())
            .expire_after(SlotExpiry)
            .eviction_listener(move |_, _, cause| {
                if cause == RemovalCause::Size {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            })
            .build();
        MemorySessionCache { namespace, cache, policy: config.policy, evictions }
    }

    /// Reclaims expired entries now (moka also does so as it goes).
    pub fn sweep(&self) {
        self.cache.run_pending_tasks();
    }

    fn live(&self, key: &str, now: DateTime<Utc>) -> Option<Slot> {
        self.cache.get(key).filter(|s| s.live(now))
    }

    /// Runs `f` atomically on the live slot of `key` (expired = absent); `f`
    /// returns the new slot (or `None` to delete) and a result, or an error
    /// that leaves the key unchanged.
    fn compute<T>(&self, key: &str, f: impl FnOnce(Option<&Slot>) -> Result<(Change, T)>) -> Result<T> {
        let now = now_ms();
        let mut out = None;
        self.cache.entry_by_ref(key).and_compute_with(|cur| {
            let live = cur.as_ref().map(|e| e.value()).filter(|s| s.live(now));
            match f(live) {
                Ok((change, value)) => {
                    out = Some(Ok(value));
                    match change {
                        Change::Put(slot) => Op::Put(slot),
                        Change::Delete if cur.is_some() => Op::Remove,
                        Change::Delete | Change::Keep => Op::Nop,
                    }
                }
                Err(e) => {
                    out = Some(Err(e));
                    Op::Nop
                }
            }
        });
        out.unwrap_or_else(|| Err(Error::new(palisade_core::ErrorKind::Unexpected, "compute closure did not run")))
    }
}

enum Change {
    Put(Slot),
    Delete,
    Keep,
}

fn integer(slot: &Slot) -> Result<i64> {
    match &slot.data {
        Data::Value(v) => v.as_i64().ok_or_else(|| Fault::WrongType("an integer counter").into()),
        Data::List(_) => Err(Fault::WrongType("an integer counter").into()),
    }
}

#[async_trait]
impl Store for MemorySessionCache {
    fn backend(&self) -> &'static str {
        crate::BACKEND
    }

    fn capabilities(&self) -> Capabilities {
        capabilities()
    }

    async fn ping(&self) -> Result<()> {
        Ok(())
    }
}

#[async_trait]
impl SessionCache for MemorySessionCache {
    fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }

    /// Runs moka's pending expirations; returns how many entries that removed.
    async fn sweep_expired(&self) -> Result<u64> {
        let before = self.cache.entry_count();
        self.sweep();
        Ok(before.saturating_sub(self.cache.entry_count()))
    }

    async fn set(&self, key: &str, value: Value, expiry: Option<Expiry>, mode: SetMode) -> Result<bool> {
        let run = || {
            check_key(key)?;
            self.policy.check_session_value(&value)?;
            let slot = Slot { data: Data::Value(Arc::new(value)), expires_at: deadline(expiry)? };
            if mode == SetMode::Always {
                // Whatever the key holds (live, expired, another type) is
                // replaced: a plain insert, no read-modify-write.
                self.cache.insert(key.to_owned(), slot);
                return Ok(true);
            }
            self.compute(key, |live| {
                let write = match mode {
                    SetMode::IfAbsent => live.is_none(),
                    SetMode::IfPresent => live.is_some(),
                    SetMode::Always => true,
                };
                Ok(if write { (Change::Put(slot), true) } else { (Change::Keep, false) })
            })
        };
        run().map_err(tagged("set"))
    }

    async fn get(&self, key: &str) -> Result<Option<Value>> {
        let run = || {
            check_key(key)?;
            match self.live(key, now_ms()) {
                None => Ok(None),
                Some(Slot { data: Data::Value(v), .. }) => Ok(Some(Value::clone(&v))),
                Some(Slot { data: Data::List(_), .. }) => Err(Fault::WrongType("a value").into()),
            }
        };
        run().map_err(tagged("get"))
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        let run = || {
            check_key(key)?;
            self.compute(key, |live| Ok((Change::Delete, live.is_some())))
        };
        run().map_err(tagged("delete"))
    }

    async fn expire(&self, key: &str, expiry: Expiry) -> Result<bool> {
        let run = || {
            check_key(key)?;
            let at = expiry.deadline(now_ms())?;
            self.compute(key, |live| match live {
                Some(slot) => Ok((Change::Put(Slot { data: slot.data.clone(), expires_at: Some(at) }), true)),
                None => Ok((Change::Keep, false)),
            })
        };
        run().map_err(tagged("expire"))
    }

    async fn ttl(&self, key: &str) -> Result<KeyTtl> {
        let run = || {
            check_key(key)?;
            let now = now_ms();
            Ok(match self.live(key, now) {
                None => KeyTtl::Missing,
                Some(Slot { expires_at: None, .. }) => KeyTtl::Persistent,
                Some(Slot { expires_at: Some(at), .. }) => {
                    KeyTtl::ExpiresIn((at - now).max(TimeDelta::milliseconds(1)))
                }
            })
        };
        run().map_err(tagged("ttl"))
    }

    async fn push(&self, key: &str, entry: Value, max_len: usize, expiry: Option<Expiry>) -> Result<usize> {
        let run = || {
            check_key(key)?;
            check_history_len(max_len)?;
            self.policy.check_session_value(&entry)?;
            let at = deadline(expiry)?;
            self.compute(key, |live| {
                let (mut list, expires_at) = match live {
                    None => (VecDeque::with_capacity(1), None),
                    Some(Slot { data: Data::List(l), expires_at }) => (VecDeque::clone(l), *expires_at),
                    Some(Slot { data: Data::Value(_), .. }) => return Err(Fault::WrongType("a history list").into()),
                };
                list.push_front(entry);
                list.truncate(max_len);
                let len = list.len();
                let expires_at = at.or(expires_at);
                Ok((Change::Put(Slot { data: Data::List(Arc::new(list)), expires_at }), len))
            })
        };
        run().map_err(tagged("push"))
    }

    async fn range(&self, key: &str, limit: usize) -> Result<Vec<Value>> {
        let run = || {
            check_key(key)?;
            check_history_len(limit)?;
            match self.live(key, now_ms()) {
                None => Ok(Vec::new()),
                Some(Slot { data: Data::List(l), .. }) => Ok(l.iter().take(limit).cloned().collect()),
                Some(Slot { data: Data::Value(_), .. }) => Err(Fault::WrongType("a history list").into()),
            }
        };
        run().map_err(tagged("range"))
    }

    async fn incr(&self, key: &str, by: i64, expiry_on_create: Option<Expiry>) -> Result<i64> {
        let run = || {
            check_key(key)?;
            let at = deadline(expiry_on_create)?;
            self.compute(key, |live| {
                let (next, expires_at) = match live {
                    None => (by, at),
                    Some(slot) => (integer(slot)?.checked_add(by).ok_or(Fault::Overflow)?, slot.expires_at),
                };
                Ok((Change::Put(Slot { data: Data::Value(Arc::new(Value::from(next))), expires_at }), next))
            })
        };
        run().map_err(tagged("incr"))
    }

    async fn hit(&self, key: &str, limit: u32, window: TimeDelta) -> Result<Decision> {
        let run = || {
            check_key(key)?;
            if limit == 0 {
                return Err(Error::invalid("rate limit must be at least 1"));
            }
            let window_ms = ttl_millis(window)?;
            let now = now_ms();
            self.compute(key, |live| {
                let (count, expires_at) = match live {
                    None => (1, expiry_after(now, window_ms)),
                    Some(slot) => {
                        let count = integer(slot)?.checked_add(1).ok_or(Fault::Overflow)?;
                        (count, slot.expires_at.unwrap_or_else(|| expiry_after(now, window_ms)))
                    }
                };
                let decision = Decision::from_count(u64::try_from(count).unwrap_or(0), limit, expires_at - now);
                let slot = Slot { data: Data::Value(Arc::new(Value::from(count))), expires_at: Some(expires_at) };
                Ok((Change::Put(slot), decision))
            })
        };
        run().map_err(tagged("hit"))
    }
}
