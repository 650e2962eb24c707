//! The whole conformance suite against the memory backend, opened through the
//! facade (`memory://` URLs) exactly as a service opens it.
#![cfg(feature = "conformance")]

use std::sync::Arc;

use palisade::harness::ConfigHarness;
use palisade::Config;
use palisade_conformance::Harness;

async fn harness() -> Option<Arc<dyn Harness>> {
    Some(Arc::new(ConfigHarness::new(Config::default())))
}

palisade_conformance::conformance_tests!(
    memory,
    harness(),
    [event_store, consumers, session_cache, document_store, reputation_repo, tower]
);
