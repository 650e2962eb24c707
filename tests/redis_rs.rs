//! The conformance suite against Redis via redis-rs, opened through the facade
//! (`redis://` URLs). The server comes from `PALISADE_TEST_REDIS_URL` (e.g.
//! `redis://127.0.0.1:6379`); without it the cases are skipped with a notice —
//! unless `PALISADE_REQUIRE` names `redis`, in which case they fail. Redis
//! offers no document store, so that trait is not run.
#![cfg(feature = "redis-rs")]

use std::sync::Arc;

use palisade::harness::ConfigHarness;
use palisade::{Config, StoreUrl};
use palisade_conformance::{harness_from_env, Harness};

async fn harness() -> Option<Arc<dyn Harness>> {
    harness_from_env("redis", "PALISADE_TEST_REDIS_URL", |url| async move {
        let mut config = Config::default();
        let url = StoreUrl::parse(&url)?;
        for store in [&mut config.events, &mut config.sessions, &mut config.reputation] {
            store.url = url.clone();
        }
        config.pool_size = 4;
        let harness = ConfigHarness::new(config);
        // Fail (or skip) here, once, if the server is unreachable.
        harness.ping().await?;
        Ok(Arc::new(harness) as Arc<dyn Harness>)
    })
    .await
}

palisade_conformance::conformance_tests!(
    redis_rs,
    harness(),
    [event_store, consumers, session_cache, reputation_repo, tower]
);
