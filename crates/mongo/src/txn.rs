//! Multi-document transactions, as every writing store here runs them: an
//! attempt that hits a transient error (the driver's
//! `TransientTransactionError` label, a write conflict, an aborted
//! transaction) is aborted and run again after a jittered pause, until the
//! operation timeout; a commit whose outcome is unknown is committed again
//! a few times (safe: commits are idempotent) before the attempt counts as
//! transient.
//!
//! Concurrent transactions that write one document (the event log's head,
//! a subject's score) do not wait for each other as Postgres' row locks
//! do: all but one fail at once with a write conflict, so writers of one
//! document are serialized by these retries.

use std::time::{Duration, Instant};

use mongodb::error::{Error as MongoError, TRANSIENT_TRANSACTION_ERROR, UNKNOWN_TRANSACTION_COMMIT_RESULT};
use mongodb::ClientSession;
use palisade_core::{Error, ErrorKind, Result};
use uuid::Uuid;

use crate::error::{code, map, server_code};

/// Commits tried when the outcome of one is unknown.
const COMMIT_ATTEMPTS: usize = 3;
/// Most attempts of one transaction, however short they are.
const MAX_ATTEMPTS: usize = 1_000;
/// Attempts a transaction gets even past the deadline (a long one, a big
/// batch, may take longer than the operation timeout once) — unless the
/// server is unreachable, when degraded mode should take over at once.
const MIN_ATTEMPTS: usize = 3;

/// Whether a transaction hit something a new attempt can get past: the
/// driver's transient label, or a write conflict / aborted transaction
/// reported without it.
pub(crate) fn is_transient(e: &MongoError) -> bool {
    e.contains_label(TRANSIENT_TRANSACTION_ERROR)
        || matches!(server_code(e), Some(code::WRITE_CONFLICT | code::NO_SUCH_TRANSACTION))
}

/// What one attempt of a transaction ended with.
pub(crate) enum Attempt<T> {
    /// Committed (or finished without writing), with this outcome.
    Done(T),
    /// A transient error: abort and run the whole transaction again.
    Retry(MongoError),
}

/// Paces the attempts of one transaction and ends them at the deadline.
pub(crate) struct Retry {
    deadline: Instant,
    pause: Duration,
    attempts: usize,
    /// The last transient error, when it said the server was unreachable.
    outage: Option<Error>,
}

impl Retry {
    /// Attempts until `op_timeout` from now.
    pub(crate) fn new(op_timeout: Duration) -> Self {
        Retry { deadline: Instant::now() + op_timeout, pause: Duration::from_millis(2), attempts: 0, outage: None }
    }

    /// Whether another attempt may start (always the first).
    pub(crate) fn may_start(&mut self) -> bool {
        self.attempts += 1;
        self.attempts == 1
            || (self.attempts <= MIN_ATTEMPTS && self.outage.is_none())
            || (self.attempts <= MAX_ATTEMPTS && Instant::now() < self.deadline)
    }

    /// Aborts the failed attempt on `session` and waits a jittered, growing
    /// pause, so conflicting writers spread out.
    pub(crate) async fn back_off(&mut self, session: &mut ClientSession, e: &MongoError) {
        // The mapped error: the driver's message may quote stored values.
        let mapped = map("transaction", e.clone());
        tracing::debug!(error = %mapped, "palisade: retrying a mongo transaction");
        self.outage = matches!(mapped.kind(), ErrorKind::Unavailable | ErrorKind::Timeout).then_some(mapped);
        let _ = session.abort_transaction().await;
        let jitter = u64::from(Uuid::new_v4().as_bytes()[0]) % 8;
        tokio::time::sleep(self.pause + Duration::from_millis(jitter)).await;
        self.pause = (self.pause * 2).min(Duration::from_millis(50));
    }

    /// The error once the attempts ran out: the outage if the server was
    /// unreachable (so degraded mode can take over), else a temporary conflict.
    pub(crate) fn exhausted(&mut self) -> Error {
        if let Some(outage) = self.outage.take() {
            return outage;
        }
        Error::new(ErrorKind::Conflict, "the transaction kept conflicting or failing transiently; retry")
            .set_temporary(true)
    }
}

/// Whether running a transaction again after a commit whose outcome stayed
/// unknown is safe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rerun {
    /// The transaction notices its own earlier success (writes keyed by
    /// ids it inserts: appends, reputation records).
    Safe,
    /// It would apply its change twice (document updates) or misreport it
    /// (inserts): an unknown outcome is reported as such.
    Unsafe,
}

/// Commits the transaction on `session`: again while the outcome is
/// unknown (a few times), `Retry` on a transient failure. When the outcome
/// stays unknown, `Retry` only if `rerun` is safe; otherwise a temporary
/// `Unavailable` error saying the write may or may not have happened.
pub(crate) async fn commit(session: &mut ClientSession, op: &'static str, rerun: Rerun) -> Result<Attempt<()>> {
    let mut commits = 0;
    loop {
        commits += 1;
        match session.commit_transaction().await {
            Ok(()) => return Ok(Attempt::Done(())),
            Err(e) if e.contains_label(UNKNOWN_TRANSACTION_COMMIT_RESULT) && commits < COMMIT_ATTEMPTS => {}
            Err(e) if e.contains_label(UNKNOWN_TRANSACTION_COMMIT_RESULT) && rerun == Rerun::Unsafe => {
                return Err(Error::new(
                    ErrorKind::Unavailable,
                    "the commit's outcome is unknown: the write may or may not have happened",
                )
                .set_temporary(true)
                .with_source(map(op, e)))
            }
            Err(e) if is_transient(&e) || e.contains_label(UNKNOWN_TRANSACTION_COMMIT_RESULT) => {
                return Ok(Attempt::Retry(e))
            }
            Err(e) => return Err(map(op, e)),
        }
    }
}

/// Aborts the transaction on `session` (best effort) and returns `e`:
/// for leaving an attempt with an error that is not transient.
pub(crate) async fn abort_with<T>(session: &mut ClientSession, e: Error) -> Result<T> {
    let _ = session.abort_transaction().await;
    Err(e)
}
