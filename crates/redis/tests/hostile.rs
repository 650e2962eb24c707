//! Rows that today's input policy would refuse — written by a permissive
//! writer, as older versions could — never make a read fail, on both
//! clients (see `palisade_conformance::poisoned`).
//! Needs `PALISADE_TEST_REDIS_URL`; skipped with a notice without it,
//! unless `PALISADE_REQUIRE` names `redis`.
#![cfg(any(feature = "redis-rs", feature = "fred"))]

use palisade_conformance::{poisoned, server_url};
use palisade_core::Namespace;
use palisade_redis::{RedisBackend, RedisConfig};

/// A strict and a permissive backend on one fresh namespace, with the
/// client `scheme` selects.
async fn backends(scheme: &str) -> Option<(RedisBackend, RedisBackend)> {
    let url = server_url("redis", "PALISADE_TEST_REDIS_URL")?;
    let url = url.replacen("redis://", scheme, 1);
    let ns = Namespace::random("rhostile").unwrap();
    let strict = RedisBackend::connect(&RedisConfig::new(url.clone(), ns.clone())).await.expect("redis is reachable");
    let mut config = RedisConfig::new(url, ns);
    config.policy = poisoned::permissive();
    let permissive = RedisBackend::connect(&config).await.expect("redis is reachable");
    Some((strict, permissive))
}

async fn deep_rows_read_back_intact(scheme: &str) {
    let Some((strict, permissive)) = backends(scheme).await else { return };
    poisoned::deep_event_reads_back_intact(&permissive.events(), &strict.events()).await;
    poisoned::deep_session_value_reads_back_intact(&permissive.sessions(), &strict.sessions()).await;
    strict.drop_namespace().await.unwrap();
}

#[cfg(feature = "redis-rs")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_rs_deep_rows_in_streams_and_keys_read_back_intact() {
    deep_rows_read_back_intact("redis://").await;
}

#[cfg(feature = "fred")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fred_deep_rows_in_streams_and_keys_read_back_intact() {
    deep_rows_read_back_intact("redis+fred://").await;
}
