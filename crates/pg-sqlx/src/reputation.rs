//! `ReputationRepo` on Postgres: the event log plus per-period score rows,
//! updated in the same transaction; ranks from window functions.

use async_trait::async_trait;
use palisade_core::backend::check::check_ranked_limit;
use palisade_core::backend::eval::rank_page;
use palisade_core::reputation::{
    Period, Ranked, Recorded, ReputationEvent, Subject, SubjectKind, MAX_RANKED, MAX_SCORE,
};
use palisade_core::time::{truncate_ms, TimeRange};
use palisade_core::{Capabilities, Error, ReputationRepo, Result, Store};
use sqlx::postgres::PgRow;
use sqlx::Row;

use palisade_pg_common::reputation::{AROUND, BOARD_PAGE, RANK};

use crate::error::{map, tagged};
use crate::time::StoredTime;
use crate::{capabilities, invalid_state, PgBackend};

/// Postgres [`ReputationRepo`].
#[derive(Clone)]
pub struct PgReputationRepo {
    backend: PgBackend,
}

impl PgReputationRepo {
    /// The reputation repo of `backend`'s namespace.
    pub fn new(backend: PgBackend) -> Self {
        PgReputationRepo { backend }
    }

    async fn all_time(
        &self,
        conn: impl sqlx::PgExecutor<'_>,
        subject: &Subject,
    ) -> std::result::Result<i64, sqlx::Error> {
        let score: Option<i64> = sqlx::query_scalar(
            "SELECT score FROM reputation_scores WHERE period = 'all' AND subject_kind = $1 AND subject_id = $2",
        )
        .bind(subject.kind.as_str())
        .bind(&subject.id)
        .fetch_optional(conn)
        .await?;
        Ok(score.unwrap_or(0))
    }
}

/// A ranked page from [`BOARD_PAGE`]/[`AROUND`] rows starting at place `offset`.
fn ranked(kind: SubjectKind, offset: usize, rows: &[PgRow], op: &'static str) -> Result<Vec<Ranked>> {
    let greater: i64 = match rows.first() {
        Some(r) => r.try_get("greater").map_err(|e| map(op, e))?,
        None => return Ok(Vec::new()),
    };
    let entries = rows
        .iter()
        .map(|r| Ok((Subject { kind, id: r.try_get("subject_id")? }, r.try_get("score")?)))
        .collect::<std::result::Result<Vec<_>, sqlx::Error>>()
        .map_err(|e| map(op, e))?;
    Ok(rank_page(offset, u64::try_from(greater).unwrap_or(0), entries))
}

#[async_trait]
impl Store for PgReputationRepo {
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
impl ReputationRepo for PgReputationRepo {
    async fn record(&self, event: ReputationEvent) -> Result<Recorded> {
        let op = "record";
        event.validate(&self.backend.policy).map_err(tagged(op))?;
        let at = truncate_ms(event.at);
        let mut tx = self.backend.pool.begin().await.map_err(|e| map(op, e))?;
        let inserted = sqlx::query(
            "INSERT INTO reputation_events (id, subject_kind, subject_id, delta, reason, at) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(event.id)
        .bind(event.subject.kind.as_str())
        .bind(&event.subject.id)
        .bind(event.delta)
        .bind(&event.reason)
        .bind(at)
        .execute(&mut *tx)
        .await
        .map_err(|e| map(op, e))?
        .rows_affected()
            == 1;
        if !inserted {
            let score = self.all_time(&mut *tx, &event.subject).await.map_err(|e| map(op, e))?;
            tx.commit().await.map_err(|e| map(op, e))?;
            return Ok(Recorded { score, duplicate: true });
        }
        let periods: Vec<String> = Period::all_containing(at).iter().map(Period::key).collect();
        let rows = sqlx::query(
            "INSERT INTO reputation_scores (period, subject_kind, subject_id, score) \
             SELECT p, $2, $3, $4 FROM UNNEST($1::text[]) AS p \
             ON CONFLICT (period, subject_kind, subject_id) DO UPDATE SET score = reputation_scores.score + excluded.score \
             RETURNING period, score",
        )
        .bind(&periods)
        .bind(event.subject.kind.as_str())
        .bind(&event.subject.id)
        .bind(event.delta)
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| map(op, e))?;
        let mut all_time = None;
        for r in &rows {
            let (period, score): (String, i64) =
                (r.try_get("period").map_err(|e| map(op, e))?, r.try_get("score").map_err(|e| map(op, e))?);
            if score.unsigned_abs() > MAX_SCORE as u64 {
                // Dropping the transaction rolls the event back too.
                return Err(Error::invalid("score would leave ±(2^53 - 1)")).map_err(tagged(op));
            }
            if period == "all" {
                all_time = Some(score);
            }
        }
        tx.commit().await.map_err(|e| map(op, e))?;
        Ok(Recorded { score: all_time.ok_or_else(|| invalid_state("all-time score row missing"))?, duplicate: false })
    }

    async fn score(&self, subject: &Subject) -> Result<i64> {
        subject.validate().map_err(tagged("score"))?;
        self.all_time(&self.backend.pool, subject).await.map_err(|e| map("score", e))
    }

    async fn history(&self, subject: &Subject, range: TimeRange, limit: usize) -> Result<Vec<ReputationEvent>> {
        subject.validate().map_err(tagged("history"))?;
        range.validate().map_err(tagged("history"))?;
        check_ranked_limit(limit).map_err(tagged("history"))?;
        let rows = sqlx::query(
            "SELECT id, delta, reason, at FROM reputation_events \
             WHERE subject_kind = $1 AND subject_id = $2 AND ($3::timestamptz IS NULL OR at >= $3) AND ($4::timestamptz IS NULL OR at < $4) \
             ORDER BY at DESC, id DESC LIMIT $5",
        )
        .bind(subject.kind.as_str())
        .bind(&subject.id)
        .bind(range.from.map(truncate_ms))
        .bind(range.to.map(truncate_ms))
        .bind(limit as i64)
        .fetch_all(&self.backend.pool)
        .await
        .map_err(|e| map("history", e))?;
        rows.iter()
            .map(|r| {
                Ok(ReputationEvent {
                    id: r.try_get("id")?,
                    subject: subject.clone(),
                    delta: r.try_get("delta")?,
                    reason: r.try_get("reason")?,
                    at: r.try_get::<StoredTime, _>("at")?.0,
                })
            })
            .collect::<std::result::Result<_, sqlx::Error>>()
            .map_err(|e| map("history", e))
    }

    async fn leaderboard(&self, kind: SubjectKind, period: Period, offset: usize, limit: usize) -> Result<Vec<Ranked>> {
        period.validate().map_err(tagged("leaderboard"))?;
        check_ranked_limit(limit).map_err(tagged("leaderboard"))?;
        let rows = sqlx::query(BOARD_PAGE)
            .bind(period.key())
            .bind(kind.as_str())
            .bind(i64::try_from(offset).unwrap_or(i64::MAX))
            .bind(limit as i64)
            .fetch_all(&self.backend.pool)
            .await
            .map_err(|e| map("leaderboard", e))?;
        ranked(kind, offset, &rows, "leaderboard")
    }

    async fn rank(&self, subject: &Subject, period: Period) -> Result<Option<Ranked>> {
        subject.validate().map_err(tagged("rank"))?;
        period.validate().map_err(tagged("rank"))?;
        let row = sqlx::query(RANK)
            .bind(period.key())
            .bind(subject.kind.as_str())
            .bind(&subject.id)
            .fetch_optional(&self.backend.pool)
            .await
            .map_err(|e| map("rank", e))?;
        row.map(|r| -> std::result::Result<Ranked, sqlx::Error> {
            Ok(Ranked {
                subject: Subject { kind: subject.kind, id: r.try_get("subject_id")? },
                score: r.try_get("score")?,
                rank: u64::try_from(r.try_get::<i64, _>("rank")?).unwrap_or(0),
            })
        })
        .transpose()
        .map_err(|e| map("rank", e))
    }

    async fn around(&self, subject: &Subject, period: Period, k: usize) -> Result<Vec<Ranked>> {
        subject.validate().map_err(tagged("around"))?;
        period.validate().map_err(tagged("around"))?;
        if k > MAX_RANKED {
            return Err(Error::invalid(format!("k must be at most {MAX_RANKED}"))).map_err(tagged("around"));
        }
        let rows = sqlx::query(AROUND)
            .bind(period.key())
            .bind(subject.kind.as_str())
            .bind(&subject.id)
            .bind(k as i64)
            .fetch_all(&self.backend.pool)
            .await
            .map_err(|e| map("around", e))?;
        let first: i64 = match rows.first() {
            Some(r) => r.try_get("first_place").map_err(|e| map("around", e))?,
            None => return Ok(Vec::new()),
        };
        ranked(subject.kind, usize::try_from(first).unwrap_or(0), &rows, "around")
    }

    async fn rebuild(&self, period: Period) -> Result<u64> {
        let op = "rebuild";
        period.validate().map_err(tagged(op))?;
        let range = period.range().map_err(tagged(op))?;
        let mut tx = self.backend.pool.begin().await.map_err(|e| map(op, e))?;
        sqlx::query("DELETE FROM reputation_scores WHERE period = $1")
            .bind(period.key())
            .execute(&mut *tx)
            .await
            .map_err(|e| map(op, e))?;
        let n = sqlx::query(
            "INSERT INTO reputation_scores (period, subject_kind, subject_id, score) \
             SELECT $1, subject_kind, subject_id, sum(delta)::bigint FROM reputation_events \
             WHERE ($2::timestamptz IS NULL OR at >= $2) AND ($3::timestamptz IS NULL OR at < $3) \
             GROUP BY subject_kind, subject_id",
        )
        .bind(period.key())
        .bind(range.from)
        .bind(range.to)
        .execute(&mut *tx)
        .await
        .map_err(|e| map(op, e))?
        .rows_affected();
        tx.commit().await.map_err(|e| map(op, e))?;
        Ok(n)
    }
}
