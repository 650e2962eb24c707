//! The conformance suite against MongoDB via the official driver, opened
//! through the facade (`mongodb://` URLs). The server comes from
//! `PALISADE_TEST_MONGO_URL` (the test script starts a Mongo-wire test
//! server, see `scripts/mongo-server.sh`); without it the cases are skipped
//! with a notice — unless `PALISADE_REQUIRE` names `mongo`, in which case
//! they fail.
#![cfg(all(feature = "mongo", feature = "conformance"))]

use std::sync::Arc;

use palisade::harness::ConfigHarness;
use palisade::{Config, StoreUrl};
use palisade_conformance::{harness_from_env, Harness};

async fn harness() -> Option<Arc<dyn Harness>> {
    harness_from_env("mongo", "PALISADE_TEST_MONGO_URL", |url| async move {
        let mut config = Config::default();
        let url = StoreUrl::parse(&url)?;
        for store in [&mut config.events, &mut config.sessions, &mut config.documents, &mut config.reputation] {
            store.url = url.clone();
        }
        config.pool_size = 4;
        // The test server is one Python process: a page read over the
        // 70,000-event case's collection can take it longer than the default
        // 10 s operation timeout (CI, 2026-12-03). No case asserts on time.
        config.op_timeout = std::time::Duration::from_secs(60);
        let harness = ConfigHarness::new(config).recycling();
        // Fail (or skip) here, once, if the server is unreachable.
        harness.ping().await?;
        Ok(Arc::new(harness) as Arc<dyn Harness>)
    })
    .await
}

palisade_conformance::conformance_tests!(
    mongo,
    harness(),
    [event_store, session_cache, document_store, reputation_repo, tower]
);
