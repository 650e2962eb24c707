//! [`ConfigHarness`]: the conformance [`Harness`] that opens stores through
//! the facade exactly as a service does, from a [`Config`]. The test suite's
//! per-backend runners (`tests/<backend>.rs`) and `palisade check` use it.
//!
//! Namespaces are cheap here: where a backend can empty a namespace (Postgres:
//! one statement), a finished case's namespace is emptied and handed to the
//! next case together with its connected backend — warm pool, migrations
//! already applied — instead of dropping the schema and migrating a new one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use palisade_conformance::Harness;
use palisade_core::{DocumentStore, EventStore, Namespace, ReputationRepo, Result, SessionCache, Traced};

use crate::config::{Config, Fallback, StoreKind, StoreUrl};
use crate::registry::{resolve, Backend};

/// Connected backends by namespace, and the emptied namespaces ready for
/// reuse by server URL. Process-wide: the test macro builds one harness per
/// case, and cases run in parallel.
#[derive(Default)]
struct Shared {
    open: HashMap<String, Arc<dyn Backend>>,
    recycled: Vec<(String, Namespace)>,
}

static SHARED: Mutex<Option<Shared>> = Mutex::new(None);

fn shared() -> MutexGuard<'static, Option<Shared>> {
    SHARED.lock().unwrap_or_else(PoisonError::into_inner)
}

fn with_shared<R>(f: impl FnOnce(&mut Shared) -> R) -> R {
    f(shared().get_or_insert_with(Shared::default))
}

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

    /// The one URL all four stores use, if they share one (only then are
    /// namespaces and their backends recycled).
    fn single_url(&self) -> Option<&StoreUrl> {
        let url = &self.config.events.url;
        StoreKind::ALL.iter().all(|k| &self.config.store(*k).url == url).then_some(url)
    }

    /// The backend of store `kind` in `ns`: the one already connected there
    /// (shared by every store of a case, reused with a recycled namespace), or
    /// a new connection.
    async fn backend(&self, kind: StoreKind, ns: &Namespace) -> Result<Arc<dyn Backend>> {
        let store = self.config.store(kind);
        let shareable = self.single_url().is_some();
        if shareable {
            if let Some(b) = with_shared(|s| s.open.get(ns.as_str()).cloned()) {
                return Ok(b);
            }
        }
        let connector = resolve(&store.url, kind)?.1;
        let backend = connector.connect(&store.url, &self.config, ns, store.limits).await?;
        if shareable {
            with_shared(|s| s.open.insert(ns.as_str().to_owned(), Arc::clone(&backend)));
        }
        Ok(backend)
    }
}

#[async_trait]
impl Harness for ConfigHarness {
    fn backend(&self) -> &'static str {
        resolve(&self.config.events.url, StoreKind::Events).map_or("unknown", |(info, _)| info.id)
    }
    async fn event_store(&self, ns: &Namespace) -> Result<Arc<dyn EventStore>> {
        let store = self.backend(StoreKind::Events, ns).await?.events()?;
        Ok(Arc::new(Traced::new(store, ns.clone())))
    }
    async fn session_cache(&self, ns: &Namespace) -> Result<Arc<dyn SessionCache>> {
        let store = self.backend(StoreKind::Sessions, ns).await?.sessions()?;
        Ok(Arc::new(Traced::new(store, ns.clone())))
    }
    async fn document_store(&self, ns: &Namespace) -> Result<Arc<dyn DocumentStore>> {
        let store = self.backend(StoreKind::Documents, ns).await?.documents()?;
        Ok(Arc::new(Traced::new(store, ns.clone())))
    }
    async fn reputation_repo(&self, ns: &Namespace) -> Result<Arc<dyn ReputationRepo>> {
        let store = self.backend(StoreKind::Reputation, ns).await?.reputation()?;
        Ok(Arc::new(Traced::new(store, ns.clone())))
    }

    /// A namespace another case released and the backend emptied (see
    /// [`release`](Harness::release)), or a new one (`conf_…`). The last ones
    /// emptied stay behind when the process ends; `scripts/test.sh` drops
    /// every `conf_…` schema of the test database at the end.
    async fn namespace(&self) -> Result<Namespace> {
        if let Some(url) = self.single_url() {
            let reused = with_shared(|s| {
                let i = s.recycled.iter().position(|(u, _)| u == url.expose())?;
                Some(s.recycled.swap_remove(i).1)
            });
            if let Some(ns) = reused {
                return Ok(ns);
            }
        }
        Namespace::random("conf")
    }

    /// Empties the namespace for the next case where the backend can do so
    /// cheaply, keeping its connected backend; drops it otherwise.
    async fn release(&self, ns: &Namespace) -> Result<()> {
        let open = with_shared(|s| s.open.get(ns.as_str()).cloned());
        if let (Some(url), Some(backend)) = (self.single_url(), open) {
            if let Ok(true) = backend.empty_namespace().await {
                with_shared(|s| s.recycled.push((url.expose().to_owned(), ns.clone())));
                return Ok(());
            }
        }
        with_shared(|s| s.open.remove(ns.as_str()));
        self.drop_namespace(ns).await
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
