//! Durable consumers on Mongo: collection `event_consumers`, one document
//! per consumer `{_id: name, filter: <canonical JSON text>, major, minor
//! (the checkpoint, null before the first ack), holder: <token text> | null,
//! lease_until: <date> | null}`, reached by `_id` only (no index to create).
//!
//! Claims and acks are single-document conditional updates, so they are
//! atomic on any deployment (no transaction). **Lease expiry is decided on
//! the caller's clock** (the driver has no portable server-clock update the
//! test server runs): keep leases much longer than the clock skew between
//! the hosts running one consumer.

use mongodb::bson::{doc, Bson, Document};
use mongodb::options::ReturnDocument;
use mongodb::Collection;
use palisade_core::backend::clock::now_ms;
use palisade_core::consumers::{check_consumer_name, errors, Claim, ConsumerInfo};
use palisade_core::events::{Cursor, EventFilter, Position};
use palisade_core::{Error, ErrorKind, Result};
use uuid::Uuid;

use crate::bson_date as date;
use crate::error::{is_duplicate_key, map, tagged};

/// The consumers' collection.
pub(crate) const CONSUMERS: &str = "event_consumers";

fn columns(p: Position) -> Result<(i64, i64)> {
    match (i64::try_from(p.major), i64::try_from(p.minor)) {
        (Ok(a), Ok(b)) => Ok((a, b)),
        _ => Err(Error::invalid("position is beyond any Mongo event position")),
    }
}

fn checkpoint(d: &Document) -> Option<Cursor> {
    match (d.get("major"), d.get("minor")) {
        (Some(Bson::Int64(a)), Some(Bson::Int64(b))) => {
            Some(Cursor::After(Position::new(u64::try_from(*a).ok()?, u64::try_from(*b).ok()?)))
        }
        (None | Some(Bson::Null), None | Some(Bson::Null)) => Some(Cursor::Start),
        _ => None,
    }
}

/// Takes or renews the lease; see `EventStore::claim_consumer`.
pub(crate) async fn claim(coll: &Collection<Document>, claim: &Claim) -> Result<Cursor> {
    const OP: &str = "claim_consumer";
    claim.validate().map_err(tagged(OP))?;
    let key = claim.filter_key().map_err(tagged(OP))?;
    let token = claim.token.to_string();
    for _ in 0..3 {
        let now = now_ms();
        let until = now + chrono::TimeDelta::milliseconds(claim.lease_ms());
        let free = if claim.renew {
            doc! {"_id": &claim.name, "filter": &key, "holder": &token, "lease_until": {"$gt": date(now)}}
        } else {
            doc! {
                "_id": &claim.name,
                "filter": &key,
                "$or": [{"holder": Bson::Null}, {"holder": &token}, {"lease_until": {"$lte": date(now)}}],
            }
        };
        let taken = coll
            .find_one_and_update(free, doc! {"$set": {"holder": &token, "lease_until": date(until)}})
            .return_document(ReturnDocument::After)
            .await
            .map_err(|e| map(OP, e))?;
        if let Some(d) = taken {
            return checkpoint(&d).ok_or_else(|| errors::corrupt(&claim.name)).map_err(tagged(OP));
        }
        if claim.renew {
            return Err(errors::lease_lost(&claim.name)).map_err(tagged(OP));
        }
        match coll.find_one(doc! {"_id": &claim.name}).await.map_err(|e| map(OP, e))? {
            Some(d) if d.get_str("filter").ok() != Some(key.as_str()) => {
                return Err(errors::other_filter(&claim.name)).map_err(tagged(OP));
            }
            Some(_) => return Err(errors::held(&claim.name)).map_err(tagged(OP)),
            None => {
                let fresh = doc! {
                    "_id": &claim.name, "filter": &key, "major": Bson::Null, "minor": Bson::Null,
                    "holder": Bson::Null, "lease_until": Bson::Null,
                };
                match coll.insert_one(fresh).await {
                    Ok(_) => {}
                    Err(e) if is_duplicate_key(&e) => {}
                    Err(e) => return Err(map(OP, e)),
                }
            }
        }
    }
    Err(Error::new(ErrorKind::Unavailable, "the consumer kept changing under the claim")).map_err(tagged(OP))
}

/// Moves the checkpoint forward under the token; see `EventStore::ack_consumer`.
pub(crate) async fn ack(coll: &Collection<Document>, name: &str, token: Uuid, position: Position) -> Result<()> {
    const OP: &str = "ack_consumer";
    check_consumer_name(name).map_err(tagged(OP))?;
    let (major, minor) = columns(position).map_err(tagged(OP))?;
    let token = token.to_string();
    let now = date(now_ms());
    let behind = doc! {
        "_id": name,
        "holder": &token,
        "lease_until": {"$gt": now},
        "$or": [{"major": Bson::Null}, {"major": {"$lt": major}}, {"major": major, "minor": {"$lt": minor}}],
    };
    let moved =
        coll.update_one(behind, doc! {"$set": {"major": major, "minor": minor}}).await.map_err(|e| map(OP, e))?;
    if moved.matched_count > 0 {
        return Ok(());
    }
    // Not moved: an older ack under a held lease (a no-op), or no lease.
    match coll
        .find_one(doc! {"_id": name, "holder": &token, "lease_until": {"$gt": now}})
        .await
        .map_err(|e| map(OP, e))?
    {
        Some(_) => Ok(()),
        None => Err(errors::lease_lost(name)).map_err(tagged(OP)),
    }
}

/// Gives the lease up; see `EventStore::release_consumer`.
pub(crate) async fn release(coll: &Collection<Document>, name: &str, token: Uuid) -> Result<()> {
    const OP: &str = "release_consumer";
    check_consumer_name(name).map_err(tagged(OP))?;
    coll.update_one(
        doc! {"_id": name, "holder": token.to_string()},
        doc! {"$set": {"holder": Bson::Null, "lease_until": Bson::Null}},
    )
    .await
    .map(|_| ())
    .map_err(|e| map(OP, e))
}

/// Every consumer, by name; an undecodable one is skipped with a warning.
pub(crate) async fn list(coll: &Collection<Document>) -> Result<Vec<ConsumerInfo>> {
    use futures::TryStreamExt;
    const OP: &str = "consumers";
    let docs: Vec<Document> =
        coll.find(doc! {}).await.map_err(|e| map(OP, e))?.try_collect().await.map_err(|e| map(OP, e))?;
    let now = now_ms();
    let mut all: Vec<ConsumerInfo> = docs
        .iter()
        .filter_map(|d| {
            let decoded = (|| {
                let name = d.get_str("_id").ok()?.to_owned();
                let filter: EventFilter = serde_json::from_str(d.get_str("filter").ok()?).ok()?;
                let held = matches!(d.get("holder"), Some(Bson::String(_)));
                let lease_expires_at = match d.get("lease_until") {
                    Some(Bson::DateTime(t)) if held => {
                        chrono::DateTime::from_timestamp_millis(t.timestamp_millis()).filter(|t| *t > now)
                    }
                    _ => None,
                };
                Some(ConsumerInfo { name, filter, checkpoint: checkpoint(d)?, lease_expires_at })
            })();
            if decoded.is_none() {
                tracing::warn!("palisade: a stored consumer does not decode; not listed");
            }
            decoded
        })
        .collect();
    all.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(all)
}

/// Deletes a consumer; see `EventStore::delete_consumer`.
pub(crate) async fn delete(coll: &Collection<Document>, name: &str) -> Result<bool> {
    const OP: &str = "delete_consumer";
    check_consumer_name(name).map_err(tagged(OP))?;
    let r = coll.delete_one(doc! {"_id": name}).await.map_err(|e| map(OP, e))?;
    Ok(r.deleted_count > 0)
}
