//! Degraded mode (`Degradable<T>`) for all four traits, against a scripted
//! flaky primary (`Flaky`, a real memory store that fails on command) and a
//! memory secondary. The proofs: failover, recovery, replay order, idempotent
//! replay after a failure mid-replay or a timed-out-but-applied write, the
//! bounded buffer, and that no acknowledged write is lost.
#![cfg(feature = "conformance")]

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use palisade::memory::{MemoryConfig, MemoryStores};
use palisade_conformance::{Flaky, FlakyMode};
use palisade_core::documents::{CollectionSpec, Filter, FindOptions, UpdateOps};
use palisade_core::events::{AppendBatch, Cursor, ExpectedVersion, NewEvent};
use palisade_core::reputation::{ReputationEvent, Subject};
use palisade_core::sessions::SetMode;
use palisade_core::{
    Degradable, DegradeConfig, DocumentStore, ErrorKind, EventStore, Health, Namespace, ReputationRepo, SessionCache,
};
use serde_json::json;
use uuid::Uuid;

fn stores() -> MemoryStores {
    MemoryStores::new(Namespace::random("deg").unwrap(), &MemoryConfig::default())
}

/// Probes far in the future, so tests drive recovery with `try_recover`.
fn manual() -> DegradeConfig {
    DegradeConfig {
        probe_initial: Duration::from_secs(3600),
        probe_max: Duration::from_secs(3600),
        ..DegradeConfig::default()
    }
}

struct Events {
    flaky: Arc<Flaky<dyn EventStore>>,
    store: Degradable<dyn EventStore>,
}

fn events(config: DegradeConfig) -> Events {
    let flaky = Arc::new(Flaky::new(stores().events as Arc<dyn EventStore>));
    let store = Degradable::new(flaky.clone() as Arc<dyn EventStore>, stores().events as Arc<dyn EventStore>, config);
    Events { flaky, store }
}

fn ev(n: u32) -> NewEvent {
    NewEvent::new("gatekeeper", "blocked").with_data(json!({ "n": n }))
}

async fn primary_ids(flaky: &Flaky<dyn EventStore>) -> Vec<Uuid> {
    flaky.inner().read(Cursor::Start, 10_000).await.unwrap().iter().map(|e| e.id).collect()
}

#[tokio::test]
async fn healthy_store_serves_from_primary() {
    let e = events(manual());
    e.store.append(AppendBatch::new(vec![ev(1)])).await.unwrap();
    assert_eq!(primary_ids(&e.flaky).await.len(), 1);
    assert_eq!(e.store.health(), Health::Healthy);
}

#[tokio::test]
async fn failover_serves_writes_from_secondary_and_reports_degraded() {
    let e = events(manual());
    e.flaky.set_mode(FlakyMode::Down);
    let out = e.store.append(AppendBatch::new(vec![ev(1), ev(2)])).await.unwrap();
    assert_eq!(out.appended(), 2);
    match e.store.health() {
        Health::Degraded { buffered, reason, .. } => {
            assert_eq!(buffered, 1);
            assert!(reason.contains("unavailable"), "{reason}");
        }
        Health::Healthy => panic!("expected degraded"),
    }
    assert_eq!(e.store.read(Cursor::Start, 10).await.unwrap().len(), 2, "reads come from the secondary");
}

#[tokio::test]
async fn recovery_replays_events_in_order_then_switches_back() {
    let e = events(manual());
    e.flaky.set_mode(FlakyMode::Down);
    let mut acked = Vec::new();
    for n in 0..10 {
        acked.push(e.store.append(AppendBatch::new(vec![ev(n)])).await.unwrap().events[0].id);
    }
    assert!(e.store.try_recover().await.is_err(), "still down");
    e.flaky.set_mode(FlakyMode::Up);
    e.store.try_recover().await.unwrap();
    assert_eq!(e.store.health(), Health::Healthy);
    assert_eq!(primary_ids(&e.flaky).await, acked, "replayed in acknowledgement order");
    e.store.append(AppendBatch::new(vec![ev(99)])).await.unwrap();
    assert_eq!(primary_ids(&e.flaky).await.len(), 11, "new writes go to the primary again");
}

#[tokio::test]
async fn replay_interrupted_by_another_failure_resumes_without_duplicates() {
    // Entry by entry, so the failure lands inside the replay (grouped
    // replay is interrupted the same way in palisade-core's tests).
    let e = events(DegradeConfig { replay_grouped: false, ..manual() });
    e.flaky.set_mode(FlakyMode::Down);
    let mut acked = Vec::new();
    for n in 0..6 {
        acked.push(e.store.append(AppendBatch::new(vec![ev(n)])).await.unwrap().events[0].id);
    }
    // The probe's ping plus three replayed appends get through, then the primary dies again.
    e.flaky.go_down_after(4);
    assert!(e.store.try_recover().await.is_err());
    assert_eq!(primary_ids(&e.flaky).await, acked[..3].to_vec());
    assert!(matches!(e.store.health(), Health::Degraded { buffered: 3, .. }));
    e.flaky.set_mode(FlakyMode::Up);
    e.store.try_recover().await.unwrap();
    assert_eq!(primary_ids(&e.flaky).await, acked, "each event exactly once, in order");
}

#[tokio::test]
async fn timed_out_but_applied_write_is_not_duplicated_by_replay() {
    let e = events(manual());
    e.flaky.set_mode(FlakyMode::ApplyThenTimeout);
    let id = e.store.append(AppendBatch::new(vec![ev(1)])).await.unwrap().events[0].id;
    e.flaky.set_mode(FlakyMode::Up);
    e.store.try_recover().await.unwrap();
    assert_eq!(primary_ids(&e.flaky).await, vec![id]);
}

#[tokio::test]
async fn full_buffer_fails_writes_with_unavailable_and_changes_nothing() {
    let e = events(DegradeConfig { buffer_capacity: 3, ..manual() });
    e.flaky.set_mode(FlakyMode::Down);
    for n in 0..3 {
        e.store.append(AppendBatch::new(vec![ev(n)])).await.unwrap();
    }
    let err = e.store.append(AppendBatch::new(vec![ev(3)])).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(err.is_temporary());
    assert_eq!(e.store.read(Cursor::Start, 10).await.unwrap().len(), 3, "the refused write is nowhere");
    e.flaky.set_mode(FlakyMode::Up);
    e.store.try_recover().await.unwrap();
    assert_eq!(primary_ids(&e.flaky).await.len(), 3);
}

#[tokio::test]
async fn expected_version_appends_are_refused_while_degraded() {
    let e = events(manual());
    e.flaky.set_mode(FlakyMode::Down);
    e.store.append(AppendBatch::new(vec![ev(0)])).await.unwrap();
    let batch = AppendBatch::new(vec![ev(1).with_stream("s")]).expect("s", ExpectedVersion::NoStream);
    assert_eq!(e.store.append(batch).await.unwrap_err().kind(), ErrorKind::Unavailable);
}

#[tokio::test]
async fn bad_input_is_returned_without_failing_over() {
    let e = events(manual());
    let err = e.store.append(AppendBatch::new(vec![])).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert_eq!(e.store.health(), Health::Healthy);
}

#[tokio::test]
async fn background_probe_recovers_on_its_own() {
    let config = DegradeConfig {
        probe_initial: Duration::from_millis(20),
        probe_max: Duration::from_millis(50),
        ..DegradeConfig::default()
    };
    let e = events(config);
    e.flaky.set_mode(FlakyMode::Down);
    let id = e.store.append(AppendBatch::new(vec![ev(1)])).await.unwrap().events[0].id;
    e.flaky.set_mode(FlakyMode::Up);
    for _ in 0..200 {
        if e.store.health() == Health::Healthy {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(e.store.health(), Health::Healthy);
    assert_eq!(primary_ids(&e.flaky).await, vec![id]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledged_event_is_lost_across_outages_under_concurrent_writers() {
    let e = Arc::new(events(DegradeConfig {
        probe_initial: Duration::from_millis(5),
        probe_max: Duration::from_millis(20),
        ..DegradeConfig::default()
    }));
    let writers: Vec<_> = (0..16)
        .map(|w| {
            let e = Arc::clone(&e);
            tokio::spawn(async move {
                let mut acked = Vec::new();
                for n in 0..60 {
                    if let Ok(out) = e.store.append(AppendBatch::new(vec![ev(w * 1000 + n)])).await {
                        acked.push(out.events[0].id);
                    }
                    tokio::task::yield_now().await;
                }
                acked
            })
        })
        .collect();
    for round in 0..6 {
        e.flaky.set_mode(if round % 2 == 0 { FlakyMode::Down } else { FlakyMode::Up });
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    e.flaky.set_mode(FlakyMode::Up);
    let mut acked = Vec::new();
    for w in writers {
        acked.extend(w.await.unwrap());
    }
    for _ in 0..500 {
        if e.store.try_recover().await.is_ok() && e.store.health() == Health::Healthy {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stored: std::collections::HashSet<Uuid> = primary_ids(&e.flaky).await.into_iter().collect();
    assert_eq!(acked.len(), 16 * 60, "memory never refuses, so every write is acknowledged");
    let lost: Vec<_> = acked.iter().filter(|id| !stored.contains(id)).collect();
    assert!(lost.is_empty(), "{} acknowledged events lost", lost.len());
    assert_eq!(stored.len(), acked.len(), "and none stored twice");
}

// ---------- sessions ----------

fn sessions(config: DegradeConfig) -> (Arc<Flaky<dyn SessionCache>>, Degradable<dyn SessionCache>) {
    let flaky = Arc::new(Flaky::new(stores().sessions as Arc<dyn SessionCache>));
    let store =
        Degradable::new(flaky.clone() as Arc<dyn SessionCache>, stores().sessions as Arc<dyn SessionCache>, config);
    (flaky, store)
}

#[tokio::test]
async fn session_writes_fail_over_and_are_not_replayed_by_default() {
    let (flaky, store) = sessions(manual());
    flaky.set_mode(FlakyMode::Down);
    assert!(store.set("k", json!(1), None, SetMode::Always).await.unwrap());
    assert_eq!(store.get("k").await.unwrap(), Some(json!(1)), "served by the secondary");
    assert!(matches!(store.health(), Health::Degraded { buffered: 0, .. }));
    flaky.set_mode(FlakyMode::Up);
    store.try_recover().await.unwrap();
    assert_eq!(flaky.inner().get("k").await.unwrap(), None, "sessions are ephemeral");
}

#[tokio::test]
async fn session_writes_are_replayed_in_order_when_configured() {
    let (flaky, store) = sessions(DegradeConfig { replay_sessions: true, ..manual() });
    flaky.set_mode(FlakyMode::Down);
    store.set("k", json!("a"), None, SetMode::Always).await.unwrap();
    store.incr("n", 2, None).await.unwrap();
    store.incr("n", 3, None).await.unwrap();
    store.push("h", json!(1), 10, Some(TimeDelta::minutes(5).into())).await.unwrap();
    store.push("h", json!(2), 10, None).await.unwrap();
    assert!(!store.set("k", json!("b"), None, SetMode::IfAbsent).await.unwrap(), "a set that did not write");
    store.hit("rl", 5, TimeDelta::seconds(10)).await.unwrap();
    flaky.set_mode(FlakyMode::Up);
    store.try_recover().await.unwrap();
    let primary = flaky.inner();
    assert_eq!(primary.get("k").await.unwrap(), Some(json!("a")));
    assert_eq!(primary.get("n").await.unwrap(), Some(json!(5)));
    assert_eq!(primary.range("h", 10).await.unwrap(), vec![json!(2), json!(1)]);
    assert_eq!(primary.get("rl").await.unwrap(), None, "rate-limit hits are never replayed");
}

/// Expiries are pinned when the call is made: a short TTL served by the
/// secondary works, and a replay after the instant has passed leaves the key
/// expired on the primary — an overwritten value does not come back, an
/// expired list is gone, an existing counter still counts.
#[tokio::test]
async fn replayed_session_writes_keep_their_original_expiry_instant() {
    let (flaky, store) = sessions(DegradeConfig { replay_sessions: true, ..manual() });
    let primary = flaky.inner();
    primary.set("k", json!("before the outage"), None, SetMode::Always).await.unwrap();
    primary.incr("n", 10, None).await.unwrap();
    flaky.set_mode(FlakyMode::Down);
    let short = Some(TimeDelta::milliseconds(50).into());
    assert!(store.set("k", json!("revoked"), short, SetMode::Always).await.unwrap(), "a short TTL is served");
    store.push("h", json!(1), 10, short).await.unwrap();
    store.incr("n", 1, short).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    flaky.set_mode(FlakyMode::Up);
    store.try_recover().await.unwrap();
    assert!(store.take_rejected().is_empty(), "every replayed write applied");
    assert_eq!(primary.get("k").await.unwrap(), None, "the pre-outage value came back");
    assert!(primary.range("h", 10).await.unwrap().is_empty());
    assert_eq!(primary.get("n").await.unwrap(), Some(json!(11)), "the increment was lost");
}

// ---------- documents ----------

fn documents(config: DegradeConfig) -> (Arc<Flaky<dyn DocumentStore>>, Degradable<dyn DocumentStore>) {
    let flaky = Arc::new(Flaky::new(stores().documents as Arc<dyn DocumentStore>));
    let store =
        Degradable::new(flaky.clone() as Arc<dyn DocumentStore>, stores().documents as Arc<dyn DocumentStore>, config);
    (flaky, store)
}

fn all() -> FindOptions {
    FindOptions::new(Filter::all())
}

#[tokio::test]
async fn document_writes_fail_over_and_replay_in_order() {
    let (flaky, store) = documents(manual());
    store.ensure_collection(CollectionSpec::new("reports")).await.unwrap();
    flaky.set_mode(FlakyMode::Down);
    let a = store.insert("reports", json!({"_id": "a", "n": 1})).await.unwrap();
    assert_eq!(a["_version"], 1);
    store.insert_many("reports", vec![json!({"_id": "b", "n": 2}), json!({"n": 3})]).await.unwrap();
    store
        .update(
            "reports",
            Filter::parse(&json!({"n": {"$gte": 2}})).unwrap(),
            UpdateOps::parse(&json!({"$inc": {"n": 10}})).unwrap(),
        )
        .await
        .unwrap();
    store.replace("reports", "a", json!({"n": 100}), None).await.unwrap();
    store.delete("reports", Filter::eq("_id", json!("b")).unwrap()).await.unwrap();
    let degraded_view = store.find("reports", all()).await.unwrap();
    flaky.set_mode(FlakyMode::Up);
    store.try_recover().await.unwrap();
    let primary_view = flaky.inner().find("reports", all()).await.unwrap();
    let strip = |docs: Vec<serde_json::Value>| -> Vec<serde_json::Value> {
        docs.into_iter()
            .map(|mut d| {
                d.as_object_mut().unwrap().remove("_version");
                d
            })
            .collect()
    };
    assert_eq!(strip(primary_view), strip(degraded_view), "the primary ends where the secondary was");
}

#[tokio::test]
async fn timed_out_but_applied_insert_is_not_duplicated_by_replay() {
    let (flaky, store) = documents(manual());
    store.ensure_collection(CollectionSpec::new("reports")).await.unwrap();
    flaky.set_mode(FlakyMode::ApplyThenTimeout);
    store.insert("reports", json!({"_id": "x", "n": 1})).await.unwrap();
    flaky.set_mode(FlakyMode::Up);
    store.try_recover().await.unwrap();
    assert_eq!(flaky.inner().count("reports", Filter::all()).await.unwrap(), 1);
    assert!(store.take_rejected().is_empty());
}

#[tokio::test]
async fn timed_out_insert_without_id_is_replayed_under_the_same_id() {
    let (flaky, store) = documents(manual());
    store.ensure_collection(CollectionSpec::new("reports")).await.unwrap();
    flaky.set_mode(FlakyMode::ApplyThenTimeout);
    let stored = store.insert("reports", json!({"n": 1})).await.unwrap();
    flaky.set_mode(FlakyMode::Up);
    store.try_recover().await.unwrap();
    assert_eq!(flaky.inner().count("reports", Filter::all()).await.unwrap(), 1, "not stored twice under two ids");
    assert!(flaky.inner().get("reports", stored["_id"].as_str().unwrap()).await.unwrap().is_some());
    assert!(store.take_rejected().is_empty());
}

#[tokio::test]
async fn timed_out_non_idempotent_update_is_returned_not_applied_twice() {
    let (flaky, store) = documents(manual());
    store.ensure_collection(CollectionSpec::new("reports")).await.unwrap();
    store.insert("reports", json!({"_id": "a", "n": 1})).await.unwrap();
    flaky.set_mode(FlakyMode::ApplyThenTimeout);
    let inc = UpdateOps::parse(&json!({"$inc": {"n": 1}})).unwrap();
    let err = store.update("reports", Filter::eq("_id", json!("a")).unwrap(), inc).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "the caller learns the outcome is unknown");
    flaky.set_mode(FlakyMode::Up);
    store.try_recover().await.unwrap();
    assert_eq!(flaky.inner().get("reports", "a").await.unwrap().unwrap()["n"], 2, "applied once, by the primary");
}

#[tokio::test]
async fn versioned_append_that_triggers_the_failover_is_refused() {
    let e = events(manual());
    e.flaky.set_mode(FlakyMode::Down);
    let batch = AppendBatch::new(vec![ev(1).with_stream("s")]).expect("s", ExpectedVersion::NoStream);
    assert_eq!(e.store.append(batch).await.unwrap_err().kind(), ErrorKind::Unavailable);
    assert!(matches!(e.store.health(), Health::Degraded { buffered: 0, .. }), "nothing buffered");
    assert!(e.store.read(Cursor::Start, 10).await.unwrap().is_empty(), "nothing served by the secondary");
}

#[tokio::test]
async fn replace_with_expected_version_is_refused_while_degraded() {
    let (flaky, store) = documents(manual());
    store.ensure_collection(CollectionSpec::new("reports")).await.unwrap();
    flaky.set_mode(FlakyMode::Down);
    store.insert("reports", json!({"_id": "a"})).await.unwrap();
    let err = store.replace("reports", "a", json!({"n": 1}), Some(1)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
}

#[tokio::test]
async fn replay_rejected_by_the_primary_is_reported_not_dropped_silently() {
    let (flaky, store) = documents(manual());
    store.ensure_collection(CollectionSpec::new("reports")).await.unwrap();
    flaky.inner().insert("reports", json!({"_id": "a", "n": "text on the primary"})).await.unwrap();
    flaky.set_mode(FlakyMode::Down);
    store.insert("reports", json!({"_id": "a", "n": 1})).await.unwrap();
    let inc = UpdateOps::parse(&json!({"$inc": {"n": 1}})).unwrap();
    assert_eq!(store.update("reports", Filter::eq("_id", json!("a")).unwrap(), inc).await.unwrap().modified, 1);
    flaky.set_mode(FlakyMode::Up);
    store.try_recover().await.unwrap();
    let rejected = store.take_rejected();
    assert_eq!(rejected.len(), 2, "{rejected:?}");
    assert_eq!(rejected[0].error.kind(), ErrorKind::Conflict, "a different document holds the replayed insert's `_id`");
    assert!(rejected[0].what.contains("insert"), "{}", rejected[0].what);
    assert_eq!(rejected[1].error.kind(), ErrorKind::InvalidInput, "`$inc` on the primary's text field");
    assert!(rejected[1].what.contains("update"), "{}", rejected[1].what);
    assert_eq!(store.health(), Health::Healthy);
}

// ---------- reputation ----------

#[tokio::test]
async fn reputation_events_replay_idempotently() {
    let flaky = Arc::new(Flaky::new(stores().reputation as Arc<dyn ReputationRepo>));
    let store = Degradable::new(
        flaky.clone() as Arc<dyn ReputationRepo>,
        stores().reputation as Arc<dyn ReputationRepo>,
        manual(),
    );
    flaky.inner().record(ReputationEvent::new(Subject::engine("yara"), 5, "before")).await.unwrap();
    flaky.set_mode(FlakyMode::ApplyThenTimeout);
    let timed_out = ReputationEvent::new(Subject::engine("yara"), 7, "applied, not told");
    store.record(timed_out.clone()).await.unwrap();
    flaky.set_mode(FlakyMode::Down);
    store.record(ReputationEvent::new(Subject::engine("yara"), 3, "during outage")).await.unwrap();
    store.record(timed_out).await.unwrap();
    flaky.set_mode(FlakyMode::Up);
    store.try_recover().await.unwrap();
    assert_eq!(store.score(&Subject::engine("yara")).await.unwrap(), 15, "5 + 7 + 3, the retried event once");
}

/// Toggles `flaky` down and up a few times while writers run, then lets it recover.
async fn outages<T: ?Sized>(flaky: &Flaky<T>) {
    for round in 0..6 {
        flaky.set_mode(if round % 2 == 0 { FlakyMode::Down } else { FlakyMode::Up });
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    flaky.set_mode(FlakyMode::Up);
}

fn quick_probe() -> DegradeConfig {
    DegradeConfig {
        probe_initial: Duration::from_millis(5),
        probe_max: Duration::from_millis(20),
        ..DegradeConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledged_reputation_event_is_lost_across_outages() {
    let flaky = Arc::new(Flaky::new(stores().reputation as Arc<dyn ReputationRepo>));
    let store = Arc::new(Degradable::new(
        flaky.clone() as Arc<dyn ReputationRepo>,
        stores().reputation as Arc<dyn ReputationRepo>,
        quick_probe(),
    ));
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let mut acked = 0i64;
                for _ in 0..50 {
                    if store.record(ReputationEvent::new(Subject::user(format!("u{w}")), 1, "hit")).await.is_ok() {
                        acked += 1;
                    }
                    // A pause between writes spreads them over the outages and recoveries.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                (w, acked)
            })
        })
        .collect();
    outages(&flaky).await;
    let mut acked = Vec::new();
    for w in writers {
        acked.push(w.await.unwrap());
    }
    for _ in 0..500 {
        if store.try_recover().await.is_ok() && store.health() == Health::Healthy {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for (w, n) in acked {
        assert_eq!(n, 50, "memory never refuses");
        assert_eq!(
            flaky.inner().score(&Subject::user(format!("u{w}"))).await.unwrap(),
            n,
            "writer {w}: every acknowledged point, once"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledged_document_is_lost_across_outages() {
    let flaky = Arc::new(Flaky::new(stores().documents as Arc<dyn DocumentStore>));
    let store = Arc::new(Degradable::new(
        flaky.clone() as Arc<dyn DocumentStore>,
        stores().documents as Arc<dyn DocumentStore>,
        quick_probe(),
    ));
    store.ensure_collection(CollectionSpec::new("reports")).await.unwrap();
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let mut acked = Vec::new();
                for n in 0..40 {
                    if let Ok(doc) = store.insert("reports", json!({"writer": w, "n": n})).await {
                        acked.push(doc["_id"].as_str().unwrap().to_owned());
                    }
                    tokio::task::yield_now().await;
                }
                acked
            })
        })
        .collect();
    outages(&flaky).await;
    let mut acked = Vec::new();
    for w in writers {
        acked.extend(w.await.unwrap());
    }
    for _ in 0..500 {
        if store.try_recover().await.is_ok() && store.health() == Health::Healthy {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(acked.len(), 8 * 40);
    for id in &acked {
        assert!(flaky.inner().get("reports", id).await.unwrap().is_some(), "acknowledged document {id} lost");
    }
    assert_eq!(flaky.inner().count("reports", Filter::all()).await.unwrap(), acked.len() as u64, "none twice");
}
