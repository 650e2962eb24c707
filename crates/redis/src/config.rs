//! palisade-redis's settings: [`RedisConfig`], built with its `with_*`
//! methods or from the facade's [`ConnectOptions`] (`[backends.redis_rs]` or
//! `[backends.fred]`), and the URL parsing that turns it into what a client
//! connects with.

use std::fmt;
use std::time::Duration;

use palisade_core::backend::ConnectOptions;
use palisade_core::{Error, ErrorKind, InputPolicy, Namespace, Result};
use serde::Deserialize;

use crate::ClientKind;

/// Connection settings. `Debug` never shows the URL.
#[derive(Clone)]
#[non_exhaustive]
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
    /// [`RedisEventStore`](crate::RedisEventStore)).
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

    pub(crate) fn settings(&self) -> Result<Settings> {
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

impl RedisConfig {
    /// With client `client` (instead of the one the scheme names).
    pub fn with_client(mut self, client: ClientKind) -> Self {
        self.client = client;
        self
    }

    /// Connecting to a Redis Cluster, or not.
    pub fn with_cluster(mut self, cluster: bool) -> Self {
        self.cluster = cluster;
        self
    }

    /// With `n` pooled connections (fred).
    pub fn with_pool_size(mut self, n: usize) -> Self {
        self.pool_size = n;
        self
    }

    /// With connect timeout `d`.
    pub fn with_connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    /// With response timeout `d`.
    pub fn with_response_timeout(mut self, d: Duration) -> Self {
        self.response_timeout = d;
        self
    }

    /// With scans of at most `n` entries (see [`RedisConfig::scan_limit`]).
    pub fn with_scan_limit(mut self, n: usize) -> Self {
        self.scan_limit = n;
        self
    }

    /// With rebuild steps of `n` log entries (see [`RedisConfig::rebuild_chunk`]).
    pub fn with_rebuild_chunk(mut self, n: usize) -> Self {
        self.rebuild_chunk = n;
        self
    }

    /// With periodic boards kept for `d` (`None`: forever).
    pub fn with_board_retention(mut self, d: Option<Duration>) -> Self {
        self.board_retention = d;
        self
    }

    /// With live-tail `XREAD BLOCK`s of `d`.
    pub fn with_tail_block(mut self, d: Duration) -> Self {
        self.tail_block = d;
        self
    }

    /// With TLS forced on or off (see [`RedisConfig::tls`]).
    pub fn with_tls(mut self, tls: bool) -> Self {
        self.tls = tls;
        self
    }

    /// With input policy `policy`.
    pub fn with_policy(mut self, policy: InputPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// From the facade's options: pool size, connect timeout, the operation
    /// timeout as response timeout, TLS and policy, then the tuning keys
    /// `cluster` (bool), `scan_limit` and `rebuild_chunk` (at least 1),
    /// `board_retention_days` (0: forever) and `tail_block_ms`; any other
    /// key is a `Config` error. The URL is parsed before any I/O.
    pub fn from_options(url: &str, options: &ConnectOptions) -> Result<Self> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Tuning {
            cluster: Option<bool>,
            scan_limit: Option<usize>,
            rebuild_chunk: Option<usize>,
            board_retention_days: Option<u64>,
            tail_block_ms: Option<u64>,
        }
        let mut config = RedisConfig::new(url, options.namespace.clone());
        let backend = config.client.backend();
        let t: Tuning = options.tuning(backend)?;
        if t.scan_limit == Some(0) || t.rebuild_chunk == Some(0) || t.tail_block_ms == Some(0) {
            return Err(Error::new(ErrorKind::Config, format!("[backends.{backend}]: values must be at least 1"))
                .with_backend(backend));
        }
        config = config
            .with_pool_size(options.pool_size as usize)
            .with_connect_timeout(options.connect_timeout)
            .with_response_timeout(options.op_timeout)
            .with_tls(options.tls)
            .with_policy(options.policy);
        config.cluster |= t.cluster.unwrap_or(false);
        config.scan_limit = t.scan_limit.unwrap_or(config.scan_limit);
        config.rebuild_chunk = t.rebuild_chunk.unwrap_or(config.rebuild_chunk);
        config.tail_block = t.tail_block_ms.map_or(config.tail_block, Duration::from_millis);
        if let Some(days) = t.board_retention_days {
            config.board_retention = (days > 0).then(|| Duration::from_secs(days.saturating_mul(24 * 3600)));
        }
        config.settings().map_err(|e| e.with_backend(backend))?;
        Ok(config)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(s: &str) -> Namespace {
        Namespace::new(s).unwrap()
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

    #[test]
    fn options_and_tuning_reach_the_config() {
        let tuning =
            serde_json::json!({"scan_limit": 10, "rebuild_chunk": 7, "board_retention_days": 0, "cluster": true});
        let options = ConnectOptions::new(ns("t"))
            .with_pool_size(3)
            .with_op_timeout(Duration::from_millis(900))
            .with_tuning(tuning.as_object().cloned().unwrap_or_default());
        let c = RedisConfig::from_options("redis+fred://h:1", &options).unwrap();
        assert_eq!((c.client, c.pool_size, c.response_timeout), (ClientKind::Fred, 3, Duration::from_millis(900)));
        assert_eq!((c.scan_limit, c.rebuild_chunk, c.board_retention, c.cluster), (10, 7, None, true));
        for bad in [serde_json::json!({"scanlimit": 1}), serde_json::json!({"scan_limit": 0})] {
            let options = options.clone().with_tuning(bad.as_object().cloned().unwrap_or_default());
            let err = RedisConfig::from_options("redis://h:1", &options).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Config, "{err}");
            assert!(err.to_string().contains("[backends.redis_rs]"), "{err}");
        }
        assert_eq!(RedisConfig::from_options("postgres://h", &options).unwrap_err().kind(), ErrorKind::Config);
    }
}
