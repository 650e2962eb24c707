//! [`SecurityEvents`]: one event per blocked request, appended in batches off
//! the request path, and [`SecurityEventsLayer`], which records them.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use http::{Request, Response};
use palisade_core::events::{AppendBatch, NewEvent};
use palisade_core::EventStore;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tower_layer::Layer;
use tower_service::Service;
use tower_sessions_core::session::Id;
use tower_sessions_core::Session;

use crate::client::{hashed, ClientIp, RequestView};

/// Most events one append carries ([`SinkConfig::batch`] is capped here).
pub const MAX_SINK_BATCH: usize = 10_000;
/// Largest queue ([`SinkConfig::capacity`] is capped here).
pub const MAX_SINK_CAPACITY: usize = 1_000_000;

/// What an event records of a session: `sha256:` and the hex SHA-256 of its
/// id. A session id is a bearer credential, so events never carry it; a
/// service that knows a session computes the same reference to find its
/// events (`EventFilter::session(session_ref(&id))`).
pub fn session_ref(id: &Id) -> String {
    hashed(id.to_string().as_bytes())
}

/// Longest request path kept in an event's data; longer paths are cut (at a
/// character boundary) and marked `path_truncated`.
pub const MAX_EVENT_PATH: usize = 512;

/// Marks a response as a blocked request: put it in the response's
/// extensions (the rate-limit layer does) and [`SecurityEventsLayer`]
/// records an event of `kind` with these tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    /// The event kind, e.g. `rate_limited`, `waf_block`.
    pub kind: String,
    /// Extra tags, e.g. `rule:login`.
    pub tags: Vec<String>,
}

impl Blocked {
    /// A block of `kind`, without tags.
    pub fn new(kind: impl Into<String>) -> Self {
        Blocked { kind: kind.into(), tags: Vec::new() }
    }

    /// Adds a tag.
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }
}

/// Settings of [`SecurityEvents`].
#[derive(Debug, Clone)]
pub struct SinkConfig {
    /// The events' `source`, e.g. the service's name.
    pub source: String,
    /// Events waiting at most (capped at [`MAX_SINK_CAPACITY`]); more are
    /// refused and counted (`overflowed`).
    pub capacity: usize,
    /// Events per append at most (capped at [`MAX_SINK_BATCH`]).
    pub batch: usize,
    /// Attempts per batch before its events are counted `failed`; a
    /// temporary error is retried after 100 ms, 200 ms, … (appends are
    /// idempotent by event id). A batch the store refuses for good (one
    /// event over the store's input policy, say) is appended event by event,
    /// so only the refused events count as `failed`.
    pub attempts: u32,
}

impl Default for SinkConfig {
    fn default() -> Self {
        SinkConfig { source: "palisade-tower".into(), capacity: 10_000, batch: 500, attempts: 3 }
    }
}

/// What the sink has done since it started; every event offered ends in
/// exactly one of `appended`, `invalid`, `overflowed`, `failed`, or is still
/// `queued`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct SinkStats {
    /// Events offered.
    pub offered: u64,
    /// Events waiting to be appended (queued or in flight).
    pub queued: u64,
    /// Events the store appended (duplicates of a retried batch included).
    pub appended: u64,
    /// Events refused because the queue was full.
    pub overflowed: u64,
    /// Events refused by validation before queueing.
    pub invalid: u64,
    /// Events whose append failed after every attempt.
    pub failed: u64,
}

#[derive(Default)]
struct Counters {
    offered: AtomicU64,
    appended: AtomicU64,
    overflowed: AtomicU64,
    invalid: AtomicU64,
    failed: AtomicU64,
}

enum Msg {
    Event(NewEvent),
    Flush(oneshot::Sender<()>),
}

/// A bounded queue of security events and the task that appends them.
///
/// # Contract
/// - [`record`](Self::record) never waits: it validates the event, queues
///   it, and returns whether it was queued. An invalid event or a full queue
///   is refused and counted in [`stats`](Self::stats) — never dropped
///   without a trace. The gatekeeper example puts the stats in `/health`.
/// - A background task appends what is queued in batches of up to
///   `batch`, in order; a batch that fails with a temporary error is retried
///   (`attempts`), then its events are counted `failed` and logged.
/// - [`flush`](Self::flush) waits until everything queued before it was
///   appended or counted; dropping every clone lets the task drain and end.
#[derive(Clone)]
pub struct SecurityEvents {
    tx: mpsc::Sender<Msg>,
    counters: Arc<Counters>,
    source: Arc<str>,
}

impl fmt::Debug for SecurityEvents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecurityEvents").field("source", &self.source).field("stats", &self.stats()).finish()
    }
}

impl SecurityEvents {
    /// Starts the append task on the current Tokio runtime.
    ///
    /// # Panics
    /// Outside a Tokio runtime, like `tokio::spawn`.
    pub fn spawn(store: Arc<dyn EventStore>, config: SinkConfig) -> Self {
        let (tx, rx) = mpsc::channel(config.capacity.clamp(1, MAX_SINK_CAPACITY));
        let counters = Arc::new(Counters::default());
        let batch = config.batch.clamp(1, MAX_SINK_BATCH);
        tokio::spawn(run(store, rx, counters.clone(), batch, config.attempts.max(1)));
        SecurityEvents { tx, counters, source: config.source.into() }
    }

    /// The `source` events of this sink carry.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Queues `event` without waiting; false (and counted) when it is
    /// invalid or the queue is full.
    pub fn record(&self, event: NewEvent) -> bool {
        self.counters.offered.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = event.validate() {
            self.counters.invalid.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, "security event refused");
            return false;
        }
        match self.tx.try_send(Msg::Event(event)) {
            Ok(()) => true,
            Err(_) => {
                let n = self.counters.overflowed.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_power_of_two() {
                    tracing::warn!(overflowed = n, "security event queue full; events refused");
                }
                false
            }
        }
    }

    /// Waits until every event queued before this call is appended or counted.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Msg::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }

    /// The counts so far.
    pub fn stats(&self) -> SinkStats {
        let c = &self.counters;
        let appended = c.appended.load(Ordering::Relaxed);
        let overflowed = c.overflowed.load(Ordering::Relaxed);
        let invalid = c.invalid.load(Ordering::Relaxed);
        let failed = c.failed.load(Ordering::Relaxed);
        // Read last: an event is offered before it settles, so this is never
        // below the settled counts read above.
        let offered = c.offered.load(Ordering::Relaxed);
        let settled = appended + overflowed + invalid + failed;
        SinkStats { offered, queued: offered.saturating_sub(settled), appended, overflowed, invalid, failed }
    }

    /// A layer recording an event per response marked [`Blocked`].
    pub fn layer(&self, client_ip: ClientIp) -> SecurityEventsLayer {
        SecurityEventsLayer { sink: self.clone(), client_ip }
    }
}

async fn run(
    store: Arc<dyn EventStore>,
    mut rx: mpsc::Receiver<Msg>,
    counters: Arc<Counters>,
    batch: usize,
    attempts: u32,
) {
    let mut msgs = Vec::with_capacity(batch);
    while rx.recv_many(&mut msgs, batch).await > 0 {
        let mut events = Vec::with_capacity(msgs.len());
        for msg in msgs.drain(..) {
            match msg {
                Msg::Event(e) => events.push(e),
                Msg::Flush(done) => {
                    append(&*store, std::mem::take(&mut events), &counters, attempts).await;
                    let _ = done.send(());
                }
            }
        }
        append(&*store, events, &counters, attempts).await;
    }
}

async fn append(store: &dyn EventStore, events: Vec<NewEvent>, counters: &Counters, attempts: u32) {
    if events.is_empty() {
        return;
    }
    let n = events.len();
    match append_with_retries(store, &events, attempts).await {
        Ok(()) => {
            counters.appended.fetch_add(n as u64, Ordering::Relaxed);
        }
        Err(e) if n > 1 && !e.is_temporary() => {
            // Refused for good: find the events at fault, keep the others.
            tracing::warn!(error = %e, events = n, "security events batch refused; appending one by one");
            for event in events {
                match append_with_retries(store, std::slice::from_ref(&event), attempts).await {
                    Ok(()) => counters.appended.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        tracing::error!(error = %e, "security event lost: append refused");
                        counters.failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }
        Err(e) => {
            counters.failed.fetch_add(n as u64, Ordering::Relaxed);
            tracing::error!(error = %e, events = n, "security events lost: append failed");
        }
    }
}

/// Appends `events` as one batch, retrying temporary failures.
async fn append_with_retries(store: &dyn EventStore, events: &[NewEvent], attempts: u32) -> palisade_core::Result<()> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match store.append(AppendBatch::new(events.to_vec())).await {
            Ok(_) => return Ok(()),
            Err(e) if e.is_temporary() && attempt < attempts => {
                tracing::debug!(error = %e, attempt, "security events append failed; retrying");
                tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// The layer of [`SecurityEvents::layer`].
#[derive(Clone, Debug)]
pub struct SecurityEventsLayer {
    sink: SecurityEvents,
    client_ip: ClientIp,
}

impl<S> Layer<S> for SecurityEventsLayer {
    type Service = SecurityEventsService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        SecurityEventsService { inner, sink: self.sink.clone(), client_ip: self.client_ip.clone() }
    }
}

/// The service of [`SecurityEventsLayer`]: when the response carries
/// [`Blocked`], it records an event with the sink's source, the block's kind
/// and tags, the client address ([`ClientIp`]), the session's
/// [`session_ref`] (when a `SessionManagerLayer` runs outside this layer and
/// the request names a session — the id the cookie carried, which the
/// client chose), and `{method, path, status}` as data.
#[derive(Clone, Debug)]
pub struct SecurityEventsService<S> {
    inner: S,
    sink: SecurityEvents,
    client_ip: ClientIp,
}

/// What the layer keeps of a request until its response.
struct Seen {
    client_ip: Option<std::net::IpAddr>,
    session: Option<Session>,
    method: String,
    path: String,
    truncated: bool,
}

fn cut(path: &str) -> (String, bool) {
    if path.len() <= MAX_EVENT_PATH {
        return (path.to_owned(), false);
    }
    let mut end = MAX_EVENT_PATH;
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    (path[..end].to_owned(), true)
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SecurityEventsService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let mut inner = crate::take_ready(&mut self.inner);
        let view = RequestView::of(&req);
        let (path, truncated) = cut(req.uri().path());
        let seen = Seen {
            client_ip: self.client_ip.resolve(&view),
            session: req.extensions().get::<Session>().cloned(),
            method: req.method().as_str().to_owned(),
            path,
            truncated,
        };
        let sink = self.sink.clone();
        Box::pin(async move {
            let res = inner.call(req).await?;
            if let Some(blocked) = res.extensions().get::<Blocked>() {
                let mut event = NewEvent::new(sink.source(), blocked.kind.clone()).with_data(serde_json::json!({
                    "method": seen.method,
                    "path": seen.path,
                    "path_truncated": seen.truncated,
                    "status": res.status().as_u16(),
                }));
                event.tags = blocked.tags.clone();
                event.client_ip = seen.client_ip;
                event.session_id = seen.session.and_then(|s| s.id()).map(|id| session_ref(&id));
                sink.record(event);
            }
            Ok(res)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_paths_are_cut_at_a_character_boundary() {
        let path = format!("/{}", "é".repeat(MAX_EVENT_PATH));
        let (cut_path, truncated) = cut(&path);
        assert!(truncated && cut_path.len() <= MAX_EVENT_PATH && path.starts_with(&cut_path));
        assert_eq!(cut("/ok"), ("/ok".to_owned(), false));
    }
}
