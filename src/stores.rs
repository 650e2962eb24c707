//! [`Stores`]: the four stores a service uses, opened from a [`Config`].

use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use palisade_core::degradable::Replay;
use palisade_core::{
    Degradable, DegradeConfig, DocumentStore, EventStore, Health, Namespace, ReputationRepo, Result, SessionCache,
    Store, Traced,
};
use serde::Serialize;

use crate::config::{Config, Fallback, StoreKind, StoreUrl};
use crate::registry::{memory_config, resolve, Connector};

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

type HealthFn = Arc<dyn Fn() -> Health + Send + Sync>;

#[derive(Clone)]
struct Probe {
    kind: StoreKind,
    backend: &'static str,
    url: String,
    degradable: Option<HealthFn>,
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
        };
        if let Some(Health::Degraded { since, reason, buffered, rejected }) = self.degradable.as_ref().map(|h| h()) {
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
    /// [`Traced`] layer (a span per operation).
    ///
    /// # Errors
    /// Connecting is eager, also with a fallback: an unreachable server, a bad
    /// URL or bad credentials fail here. The fallback serves outages after
    /// start-up.
    pub async fn connect(config: &Config) -> Result<Self> {
        Stores::connect_in(config, &config.namespace).await
    }

    /// Like [`connect`](Self::connect), in namespace `ns` instead.
    pub async fn connect_in(config: &Config, ns: &Namespace) -> Result<Self> {
        let (events, p1) = open_events(config, ns).await?;
        let (sessions, p2) = open_sessions(config, ns).await?;
        let (documents, p3) = open_documents(config, ns).await?;
        let (reputation, p4) = open_reputation(config, ns).await?;
        Ok(Stores { events, sessions, documents, reputation, probes: vec![p1, p2, p3, p4] })
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

/// Opens one store of `kind`: resolves the URL, connects, and wraps it in
/// `Degradable` with a memory secondary when the store's fallback is memory.
async fn open<T>(
    kind: StoreKind,
    config: &Config,
    ns: &Namespace,
    connect: impl for<'a> Fn(&'a dyn Connector, &'a StoreUrl, &'a Config, &'a Namespace) -> BoxFuture<'a, Result<Arc<T>>>,
    memory: impl Fn(&Namespace, &palisade_memory::MemoryConfig) -> Arc<T>,
    wrap: impl Fn(Arc<Degradable<T>>) -> Arc<T>,
    trace: impl Fn(Arc<T>, &Namespace) -> Arc<T>,
    upcast: impl Fn(Arc<T>) -> (Arc<dyn Store>, Option<Arc<dyn SessionCache>>),
) -> Result<(Arc<T>, Probe)>
where
    T: ?Sized + Replay + 'static,
{
    let store = config.store(kind);
    let (info, connector) = resolve(&store.url, kind).map_err(|e| e.with_op("connect"))?;
    let primary = connect(connector, &store.url, config, ns).await?;
    let (handle, degradable) = match store.fallback {
        Fallback::None => (primary, None),
        Fallback::Memory => {
            let secondary = memory(ns, &memory_config(config, kind));
            let d = Arc::new(Degradable::new(primary, secondary, DegradeConfig::default()));
            let health = Arc::clone(&d);
            let health: HealthFn = Arc::new(move || health.health());
            (wrap(d), Some(health))
        }
    };
    let handle = trace(handle, ns);
    let (as_store, sessions) = upcast(Arc::clone(&handle));
    let probe = Probe { kind, backend: info.id, url: store.url.redacted(), degradable, store: as_store, sessions };
    Ok((handle, probe))
}

async fn open_events(config: &Config, ns: &Namespace) -> Result<(Arc<dyn EventStore>, Probe)> {
    open(
        StoreKind::Events,
        config,
        ns,
        |c, u, cfg, ns| c.events(u, cfg, ns),
        |ns, m| Arc::new(palisade_memory::MemoryEventStore::new(ns.clone(), m)),
        |d| d,
        |s, ns| Arc::new(Traced::new(s, ns.clone())),
        |s| (s, None),
    )
    .await
}

async fn open_sessions(config: &Config, ns: &Namespace) -> Result<(Arc<dyn SessionCache>, Probe)> {
    open(
        StoreKind::Sessions,
        config,
        ns,
        |c, u, cfg, ns| c.sessions(u, cfg, ns),
        |ns, m| Arc::new(palisade_memory::MemorySessionCache::new(ns.clone(), m)),
        |d| d,
        |s, ns| Arc::new(Traced::new(s, ns.clone())),
        |s| (s.clone(), Some(s)),
    )
    .await
}

async fn open_documents(config: &Config, ns: &Namespace) -> Result<(Arc<dyn DocumentStore>, Probe)> {
    open(
        StoreKind::Documents,
        config,
        ns,
        |c, u, cfg, ns| c.documents(u, cfg, ns),
        |ns, m| Arc::new(palisade_memory::MemoryDocumentStore::new(ns.clone(), m)),
        |d| d,
        |s, ns| Arc::new(Traced::new(s, ns.clone())),
        |s| (s, None),
    )
    .await
}

async fn open_reputation(config: &Config, ns: &Namespace) -> Result<(Arc<dyn ReputationRepo>, Probe)> {
    open(
        StoreKind::Reputation,
        config,
        ns,
        |c, u, cfg, ns| c.reputation(u, cfg, ns),
        |ns, m| Arc::new(palisade_memory::MemoryReputationRepo::with_policy(ns.clone(), m.policy)),
        |d| d,
        |s, ns| Arc::new(Traced::new(s, ns.clone())),
        |s| (s, None),
    )
    .await
}

/// Opens each configured store on its own and reports its state; a store that
/// cannot even be opened is reported `down` with the reason (no password).
pub async fn probe(config: &Config) -> Vec<StoreStatus> {
    let ns = &config.namespace;
    let mut out = Vec::with_capacity(4);
    for kind in StoreKind::ALL {
        let opened = match kind {
            StoreKind::Events => open_events(config, ns).await.map(|(_, p)| p),
            StoreKind::Sessions => open_sessions(config, ns).await.map(|(_, p)| p),
            StoreKind::Documents => open_documents(config, ns).await.map(|(_, p)| p),
            StoreKind::Reputation => open_reputation(config, ns).await.map(|(_, p)| p),
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
                }
            }
        });
    }
    out
}
