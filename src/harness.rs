//! [`ConfigHarness`]: the conformance [`Harness`] that opens stores through
//! the facade exactly as a service does, from a [`Config`]. The test suite's
//! per-backend runners (`tests/<backend>.rs`) and `palisade check` use it.

use std::sync::Arc;

use async_trait::async_trait;
use palisade_conformance::Harness;
use palisade_core::{DocumentStore, EventStore, Namespace, ReputationRepo, Result, SessionCache, Traced};

use crate::config::{Config, Fallback, StoreKind};
use crate::registry::resolve;

/// Opens stores from a [`Config`] in any namespace, in the [`Traced`] layer as
/// a service gets them (fallbacks off: the suite checks the backend itself).
pub struct ConfigHarness {
    config: Config,
}

impl ConfigHarness {
    /// A harness over `config`'s URLs.
    pub fn new(mut config: Config) -> Self {
        for kind in StoreKind::ALL {
            config.store_mut_for_check(kind).fallback = Fallback::None;
        }
        ConfigHarness { config }
    }

    /// The configuration the stores are opened from.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Checks that every configured server answers.
    pub async fn ping(&self) -> Result<()> {
        for kind in StoreKind::ALL {
            let url = &self.config.store(kind).url;
            resolve(url, kind)?.1.ping(url, &self.config).await?;
        }
        Ok(())
    }

    fn connector(&self, kind: StoreKind) -> Result<&'static dyn crate::registry::Connector> {
        Ok(resolve(&self.config.store(kind).url, kind)?.1)
    }
}

#[async_trait]
impl Harness for ConfigHarness {
    fn backend(&self) -> &'static str {
        resolve(&self.config.events.url, StoreKind::Events).map_or("unknown", |(info, _)| info.id)
    }
    async fn event_store(&self, ns: &Namespace) -> Result<Arc<dyn EventStore>> {
        let store = self.connector(StoreKind::Events)?.events(&self.config.events.url, &self.config, ns).await?;
        Ok(Arc::new(Traced::new(store, ns.clone())))
    }
    async fn session_cache(&self, ns: &Namespace) -> Result<Arc<dyn SessionCache>> {
        let store = self.connector(StoreKind::Sessions)?.sessions(&self.config.sessions.url, &self.config, ns).await?;
        Ok(Arc::new(Traced::new(store, ns.clone())))
    }
    async fn document_store(&self, ns: &Namespace) -> Result<Arc<dyn DocumentStore>> {
        let store =
            self.connector(StoreKind::Documents)?.documents(&self.config.documents.url, &self.config, ns).await?;
        Ok(Arc::new(Traced::new(store, ns.clone())))
    }
    async fn reputation_repo(&self, ns: &Namespace) -> Result<Arc<dyn ReputationRepo>> {
        let store =
            self.connector(StoreKind::Reputation)?.reputation(&self.config.reputation.url, &self.config, ns).await?;
        Ok(Arc::new(Traced::new(store, ns.clone())))
    }
    async fn drop_namespace(&self, ns: &Namespace) -> Result<()> {
        let mut seen: Vec<&str> = Vec::new();
        for kind in StoreKind::ALL {
            let url = &self.config.store(kind).url;
            if seen.contains(&url.expose()) {
                continue;
            }
            seen.push(url.expose());
            if let Ok((_, connector)) = resolve(url, kind) {
                connector.drop_namespace(url, &self.config, ns).await?;
            }
        }
        Ok(())
    }
}
