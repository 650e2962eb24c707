//! `ReputationRepo` on two collections: `reputation_events` (the log, one
//! document per event, `_id` = the event id, so recording is idempotent)
//! and `reputation_scores` (one document per period, subject kind and
//! subject, `_id` = `{p, k, s}`), kept in step by one multi-document
//! transaction per `record` (retried on the driver's transient labels).
//!
//! - **Ranks** are competition ranks ("1224"): the count of strictly
//!   greater scores plus one, from the index `{p, k, score: -1, s: 1}`;
//!   ties are ordered by subject id in code point order (BSON's binary
//!   string order). A page of a board needs one count for its first rank;
//!   the others follow from positions.
//! - **`rebuild(period)`** re-derives a period's scores from the log in
//!   bounded steps (an aggregation `$group` streamed through a cursor,
//!   written 1,000 documents per insert), not in one transaction: records
//!   that land during a rebuild may be counted twice or not at all, or make
//!   the rebuild fail part-way (a duplicate score document) and leave the
//!   period partial until it is rebuilt again — run it while no records
//!   arrive.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use mongodb::bson::{doc, Bson, Document};
use mongodb::options::ReturnDocument;
use mongodb::{ClientSession, Collection};
use palisade_core::backend::check::check_ranked_limit;
use palisade_core::reputation::{
    Period, Ranked, Recorded, ReputationEvent, Subject, SubjectKind, MAX_RANKED, MAX_SCORE,
};
use palisade_core::time::{truncate_ms, TimeRange};
use palisade_core::{Capabilities, Error, ReputationRepo, Result, Store};
use uuid::Uuid;

use crate::error::{is_duplicate_key, map, tagged};
use crate::txn::{self, is_transient};
use crate::{bson_date as date, capabilities, invalid_state, MongoBackend};

/// The log of reputation events.
pub(crate) const EVENTS: &str = "reputation_events";
/// Scores per period and subject.
pub(crate) const SCORES: &str = "reputation_scores";

/// Score documents per insert while rebuilding.
const REBUILD_BATCH: usize = 1_000;

/// Mongo [`ReputationRepo`].
#[derive(Clone)]
pub struct MongoReputationRepo {
    backend: MongoBackend,
    events: Collection<Document>,
    scores: Collection<Document>,
}

fn score_id(period: &str, kind: SubjectKind, id: &str) -> Document {
    doc! {"p": period, "k": kind.as_str(), "s": id}
}

/// What one transaction attempt of `record` ended with.
enum Attempt {
    Done(Recorded),
    Duplicate,
    /// A transient error: run the whole transaction again.
    Retry(mongodb::error::Error),
}

impl MongoReputationRepo {
    /// The reputation repo of `backend`'s namespace.
    pub fn new(backend: MongoBackend) -> Self {
        let events = backend.database().collection(EVENTS);
        let scores = backend.database().collection(SCORES);
        MongoReputationRepo { backend, events, scores }
    }

    async fn all_time(&self, subject: &Subject) -> std::result::Result<i64, mongodb::error::Error> {
        let doc = self.scores.find_one(doc! {"_id": score_id("all", subject.kind, &subject.id)}).await?;
        // A stored score that is no Int64 is corrupt: an error, never a silent 0.
        doc.map(|d| d.get_i64("score").map_err(|e| mongodb::error::Error::custom(e.to_string())))
            .transpose()
            .map(|s| s.unwrap_or(0))
    }

    /// One try of `record` in a transaction on `session`.
    async fn record_once(
        &self,
        session: &mut ClientSession,
        event: &ReputationEvent,
        at: DateTime<Utc>,
        periods: &[String],
    ) -> Result<Attempt> {
        const OP: &str = "record";
        session.start_transaction().await.map_err(|e| map(OP, e))?;
        let logged = doc! {
            "_id": event.id.to_string(), "k": event.subject.kind.as_str(), "s": &event.subject.id,
            "d": event.delta, "r": &event.reason, "at": date(at),
        };
        match self.events.insert_one(logged).session(&mut *session).await {
            Ok(_) => {}
            Err(e) if is_duplicate_key(&e) => {
                let _ = session.abort_transaction().await;
                return Ok(Attempt::Duplicate);
            }
            Err(e) if is_transient(&e) => return Ok(Attempt::Retry(e)),
            Err(e) => return Err(map(OP, e)),
        }
        let mut all_time = None;
        for period in periods {
            let id = score_id(period, event.subject.kind, &event.subject.id);
            let updated = self
                .scores
                .find_one_and_update(
                    doc! {"_id": id},
                    doc! {"$inc": {"score": event.delta}, "$setOnInsert": {"p": period, "k": event.subject.kind.as_str(), "s": &event.subject.id}},
                )
                .upsert(true)
                .return_document(ReturnDocument::After)
                .session(&mut *session)
                .await;
            let doc = match updated {
                Ok(Some(doc)) => doc,
                Ok(None) => return Err(invalid_state("a score upsert returned nothing").with_op(OP)),
                Err(e) if is_transient(&e) || is_duplicate_key(&e) => return Ok(Attempt::Retry(e)),
                Err(e) => return Err(map(OP, e)),
            };
            let score = doc.get_i64("score").map_err(|_| invalid_state("a score is not an Int64").with_op(OP))?;
            if score.unsigned_abs() > MAX_SCORE as u64 {
                let _ = session.abort_transaction().await;
                return Err(Error::invalid("score would leave ±(2^53 - 1)")).map_err(tagged(OP));
            }
            if period == "all" {
                all_time = Some(score);
            }
        }
        // A commit whose outcome stays unknown is retried as a whole
        // (idempotent by event id).
        if let txn::Attempt::Retry(e) = txn::commit(session, OP, txn::Rerun::Safe).await? {
            return Ok(Attempt::Retry(e));
        }
        let score = all_time.ok_or_else(|| invalid_state("all-time score missing").with_op(OP))?;
        Ok(Attempt::Done(Recorded { score, duplicate: false }))
    }

    /// A page of a board with competition ranks.
    async fn board(
        &self,
        kind: SubjectKind,
        key: &str,
        offset: usize,
        limit: usize,
        op: &'static str,
    ) -> Result<Vec<Ranked>> {
        let docs: Vec<Document> = self
            .scores
            .find(doc! {"p": key, "k": kind.as_str()})
            .sort(doc! {"score": -1, "s": 1})
            // BSON holds an i64: an offset beyond that is past any board anyway.
            .skip(u64::try_from(offset).unwrap_or(u64::MAX).min(i64::MAX as u64))
            .limit(i64::try_from(limit).unwrap_or(i64::MAX))
            .await
            .map_err(|e| map(op, e))?
            .try_collect()
            .await
            .map_err(|e| map(op, e))?;
        let mut ranked: Vec<Ranked> = Vec::with_capacity(docs.len());
        for (i, d) in docs.into_iter().enumerate() {
            // A malformed stored score (written around the store) is skipped
            // with a warning; it never fails the board. Ranks still count its place.
            let (Ok(id), Ok(score)) = (d.get_str("s"), d.get_i64("score")) else {
                tracing::warn!(backend = crate::BACKEND, "palisade: skipping a malformed score document");
                continue;
            };
            let id = id.to_owned();
            let rank = match ranked.last() {
                Some(prev) if prev.score == score => prev.rank,
                Some(_) => (offset + i + 1) as u64,
                None => self.greater(kind, key, score, op).await? + 1,
            };
            ranked.push(Ranked { subject: Subject { kind, id }, score, rank });
        }
        Ok(ranked)
    }

    /// How many subjects of `kind` score more than `score` in `key`.
    async fn greater(&self, kind: SubjectKind, key: &str, score: i64, op: &'static str) -> Result<u64> {
        self.scores
            .count_documents(doc! {"p": key, "k": kind.as_str(), "score": {"$gt": score}})
            .await
            .map_err(|e| map(op, e))
    }

    async fn score_doc(&self, subject: &Subject, key: &str, op: &'static str) -> Result<Option<i64>> {
        let doc = self
            .scores
            .find_one(doc! {"_id": score_id(key, subject.kind, &subject.id)})
            .await
            .map_err(|e| map(op, e))?;
        doc.map(|d| d.get_i64("score").map_err(|_| invalid_state("a score is not an Int64").with_op(op))).transpose()
    }
}

#[async_trait]
impl Store for MongoReputationRepo {
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
impl ReputationRepo for MongoReputationRepo {
    async fn record(&self, event: ReputationEvent) -> Result<Recorded> {
        const OP: &str = "record";
        event.validate(&self.backend.policy()).map_err(tagged(OP))?;
        let at = truncate_ms(event.at);
        let periods: Vec<String> = Period::all_containing(at).iter().map(Period::key).collect();
        let mut session = self.backend.client().start_session().await.map_err(|e| map(OP, e))?;
        let mut retry = txn::Retry::new(self.backend.op_timeout());
        while retry.may_start() {
            match self.record_once(&mut session, &event, at, &periods).await? {
                Attempt::Done(recorded) => return Ok(recorded),
                Attempt::Duplicate => {
                    let score = self.all_time(&event.subject).await.map_err(|e| map(OP, e))?;
                    return Ok(Recorded { score, duplicate: true });
                }
                Attempt::Retry(e) => retry.back_off(&mut session, &e).await,
            }
        }
        Err(retry.exhausted()).map_err(tagged(OP))
    }

    async fn score(&self, subject: &Subject) -> Result<i64> {
        subject.validate().map_err(tagged("score"))?;
        self.all_time(subject).await.map_err(|e| map("score", e))
    }

    async fn history(&self, subject: &Subject, range: TimeRange, limit: usize) -> Result<Vec<ReputationEvent>> {
        const OP: &str = "history";
        subject.validate().map_err(tagged(OP))?;
        range.validate().map_err(tagged(OP))?;
        check_ranked_limit(limit).map_err(tagged(OP))?;
        let mut filter = doc! {"k": subject.kind.as_str(), "s": &subject.id};
        let mut at = Document::new();
        if let Some(from) = range.from {
            at.insert("$gte", date(truncate_ms(from)));
        }
        if let Some(to) = range.to {
            at.insert("$lt", date(truncate_ms(to)));
        }
        if !at.is_empty() {
            filter.insert("at", at);
        }
        let docs: Vec<Document> = self
            .events
            .find(filter)
            .sort(doc! {"at": -1, "_id": -1})
            .limit(i64::try_from(limit).unwrap_or(i64::MAX))
            .await
            .map_err(|e| map(OP, e))?
            .try_collect()
            .await
            .map_err(|e| map(OP, e))?;
        // One malformed stored event (written around the store) is skipped
        // with a warning; it never fails the read of the others.
        Ok(docs
            .into_iter()
            .filter_map(|d| {
                let event = (|| {
                    let id = Uuid::parse_str(d.get_str("_id").ok()?).ok()?;
                    let at = match d.get("at") {
                        Some(Bson::DateTime(at)) => DateTime::<Utc>::from_timestamp_millis(at.timestamp_millis())?,
                        _ => return None,
                    };
                    let (delta, reason) = (d.get_i64("d").ok()?, d.get_str("r").ok()?.to_owned());
                    Some(ReputationEvent { id, subject: subject.clone(), delta, reason, at })
                })();
                if event.is_none() {
                    tracing::warn!(backend = crate::BACKEND, "palisade: skipping a malformed reputation event");
                }
                event
            })
            .collect())
    }

    async fn leaderboard(&self, kind: SubjectKind, period: Period, offset: usize, limit: usize) -> Result<Vec<Ranked>> {
        const OP: &str = "leaderboard";
        period.validate().map_err(tagged(OP))?;
        check_ranked_limit(limit).map_err(tagged(OP))?;
        self.board(kind, &period.key(), offset, limit, OP).await
    }

    async fn rank(&self, subject: &Subject, period: Period) -> Result<Option<Ranked>> {
        const OP: &str = "rank";
        subject.validate().map_err(tagged(OP))?;
        period.validate().map_err(tagged(OP))?;
        let key = period.key();
        let Some(score) = self.score_doc(subject, &key, OP).await? else { return Ok(None) };
        let rank = self.greater(subject.kind, &key, score, OP).await? + 1;
        Ok(Some(Ranked { subject: subject.clone(), score, rank }))
    }

    async fn around(&self, subject: &Subject, period: Period, k: usize) -> Result<Vec<Ranked>> {
        const OP: &str = "around";
        subject.validate().map_err(tagged(OP))?;
        period.validate().map_err(tagged(OP))?;
        if k > MAX_RANKED {
            return Err(Error::invalid(format!("k must be at most {MAX_RANKED}"))).map_err(tagged(OP));
        }
        let key = period.key();
        let Some(score) = self.score_doc(subject, &key, OP).await? else { return Ok(Vec::new()) };
        // The subject's place on the board: everyone sorted before it.
        let before = self
            .scores
            .count_documents(doc! {"p": &key, "k": subject.kind.as_str(), "$or": [
                {"score": {"$gt": score}},
                {"score": score, "s": {"$lt": &subject.id}},
            ]})
            .await
            .map_err(|e| map(OP, e))?;
        let place = usize::try_from(before).unwrap_or(usize::MAX);
        let start = place.saturating_sub(k);
        let count = place.saturating_add(k).saturating_add(1) - start;
        self.board(subject.kind, &key, start, count, OP).await
    }

    async fn rebuild(&self, period: Period) -> Result<u64> {
        const OP: &str = "rebuild";
        period.validate().map_err(tagged(OP))?;
        let range = period.range().map_err(tagged(OP))?;
        let key = period.key();
        self.scores.delete_many(doc! {"p": &key}).await.map_err(|e| map(OP, e))?;
        let mut at = Document::new();
        if let Some(from) = range.from {
            at.insert("$gte", date(from));
        }
        if let Some(to) = range.to {
            at.insert("$lt", date(to));
        }
        let matching = if at.is_empty() {
            doc! {}
        } else {
            doc! {"at": at}
        };
        let pipeline =
            vec![doc! {"$match": matching}, doc! {"$group": {"_id": {"k": "$k", "s": "$s"}, "score": {"$sum": "$d"}}}];
        let mut groups = self.events.aggregate(pipeline).await.map_err(|e| map(OP, e))?;
        let (mut batch, mut written) = (Vec::with_capacity(REBUILD_BATCH), 0u64);
        while let Some(group) = groups.try_next().await.map_err(|e| map(OP, e))? {
            let id = group.get_document("_id").map_err(|_| invalid_state("a malformed group").with_op(OP))?;
            let (kind, subject) = (id.get_str("k").unwrap_or_default(), id.get_str("s").unwrap_or_default());
            let score = match group.get("score") {
                Some(Bson::Int64(n)) => *n,
                Some(Bson::Int32(n)) => i64::from(*n),
                _ => return Err(invalid_state("a score sum is not an integer").with_op(OP)),
            };
            batch.push(
                doc! {"_id": {"p": &key, "k": kind, "s": subject}, "p": &key, "k": kind, "s": subject, "score": score},
            );
            if batch.len() == REBUILD_BATCH {
                written += batch.len() as u64;
                self.scores.insert_many(std::mem::take(&mut batch)).await.map_err(|e| map(OP, e))?;
            }
        }
        if !batch.is_empty() {
            written += batch.len() as u64;
            self.scores.insert_many(batch).await.map_err(|e| map(OP, e))?;
        }
        Ok(written)
    }
}
