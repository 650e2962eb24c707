//! palisade-mongo against the Mongo test server (`PALISADE_TEST_MONGO_URL`;
//! skipped with a notice without it, failed when `PALISADE_REQUIRE` names
//! mongo): connecting, pinging, dropping a namespace, and an unreachable
//! server failing at connect with a temporary `Unavailable`.

use std::time::Duration;

use mongodb::bson::doc;
use palisade_conformance::server_url;
use palisade_core::{ErrorKind, Namespace};
use palisade_mongo::{MongoBackend, MongoConfig};

#[tokio::test]
async fn connects_pings_and_drops_its_namespace() {
    let Some(url) = server_url("mongo", "PALISADE_TEST_MONGO_URL") else { return };
    let ns = Namespace::random("mgo").unwrap();
    let backend = MongoBackend::connect(&MongoConfig::new(url, ns.clone())).await.expect("connects");
    backend.ping().await.unwrap();
    let things = backend.database().collection::<mongodb::bson::Document>("things");
    things.insert_one(doc! {"_id": 1}).await.unwrap();
    let names = backend.database().list_collection_names().await.unwrap();
    assert!(names.contains(&"things".to_owned()), "{names:?}");
    backend.drop_namespace().await.unwrap();
    let names = backend.database().list_collection_names().await.unwrap();
    assert!(names.is_empty(), "dropped: {names:?}");
}

#[tokio::test]
async fn an_unreachable_server_is_temporarily_unavailable() {
    // A loopback port nothing listens on.
    let config = MongoConfig::new("mongodb://127.0.0.1:9/?directConnection=true", Namespace::new("t").unwrap())
        .with_connect_timeout(Duration::from_millis(500));
    let e = MongoBackend::connect(&config).await.err().expect("refused");
    assert_eq!((e.kind(), e.is_temporary()), (ErrorKind::Unavailable, true), "{e}");
}

/// Documents written around the store (another writer, an older version)
/// that are malformed are skipped by reputation reads: one stored row never
/// fails the read of the others.
#[tokio::test]
async fn malformed_reputation_documents_never_fail_a_whole_read() {
    use palisade_core::reputation::{Period, ReputationEvent, Subject, SubjectKind};
    use palisade_core::time::TimeRange;
    use palisade_core::ReputationRepo;
    let Some(url) = server_url("mongo", "PALISADE_TEST_MONGO_URL") else { return };
    let backend = MongoBackend::connect(&MongoConfig::new(url, Namespace::random("mgo").unwrap())).await.unwrap();
    let repo = backend.reputation();
    let alice = Subject::user("alice");
    repo.record(ReputationEvent::new(alice.clone(), 5, "ok")).await.unwrap();
    let db = backend.database();
    db.collection::<mongodb::bson::Document>("reputation_events")
        .insert_one(doc! {"_id": "not-a-uuid", "k": "user", "s": "alice", "d": "five", "at": "yesterday"})
        .await
        .unwrap();
    db.collection::<mongodb::bson::Document>("reputation_scores")
        .insert_one(doc! {"_id": {"p": "all", "k": "user", "s": "mallory"}, "p": "all", "k": "user", "s": "mallory", "score": "lots"})
        .await
        .unwrap();
    let history = repo.history(&alice, TimeRange::all(), 10).await.expect("history despite a malformed event");
    assert_eq!(history.iter().map(|e| e.delta).collect::<Vec<_>>(), vec![5]);
    let board = repo.leaderboard(SubjectKind::User, Period::AllTime, 0, 10).await.expect("board despite a bad score");
    assert_eq!(board.iter().map(|r| (r.subject.id.as_str(), r.score)).collect::<Vec<_>>(), vec![("alice", 5)]);
    backend.drop_namespace().await.unwrap();
}

/// Malformed stored events (written around the store) are skipped and read
/// past: they never shorten a page, end pagination early, or stop a tail.
#[tokio::test]
async fn malformed_events_are_read_past() {
    use futures::StreamExt;
    use palisade_core::events::{Cursor, EventFilter, NewEvent, PageRequest, SubscriptionItem};
    use palisade_core::{EventStore, EventStoreExt};
    let Some(url) = server_url("mongo", "PALISADE_TEST_MONGO_URL") else { return };
    let backend = MongoBackend::connect(&MongoConfig::new(url, Namespace::random("mgo").unwrap())).await.unwrap();
    let store = backend.events();
    let first = store.append_one(NewEvent::new("t", "good")).await.unwrap();
    // Positions 2..=4 taken by documents that do not decode, as if written by another writer.
    let events = backend.database().collection::<mongodb::bson::Document>("events");
    for pos in 2_i64..=4 {
        events.insert_one(doc! {"_id": format!("bad{pos}"), "pos": pos, "kind": "good", "data": 7}).await.unwrap();
    }
    backend
        .database()
        .collection::<mongodb::bson::Document>("event_head")
        .update_one(doc! {"_id": "head"}, doc! {"$set": {"n": 4_i64}})
        .await
        .unwrap();
    let last = store.append_one(NewEvent::new("t", "good")).await.unwrap();
    assert_eq!(last.position.major, 5);

    let read = store.read(Cursor::Start, 2).await.expect("read despite malformed events");
    assert_eq!(read.iter().map(|e| e.id).collect::<Vec<_>>(), vec![first.id, last.id]);
    let page = store.query(EventFilter::all().kind("good"), PageRequest::oldest(1)).await.unwrap();
    assert_eq!(page.items.len(), 1);
    let next = page.next.expect("more pages");
    let page = store.query(EventFilter::all().kind("good"), PageRequest::oldest(1).continue_after(next)).await.unwrap();
    assert_eq!(page.items.iter().map(|e| e.id).collect::<Vec<_>>(), vec![last.id], "the next page skips past them");

    let mut tail = store.subscribe(Cursor::After(first.position), EventFilter::all()).await.unwrap();
    let item = tokio::time::timeout(Duration::from_secs(10), tail.next()).await.unwrap().unwrap().unwrap();
    assert!(matches!(item, SubscriptionItem::Event(e) if e.id == last.id), "the tail reads past them");
    backend.drop_namespace().await.unwrap();
}
