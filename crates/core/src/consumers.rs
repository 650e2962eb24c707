//! Durable named consumers: projections that resume where they stopped.
//!
//! A consumer is a **name**, a **filter** and a stored **checkpoint** (the
//! last acknowledged position) in the event store's namespace. [`Consumer`]
//! takes the consumer's exclusive **lease**, follows
//! [`EventStore::subscribe`] from the checkpoint (catch-up, then live, gap-safe
//! like every tail), renews the lease in the background, and moves the
//! checkpoint when the caller [`ack`](Consumer::ack)s.
//!
//! # Contract
//! - **At-least-once, in order, never skipping.** A consumer resumes strictly
//!   after its last ack, so events delivered but not acked are delivered
//!   again after a crash. An ack can only name a position this instance has
//!   delivered (`InvalidInput` otherwise), so the checkpoint never passes an
//!   event nobody saw. Acks only move forward; an older ack is a no-op.
//! - **One holder at a time.** The lease is exclusive: starting a consumer
//!   another live instance holds is `Conflict` (or waits, with
//!   [`ConsumerOptions::wait`]). The holder renews it every third of the
//!   lease. A holder that stops renewing (crashed, partitioned, stalled) loses
//!   it when the lease runs out; a waiting instance takes over within one
//!   lease plus one retry interval and continues from the checkpoint.
//! - **Fenced.** Every lease has a fresh token; the store refuses an ack or a
//!   renewal under a token that no longer holds the lease (`Conflict`), so a
//!   stale holder cannot move the checkpoint. A holder that has not been able
//!   to renew for nine tenths of the lease stops on its own: its next
//!   [`next`](Consumer::next) yields `Conflict` and the stream ends.
//! - **The filter is part of the consumer.** The first start stores it;
//!   starting the same name with a different filter is `Conflict` (its
//!   checkpoint was earned under the other filter, and reusing a name by
//!   mistake must not skip events). [`EventStore::delete_consumer`] removes a
//!   consumer to start it afresh.
//! - **Whose clock.** Postgres and Redis decide lease expiry on the server's
//!   clock; memory on the process clock; Mongo on the caller's clock (so a
//!   lease must be much longer than the clock skew between hosts).
//! - **Degraded mode.** Checkpoints live only on the primary: while a store is
//!   degraded the lease operations are `Unavailable` (never served from the
//!   memory fallback, where the checkpoint would be lost), so a running
//!   consumer stops within one lease and a new one cannot start.
//!
//! # Example
//! ```no_run
//! # use std::sync::Arc;
//! # use palisade_core::{EventStore, consumers::{Consumer, ConsumerOptions}};
//! # use palisade_core::events::{EventFilter, SubscriptionItem};
//! # async fn run(events: Arc<dyn EventStore>) -> palisade_core::Result<()> {
//! let mut consumer =
//!     Consumer::start(events, "blocked-ips", EventFilter::all().kind("blocked"), ConsumerOptions::default()).await?;
//! while let Some(item) = consumer.next().await {
//!     if let SubscriptionItem::Event(event) = item? {
//!         // project the event, then:
//!         consumer.ack(event.position).await?;
//!     }
//! }
//! # Ok(()) }
//! ```

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use uuid::Uuid;

use crate::error::{Error, ErrorDetail, ErrorKind, Result};
use crate::events::{check_name, Cursor, EventFilter, EventSubscription, Position, SubscriptionItem};
use crate::EventStore;

/// Shortest lease a consumer may take.
pub const MIN_LEASE: Duration = Duration::from_millis(100);
/// Longest lease a consumer may take.
pub const MAX_LEASE: Duration = Duration::from_secs(3_600);
/// The default lease (see [`ConsumerOptions::lease`]).
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);

/// One request to take or renew a consumer's lease
/// ([`EventStore::claim_consumer`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    /// The consumer's name: 1..=256 bytes, no control characters.
    pub name: String,
    /// The consumer's filter (stored on the first claim, compared after).
    pub filter: EventFilter,
    /// The lease token: fresh per [`Consumer`], the same for its renewals.
    pub token: Uuid,
    /// How long the lease lasts from this claim, [`MIN_LEASE`]..=[`MAX_LEASE`],
    /// whole milliseconds.
    pub lease: Duration,
    /// A heartbeat: only extend a lease `token` already holds. Never creates
    /// the consumer or takes a free lease; `Conflict` (lease lost) when the
    /// token does not hold it — so a consumer deleted while running is not
    /// re-created by its holder.
    pub renew: bool,
}

impl Claim {
    /// Checks the name, the filter and the lease before any I/O.
    pub fn validate(&self) -> Result<()> {
        check_consumer_name(&self.name)?;
        self.filter.validate()?;
        if self.lease < MIN_LEASE || self.lease > MAX_LEASE || !self.lease.subsec_nanos().is_multiple_of(1_000_000) {
            return Err(Error::invalid("a consumer lease is whole milliseconds from 100 ms to 1 hour"));
        }
        Ok(())
    }

    /// The lease in milliseconds (fits: at most an hour).
    pub fn lease_ms(&self) -> i64 {
        i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX)
    }

    /// The filter's stored form: canonical JSON, compared as text by every
    /// backend (fields serialize in declaration order; kinds, sources and
    /// tags sorted and deduplicated, as the filter treats them as sets).
    pub fn filter_key(&self) -> Result<String> {
        Ok(serde_json::to_string(&canonical(&self.filter))?)
    }
}

/// `filter` with its kinds, sources and tags sorted and deduplicated (the
/// same filter, written one way).
pub fn canonical(filter: &EventFilter) -> EventFilter {
    let mut f = filter.clone();
    for list in [&mut f.kinds, &mut f.sources, &mut f.tags] {
        list.sort();
        list.dedup();
    }
    f
}

/// Checks a consumer name (the rules of every short name).
pub fn check_consumer_name(name: &str) -> Result<()> {
    check_name("consumer name", name)
}

/// What `palisade consumers` shows of one consumer
/// ([`EventStore::consumers`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsumerInfo {
    /// The consumer's name.
    pub name: String,
    /// Its filter.
    pub filter: EventFilter,
    /// Where it resumes: after its last ack.
    pub checkpoint: Cursor,
    /// When the current lease runs out, if an instance holds it (on the
    /// clock that decides leases, see the module docs).
    pub lease_expires_at: Option<DateTime<Utc>>,
}

/// The errors every backend reports the same way.
pub mod errors {
    use super::*;

    /// The consumer is held by another live instance.
    pub fn held(name: &str) -> Error {
        Error::new(ErrorKind::Conflict, format!("consumer `{name}` is held by another instance"))
            .with_detail(ErrorDetail::ConsumerLease { consumer: name.to_owned(), held_elsewhere: true })
    }
    /// The consumer exists with another filter.
    pub fn other_filter(name: &str) -> Error {
        Error::new(
            ErrorKind::Conflict,
            format!("consumer `{name}` exists with a different filter; delete it to change the filter"),
        )
    }
    /// The token no longer holds the lease (taken over, released or deleted).
    pub fn lease_lost(name: &str) -> Error {
        Error::new(ErrorKind::Conflict, format!("consumer `{name}`: this instance no longer holds the lease"))
            .with_detail(ErrorDetail::ConsumerLease { consumer: name.to_owned(), held_elsewhere: false })
    }
    /// A stored filter or checkpoint that does not decode.
    pub fn corrupt(name: &str) -> Error {
        Error::new(ErrorKind::Unexpected, format!("consumer `{name}`: the stored record does not decode"))
    }
}

/// How a [`Consumer`] holds its lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConsumerOptions {
    /// How long the lease lasts without renewal: a crashed holder is replaced
    /// within this (plus [`retry_every`](Self::retry_every)). Renewed every
    /// third of it. Default 30 s.
    pub lease: Duration,
    /// Wait for a held lease instead of failing with `Conflict`. Default off.
    pub wait: bool,
    /// How often a waiting start tries again. Default: a third of the lease.
    pub retry_every: Option<Duration>,
}

impl Default for ConsumerOptions {
    fn default() -> Self {
        ConsumerOptions { lease: DEFAULT_LEASE, wait: false, retry_every: None }
    }
}

impl ConsumerOptions {
    /// Sets the lease.
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }
    /// Waits for a held lease (standby instances) instead of `Conflict`.
    pub fn waiting(mut self) -> Self {
        self.wait = true;
        self
    }
    /// Sets how often a waiting start tries again.
    pub fn with_retry_every(mut self, every: Duration) -> Self {
        self.retry_every = Some(every);
        self
    }
}

struct LeaseState {
    /// When the last successful claim was sent (the server's lease runs from
    /// a later instant, so this is conservative).
    renewed: Instant,
    /// The store refused a renewal or an ack: another token holds the lease.
    lost: bool,
}

/// Gives a token's lease up in the background when dropped while armed.
///
/// Armed from the moment a claim is sent: a [`Consumer::start`] cancelled
/// after its claim took the lease (a timeout around it, a shutdown), one
/// whose claim failed in a way that may still have taken it (a timeout, a
/// lost connection) and a dropped [`Consumer`] do not keep the consumer held
/// until the lease runs out. Releasing under a token that holds nothing
/// changes nothing, so an armed guard whose claim never arrived is harmless.
/// Best effort while the claim is in flight: a claim that reaches the store
/// after the release still holds the lease until it runs out.
struct ReleaseOnDrop {
    store: Arc<dyn EventStore>,
    name: String,
    token: Uuid,
    armed: bool,
}

impl ReleaseOnDrop {
    /// Releases now, best effort (a failure leaves the lease to run out);
    /// disarmed only once done, so a cancelled release still happens in the
    /// background.
    async fn release(&mut self) {
        if let Err(e) = self.store.release_consumer(&self.name, self.token).await {
            tracing::debug!(error = %e, consumer = %self.name, "palisade: releasing a consumer's lease failed");
        }
        self.armed = false;
    }
}

impl Drop for ReleaseOnDrop {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let (store, name, token) = (Arc::clone(&self.store), std::mem::take(&mut self.name), self.token);
            rt.spawn(async move {
                if let Err(e) = store.release_consumer(&name, token).await {
                    tracing::debug!(error = %e, consumer = %name, "palisade: releasing a dropped consumer failed");
                }
            });
        }
    }
}

/// A running named consumer: the lease holder's side. See the module docs.
///
/// Dropping it stops the heartbeat and releases the lease in the background
/// (when a Tokio runtime is running); so does cancelling
/// [`start`](Self::start) once its claim took the lease (best effort while
/// the claim is still in flight). A crashed process's lease simply runs out.
pub struct Consumer {
    store: Arc<dyn EventStore>,
    name: String,
    token: Uuid,
    lease: Duration,
    start: Cursor,
    acked: Option<Position>,
    delivered: Option<Position>,
    events: EventSubscription,
    state: Arc<Mutex<LeaseState>>,
    heartbeat: JoinHandle<()>,
    /// Releases the lease when the consumer is dropped unreleased.
    guard: ReleaseOnDrop,
    /// An error ended the stream: `next` says `None` from then on.
    ended: bool,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer").field("name", &self.name).field("start", &self.start).finish_non_exhaustive()
    }
}

impl Consumer {
    /// Takes the lease of consumer `name` (creating it with `filter` on first
    /// use) and follows the log after its checkpoint.
    ///
    /// `Conflict` when another instance holds it (unless
    /// [`ConsumerOptions::wait`]) or it exists with another filter;
    /// `Unsupported` where the store has no
    /// [`durable_consumers`](crate::Capabilities::durable_consumers).
    pub async fn start(
        store: Arc<dyn EventStore>,
        name: impl Into<String>,
        filter: EventFilter,
        options: ConsumerOptions,
    ) -> Result<Consumer> {
        let claim = Claim { name: name.into(), filter, token: Uuid::new_v4(), lease: options.lease, renew: false };
        claim.validate().map_err(|e| e.with_op("consume"))?;
        let retry = options.retry_every.unwrap_or(options.lease / 3).max(Duration::from_millis(10));
        let mut guard =
            ReleaseOnDrop { store: Arc::clone(&store), name: claim.name.clone(), token: claim.token, armed: false };
        let (checkpoint, renewed) = loop {
            let sent = Instant::now();
            // Cancelled from here on, the claim may have taken the lease.
            guard.armed = true;
            match store.claim_consumer(&claim).await {
                Ok(c) => break (c, sent),
                Err(e) if refused(&e) => {
                    // The store took nothing.
                    guard.armed = false;
                    if !(options.wait && is_held(&e)) {
                        return Err(e);
                    }
                    tokio::time::sleep(retry).await;
                }
                Err(e) => {
                    // A timeout or lost connection: the claim may have taken
                    // the lease all the same.
                    guard.release().await;
                    return Err(e);
                }
            }
        };
        let events = match store.subscribe(checkpoint, claim.filter.clone()).await {
            Ok(events) => events,
            Err(e) => {
                guard.release().await;
                return Err(e);
            }
        };
        let state = Arc::new(Mutex::new(LeaseState { renewed, lost: false }));
        let heartbeat = tokio::spawn(heartbeat(Arc::clone(&store), claim.clone(), Arc::clone(&state)));
        let acked = match checkpoint {
            Cursor::Start => None,
            Cursor::After(p) => Some(p),
        };
        Ok(Consumer {
            store,
            name: claim.name,
            token: claim.token,
            lease: claim.lease,
            start: checkpoint,
            acked,
            delivered: None,
            events,
            state,
            heartbeat,
            guard,
            ended: false,
        })
    }

    /// The consumer's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where this instance started: after the checkpoint it found.
    pub fn started_after(&self) -> Cursor {
        self.start
    }

    /// The last position acked (by this instance or, before it, by others).
    pub fn checkpoint(&self) -> Cursor {
        self.acked.map_or(Cursor::Start, Cursor::After)
    }

    /// The next item: events after the checkpoint that match the filter, in
    /// order, one [`SubscriptionItem::CaughtUp`], then live events. Yields
    /// `Conflict` when the lease is lost, then `None`: a consumer that lost
    /// its lease never resumes (start a new one). `None` after any error.
    pub async fn next(&mut self) -> Option<Result<SubscriptionItem>> {
        if self.ended {
            return None;
        }
        loop {
            if let Err(e) = self.holding() {
                self.stop();
                return Some(Err(e));
            }
            let check = tokio::time::sleep(self.lease / 10);
            tokio::select! {
                item = self.events.next() => {
                    match &item {
                        Some(Ok(SubscriptionItem::Event(e))) => self.delivered = Some(e.position),
                        Some(Err(_)) | None => self.stop(),
                        Some(Ok(SubscriptionItem::CaughtUp)) => {}
                    }
                    return item;
                }
                _ = check => {}
            }
        }
    }

    /// Ends the stream: no more renewals (a lost lease stays lost).
    fn stop(&mut self) {
        self.ended = true;
        self.heartbeat.abort();
    }

    /// Moves the checkpoint to `position`, durably: a restart resumes after
    /// it. `position` must have been delivered by this instance
    /// (`InvalidInput` before any I/O otherwise); positions at or before the
    /// checkpoint are a no-op. `Conflict` when the lease is lost.
    pub async fn ack(&mut self, position: Position) -> Result<()> {
        if self.delivered.is_none_or(|d| position > d) {
            return Err(Error::invalid("ack names a position this consumer has not delivered").with_op("ack"));
        }
        if self.acked.is_some_and(|a| position <= a) {
            return Ok(());
        }
        self.holding()?;
        match self.store.ack_consumer(&self.name, self.token, position).await {
            Ok(()) => {
                self.acked = Some(position);
                Ok(())
            }
            Err(e) => {
                if e.kind() == ErrorKind::Conflict {
                    self.state.lock().lost = true;
                }
                Err(e)
            }
        }
    }

    /// Stops renewing and gives the lease up now, so a waiting instance
    /// takes over at once. The checkpoint stays.
    pub async fn release(mut self) -> Result<()> {
        self.heartbeat.abort();
        // Disarmed only once done: a release cancelled by the caller (a
        // shutdown timeout) still happens in the background.
        let released = self.store.release_consumer(&self.name, self.token).await;
        self.guard.armed = released.is_err();
        released
    }

    fn holding(&self) -> Result<()> {
        let state = self.state.lock();
        if state.lost || state.renewed.elapsed() > self.lease - self.lease / 10 {
            return Err(errors::lease_lost(&self.name).with_op("consume"));
        }
        Ok(())
    }
}

impl Drop for Consumer {
    /// Stops the heartbeat; the guard (dropped after this) releases the lease.
    fn drop(&mut self) {
        self.heartbeat.abort();
    }
}

/// A claim the store turned down: it took no lease (held by another token,
/// another filter, bad input, no durable consumers).
fn refused(e: &Error) -> bool {
    matches!(e.kind(), ErrorKind::Conflict | ErrorKind::InvalidInput | ErrorKind::Unsupported)
}

fn is_held(e: &Error) -> bool {
    matches!(e.detail(), Some(ErrorDetail::ConsumerLease { held_elsewhere: true, .. }))
}

/// Renews the lease every third of it until it is lost (`Conflict`) or the
/// consumer goes; temporary failures are retried at the next tick (the
/// consumer stops itself if they last too long).
async fn heartbeat(store: Arc<dyn EventStore>, claim: Claim, state: Arc<Mutex<LeaseState>>) {
    let claim = Claim { renew: true, ..claim };
    let every = claim.lease / 3;
    loop {
        tokio::time::sleep(every).await;
        let sent = Instant::now();
        match store.claim_consumer(&claim).await {
            Ok(_) => state.lock().renewed = sent,
            Err(e) if e.kind() == ErrorKind::Conflict => {
                tracing::warn!(error = %e, consumer = %claim.name, "palisade: consumer lease lost");
                state.lock().lost = true;
                return;
            }
            Err(e) => tracing::warn!(error = %e, consumer = %claim.name, "palisade: consumer lease renewal failed"),
        }
    }
}
