//! Reputation scores and leaderboards, and the [`ReputationRepo`] trait.

use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::events::check_name;
use crate::store::Store;
use crate::time::{truncate_ms, TimeRange};

/// Largest absolute delta, and largest absolute score in any period: 2^53 − 1,
/// the biggest integer every backend (including sorted-set doubles) holds exactly.
pub const MAX_SCORE: i64 = (1 << 53) - 1;
/// Longest `reason` by default, in bytes ([`InputPolicy::max_reason_bytes`](crate::InputPolicy::max_reason_bytes)).
pub const MAX_REASON_LEN: usize = 1024;
/// Largest leaderboard / history page and largest `around` radius.
pub const MAX_RANKED: usize = 10_000;

/// What kind of subject a score belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum SubjectKind {
    /// A user (e.g. an analyst reporting threats).
    User,
    /// A detection engine.
    Engine,
}

impl SubjectKind {
    /// `user` or `engine`.
    pub fn as_str(self) -> &'static str {
        match self {
            SubjectKind::User => "user",
            SubjectKind::Engine => "engine",
        }
    }
}

/// Who a score belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Subject {
    /// User or engine.
    pub kind: SubjectKind,
    /// 1..=256 bytes, no control characters.
    pub id: String,
}

impl Subject {
    /// A user subject.
    pub fn user(id: impl Into<String>) -> Self {
        Subject { kind: SubjectKind::User, id: id.into() }
    }
    /// An engine subject.
    pub fn engine(id: impl Into<String>) -> Self {
        Subject { kind: SubjectKind::Engine, id: id.into() }
    }
    /// Checks the id.
    pub fn validate(&self) -> Result<()> {
        check_name("subject id", &self.id)
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind.as_str(), self.id)
    }
}

/// One change of reputation: the source of truth scores are derived from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReputationEvent {
    /// Idempotency key.
    pub id: Uuid,
    /// Whose score changes.
    pub subject: Subject,
    /// By how much (|delta| ≤ [`MAX_SCORE`]).
    pub delta: i64,
    /// Why (≤ 1024 bytes).
    pub reason: String,
    /// When; decides the periods the delta counts in (millisecond precision).
    pub at: DateTime<Utc>,
}

impl ReputationEvent {
    /// A new event with a fresh UUID v7 at `now`.
    pub fn new(subject: Subject, delta: i64, reason: impl Into<String>) -> Self {
        ReputationEvent {
            id: Uuid::now_v7(),
            subject,
            delta,
            reason: reason.into(),
            at: crate::backend::clock::now_ms(),
        }
    }
    /// Sets `at`.
    pub fn at(mut self, at: DateTime<Utc>) -> Self {
        self.at = truncate_ms(at);
        self
    }
    /// Sets the id.
    pub fn with_id(mut self, id: Uuid) -> Self {
        self.id = id;
        self
    }
    /// Checks subject, delta and reason (at most `policy.max_reason_bytes`,
    /// no control characters but tab, line feed and carriage return).
    pub fn validate(&self, policy: &crate::InputPolicy) -> Result<()> {
        self.subject.validate()?;
        crate::time::check_instant("at", self.at)?;
        if self.delta.unsigned_abs() > MAX_SCORE as u64 {
            return Err(Error::invalid("|delta| must be at most 2^53 - 1"));
        }
        let max = policy.max_reason_bytes;
        if self.reason.len() > max {
            return Err(Error::invalid(format!("reason must be at most {max} bytes")));
        }
        if self.reason.chars().any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r')) {
            return Err(Error::invalid("reason must not contain control characters (U+0000 included)"));
        }
        Ok(())
    }
}

/// The outcome of `record`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recorded {
    /// The subject's all-time score after the call.
    pub score: i64,
    /// True when the event id was already recorded; nothing changed.
    pub duplicate: bool,
}

/// The kinds of leaderboard period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PeriodKind {
    /// Everything.
    AllTime,
    /// A UTC calendar day.
    Day,
    /// An ISO-8601 week (Monday to Sunday, UTC).
    IsoWeek,
    /// A UTC calendar month.
    Month,
}

/// One leaderboard period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Period {
    /// Everything.
    AllTime,
    /// A UTC day.
    Day(NaiveDate),
    /// An ISO week.
    IsoWeek {
        /// ISO week-numbering year.
        year: i32,
        /// 1..=53.
        week: u32,
    },
    /// A UTC month.
    Month {
        /// Year.
        year: i32,
        /// 1..=12.
        month: u32,
    },
}

impl Period {
    /// The period of `kind` that contains `at`.
    pub fn containing(kind: PeriodKind, at: DateTime<Utc>) -> Self {
        let d = at.date_naive();
        match kind {
            PeriodKind::AllTime => Period::AllTime,
            PeriodKind::Day => Period::Day(d),
            PeriodKind::IsoWeek => {
                let w = d.iso_week();
                Period::IsoWeek { year: w.year(), week: w.week() }
            }
            PeriodKind::Month => Period::Month { year: d.year(), month: d.month() },
        }
    }

    /// The four periods an event at `at` counts in.
    pub fn all_containing(at: DateTime<Utc>) -> [Period; 4] {
        [PeriodKind::AllTime, PeriodKind::Day, PeriodKind::IsoWeek, PeriodKind::Month]
            .map(|k| Period::containing(k, at))
    }

    /// The kind of this period.
    pub fn kind(&self) -> PeriodKind {
        match self {
            Period::AllTime => PeriodKind::AllTime,
            Period::Day(_) => PeriodKind::Day,
            Period::IsoWeek { .. } => PeriodKind::IsoWeek,
            Period::Month { .. } => PeriodKind::Month,
        }
    }

    /// Whether `at` falls in this period.
    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        Period::containing(self.kind(), at) == *self
    }

    /// The period as a half-open UTC range (`AllTime` is unbounded).
    pub fn range(&self) -> Result<TimeRange> {
        let start = |d: NaiveDate| Utc.from_utc_datetime(&d.and_time(chrono::NaiveTime::MIN));
        let bad = || Error::invalid("period out of range");
        Ok(match *self {
            Period::AllTime => TimeRange::all(),
            Period::Day(d) => TimeRange::between(start(d), start(d.succ_opt().ok_or_else(bad)?)),
            Period::IsoWeek { year, week } => {
                let monday = NaiveDate::from_isoywd_opt(year, week, chrono::Weekday::Mon).ok_or_else(bad)?;
                TimeRange::between(start(monday), start(monday + chrono::Days::new(7)))
            }
            Period::Month { year, month } => {
                let first = NaiveDate::from_ymd_opt(year, month, 1).ok_or_else(bad)?;
                let next = first.checked_add_months(chrono::Months::new(1)).ok_or_else(bad)?;
                TimeRange::between(start(first), start(next))
            }
        })
    }

    /// `InvalidInput` for a week or month that does not exist.
    pub fn validate(&self) -> Result<()> {
        self.range().map(|_| ())
    }

    /// A stable text key: `all`, `d2026-11-22`, `w2026-47`, `m2026-11`.
    pub fn key(&self) -> String {
        match self {
            Period::AllTime => "all".to_owned(),
            Period::Day(d) => format!("d{}", d.format("%Y-%m-%d")),
            Period::IsoWeek { year, week } => format!("w{year:04}-{week:02}"),
            Period::Month { year, month } => format!("m{year:04}-{month:02}"),
        }
    }
}

/// A subject's place on a leaderboard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ranked {
    /// Who.
    pub subject: Subject,
    /// Their score in the period.
    pub score: i64,
    /// Standard competition rank ("1224"): 1 + the number of subjects with a
    /// strictly higher score.
    pub rank: u64,
}

/// Scores and periodic leaderboards, derived from an idempotent log of
/// reputation events.
///
/// # Contract
/// - **The log is the truth.** `record` is idempotent by event id: a duplicate
///   changes nothing and reports the current score. Scores and leaderboards are
///   derived and `rebuild` recomputes a period from the log.
/// - **Periods** (`AllTime`, `Day`, `IsoWeek`, `Month`) are UTC and decided by
///   the event's `at`, not by when it was recorded. A subject is on a period's
///   leaderboard once it has an event in that period (even if its sum is 0).
/// - **Ranking** is standard competition ranking ("1224"); ties are listed by
///   subject id ascending (code point order). Every backend returns the same
///   ranks for the same events.
/// - **Limits.** `|delta|` and every resulting period score stay within
///   ±(2^53 − 1); a `record` that would exceed it is `InvalidInput` and changes
///   nothing.
///
/// # Errors
/// Bad subject ids, reasons, limits or periods are `InvalidInput` before any
/// I/O. A backend failure is `Unavailable`/`Timeout`, never a zero score.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait ReputationRepo: Store {
    /// Records an event (idempotent by id) and returns the all-time score.
    async fn record(&self, event: ReputationEvent) -> Result<Recorded>;
    /// The subject's all-time score (0 when it has no events).
    async fn score(&self, subject: &Subject) -> Result<i64>;
    /// The subject's events with `at` in `range`, newest first (ties by id
    /// descending), at most `limit`.
    async fn history(&self, subject: &Subject, range: TimeRange, limit: usize) -> Result<Vec<ReputationEvent>>;
    /// Entries `offset..offset+limit` of the leaderboard of `kind` in `period`.
    async fn leaderboard(&self, kind: SubjectKind, period: Period, offset: usize, limit: usize) -> Result<Vec<Ranked>>;
    /// The subject's place in `period`, or `None` when it has no event there.
    async fn rank(&self, subject: &Subject, period: Period) -> Result<Option<Ranked>>;
    /// The subject's entry with up to `k` neighbours on each side, in
    /// leaderboard order; empty when the subject is not ranked in `period`.
    async fn around(&self, subject: &Subject, period: Period, k: usize) -> Result<Vec<Ranked>>;
    /// Recomputes `period`'s scores from the log; returns how many subjects it holds.
    async fn rebuild(&self, period: Period) -> Result<u64>;
}

/// Convenience methods for every [`ReputationRepo`].
#[async_trait]
pub trait ReputationRepoExt: ReputationRepo {
    /// Records `delta` for `subject` now, with a fresh id.
    async fn adjust(&self, subject: Subject, delta: i64, reason: &str) -> Result<i64> {
        Ok(self.record(ReputationEvent::new(subject, delta, reason)).await?.score)
    }

    /// The top `n` of `kind` in the current period of `period_kind`.
    async fn top_now(&self, kind: SubjectKind, period_kind: PeriodKind, n: usize) -> Result<Vec<Ranked>> {
        self.leaderboard(kind, Period::containing(period_kind, Utc::now()), 0, n).await
    }
}

impl<T: ReputationRepo + ?Sized> ReputationRepoExt for T {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::eval::rank_entries;

    #[test]
    fn competition_ranking_is_1224_with_ties_by_id() {
        let r = rank_entries(vec![
            (Subject::user("c"), 5),
            (Subject::user("b"), 7),
            (Subject::user("a"), 5),
            (Subject::user("d"), 1),
        ]);
        let got: Vec<(&str, u64)> = r.iter().map(|e| (e.subject.id.as_str(), e.rank)).collect();
        assert_eq!(got, vec![("b", 1), ("a", 2), ("c", 2), ("d", 4)]);
    }

    #[test]
    fn iso_week_of_new_year_belongs_to_previous_year() {
        let at = Utc.with_ymd_and_hms(2027, 1, 1, 12, 0, 0).unwrap();
        assert_eq!(Period::containing(PeriodKind::IsoWeek, at), Period::IsoWeek { year: 2026, week: 53 });
    }

    #[test]
    fn period_ranges_are_half_open_utc() {
        let p = Period::Month { year: 2026, month: 2 };
        let r = p.range().unwrap();
        assert!(r.contains(Utc.with_ymd_and_hms(2026, 2, 28, 23, 59, 59).unwrap()));
        assert!(!r.contains(Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap()));
        assert!(Period::IsoWeek { year: 2026, week: 54 }.validate().is_err());
    }

    #[test]
    fn a_page_ranks_like_the_whole_board() {
        use crate::backend::eval::{rank_entries, rank_page};
        let scores = [9, 7, 7, 7, 5, 5, 3, 1];
        let board =
            rank_entries(scores.iter().enumerate().map(|(i, s)| (Subject::user(format!("u{i}")), *s)).collect());
        for offset in 0..board.len() {
            for limit in 1..=board.len() - offset {
                let page: Vec<(Subject, i64)> =
                    board[offset..offset + limit].iter().map(|r| (r.subject.clone(), r.score)).collect();
                let greater = board.iter().filter(|r| r.score > page[0].1).count() as u64;
                assert_eq!(
                    rank_page(offset, greater, page),
                    board[offset..offset + limit].to_vec(),
                    "{offset}+{limit}"
                );
            }
        }
    }
}
