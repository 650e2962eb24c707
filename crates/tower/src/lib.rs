//! # palisade-tower
//!
//! Palisade in axum/tower services, three pieces over the Palisade traits —
//! so they work on every backend, with degraded mode and tracing if the
//! stores have them:
//!
//! - [`PalisadeSessionStore`]: tower-sessions' `SessionStore` (0.15) over any
//!   [`SessionCache`](palisade_core::SessionCache): collision-safe `create`,
//!   absolute expiry, exact expiry on `load`, `ExpiredDeletion`.
//! - [`RateLimitLayer`]: fixed-window limits per route group and client key,
//!   counted with [`SessionCache::hit`](palisade_core::SessionCache::hit), so
//!   every instance sharing a cache shares the limit; `429` with
//!   `Retry-After` and the IETF `RateLimit`/`RateLimit-Policy` headers; a
//!   configured policy when the store fails.
//! - [`SecurityEvents`] and its layer: an event per blocked request
//!   (marked [`Blocked`]), appended in batches off the request path from a
//!   bounded queue whose overflow is counted, never silent.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> palisade_core::Result<()> {
//! use std::sync::Arc;
//! use axum::{routing::post, Router};
//! use chrono::TimeDelta;
//! use palisade_core::{EventStore, Namespace, SessionCache};
//! use palisade_tower::{ClientIp, PalisadeSessionStore, RateLimitLayer, Rule, SecurityEvents, SinkConfig};
//! use tower_sessions::SessionManagerLayer;
//!
//! let m = palisade_memory::MemoryStores::new(Namespace::new("docs")?, &Default::default());
//! let (sessions, events): (Arc<dyn SessionCache>, Arc<dyn EventStore>) = (m.sessions, m.events);
//! let sink = SecurityEvents::spawn(events, SinkConfig { source: "gatekeeper".into(), ..Default::default() });
//! let limits = RateLimitLayer::builder(sessions.clone())
//!     .rule(Rule::new("login", 5, TimeDelta::minutes(1))?.path_prefix("/login"))
//!     .build();
//! let app: Router = Router::new()
//!     .route("/login", post(|| async { "welcome" }))
//!     .layer(limits)
//!     .layer(sink.layer(ClientIp::peer()))
//!     .layer(SessionManagerLayer::new(PalisadeSessionStore::new(sessions)));
//! # drop(app); Ok(()) }
//! ```
//!
//! Layer order: `SessionManagerLayer` outermost (so the events layer sees the
//! session id), then the events layer, then rate limits. Serve with
//! `into_make_service_with_connect_info::<SocketAddr>()` so the peer address
//! is known; behind a proxy use [`ClientIp::behind`].

mod client;
mod events;

/// The inner service that `poll_ready` drove to readiness, taken for one
/// call, leaving a fresh clone behind for the next `poll_ready` (tower's
/// rule: the instance that reported ready must serve the request).
fn take_ready<S: Clone>(inner: &mut S) -> S {
    let clone = inner.clone();
    std::mem::replace(inner, clone)
}

mod rate_limit;
mod session_store;

pub use client::{ClientIp, ClientKey, RequestView, MAX_PLAIN_KEY};
pub use events::{
    session_ref, Blocked, SecurityEvents, SecurityEventsLayer, SecurityEventsService, SinkConfig, SinkStats,
    MAX_EVENT_PATH, MAX_SINK_BATCH, MAX_SINK_CAPACITY,
};
pub use rate_limit::{
    OnStoreError, RateLimit, RateLimitBuilder, RateLimitLayer, RateLimitStats, Rule, RATELIMIT, RATELIMIT_POLICY,
};
pub use session_store::{PalisadeSessionStore, CREATE_ATTEMPTS, DEFAULT_PREFIX};
