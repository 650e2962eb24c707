//! The raw side of each measure: the driver a backend is built on, doing the
//! same work by hand, connected from the same configured URL. Each driver is
//! compiled with the backend feature that needs it; a measure without a raw
//! equivalent prints its ratio as `—`.

use std::sync::Arc;

use palisade::registry::resolve;
use palisade::{Config, StoreKind};
use palisade_core::{Namespace, Result};

use super::runner::Op;
use super::workload::{Plan, Workload};

#[cfg(feature = "fred")]
mod fred;
mod moka;
#[cfg(feature = "mongo")]
mod mongo;
#[cfg(any(feature = "pg-sqlx", feature = "pg-diesel"))]
mod postgres;
#[cfg(feature = "redis-rs")]
mod redis_rs;

/// A raw driver connection.
pub enum Raw {
    /// A bare moka cache (memory sessions).
    Moka(moka::RawMoka),
    /// sqlx on the scratch schema (both Postgres backends).
    #[cfg(any(feature = "pg-sqlx", feature = "pg-diesel"))]
    Postgres(postgres::RawPostgres),
    /// redis-rs.
    #[cfg(feature = "redis-rs")]
    RedisRs(redis_rs::RawRedisRs),
    /// fred.
    #[cfg(feature = "fred")]
    Fred(fred::RawFred),
    /// The official MongoDB driver on a scratch database.
    #[cfg(feature = "mongo")]
    Mongo(mongo::RawMongo),
}

impl Raw {
    /// The driver's name for the report.
    pub fn driver(&self) -> &'static str {
        match self {
            Raw::Moka(_) => "moka",
            #[cfg(any(feature = "pg-sqlx", feature = "pg-diesel"))]
            Raw::Postgres(_) => "sqlx",
            #[cfg(feature = "redis-rs")]
            Raw::RedisRs(_) => "redis-rs",
            #[cfg(feature = "fred")]
            Raw::Fred(_) => "fred",
            #[cfg(feature = "mongo")]
            Raw::Mongo(_) => "mongodb",
        }
    }

    /// Workload `w` through this driver, if it has an equivalent.
    pub fn op(&self, w: Workload, plan: &Plan) -> Option<Op> {
        let _ = plan;
        match self {
            Raw::Moka(m) => m.op(w),
            #[cfg(any(feature = "pg-sqlx", feature = "pg-diesel"))]
            Raw::Postgres(p) => p.op(w, plan),
            #[cfg(feature = "redis-rs")]
            Raw::RedisRs(r) => r.op(w),
            #[cfg(feature = "fred")]
            Raw::Fred(f) => f.op(w),
            #[cfg(feature = "mongo")]
            Raw::Mongo(m) => m.op(w, plan),
        }
    }

    async fn close(&self) {
        match self {
            #[cfg(any(feature = "pg-sqlx", feature = "pg-diesel"))]
            Raw::Postgres(p) => p.close().await,
            #[cfg(feature = "fred")]
            Raw::Fred(f) => f.close().await,
            #[cfg(feature = "mongo")]
            Raw::Mongo(m) => m.close().await,
            _ => {}
        }
    }
}

/// The raw side of each store, one connection per server URL.
pub struct RawSides {
    by_store: Vec<(StoreKind, Option<Arc<Raw>>)>,
    /// Each connection once, for closing.
    connections: Vec<Arc<Raw>>,
}

impl RawSides {
    /// Connects the raw driver of every store's backend. Raw Redis keys live
    /// under `ns`'s key prefixes (dropping `ns` removes them); raw Postgres
    /// tables in schema `scratch`, which the backend's own migrations create
    /// here so they have the same indexes (dropping `scratch` removes them).
    pub async fn connect(config: &Config, ns: &Namespace, scratch: &Namespace) -> Result<Self> {
        let mut by_url: Vec<(&str, Arc<Raw>)> = Vec::new();
        let mut by_store = Vec::new();
        for kind in StoreKind::ALL {
            let url = &config.store(kind).url;
            let (info, connector) = resolve(url, kind)?;
            let shared = by_url.iter().find(|(u, _)| *u == url.expose()).map(|(_, r)| Arc::clone(r));
            let raw = match shared {
                Some(raw) => Some(raw),
                None => {
                    let raw = connect_one(config, info.id, url.expose(), ns, scratch, kind, connector).await?;
                    let raw = raw.map(Arc::new);
                    if let Some(r) = &raw {
                        by_url.push((url.expose(), Arc::clone(r)));
                    }
                    raw
                }
            };
            by_store.push((kind, raw));
        }
        Ok(RawSides { by_store, connections: by_url.into_iter().map(|(_, r)| r).collect() })
    }

    /// The raw side of `kind`'s backend, if it has one.
    pub fn of(&self, kind: StoreKind) -> Option<&Raw> {
        self.by_store.iter().find(|(k, _)| *k == kind).and_then(|(_, r)| r.as_deref())
    }

    /// Closes every connection.
    pub async fn close(&self) {
        for raw in &self.connections {
            raw.close().await;
        }
    }
}

#[allow(unused_variables)]
async fn connect_one(
    config: &Config,
    backend: &str,
    url: &str,
    ns: &Namespace,
    scratch: &Namespace,
    kind: StoreKind,
    connector: &'static dyn palisade::registry::Connector,
) -> Result<Option<Raw>> {
    Ok(match backend {
        "memory" => Some(Raw::Moka(moka::RawMoka::new(config.memory_session_capacity))),
        #[cfg(any(feature = "pg-sqlx", feature = "pg-diesel"))]
        "pg_sqlx" | "pg_diesel" => {
            // The backend migrates the scratch schema: same tables, same indexes.
            let options = config.connect_options(backend, scratch, config.store(kind).limits);
            drop(connector.connect(url, &options).await?);
            Some(Raw::Postgres(postgres::RawPostgres::connect(config, url, scratch).await?))
        }
        #[cfg(feature = "redis-rs")]
        "redis_rs" => Some(Raw::RedisRs(redis_rs::RawRedisRs::connect(config, url, ns).await?)),
        #[cfg(feature = "fred")]
        "fred" => Some(Raw::Fred(fred::RawFred::connect(config, url, ns).await?)),
        #[cfg(feature = "mongo")]
        "mongo" => {
            // The backend sets up the scratch database: same collections, same indexes.
            let options = config.connect_options(backend, scratch, config.store(kind).limits);
            drop(connector.connect(url, &options).await?);
            Some(Raw::Mongo(mongo::RawMongo::connect(config, url, scratch).await?))
        }
        _ => None,
    })
}

/// The error of a raw driver call: the driver's message (bench data only, no
/// credentials: URLs are never part of these messages) and its source.
#[cfg(any(feature = "pg-sqlx", feature = "pg-diesel", feature = "redis-rs", feature = "fred", feature = "mongo"))]
pub(crate) fn raw_error(
    driver: &'static str,
    what: &'static str,
    e: impl std::error::Error + Send + Sync + 'static,
) -> palisade_core::Error {
    palisade_core::Error::new(palisade_core::ErrorKind::Unexpected, format!("raw {driver} {what} failed: {e}"))
        .with_op("bench")
        .with_source(e)
}

/// The fixed-window rate limit a developer writes for Redis: count, and
/// start the window on the first hit.
#[cfg(any(feature = "redis-rs", feature = "fred"))]
pub(crate) const HIT_LUA: &str = "local n = redis.call('INCR', KEYS[1]) \
     if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end return n";

/// `url` with `redis://` raised to `rediss://` when `tls` is on (the
/// backends' rule).
#[cfg(any(feature = "redis-rs", feature = "fred"))]
pub(crate) fn redis_url(url: &str, tls: bool) -> String {
    match url.strip_prefix("redis://") {
        Some(rest) if tls => format!("rediss://{rest}"),
        _ => url.to_owned(),
    }
}

/// Raw Redis keys: inside the namespace's session and reputation key
/// prefixes (`{<ns>:s}:`, `{<ns>:r}:`, palisade-redis's layout), under
/// `raw:`, so Palisade's keys are never touched and dropping the namespace
/// removes these too.
#[cfg(any(feature = "redis-rs", feature = "fred"))]
pub(crate) struct Keys {
    sessions: String,
    /// The raw leaderboard's sorted set.
    pub board: String,
}

#[cfg(any(feature = "redis-rs", feature = "fred"))]
impl Keys {
    fn new(ns: &Namespace) -> Self {
        Keys { sessions: format!("{{{ns}:s}}:raw:"), board: format!("{{{ns}:r}}:raw:board") }
    }

    /// The raw key of session key `kind:seq`.
    pub fn session(&self, kind: char, seq: usize) -> String {
        format!("{}{}", self.sessions, super::workload::session_key(kind, seq))
    }
}
