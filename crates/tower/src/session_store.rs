//! [`PalisadeSessionStore`]: tower-sessions' [`SessionStore`] over any [`SessionCache`].

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use palisade_core::sessions::{Expiry, SetMode};
use palisade_core::time::MAX_TTL_MS;
use palisade_core::{Error, ErrorKind, SessionCache};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use tower_sessions_core::session::{Id, Record};
use tower_sessions_core::session_store::{self, ExpiredDeletion, SessionStore};

/// Key prefix of [`PalisadeSessionStore::new`].
pub const DEFAULT_PREFIX: &str = "tower_sessions:";
/// How many fresh ids `create` draws before it gives up on collisions. With
/// 128-bit random ids one collision is already beyond belief; a second one
/// means the id source is broken, and an error says so.
pub const CREATE_ATTEMPTS: usize = 8;

/// A tower-sessions store over a Palisade [`SessionCache`] — memory, Postgres,
/// Redis or Mongo, with degraded mode and tracing if the cache has them.
///
/// # Contract
/// - A record lives under `prefix + id` (the id's 22-character URL-safe
///   form) as `{"data": {...}, "exp": [unix_seconds, nanos]}`, and the key
///   expires at the record's `expiry_date` (an absolute instant, truncated to
///   milliseconds, so the key never outlives the record) — or 100 years
///   ahead, the longest any backend keeps a key, if that comes first.
/// - **`save`** replaces the record and its expiry. A record whose expiry has
///   already passed is deleted instead of stored.
/// - **`create`** writes only if the key is absent (`SetMode::IfAbsent`); on a
///   collision it draws a new id and tries again, [`CREATE_ATTEMPTS`] times
///   at most.
/// - **`load`** answers `None` for a missing key and for a record whose
///   expiry has passed on this process's clock, even where the server's
///   clock (Redis) has not expired the key yet.
/// - **Errors**: a record the cache refuses as input (too large or too deep
///   for its [`InputPolicy`](palisade_core::InputPolicy)) is `Encode`; a
///   stored value that is not a record is `Decode`; a backend failure is
///   `Backend` (tower-sessions then answers 500, never a silent new session).
///   Messages name the kind and operation, never session data.
/// - [`ExpiredDeletion`] runs [`SessionCache::sweep_expired`]: Postgres
///   deletes expired rows; Redis and Mongo expire keys themselves (no I/O).
#[derive(Clone)]
pub struct PalisadeSessionStore {
    cache: Arc<dyn SessionCache>,
    prefix: Arc<str>,
}

impl fmt::Debug for PalisadeSessionStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PalisadeSessionStore")
            .field("backend", &self.cache.backend())
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// The stored form of a record (the id is the key).
#[derive(Serialize, Deserialize)]
struct Stored {
    data: HashMap<String, Value>,
    /// Unix seconds and nanoseconds: exact, and within JSON's safe integers.
    exp: (i64, u32),
}

impl PalisadeSessionStore {
    /// A store over `cache`, keys under [`DEFAULT_PREFIX`].
    pub fn new(cache: Arc<dyn SessionCache>) -> Self {
        PalisadeSessionStore { cache, prefix: DEFAULT_PREFIX.into() }
    }

    /// Keys under `prefix` instead (e.g. one per application sharing a cache).
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into().into();
        self
    }

    /// The cache this store writes to.
    pub fn cache(&self) -> &Arc<dyn SessionCache> {
        &self.cache
    }

    fn key(&self, id: &Id) -> String {
        format!("{}{id}", self.prefix)
    }
}

/// When the record's key expires: at `expiry_date`, or a minute short of
/// 100 years ahead (the longest expiry any backend stores) if that is
/// sooner — `Expiry::OnInactivity(Duration::MAX)` saturates to year 9999.
/// The record keeps its exact expiry either way.
fn deadline(record: &Record) -> session_store::Result<DateTime<Utc>> {
    let at = record.expiry_date;
    let at = DateTime::from_timestamp(at.unix_timestamp(), at.nanosecond())
        .ok_or_else(|| session_store::Error::Encode("session expiry is out of range".into()))?;
    let longest = Utc::now() + TimeDelta::milliseconds(MAX_TTL_MS - 60_000);
    Ok(at.min(longest))
}

fn is_active(expiry_date: OffsetDateTime) -> bool {
    expiry_date > OffsetDateTime::now_utc()
}

fn encode(record: &Record) -> session_store::Result<Value> {
    let at = record.expiry_date;
    let stored = Stored { data: record.data.clone(), exp: (at.unix_timestamp(), at.nanosecond()) };
    serde_json::to_value(stored).map_err(|e| session_store::Error::Encode(e.to_string()))
}

fn decode(id: Id, value: Value) -> session_store::Result<Record> {
    let stored: Stored =
        serde_json::from_value(value).map_err(|e| session_store::Error::Decode(format!("stored session: {e}")))?;
    let (secs, nanos) = stored.exp;
    let expiry_date = OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.replace_nanosecond(nanos).ok())
        .ok_or_else(|| session_store::Error::Decode("stored session: expiry out of range".into()))?;
    Ok(Record { id, data: stored.data, expiry_date })
}

/// tower-sessions' error for a Palisade error: input the cache refuses is
/// `Encode`, an undecodable stored value `Decode`, everything else `Backend`.
fn map_err(e: Error) -> session_store::Error {
    match e.kind() {
        ErrorKind::InvalidInput | ErrorKind::SchemaViolation => session_store::Error::Encode(e.to_string()),
        ErrorKind::Serialization => session_store::Error::Decode(e.to_string()),
        _ => session_store::Error::Backend(e.to_string()),
    }
}

#[async_trait]
impl SessionStore for PalisadeSessionStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        if !is_active(record.expiry_date) {
            // Nothing to store; the id is not taken either way.
            return Ok(());
        }
        let expiry = deadline(record)?;
        let value = encode(record)?;
        for _ in 0..CREATE_ATTEMPTS {
            let wrote = self
                .cache
                .set(&self.key(&record.id), value.clone(), Some(Expiry::At(expiry)), SetMode::IfAbsent)
                .await
                .map_err(map_err)?;
            if wrote {
                return Ok(());
            }
            tracing::warn!("session id collision; drawing a new id");
            record.id = Id::default();
        }
        Err(session_store::Error::Backend(format!("no free session id after {CREATE_ATTEMPTS} attempts")))
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        if !is_active(record.expiry_date) {
            self.cache.delete(&self.key(&record.id)).await.map_err(map_err)?;
            return Ok(());
        }
        let expiry = deadline(record)?;
        let value = encode(record)?;
        self.cache
            .set(&self.key(&record.id), value, Some(Expiry::At(expiry)), SetMode::Always)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn load(&self, session_id: &Id) -> session_store::Result<Option<Record>> {
        let Some(value) = self.cache.get(&self.key(session_id)).await.map_err(map_err)? else {
            return Ok(None);
        };
        let record = decode(*session_id, value)?;
        Ok(is_active(record.expiry_date).then_some(record))
    }

    async fn delete(&self, session_id: &Id) -> session_store::Result<()> {
        self.cache.delete(&self.key(session_id)).await.map_err(map_err)?;
        Ok(())
    }
}

#[async_trait]
impl ExpiredDeletion for PalisadeSessionStore {
    async fn delete_expired(&self) -> session_store::Result<()> {
        let swept = self.cache.sweep_expired().await.map_err(map_err)?;
        tracing::debug!(swept, "deleted expired sessions");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_through_the_stored_form_to_the_nanosecond() {
        let mut record = Record {
            id: Id(i128::MIN + 7),
            data: HashMap::from([("k".to_owned(), serde_json::json!({"nested": [1, "\u{0}"]}))]),
            expiry_date: OffsetDateTime::from_unix_timestamp_nanos(1_900_000_000_123_456_789)
                .unwrap_or(OffsetDateTime::UNIX_EPOCH),
        };
        let back = decode(record.id, encode(&record).unwrap_or_default()).ok();
        assert_eq!(back.as_ref(), Some(&record));
        record.id = Id(3);
        assert_eq!(decode(Id(3), encode(&record).unwrap_or_default()).ok().map(|r| r.id), Some(Id(3)));
    }

    #[test]
    fn a_stored_value_that_is_not_a_record_is_a_decode_error() {
        for hostile in [
            serde_json::json!("x"),
            serde_json::json!({"data": {}, "exp": [0, 2_000_000_000]}),
            serde_json::json!({"data": 1, "exp": [0, 0]}),
        ] {
            assert!(matches!(decode(Id(1), hostile), Err(session_store::Error::Decode(_))));
        }
    }

    #[test]
    fn refused_input_is_encode_and_outages_are_backend() {
        assert!(matches!(map_err(Error::invalid("too large")), session_store::Error::Encode(_)));
        assert!(matches!(map_err(Error::new(ErrorKind::Unavailable, "down")), session_store::Error::Backend(_)));
        assert!(matches!(map_err(Error::new(ErrorKind::Serialization, "bad")), session_store::Error::Decode(_)));
    }
}
