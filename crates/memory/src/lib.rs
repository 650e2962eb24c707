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

mod documents;
mod error;
mod events;
mod reputation;
mod sessions;

use std::time::Duration;

use palisade_core::{Capabilities, InputPolicy, Namespace};

pub use documents::MemoryDocumentStore;
pub use events::MemoryEventStore;
pub use reputation::MemoryReputationRepo;
pub use sessions::MemorySessionCache;

/// The backend id used in errors, spans and test names.
pub const BACKEND: &str = "memory";

/// Tuning of the memory backend.
#[derive(Debug, Clone)]
pub struct MemoryConfig {
    /// Most session keys kept; beyond it the least recently used are evicted
    /// (sessions are ephemeral by contract).
    pub session_capacity: u64,
    /// How often writes may sweep expired documents.
    pub sweep_interval: Duration,
    /// Buffer of the live-tail broadcast channel; a subscriber that falls
    /// further behind re-reads the log (nothing is skipped).
    pub live_buffer: usize,
    /// What the stores accept (depth and size limits).
    pub policy: InputPolicy,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig {
            session_capacity: 1_000_000,
            sweep_interval: Duration::from_secs(1),
            live_buffer: 4096,
            policy: InputPolicy::default(),
        }
    }
}

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
    caps
}

/// The four memory stores of one namespace.
#[derive(Clone)]
pub struct MemoryStores {
    /// Events.
    pub events: std::sync::Arc<MemoryEventStore>,
    /// Sessions.
    pub sessions: std::sync::Arc<MemorySessionCache>,
    /// Documents.
    pub documents: std::sync::Arc<MemoryDocumentStore>,
    /// Reputation.
    pub reputation: std::sync::Arc<MemoryReputationRepo>,
}

impl MemoryStores {
    /// Fresh, empty stores for `namespace`.
    pub fn new(namespace: Namespace, config: &MemoryConfig) -> Self {
        MemoryStores {
            events: std::sync::Arc::new(MemoryEventStore::new(namespace.clone(), config)),
            sessions: std::sync::Arc::new(MemorySessionCache::new(namespace.clone(), config)),
            documents: std::sync::Arc::new(MemoryDocumentStore::new(namespace.clone(), config)),
            reputation: std::sync::Arc::new(MemoryReputationRepo::with_policy(namespace, config.policy)),
        }
    }
}
