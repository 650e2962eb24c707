//! `SessionCache` on one collection, `sessions`, one document per key:
//! `{_id: key, v: <JSON text>}` for a value, `{_id, n: <Int64>}` for a
//! counter, `{_id, l: [<JSON text>, …]}` for a history list (newest first),
//! each with `exp` (a date; absent or null for no expiry).
//!
//! - **Expiry** is exact: every read and conditional write filters on
//!   `exp` against the caller's "now" (millisecond precision, fixed when the
//!   call is made, like the expiry instants it computes); a TTL index on
//!   `exp` only reclaims space later.
//! - **Values** are stored as JSON text, so any JSON (U+0000, huge numbers,
//!   keys with `$` or `.`) round-trips byte-exact; decoding has no
//!   recursion limit.
//! - **Atomic operations**: `incr`, `hit` and `push` are each one
//!   `findOneAndUpdate` with an aggregation-pipeline update, so concurrent
//!   callers never lose an update. The filter only matches a key of the
//!   right type or an expired one. A key that does not exist yet is first
//!   inserted as an already-expired placeholder (no upsert: creation races
//!   are settled by the unique `_id` alone, on any server) and the update
//!   runs again; no match even then means a live key of another type, the
//!   `Conflict` "key holds another type". Integer parsing of a value set
//!   with `set` and overflow checks happen in the pipeline (`$toLong`), so a
//!   non-integer or an overflow fails with a conversion error, also
//!   `Conflict`, changing nothing. `set` with `IfAbsent` is an insert, or a
//!   replace of an expired key: also race-free.

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use mongodb::bson::{doc, Bson, Document};
use mongodb::options::ReturnDocument;
use mongodb::Collection;
use palisade_core::backend::check::{check_history_len, check_key};
use palisade_core::backend::clock::{now_ms, ttl_millis};
use palisade_core::backend::stored::decode_stored_json;
use palisade_core::sessions::{Decision, KeyTtl, SetMode};
use palisade_core::{Capabilities, Error, ErrorKind, Expiry, Result, SessionCache, Store};
use serde_json::Value;

use crate::error::{code, is_duplicate_key, map, server_code, tagged};
use crate::{bson_date as date, capabilities, MongoBackend};

/// The collection of a namespace's sessions.
pub(crate) const COLLECTION: &str = "sessions";

/// Updates tried on a key before it counts as holding another type.
const PLACEHOLDER_ROUNDS: usize = 4;

/// Mongo [`SessionCache`].
#[derive(Clone)]
pub struct MongoSessionCache {
    backend: MongoBackend,
    coll: Collection<Document>,
}

/// `exp` as a BSON value: the date, or null for no expiry.
fn exp(at: Option<DateTime<Utc>>) -> Bson {
    at.map_or(Bson::Null, |at| Bson::DateTime(date(at)))
}

/// A document is live at `now` unless its `exp` has passed (query form).
fn live(now: DateTime<Utc>) -> Document {
    doc! {"$or": [{"exp": null}, {"exp": {"$gt": date(now)}}]}
}

/// The same test on a fetched document. Reads fetch by `_id` alone and
/// apply it here, so the server answers with its exact-id lookup (an `$or`
/// beside `_id` costs a full query plan on every call).
fn is_live(d: &Document, now: DateTime<Utc>) -> bool {
    // As the query form: no or a null `exp` lives forever; any other
    // non-date value matches neither branch.
    match d.get("exp") {
        None | Some(Bson::Null) => true,
        Some(Bson::DateTime(at)) => at.timestamp_millis() > now.timestamp_millis(),
        Some(_) => false,
    }
}

/// A live document's fetch by `_id` (see [`is_live`]).
async fn find_live(
    coll: &Collection<Document>,
    key: &str,
    now: DateTime<Utc>,
    op: &'static str,
) -> Result<Option<Document>> {
    let found = coll.find_one(doc! {"_id": key}).await.map_err(|e| map(op, e))?;
    Ok(found.filter(|d| is_live(d, now)))
}

/// The same test inside an aggregation expression.
fn live_expr(now: DateTime<Utc>) -> Document {
    doc! {"$or": [{"$eq": [{"$ifNull": ["$exp", null]}, null]}, {"$gt": ["$exp", date(now)]}]}
}

/// An aggregation expression: whether the document holds a live value or counter.
fn live_scalar(now: DateTime<Utc>) -> Document {
    doc! {"$and": [
        {"$or": [{"$ne": [{"$type": "$n"}, "missing"]}, {"$ne": [{"$type": "$v"}, "missing"]}]},
        live_expr(now),
    ]}
}

/// The counter held by a live value or counter, as a decimal (a value that
/// is no integer fails the conversion).
fn current_count() -> Document {
    doc! {"$toDecimal": {"$ifNull": ["$n", {"$toLong": "$v"}]}}
}

fn wrong_type(want: &'static str) -> Error {
    Error::new(ErrorKind::Conflict, format!("key holds another type than {want}"))
}

/// Whether `e` is a failed type conversion in an update pipeline (not an integer, overflow).
fn is_conversion_failure(e: &mongodb::error::Error) -> bool {
    server_code(e) == Some(code::CONVERSION_FAILURE)
}

fn decode_text(text: &str) -> Result<Value> {
    decode_stored_json(text.as_bytes())
}

impl MongoSessionCache {
    /// The session cache of `backend`'s namespace.
    pub fn new(backend: MongoBackend) -> Self {
        let coll = backend.database().collection(COLLECTION);
        MongoSessionCache { backend, coll }
    }

    /// One atomic update of `key` (an aggregation pipeline), whose filter
    /// matches only a key of the right type or an expired one. A missing key
    /// is first created as an already-expired placeholder (a plain insert;
    /// a concurrent creator's insert makes it a no-op), so creation never
    /// races inside an upsert; the update then treats it as new. No match
    /// even then: a live key of another type. Returns the document after
    /// the update.
    async fn update(
        &self,
        op: &'static str,
        key: &str,
        right_type: Document,
        pipeline: Vec<Document>,
        want: &'static str,
    ) -> Result<Document> {
        let filter = doc! {"_id": key, "$or": [right_type]};
        // A placeholder can vanish before the update finds it (the TTL
        // monitor, a concurrent delete): insert it again, a few rounds; a
        // live key of another type fails every round.
        for attempt in 0..PLACEHOLDER_ROUNDS {
            let outcome = self
                .coll
                .find_one_and_update(filter.clone(), pipeline.clone())
                .return_document(ReturnDocument::After)
                .await;
            match outcome {
                Ok(Some(doc)) => return Ok(doc),
                Ok(None) if attempt + 1 < PLACEHOLDER_ROUNDS => {
                    let placeholder = doc! {"_id": key, "exp": mongodb::bson::DateTime::from_millis(0)};
                    match self.coll.insert_one(placeholder).await {
                        Ok(_) => {}
                        Err(e) if is_duplicate_key(&e) => {}
                        Err(e) => return Err(map(op, e)),
                    }
                }
                Ok(None) => {}
                // The server's message quotes the stored value: not kept.
                Err(e) if is_conversion_failure(&e) => {
                    return Err(Error::new(ErrorKind::Conflict, "key holds no integer counter, or it would overflow"))
                        .map_err(tagged(op));
                }
                Err(e) => return Err(map(op, e)),
            }
        }
        Err(wrong_type(want)).map_err(tagged(op))
    }
}

#[async_trait]
impl Store for MongoSessionCache {
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
impl SessionCache for MongoSessionCache {
    async fn set(&self, key: &str, value: Value, expiry: Option<Expiry>, mode: SetMode) -> Result<bool> {
        const OP: &str = "set";
        check_key(key).map_err(tagged(OP))?;
        self.backend.policy().check_session_value(&value).map_err(tagged(OP))?;
        let now = now_ms();
        let expires_at = expiry.map(|e| e.deadline(now)).transpose().map_err(tagged(OP))?;
        let replacement = doc! {"_id": key, "v": value.to_string(), "exp": exp(expires_at)};
        match mode {
            SetMode::Always => {
                self.coll.replace_one(doc! {"_id": key}, replacement).upsert(true).await.map_err(|e| map(OP, e))?;
                Ok(true)
            }
            SetMode::IfAbsent => {
                // Create; over an existing key only if it is expired. Both
                // steps are single-document and race-free.
                match self.coll.insert_one(replacement.clone()).await {
                    Ok(_) => return Ok(true),
                    Err(e) if is_duplicate_key(&e) => {}
                    Err(e) => return Err(map(OP, e)),
                }
                let gone = doc! {"_id": key, "exp": {"$lte": date(now)}};
                let r = self.coll.replace_one(gone, replacement).await.map_err(|e| map(OP, e))?;
                Ok(r.matched_count > 0)
            }
            SetMode::IfPresent => {
                let mut filter = live(now);
                filter.insert("_id", key);
                let r = self.coll.replace_one(filter, replacement).await.map_err(|e| map(OP, e))?;
                Ok(r.matched_count > 0)
            }
        }
    }

    async fn get(&self, key: &str) -> Result<Option<Value>> {
        const OP: &str = "get";
        check_key(key).map_err(tagged(OP))?;
        let Some(doc) = find_live(&self.coll, key, now_ms(), OP).await? else { return Ok(None) };
        match (doc.get("v"), doc.get("n")) {
            (Some(Bson::String(text)), _) => decode_text(text).map(Some).map_err(tagged(OP)),
            (_, Some(Bson::Int64(n))) => Ok(Some(Value::from(*n))),
            (_, Some(Bson::Int32(n))) => Ok(Some(Value::from(*n))),
            _ => Err(wrong_type("a value")).map_err(tagged(OP)),
        }
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        const OP: &str = "delete";
        check_key(key).map_err(tagged(OP))?;
        let now = now_ms();
        let gone = self
            .coll
            .find_one_and_delete(doc! {"_id": key})
            .projection(doc! {"exp": 1})
            .await
            .map_err(|e| map(OP, e))?;
        Ok(gone.is_some_and(|d| match d.get("exp") {
            Some(Bson::DateTime(at)) => at.timestamp_millis() > now.timestamp_millis(),
            _ => true,
        }))
    }

    async fn expire(&self, key: &str, expiry: Expiry) -> Result<bool> {
        const OP: &str = "expire";
        check_key(key).map_err(tagged(OP))?;
        let now = now_ms();
        let at = expiry.deadline(now).map_err(tagged(OP))?;
        let mut filter = live(now);
        filter.insert("_id", key);
        let r = self.coll.update_one(filter, doc! {"$set": {"exp": date(at)}}).await.map_err(|e| map(OP, e))?;
        Ok(r.matched_count > 0)
    }

    async fn ttl(&self, key: &str) -> Result<KeyTtl> {
        const OP: &str = "ttl";
        check_key(key).map_err(tagged(OP))?;
        let now = now_ms();
        let Some(doc) = find_live(&self.coll, key, now, OP).await? else { return Ok(KeyTtl::Missing) };
        Ok(match doc.get("exp") {
            Some(Bson::DateTime(at)) => {
                KeyTtl::ExpiresIn(TimeDelta::milliseconds((at.timestamp_millis() - now.timestamp_millis()).max(1)))
            }
            _ => KeyTtl::Persistent,
        })
    }

    async fn push(&self, key: &str, entry: Value, max_len: usize, expiry: Option<Expiry>) -> Result<usize> {
        const OP: &str = "push";
        check_key(key).map_err(tagged(OP))?;
        check_history_len(max_len).map_err(tagged(OP))?;
        self.backend.policy().check_session_value(&entry).map_err(tagged(OP))?;
        let now = now_ms();
        let expires_at = expiry.map(|e| e.deadline(now)).transpose().map_err(tagged(OP))?;
        let live_list = doc! {"$and": [{"$isArray": "$l"}, live_expr(now)]};
        let max = i64::try_from(max_len).unwrap_or(i64::MAX);
        let kept_exp = match expires_at {
            Some(at) => Bson::DateTime(date(at)),
            None => Bson::Document(doc! {"$ifNull": ["$exp", null]}),
        };
        let pipeline = vec![
            doc! {"$set": {
                "l": {"$cond": [live_list.clone(), {"$slice": [{"$concatArrays": [[entry.to_string()], "$l"]}, max]}, [entry.to_string()]]},
                "exp": {"$cond": [live_list, kept_exp, exp(expires_at)]},
            }},
            doc! {"$unset": ["v", "n"]},
        ];
        let right_type = doc! {"$or": [{"l": {"$exists": true}}, {"exp": {"$lte": date(now)}}]};
        let doc = self.update(OP, key, right_type, pipeline, "a history list").await?;
        Ok(doc.get_array("l").map(Vec::len).unwrap_or(0))
    }

    async fn range(&self, key: &str, limit: usize) -> Result<Vec<Value>> {
        const OP: &str = "range";
        check_key(key).map_err(tagged(OP))?;
        check_history_len(limit).map_err(tagged(OP))?;
        let Some(doc) = find_live(&self.coll, key, now_ms(), OP).await? else { return Ok(Vec::new()) };
        let Some(Bson::Array(list)) = doc.get("l") else {
            return Err(wrong_type("a history list")).map_err(tagged(OP));
        };
        list.iter()
            .take(limit)
            .map(|b| match b {
                Bson::String(text) => decode_text(text),
                _ => Err(Error::new(ErrorKind::Serialization, "a history entry is not JSON text")),
            })
            .collect::<Result<_>>()
            .map_err(tagged(OP))
    }

    async fn incr(&self, key: &str, by: i64, expiry_on_create: Option<Expiry>) -> Result<i64> {
        const OP: &str = "incr";
        check_key(key).map_err(tagged(OP))?;
        let now = now_ms();
        let expires_at = expiry_on_create.map(|e| e.deadline(now)).transpose().map_err(tagged(OP))?;
        let pipeline = vec![
            doc! {"$set": {
                "n": {"$cond": [live_scalar(now), {"$toLong": {"$add": [current_count(), {"$toDecimal": by}]}}, by]},
                "exp": {"$cond": [live_scalar(now), {"$ifNull": ["$exp", null]}, exp(expires_at)]},
            }},
            doc! {"$unset": ["v", "l"]},
        ];
        let right_type = doc! {"$or": [{"l": {"$exists": false}}, {"exp": {"$lte": date(now)}}]};
        let doc = self.update(OP, key, right_type, pipeline, "an integer counter").await?;
        doc.get_i64("n").map_err(|_| crate::invalid_state("incr stored no counter").with_op(OP))
    }

    async fn hit(&self, key: &str, limit: u32, window: TimeDelta) -> Result<Decision> {
        const OP: &str = "hit";
        check_key(key).map_err(tagged(OP))?;
        if limit == 0 {
            return Err(Error::invalid("rate limit must be at least 1")).map_err(tagged(OP));
        }
        let window_ms = ttl_millis(window).map_err(tagged(OP))?;
        let now = now_ms();
        let window_end = now + TimeDelta::milliseconds(window_ms);
        let pipeline = vec![
            doc! {"$set": {
                "n": {"$cond": [live_scalar(now), {"$toLong": {"$add": [current_count(), {"$toDecimal": 1_i64}]}}, 1_i64]},
                "exp": {"$cond": [live_scalar(now), {"$ifNull": ["$exp", date(window_end)]}, date(window_end)]},
            }},
            doc! {"$unset": ["v", "l"]},
        ];
        let right_type = doc! {"$or": [{"l": {"$exists": false}}, {"exp": {"$lte": date(now)}}]};
        let doc = self.update(OP, key, right_type, pipeline, "an integer counter").await?;
        let hits = doc.get_i64("n").map_err(|_| crate::invalid_state("hit stored no counter").with_op(OP))?;
        let end = match doc.get("exp") {
            Some(Bson::DateTime(at)) => {
                DateTime::<Utc>::from_timestamp_millis(at.timestamp_millis()).unwrap_or(window_end)
            }
            _ => window_end,
        };
        Ok(Decision::from_count(u64::try_from(hits).unwrap_or(0), limit, end - now))
    }
}
