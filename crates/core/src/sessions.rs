//! Short-lived session state and the [`SessionCache`] trait.

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::backend::clock::ttl_millis;
use crate::error::{Error, Result};
use crate::store::Store;
use crate::time::{truncate_ms, MAX_TTL_MS};

/// Longest key, in bytes.
pub const MAX_KEY_LEN: usize = 1024;
/// Largest `max_len` of a history list and largest `range` limit.
pub const MAX_HISTORY: usize = 10_000;

/// When a key expires: after a relative TTL or at an absolute instant.
///
/// Either way the store keeps an **absolute instant**, fixed on the caller's
/// clock when the call is made ([`Expiry::deadline`]), at millisecond
/// precision — never when the server happens to run the statement. A key is
/// expired when `now >= deadline`. An instant that has already passed is
/// accepted and means "expired at once" (like Redis `PXAT` in the past): the
/// write lands invisible, so a wrapper that pins a caller's deadline and
/// forwards it later (degraded mode, replay) never turns into an error.
///
/// Clocks: Postgres and memory decide expiry on the caller's clock (the
/// instant is computed and compared client-side and bound into the SQL);
/// Redis expires keys on its own clock (`PXAT`/`PEXPIREAT`), so there a clock
/// skew of *d* between service and server shifts expiry by *d*. Keep service
/// and server clocks in sync (NTP), as any TTL'd system assumes.
///
/// `TimeDelta` and `DateTime<Utc>` convert into it, so `Some(ttl.into())` and
/// `Some(record.expiry_date.into())` both read naturally.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Expiry {
    /// This long after the call (whole milliseconds, `1 ms ..= 100 years`).
    After(TimeDelta),
    /// At this instant (truncated to milliseconds; must lie in the future).
    At(DateTime<Utc>),
}

impl From<TimeDelta> for Expiry {
    fn from(ttl: TimeDelta) -> Self {
        Expiry::After(ttl)
    }
}

impl From<DateTime<Utc>> for Expiry {
    fn from(at: DateTime<Utc>) -> Self {
        Expiry::At(at)
    }
}

impl Expiry {
    /// The absolute instant this expiry denotes when the call is made at
    /// `now`. `InvalidInput` for a zero, negative or sub-millisecond TTL and
    /// for anything more than 100 years ahead; an instant in the past is
    /// returned as it is (expired at once), clamped to the Unix epoch.
    pub fn deadline(self, now: DateTime<Utc>) -> Result<DateTime<Utc>> {
        let now = truncate_ms(now);
        let at = match self {
            Expiry::After(ttl) => now + TimeDelta::milliseconds(ttl_millis(ttl)?),
            Expiry::At(at) => {
                let at = truncate_ms(at).max(DateTime::UNIX_EPOCH);
                if (at - now).num_milliseconds() > MAX_TTL_MS {
                    return Err(Error::invalid("expiry must be at most 100 years ahead"));
                }
                at
            }
        };
        Ok(at)
    }
}

/// When `set` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum SetMode {
    /// Always (Redis `SET`).
    #[default]
    Always,
    /// Only if the key is absent or expired (Redis `SET NX`).
    IfAbsent,
    /// Only if the key is present and not expired (Redis `SET XX`).
    IfPresent,
}

/// The remaining lifetime of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyTtl {
    /// No such key (or it has expired).
    Missing,
    /// The key never expires.
    Persistent,
    /// The key expires after this long (millisecond precision, > 0).
    ExpiresIn(TimeDelta),
}

/// The answer of a rate-limit [`SessionCache::hit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// Whether this hit is within the limit.
    pub allowed: bool,
    /// Hits still allowed in the current window.
    pub remaining: u32,
    /// Hits counted in the current window, this one included.
    pub count: u64,
    /// When denied: how long until the window ends.
    pub retry_after: Option<TimeDelta>,
    /// How long until the current window ends.
    pub reset_after: TimeDelta,
}

impl Decision {
    /// The decision for the `count`-th hit of a window with `limit` that ends in `reset_after`.
    pub fn from_count(count: u64, limit: u32, reset_after: TimeDelta) -> Self {
        let allowed = count <= u64::from(limit);
        let remaining = u64::from(limit).saturating_sub(count) as u32;
        let reset_after = reset_after.max(TimeDelta::milliseconds(1));
        Decision { allowed, remaining, count, retry_after: (!allowed).then_some(reset_after), reset_after }
    }
}

/// Short-lived, TTL'd session state: values, history lists, counters and rate limits.
///
/// # Contract
/// - **Keys** are 1..=1024 bytes of any UTF-8; nothing a key contains reaches
///   outside the store's namespace. Values, lists and counters share one keyspace:
///   using a key as another type than it holds is `Conflict` (like Redis `WRONGTYPE`).
/// - **Expiry** ([`Expiry`]) is a relative TTL or an absolute instant; both
///   become an absolute instant fixed on the caller's clock when the call is
///   made, at millisecond precision. Zero, negative or sub-millisecond TTLs are
///   `InvalidInput`; an instant already passed writes a key that is expired at
///   once (invisible; `expire` to a past instant deletes). A key is expired when
///   `now >= expires_at`, and an expired key is invisible at once on every
///   backend, whatever the backend's own sweep does later.
/// - **Values** and history entries are held to the store's
///   [`InputPolicy`](crate::policy::InputPolicy) (nesting depth, serialized
///   size); U+0000 inside them is stored and returned byte-exact.
/// - **`set`** replaces the value *and* the TTL (`None` = never expires), like
///   Redis `SET` without `KEEPTTL`. It returns whether it wrote.
/// - **History** (`push`/`range`) keeps the newest `max_len` entries; `range`
///   returns newest first. `push` with an expiry (re)sets the list's expiry;
///   without one it leaves the expiry as it was (a list that has expired is
///   gone: a push onto it starts a new list).
/// - **Counters** (`incr`) are atomic under concurrency; `ttl_on_create` applies
///   only when this call creates the key. A counter is an ordinary value (a JSON
///   integer) that `get` reads. Overflow is `Conflict`.
/// - **Rate limits** (`hit`) use a **fixed window** that starts at the first hit
///   and lasts `window`; every hit in the window is counted (denied ones too), and
///   the counter lives under `key` as a JSON integer that expires with the window.
///   Atomic under concurrency: with `limit = n`, exactly `n` concurrent hits are
///   allowed.
///
/// # Errors
/// Bad keys, TTLs or limits are `InvalidInput` and change nothing. A backend
/// failure is `Unavailable`/`Timeout`, never `Ok(None)` or `Ok(false)`.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait SessionCache: Store {
    /// How many live keys this cache has dropped before their expiry because
    /// it was full (memory pressure). Always 0 for backends without a
    /// capacity bound (`Capabilities::bounded_capacity` off); health reports show it.
    fn evictions(&self) -> u64 {
        0
    }
    /// Deletes the expired keys the backend still keeps and returns how many
    /// it deleted. Expired keys are invisible at once on every backend, so
    /// this only reclaims space: Postgres deletes the rows (its writes also
    /// sweep a bounded batch as they go); memory runs its pending evictions;
    /// Redis and Mongo expire keys themselves and answer 0 without I/O.
    /// `palisade-tower` runs it for tower-sessions' `ExpiredDeletion`.
    async fn sweep_expired(&self) -> Result<u64> {
        Ok(0)
    }
    /// Writes `value` under `key` per `mode`; returns whether it wrote.
    async fn set(&self, key: &str, value: Value, expiry: Option<Expiry>, mode: SetMode) -> Result<bool>;
    /// The value under `key`, if present and not expired.
    async fn get(&self, key: &str) -> Result<Option<Value>>;
    /// Deletes `key` (of any type); returns whether it existed.
    async fn delete(&self, key: &str) -> Result<bool>;
    /// Sets `key` to expire per `expiry`; returns false if the key is missing.
    async fn expire(&self, key: &str, expiry: Expiry) -> Result<bool>;
    /// The remaining lifetime of `key`.
    async fn ttl(&self, key: &str) -> Result<KeyTtl>;
    /// Prepends `entry` to the history list at `key`, trims it to the newest
    /// `max_len` entries, and returns the new length.
    async fn push(&self, key: &str, entry: Value, max_len: usize, expiry: Option<Expiry>) -> Result<usize>;
    /// Up to `limit` newest entries of the history list at `key`, newest first.
    async fn range(&self, key: &str, limit: usize) -> Result<Vec<Value>>;
    /// Adds `by` to the counter at `key` (created at 0) and returns the new value.
    async fn incr(&self, key: &str, by: i64, expiry_on_create: Option<Expiry>) -> Result<i64>;
    /// Counts one hit against a fixed-window rate limit of `limit` per `window`.
    async fn hit(&self, key: &str, limit: u32, window: TimeDelta) -> Result<Decision>;
}

/// Typed (serde) convenience methods for every [`SessionCache`].
#[async_trait]
pub trait SessionCacheExt: SessionCache {
    /// `set` (mode `Always`) of a serde value.
    async fn put_json<T: Serialize + Sync>(&self, key: &str, value: &T, expiry: Option<Expiry>) -> Result<()> {
        self.set(key, serde_json::to_value(value)?, expiry, SetMode::Always).await.map(|_| ())
    }

    /// `get` decoded into `T`; a stored value of another shape is `Serialization`.
    async fn get_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        match self.get(key).await? {
            Some(v) => Ok(Some(serde_json::from_value(v)?)),
            None => Ok(None),
        }
    }

    /// `push` of a serde value.
    async fn push_json<T: Serialize + Sync>(
        &self,
        key: &str,
        entry: &T,
        max_len: usize,
        expiry: Option<Expiry>,
    ) -> Result<usize> {
        self.push(key, serde_json::to_value(entry)?, max_len, expiry).await
    }

    /// `range` decoded into `T`s.
    async fn range_json<T: DeserializeOwned>(&self, key: &str, limit: usize) -> Result<Vec<T>> {
        self.range(key, limit).await?.into_iter().map(|v| serde_json::from_value(v).map_err(Error::from)).collect()
    }
}

impl<T: SessionCache + ?Sized> SessionCacheExt for T {}
