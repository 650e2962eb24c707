//! # palisade-redis
//!
//! Palisade on Redis 7, through either of two clients behind Cargo features:
//! **redis-rs** (`redis-rs`: a `ConnectionManager`, or an async cluster
//! connection) and **fred** (`fred`: a pool with an exponential reconnect
//! policy). Key layout, Lua scripts and semantics are shared code
//! ([`scripts`], the store modules); only the client calls differ
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

mod clients;
mod error;
mod events;
mod reputation;
pub mod scripts;
mod sessions;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use palisade_core::{Capabilities, Error, ErrorKind, InputPolicy, Namespace, Result};

pub use clients::{Client, Cmd, Lua, Reply};
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

/// Connection settings. `Debug` never shows the URL.
#[derive(Clone)]
pub struct RedisConfig {
    /// `redis://…` or `redis+fred://…`, see the crate docs.
    pub url: String,
    /// The namespace every store is confined to.
    pub namespace: Namespace,
    /// The client library; [`RedisConfig::new`] picks it from the URL scheme.
    pub client: ClientKind,
    /// Connect to a Redis Cluster (also set by `?cluster=true`).
    pub cluster: bool,
    /// Connections in fred's pool (redis-rs multiplexes one connection).
    pub pool_size: usize,
    /// How long one connection attempt may take.
    pub connect_timeout: Duration,
    /// How long one command or script may take before `Timeout`.
    pub response_timeout: Duration,
    /// Most stream entries one `query` call examines, and most `count_by`
    /// examines in total, when the filter is not index-backed (see
    /// [`RedisEventStore`]).
    pub scan_limit: usize,
    /// How long day/week/month leaderboards are kept after the later of their
    /// period's end and their last change (`None`: forever). The log stays;
    /// `rebuild` restores an expired board.
    pub board_retention: Option<Duration>,
    /// How long one `XREAD BLOCK` of a live tail waits.
    pub tail_block: Duration,
    /// Log entries one step of `rebuild` reads (each step is one script, so
    /// this bounds how long a rebuild blocks the server at a time); clamped
    /// to 1..=[`MAX_REBUILD_CHUNK`].
    pub rebuild_chunk: usize,
    /// Connect with TLS even when the URL says `redis://` (as `rediss://`).
    pub tls: bool,
    /// What the stores accept (depth and size limits), checked before any I/O.
    pub policy: InputPolicy,
}

impl RedisConfig {
    /// Defaults for `url` in `namespace`: client from the scheme, 4 pooled
    /// connections, 5 s connect, 10 s response, 100 000-entry scans, boards
    /// kept 400 days, 1 s tail blocks, rebuilds in steps of 1 000 log entries.
    pub fn new(url: impl Into<String>, namespace: Namespace) -> Self {
        let url = url.into();
        let client = if url.trim_start().to_ascii_lowercase().contains("+fred") {
            ClientKind::Fred
        } else {
            ClientKind::RedisRs
        };
        RedisConfig {
            url,
            namespace,
            client,
            cluster: false,
            pool_size: 4,
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(10),
            scan_limit: 100_000,
            board_retention: Some(Duration::from_secs(400 * 24 * 3600)),
            tail_block: Duration::from_secs(1),
            rebuild_chunk: 1_000,
            tls: false,
            policy: InputPolicy::default(),
        }
    }

    fn settings(&self) -> Result<Settings> {
        let config_err = |msg: &'static str| Error::new(ErrorKind::Config, msg).with_op("connect");
        let parsed = url::Url::parse(self.url.trim()).map_err(|_| config_err("malformed redis URL"))?;
        let scheme = parsed.scheme().to_ascii_lowercase();
        let tls = match scheme.as_str() {
            "redis" | "redis+fred" | "redis+cluster" | "redis+fred+cluster" => self.tls,
            "rediss" | "rediss+fred" | "rediss+cluster" | "rediss+fred+cluster" => true,
            _ => {
                return Err(config_err(
                    "a redis URL must start with redis://, rediss://, redis+fred:// or rediss+fred://",
                ))
            }
        };
        let mut cluster = self.cluster || scheme.ends_with("+cluster");
        let mut nodes = Vec::new();
        let mut kept = Vec::new();
        let mut root_ca = None;
        for (k, v) in parsed.query_pairs() {
            match k.as_ref() {
                "cluster" => cluster |= matches!(v.as_ref(), "true" | "1" | "yes"),
                "node" => nodes.push(v.into_owned()),
                "tls_ca" if tls => {
                    let pem = std::fs::read(v.as_ref()).map_err(|_| config_err("cannot read the tls_ca file"))?;
                    root_ca = Some(pem);
                }
                "tls_ca" => return Err(config_err("tls_ca needs a rediss:// URL")),
                _ => kept.push((k.into_owned(), v.into_owned())),
            }
        }
        let mut base = parsed.clone();
        base.set_query(None);
        if !kept.is_empty() {
            base.query_pairs_mut().extend_pairs(kept);
        }
        let rebuilt = format!("{}{}", if tls { "rediss" } else { "redis" }, &base.as_str()[base.scheme().len()..]);
        let mut urls = vec![rebuilt.clone()];
        for node in nodes {
            let mut u = url::Url::parse(&rebuilt).map_err(|_| config_err("malformed redis URL"))?;
            let (host, port) = node.rsplit_once(':').ok_or_else(|| config_err("node must be host:port"))?;
            let port: u16 = port.parse().map_err(|_| config_err("node must be host:port"))?;
            u.set_host(Some(host)).map_err(|_| config_err("node must be host:port"))?;
            u.set_port(Some(port)).map_err(|_| config_err("node must be host:port"))?;
            urls.push(u.to_string());
        }
        Ok(Settings {
            urls,
            cluster,
            pool_size: self.pool_size,
            connect_timeout: self.connect_timeout,
            response_timeout: self.response_timeout,
            tls,
            root_ca,
        })
    }
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &"<redacted>")
            .field("namespace", &self.namespace)
            .field("client", &self.client)
            .field("cluster", &self.cluster)
            .field("pool_size", &self.pool_size)
            .finish_non_exhaustive()
    }
}

/// The largest [`RedisConfig::rebuild_chunk`] (Lua and `ZRANGE` need exact integers).
pub const MAX_REBUILD_CHUNK: usize = 1_000_000;

/// What a client needs to connect (URLs hold credentials: never logged).
#[derive(Clone)]
pub(crate) struct Settings {
    pub(crate) urls: Vec<String>,
    pub(crate) cluster: bool,
    #[cfg_attr(not(feature = "fred"), allow(dead_code))]
    pub(crate) pool_size: usize,
    pub(crate) connect_timeout: Duration,
    pub(crate) response_timeout: Duration,
    /// `rediss://`: connect with TLS (rustls, ring provider).
    pub(crate) tls: bool,
    /// PEM roots to trust instead of the system's (`?tls_ca=<file>`).
    pub(crate) root_ca: Option<Vec<u8>>,
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

    /// The raw client, for benchmarks and admin.
    pub fn client(&self) -> &Arc<dyn Client> {
        &self.client
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

    #[test]
    fn client_follows_the_scheme_and_cluster_flag_is_read() {
        let c = RedisConfig::new("redis+fred://127.0.0.1:7000/?cluster=true&node=127.0.0.1:7001", ns("t"));
        assert_eq!(c.client, ClientKind::Fred);
        let s = c.settings().unwrap();
        assert!(s.cluster);
        assert_eq!(s.urls, vec!["redis://127.0.0.1:7000/", "redis://127.0.0.1:7001/"]);
        assert_eq!(RedisConfig::new("redis://h:1", ns("t")).client, ClientKind::RedisRs);
    }

    #[test]
    fn foreign_schemes_and_unreadable_tls_roots_are_config_errors() {
        for url in ["postgres://h", "not a url", "rediss://h:1?tls_ca=/nonexistent/ca.pem", "redis://h:1?tls_ca=/x"] {
            let e = RedisConfig::new(url, ns("t")).settings().err().map(|e| e.kind());
            assert_eq!(e, Some(ErrorKind::Config), "{url}");
        }
    }

    #[test]
    fn rediss_urls_and_the_tls_flag_select_tls() {
        let s = RedisConfig::new("rediss+fred://h:1/?x=1", ns("t")).settings().unwrap();
        assert!(s.tls);
        assert_eq!(s.urls, vec!["rediss://h:1/?x=1"]);
        let mut c = RedisConfig::new("redis://h:1", ns("t"));
        assert!(!c.settings().unwrap().tls);
        c.tls = true;
        let s = c.settings().unwrap();
        assert!(s.tls);
        assert_eq!(s.urls, vec!["rediss://h:1"]);
    }

    #[test]
    fn debug_never_shows_the_url() {
        let c = RedisConfig::new("redis://user:s3cret@h:1", ns("t"));
        assert!(!format!("{c:?}").contains("s3cret"));
    }
}
