//! The conformance suite against Postgres via sqlx, opened through the facade
//! (`postgres://` URLs). The server comes from `PALISADE_TEST_POSTGRES_URL`;
//! without it the cases are skipped with a notice — unless `PALISADE_REQUIRE`
//! names `postgres`, in which case they fail.
#![cfg(all(feature = "pg-sqlx", feature = "conformance"))]

use std::sync::Arc;

use palisade::harness::ConfigHarness;
use palisade::{Config, StoreUrl};
use palisade_conformance::{harness_from_env, Harness};

async fn harness() -> Option<Arc<dyn Harness>> {
    harness_from_env("postgres", "PALISADE_TEST_POSTGRES_URL", |url| async move {
        let mut config = Config::default();
        let url = StoreUrl::parse(&url)?;
        for store in [&mut config.events, &mut config.sessions, &mut config.documents, &mut config.reputation] {
            store.url = url.clone();
        }
        config.pool_size = 4;
        let harness = ConfigHarness::new(config).recycling();
        // Fail (or skip) here, once, if the server is unreachable.
        harness.ping().await?;
        Ok(Arc::new(harness) as Arc<dyn Harness>)
    })
    .await
}

palisade_conformance::conformance_tests!(
    pg_sqlx,
    harness(),
    [event_store, consumers, session_cache, document_store, reputation_repo, tower]
);
