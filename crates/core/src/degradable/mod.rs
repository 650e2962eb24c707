//! Degraded mode: [`Degradable`] serves a trait from a primary store and fails
//! over to a secondary (the memory backend) while the primary is down.
//!
//! # Contract
//! - **Failover.** A call that fails on the primary with `Unavailable` or
//!   `Timeout` switches the wrapper to *degraded* and is served again by the
//!   secondary. [`Degradable::health`] then reports
//!   [`Health::Degraded`] with the time, the reason and the number of buffered
//!   writes. Other errors (bad input, conflicts) are returned as they are.
//! - **Reads while degraded** are served by the secondary, which holds only
//!   what was written while degraded — in this outage and earlier ones (it is
//!   not cleared on recovery). Answers that depend on pre-outage data differ
//!   from the primary's: a `replace` of a document only the primary has is
//!   `NotFound`; `update`/`delete` report the secondary's counts (and are
//!   replayed with the same filter against the primary's data); appends report
//!   the secondary's positions and stream versions; `record` reports the
//!   secondary's score. A live tail stays on the store it was opened on.
//! - **Nothing acknowledged is lost.** Writes accepted while degraded — event
//!   batches, reputation events, document writes, and (only when
//!   [`DegradeConfig::replay_sessions`] is set) session writes — are kept in a
//!   bounded buffer and replayed to the primary **in order** and idempotently
//!   (events and reputation events by id; document inserts with the `_id` the
//!   secondary assigned) before the wrapper switches back. A replay
//!   interrupted by another failure resumes at the first entry not confirmed.
//! - **Bounded.** When the buffer holds [`DegradeConfig::buffer_capacity`]
//!   writes, further writes fail with `Unavailable` and change nothing; they
//!   are never dropped silently.
//! - **Writes that cannot be honoured later are refused while degraded** with
//!   `Unavailable` — also on the call whose failure triggers the failover:
//!   appends with an expected version other than `Any` and document replaces
//!   with an expected `_version` (their checks would run against the
//!   secondary, not the primary's data).
//! - **Timeouts of non-idempotent writes** (`update` with `$inc`/`$push`,
//!   session `incr`/`push`) are returned to the caller as `Timeout` instead of
//!   being served again by the secondary: the primary may have applied them,
//!   and replaying would apply them twice. A replayed non-idempotent write
//!   that times out is moved to the rejected list ("outcome unknown") rather
//!   than retried. Document inserts get their `_id` assigned before the first
//!   attempt, so a timed-out insert is replayed with the same id.
//! - **The buffer lives in process memory**: a crash of the service process
//!   while degraded loses the writes not yet replayed. Each replayed call is
//!   bounded by [`DegradeConfig::replay_timeout`].
//! - **Replay rejections.** If the primary rejects a replayed write for a
//!   non-temporary reason (e.g. a unique index conflict with data the secondary
//!   never saw, or a different document under a replayed insert's `_id`), the
//!   write is moved to [`Degradable::take_rejected`], logged at `error` level
//!   and counted in health — visible, never silent.
//! - **Sessions are ephemeral**: by default session writes made while degraded
//!   stay in the secondary and are not replayed; rate-limit hits never are.
//! - **Probing.** While degraded, a background probe pings the primary: first
//!   after [`DegradeConfig::probe_initial`], then backing off exponentially up
//!   to [`DegradeConfig::probe_max`]. Each wait is jittered to between half
//!   and all of the current backoff (so many stores do not probe in step) and
//!   never exceeds `probe_max`: with the defaults the primary is probed at
//!   least once a second, and a primary that comes back is served again within
//!   about a second plus the replay. A probe's ping is bounded by
//!   [`DegradeConfig::replay_timeout`]. Failover and recovery emit `tracing`
//!   events (`warn` and `info`).
//! - **Replay does not stop writers.** Once the primary answers, the buffer is
//!   replayed in rounds of at most [`DegradeConfig::replay_batch`] entries
//!   *without* holding back new calls: they are still served by the secondary,
//!   and new writes join the end of the buffer (counting against its capacity),
//!   behind the entries being replayed, so the primary receives every write in
//!   the order the secondary applied it (per stream, subject, key and overall).
//!   Confirmed entries leave the buffer after each round. Only when the rest is
//!   expected to replay within [`DegradeConfig::replay_lock_budget`] (judged
//!   from the pace of the last round) does the replay hold new writes back,
//!   replay the rest and switch to the primary. So a writer waits for replay at
//!   most about that budget plus one replayed call: a final step that overruns
//!   the budget lets writers go on and continues in rounds. A write held back
//!   by the final step goes to the primary after the switch; if the primary
//!   failed again meanwhile, it fails over like any call. The exception is a
//!   primary that replays slower than writes arrive (the buffer did not shrink
//!   for three rounds in a row; a round replays for at most 250 ms, so this is
//!   noticed within about a second): then the rest is replayed while writers
//!   wait, as the only way to catch up. One recovery runs at a time; `try_recover`
//!   waits for a running one.
//! - **Grouped replay.** Consecutive buffered appends (all without
//!   expectations: appends with expectations are never buffered) replay as
//!   one batch of up to 500 events — the same events in the same order,
//!   idempotent by id — so a replay of single-event appends makes one round
//!   trip per group, not per write, and outpaces the writers it replays. A
//!   group never holds one event id twice (a retried append starts the next
//!   group); a group the primary refuses is replayed write by write, so only
//!   the write at fault is rejected. [`DegradeConfig::replay_grouped`] turns
//!   this off.
//! - **Starting during an outage.** [`Degradable::connecting`] wraps a
//!   primary that could not be connected yet: the wrapper starts degraded
//!   (the connect error is the reason), serves from the secondary, and the
//!   probe connects the primary — then replays and switches back as after
//!   any outage. Identity and capabilities are the primary's, given up front.

mod documents;
mod events;
mod recovery;
mod reputation;
mod sessions;
#[cfg(test)]
mod tests;

pub use documents::DocumentOp;
pub use events::EventOp;
pub use sessions::SessionOp;

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde::Serialize;

use crate::error::{Error, ErrorKind, Result};

/// Tuning of degraded mode; the [module docs](self) say how each setting acts.
#[derive(Debug, Clone)]
pub struct DegradeConfig {
    /// Most writes buffered for replay; beyond it writes fail with `Unavailable`.
    pub buffer_capacity: usize,
    /// First delay between probes of a failed primary (100 ms by default).
    /// Each delay is jittered to between half and all of the current backoff.
    pub probe_initial: Duration,
    /// Longest delay between probes (1 s by default): a primary that comes
    /// back is noticed within about this long.
    pub probe_max: Duration,
    /// Replay session writes too (off by default: sessions are ephemeral).
    pub replay_sessions: bool,
    /// Longest a single replayed call, or a probe's ping, may take before
    /// recovery stops and retries later.
    pub replay_timeout: Duration,
    /// Most buffered writes replayed per round while new writes go on
    /// (256 by default; 0 counts as 1).
    pub replay_batch: usize,
    /// Longest the final replay step, which holds new writes back until the
    /// switch to the primary, is planned to take (50 ms by default).
    pub replay_lock_budget: Duration,
    /// Replay consecutive writes that apply as one (event appends without
    /// expectations, up to 500 events) in one call (on by default: replay
    /// then outpaces writers that each append one event). Off, every write
    /// is replayed on its own.
    pub replay_grouped: bool,
}

impl Default for DegradeConfig {
    fn default() -> Self {
        DegradeConfig {
            buffer_capacity: 100_000,
            probe_initial: Duration::from_millis(100),
            probe_max: Duration::from_secs(1),
            replay_sessions: false,
            replay_timeout: Duration::from_secs(10),
            replay_batch: 256,
            replay_lock_budget: Duration::from_millis(50),
            replay_grouped: true,
        }
    }
}

/// The state of a store as `palisade health` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Health {
    /// Served by the primary.
    Healthy,
    /// Served by the secondary since `since`.
    Degraded {
        /// When the failover happened.
        since: DateTime<Utc>,
        /// The primary's error, as text (no credentials: errors never hold any).
        reason: String,
        /// Writes waiting for replay.
        buffered: usize,
        /// Replayed writes the primary rejected so far.
        rejected: usize,
    },
}

/// A replayed write the primary refused for good.
#[derive(Debug)]
pub struct Rejected {
    /// What was replayed, as text (no stored values).
    pub what: String,
    /// Why the primary refused it.
    pub error: Error,
}

/// How a trait's writes are buffered and replayed. Implemented for the four
/// trait objects (`dyn EventStore`, …).
#[async_trait]
pub trait Replay: Send + Sync {
    /// One buffered write.
    type Op: Send + Sync + fmt::Debug + 'static;
    /// Applies `op` to this (primary) store. `Ok` also when the write turns out
    /// to be there already.
    async fn replay(&self, op: &Self::Op) -> Result<()>;
    /// Checks that this (primary) store answers.
    async fn probe(&self) -> Result<()>;
    /// A short description of `op` without stored values, for logs.
    fn describe(op: &Self::Op) -> String;
    /// Whether applying `op` twice equals applying it once.
    fn idempotent(op: &Self::Op) -> bool;
    /// How many ops from the front of `ops` one [`Replay::replay_group`]
    /// call applies together: 1 (each write on its own) unless the trait
    /// can apply several as one write with the same effect.
    fn group_len(ops: &[Arc<Self::Op>]) -> usize {
        ops.len().min(1)
    }
    /// Applies `ops`, a group [`Replay::group_len`] formed, with the effect
    /// of replaying them in order; all or nothing when it groups them.
    async fn replay_group(&self, ops: &[Arc<Self::Op>]) -> Result<()> {
        for op in ops {
            self.replay(op).await?;
        }
        Ok(())
    }
}

/// How a write behaves around a failover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WritePolicy {
    /// Safe to serve from the secondary and replay later.
    Idempotent,
    /// Applying twice differs from once: a primary `Timeout` is returned to the
    /// caller instead of being served again.
    NotIdempotent,
    /// Its checks need the primary's data: refused with `Unavailable` while
    /// degraded, including on the call that triggers the failover.
    PrimaryOnly,
}

struct Degraded<Op> {
    since: DateTime<Utc>,
    /// Writes not yet confirmed by the primary, oldest first. Writers push at
    /// the back; only the (single) recovery pops from the front.
    buffer: VecDeque<Arc<Op>>,
}

struct Shared<Op> {
    /// Fast path: false while healthy.
    degraded: AtomicBool,
    /// What `health()` reports, readable while a write or replay holds `state`.
    status: parking_lot::Mutex<Option<(DateTime<Utc>, String)>>,
    buffered: AtomicUsize,
    /// Degraded writes hold this across the secondary call and the buffer push,
    /// so the buffer order is the order the secondary applied them. Replay
    /// holds it only briefly, except for its final step.
    state: tokio::sync::Mutex<Option<Degraded<Op>>>,
    rejected: parking_lot::Mutex<Vec<Rejected>>,
    probing: AtomicBool,
    /// Held for a whole recovery: one at a time.
    recovering: tokio::sync::Mutex<()>,
    /// Entries at the front of the buffer that the primary settled (applied,
    /// or rejected for good) in a replay round but that are not removed yet.
    /// Counted the moment each is settled, so a recovery cancelled before it
    /// removes them (a `try_recover` under a timeout) leaves the count, and the
    /// next recovery removes them first instead of replaying them again.
    settled: AtomicUsize,
}

/// Connects a primary that was down when its [`Degradable`] was made.
pub type ConnectFn<T> = Arc<dyn Fn() -> BoxFuture<'static, Result<Arc<T>>> + Send + Sync>;

/// The primary: connected at construction, or by the probe later.
struct Primary<T: ?Sized> {
    store: tokio::sync::OnceCell<Arc<T>>,
    connect: Option<ConnectFn<T>>,
    /// Backend id and capabilities while not connected.
    backend: &'static str,
    capabilities: crate::Capabilities,
}

impl<T: ?Sized> Primary<T> {
    /// The connected primary; `Unavailable` before it is.
    fn get(&self) -> Result<&T> {
        self.store
            .get()
            .map(|p| p.as_ref())
            .ok_or_else(|| Error::new(ErrorKind::Unavailable, "the primary is not connected yet").set_temporary(true))
    }

    /// The primary, connecting it first if it is not yet.
    async fn connected(&self) -> Result<&T> {
        match (&self.connect, self.store.get()) {
            (_, Some(p)) => Ok(p.as_ref()),
            (Some(connect), None) => self.store.get_or_try_init(|| connect()).await.map(|p| p.as_ref()),
            (None, None) => self.get(),
        }
    }
}

/// A store that fails over to a secondary; see the [module docs](self).
pub struct Degradable<T: ?Sized + Replay> {
    primary: Arc<Primary<T>>,
    secondary: Arc<T>,
    shared: Arc<Shared<T::Op>>,
    config: DegradeConfig,
    label: &'static str,
}

impl<T: ?Sized + Replay + 'static> Degradable<T> {
    /// Wraps `primary` with `secondary` as the fallback.
    pub fn new(primary: Arc<T>, secondary: Arc<T>, config: DegradeConfig) -> Self {
        let primary = Primary {
            store: tokio::sync::OnceCell::new_with(Some(primary)),
            connect: None,
            backend: "",
            capabilities: crate::Capabilities::none(),
        };
        Self::with_primary(primary, secondary, config, None)
    }

    /// A wrapper whose primary (backend `backend`, guaranteeing
    /// `capabilities`) could not be connected: `cause` is why. It starts
    /// degraded, serving from `secondary`, and its probe calls `connect`
    /// until it succeeds, then replays the buffered writes and switches to
    /// the primary. Must be called within a Tokio runtime (the probe is a task).
    pub fn connecting(
        connect: ConnectFn<T>,
        backend: &'static str,
        capabilities: crate::Capabilities,
        secondary: Arc<T>,
        config: DegradeConfig,
        cause: &Error,
    ) -> Self {
        let primary = Primary { store: tokio::sync::OnceCell::new(), connect: Some(connect), backend, capabilities };
        let d = Self::with_primary(primary, secondary, config, Some(cause.to_string()));
        tracing::warn!(store = d.label, error = %cause, "palisade: primary unreachable at start-up; serving from the memory fallback");
        d.spawn_probe();
        d
    }

    /// `down`: the reason the wrapper starts degraded, if it does.
    fn with_primary(primary: Primary<T>, secondary: Arc<T>, config: DegradeConfig, down: Option<String>) -> Self {
        let since = Utc::now();
        let state = down.as_ref().map(|_| Degraded { since, buffer: VecDeque::new() });
        let status = down.map(|reason| (since, reason));
        let shared = Shared {
            degraded: AtomicBool::new(state.is_some()),
            status: parking_lot::Mutex::new(status),
            buffered: AtomicUsize::new(0),
            state: tokio::sync::Mutex::new(state),
            rejected: parking_lot::Mutex::new(Vec::new()),
            probing: AtomicBool::new(false),
            recovering: tokio::sync::Mutex::new(()),
            settled: AtomicUsize::new(0),
        };
        Degradable {
            primary: Arc::new(primary),
            secondary,
            shared: Arc::new(shared),
            config,
            label: std::any::type_name::<T>(),
        }
    }

    /// Healthy, or degraded with details.
    pub fn health(&self) -> Health {
        if !self.shared.degraded.load(Ordering::Acquire) {
            return Health::Healthy;
        }
        let rejected = self.shared.rejected.lock().len();
        match self.shared.status.lock().clone() {
            Some((since, reason)) => {
                Health::Degraded { since, reason, buffered: self.shared.buffered.load(Ordering::Acquire), rejected }
            }
            None => Health::Healthy,
        }
    }

    /// Replayed writes the primary refused (drains the list).
    pub fn take_rejected(&self) -> Vec<Rejected> {
        std::mem::take(&mut *self.shared.rejected.lock())
    }

    /// Whether calls currently go to the secondary.
    pub fn is_degraded(&self) -> bool {
        self.shared.degraded.load(Ordering::Acquire)
    }

    /// Runs a read: primary while healthy; secondary after a failover.
    pub(crate) async fn read<'a, R>(
        &'a self,
        op: &'static str,
        call: impl Fn(&'a T) -> BoxFuture<'a, Result<R>>,
    ) -> Result<R> {
        if !self.is_degraded() {
            match call(self.primary.get()?).await {
                Err(e) if e.is_backend_failure() => self.fail_over(op, &e).await,
                other => return other,
            }
        }
        call(&self.secondary).await
    }

    /// Runs a write: primary while healthy; otherwise the secondary, buffering
    /// what `to_op` makes of the secondary's answer for replay. `policy` says
    /// what may happen around a failover (see [`WritePolicy`]).
    pub(crate) async fn write<'a, R>(
        &'a self,
        op: &'static str,
        policy: WritePolicy,
        call: impl Fn(&'a T) -> BoxFuture<'a, Result<R>>,
        to_op: impl FnOnce(&R) -> Option<T::Op>,
    ) -> Result<R> {
        let refuse = |why: &'static str| Err(Error::new(ErrorKind::Unavailable, why).with_op(op));
        const PRIMARY_ONLY: &str = "this write needs the primary's data, and the primary is down";
        // Each turn tries the primary while healthy, then the secondary while
        // degraded; a recovery that switched back while this write waited for
        // `state` sends it round again, to the primary — which may have failed
        // again in between: then it fails over like any write, never returning
        // the primary's error.
        let mut state = loop {
            if !self.is_degraded() {
                match call(self.primary.get()?).await {
                    Err(e) if e.is_backend_failure() => {
                        self.fail_over(op, &e).await;
                        match policy {
                            WritePolicy::PrimaryOnly => return refuse(PRIMARY_ONLY),
                            // The primary may have applied it: serving it again could apply it twice.
                            WritePolicy::NotIdempotent if e.kind() == ErrorKind::Timeout => return Err(e),
                            _ => {}
                        }
                    }
                    other => return other,
                }
            } else if policy == WritePolicy::PrimaryOnly {
                return refuse(PRIMARY_ONLY);
            }
            let state = self.shared.state.lock().await;
            if state.is_some() {
                break state;
            }
            // Recovered while we waited for the lock: `degraded` was cleared
            // with `state`, so the next turn goes to the primary.
        };
        let Some(degraded) = state.as_mut() else { unreachable!("checked under the same lock") };
        if degraded.buffer.len() >= self.config.buffer_capacity {
            return refuse("primary is down and the degraded-mode write buffer is full");
        }
        let r = call(&self.secondary).await?;
        if let Some(entry) = to_op(&r) {
            degraded.buffer.push_back(Arc::new(entry));
            self.shared.buffered.store(degraded.buffer.len(), Ordering::Release);
        }
        Ok(r)
    }

    async fn fail_over(&self, op: &'static str, cause: &Error) {
        let mut state = self.shared.state.lock().await;
        if state.is_none() {
            tracing::warn!(store = self.label, op, error = %cause, "palisade: primary failed; serving from the memory fallback");
            let since = Utc::now();
            *state = Some(Degraded { since, buffer: VecDeque::new() });
            *self.shared.status.lock() = Some((since, cause.to_string()));
            self.shared.buffered.store(0, Ordering::Release);
            self.shared.settled.store(0, Ordering::Release);
            self.shared.degraded.store(true, Ordering::Release);
        }
        drop(state);
        self.spawn_probe();
    }
}

/// The primary's identity and guarantees; `ping` follows the store in
/// service (the secondary while degraded).
#[async_trait::async_trait]
impl<T: ?Sized + Replay + crate::Store + 'static> crate::Store for Degradable<T> {
    fn backend(&self) -> &'static str {
        self.primary.get().map_or(self.primary.backend, |p| p.backend())
    }

    fn capabilities(&self) -> crate::Capabilities {
        self.primary.get().map_or(self.primary.capabilities, |p| p.capabilities())
    }

    async fn ping(&self) -> Result<()> {
        self.read("ping", |s| s.ping()).await
    }

    /// The primary's notes (none while it is not connected yet).
    async fn notes(&self) -> Result<Vec<String>> {
        match self.primary.get() {
            Ok(p) => p.notes().await,
            Err(_) => Ok(Vec::new()),
        }
    }
}

impl<T: ?Sized + Replay + 'static> fmt::Debug for Degradable<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Degradable").field("store", &self.label).field("health", &self.health()).finish()
    }
}
