//! The conformance suite's traits that palisade-mongo implements so far
//! (issue #13 is in progress: sessions and reputation), against the Mongo test server
//! (`PALISADE_TEST_MONGO_URL`; skipped with a notice without it, failed
//! when `PALISADE_REQUIRE` names mongo). Once all four stores exist this
//! moves to the facade's `tests/mongo.rs`, like every other backend.

use std::sync::Arc;

use async_trait::async_trait;
use palisade_conformance::{harness_from_env, Harness};
use palisade_core::{DocumentStore, Error, ErrorKind, EventStore, Namespace, ReputationRepo, Result, SessionCache};
use palisade_mongo::{MongoBackend, MongoConfig};

struct MongoHarness {
    /// One client for every case; each case gets its own database.
    base: MongoBackend,
}

fn not_yet() -> Error {
    Error::new(ErrorKind::Unsupported, "not built yet (issue #13)")
}

#[async_trait]
impl Harness for MongoHarness {
    fn backend(&self) -> &'static str {
        palisade_mongo::BACKEND
    }
    async fn event_store(&self, ns: &Namespace) -> Result<Arc<dyn EventStore>> {
        Ok(Arc::new(self.base.with_namespace(ns.clone()).await?.events()))
    }
    async fn session_cache(&self, ns: &Namespace) -> Result<Arc<dyn SessionCache>> {
        Ok(Arc::new(self.base.with_namespace(ns.clone()).await?.sessions()))
    }
    async fn document_store(&self, ns: &Namespace) -> Result<Arc<dyn DocumentStore>> {
        Ok(Arc::new(self.base.with_namespace(ns.clone()).await?.documents()))
    }
    async fn reputation_repo(&self, ns: &Namespace) -> Result<Arc<dyn ReputationRepo>> {
        Ok(Arc::new(self.base.with_namespace(ns.clone()).await?.reputation()))
    }
    async fn drop_namespace(&self, ns: &Namespace) -> Result<()> {
        self.base.with_namespace(ns.clone()).await?.drop_namespace().await
    }
}

async fn harness() -> Option<Arc<dyn Harness>> {
    harness_from_env("mongo", "PALISADE_TEST_MONGO_URL", |url| async move {
        let base = MongoBackend::connect(&MongoConfig::new(url, Namespace::new("conf_base")?)).await?;
        Ok(Arc::new(MongoHarness { base }) as Arc<dyn Harness>)
    })
    .await
}

palisade_conformance::conformance_tests!(
    mongo,
    harness(),
    [event_store, session_cache, document_store, reputation_repo]
);
