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
