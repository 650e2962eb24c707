//! The backend registry: which URL scheme means which backend, which Cargo
//! feature compiles it, which stores it offers, and how to open them. The rest
//! of the facade asks the registry instead of matching on schemes itself.

use std::sync::Arc;

use async_trait::async_trait;
use palisade_core::{
    Capabilities, DocumentStore, Error, ErrorKind, EventStore, InputPolicy, Namespace, ReputationRepo, Result,
    SessionCache,
};

use crate::config::{Config, StoreKind, StoreUrl};

/// A backend Palisade knows about, compiled in or not.
#[derive(Debug)]
pub struct BackendInfo {
    /// Backend id (`memory`, `pg_sqlx`, …).
    pub id: &'static str,
    /// URL schemes that select it.
    pub schemes: &'static [&'static str],
    /// The facade feature that compiles it.
    pub feature: &'static str,
    /// The stores it offers.
    pub offers: &'static [StoreKind],
}

const ALL: &[StoreKind] = &StoreKind::ALL;
const NO_DOCUMENTS: &[StoreKind] = &[StoreKind::Events, StoreKind::Sessions, StoreKind::Reputation];

/// Every backend, in the order `palisade health` lists them.
pub const BACKENDS: &[BackendInfo] = &[
    BackendInfo { id: "memory", schemes: &["memory"], feature: "memory", offers: ALL },
    BackendInfo { id: "pg_sqlx", schemes: &["postgres", "postgresql"], feature: "pg-sqlx", offers: ALL },
    BackendInfo {
        id: "pg_diesel",
        schemes: &["postgres+diesel", "postgresql+diesel"],
        feature: "pg-diesel",
        offers: ALL,
    },
    BackendInfo { id: "redis_rs", schemes: &["redis", "rediss"], feature: "redis-rs", offers: NO_DOCUMENTS },
    BackendInfo { id: "fred", schemes: &["redis+fred", "rediss+fred"], feature: "fred", offers: NO_DOCUMENTS },
    BackendInfo { id: "mongo", schemes: &["mongodb", "mongodb+srv"], feature: "mongo", offers: ALL },
];

/// One connected backend: a server and a namespace, shared by every store
/// opened on it (one pool, one migration run).
#[async_trait]
pub trait Backend: Send + Sync {
    /// The event store of this namespace.
    fn events(&self) -> Result<Arc<dyn EventStore>>;
    /// The session cache.
    fn sessions(&self) -> Result<Arc<dyn SessionCache>>;
    /// The document store (`Unsupported` where the backend has none).
    fn documents(&self) -> Result<Arc<dyn DocumentStore>>;
    /// The reputation repo.
    fn reputation(&self) -> Result<Arc<dyn ReputationRepo>>;
    /// Deletes everything stored in the namespace.
    async fn drop_namespace(&self) -> Result<()>;
    /// Deletes every row but keeps the schema, when that is cheaper than
    /// dropping the namespace and creating a new one; `Ok(false)` when the
    /// backend has no such shortcut (the default).
    async fn empty_namespace(&self) -> Result<bool> {
        Ok(false)
    }
}

/// Opens backends of one kind.
#[async_trait]
pub trait Connector: Send + Sync {
    /// Connects to the server at `url`, confined to `ns`, its stores held to
    /// `policy` (migrating first where the backend has a schema).
    async fn connect(
        &self,
        url: &StoreUrl,
        config: &Config,
        ns: &Namespace,
        policy: InputPolicy,
    ) -> Result<Arc<dyn Backend>>;
    /// What the backend's stores guarantee (known before connecting, so a
    /// store whose server is down at start-up reports them too).
    fn capabilities(&self) -> Capabilities;
    /// Checks that the server at `url` answers (without touching any namespace).
    async fn ping(&self, url: &StoreUrl, config: &Config) -> Result<()>;
    /// Drops `ns` at `url` without migrating it first (throwaway namespaces).
    async fn drop_namespace(&self, url: &StoreUrl, config: &Config, ns: &Namespace) -> Result<()> {
        self.connect(url, config, ns, InputPolicy::default()).await?.drop_namespace().await
    }
}

/// The memory backend's connector. Every call opens fresh, empty stores.
pub struct MemoryConnector;

/// The memory backend's settings for store `kind` (also used for the
/// degraded-mode fallback of that store).
pub fn memory_config(config: &Config, kind: StoreKind) -> palisade_memory::MemoryConfig {
    palisade_memory::MemoryConfig {
        session_capacity: config.memory_session_capacity,
        policy: config.store(kind).limits,
        ..palisade_memory::MemoryConfig::default()
    }
}

#[async_trait]
impl Backend for palisade_memory::MemoryStores {
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

#[async_trait]
impl Connector for MemoryConnector {
    async fn connect(
        &self,
        _: &StoreUrl,
        config: &Config,
        ns: &Namespace,
        policy: InputPolicy,
    ) -> Result<Arc<dyn Backend>> {
        let m = palisade_memory::MemoryConfig {
            session_capacity: config.memory_session_capacity,
            policy,
            ..Default::default()
        };
        Ok(Arc::new(palisade_memory::MemoryStores::new(ns.clone(), &m)))
    }
    fn capabilities(&self) -> Capabilities {
        palisade_memory::capabilities()
    }
    async fn ping(&self, _: &StoreUrl, _: &Config) -> Result<()> {
        Ok(())
    }
}

/// Postgres via sqlx: one pool (`pool_size` connections) per namespace,
/// migrated on connect.
#[cfg(feature = "pg-sqlx")]
pub struct PgSqlxConnector;

#[cfg(feature = "pg-sqlx")]
impl PgSqlxConnector {
    /// Connection settings for `url` in `ns` from the facade config.
    pub fn pg_config(url: &StoreUrl, config: &Config, ns: &Namespace) -> palisade_pg_sqlx::PgConfig {
        let mut pg = palisade_pg_sqlx::PgConfig::new(url.expose(), ns.clone());
        pg.pool_size = config.pool_size;
        pg.connect_timeout = config.connect_timeout;
        pg.statement_timeout = config.op_timeout;
        pg.tls = config.tls;
        pg
    }
}

#[cfg(feature = "pg-sqlx")]
#[async_trait]
impl Backend for palisade_pg_sqlx::PgBackend {
    fn events(&self) -> Result<Arc<dyn EventStore>> {
        Ok(Arc::new(palisade_pg_sqlx::PgBackend::events(self)))
    }
    fn sessions(&self) -> Result<Arc<dyn SessionCache>> {
        Ok(Arc::new(palisade_pg_sqlx::PgBackend::sessions(self)))
    }
    fn documents(&self) -> Result<Arc<dyn DocumentStore>> {
        Ok(Arc::new(palisade_pg_sqlx::PgBackend::documents(self)))
    }
    fn reputation(&self) -> Result<Arc<dyn ReputationRepo>> {
        Ok(Arc::new(palisade_pg_sqlx::PgBackend::reputation(self)))
    }
    async fn drop_namespace(&self) -> Result<()> {
        palisade_pg_sqlx::PgBackend::drop_namespace(self).await
    }
    /// A migrated namespace emptied in one statement costs a fraction of
    /// dropping it and applying every migration to a new one.
    async fn empty_namespace(&self) -> Result<bool> {
        palisade_pg_sqlx::PgBackend::empty_namespace(self).await.map(|()| true)
    }
}

#[cfg(feature = "pg-sqlx")]
#[async_trait]
impl Connector for PgSqlxConnector {
    async fn connect(
        &self,
        url: &StoreUrl,
        config: &Config,
        ns: &Namespace,
        policy: InputPolicy,
    ) -> Result<Arc<dyn Backend>> {
        let mut pg = Self::pg_config(url, config, ns);
        pg.policy = policy;
        Ok(Arc::new(palisade_pg_sqlx::PgBackend::connect(&pg).await?))
    }
    fn capabilities(&self) -> Capabilities {
        palisade_pg_sqlx::capabilities()
    }
    async fn ping(&self, url: &StoreUrl, config: &Config) -> Result<()> {
        let pg = Self::pg_config(url, config, &config.namespace);
        palisade_pg_sqlx::PgBackend::connect_without_migrating(&pg).await?.ping().await
    }
    async fn drop_namespace(&self, url: &StoreUrl, config: &Config, ns: &Namespace) -> Result<()> {
        let backend = palisade_pg_sqlx::PgBackend::connect_without_migrating(&Self::pg_config(url, config, ns)).await?;
        backend.drop_namespace().await
    }
}

/// Redis via redis-rs (`redis://`) or fred (`redis+fred://`): one connection
/// (redis-rs) or pool of `pool_size` (fred) per namespace; `?cluster=true` on
/// the URL connects to a cluster. Redis offers no document store (see [`BACKENDS`]).
#[cfg(any(feature = "redis-rs", feature = "fred"))]
pub struct RedisConnector(pub palisade_redis::ClientKind);

#[cfg(any(feature = "redis-rs", feature = "fred"))]
impl RedisConnector {
    /// Connection settings for `url` in `ns` from the facade config.
    pub fn redis_config(&self, url: &StoreUrl, config: &Config, ns: &Namespace) -> palisade_redis::RedisConfig {
        let mut redis = palisade_redis::RedisConfig::new(url.expose(), ns.clone());
        redis.client = self.0;
        redis.pool_size = config.pool_size as usize;
        redis.connect_timeout = config.connect_timeout;
        redis.response_timeout = config.op_timeout;
        redis.tls = config.tls;
        redis
    }
}

#[cfg(any(feature = "redis-rs", feature = "fred"))]
#[async_trait]
impl Backend for palisade_redis::RedisBackend {
    fn events(&self) -> Result<Arc<dyn EventStore>> {
        Ok(Arc::new(palisade_redis::RedisBackend::events(self)))
    }
    fn sessions(&self) -> Result<Arc<dyn SessionCache>> {
        Ok(Arc::new(palisade_redis::RedisBackend::sessions(self)))
    }
    fn documents(&self) -> Result<Arc<dyn DocumentStore>> {
        Err(Error::unsupported("redis offers no document store", &["memory", "pg_sqlx", "pg_diesel", "mongo"]))
    }
    fn reputation(&self) -> Result<Arc<dyn ReputationRepo>> {
        Ok(Arc::new(palisade_redis::RedisBackend::reputation(self)))
    }
    async fn drop_namespace(&self) -> Result<()> {
        palisade_redis::RedisBackend::drop_namespace(self).await
    }
}

#[cfg(any(feature = "redis-rs", feature = "fred"))]
#[async_trait]
impl Connector for RedisConnector {
    async fn connect(
        &self,
        url: &StoreUrl,
        config: &Config,
        ns: &Namespace,
        policy: InputPolicy,
    ) -> Result<Arc<dyn Backend>> {
        let mut redis = self.redis_config(url, config, ns);
        redis.policy = policy;
        Ok(Arc::new(palisade_redis::RedisBackend::connect(&redis).await?))
    }
    fn capabilities(&self) -> Capabilities {
        palisade_redis::capabilities()
    }
    async fn ping(&self, url: &StoreUrl, config: &Config) -> Result<()> {
        let redis = self.redis_config(url, config, &config.namespace);
        palisade_redis::RedisBackend::connect(&redis).await?.ping().await
    }
}

/// The connector of a compiled-in backend.
fn connector(id: &str) -> Option<&'static dyn Connector> {
    match id {
        "memory" => Some(&MemoryConnector),
        #[cfg(feature = "pg-sqlx")]
        "pg_sqlx" => Some(&PgSqlxConnector),
        #[cfg(feature = "redis-rs")]
        "redis_rs" => Some(&RedisConnector(palisade_redis::ClientKind::RedisRs)),
        #[cfg(feature = "fred")]
        "fred" => Some(&RedisConnector(palisade_redis::ClientKind::Fred)),
        _ => None,
    }
}

/// Finds the backend for `url` and checks it is compiled in and offers `kind`.
/// Errors name the scheme and, when missing, the feature to enable — never
/// the URL itself.
pub fn resolve(url: &StoreUrl, kind: StoreKind) -> Result<(&'static BackendInfo, &'static dyn Connector)> {
    let scheme = url.scheme();
    let info = BACKENDS.iter().find(|b| b.schemes.contains(&scheme)).ok_or_else(|| {
        let known: Vec<&str> = BACKENDS.iter().flat_map(|b| b.schemes.iter().copied()).collect();
        Error::new(
            ErrorKind::Config,
            format!("unknown URL scheme `{scheme}` for {kind}; known schemes: {}", known.join(", ")),
        )
    })?;
    if !info.offers.contains(&kind) {
        let offering: Vec<&str> = BACKENDS.iter().filter(|b| b.offers.contains(&kind)).map(|b| b.id).collect();
        return Err(Error::new(
            ErrorKind::Unsupported,
            format!("backend `{}` does not offer the {kind} store; backends that do: {}", info.id, offering.join(", ")),
        ));
    }
    let connector = connector(info.id).ok_or_else(|| {
        Error::new(
            ErrorKind::Config,
            format!(
                "URL scheme `{scheme}` needs the `{feature}` feature of palisade, which this build lacks \
                 (cargo add palisade --features {feature})",
                feature = info.feature
            ),
        )
    })?;
    Ok((info, connector))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> StoreUrl {
        StoreUrl::parse(s).unwrap()
    }

    #[test]
    #[cfg(all(feature = "pg-sqlx", any(feature = "redis-rs", feature = "fred")))]
    fn the_tls_setting_reaches_the_backends() {
        let mut config = Config::default();
        let ns = config.namespace.clone();
        let pg = |c: &Config| PgSqlxConnector::pg_config(&url("postgres://h/db"), c, &ns).tls;
        let redis = |c: &Config| {
            RedisConnector(palisade_redis::ClientKind::RedisRs).redis_config(&url("redis://h:1"), c, &ns).tls
        };
        assert!(!pg(&config) && !redis(&config));
        config.tls = true;
        assert!(pg(&config) && redis(&config));
    }

    #[test]
    fn memory_resolves_for_every_store() {
        for kind in StoreKind::ALL {
            assert_eq!(resolve(&url("memory://"), kind).unwrap().0.id, "memory");
        }
    }

    #[test]
    fn missing_feature_is_named_without_the_password() {
        let err = resolve(&url("mongodb://admin:s3cret@localhost"), StoreKind::Events).err().unwrap();
        assert_eq!(err.kind(), ErrorKind::Config);
        let text = err.to_string();
        assert!(text.contains("`mongo` feature"), "{text}");
        assert!(!text.contains("s3cret"), "{text}");
    }

    #[test]
    fn redis_does_not_offer_documents() {
        let err = resolve(&url("redis://localhost"), StoreKind::Documents).err().unwrap();
        assert_eq!(err.kind(), ErrorKind::Unsupported);
        assert!(err.to_string().contains("memory, pg_sqlx, pg_diesel, mongo"), "{err}");
    }

    #[test]
    fn unknown_scheme_lists_the_known_ones() {
        let err = resolve(&url("cassandra://x"), StoreKind::Events).err().unwrap();
        assert_eq!(err.kind(), ErrorKind::Config);
        assert!(err.to_string().contains("postgres+diesel"));
    }
}
