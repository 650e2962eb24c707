//! The whole conformance suite against the memory backend.

use std::sync::Arc;

use async_trait::async_trait;
use palisade_core::conformance::Harness;
use palisade_core::{DocumentStore, EventStore, Namespace, ReputationRepo, Result, SessionCache};
use palisade_memory::{MemoryConfig, MemoryDocumentStore, MemoryEventStore, MemoryReputationRepo, MemorySessionCache};

/// Memory stores are their own namespace: a fresh instance per case.
struct MemoryHarness(MemoryConfig);

#[async_trait]
impl Harness for MemoryHarness {
    fn backend(&self) -> &'static str {
        palisade_memory::BACKEND
    }
    async fn event_store(&self, ns: &Namespace) -> Result<Arc<dyn EventStore>> {
        Ok(Arc::new(MemoryEventStore::new(ns.clone(), &self.0)))
    }
    async fn session_cache(&self, ns: &Namespace) -> Result<Arc<dyn SessionCache>> {
        Ok(Arc::new(MemorySessionCache::new(ns.clone(), &self.0)))
    }
    async fn document_store(&self, ns: &Namespace) -> Result<Arc<dyn DocumentStore>> {
        Ok(Arc::new(MemoryDocumentStore::new(ns.clone(), &self.0)))
    }
    async fn reputation_repo(&self, ns: &Namespace) -> Result<Arc<dyn ReputationRepo>> {
        Ok(Arc::new(MemoryReputationRepo::new(ns.clone())))
    }
    async fn drop_namespace(&self, _: &Namespace) -> Result<()> {
        Ok(())
    }
}

async fn harness() -> Option<Arc<dyn Harness>> {
    Some(Arc::new(MemoryHarness(MemoryConfig::default())))
}

palisade_core::conformance_tests!(memory, harness(), [event_store, session_cache, document_store, reputation_repo]);
