//! # palisade-core
//!
//! The contract every Palisade backend implements: four object-safe async
//! traits ([`EventStore`], [`SessionCache`], [`DocumentStore`],
//! [`ReputationRepo`]), their models, one [`Error`] type, [`Capabilities`] as
//! data, [`Namespace`]s, the input policy, and the layers every store can be
//! wrapped in ([`Degradable`]). The suite that holds every backend to this
//! contract is its own crate, `palisade-conformance`.
//!
//! Services hold `Arc<dyn EventStore>` (etc.) and use the `…Ext` traits for
//! typed convenience methods. With the `mock` feature, `MockEventStore` and
//! friends (mockall) are available for unit tests.
#![warn(missing_docs)]
#![deny(rustdoc::broken_intra_doc_links)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod backend;
pub mod capabilities;
pub mod consumers;
pub mod degradable;
pub mod documents;
pub mod error;
pub mod events;
pub mod namespace;
pub mod policy;
pub mod reputation;
pub mod sessions;
pub mod store;
pub mod time;
pub mod traced;
mod version;

pub use capabilities::Capabilities;
pub use degradable::{Degradable, DegradeConfig, Health};
pub use documents::{DocumentStore, DocumentStoreExt};
pub use error::{Error, ErrorDetail, ErrorKind, Result};
pub use events::{EventStore, EventStoreExt};
pub use namespace::Namespace;
pub use policy::InputPolicy;
pub use reputation::{ReputationRepo, ReputationRepoExt};
pub use sessions::{Expiry, SessionCache, SessionCacheExt};
pub use store::Store;
pub use traced::Traced;

#[cfg(feature = "mock")]
pub use documents::MockDocumentStore;
#[cfg(feature = "mock")]
pub use events::MockEventStore;
#[cfg(feature = "mock")]
pub use reputation::MockReputationRepo;
#[cfg(feature = "mock")]
pub use sessions::MockSessionCache;
