//! Getting back to the primary: the jittered probe, and the replay that drains
//! the buffer in rounds while writers go on, then switches back in one short
//! final step (see the [module docs](super), "Probing" and "Replay does not
//! stop writers").

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

use super::{Degradable, DegradeConfig, Degraded, Primary, Rejected, Replay, Shared};
use crate::error::{Error, ErrorKind, Result};

/// Rounds in a row in which the buffer did not shrink before the replay stops
/// letting writers go on (they out-write it).
const STALLED_ROUNDS: u32 = 3;

/// Longest a round replays before the buffer is trimmed and judged again, so
/// that writers out-writing a slow primary are noticed within
/// `STALLED_ROUNDS` × this, not after thousands of entries.
const ROUND_TIME: Duration = Duration::from_millis(250);

impl<T: ?Sized + Replay + 'static> Degradable<T> {
    pub(super) fn spawn_probe(&self) {
        if self.shared.probing.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak: Weak<Shared<T::Op>> = Arc::downgrade(&self.shared);
        let primary = Arc::clone(&self.primary);
        let config = self.config.clone();
        let label = self.label;
        tokio::spawn(async move {
            let mut backoff = config.probe_initial.min(config.probe_max);
            loop {
                tokio::time::sleep(jittered(backoff)).await;
                let Some(shared) = weak.upgrade() else { return };
                match recover(&shared, &primary, label, &config).await {
                    Ok(()) => {
                        shared.probing.store(false, Ordering::Release);
                        // A failover that raced with the end of this probe found
                        // `probing` still set and spawned nothing: keep going.
                        if shared.degraded.load(Ordering::Acquire) && !shared.probing.swap(true, Ordering::AcqRel) {
                            backoff = config.probe_initial.min(config.probe_max);
                            continue;
                        }
                        return;
                    }
                    Err(e) => {
                        tracing::debug!(store = label, error = %e, "palisade: primary still down");
                        backoff = backoff.saturating_mul(2).min(config.probe_max);
                    }
                }
            }
        });
    }

    /// Probes and replays now, without waiting for the background probe;
    /// returns `Ok` once healthy again. Waits for a recovery already running.
    /// Useful for tests and graceful shutdown.
    pub async fn try_recover(&self) -> Result<()> {
        recover(&self.shared, &self.primary, self.label, &self.config).await
    }
}

/// The wait before the next probe: between half and all of `backoff`.
pub(super) fn jittered(backoff: Duration) -> Duration {
    backoff.mul_f64(rand::thread_rng().gen_range(0.5..=1.0))
}

/// Pings the primary, replays the buffer in order, and switches back once the
/// buffer is empty. Entries leave the buffer only after the primary confirmed
/// them, so an interrupted replay resumes where it stopped.
async fn recover<T: ?Sized + Replay>(
    shared: &Shared<T::Op>,
    primary: &Primary<T>,
    label: &'static str,
    config: &DegradeConfig,
) -> Result<()> {
    if !shared.degraded.load(Ordering::Acquire) {
        return Ok(());
    }
    let _one_at_a_time = shared.recovering.lock().await;
    if !shared.degraded.load(Ordering::Acquire) {
        return Ok(());
    }
    let primary = match primary.connected().await {
        Ok(p) => p,
        Err(e) => {
            // Health shows the latest reason; a refusal that is no outage
            // (bad credentials, a failed migration) is worth an operator's eye.
            note_reason(shared, &e);
            if !e.is_backend_failure() {
                tracing::error!(store = label, error = %e, "palisade: the primary refuses to connect; still serving from the memory fallback");
            }
            return Err(e);
        }
    };
    bounded(config.replay_timeout, "probe timed out", primary.probe()).await?;
    Replayer { shared, primary, label, config, per_entry: None, replayed: 0 }.run().await
}

fn note_reason<Op>(shared: &Shared<Op>, e: &Error) {
    if let Some(status) = shared.status.lock().as_mut() {
        status.1 = e.to_string();
    }
}

async fn bounded<R>(
    limit: Duration,
    what: &'static str,
    call: impl std::future::Future<Output = Result<R>>,
) -> Result<R> {
    match tokio::time::timeout(limit, call).await {
        Ok(r) => r,
        Err(_) => Err(Error::new(ErrorKind::Timeout, what)),
    }
}

/// One recovery's replay of the buffer into a primary that answered its ping.
struct Replayer<'a, T: ?Sized + Replay> {
    shared: &'a Shared<T::Op>,
    primary: &'a T,
    label: &'static str,
    config: &'a DegradeConfig,
    /// How long one replayed entry took in the last round.
    per_entry: Option<Duration>,
    replayed: usize,
}

impl<T: ?Sized + Replay> Replayer<'_, T> {
    /// Rounds without holding writers back until the rest fits the lock
    /// budget (or writers out-write the replay), then the final step.
    async fn run(mut self) -> Result<()> {
        let mut stalled = 0;
        loop {
            let (batch, before) = {
                let mut state = self.shared.state.lock().await;
                let Some(degraded) = state.as_mut() else { return Ok(()) };
                self.drop_settled(degraded);
                let batch: Vec<Arc<T::Op>> =
                    degraded.buffer.iter().take(self.config.replay_batch.max(1)).cloned().collect();
                (batch, degraded.buffer.len())
            };
            if stalled >= STALLED_ROUNDS || self.fits_budget(before) {
                if self.finish(stalled >= STALLED_ROUNDS).await? {
                    return Ok(());
                }
                continue;
            }
            let outcome = self.replay_round(&batch).await;
            let after = self.forget().await;
            outcome?;
            stalled = if after >= before { stalled + 1 } else { 0 };
        }
    }

    /// Whether `remaining` entries are expected to replay within the budget.
    fn fits_budget(&self, remaining: usize) -> bool {
        let Some(per_entry) = self.per_entry else { return remaining == 0 };
        let n = u32::try_from(remaining).unwrap_or(u32::MAX);
        per_entry.checked_mul(n).is_some_and(|t| t <= self.config.replay_lock_budget)
    }

    fn observe(&mut self, took: Duration, entries: usize) {
        if entries > 0 {
            self.per_entry = Some(took / u32::try_from(entries).unwrap_or(u32::MAX));
        }
    }

    /// Replays `batch` (or as much of it as fits [`ROUND_TIME`]) while
    /// writers go on, counting each settled entry in `Shared::settled` as
    /// soon as it is settled (no await in between); returns the failure that
    /// stopped the round, if any.
    async fn replay_round(&mut self, batch: &[Arc<T::Op>]) -> Result<()> {
        let started = Instant::now();
        let mut done = 0;
        while done < batch.len() {
            if done > 0 && started.elapsed() >= ROUND_TIME {
                break;
            }
            let rest = &batch[done..];
            let n = self.group_len(rest);
            self.replay_group(&rest[..n]).await?;
            done += n;
        }
        self.observe(started.elapsed(), done);
        Ok(())
    }

    /// Drops the settled entries from the front of the buffer; returns how
    /// many are left.
    async fn forget(&self) -> usize {
        let mut state = self.shared.state.lock().await;
        let Some(degraded) = state.as_mut() else { return 0 };
        self.drop_settled(degraded);
        degraded.buffer.len()
    }

    /// Removes the entries counted in `Shared::settled` (also those a
    /// cancelled recovery left). Only the single recovery pops, and writers
    /// push at the back, so they are still in front. Caller holds `state`.
    fn drop_settled(&self, degraded: &mut Degraded<T::Op>) {
        let settled = self.shared.settled.swap(0, Ordering::AcqRel);
        debug_assert!(settled <= degraded.buffer.len());
        degraded.buffer.drain(..settled.min(degraded.buffer.len()));
        self.shared.buffered.store(degraded.buffer.len(), Ordering::Release);
    }

    /// Holds writers back, replays the rest and switches to the primary.
    /// Unless `forced`, gives writers their turn again (returns `false`) once
    /// the lock budget is spent with entries left.
    async fn finish(&mut self, forced: bool) -> Result<bool> {
        let mut state = self.shared.state.lock().await;
        let Some(degraded) = state.as_mut() else { return Ok(true) };
        self.drop_settled(degraded);
        let started = Instant::now();
        let mut done = 0;
        while !degraded.buffer.is_empty() {
            if !forced && done > 0 && started.elapsed() >= self.config.replay_lock_budget {
                self.observe(started.elapsed(), done);
                return Ok(false);
            }
            let front: Vec<Arc<T::Op>> =
                degraded.buffer.iter().take(self.config.replay_batch.max(1)).cloned().collect();
            let n = self.group_len(&front);
            let replayed = self.replay_group(&front[..n]).await;
            // Also after a failure: what settled before it leaves the buffer now.
            self.drop_settled(degraded);
            replayed?;
            done += n;
        }
        let since = degraded.since;
        *state = None;
        *self.shared.status.lock() = None;
        self.shared.degraded.store(false, Ordering::Release);
        tracing::info!(store = self.label, replayed = self.replayed, degraded_since = %since, "palisade: primary recovered; switched back");
        Ok(true)
    }

    /// How many entries from the front of `ops` (not empty) replay as one
    /// call: only idempotent entries are grouped (a group may be applied
    /// again whole, see [`Self::replay_group`]).
    fn group_len(&self, ops: &[Arc<T::Op>]) -> usize {
        if !self.config.replay_grouped {
            return 1;
        }
        let n = T::group_len(ops).clamp(1, ops.len());
        if ops[..n].iter().all(|op| T::idempotent(op)) {
            n
        } else {
            1
        }
    }

    /// Counts `n` more entries from the front of the buffer as settled, at
    /// once (no await between settling and counting).
    fn settle(&mut self, n: usize) {
        self.shared.settled.fetch_add(n, Ordering::AcqRel);
        self.replayed += n;
    }

    /// Replays a group of entries ([`Replay::group_len`]) as one call and
    /// counts what settled in `Shared::settled`; `Err` when the primary
    /// failed again. A group is counted only once the primary confirmed it
    /// whole (one that failed partly applied is applied again whole:
    /// grouped entries are idempotent). A group the primary refuses, or
    /// that times out, is replayed entry by entry, each counted as it
    /// settles, so a refusal rejects only the entry it concerns and is never
    /// reported twice.
    async fn replay_group(&mut self, group: &[Arc<T::Op>]) -> Result<()> {
        if let [op] = group {
            self.replay(op).await?;
            self.settle(1);
            return Ok(());
        }
        match bounded(self.config.replay_timeout, "replayed writes timed out", self.primary.replay_group(group)).await {
            Ok(()) => {
                self.settle(group.len());
                Ok(())
            }
            Err(e) if e.kind() == ErrorKind::Unavailable => {
                note_reason(self.shared, &e);
                Err(e)
            }
            Err(e) => {
                tracing::debug!(store = self.label, error = %e, "palisade: a replayed group failed; replaying its writes one by one");
                for op in group {
                    self.replay(op).await?;
                    self.settle(1);
                }
                Ok(())
            }
        }
    }

    /// Replays one entry. `Ok` once it is settled — applied, or refused for
    /// good and moved to the rejected list; `Err` when the primary failed
    /// again and the entry must stay in the buffer.
    async fn replay(&self, op: &T::Op) -> Result<()> {
        let label = self.label;
        match bounded(self.config.replay_timeout, "replayed write timed out", self.primary.replay(op)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::Timeout && !T::idempotent(op) => {
                let what = format!("{} (outcome unknown: timed out)", T::describe(op));
                tracing::error!(store = label, write = %what, error = %e, "palisade: replayed write timed out; not retried");
                self.shared.rejected.lock().push(Rejected { what, error: e });
                Ok(())
            }
            Err(e) if e.is_backend_failure() => {
                note_reason(self.shared, &e);
                Err(e)
            }
            Err(e) => {
                let what = T::describe(op);
                tracing::error!(store = label, write = %what, error = %e, "palisade: primary rejected a replayed write");
                self.shared.rejected.lock().push(Rejected { what, error: e });
                Ok(())
            }
        }
    }
}
