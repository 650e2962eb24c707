//! How a service unit-tests its own logic against Palisade's mocks
//! (`palisade-core` feature `mock`). Each test is a small piece of service code
//! plus the expectations it places on the store.
#![cfg(feature = "mock")]

use std::net::IpAddr;

use chrono::TimeDelta;
use mockall::predicate::{always, eq};
use palisade_core::events::{AppendOutcome, Appended, NewEvent, Position};
use palisade_core::reputation::{Recorded, ReputationEvent, Subject};
use palisade_core::sessions::{Decision, SetMode};
use palisade_core::{
    DocumentStore, Error, ErrorKind, EventStore, MockDocumentStore, MockEventStore, MockReputationRepo,
    MockSessionCache, ReputationRepo, SessionCache,
};
use serde_json::{json, Value};

/// Service code: record a block decision for a client.
async fn record_block(events: &dyn EventStore, ip: IpAddr, rule: &str) -> palisade_core::Result<Position> {
    let event = NewEvent::new("gatekeeper", "blocked").with_client_ip(ip).with_tag(format!("rule:{rule}"));
    let outcome = events.append(palisade_core::events::AppendBatch::new(vec![event])).await?;
    outcome.events.first().map(|a| a.position).ok_or_else(|| Error::new(ErrorKind::Unexpected, "no outcome"))
}

#[tokio::test]
async fn event_store_mock_sees_the_block_event() {
    let mut events = MockEventStore::new();
    events
        .expect_append()
        .withf(|batch| {
            batch.events.len() == 1 && batch.events[0].kind == "blocked" && batch.events[0].tags == ["rule:sqli"]
        })
        .times(1)
        .returning(|batch| {
            let id = batch.events[0].id;
            Ok(AppendOutcome {
                events: vec![Appended { id, position: Position::new(7, 0), version: None, duplicate: false }],
            })
        });
    let pos = record_block(&events, "10.0.0.1".parse().unwrap(), "sqli").await.unwrap();
    assert_eq!(pos, Position::new(7, 0));
}

/// Service code: allow a request unless the session's rate limit is spent;
/// a cache outage fails open but is reported.
async fn admit(sessions: &dyn SessionCache, session: &str) -> (bool, Option<Error>) {
    match sessions.hit(&format!("rl:{session}"), 100, TimeDelta::seconds(60)).await {
        Ok(d) => (d.allowed, None),
        Err(e) => (true, Some(e)),
    }
}

#[tokio::test]
async fn session_cache_mock_drives_rate_limit_decisions() {
    let mut sessions = MockSessionCache::new();
    sessions
        .expect_hit()
        .with(eq("rl:s1"), eq(100u32), eq(TimeDelta::seconds(60)))
        .returning(|_, limit, w| Ok(Decision::from_count(u64::from(limit) + 1, limit, w)));
    sessions
        .expect_hit()
        .with(eq("rl:s2"), always(), always())
        .returning(|_, _, _| Err(Error::new(ErrorKind::Unavailable, "down")));
    assert!(!admit(&sessions, "s1").await.0, "over the limit");
    let (allowed, err) = admit(&sessions, "s2").await;
    assert!(allowed);
    assert_eq!(err.map(|e| e.kind()), Some(ErrorKind::Unavailable));
}

#[tokio::test]
async fn session_cache_mock_checks_set_if_absent() {
    let mut sessions = MockSessionCache::new();
    sessions
        .expect_set()
        .withf(|key, value, ttl, mode| {
            key == "lock:job" && value == &json!("me") && ttl.is_some() && *mode == SetMode::IfAbsent
        })
        .returning(|_, _, _, _| Ok(false));
    let took =
        sessions.set("lock:job", json!("me"), Some(TimeDelta::seconds(5).into()), SetMode::IfAbsent).await.unwrap();
    assert!(!took, "another worker holds the lock");
}

/// Service code: store an analysis report and return its id.
async fn save_report(docs: &dyn DocumentStore, verdict: &str) -> palisade_core::Result<String> {
    let stored = docs.insert("reports", json!({ "verdict": verdict })).await?;
    Ok(stored["_id"].as_str().unwrap_or_default().to_owned())
}

#[tokio::test]
async fn document_store_mock_returns_stored_id() {
    let mut docs = MockDocumentStore::new();
    docs.expect_insert().withf(|coll, doc| coll == "reports" && doc["verdict"] == "malicious").returning(
        |_, mut doc: Value| {
            doc["_id"] = json!("r-1");
            doc["_version"] = json!(1);
            Ok(doc)
        },
    );
    assert_eq!(save_report(&docs, "malicious").await.unwrap(), "r-1");
}

/// Service code: reward an engine for a confirmed detection.
async fn reward(repo: &dyn ReputationRepo, engine: &str) -> palisade_core::Result<i64> {
    Ok(repo.record(ReputationEvent::new(Subject::engine(engine), 10, "confirmed detection")).await?.score)
}

#[tokio::test]
async fn reputation_repo_mock_sees_the_reward() {
    let mut repo = MockReputationRepo::new();
    repo.expect_record()
        .withf(|e| e.subject == Subject::engine("yara") && e.delta == 10)
        .times(1)
        .returning(|_| Ok(Recorded { score: 42, duplicate: false }));
    assert_eq!(reward(&repo, "yara").await.unwrap(), 42);
}
