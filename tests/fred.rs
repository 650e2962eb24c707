//! The conformance suite against Redis via fred, opened through the facade
//! (`redis+fred://` URLs). The server comes from `PALISADE_TEST_REDIS_URL`
//! (e.g. `redis://127.0.0.1:6379`; its scheme is switched to `redis+fred`);
//! without it the cases are skipped with a notice — unless `PALISADE_REQUIRE`
//! names `redis`, in which case they fail.
#![cfg(feature = "fred")]

use std::sync::Arc;

use palisade::harness::ConfigHarness;
use palisade::{Config, StoreUrl};
use palisade_conformance::{harness_from_env, Harness};

async fn harness() -> Option<Arc<dyn Harness>> {
    harness_from_env("redis", "PALISADE_TEST_REDIS_URL", |url| async move {
        let mut config = Config::default();
        let fred_url = match url.split_once("://") {
            Some((_, rest)) => format!("redis+fred://{rest}"),
            None => url,
        };
        let url = StoreUrl::parse(&fred_url)?;
        for store in [&mut config.events, &mut config.sessions, &mut config.reputation] {
            store.url = url.clone();
        }
        config.pool_size = 4;
        let harness = ConfigHarness::new(config);
        harness.ping().await?;
        Ok(Arc::new(harness) as Arc<dyn Harness>)
    })
    .await
}

palisade_conformance::conformance_tests!(
    fred,
    harness(),
    [event_store, consumers, session_cache, reputation_repo, tower]
);
