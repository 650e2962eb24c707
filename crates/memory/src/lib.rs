//! # palisade-memory
//!
//! The in-memory Palisade backend: all four traits, complete, in one process.
//! It is the default backend (`memory://`) and the secondary that
//! `Degradable` fails over to while a server is down, so it is built to serve
//! production traffic for a while:
//!
//! - no lock is ever held across an `.await`; events and documents use short
//!   synchronous `parking_lot` critical sections, collections live in a
//!   `DashMap`, sessions in a bounded `moka` cache (LRU eviction at
//!   [`MemoryConfig::session_capacity`], per-entry expiry);
//! - expiry is exact on read (an entry with `now >= expires_at` is invisible at
//!   once); memory is reclaimed by moka's expiry for sessions and by a lazy
//!   sweep (at most once per [`MemoryConfig::sweep_interval`], run by writes)
//!   for documents;
//! - event positions are gap-free `(1, 0), (2, 0), …`; live tails catch up from
//!   the log, then follow a broadcast channel, and re-read the log if they lag.
//!
//! Nothing is durable: a process restart loses everything (`durable = false`).
//! Each store instance is one [`Namespace`]; two instances never share data.

mod config;
mod documents;
mod error;
mod events;
mod reputation;
mod sessions;

use std::sync::Arc;

use async_trait::async_trait;
use palisade_core::backend::{Backend, ConnectOptions, Connector};
use palisade_core::{Capabilities, DocumentStore, EventStore, Namespace, ReputationRepo, Result, SessionCache};

pub use config::MemoryConfig;
pub use documents::MemoryDocumentStore;
pub use events::MemoryEventStore;
pub use reputation::MemoryReputationRepo;
pub use sessions::MemorySessionCache;

/// The backend id used in errors, spans and test names.
pub const BACKEND: &str = "memory";

/// What every memory store guarantees: everything but durability.
pub fn capabilities() -> Capabilities {
    let mut caps = Capabilities::none();
    caps.atomic_batch = true;
    caps.gap_free_order = true;
    caps.live_tail = true;
    caps.analytics = true;
    caps.native_ttl = true;
    caps.schema_validation = true;
    caps.bounded_capacity = true;
    caps.durable_consumers = true;
    caps
}

/// The four memory stores of one namespace.
#[derive(Clone)]
pub struct MemoryStores {
    /// Events.
    pub events: Arc<MemoryEventStore>,
    /// Sessions.
    pub sessions: Arc<MemorySessionCache>,
    /// Documents.
    pub documents: Arc<MemoryDocumentStore>,
    /// Reputation.
    pub reputation: Arc<MemoryReputationRepo>,
}

impl MemoryStores {
    /// Fresh, empty stores for `namespace`.
    pub fn new(namespace: Namespace, config: &MemoryConfig) -> Self {
        MemoryStores {
            events: Arc::new(MemoryEventStore::new(namespace.clone(), config)),
            sessions: Arc::new(MemorySessionCache::new(namespace.clone(), config)),
            documents: Arc::new(MemoryDocumentStore::new(namespace.clone(), config)),
            reputation: Arc::new(MemoryReputationRepo::with_policy(namespace, config.policy)),
        }
    }
}

#[async_trait]
impl Backend for MemoryStores {
    fn events(&self) -> Result<Arc<dyn EventStore>> {
        Ok(self.events.clone())
    }
    fn sessions(&self) -> Result<Arc<dyn SessionCache>> {
        Ok(self.sessions.clone())
    }
    fn documents(&self) -> Result<Arc<dyn DocumentStore>> {
        Ok(self.documents.clone())
    }
    fn reputation(&self) -> Result<Arc<dyn ReputationRepo>> {
        Ok(self.reputation.clone())
    }
    /// Memory stores vanish with their last handle; nothing to drop.
    async fn drop_namespace(&self) -> Result<()> {
        Ok(())
    }
}

/// The memory backend's connector (`memory://`). Every `connect` opens
/// fresh, empty stores; tuning keys: see [`MemoryConfig::from_options`].
#[derive(Debug, Clone, Copy, Default)]
pub struct MemoryConnector;

#[async_trait]
impl Connector for MemoryConnector {
    fn id(&self) -> &'static str {
        BACKEND
    }
    fn capabilities(&self) -> Capabilities {
        capabilities()
    }
    fn validate(&self, _url: &str, options: &ConnectOptions) -> Result<()> {
        MemoryConfig::from_options(options).map(|_| ())
    }
    async fn connect(&self, _url: &str, options: &ConnectOptions) -> Result<Arc<dyn Backend>> {
        let config = MemoryConfig::from_options(options)?;
        Ok(Arc::new(MemoryStores::new(options.namespace.clone(), &config)))
    }
    async fn ping(&self, _url: &str, _options: &ConnectOptions) -> Result<()> {
        Ok(())
    }
}
