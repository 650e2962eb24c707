//! `ReputationRepo` for `Degradable<dyn ReputationRepo>`.

use async_trait::async_trait;

use super::{Degradable, Replay, WritePolicy};
use crate::reputation::{Period, Ranked, Recorded, ReputationEvent, Subject, SubjectKind};
use crate::time::TimeRange;
use crate::{ReputationRepo, Result};

#[async_trait]
impl<'a> Replay for dyn ReputationRepo + 'a {
    type Op = ReputationEvent;

    async fn replay(&self, op: &ReputationEvent) -> Result<()> {
        self.record(op.clone()).await.map(|_| ())
    }

    async fn probe(&self) -> Result<()> {
        self.ping().await
    }

    fn describe(op: &ReputationEvent) -> String {
        format!("reputation event {} for {}", op.id, op.subject)
    }

    fn idempotent(_: &ReputationEvent) -> bool {
        true
    }
}

#[async_trait]
impl ReputationRepo for Degradable<dyn ReputationRepo> {
    async fn record(&self, event: ReputationEvent) -> Result<Recorded> {
        self.write(
            "record",
            WritePolicy::Idempotent,
            |s| s.record(event.clone()),
            |r: &Recorded| (!r.duplicate).then(|| event.clone()),
        )
        .await
    }

    async fn score(&self, subject: &Subject) -> Result<i64> {
        self.read("score", |s| s.score(subject)).await
    }

    async fn history(&self, subject: &Subject, range: TimeRange, limit: usize) -> Result<Vec<ReputationEvent>> {
        self.read("history", |s| s.history(subject, range, limit)).await
    }

    async fn leaderboard(&self, kind: SubjectKind, period: Period, offset: usize, limit: usize) -> Result<Vec<Ranked>> {
        self.read("leaderboard", |s| s.leaderboard(kind, period, offset, limit)).await
    }

    async fn rank(&self, subject: &Subject, period: Period) -> Result<Option<Ranked>> {
        self.read("rank", |s| s.rank(subject, period)).await
    }

    async fn around(&self, subject: &Subject, period: Period, k: usize) -> Result<Vec<Ranked>> {
        self.read("around", |s| s.around(subject, period, k)).await
    }

    async fn rebuild(&self, period: Period) -> Result<u64> {
        self.read("rebuild", |s| s.rebuild(period)).await
    }
}
