//! The security-events layer and sink over the memory event store and mocks:
//! what an event carries, batching off the request path, and that nothing is
//! dropped without being counted.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::routing::post;
use axum::Router;
use chrono::TimeDelta;
use http::{header, Request, StatusCode};
use palisade_core::events::{AppendBatch, AppendOutcome, Appended, EventFilter, NewEvent, PageRequest, Position};
use palisade_core::{Error, ErrorKind, EventStore, MockEventStore, Namespace, SessionCache};
use palisade_memory::{MemoryConfig, MemoryStores};
use palisade_tower::{session_ref, ClientIp, PalisadeSessionStore, RateLimitLayer, Rule, SecurityEvents, SinkConfig};
use tower::ServiceExt;
use tower_sessions::{Session, SessionManagerLayer};

fn memory() -> MemoryStores {
    MemoryStores::new(Namespace::random("tw").unwrap(), &MemoryConfig::default())
}

/// What a store answers when it appends `batch`.
fn stored(batch: &AppendBatch) -> AppendOutcome {
    let events = batch
        .events
        .iter()
        .enumerate()
        .map(|(i, e)| Appended { id: e.id, position: Position::new(1, i as u64), version: None, duplicate: false })
        .collect();
    AppendOutcome { events }
}

fn sink(store: Arc<dyn EventStore>, capacity: usize) -> SecurityEvents {
    SecurityEvents::spawn(store, SinkConfig { source: "gatekeeper".into(), capacity, batch: 100, attempts: 3 })
}

fn app(sessions: Arc<dyn SessionCache>, sink: &SecurityEvents, ip: ClientIp) -> Router {
    let limits = RateLimitLayer::builder(sessions.clone())
        .rule(Rule::new("login", 1, TimeDelta::seconds(60)).unwrap().path_prefix("/login"))
        .build();
    Router::new()
        .route(
            "/login",
            post(|session: Session| async move {
                session.insert("user", "alice").await.unwrap();
                "welcome"
            }),
        )
        .layer(limits)
        .layer(sink.layer(ip))
        .layer(SessionManagerLayer::new(PalisadeSessionStore::new(sessions)).with_secure(false))
}

fn login(peer: [u8; 4], cookie: Option<&str>, forwarded: Option<&str>) -> Request<Body> {
    let mut b = Request::post("/login");
    if let Some(c) = cookie {
        b = b.header(header::COOKIE, c);
    }
    if let Some(f) = forwarded {
        b = b.header("x-forwarded-for", f);
    }
    let mut req = b.body(Body::empty()).unwrap();
    req.extensions_mut().insert(ConnectInfo(SocketAddr::from((peer, 5555))));
    req
}

#[tokio::test]
async fn a_rate_limited_request_becomes_an_event_with_client_session_and_tags() {
    let m = memory();
    let events = sink(m.events.clone(), 100);
    let app = app(m.sessions.clone(), &events, ClientIp::behind(["10.0.0.0/8".parse().unwrap()]));

    let first = app.clone().oneshot(login([10, 0, 0, 2], None, Some("203.0.113.50"))).await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let cookie = first.headers()[header::SET_COOKIE].to_str().unwrap().split(';').next().unwrap().to_owned();
    let session_id = cookie.trim_start_matches("id=").to_owned();

    let second = app.clone().oneshot(login([10, 0, 0, 2], Some(&cookie), Some("203.0.113.50"))).await.unwrap();
    assert_eq!(second.status(), StatusCode::TOO_MANY_REQUESTS);
    events.flush().await;

    let page = m.events.query(EventFilter::all(), PageRequest::newest(10)).await.unwrap();
    assert_eq!(page.items.len(), 1, "one event for the one blocked request");
    let e = &page.items[0];
    assert_eq!((e.source.as_str(), e.kind.as_str()), ("gatekeeper", "rate_limited"));
    assert_eq!(e.client_ip, "203.0.113.50".parse().ok(), "the forwarded client, not the proxy");
    let id: tower_sessions::session::Id = session_id.parse().unwrap();
    assert_eq!(e.session_id, Some(session_ref(&id)), "the session's reference");
    assert!(!e.session_id.as_deref().unwrap_or("").contains(&session_id), "never the id itself (a credential)");
    assert_eq!(e.tags, ["rule:login"]);
    assert_eq!(e.data["path"], "/login");
    assert_eq!(e.data["status"], 429);
    let stats = events.stats();
    assert_eq!((stats.offered, stats.appended, stats.queued), (1, 1, 0));
}

#[tokio::test]
async fn allowed_requests_record_nothing() {
    let m = memory();
    let events = sink(m.events.clone(), 100);
    let app = app(m.sessions.clone(), &events, ClientIp::peer());
    for peer in 1..=5 {
        let res = app.clone().oneshot(login([192, 0, 2, peer], None, None)).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
    events.flush().await;
    assert_eq!(events.stats().offered, 0);
    assert!(m.events.query(EventFilter::all(), PageRequest::newest(10)).await.unwrap().items.is_empty());
}

#[tokio::test]
async fn events_are_appended_in_batches_off_the_request_path() {
    let batches = Arc::new(AtomicUsize::new(0));
    let mut store = MockEventStore::new();
    let seen = batches.clone();
    store.expect_append().returning(move |batch| {
        seen.fetch_add(1, Ordering::SeqCst);
        Ok(stored(&batch))
    });
    let events = sink(Arc::new(store), 1000);
    for i in 0..250 {
        assert!(events.record(NewEvent::new("gatekeeper", "blocked").with_tag(format!("n:{i}"))));
    }
    events.flush().await;
    assert_eq!(events.stats().appended, 250);
    let n = batches.load(Ordering::SeqCst);
    assert!((3..250).contains(&n), "batched (at most 100 per append): {n} appends");
}

#[tokio::test]
async fn a_full_queue_refuses_and_counts_instead_of_waiting() {
    let mut store = MockEventStore::new();
    store.expect_append().returning(|_| Err(Error::new(ErrorKind::Unavailable, "down").set_temporary(true)));
    let events = sink(Arc::new(store), 2);
    let started = std::time::Instant::now();
    let queued = (0..50).filter(|_| events.record(NewEvent::new("gatekeeper", "blocked"))).count();
    // Waiting for room would take 48 × 300 ms of retries.
    assert!(started.elapsed() < Duration::from_secs(2), "record never waits");
    assert!(queued < 50, "a queue of 2 cannot take 50 events while the store is down");
    events.flush().await;
    let stats = events.stats();
    assert_eq!(stats.offered, 50);
    assert_eq!(stats.overflowed, 50 - queued as u64);
    assert_eq!(stats.failed, queued as u64, "retried, then counted as failed");
    assert_eq!(stats.appended + stats.overflowed + stats.failed + stats.invalid + stats.queued, 50);
}

#[tokio::test]
async fn a_temporary_append_failure_is_retried_with_the_same_events() {
    let mut store = MockEventStore::new();
    let mut seq = mockall::Sequence::new();
    store
        .expect_append()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_| Err(Error::new(ErrorKind::Timeout, "slow").set_temporary(true)));
    store.expect_append().times(1).in_sequence(&mut seq).returning(|batch| Ok(stored(&batch)));
    let events = sink(Arc::new(store), 10);
    assert!(events.record(NewEvent::new("gatekeeper", "blocked")));
    events.flush().await;
    let stats = events.stats();
    assert_eq!((stats.appended, stats.failed), (1, 0));
}

#[tokio::test]
async fn invalid_events_are_refused_and_counted() {
    let m = memory();
    let events = sink(m.events.clone(), 10);
    assert!(!events.record(NewEvent::new("gatekeeper", "")), "an empty kind is invalid");
    assert!(!events.record(NewEvent::new("gatekeeper", "k".repeat(100_000))));
    events.flush().await;
    let stats = events.stats();
    assert_eq!((stats.offered, stats.invalid, stats.appended), (2, 2, 0));
}

#[tokio::test]
async fn a_batch_refused_for_one_event_loses_only_that_event() {
    let mut store = MockEventStore::new();
    store.expect_append().returning(|batch| {
        if batch.events.iter().any(|e| e.kind == "poison") {
            return Err(Error::invalid("event data too large"));
        }
        Ok(stored(&batch))
    });
    let events = sink(Arc::new(store), 100);
    for kind in ["blocked", "poison", "blocked", "blocked"] {
        assert!(events.record(NewEvent::new("gatekeeper", kind)));
    }
    events.flush().await;
    let stats = events.stats();
    assert_eq!((stats.appended, stats.failed, stats.queued), (3, 1, 0));
}
