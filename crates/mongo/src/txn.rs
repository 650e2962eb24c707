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
        self.attempts == 1 || (self.attempts <= MAX_ATTEMPTS && Instant::now() < self.deadline)
    }

    /// Aborts the failed attempt on `session` and waits a jittered, growing
    /// pause, so conflicting writers spread out.
    pub(crate) async fn back_off(&mut self, session: &mut ClientSession, e: &MongoError) {
        tracing::debug!(error = %e, "palisade: retrying a mongo transaction");
        let mapped = map("transaction", e.clone());
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

/// Commits the transaction on `session`: again while the outcome is
/// unknown (a few times), `Retry` on a transient failure.
pub(crate) async fn commit(session: &mut ClientSession, op: &'static str) -> Result<Attempt<()>> {
    let mut commits = 0;
    loop {
        commits += 1;
        match session.commit_transaction().await {
            Ok(()) => return Ok(Attempt::Done(())),
            Err(e) if e.contains_label(UNKNOWN_TRANSACTION_COMMIT_RESULT) && commits < COMMIT_ATTEMPTS => {}
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
