//! # palisade
//!
//! Persistence adapters for security platforms, behind four async traits:
//! [`EventStore`] (security events), [`SessionCache`] (TTL'd session state),
//! [`DocumentStore`] (JSON documents) and [`ReputationRepo`] (scores and
//! leaderboards). This facade re-exports the contract from `palisade-core` and
//! the backends enabled by Cargo features (today: `memory`, the default).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> palisade::Result<()> {
//! use palisade::{EventStoreExt, NewEvent, Stores};
//! let stores = Stores::memory(palisade::Namespace::new("example")?);
//! let appended = stores.events.append_one(NewEvent::new("gatekeeper", "blocked")).await?;
//! assert!(!appended.duplicate);
//! # Ok(()) }
//! ```

pub mod demo;

use std::sync::Arc;

pub use palisade_core::documents::{CollectionSpec, Filter, FindOptions, UpdateOps};
pub use palisade_core::events::{AppendBatch, Cursor, EventFilter, GroupBy, NewEvent, PageRequest};
pub use palisade_core::reputation::{Period, PeriodKind, ReputationEvent, Subject, SubjectKind};
pub use palisade_core::sessions::SetMode;
pub use palisade_core::{
    Capabilities, DocumentStore, DocumentStoreExt, Error, ErrorKind, EventStore, EventStoreExt, Namespace,
    ReputationRepo, ReputationRepoExt, Result, SessionCache, SessionCacheExt,
};
pub use palisade_memory as memory;

/// The four stores a service uses, as trait objects.
#[derive(Clone)]
pub struct Stores {
    /// Security events.
    pub events: Arc<dyn EventStore>,
    /// Session state.
    pub sessions: Arc<dyn SessionCache>,
    /// JSON documents.
    pub documents: Arc<dyn DocumentStore>,
    /// Reputation.
    pub reputation: Arc<dyn ReputationRepo>,
}

impl Stores {
    /// All four stores in memory, in `namespace`.
    pub fn memory(namespace: Namespace) -> Self {
        let m = palisade_memory::MemoryStores::new(namespace, &palisade_memory::MemoryConfig::default());
        Stores { events: m.events, sessions: m.sessions, documents: m.documents, reputation: m.reputation }
    }
}
