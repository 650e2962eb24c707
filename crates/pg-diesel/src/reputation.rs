//! `ReputationRepo` on the shared tables (`migrations/0004`): the event log
//! plus per-period score rows, updated in one diesel-async transaction;
//! leaderboards read in index order and ranked from one count (pg-common's
//! `reputation` statements; competition ranks, "1224"; ties by subject id in
//! code point order, which the `reputation_scores_board` index serves).

use async_trait::async_trait;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use diesel::upsert::excluded;
use diesel_async::{AsyncConnection, RunQueryDsl};
use palisade_core::backend::check::check_ranked_limit;
use palisade_core::backend::eval::rank_page;
use palisade_core::reputation::{
    Period, Ranked, Recorded, ReputationEvent, Subject, SubjectKind, MAX_RANKED, MAX_SCORE,
};
use palisade_core::time::{truncate_ms, TimeRange};
use palisade_core::{Capabilities, Error, ReputationRepo, Result, Store};
use uuid::Uuid;

use palisade_pg_common::reputation::{AROUND, BOARD_PAGE, RANK};

use crate::cached::Cached;
use crate::error::{tagged, TxError};
use crate::schema::{reputation_events as events, reputation_scores as scores};
use crate::time::StoredTime;
use crate::{capabilities, invalid_state, PgDieselBackend};

/// Postgres [`ReputationRepo`] through diesel.
#[derive(Clone)]
pub struct PgDieselReputationRepo {
    backend: PgDieselBackend,
}

/// One ranked row of a board: subject id, score, rank.
#[derive(QueryableByName)]
struct RankedRow {
    #[diesel(sql_type = Text)]
    subject_id: String,
    #[diesel(sql_type = BigInt)]
    score: i64,
    #[diesel(sql_type = BigInt)]
    rank: i64,
}

/// One row of a board page (pg-common's `BOARD_PAGE`).
#[derive(QueryableByName)]
struct PageRow {
    #[diesel(sql_type = Text)]
    subject_id: String,
    #[diesel(sql_type = BigInt)]
    score: i64,
    #[diesel(sql_type = BigInt)]
    greater: i64,
}

/// One row of pg-common's `AROUND`.
#[derive(QueryableByName)]
struct AroundRow {
    #[diesel(sql_type = Text)]
    subject_id: String,
    #[diesel(sql_type = BigInt)]
    score: i64,
    #[diesel(sql_type = BigInt)]
    greater: i64,
    #[diesel(sql_type = BigInt)]
    first_place: i64,
}

/// A ranked page from rows starting at place `offset`.
fn page(kind: SubjectKind, offset: usize, rows: Vec<PageRow>) -> Vec<Ranked> {
    let greater = rows.as_slice().first().map_or(0, |r| u64::try_from(r.greater).unwrap_or(0));
    let entries = rows.into_iter().map(|r| (Subject { kind, id: r.subject_id }, r.score)).collect();
    rank_page(offset, greater, entries)
}

fn ranked(kind: SubjectKind, rows: Vec<(String, i64, i64)>) -> Vec<Ranked> {
    rows.into_iter()
        .map(|(id, score, rank)| Ranked {
            subject: Subject { kind, id },
            score,
            rank: u64::try_from(rank).unwrap_or(0),
        })
        .collect()
}

impl PgDieselReputationRepo {
    /// The reputation repo of `backend`'s namespace.
    pub fn new(backend: PgDieselBackend) -> Self {
        PgDieselReputationRepo { backend }
    }
}

/// The all-time score of `subject` (0 when it has none).
async fn all_time(conn: &mut diesel_async::AsyncPgConnection, subject: &Subject) -> QueryResult<i64> {
    let score: Option<i64> = scores::table
        .filter(scores::period.eq("all"))
        .filter(scores::subject_kind.eq(subject.kind.as_str()))
        .filter(scores::subject_id.eq(&subject.id))
        .select(scores::score)
        .first(conn)
        .await
        .optional()?;
    Ok(score.unwrap_or(0))
}

#[async_trait]
impl Store for PgDieselReputationRepo {
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
impl ReputationRepo for PgDieselReputationRepo {
    async fn record(&self, event: ReputationEvent) -> Result<Recorded> {
        const OP: &str = "record";
        event.validate(&self.backend.policy).map_err(tagged(OP))?;
        let at = truncate_ms(event.at);
        let periods: Vec<String> = Period::all_containing(at).iter().map(Period::key).collect();
        let mut conn = self.backend.conn(OP).await?;
        // A cancelled call leaves the transaction open on the connection; the
        // pool discards such a connection instead of handing it out again.
        let recorded = conn
            .transaction::<_, TxError, _>(async |c| {
                let inserted = diesel::insert_into(events::table)
                    .values((
                        events::id.eq(event.id),
                        events::subject_kind.eq(event.subject.kind.as_str()),
                        events::subject_id.eq(&event.subject.id),
                        events::delta.eq(event.delta),
                        events::reason.eq(&event.reason),
                        events::at.eq(at),
                    ))
                    .on_conflict(events::id)
                    .do_nothing()
                    .execute(c)
                    .await?
                    == 1;
                if !inserted {
                    return Ok(Recorded { score: all_time(c, &event.subject).await?, duplicate: true });
                }
                let rows: Vec<_> = periods
                    .iter()
                    .map(|p| {
                        (
                            scores::period.eq(p),
                            scores::subject_kind.eq(event.subject.kind.as_str()),
                            scores::subject_id.eq(&event.subject.id),
                            scores::score.eq(event.delta),
                        )
                    })
                    .collect();
                let updated: Vec<(String, i64)> = diesel::insert_into(scores::table)
                    .values(rows)
                    .on_conflict((scores::period, scores::subject_kind, scores::subject_id))
                    .do_update()
                    .set(scores::score.eq(scores::score + excluded(scores::score)))
                    .returning((scores::period, scores::score))
                    .get_results(c)
                    .await?;
                let mut all = None;
                for (period, score) in updated {
                    if score.unsigned_abs() > MAX_SCORE as u64 {
                        // Returning the error rolls the event back too.
                        return Err(Error::invalid("score would leave ±(2^53 - 1)").into());
                    }
                    if period == "all" {
                        all = Some(score);
                    }
                }
                let score = all.ok_or_else(|| invalid_state("all-time score row missing"))?;
                Ok(Recorded { score, duplicate: false })
            })
            .await
            .map_err(conn.tx_error(OP))?;
        Ok(recorded)
    }

    async fn score(&self, subject: &Subject) -> Result<i64> {
        const OP: &str = "score";
        subject.validate().map_err(tagged(OP))?;
        let mut conn = self.backend.conn(OP).await?;
        all_time(&mut conn, subject).await.map_err(conn.error(OP))
    }

    async fn history(&self, subject: &Subject, range: TimeRange, limit: usize) -> Result<Vec<ReputationEvent>> {
        const OP: &str = "history";
        subject.validate().map_err(tagged(OP))?;
        range.validate().map_err(tagged(OP))?;
        check_ranked_limit(limit).map_err(tagged(OP))?;
        let mut q = events::table
            .filter(events::subject_kind.eq(subject.kind.as_str()))
            .filter(events::subject_id.eq(&subject.id))
            .select((events::id, events::delta, events::reason, events::at))
            .order((events::at.desc(), events::id.desc()))
            .limit(i64::try_from(limit).unwrap_or(i64::MAX))
            .into_boxed();
        if let Some(from) = range.from {
            q = q.filter(events::at.ge(truncate_ms(from)));
        }
        if let Some(to) = range.to {
            q = q.filter(events::at.lt(truncate_ms(to)));
        }
        let mut conn = self.backend.conn(OP).await?;
        let rows: Vec<(Uuid, i64, String, StoredTime)> = q.load(&mut **conn).await.map_err(conn.error(OP))?;
        Ok(rows
            .into_iter()
            .map(|(id, delta, reason, at)| ReputationEvent { id, subject: subject.clone(), delta, reason, at: at.0 })
            .collect())
    }

    async fn leaderboard(&self, kind: SubjectKind, period: Period, offset: usize, limit: usize) -> Result<Vec<Ranked>> {
        const OP: &str = "leaderboard";
        period.validate().map_err(tagged(OP))?;
        check_ranked_limit(limit).map_err(tagged(OP))?;
        let mut conn = self.backend.conn(OP).await?;
        // The page and its one count in one statement (one snapshot); the
        // count over the page's best score is beyond the query builder.
        let rows: Vec<PageRow> = Cached::new(BOARD_PAGE)
            .bind::<Text, _>(period.key())
            .bind::<Text, _>(kind.as_str())
            .bind::<BigInt, _>(i64::try_from(offset).unwrap_or(i64::MAX))
            .bind::<BigInt, _>(i64::try_from(limit).unwrap_or(i64::MAX))
            .load(&mut **conn)
            .await
            .map_err(conn.error(OP))?;
        Ok(page(kind, offset, rows))
    }

    async fn rank(&self, subject: &Subject, period: Period) -> Result<Option<Ranked>> {
        const OP: &str = "rank";
        subject.validate().map_err(tagged(OP))?;
        period.validate().map_err(tagged(OP))?;
        let mut conn = self.backend.conn(OP).await?;
        let row: Option<RankedRow> = Cached::new(RANK)
            .bind::<Text, _>(period.key())
            .bind::<Text, _>(subject.kind.as_str())
            .bind::<Text, _>(&subject.id)
            .get_result(&mut **conn)
            .await
            .optional()
            .map_err(conn.error(OP))?;
        Ok(row.map(|r| ranked(subject.kind, vec![(r.subject_id, r.score, r.rank)])).and_then(|mut v| v.pop()))
    }

    async fn around(&self, subject: &Subject, period: Period, k: usize) -> Result<Vec<Ranked>> {
        const OP: &str = "around";
        subject.validate().map_err(tagged(OP))?;
        period.validate().map_err(tagged(OP))?;
        if k > MAX_RANKED {
            return Err(Error::invalid(format!("k must be at most {MAX_RANKED}"))).map_err(tagged(OP));
        }
        let mut conn = self.backend.conn(OP).await?;
        let rows: Vec<AroundRow> = Cached::new(AROUND)
            .bind::<Text, _>(period.key())
            .bind::<Text, _>(subject.kind.as_str())
            .bind::<Text, _>(&subject.id)
            .bind::<BigInt, _>(i64::try_from(k).unwrap_or(i64::MAX))
            .load(&mut **conn)
            .await
            .map_err(conn.error(OP))?;
        let Some(first) = rows.as_slice().first().map(|r| usize::try_from(r.first_place).unwrap_or(0)) else {
            return Ok(Vec::new());
        };
        let rows = rows.into_iter().map(|r| PageRow { subject_id: r.subject_id, score: r.score, greater: r.greater });
        Ok(page(subject.kind, first, rows.collect()))
    }

    async fn rebuild(&self, period: Period) -> Result<u64> {
        const OP: &str = "rebuild";
        period.validate().map_err(tagged(OP))?;
        let range = period.range().map_err(tagged(OP))?;
        let key = period.key();
        let mut conn = self.backend.conn(OP).await?;
        conn.transaction::<_, TxError, _>(async |c| {
            diesel::delete(scores::table.filter(scores::period.eq(&key))).execute(c).await?;
            // INSERT … SELECT with a group-by sum.
            let n = diesel::sql_query(
                "INSERT INTO reputation_scores (period, subject_kind, subject_id, score) \
                 SELECT $1, subject_kind, subject_id, sum(delta)::bigint FROM reputation_events \
                 WHERE ($2::timestamptz IS NULL OR at >= $2) AND ($3::timestamptz IS NULL OR at < $3) \
                 GROUP BY subject_kind, subject_id",
            )
            .bind::<Text, _>(&key)
            .bind::<diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>, _>(range.from)
            .bind::<diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>, _>(range.to)
            .execute(c)
            .await?;
            Ok(n as u64)
        })
        .await
        .map_err(conn.tx_error(OP))
    }
}
