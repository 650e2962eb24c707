//! The raw side for the Mongo backend: the official driver on a scratch
//! database that the backend itself set up (same collections, same indexes),
//! with the calls a developer would write by hand.
//!
//! What the ratio prices: the raw side writes without transactions — an
//! event is one `insert_one` with a position counted in this process, a
//! reputation record one `insert_one` plus an upsert per period — where
//! Palisade runs each append and record as a transaction that checks ids and
//! versions and numbers events gap-free across processes.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use futures::TryStreamExt;
use mongodb::bson::{doc, DateTime as BsonDate, Document};
use mongodb::options::{ClientOptions, ReturnDocument, Tls, TlsOptions};
use mongodb::{Client, Collection, Database, IndexModel};
use palisade::Config;
use palisade_core::events::NewEvent;
use palisade_core::reputation::Period;
use palisade_core::{Namespace, Result};

use super::super::runner::{op, Call, Op};
use super::super::workload::{self as w, Workload};

const DRIVER: &str = "mongodb";

fn fail(what: &'static str) -> impl Fn(mongodb::error::Error) -> palisade_core::Error {
    move |e| super::raw_error(DRIVER, what, e)
}

/// The collection the raw document measures use (indexed on `engine`).
const DOCUMENTS: &str = "raw_documents";

/// A driver client on the scratch database.
pub struct RawMongo {
    client: Client,
    db: Database,
    /// The next raw event position (only this process writes the scratch database).
    position: Arc<AtomicI64>,
}

impl RawMongo {
    /// Connects to `url` with `config`'s pool size, timeouts and TLS rule,
    /// in the already set-up database `scratch`, and adds what only the raw
    /// side needs (the plain document collection and its index).
    pub async fn connect(config: &Config, url: &str, scratch: &Namespace) -> Result<Self> {
        let mut options = ClientOptions::parse(url).await.map_err(fail("connect"))?;
        options.app_name = Some("palisade-bench-raw".to_owned());
        options.connect_timeout = Some(config.connect_timeout);
        options.server_selection_timeout = Some(config.connect_timeout);
        options.max_pool_size = Some(config.pool_size.max(1));
        if config.tls && options.tls.is_none() {
            options.tls = Some(Tls::Enabled(TlsOptions::default()));
        }
        let client = Client::with_options(options).map_err(fail("connect"))?;
        let db = client.database(scratch.as_str());
        let engine = IndexModel::builder().keys(doc! {"engine": 1}).build();
        db.collection::<Document>(DOCUMENTS).create_index(engine).await.map_err(fail("setup"))?;
        Ok(RawMongo { client, db, position: Arc::new(AtomicI64::new(1)) })
    }

    /// Shuts the client down.
    pub async fn close(&self) {
        self.client.clone().shutdown().await;
    }

    /// Workload `w` as driver calls; every workload has one.
    pub fn op(&self, workload: Workload, plan: &w::Plan) -> Option<Op> {
        let events: Collection<Document> = self.db.collection("events");
        let sessions: Collection<Document> = self.db.collection("sessions");
        let documents: Collection<Document> = self.db.collection(DOCUMENTS);
        let position = Arc::clone(&self.position);
        let batch = plan.batch;
        Some(match workload {
            Workload::AppendOne => op(move |c: Call| {
                let (events, position) = (events.clone(), Arc::clone(&position));
                async move {
                    let pos = position.fetch_add(1, Ordering::Relaxed);
                    let stored = event_document(&w::event(c.seq), pos);
                    events.insert_one(stored).await.map(|_| ()).map_err(fail("append"))
                }
            }),
            Workload::AppendSmallBatch | Workload::AppendLargeBatch => {
                let n = if workload == Workload::AppendSmallBatch { w::SMALL_BATCH } else { batch };
                op(move |c: Call| {
                    let (events, position) = (events.clone(), Arc::clone(&position));
                    async move {
                        let first = position.fetch_add(n as i64, Ordering::Relaxed);
                        let stored: Vec<Document> =
                            w::events(c.seq, n).iter().zip(first..).map(|(e, pos)| event_document(e, pos)).collect();
                        events.insert_many(stored).await.map(|_| ()).map_err(fail("append batch"))
                    }
                })
            }
            Workload::Query => op(move |c: Call| {
                let events = events.clone();
                async move {
                    let found = all(
                        events
                            .find(doc! {"session": w::session_id(c.seq)})
                            .sort(doc! {"pos": -1})
                            .limit(w::QUERY_PAGE as i64),
                        "query",
                    )
                    .await?;
                    // Decoded as a caller would (Palisade decodes every event it returns).
                    for d in found {
                        if let Ok(data) = d.get_str("data") {
                            let _: serde_json::Value = serde_json::from_str(data)?;
                        }
                    }
                    Ok(())
                }
            }),
            Workload::TopClientIps => op(move |_| {
                let events = events.clone();
                async move {
                    let pipeline = [
                        doc! {"$match": {"ip": {"$type": "string"}}},
                        doc! {"$group": {"_id": "$ip", "count": {"$sum": 1}}},
                        doc! {"$sort": {"count": -1, "_id": 1}},
                        doc! {"$limit": 10},
                    ];
                    let top = all(events.aggregate(pipeline), "analytics").await?;
                    drop(top);
                    Ok(())
                }
            }),
            Workload::SessionSet => op(move |c: Call| {
                let sessions = sessions.clone();
                async move {
                    let key = w::session_key('v', c.seq);
                    let exp = BsonDate::from_millis(now_ms() + w::SESSION_TTL.num_milliseconds());
                    let value = doc! {"_id": &key, "v": w::session_value(c.seq).to_string(), "exp": exp};
                    sessions.replace_one(doc! {"_id": key}, value).upsert(true).await.map_err(fail("session set"))?;
                    Ok(())
                }
            }),
            Workload::SessionGet => op(move |c: Call| {
                let sessions = sessions.clone();
                async move {
                    let live =
                        doc! {"_id": w::session_key('v', c.seq), "exp": {"$gt": BsonDate::from_millis(now_ms())}};
                    let found = sessions.find_one(live).await.map_err(fail("session get"))?;
                    if let Some(text) = found.as_ref().and_then(|d| d.get_str("v").ok()) {
                        let _: serde_json::Value = serde_json::from_str(text)?;
                    }
                    Ok(())
                }
            }),
            Workload::SessionIncr => op(move |c: Call| {
                counter(sessions.clone(), w::session_key('c', c.seq), w::SESSION_TTL.num_milliseconds())
            }),
            Workload::SessionHit => op(move |c: Call| {
                counter(sessions.clone(), w::session_key('r', c.seq), w::HIT_WINDOW.num_milliseconds())
            }),
            Workload::ReputationRecord => {
                let (logged, scores) =
                    (self.db.collection::<Document>("reputation_events"), self.db.collection("reputation_scores"));
                op(move |c: Call| record(logged.clone(), scores.clone(), c.seq))
            }
            Workload::Leaderboard => {
                let scores: Collection<Document> = self.db.collection("reputation_scores");
                op(move |_| {
                    let scores = scores.clone();
                    async move {
                        let top = all(
                            scores.find(doc! {"p": "all", "k": "user"}).sort(doc! {"score": -1, "s": 1}).limit(10),
                            "leaderboard",
                        )
                        .await?;
                        drop(top);
                        Ok(())
                    }
                })
            }
            Workload::DocumentInsert => op(move |c: Call| {
                let documents = documents.clone();
                async move {
                    let seq = c.seq;
                    let verdict = if seq.is_multiple_of(2) { "malicious" } else { "clean" };
                    let body = doc! {
                        "_id": format!("{:032x}", rand::random::<u128>()),
                        "engine": w::engine(seq), "verdict": verdict, "confidence": 0.9, "n": seq as i64,
                    };
                    documents.insert_one(body).await.map(|_| ()).map_err(fail("document insert"))
                }
            }),
            Workload::DocumentFind => op(move |c: Call| {
                let documents = documents.clone();
                async move {
                    let found = all(
                        documents.find(doc! {"engine": w::engine(c.seq)}).sort(doc! {"_id": 1}).limit(10),
                        "document find",
                    )
                    .await?;
                    for d in found {
                        let _: serde_json::Value = serde_json::to_value(&d)?;
                    }
                    Ok(())
                }
            }),
        })
    }
}

/// Runs a `find` or `aggregate` and collects every document it returns.
async fn all<C>(cursor: C, what: &'static str) -> Result<Vec<Document>>
where
    C: std::future::IntoFuture<Output = mongodb::error::Result<mongodb::Cursor<Document>>>,
{
    cursor.await.map_err(fail(what))?.try_collect().await.map_err(fail(what))
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// An event as the backend stores it (the same fields, so the same indexes
/// are maintained), at position `pos`.
fn event_document(e: &NewEvent, pos: i64) -> Document {
    let mut d = doc! {
        "_id": e.id.to_string(),
        "pos": pos,
        "source": &e.source,
        "kind": &e.kind,
        "tags": &e.tags,
        "tag_set": &e.tags,
        "data": e.data.to_string(),
        "at": BsonDate::from_millis(e.occurred_at.timestamp_millis()),
        "rec": BsonDate::now(),
    };
    if let Some(s) = &e.session_id {
        d.insert("session", s);
    }
    if let Some(ip) = e.client_ip {
        d.insert("ip", ip.to_string());
        if let std::net::IpAddr::V4(a) = ip {
            d.insert("ip_key", format!("4{:08x}", u32::from(a)));
        }
    }
    d
}

/// A counter whose expiry is fixed when it is created (or restarted after
/// it expired): both `incr` and the fixed-window `hit`, one upsert.
async fn counter(sessions: Collection<Document>, key: String, ttl_ms: i64) -> Result<()> {
    let now = BsonDate::from_millis(now_ms());
    let fresh = BsonDate::from_millis(now_ms() + ttl_ms);
    let expired = doc! {"$lte": [{"$ifNull": ["$exp", now]}, now]};
    let update = vec![doc! {"$set": {
        "n": {"$cond": [expired.clone(), 1_i64, {"$add": ["$n", 1_i64]}]},
        "exp": {"$cond": [expired, fresh, "$exp"]},
    }}];
    let counted = sessions
        .find_one_and_update(doc! {"_id": key}, update)
        .upsert(true)
        .return_document(ReturnDocument::After)
        .await
        .map_err(fail("counter"))?;
    drop(counted);
    Ok(())
}

/// Logs the event and adds its delta to the subject's score in each period.
async fn record(logged: Collection<Document>, scores: Collection<Document>, seq: usize) -> Result<()> {
    let e = w::reputation_event(seq);
    let kind = e.subject.kind.as_str();
    let entry = doc! {"_id": e.id.to_string(), "k": kind, "s": &e.subject.id, "d": e.delta, "r": &e.reason, "at": BsonDate::from_millis(e.at.timestamp_millis())};
    logged.insert_one(entry).await.map_err(fail("record"))?;
    for period in Period::all_containing(e.at) {
        let p = period.key();
        let id = format!("{p}|{kind}|{}", e.subject.id);
        scores
            .update_one(
                doc! {"_id": id},
                doc! {"$inc": {"score": e.delta}, "$setOnInsert": {"p": &p, "k": kind, "s": &e.subject.id}},
            )
            .upsert(true)
            .await
            .map_err(fail("record"))?;
    }
    Ok(())
}
