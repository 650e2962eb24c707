//! `ReputationRepo` on an in-process event log with per-period ordered boards.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};

use async_trait::async_trait;
use palisade_core::backend::check::check_ranked_limit;
use palisade_core::reputation::{
    Period, Ranked, Recorded, ReputationEvent, Subject, SubjectKind, MAX_RANKED, MAX_SCORE,
};
use palisade_core::time::TimeRange;
use palisade_core::{Capabilities, Error, InputPolicy, Namespace, ReputationRepo, Result, Store};
use parking_lot::Mutex;
use uuid::Uuid;

use crate::capabilities;
use crate::error::{tagged, Fault};

/// One leaderboard: scores by subject id, and the same ordered for ranking.
#[derive(Default)]
struct Board {
    scores: HashMap<String, i64>,
    order: BTreeSet<(Reverse<i64>, String)>,
}

impl Board {
    fn add(&mut self, id: &str, delta: i64) {
        let old = self.scores.get(id).copied();
        if let Some(old) = old {
            self.order.remove(&(Reverse(old), id.to_owned()));
        }
        let new = old.unwrap_or(0) + delta;
        self.scores.insert(id.to_owned(), new);
        self.order.insert((Reverse(new), id.to_owned()));
    }

    fn would_fit(&self, id: &str, delta: i64) -> bool {
        let old = self.scores.get(id).copied().unwrap_or(0);
        old.checked_add(delta).is_some_and(|s| s.unsigned_abs() <= MAX_SCORE as u64)
    }

    /// Entries from index `offset`, with competition ranks.
    fn ranked(&self, kind: SubjectKind, offset: usize, limit: usize) -> Vec<Ranked> {
        let mut out = Vec::with_capacity(limit.min(self.order.len()));
        let mut rank = 0u64;
        let mut prev: Option<i64> = None;
        for (i, (Reverse(score), id)) in self.order.iter().enumerate() {
            if prev != Some(*score) {
                rank = i as u64 + 1;
                prev = Some(*score);
            }
            if i >= offset.saturating_add(limit) {
                break;
            }
            if i >= offset {
                out.push(Ranked { subject: Subject { kind, id: id.clone() }, score: *score, rank });
            }
        }
        out
    }

    fn index_of(&self, id: &str) -> Option<usize> {
        let score = *self.scores.get(id)?;
        Some(self.order.range(..(Reverse(score), id.to_owned())).count())
    }
}

#[derive(Default)]
struct State {
    log: HashMap<Uuid, ReputationEvent>,
    by_subject: HashMap<Subject, Vec<Uuid>>,
    boards: HashMap<(SubjectKind, Period), Board>,
}

impl State {
    fn all_time(&self, subject: &Subject) -> i64 {
        self.boards.get(&(subject.kind, Period::AllTime)).and_then(|b| b.scores.get(&subject.id).copied()).unwrap_or(0)
    }
}

/// In-memory [`ReputationRepo`].
pub struct MemoryReputationRepo {
    namespace: Namespace,
    state: Mutex<State>,
    policy: InputPolicy,
}

impl MemoryReputationRepo {
    /// The namespace this store is confined to.
    pub fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    /// An empty repo for `namespace`.
    pub fn new(namespace: Namespace) -> Self {
        MemoryReputationRepo::with_policy(namespace, InputPolicy::default())
    }

    /// An empty repo for `namespace` that holds reasons to `policy`.
    pub fn with_policy(namespace: Namespace, policy: InputPolicy) -> Self {
        MemoryReputationRepo { namespace, state: Mutex::new(State::default()), policy }
    }
}

#[async_trait]
impl Store for MemoryReputationRepo {
    fn backend(&self) -> &'static str {
        crate::BACKEND
    }

    fn capabilities(&self) -> Capabilities {
        capabilities()
    }

    async fn ping(&self) -> Result<()> {
        Ok(())
    }
}

#[async_trait]
impl ReputationRepo for MemoryReputationRepo {
    async fn record(&self, event: ReputationEvent) -> Result<Recorded> {
        let run = || {
            event.validate(&self.policy)?;
            let event = ReputationEvent { at: palisade_core::time::truncate_ms(event.at), ..event };
            let mut st = self.state.lock();
            if st.log.contains_key(&event.id) {
                return Ok(Recorded { score: st.all_time(&event.subject), duplicate: true });
            }
            let periods = Period::all_containing(event.at);
            let fits = periods.iter().all(|p| {
                st.boards.get(&(event.subject.kind, *p)).is_none_or(|b| b.would_fit(&event.subject.id, event.delta))
            });
            if !fits {
                return Err(Fault::ScoreRange.into());
            }
            for p in periods {
                st.boards.entry((event.subject.kind, p)).or_default().add(&event.subject.id, event.delta);
            }
            st.by_subject.entry(event.subject.clone()).or_default().push(event.id);
            let score = st.all_time(&event.subject);
            st.log.insert(event.id, event);
            Ok(Recorded { score, duplicate: false })
        };
        run().map_err(tagged("record"))
    }

    async fn score(&self, subject: &Subject) -> Result<i64> {
        subject.validate().map_err(tagged("score"))?;
        Ok(self.state.lock().all_time(subject))
    }

    async fn history(&self, subject: &Subject, range: TimeRange, limit: usize) -> Result<Vec<ReputationEvent>> {
        let run = || {
            subject.validate()?;
            range.validate()?;
            check_ranked_limit(limit)?;
            let st = self.state.lock();
            let mut events: Vec<ReputationEvent> = st
                .by_subject
                .get(subject)
                .into_iter()
                .flatten()
                .filter_map(|id| st.log.get(id))
                .filter(|e| range.contains(e.at))
                .cloned()
                .collect();
            events.sort_by(|a, b| b.at.cmp(&a.at).then_with(|| b.id.cmp(&a.id)));
            events.truncate(limit);
            Ok(events)
        };
        run().map_err(tagged("history"))
    }

    async fn leaderboard(&self, kind: SubjectKind, period: Period, offset: usize, limit: usize) -> Result<Vec<Ranked>> {
        let run = || {
            period.validate()?;
            check_ranked_limit(limit)?;
            let st = self.state.lock();
            Ok(st.boards.get(&(kind, period)).map(|b| b.ranked(kind, offset, limit)).unwrap_or_default())
        };
        run().map_err(tagged("leaderboard"))
    }

    async fn rank(&self, subject: &Subject, period: Period) -> Result<Option<Ranked>> {
        let run = || {
            subject.validate()?;
            period.validate()?;
            let st = self.state.lock();
            let Some(board) = st.boards.get(&(subject.kind, period)) else { return Ok(None) };
            let Some(&score) = board.scores.get(&subject.id) else { return Ok(None) };
            let higher = board.order.range(..(Reverse(score), String::new())).count() as u64;
            Ok(Some(Ranked { subject: subject.clone(), score, rank: higher + 1 }))
        };
        run().map_err(tagged("rank"))
    }

    async fn around(&self, subject: &Subject, period: Period, k: usize) -> Result<Vec<Ranked>> {
        let run = || {
            subject.validate()?;
            period.validate()?;
            if k > MAX_RANKED {
                return Err(Error::invalid(format!("k must be at most {MAX_RANKED}")));
            }
            let st = self.state.lock();
            let Some(board) = st.boards.get(&(subject.kind, period)) else { return Ok(Vec::new()) };
            let Some(i) = board.index_of(&subject.id) else { return Ok(Vec::new()) };
            let start = i.saturating_sub(k);
            Ok(board.ranked(subject.kind, start, i - start + k + 1))
        };
        run().map_err(tagged("around"))
    }

    async fn rebuild(&self, period: Period) -> Result<u64> {
        period.validate().map_err(tagged("rebuild"))?;
        let mut st = self.state.lock();
        let mut rebuilt: HashMap<SubjectKind, Board> = HashMap::new();
        for e in st.log.values().filter(|e| period.contains(e.at)) {
            rebuilt.entry(e.subject.kind).or_default().add(&e.subject.id, e.delta);
        }
        st.boards.retain(|(_, p), _| *p != period);
        let mut subjects = 0;
        for (kind, board) in rebuilt {
            subjects += board.scores.len() as u64;
            st.boards.insert((kind, period), board);
        }
        Ok(subjects)
    }
}
