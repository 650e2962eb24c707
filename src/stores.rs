//! [`Stores`]: the four stores a service uses, opened from a [`Config`].

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use palisade_core::degradable::{Rejected, Replay};
use palisade_core::{
    Degradable, DocumentStore, Error, EventStore, Health, InputPolicy, Namespace, ReputationRepo, Result, SessionCache,
    Store, Traced,
};
use serde::Serialize;

use crate::config::{Config, Fallback, StoreKind};
use crate::registry::{memory_config, resolve, Backend, BackendInfo, Connector};

/// How one store is doing, as `palisade health` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct StoreStatus {
    /// Which store.
    pub store: StoreKind,
    /// Backend id.
    pub backend: &'static str,
    /// The configured URL, password redacted.
    pub url: String,
    /// `healthy`, `degraded` or `down`.
    pub status: &'static str,
    /// Why it is degraded or down.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Degraded since.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
    /// Writes waiting for replay.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub buffered: Option<usize>,
    /// Replayed writes the primary rejected (see `Degradable::take_rejected`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejected: Option<usize>,
    /// Session keys dropped before their expiry because a memory cache (the
    /// primary or the fallback) was full: memory pressure. Sessions only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evictions: Option<u64>,
    /// The store's operational warnings ([`Store::notes`]), e.g. events held
    /// back from ordered readers behind a long write transaction.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl StoreStatus {
    /// True unless the store is down.
    pub fn is_up(&self) -> bool {
        self.status != "down"
    }

    /// A warning when a memory session cache had to evict live keys.
    pub fn pressure(&self) -> Option<String> {
        self.evictions
            .filter(|n| *n > 0)
            .map(|n| format!("memory pressure: {n} session keys evicted before expiry (raise memory_session_capacity)"))
    }
}

/// What `Stores` reaches of a store's `Degradable` layer, whatever the trait.
#[async_trait]
trait DegradedLayer: Send + Sync {
    fn health(&self) -> Health;
    fn take_rejected(&self) -> Vec<Rejected>;
    async fn try_recover(&self) -> Result<()>;
}

#[async_trait]
impl<T: ?Sized + Replay + 'static> DegradedLayer for Degradable<T> {
    fn health(&self) -> Health {
        Degradable::health(self)
    }
    fn take_rejected(&self) -> Vec<Rejected> {
        Degradable::take_rejected(self)
    }
    async fn try_recover(&self) -> Result<()> {
        Degradable::try_recover(self).await
    }
}

#[derive(Clone)]
struct Probe {
    kind: StoreKind,
    backend: &'static str,
    url: String,
    degradable: Option<Arc<dyn DegradedLayer>>,
    store: Arc<dyn Store>,
    /// The session cache, whose evictions health reports.
    sessions: Option<Arc<dyn SessionCache>>,
}

impl Probe {
    /// Pings the store and reads its degraded-mode state.
    async fn status(&self) -> StoreStatus {
        let ping = self.store.ping().await;
        let mut status = StoreStatus {
            store: self.kind,
            backend: self.backend,
            url: self.url.clone(),
            status: "healthy",
            detail: None,
            since: None,
            buffered: None,
            rejected: None,
            evictions: self.sessions.as_ref().map(|s| s.evictions()),
            // Notes are advisory: a store that cannot give them is judged by its ping.
            notes: if ping.is_ok() { self.store.notes().await.unwrap_or_default() } else { Vec::new() },
        };
        if let Some(Health::Degraded { since, reason, buffered, rejected }) =
            self.degradable.as_ref().map(|d| d.health())
        {
            status.status = "degraded";
            status.detail = Some(reason);
            status.since = Some(since);
            status.buffered = Some(buffered);
            status.rejected = Some(rejected);
        }
        if let Err(e) = ping {
            status.status = "down";
            status.detail = Some(e.to_string());
        }
        status
    }
}

/// The four stores, as trait objects, plus what `health` needs to know.
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
    probes: Vec<Probe>,
}

impl Stores {
    /// All four stores in memory, in `namespace`, each in the [`Traced`] layer.
    pub fn memory(namespace: Namespace) -> Self {
        let m = palisade_memory::MemoryStores::new(namespace.clone(), &palisade_memory::MemoryConfig::default());
        let events: Arc<dyn EventStore> = Arc::new(Traced::new(m.events as Arc<dyn EventStore>, namespace.clone()));
        let sessions: Arc<dyn SessionCache> =
            Arc::new(Traced::new(m.sessions as Arc<dyn SessionCache>, namespace.clone()));
        let documents: Arc<dyn DocumentStore> =
            Arc::new(Traced::new(m.documents as Arc<dyn DocumentStore>, namespace.clone()));
        let reputation: Arc<dyn ReputationRepo> =
            Arc::new(Traced::new(m.reputation as Arc<dyn ReputationRepo>, namespace));
        let probe = |kind, store: Arc<dyn Store>, sessions: Option<Arc<dyn SessionCache>>| Probe {
            kind,
            backend: palisade_memory::BACKEND,
            url: "memory://".into(),
            degradable: None,
            store,
            sessions,
        };
        let probes = vec![
            probe(StoreKind::Events, events.clone(), None),
            probe(StoreKind::Sessions, sessions.clone(), Some(sessions.clone())),
            probe(StoreKind::Documents, documents.clone(), None),
            probe(StoreKind::Reputation, reputation.clone(), None),
        ];
        Stores { events, sessions, documents, reputation, probes }
    }

    /// Opens the four stores `config` names, each in `config.namespace`,
    /// wrapped in `Degradable` where a fallback is configured, and in the
    /// [`Traced`] layer (a span per operation). Stores on the same server
    /// URL (with the same limits) share one backend: one pool, one
    /// migration run.
    ///
    /// # Errors
    /// Configuration errors fail here, always: a malformed URL, an unknown
    /// scheme or one whose feature is off, a store the backend does not
    /// offer. So does a server that cannot be reached — unless the store has
    /// `fallback = "memory"`: then it starts degraded, served from memory
    /// (health says so, with the reason), and switches to its server once a
    /// probe connects to it, replaying what was written meanwhile. Stores on
    /// one server share that one deferred connection.
    pub async fn connect(config: &Config) -> Result<Self> {
        Stores::connect_in(config, &config.namespace).await
    }

    /// Like [`connect`](Self::connect), in namespace `ns` instead.
    pub async fn connect_in(config: &Config, ns: &Namespace) -> Result<Self> {
        validate(config, ns)?;
        let mut opened = Opened::default();
        let (events, p1) = open_events(config, ns, &mut opened).await?;
        let (sessions, p2) = open_sessions(config, ns, &mut opened).await?;
        let (documents, p3) = open_documents(config, ns, &mut opened).await?;
        let (reputation, p4) = open_reputation(config, ns, &mut opened).await?;
        Ok(Stores { events, sessions, documents, reputation, probes: vec![p1, p2, p3, p4] })
    }

    /// The writes that degraded mode buffered but the primary refused when
    /// they were replayed (a unique conflict with data the fallback never
    /// saw, a key holding another type, …), by store; drains the lists.
    /// Health counts them only while the store is still degraded, so a
    /// service that cares reads them after recovery (or on a timer).
    pub fn take_rejected(&self) -> Vec<(StoreKind, Rejected)> {
        let mut out = Vec::new();
        for p in &self.probes {
            if let Some(d) = &p.degradable {
                out.extend(d.take_rejected().into_iter().map(|r| (p.kind, r)));
            }
        }
        out
    }

    /// Tries, now, to bring every degraded store back to its primary
    /// (connecting it if it never was, replaying buffered writes) instead of
    /// waiting for the background probes; `Ok` once none is degraded, else
    /// the first store's error. For tests and graceful shutdown.
    pub async fn try_recover(&self) -> Result<()> {
        let mut first = Ok(());
        for d in self.probes.iter().filter_map(|p| p.degradable.as_ref()) {
            if let Err(e) = d.try_recover().await {
                first = first.and(Err(e));
            }
        }
        first
    }

    /// Pings every store and reports its state.
    pub async fn health(&self) -> Vec<StoreStatus> {
        let mut out = Vec::with_capacity(self.probes.len());
        for p in &self.probes {
            out.push(p.status().await);
        }
        out
    }
}

/// The backends one `connect` opened, by server URL and limits, so stores on
/// the same server share one.
#[derive(Default)]
struct Opened {
    backends: Vec<((String, InputPolicy), Slot)>,
    /// Report an unreachable server as an error even with a fallback
    /// (`palisade health`: an outage must not look like success).
    eager: bool,
}

/// A backend, connected or — its server down at start-up, a fallback
/// configured — connected when a probe first reaches the server.
#[derive(Clone)]
enum Slot {
    Ready(Arc<dyn Backend>),
    Pending(Arc<Pending>),
}

type ConnectBackend = Box<dyn Fn() -> BoxFuture<'static, Result<Arc<dyn Backend>>> + Send + Sync>;

/// A backend whose first connection failed for want of a server.
struct Pending {
    backend: tokio::sync::OnceCell<Arc<dyn Backend>>,
    connect: ConnectBackend,
    /// Why the first attempt failed.
    cause: Error,
}

impl Pending {
    /// The backend, connecting it (once, shared by its stores) if it is not yet.
    async fn get(&self) -> Result<Arc<dyn Backend>> {
        self.backend.get_or_try_init(|| (self.connect)()).await.cloned()
    }
}

impl Slot {
    /// The connected backend; a pending one is tried once more.
    async fn ready(&self) -> Result<Arc<dyn Backend>> {
        match self {
            Slot::Ready(b) => Ok(Arc::clone(b)),
            Slot::Pending(p) => p.get().await,
        }
    }
}

impl Opened {
    /// The backend for store `kind`: one already opened for its URL and
    /// limits, or a new connection. A server that cannot be reached is a
    /// pending slot when the store may fall back to memory.
    async fn backend(
        &mut self,
        kind: StoreKind,
        config: &Config,
        ns: &Namespace,
    ) -> Result<(&'static BackendInfo, &'static dyn Connector, Slot)> {
        let store = config.store(kind);
        let (info, connector) = resolve(&store.url, kind).map_err(|e| e.with_op("connect"))?;
        let key = (store.url.expose().to_owned(), store.limits);
        if let Some((_, slot)) = self.backends.iter().find(|(k, _)| *k == key) {
            return Ok((info, connector, slot.clone()));
        }
        let options = config.connect_options(info.id, ns, store.limits);
        let slot = match connector.connect(store.url.expose(), &options).await {
            Ok(backend) => Slot::Ready(backend),
            Err(cause) if cause.is_backend_failure() && store.fallback == Fallback::Memory && !self.eager => {
                let args = Arc::new((store.url.clone(), options));
                let connect: ConnectBackend = Box::new(move || {
                    let args = Arc::clone(&args);
                    Box::pin(async move { connector.connect(args.0.expose(), &args.1).await })
                });
                Slot::Pending(Arc::new(Pending { backend: tokio::sync::OnceCell::new(), connect, cause }))
            }
            Err(e) => return Err(e),
        };
        self.backends.push((key, slot.clone()));
        Ok((info, connector, slot))
    }
}

/// Every configuration error `connect` could meet, found before any I/O:
/// schemes, features, stores offered, each backend's URL and settings, and
/// the memory fallbacks' settings.
fn validate(config: &Config, ns: &Namespace) -> Result<()> {
    for kind in StoreKind::ALL {
        let store = config.store(kind);
        let (info, connector) = resolve(&store.url, kind).map_err(|e| e.with_op("connect"))?;
        connector.validate(store.url.expose(), &config.connect_options(info.id, ns, store.limits))?;
        if store.fallback == Fallback::Memory {
            memory_config(config, kind)?;
        }
    }
    Ok(())
}

/// What health probes see of a store: its `Store` side and, for session
/// caches, the cache (for its evictions).
type Probed = (Arc<dyn Store>, Option<Arc<dyn SessionCache>>);

/// How one kind of store is taken from a backend, made in memory for the
/// fallback, layered, and seen by health probes.
struct Kind<T: ?Sized + Replay> {
    kind: StoreKind,
    pick: fn(&dyn Backend) -> Result<Arc<T>>,
    memory: fn(&Namespace, &palisade_memory::MemoryConfig) -> Arc<T>,
    wrap: fn(Arc<Degradable<T>>) -> Arc<T>,
    trace: fn(Arc<T>, &Namespace) -> Arc<T>,
    upcast: fn(Arc<T>) -> Probed,
}

/// Opens one store: takes it from the (shared) backend of its URL, wraps it
/// in `Degradable` with a memory secondary when its fallback is memory, then
/// in `Traced`.
async fn open<T>(k: Kind<T>, config: &Config, ns: &Namespace, opened: &mut Opened) -> Result<(Arc<T>, Probe)>
where
    T: ?Sized + Replay + 'static,
{
    let Kind { kind, pick, memory, wrap, trace, upcast } = k;
    let store = config.store(kind);
    let (info, connector, slot) = opened.backend(kind, config, ns).await?;
    let (handle, degradable) = match (store.fallback, slot) {
        (Fallback::None, slot) => (pick(slot.ready().await?.as_ref())?, None),
        (Fallback::Memory, Slot::Ready(backend)) => {
            let secondary = memory(ns, &memory_config(config, kind)?);
            let d = Arc::new(Degradable::new(pick(backend.as_ref())?, secondary, store.degrade.clone()));
            (wrap(Arc::clone(&d)), Some(d as Arc<dyn DegradedLayer>))
        }
        (Fallback::Memory, Slot::Pending(pending)) => {
            let secondary = memory(ns, &memory_config(config, kind)?);
            let shared = Arc::clone(&pending);
            let connect = Arc::new(move || {
                let pending = Arc::clone(&shared);
                Box::pin(async move { pick(pending.get().await?.as_ref()) }) as BoxFuture<'static, Result<Arc<T>>>
            });
            let caps = connector.capabilities();
            let d = Degradable::connecting(connect, info.id, caps, secondary, store.degrade.clone(), &pending.cause);
            let d = Arc::new(d);
            (wrap(Arc::clone(&d)), Some(d as Arc<dyn DegradedLayer>))
        }
    };
    let handle = trace(handle, ns);
    let (as_store, sessions) = upcast(Arc::clone(&handle));
    let probe = Probe { kind, backend: info.id, url: store.url.redacted(), degradable, store: as_store, sessions };
    Ok((handle, probe))
}

async fn open_events(config: &Config, ns: &Namespace, opened: &mut Opened) -> Result<(Arc<dyn EventStore>, Probe)> {
    let k = Kind {
        kind: StoreKind::Events,
        pick: |b| b.events(),
        memory: |ns, m| Arc::new(palisade_memory::MemoryEventStore::new(ns.clone(), m)),
        wrap: |d| d,
        trace: |s, ns| Arc::new(Traced::new(s, ns.clone())),
        upcast: |s| (s, None),
    };
    open(k, config, ns, opened).await
}

async fn open_sessions(config: &Config, ns: &Namespace, opened: &mut Opened) -> Result<(Arc<dyn SessionCache>, Probe)> {
    let k = Kind {
        kind: StoreKind::Sessions,
        pick: |b| b.sessions(),
        memory: |ns, m| Arc::new(palisade_memory::MemorySessionCache::new(ns.clone(), m)),
        wrap: |d| d,
        trace: |s, ns| Arc::new(Traced::new(s, ns.clone())),
        upcast: |s| (s.clone(), Some(s)),
    };
    open(k, config, ns, opened).await
}

async fn open_documents(
    config: &Config,
    ns: &Namespace,
    opened: &mut Opened,
) -> Result<(Arc<dyn DocumentStore>, Probe)> {
    let k = Kind {
        kind: StoreKind::Documents,
        pick: |b| b.documents(),
        memory: |ns, m| Arc::new(palisade_memory::MemoryDocumentStore::new(ns.clone(), m)),
        wrap: |d| d,
        trace: |s, ns| Arc::new(Traced::new(s, ns.clone())),
        upcast: |s| (s, None),
    };
    open(k, config, ns, opened).await
}

async fn open_reputation(
    config: &Config,
    ns: &Namespace,
    opened: &mut Opened,
) -> Result<(Arc<dyn ReputationRepo>, Probe)> {
    let k = Kind {
        kind: StoreKind::Reputation,
        pick: |b| b.reputation(),
        memory: |ns, m| Arc::new(palisade_memory::MemoryReputationRepo::with_policy(ns.clone(), m.policy)),
        wrap: |d| d,
        trace: |s, ns| Arc::new(Traced::new(s, ns.clone())),
        upcast: |s| (s, None),
    };
    open(k, config, ns, opened).await
}

/// Opens each configured store on its own and reports its state; a store that
/// cannot even be opened is reported `down` with the reason (no password).
pub async fn probe(config: &Config) -> Vec<StoreStatus> {
    let ns = &config.namespace;
    let mut out = Vec::with_capacity(4);
    let mut backends = Opened { eager: true, ..Opened::default() };
    for kind in StoreKind::ALL {
        let opened = match kind {
            StoreKind::Events => open_events(config, ns, &mut backends).await.map(|(_, p)| p),
            StoreKind::Sessions => open_sessions(config, ns, &mut backends).await.map(|(_, p)| p),
            StoreKind::Documents => open_documents(config, ns, &mut backends).await.map(|(_, p)| p),
            StoreKind::Reputation => open_reputation(config, ns, &mut backends).await.map(|(_, p)| p),
        };
        out.push(match opened {
            Ok(p) => p.status().await,
            Err(e) => {
                let url = &config.store(kind).url;
                let backend = crate::registry::BACKENDS
                    .iter()
                    .find(|b| b.schemes.contains(&url.scheme()))
                    .map_or("unknown", |b| b.id);
                StoreStatus {
                    store: kind,
                    backend,
                    url: url.redacted(),
                    status: "down",
                    detail: Some(e.to_string()),
                    since: None,
                    buffered: None,
                    rejected: None,
                    evictions: None,
                    notes: Vec::new(),
                }
            }
        });
    }
    out
}
