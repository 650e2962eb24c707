//! [`ConfigHarness`]: the conformance [`Harness`] that opens stores through
//! the facade exactly as a service does, from a [`Config`]. The test suite's
//! per-backend runners (`tests/<backend>.rs`) and `palisade check` use it.
//!
//! With [`ConfigHarness::recycling`] (test suites), namespaces are cheap:
//! where a backend can empty a namespace (Postgres: one statement), a
//! finished case's namespace is emptied and handed to the next case together
//! with its connected backend — warm pool, migrations already applied —
//! instead of dropping the schema and migrating a new one.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use palisade_conformance::Harness;
use palisade_core::{DocumentStore, EventStore, InputPolicy, Namespace, ReputationRepo, Result, SessionCache, Traced};

use crate::config::{Config, Fallback, StoreKind, StoreUrl};
use crate::registry::{resolve, Backend};

/// Connected backends by namespace, and the emptied namespaces ready for
/// reuse by server URL. Process-wide: the test macro builds one harness per
/// case, and cases run in parallel.
#[derive(Default)]
struct Shared {
    /// By namespace and the limits the backend was opened with.
    open: Vec<((String, InputPolicy), Arc<dyn Backend>)>,
    recycled: Vec<(String, Namespace)>,
    /// Servers (backend and URL) that answered a recycling harness's
    /// [`ConfigHarness::ping`].
    answered: Vec<String>,
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
    recycle: bool,
}

impl ConfigHarness {
    /// A harness over `config`'s URLs.
    pub fn new(mut config: Config) -> Self {
        for kind in StoreKind::ALL {
            config.store_mut_for_check(kind).fallback = Fallback::None;
        }
        ConfigHarness { config, recycle: false }
    }

    /// Recycles namespaces (see the module docs): each case's namespace is
    /// emptied and reused instead of dropped, where the backend can. For test
    /// suites; the last namespaces of the process stay behind, so only use it
    /// against a database whose `conf_…` schemas a script drops afterwards
    /// (`scripts/test.sh` does). `palisade check` does not recycle.
    pub fn recycling(mut self) -> Self {
        self.recycle = true;
        self
    }

    /// The configuration the stores are opened from.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Checks that every configured server answers.
    ///
    /// A [`recycling`](Self::recycling) harness (test suites) asks each
    /// server once per process: the test macro builds a harness, and pings,
    /// for every case, and a Postgres ping opens two connections — most of a
    /// short case's time if repeated. A server that answered once and goes
    /// away later fails the cases that use it when they open their stores.
    pub async fn ping(&self) -> Result<()> {
        for kind in StoreKind::ALL {
            let url = &self.config.store(kind).url;
            let (info, connector) = resolve(url, kind)?;
            let server = format!("{}\t{}", info.id, url.expose());
            if self.recycle && with_shared(|s| s.answered.contains(&server)) {
                continue;
            }
            let options = self.config.connect_options(info.id, &self.config.namespace, self.config.store(kind).limits);
            connector.ping(url.expose(), &options).await?;
            if self.recycle {
                with_shared(|s| s.answered.push(server));
            }
        }
        Ok(())
    }

    /// The one URL all four stores use, when recycling and they share one
    /// (only then are namespaces and their backends recycled).
    fn single_url(&self) -> Option<&StoreUrl> {
        let url = &self.config.events.url;
        (self.recycle && StoreKind::ALL.iter().all(|k| &self.config.store(*k).url == url)).then_some(url)
    }

    /// The backend of store `kind` in `ns`: the one already connected there
    /// (shared by every store of a case, reused with a recycled namespace), or
    /// a new connection.
    async fn backend(&self, kind: StoreKind, ns: &Namespace) -> Result<Arc<dyn Backend>> {
        let store = self.config.store(kind);
        let shareable = self.single_url().is_some();
        let key = (ns.as_str().to_owned(), store.limits);
        if shareable {
            if let Some(b) = with_shared(|s| s.open.iter().find(|(k, _)| *k == key).map(|(_, b)| Arc::clone(b))) {
                return Ok(b);
            }
        }
        let (info, connector) = resolve(&store.url, kind)?;
        let options = self.config.connect_options(info.id, ns, store.limits);
        let backend = connector.connect(store.url.expose(), &options).await?;
        if shareable {
            with_shared(|s| s.open.push((key, Arc::clone(&backend))));
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
    async fn release(&self, ns: &Namespace, reusable: bool) -> Result<()> {
        let open: Vec<Arc<dyn Backend>> =
            with_shared(|s| s.open.iter().filter(|((n, _), _)| n == ns.as_str()).map(|(_, b)| Arc::clone(b)).collect());
        if let (Some(url), [backend], true) = (self.single_url(), open.as_slice(), reusable) {
            match backend.empty_namespace().await {
                Ok(true) => {
                    with_shared(|s| s.recycled.push((url.expose().to_owned(), ns.clone())));
                    return Ok(());
                }
                Ok(false) => {}
                Err(e) => eprintln!("note: emptying namespace {ns} failed ({e}); dropping it instead"),
            }
        }
        with_shared(|s| s.open.retain(|((n, _), _)| n != ns.as_str()));
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
            if let Ok((info, connector)) = resolve(url, kind) {
                let options = self.config.connect_options(info.id, ns, self.config.store(kind).limits);
                connector.drop_namespace(url.expose(), &options).await?;
            }
        }
        Ok(())
    }
}
