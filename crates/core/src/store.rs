//! [`Store`]: what every store is, whatever it keeps.

use async_trait::async_trait;

use crate::capabilities::Capabilities;
use crate::error::Result;

/// The part every store shares: which backend it is, what it guarantees, and
/// whether it answers. The supertrait of [`EventStore`](crate::EventStore),
/// [`SessionCache`](crate::SessionCache), [`DocumentStore`](crate::DocumentStore)
/// and [`ReputationRepo`](crate::ReputationRepo), so health checks and layers
/// handle any store as `&dyn Store`.
#[async_trait]
pub trait Store: Send + Sync {
    /// Backend id, e.g. `memory`, `pg_sqlx`.
    fn backend(&self) -> &'static str;
    /// What this instance guarantees.
    fn capabilities(&self) -> Capabilities;
    /// Checks that the backend answers (`Unavailable`/`Timeout` when not).
    async fn ping(&self) -> Result<()>;
    /// Operational warnings for `palisade health`, as sentences (e.g. events
    /// held back from ordered readers behind a long write transaction).
    /// None by default; layers pass their inner store's on.
    async fn notes(&self) -> Result<Vec<String>> {
        Ok(Vec::new())
    }
}

/// Mocks answer as an always-healthy `mock` backend with every capability.
#[cfg(feature = "mock")]
macro_rules! mock_store {
    ($($mock:ty),*) => {$(
        #[async_trait]
        impl Store for $mock {
            fn backend(&self) -> &'static str {
                "mock"
            }
            fn capabilities(&self) -> Capabilities {
                Capabilities {
                    durable: true,
                    atomic_batch: true,
                    gap_free_order: true,
                    live_tail: true,
                    analytics: true,
                    native_ttl: true,
                    schema_validation: true,
                    bounded_capacity: true,
                    durable_consumers: true,
                }
            }
            async fn ping(&self) -> Result<()> {
                Ok(())
            }
        }
    )*};
}

#[cfg(feature = "mock")]
mock_store!(crate::MockEventStore, crate::MockSessionCache, crate::MockDocumentStore, crate::MockReputationRepo);
