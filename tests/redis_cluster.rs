//! The SessionCache, ReputationRepo and EventStore suites against a Redis
//! Cluster, for both clients. The cluster comes from
//! `PALISADE_TEST_REDIS_CLUSTER_URL`, e.g. what `scripts/redis-cluster.sh start`
//! prints: `redis://127.0.0.1:7000?cluster=true&node=127.0.0.1:7001&node=…`
//! (`cluster=true` selects the cluster connection; `node` adds seed nodes).
//! fred runs the same URL with the `redis+fred` scheme. Without the variable
//! the cases are skipped with a notice, unless `PALISADE_REQUIRE` names
//! `redis-cluster`. Test ids: `redis_rs_cluster::…`, `fred_cluster::…`.
#![cfg(all(feature = "redis-rs", feature = "fred"))]

use std::sync::Arc;

use palisade::harness::ConfigHarness;
use palisade::{Config, StoreUrl};
use palisade_conformance::{harness_from_env, Harness};

async fn harness(scheme: &'static str) -> Option<Arc<dyn Harness>> {
    harness_from_env("redis-cluster", "PALISADE_TEST_REDIS_CLUSTER_URL", |url| async move {
        let mut config = Config::default();
        let url = match url.split_once("://") {
            Some((_, rest)) => format!("{scheme}://{rest}"),
            None => url,
        };
        let url = StoreUrl::parse(&url)?;
        for store in [&mut config.events, &mut config.sessions, &mut config.reputation] {
            store.url = url.clone();
        }
        config.pool_size = 2;
        let harness = ConfigHarness::new(config);
        harness.ping().await?;
        Ok(Arc::new(harness) as Arc<dyn Harness>)
    })
    .await
}

palisade_conformance::conformance_tests!(
    redis_rs_cluster,
    harness("redis"),
    [session_cache, reputation_repo, event_store, consumers, tower]
);
palisade_conformance::conformance_tests!(
    fred_cluster,
    harness("redis+fred"),
    [session_cache, reputation_repo, event_store, consumers, tower]
);
