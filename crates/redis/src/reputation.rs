//! `ReputationRepo` on a log plus sorted sets, under `{<ns>:r}:`.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `ev:<hex id>` | hash | the event (JSON) and its kind, subject and delta; doubles as the idempotency marker |
//! | `log` | zset | hex id by `at` (ms): the source of truth for `rebuild` |
//! | `h:<u\|e>:<subject>` | zset | hex id by `at`, for `history` |
//! | `b:<u\|e>:<period key>` | zset | subject → **negated** score |
//! | `rb:<period key>` | hash | a rebuild under way: token and cursor (`at`, id) |
//! | `rbb:<u\|e>:<period key>` | zset | the board that rebuild fills |
//!
//! **Ordering.** Redis orders a sorted set by score, then by member bytes
//! ascending (for UTF-8 ids that is code point order), and `ZREVRANGE`
//! reverses *both*. Boards therefore store the negated score, so a plain
//! ascending `ZRANGE` yields score descending with ties by subject id
//! ascending — the contract's order — and a subject's competition rank is
//! `1 + ZCOUNT(-inf, (own negated score)`, computed in the same script as the
//! page. History members are fixed-width lowercase hex ids, so `REV` gives
//! time descending, ties by id descending, as the contract wants.
//!
//! **Limits.** Sorted-set scores are doubles: integers are exact up to 2^53.
//! `record` checks, in its script, that no period score would leave
//! ±(2^53 − 1), and rejects the event (`InvalidInput`, nothing logged) if one
//! would. Scores leave Redis as the strings Redis formats, never via Lua numbers.
//!
//! **Expiry.** Day, week and month boards get `EXPIREAT` = the later of their
//! period's end and now, plus [`RedisConfig::board_retention`](crate::RedisConfig::board_retention),
//! refreshed on every write; the log and all-time boards never expire.
//! `rebuild(period)` recomputes a period's boards from the log in steps of
//! [`RedisConfig::rebuild_chunk`](crate::RedisConfig::rebuild_chunk) log
//! entries, one script each, so the server is never blocked for long: the
//! steps fill `rbb:<u|e>:<period>` and keep a cursor in `rb:<period>`; `record`
//! adds events behind the cursor to those boards too, and the last step
//! swaps them in with `RENAME`. Readers see the old boards until then. A
//! second rebuild of the same period takes over (the first returns a
//! temporary `Conflict`); an abandoned one's keys expire after an hour.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use palisade_core::backend::check::check_ranked_limit;
use palisade_core::reputation::{
    Period, Ranked, Recorded, ReputationEvent, Subject, SubjectKind, MAX_RANKED, MAX_SCORE,
};
use palisade_core::time::{truncate_ms, TimeRange};
use palisade_core::{Capabilities, Error, ErrorKind, ReputationRepo, Result};
use uuid::Uuid;

use crate::clients::Reply;
use crate::error::corrupt;
use crate::{capabilities, key, prefix, scripts, RedisBackend, Store};

/// Redis [`ReputationRepo`] (see the module docs).
#[derive(Clone)]
pub struct RedisReputationRepo {
    backend: RedisBackend,
    prefix: String,
}

fn kind_char(kind: SubjectKind) -> &'static str {
    match kind {
        SubjectKind::User => "u",
        SubjectKind::Engine => "e",
    }
}

fn hex(id: Uuid) -> String {
    id.simple().to_string()
}

impl RedisReputationRepo {
    /// The reputation repo of `backend`'s namespace.
    pub fn new(backend: RedisBackend) -> Self {
        let prefix = prefix(&backend.namespace, Store::Reputation);
        RedisReputationRepo { backend, prefix }
    }

    fn ev_prefix(&self) -> String {
        format!("{}ev:", self.prefix)
    }

    fn log_key(&self) -> Vec<u8> {
        key(&self.prefix, b"log")
    }

    fn history_key(&self, s: &Subject) -> Vec<u8> {
        key(&self.prefix, format!("h:{}:{}", kind_char(s.kind), s.id).as_bytes())
    }

    fn board_key(&self, kind: SubjectKind, period: Period) -> Vec<u8> {
        key(&self.prefix, format!("b:{}:{}", kind_char(kind), period.key()).as_bytes())
    }

    /// The marker of a rebuild of `period` under way (token and cursor).
    fn rebuild_marker_key(&self, period: Period) -> Vec<u8> {
        key(&self.prefix, format!("rb:{}", period.key()).as_bytes())
    }

    /// The board a rebuild of `period` fills before it replaces the live one.
    fn rebuild_board_key(&self, kind: SubjectKind, period: Period) -> Vec<u8> {
        key(&self.prefix, format!("rbb:{}:{}", kind_char(kind), period.key()).as_bytes())
    }

    /// `EXPIREAT` seconds for a board of `period`, or '' to keep it.
    fn expire_at(&self, period: Period) -> Result<String> {
        let (Some(retention), Some(end)) = (self.backend.options.board_retention, period.range()?.to) else {
            return Ok(String::new());
        };
        let from = end.max(Utc::now());
        let retention = chrono::TimeDelta::from_std(retention).unwrap_or(chrono::TimeDelta::MAX);
        Ok(from.checked_add_signed(retention).map(|t| t.timestamp().to_string()).unwrap_or_default())
    }

    /// A score from a board's negated score string.
    fn score(&self, reply: &Reply) -> Result<i64> {
        let neg = reply.double().map_err(|_| corrupt(self.backend.backend(), "board score is not a number"))?;
        let score = -neg;
        if !score.is_finite() || score.fract() != 0.0 || score.abs() > MAX_SCORE as f64 {
            return Err(corrupt(self.backend.backend(), "board score is not an integer within 2^53"));
        }
        Ok(score as i64)
    }

    /// Ranked entries of a page `{member, negated score, …}` starting at board index `start`,
    /// whose first entry has `higher` entries scoring strictly more.
    fn ranked(&self, kind: SubjectKind, start: u64, higher: u64, page: Vec<Reply>) -> Result<Vec<Ranked>> {
        let mut out: Vec<Ranked> = Vec::with_capacity(page.len() / 2);
        for (i, pair) in page.chunks(2).enumerate() {
            let [member, score] = pair else { return Err(corrupt(self.backend.backend(), "odd WITHSCORES reply")) };
            let id = member.text().map_err(|_| corrupt(self.backend.backend(), "subject id is not UTF-8"))?.to_owned();
            let score = self.score(score)?;
            let rank = match out.last() {
                None => higher + 1,
                Some(prev) if prev.score == score => prev.rank,
                Some(_) => start + i as u64 + 1,
            };
            out.push(Ranked { subject: Subject { kind, id }, score, rank });
        }
        Ok(out)
    }

    fn count(&self, r: &Reply) -> Result<u64> {
        r.int()
            .ok()
            .and_then(|n| u64::try_from(n).ok())
            .ok_or_else(|| corrupt(self.backend.backend(), "negative count"))
    }

    fn ms_bound(t: Option<DateTime<Utc>>, exclusive: bool, open: &str) -> String {
        match t {
            None => open.to_owned(),
            Some(t) if exclusive => format!("({}", truncate_ms(t).timestamp_millis()),
            Some(t) => truncate_ms(t).timestamp_millis().to_string(),
        }
    }
}

#[async_trait]
impl palisade_core::Store for RedisReputationRepo {
    fn backend(&self) -> &'static str {
        self.backend.backend()
    }

    fn capabilities(&self) -> Capabilities {
        capabilities()
    }

    async fn ping(&self) -> Result<()> {
        self.backend.ping().await
    }
}

#[async_trait]
impl ReputationRepo for RedisReputationRepo {
    async fn record(&self, event: ReputationEvent) -> Result<Recorded> {
        event.validate(&self.backend.options.policy).map_err(self.backend.tagged("record"))?;
        let event = ReputationEvent { at: truncate_ms(event.at), ..event };
        let [all, day, week, month] = Period::all_containing(event.at);
        let kind = event.subject.kind;
        let json = serde_json::to_vec(&event)
            .map_err(|e| Error::from(e).with_backend(self.backend.backend()).with_op("record"))?;
        let keys = vec![
            key(&self.ev_prefix(), hex(event.id).as_bytes()),
            self.log_key(),
            self.history_key(&event.subject),
            self.board_key(kind, all),
            self.board_key(kind, day),
            self.board_key(kind, week),
            self.board_key(kind, month),
            self.rebuild_marker_key(all),
            self.rebuild_marker_key(day),
            self.rebuild_marker_key(week),
            self.rebuild_marker_key(month),
            self.rebuild_board_key(kind, all),
            self.rebuild_board_key(kind, day),
            self.rebuild_board_key(kind, week),
            self.rebuild_board_key(kind, month),
        ];
        let expiry = |p| self.expire_at(p).map_err(self.backend.tagged("record"));
        let args = vec![
            hex(event.id).into_bytes(),
            json,
            event.at.timestamp_millis().to_string().into_bytes(),
            kind_char(kind).as_bytes().to_vec(),
            event.subject.id.clone().into_bytes(),
            event.delta.to_string().into_bytes(),
            (-event.delta).to_string().into_bytes(),
            expiry(day)?.into_bytes(),
            expiry(week)?.into_bytes(),
            expiry(month)?.into_bytes(),
            MAX_SCORE.to_string().into_bytes(),
        ];
        let reply = self.backend.client.eval("record", &scripts::REPUTATION_RECORD, keys, args).await?;
        let parts = reply.array().map_err(|e| e.with_backend(self.backend.backend()).with_op("record"))?;
        match parts.as_slice() {
            [code, score] if matches!(code.int(), Ok(0 | 1)) => Ok(Recorded {
                score: self.score(score).map_err(|e| e.with_op("record"))?,
                duplicate: matches!(code.int(), Ok(1)),
            }),
            [code] if matches!(code.int(), Ok(2)) => {
                Err(Error::invalid("score would leave ±(2^53 - 1)")).map_err(self.backend.tagged("record"))
            }
            _ => Err(corrupt(self.backend.backend(), "record script reply").with_op("record")),
        }
    }

    async fn score(&self, subject: &Subject) -> Result<i64> {
        subject.validate().map_err(self.backend.tagged("score"))?;
        let cmd = crate::Cmd::keyed("ZSCORE", self.board_key(subject.kind, Period::AllTime)).arg(&subject.id);
        let reply = self.backend.client.call("score", cmd).await?;
        if reply.is_nil() {
            return Ok(0);
        }
        self.score(&reply).map_err(|e| e.with_op("score"))
    }

    async fn history(&self, subject: &Subject, range: TimeRange, limit: usize) -> Result<Vec<ReputationEvent>> {
        subject.validate().map_err(self.backend.tagged("history"))?;
        range.validate().map_err(self.backend.tagged("history"))?;
        check_ranked_limit(limit).map_err(self.backend.tagged("history"))?;
        let args = vec![
            self.ev_prefix().into_bytes(),
            Self::ms_bound(range.to, true, "+inf").into_bytes(),
            Self::ms_bound(range.from, false, "-inf").into_bytes(),
            limit.to_string().into_bytes(),
        ];
        let keys = vec![self.history_key(subject)];
        let reply = self.backend.client.eval("history", &scripts::REPUTATION_HISTORY, keys, args).await?;
        let items = reply.array().map_err(|e| e.with_backend(self.backend.backend()).with_op("history"))?;
        items
            .iter()
            .filter(|r| !r.is_nil())
            .map(|r| {
                let bytes = r.bytes().map_err(|e| e.with_backend(self.backend.backend()))?;
                let v = palisade_core::backend::stored::decode_stored_json(bytes)?;
                serde_json::from_value(v).map_err(|e| Error::from(e).with_backend(self.backend.backend()))
            })
            .collect::<Result<_>>()
            .map_err(|e| e.with_op("history"))
    }

    async fn leaderboard(&self, kind: SubjectKind, period: Period, offset: usize, limit: usize) -> Result<Vec<Ranked>> {
        period.validate().map_err(self.backend.tagged("leaderboard"))?;
        check_ranked_limit(limit).map_err(self.backend.tagged("leaderboard"))?;
        // Sorted-set ranks are i64 (and Lua numbers doubles): no board holds
        // anything past 2^53, so a page from there is empty.
        let Some(last) = offset.checked_add(limit - 1).filter(|l| *l < MAX_SCORE as usize) else {
            return Ok(Vec::new());
        };
        let args = vec![offset.to_string().into_bytes(), last.to_string().into_bytes()];
        let keys = vec![self.board_key(kind, period)];
        let reply = self.backend.client.eval("leaderboard", &scripts::REPUTATION_PAGE, keys, args).await?;
        let parts = reply.array().map_err(|e| e.with_backend(self.backend.backend()).with_op("leaderboard"))?;
        let mut parts = parts.into_iter();
        let (Some(higher), Some(page)) = (parts.next(), parts.next()) else { return Ok(Vec::new()) };
        let higher = self.count(&higher)?;
        let page = page.array().map_err(|e| e.with_backend(self.backend.backend()))?;
        self.ranked(kind, offset as u64, higher, page).map_err(|e| e.with_op("leaderboard"))
    }

    async fn rank(&self, subject: &Subject, period: Period) -> Result<Option<Ranked>> {
        subject.validate().map_err(self.backend.tagged("rank"))?;
        period.validate().map_err(self.backend.tagged("rank"))?;
        let keys = vec![self.board_key(subject.kind, period)];
        let args = vec![subject.id.clone().into_bytes()];
        let reply = self.backend.client.eval("rank", &scripts::REPUTATION_RANK, keys, args).await?;
        let parts = reply.array().map_err(|e| e.with_backend(self.backend.backend()).with_op("rank"))?;
        let [score, higher] = parts.as_slice() else { return Ok(None) };
        let score = self.score(score).map_err(|e| e.with_op("rank"))?;
        let rank = self.count(higher).map_err(|e| e.with_op("rank"))? + 1;
        Ok(Some(Ranked { subject: subject.clone(), score, rank }))
    }

    async fn around(&self, subject: &Subject, period: Period, k: usize) -> Result<Vec<Ranked>> {
        subject.validate().map_err(self.backend.tagged("around"))?;
        period.validate().map_err(self.backend.tagged("around"))?;
        if k > MAX_RANKED {
            return Err(Error::invalid(format!("k must be at most {MAX_RANKED}")))
                .map_err(self.backend.tagged("around"));
        }
        let keys = vec![self.board_key(subject.kind, period)];
        let args = vec![subject.id.clone().into_bytes(), k.to_string().into_bytes()];
        let reply = self.backend.client.eval("around", &scripts::REPUTATION_AROUND, keys, args).await?;
        let parts = reply.array().map_err(|e| e.with_backend(self.backend.backend()).with_op("around"))?;
        let mut parts = parts.into_iter();
        let (Some(start), Some(higher), Some(page)) = (parts.next(), parts.next(), parts.next()) else {
            return Ok(Vec::new());
        };
        let start = self.count(&start)?;
        let higher = self.count(&higher)?;
        let page = page.array().map_err(|e| e.with_backend(self.backend.backend()))?;
        self.ranked(subject.kind, start, higher, page).map_err(|e| e.with_op("around"))
    }

    async fn rebuild(&self, period: Period) -> Result<u64> {
        period.validate().map_err(self.backend.tagged("rebuild"))?;
        let range = period.range().map_err(self.backend.tagged("rebuild"))?;
        let token = Uuid::new_v4().simple().to_string();
        let marker = self.rebuild_marker_key(period);
        let (user, engine) = (SubjectKind::User, SubjectKind::Engine);
        // Cursor before the period's first entry; AllTime starts before any time.
        let start = Self::ms_bound(range.from, false, "-1e300");
        let keys = vec![marker.clone(), self.rebuild_board_key(user, period), self.rebuild_board_key(engine, period)];
        let args = vec![token.clone().into_bytes(), start.into_bytes()];
        self.backend.client.eval("rebuild", &scripts::REPUTATION_REBUILD_BEGIN, keys, args).await?;
        let keys = vec![
            marker,
            self.log_key(),
            self.rebuild_board_key(user, period),
            self.rebuild_board_key(engine, period),
            self.board_key(user, period),
            self.board_key(engine, period),
        ];
        let below = Self::ms_bound(range.from, true, "");
        let end = Self::ms_bound(range.to, false, "");
        let args = vec![
            token.into_bytes(),
            below.into_bytes(),
            end.into_bytes(),
            self.ev_prefix().into_bytes(),
            self.backend.options.rebuild_chunk.to_string().into_bytes(),
            self.expire_at(period).map_err(self.backend.tagged("rebuild"))?.into_bytes(),
        ];
        loop {
            let reply = self
                .backend
                .client
                .eval("rebuild", &scripts::REPUTATION_REBUILD_STEP, keys.clone(), args.clone())
                .await?;
            let parts = reply.array().map_err(|e| e.with_backend(self.backend.backend()).with_op("rebuild"))?;
            match parts.first().map(Reply::text) {
                Some(Ok("more")) => continue,
                Some(Ok("done")) => {
                    let count = parts.get(1).ok_or_else(|| corrupt(self.backend.backend(), "rebuild reply"))?;
                    return self.count(count).map_err(|e| e.with_op("rebuild"));
                }
                Some(Ok("superseded")) => {
                    return Err(Error::new(
                        ErrorKind::Conflict,
                        "another rebuild of this period took over, or this one was idle for an hour",
                    )
                    .set_temporary(true)
                    .with_backend(self.backend.backend())
                    .with_op("rebuild"));
                }
                Some(Ok("lost")) => {
                    return Err(Error::new(ErrorKind::Conflict, "the log changed under the rebuild; run it again")
                        .set_temporary(true)
                        .with_backend(self.backend.backend())
                        .with_op("rebuild"));
                }
                _ => return Err(corrupt(self.backend.backend(), "rebuild reply").with_op("rebuild")),
            }
        }
    }
}
