//! # palisade-redis
//!
//! Palisade on Redis 7, through either of two clients behind Cargo features:
//! **redis-rs** (`redis-rs`: a `ConnectionManager`, or an async cluster
//! connection) and **fred** (`fred`: a pool with an exponential reconnect
//! policy). Key layout, Lua scripts and semantics are shared code
//! (`scripts.rs`, the store modules); only the client calls differ
//! (`clients::Client`). Both clients pass the same conformance suite.
//!
//! ## Stores
//! - [`RedisSessionCache`]: values, history lists and counters under
//!   `{<ns>:s}:<key>`; every multi-step operation is one script.
//! - [`RedisReputationRepo`]: an idempotent log plus per-period sorted sets.
//! - [`RedisEventStore`]: a Redis Stream per namespace with index streams.
//! - `DocumentStore` is not offered; the facade answers `Unsupported` and
//!   names the backends that have it.
//!
//! ## Keys and namespaces
//! Every key starts with a hash tag naming the namespace and the store —
//! `{<ns>:s}:` sessions, `{<ns>:r}:` reputation, `{<ns>:e}:` events — followed
//! by fixed-width markers and the caller's bytes verbatim (binary-safe, never
//! escaped or parsed). A namespace is `[a-z0-9_]`, so the prefix ends at a
//! fixed place and no key bytes can make one namespace's key equal another's.
//! One hash tag per store keeps each store's multi-key scripts in one cluster
//! slot: a namespace's store lives on one cluster node (scale out across
//! namespaces/tenants, not within one store).
//!
//! ## Connections and errors
//! Stores connect at construction (bad URLs, unreachable servers and wrong
//! credentials fail there) with explicit connect and response timeouts, and
//! reconnect by themselves after a server restart. Errors are mapped in
//! `error.rs`, one function per client.
//!
//! ## Durability
//! `durable` is **false**: Redis keeps data in memory and the servers this
//! crate is tested against run without RDB/AOF. With AOF `appendfsync always`
//! a deployment could claim more, but the store cannot check it, so it does
//! not.
//!
//! ## URLs
//! `redis://[user:pass@]host:port[/db]` (redis-rs) and `redis+fred://…` (fred).
//! Query parameters: `cluster=true` connects to a Redis Cluster (the host is a
//! seed node), `node=host:port` adds seed nodes (repeatable). `rediss://` and
//! `rediss+fred://` connect with TLS (rustls with the ring provider), trusting
//! the system's roots, or only the PEM certificates in the file that
//! `tls_ca=<path>` names; [`RedisConfig::tls`] upgrades a `redis://` URL.
//! Opening a TLS connection makes ring rustls' process-wide crypto provider
//! if none is installed yet (install yours first to use another).

// Without a client feature the crate only offers its types (connect says which
// feature is missing); the client plumbing is then unused.
#![cfg_attr(not(any(feature = "redis-rs", feature = "fred")), allow(dead_code, unused_variables, unreachable_code))]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod clients;
mod config;
mod error;
mod events;
mod reputation;
mod scripts;
mod sessions;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use palisade_core::backend::{Backend, ConnectOptions, Connector};
use palisade_core::{
    Capabilities, DocumentStore, Error, ErrorKind, EventStore, InputPolicy, Namespace, ReputationRepo, Result,
    SessionCache,
};

pub(crate) use clients::{Client, Cmd};
pub use config::{RedisConfig, MAX_REBUILD_CHUNK};
pub use events::RedisEventStore;
pub use reputation::RedisReputationRepo;
pub use sessions::RedisSessionCache;

/// Which client library talks to Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKind {
    /// redis-rs (backend id `redis_rs`).
    RedisRs,
    /// fred (backend id `fred`).
    Fred,
}

impl ClientKind {
    /// The backend id used in errors, spans and test names.
    pub fn backend(self) -> &'static str {
        match self {
            ClientKind::RedisRs => "redis_rs",
            ClientKind::Fred => "fred",
        }
    }
}

/// What every Redis store guarantees. Not durable (see the crate docs);
/// positions are stream ids, ordered and gap-safe but not consecutive;
/// `count_by` is offered, capped by [`RedisConfig::scan_limit`].
pub fn capabilities() -> Capabilities {
    let mut caps = Capabilities::none();
    caps.atomic_batch = true;
    caps.live_tail = true;
    caps.analytics = true;
    caps.native_ttl = true;
    caps.durable_consumers = true;
    caps
}

/// Tuning shared by the stores of one backend.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) scan_limit: usize,
    pub(crate) board_retention: Option<Duration>,
    pub(crate) tail_block: Duration,
    pub(crate) rebuild_chunk: usize,
    pub(crate) policy: InputPolicy,
}

/// One connection (or pool) to Redis, confined to one namespace.
#[derive(Clone)]
pub struct RedisBackend {
    client: Arc<dyn Client>,
    namespace: Namespace,
    options: Arc<Options>,
}

impl RedisBackend {
    /// Connects with the configured client, now: a bad URL, an unreachable
    /// server or bad credentials fail here, not on first use.
    pub async fn connect(config: &RedisConfig) -> Result<Self> {
        let settings = config.settings().map_err(|e| e.with_backend(config.client.backend()))?;
        let client = match config.client {
            #[cfg(feature = "redis-rs")]
            ClientKind::RedisRs => clients::redis_rs::connect(&settings).await?,
            #[cfg(feature = "fred")]
            ClientKind::Fred => clients::fred::connect(&settings).await?,
            #[allow(unreachable_patterns)]
            other => {
                let _ = settings;
                return Err(Error::new(
                    ErrorKind::Config,
                    format!("palisade-redis was built without the client for `{}`", other.backend()),
                )
                .with_op("connect"));
            }
        };
        let backend = RedisBackend {
            client,
            namespace: config.namespace.clone(),
            options: Arc::new(Options {
                scan_limit: config.scan_limit.max(1),
                board_retention: config.board_retention,
                tail_block: config.tail_block,
                rebuild_chunk: config.rebuild_chunk.clamp(1, MAX_REBUILD_CHUNK),
                policy: config.policy,
            }),
        };
        backend.ping().await?;
        Ok(backend)
    }

    /// The backend id (`redis_rs` or `fred`).
    pub fn backend(&self) -> &'static str {
        self.client.backend()
    }

    /// Tags an error from core validation (or shared code) with this
    /// backend's id and `op`.
    pub(crate) fn tagged(&self, op: &'static str) -> impl Fn(palisade_core::Error) -> palisade_core::Error {
        crate::error::tagged(self.backend(), op)
    }

    /// The namespace.
    pub fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    /// Checks that Redis answers.
    pub async fn ping(&self) -> Result<()> {
        self.client.call("ping", Cmd::keyless("PING")).await.map(|_| ())
    }

    /// Deletes every key of the namespace (all three stores), scanning the
    /// node that owns each store's slot with the store's prefix as pattern
    /// (`SCAN MATCH` on raw bytes, `UNLINK` per batch).
    pub async fn drop_namespace(&self) -> Result<()> {
        for store in [Store::Sessions, Store::Reputation, Store::Events] {
            let prefix = prefix(&self.namespace, store);
            let pattern = format!("{prefix}*");
            let mut cursor = "0".to_owned();
            loop {
                let reply = self
                    .client
                    .eval(
                        "drop_namespace",
                        &scripts::DROP_STEP,
                        vec![prefix.clone().into_bytes()],
                        vec![cursor.into_bytes(), pattern.clone().into_bytes()],
                    )
                    .await?;
                cursor = reply.text()?.to_owned();
                if cursor == "0" {
                    break;
                }
            }
        }
        Ok(())
    }

    /// The event store of this namespace.
    pub fn events(&self) -> RedisEventStore {
        RedisEventStore::new(self.clone())
    }

    /// The session cache of this namespace.
    pub fn sessions(&self) -> RedisSessionCache {
        RedisSessionCache::new(self.clone())
    }

    /// The reputation repo of this namespace.
    pub fn reputation(&self) -> RedisReputationRepo {
        RedisReputationRepo::new(self.clone())
    }
}

#[async_trait]
impl Backend for RedisBackend {
    fn events(&self) -> Result<Arc<dyn EventStore>> {
        Ok(Arc::new(RedisBackend::events(self)))
    }
    fn sessions(&self) -> Result<Arc<dyn SessionCache>> {
        Ok(Arc::new(RedisBackend::sessions(self)))
    }
    /// Redis offers no document store.
    fn documents(&self) -> Result<Arc<dyn DocumentStore>> {
        Err(Error::unsupported("redis offers no document store", &["memory", "pg_sqlx", "pg_diesel", "mongo"])
            .with_backend(self.backend()))
    }
    fn reputation(&self) -> Result<Arc<dyn ReputationRepo>> {
        Ok(Arc::new(RedisBackend::reputation(self)))
    }
    async fn drop_namespace(&self) -> Result<()> {
        RedisBackend::drop_namespace(self).await
    }
}

/// The connector of one client: redis-rs (`redis://`, `rediss://`) or fred
/// (`redis+fred://`, `rediss+fred://`). Settings: [`RedisConfig::from_options`].
#[derive(Debug, Clone, Copy)]
pub struct RedisConnector(pub ClientKind);

#[async_trait]
impl Connector for RedisConnector {
    /// An ACL rule confining `role` to the namespace's keys and to the
    /// commands the stores use ([`acl_rule`]); set it on every node of a
    /// cluster.
    fn grants(&self, ns: &Namespace, role: &str) -> Option<String> {
        Some(acl_rule(ns, role))
    }
    fn id(&self) -> &'static str {
        self.0.backend()
    }
    fn capabilities(&self) -> Capabilities {
        capabilities()
    }
    fn validate(&self, url: &str, options: &ConnectOptions) -> Result<()> {
        RedisConfig::from_options(url, options).map(|_| ())
    }
    async fn connect(&self, url: &str, options: &ConnectOptions) -> Result<Arc<dyn Backend>> {
        let config = RedisConfig::from_options(url, options)?.with_client(self.0);
        Ok(Arc::new(RedisBackend::connect(&config).await?))
    }
    async fn ping(&self, url: &str, options: &ConnectOptions) -> Result<()> {
        let config = RedisConfig::from_options(url, options)?.with_client(self.0);
        RedisBackend::connect(&config).await?.ping().await
    }
}

/// `ACL SETUSER` for a user confined to `ns` (see the connector's `grants`):
/// the namespace's keys only (`~{<ns>:*` — a namespace is `[a-z0-9_]` and
/// the tag ends at `:`, so no other namespace matches); reads, writes,
/// streams and connection commands, scripts by `EVAL`/`EVALSHA`/`SCRIPT
/// LOAD|EXISTS` only (not `FUNCTION` (whose `FLUSH` `@write` would allow) or `SCRIPT FLUSH`), and the `CLUSTER`
/// subcommands cluster clients need to find slots; never `@admin` or
/// `@dangerous`, and not the commands that reveal or copy other keys
/// whatever the pattern (`SCAN`, `RANDOMKEY`, `DBSIZE`, `KEYS`, `COPY`,
/// `MOVE`). No channels. The password is reset and left for the operator to
/// fill in; `resetkeys` makes the rule the user's only key pattern (one
/// user per namespace, or append more `~{<ns>:*` patterns).
pub fn acl_rule(ns: &Namespace, user: &str) -> String {
    format!(
        "ACL SETUSER {user} on resetpass >CHANGE-ME resetkeys ~{{{ns}:* resetchannels -@all \
         +@read +@write +@stream +@connection +@keyspace +eval +evalsha +eval_ro +evalsha_ro \
         +script|load +script|exists +cluster|slots +cluster|shards +cluster|nodes +readonly +asking \
         -@dangerous -@admin -function -scan -randomkey -dbsize -keys -copy -move\n"
    )
}

/// The three stores, each under its own hash tag.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Store {
    Sessions,
    Reputation,
    Events,
}

/// The key prefix of `store` in `ns`: `{<ns>:<s|r|e>}:`.
pub(crate) fn prefix(ns: &Namespace, store: Store) -> String {
    let tag = match store {
        Store::Sessions => 's',
        Store::Reputation => 'r',
        Store::Events => 'e',
    };
    format!("{{{ns}:{tag}}}:")
}

/// `prefix` followed by `suffix`'s bytes, verbatim.
pub(crate) fn key(prefix: &str, suffix: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + suffix.len());
    k.extend_from_slice(prefix.as_bytes());
    k.extend_from_slice(suffix);
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(s: &str) -> Namespace {
        Namespace::new(s).unwrap()
    }

    #[test]
    fn prefixes_carry_one_hash_tag_per_store() {
        assert_eq!(prefix(&ns("t1"), Store::Sessions), "{t1:s}:");
        assert_eq!(prefix(&ns("t1"), Store::Events), "{t1:e}:");
    }

    #[test]
    fn keys_cannot_reach_another_namespace() {
        // The namespace ends at the first `:`, which it cannot contain.
        let a = key(&prefix(&ns("a"), Store::Sessions), b"b:s}:x");
        let b = key(&prefix(&ns("ab"), Store::Sessions), b"x");
        assert_ne!(a, b);
        assert!(a.starts_with(b"{a:s}:"));
    }
}
