//! # palisade
//!
//! Persistence adapters for security platforms, behind four async traits:
//! [`EventStore`] (security events), [`SessionCache`] (TTL'd session state),
//! [`DocumentStore`] (JSON documents) and [`ReputationRepo`] (scores and
//! leaderboards). This facade re-exports the contract from `palisade-core` and
//! the backends enabled by Cargo features, and opens stores from a [`Config`]
//! ([`Stores::connect`]).
//!
//! | feature | enables | URL schemes |
//! |---|---|---|
//! | `memory` (default; always compiled, it is the degraded-mode fallback) | [`memory`] | `memory://` |
//! | `pg-sqlx` | `pg_sqlx`: Postgres via sqlx | `postgres://`, `postgresql://` |
//! | `pg-diesel` | `pg_diesel`: Postgres via diesel + diesel-async | `postgres+diesel://`, `postgresql+diesel://` |
//! | `redis-rs` | `redis`: Redis via redis-rs | `redis://`, `rediss://` |
//! | `fred` | `redis`: Redis via fred | `redis+fred://`, `rediss+fred://` |
//! | `mongo` | `mongo`: MongoDB via the official driver (replica set or sharded cluster) | `mongodb://`, `mongodb+srv://` |
//! | `tower` | [`tower`]: tower-sessions store, rate-limit and security-events layers for axum | — |
//! | `conformance` | `harness`: the conformance suite over stores opened from a `Config` | — |
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> palisade::Result<()> {
//! use palisade::{EventStoreExt, NewEvent, Stores};
//! let stores = Stores::memory(palisade::Namespace::new("example")?);
//! let appended = stores.events.append_one(NewEvent::new("gatekeeper", "blocked")).await?;
//! assert!(!appended.duplicate);
//! # Ok(()) }
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod config;
#[cfg(feature = "conformance")]
pub mod harness;
pub mod migrate;
pub mod registry;
mod stores;

pub use config::{Config, Fallback, StoreConfig, StoreKind, StoreUrl};
pub use stores::{probe, StoreStatus, Stores};

pub use palisade_core::consumers::{Consumer, ConsumerInfo, ConsumerOptions};
pub use palisade_core::documents::{CollectionSpec, Filter, FindOptions, UpdateOps};
pub use palisade_core::events::{
    AppendBatch, Cursor, Event, EventFilter, GroupBy, NewEvent, PageRequest, Position, SubscriptionItem,
};
pub use palisade_core::reputation::{Period, PeriodKind, ReputationEvent, Subject, SubjectKind};
pub use palisade_core::sessions::{Expiry, SetMode};
pub use palisade_core::{
    Capabilities, DocumentStore, DocumentStoreExt, Error, ErrorKind, EventStore, EventStoreExt, InputPolicy, Namespace,
    ReputationRepo, ReputationRepoExt, Result, SessionCache, SessionCacheExt,
};
pub use palisade_memory as memory;
/// MongoDB via the official driver (feature `mongo`).
#[cfg(feature = "mongo")]
pub use palisade_mongo as mongo;
/// Postgres via diesel and diesel-async (feature `pg-diesel`).
#[cfg(feature = "pg-diesel")]
pub use palisade_pg_diesel as pg_diesel;
/// Postgres via sqlx (feature `pg-sqlx`).
#[cfg(feature = "pg-sqlx")]
pub use palisade_pg_sqlx as pg_sqlx;
/// Redis via redis-rs (feature `redis-rs`) and fred (feature `fred`).
#[cfg(any(feature = "redis-rs", feature = "fred"))]
pub use palisade_redis as redis;
/// axum/tower integration (feature `tower`).
#[cfg(feature = "tower")]
pub use palisade_tower as tower;
