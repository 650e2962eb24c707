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
    [event_store, consumers, session_cache, document_store, reputation_repo, tower]
);

/// Auto-migration off on Mongo (run with the Mongo cases: the module name
/// ends in `mongo`, which the test script's first pass skips).
mod without_auto_migration_on_mongo {
    use palisade::{Config, ErrorKind, Namespace, StoreUrl, Stores};
    use palisade_conformance::Harness;

    #[test]
    fn a_bare_namespace_is_refused_by_name_until_palisade_migrate_runs() {
        palisade_conformance::runtime().block_on(async {
            let Some(url) = palisade_conformance::server_url("mongo", "PALISADE_TEST_MONGO_URL") else { return };
            let url = StoreUrl::parse(&url).unwrap();
            let mut config = Config { migrate: false, ..Config::default() };
            for store in [&mut config.events, &mut config.sessions, &mut config.documents, &mut config.reputation] {
                store.url = url.clone();
            }
            config.namespace = Namespace::random("lp").unwrap();
            let e = Stores::connect(&config).await.err().expect("a namespace without indexes is refused");
            assert_eq!(e.kind(), ErrorKind::Config, "{e}");
            assert!(e.to_string().contains("exp_ttl") && e.to_string().contains("palisade migrate"), "{e}");
            let listed = palisade::migrate::run(&config, true).await.unwrap();
            assert!(listed.contains("pending") && !listed.contains("applied"), "{listed}");
            let migrated = palisade::migrate::run(&config, false).await.unwrap();
            assert!(migrated.contains("applied") && !migrated.contains("pending"), "{migrated}");
            let stores = Stores::connect(&config).await.unwrap();
            stores.sessions.set("k", serde_json::json!(1), None, palisade::SetMode::Always).await.unwrap();
            palisade::harness::ConfigHarness::new(config.clone()).drop_namespace(&config.namespace).await.unwrap();
        });
    }
}
