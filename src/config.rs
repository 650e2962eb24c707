//! Configuration: one URL per store, from the environment or a TOML file.
//!
//! | setting | environment | TOML | default |
//! |---|---|---|---|
//! | events URL | `PALISADE_EVENTS_URL` | `[events] url` | `memory://` |
//! | sessions URL | `PALISADE_SESSIONS_URL` | `[sessions] url` | `memory://` |
//! | documents URL | `PALISADE_DOCUMENTS_URL` | `[documents] url` | `memory://` |
//! | reputation URL | `PALISADE_REPUTATION_URL` | `[reputation] url` | `memory://` |
//! | fallback while a server is down | `PALISADE_<STORE>_FALLBACK` or `PALISADE_FALLBACK` (`memory`/`none`) | `[<store>] fallback` | none |
//! | namespace | `PALISADE_NAMESPACE` | `namespace` | `palisade` |
//! | pool size | `PALISADE_POOL_SIZE` | `pool_size` | 10 |
//! | connect timeout (ms) | `PALISADE_CONNECT_TIMEOUT_MS` | `connect_timeout_ms` | 5000 |
//! | operation timeout (ms) | `PALISADE_OP_TIMEOUT_MS` | `op_timeout_ms` | 10000 |
//! | TLS | `PALISADE_TLS` (`true`/`false`) | `tls` | false |
//! | apply the schema on connect (off: check it, read-only, for data-only roles) | `PALISADE_MIGRATE` (`true`/`false`) | `migrate` | true |
//! | memory session capacity (keys; LRU beyond) | `PALISADE_MEMORY_SESSION_CAPACITY` | `memory_session_capacity` | 1,000,000 |
//! | input limits, all stores | — | `[limits]` | see `palisade_core::policy` |
//! | input limits, one store | — | `[<store>.limits]` | `[limits]` |
//! | degraded mode, all stores | — | `[degrade]` | see `DegradeConfig` |
//! | degraded mode, one store | — | `[<store>.degrade]` | `[degrade]` |
//! | a backend's own settings | — | `[backends.<id>]` | the backend's defaults |
//!
//! Limits keys: `max_depth`, `max_session_value_bytes`, `max_event_data_bytes`,
//! `max_document_bytes`, `max_reason_bytes`.
//!
//! Degrade keys (used by stores with `fallback = "memory"`): `buffer_capacity`
//! (writes kept for replay, at least 1), `probe_initial_ms` and `probe_max_ms`
//! (jittered backoff between probes of a down primary; 100 ms and 1 s by
//! default), `replay_timeout_ms` (per replayed write and probe ping),
//! `replay_batch` (writes replayed per round while new writes go on) and
//! `replay_lock_budget_ms` (how long the final replay step may plan to hold
//! new writes back), `replay_sessions` (replay session writes too; off by
//! default, sessions being ephemeral), `replay_grouped` (replay consecutive
//! buffered appends as one batch; on by default).
//!
//! Backend tables (`[backends.memory]`, `[backends.pg_sqlx]`,
//! `[backends.redis_rs]`, `[backends.fred]`) are handed to the backend, which
//! parses them and refuses keys it does not know: e.g. Redis `scan_limit`,
//! `rebuild_chunk`, `board_retention_days`, `tail_block_ms`, `cluster`;
//! memory `session_capacity`, `live_buffer`, `sweep_interval_ms` (see each
//! backend's `from_options`). `memory_session_capacity` is the memory
//! backend's `session_capacity` unless its table sets one.
//!
//! Precedence: defaults, then the TOML file (`--config FILE` or
//! `PALISADE_CONFIG`), then environment variables. URLs are kept as
//! [`StoreUrl`], whose `Debug` and `Display` never show a password.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use palisade_core::backend::ConnectOptions;
use palisade_core::{DegradeConfig, Error, ErrorKind, InputPolicy, Namespace, Result};
use serde::Deserialize;

/// A store URL. Its password never appears in `Debug`, `Display` or errors.
#[derive(Clone, PartialEq, Eq)]
pub struct StoreUrl(url::Url);

impl StoreUrl {
    /// Parses `raw`; a malformed URL is `Config` naming what is wrong, without
    /// echoing the URL (it may hold a password).
    pub fn parse(raw: &str) -> Result<Self> {
        url::Url::parse(raw.trim())
            .map(StoreUrl)
            .map_err(|e| Error::new(ErrorKind::Config, format!("malformed store URL: {e}")).with_op("config"))
    }

    /// The scheme, e.g. `postgres` or `redis+fred`.
    pub fn scheme(&self) -> &str {
        self.0.scheme()
    }

    /// The full URL, password included, for handing to a driver. Never log it.
    pub fn expose(&self) -> &str {
        self.0.as_str()
    }

    /// The URL with any password — in the user info or in a query parameter
    /// such as `?password=` — replaced by `***`.
    pub fn redacted(&self) -> String {
        let mut u = self.0.clone();
        if u.password().is_some() {
            let _ = u.set_password(Some("***"));
        }
        let secret = |k: &str| {
            let k = k.to_ascii_lowercase();
            ["password", "pass", "pwd", "secret", "token", "sslpassword"]
                .iter()
                .any(|s| k == *s || k.ends_with(&format!("_{s}")))
        };
        if u.query_pairs().any(|(k, _)| secret(&k)) {
            let pairs: Vec<(String, String)> = u
                .query_pairs()
                .map(|(k, v)| {
                    let v = if secret(&k) { "***".to_owned() } else { v.into_owned() };
                    (k.into_owned(), v)
                })
                .collect();
            u.query_pairs_mut().clear().extend_pairs(pairs);
        }
        u.to_string()
    }
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreUrl({})", self.redacted())
    }
}

/// What to serve from while a store's server is down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fallback {
    /// Fail calls with `Unavailable`.
    #[default]
    None,
    /// Serve from memory and replay writes on recovery (`Degradable`).
    Memory,
}

impl std::str::FromStr for Fallback {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "none" | "" => Ok(Fallback::None),
            "memory" => Ok(Fallback::Memory),
            _ => Err(Error::new(ErrorKind::Config, "fallback must be `memory` or `none`")),
        }
    }
}

/// One store's settings.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Where the store lives.
    pub url: StoreUrl,
    /// Degraded-mode fallback.
    pub fallback: Fallback,
    /// What the store accepts (applies to its fallback too).
    pub limits: InputPolicy,
    /// Degraded-mode tuning, used when `fallback` is memory.
    pub degrade: DegradeConfig,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: StoreUrl(url::Url::parse("memory://").expect("static URL parses")),
            fallback: Fallback::None,
            limits: InputPolicy::default(),
            degrade: DegradeConfig::default(),
        }
    }
}

/// Which of the four stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    /// `EventStore`.
    Events,
    /// `SessionCache`.
    Sessions,
    /// `DocumentStore`.
    Documents,
    /// `ReputationRepo`.
    Reputation,
}

impl StoreKind {
    /// All four, in display order.
    pub const ALL: [StoreKind; 4] =
        [StoreKind::Events, StoreKind::Sessions, StoreKind::Documents, StoreKind::Reputation];

    /// `events`, `sessions`, `documents`, `reputation`.
    pub fn as_str(self) -> &'static str {
        match self {
            StoreKind::Events => "events",
            StoreKind::Sessions => "sessions",
            StoreKind::Documents => "documents",
            StoreKind::Reputation => "reputation",
        }
    }

    fn env_prefix(self) -> &'static str {
        match self {
            StoreKind::Events => "PALISADE_EVENTS",
            StoreKind::Sessions => "PALISADE_SESSIONS",
            StoreKind::Documents => "PALISADE_DOCUMENTS",
            StoreKind::Reputation => "PALISADE_REPUTATION",
        }
    }
}

impl fmt::Display for StoreKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything `Stores::connect` needs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Events store.
    pub events: StoreConfig,
    /// Session cache.
    pub sessions: StoreConfig,
    /// Document store.
    pub documents: StoreConfig,
    /// Reputation repo.
    pub reputation: StoreConfig,
    /// Namespace every store is confined to.
    pub namespace: Namespace,
    /// Connections per pool.
    pub pool_size: u32,
    /// How long to wait for a connection.
    pub connect_timeout: Duration,
    /// How long one operation may take.
    pub op_timeout: Duration,
    /// Use verified TLS to servers where the URL does not already say how:
    /// `redis://` is treated as `rediss://`, and Postgres connections whose
    /// `sslmode` is the default `prefer` (or `allow`) use `verify-full`.
    pub tls: bool,
    /// Apply the namespace's schema when connecting (Postgres migrations,
    /// Mongo indexes). Off (production, data-only roles): connecting checks
    /// the schema with read-only queries and refuses with a `Config` error
    /// naming what is missing; `palisade migrate`, run as the schema owner,
    /// is then the explicit step that changes it.
    pub migrate: bool,
    /// Most session keys a memory session cache (primary or fallback) keeps;
    /// beyond it the least recently used are evicted and counted in health.
    pub memory_session_capacity: u64,
    /// Each backend's own settings, by backend id (`[backends.<id>]`).
    pub backends: BTreeMap<String, serde_json::Map<String, serde_json::Value>>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            events: StoreConfig::default(),
            sessions: StoreConfig::default(),
            documents: StoreConfig::default(),
            reputation: StoreConfig::default(),
            namespace: Namespace::default(),
            pool_size: 10,
            connect_timeout: Duration::from_millis(5000),
            op_timeout: Duration::from_millis(10_000),
            tls: false,
            migrate: true,
            memory_session_capacity: 1_000_000,
            backends: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileStore {
    url: Option<String>,
    fallback: Option<Fallback>,
    limits: Option<FileLimits>,
    degrade: Option<FileDegrade>,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDegrade {
    buffer_capacity: Option<usize>,
    probe_initial_ms: Option<u64>,
    probe_max_ms: Option<u64>,
    replay_timeout_ms: Option<u64>,
    replay_batch: Option<usize>,
    replay_lock_budget_ms: Option<u64>,
    replay_sessions: Option<bool>,
    replay_grouped: Option<bool>,
}

impl FileDegrade {
    /// `d` with these settings; durations and the buffer must be at least 1
    /// and the first probe delay at most the longest.
    fn apply(self, mut d: DegradeConfig) -> Result<DegradeConfig> {
        let ms = [self.probe_initial_ms, self.probe_max_ms, self.replay_timeout_ms, self.replay_lock_budget_ms];
        if self.buffer_capacity == Some(0) || self.replay_batch == Some(0) || ms.contains(&Some(0)) {
            return Err(config_error("degrade: buffer_capacity, replay_batch and durations must be at least 1"));
        }
        d.buffer_capacity = self.buffer_capacity.unwrap_or(d.buffer_capacity);
        d.probe_initial = self.probe_initial_ms.map_or(d.probe_initial, Duration::from_millis);
        d.probe_max = self.probe_max_ms.map_or(d.probe_max, Duration::from_millis);
        d.replay_timeout = self.replay_timeout_ms.map_or(d.replay_timeout, Duration::from_millis);
        d.replay_batch = self.replay_batch.unwrap_or(d.replay_batch);
        d.replay_lock_budget = self.replay_lock_budget_ms.map_or(d.replay_lock_budget, Duration::from_millis);
        d.replay_sessions = self.replay_sessions.unwrap_or(d.replay_sessions);
        d.replay_grouped = self.replay_grouped.unwrap_or(d.replay_grouped);
        if d.probe_initial > d.probe_max {
            return Err(config_error("degrade: probe_initial_ms must not exceed probe_max_ms"));
        }
        Ok(d)
    }
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLimits {
    max_depth: Option<usize>,
    max_session_value_bytes: Option<usize>,
    max_event_data_bytes: Option<usize>,
    max_document_bytes: Option<usize>,
    max_reason_bytes: Option<usize>,
}

impl FileLimits {
    /// `p` with these limits; `max_depth` must be 1..=1024 (the ceiling every
    /// read can decode) and sizes at least 1.
    fn apply(self, p: InputPolicy) -> Result<InputPolicy> {
        let max = palisade_core::policy::MAX_STORED_DEPTH;
        if self.max_depth.is_some_and(|n| n == 0 || n > max) {
            return Err(config_error(format!("limits: max_depth must be 1..={max}")));
        }
        let sizes = [self.max_session_value_bytes, self.max_event_data_bytes, self.max_document_bytes];
        if sizes.iter().chain([&self.max_reason_bytes]).any(|n| *n == Some(0)) {
            return Err(config_error("limits: sizes must be at least 1 byte"));
        }
        let p = self.max_depth.map_or(p, |n| p.with_max_depth(n));
        let p = self.max_session_value_bytes.map_or(p, |n| p.with_max_session_value_bytes(n));
        let p = self.max_event_data_bytes.map_or(p, |n| p.with_max_event_data_bytes(n));
        let p = self.max_document_bytes.map_or(p, |n| p.with_max_document_bytes(n));
        Ok(self.max_reason_bytes.map_or(p, |n| p.with_max_reason_bytes(n)))
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    namespace: Option<String>,
    pool_size: Option<u32>,
    connect_timeout_ms: Option<u64>,
    op_timeout_ms: Option<u64>,
    tls: Option<bool>,
    migrate: Option<bool>,
    memory_session_capacity: Option<u64>,
    limits: Option<FileLimits>,
    degrade: Option<FileDegrade>,
    backends: Option<BTreeMap<String, toml::Table>>,
    events: Option<FileStore>,
    sessions: Option<FileStore>,
    documents: Option<FileStore>,
    reputation: Option<FileStore>,
}

fn config_error(msg: impl Into<std::borrow::Cow<'static, str>>) -> Error {
    Error::new(ErrorKind::Config, msg).with_op("config")
}

impl Config {
    /// Defaults, then `file` (if given, else `PALISADE_CONFIG` if set), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Self> {
        let env_file = std::env::var_os("PALISADE_CONFIG");
        let path = file.map(Path::to_path_buf).or_else(|| env_file.map(Into::into));
        let mut config = Config::default();
        if let Some(path) = path {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| config_error(format!("cannot read config file {}", path.display())).with_source(e))?;
            config.apply_toml(&text)?;
        }
        config.apply_env(|k| std::env::var(k).ok())?;
        Ok(config)
    }

    /// Applies a TOML document on top of this config.
    pub fn apply_toml(&mut self, text: &str) -> Result<()> {
        let file: File = toml::from_str(text).map_err(|e| config_error(format!("bad config file: {}", e.message())))?;
        if let Some(ns) = file.namespace {
            self.namespace = Namespace::new(ns).map_err(|e| config_error(e.message().to_owned()))?;
        }
        if let Some(n) = file.pool_size {
            self.pool_size = check_pool(n)?;
        }
        if let Some(ms) = file.connect_timeout_ms {
            self.connect_timeout = Duration::from_millis(ms);
        }
        if let Some(ms) = file.op_timeout_ms {
            self.op_timeout = Duration::from_millis(ms);
        }
        if let Some(tls) = file.tls {
            self.tls = tls;
        }
        if let Some(migrate) = file.migrate {
            self.migrate = migrate;
        }
        if let Some(n) = file.memory_session_capacity {
            self.memory_session_capacity = check_capacity(n)?;
        }
        if let Some(limits) = file.limits {
            for kind in StoreKind::ALL {
                let target = self.store_mut(kind);
                target.limits = limits.apply(target.limits)?;
            }
        }
        for (id, table) in file.backends.unwrap_or_default() {
            if !crate::registry::BACKENDS.iter().any(|b| b.id == id) {
                let known: Vec<&str> = crate::registry::BACKENDS.iter().map(|b| b.id).collect();
                return Err(config_error(format!("[backends.{id}]: unknown backend; known: {}", known.join(", "))));
            }
            let value =
                serde_json::to_value(&table).map_err(|e| config_error(format!("[backends.{id}]: unreadable: {e}")))?;
            if let serde_json::Value::Object(map) = value {
                self.backends.entry(id).or_default().extend(map);
            }
        }
        if let Some(degrade) = file.degrade {
            for kind in StoreKind::ALL {
                let target = self.store_mut(kind);
                target.degrade = degrade.apply(target.degrade.clone())?;
            }
        }
        for (kind, store) in [
            (StoreKind::Events, file.events),
            (StoreKind::Sessions, file.sessions),
            (StoreKind::Documents, file.documents),
            (StoreKind::Reputation, file.reputation),
        ] {
            let Some(store) = store else { continue };
            let target = self.store_mut(kind);
            if let Some(url) = store.url {
                target.url =
                    StoreUrl::parse(&url).map_err(|e| config_error(format!("[{kind}] url: {}", e.message())))?;
            }
            if let Some(fb) = store.fallback {
                target.fallback = fb;
            }
            if let Some(limits) = store.limits {
                target.limits = limits.apply(target.limits)?;
            }
            if let Some(degrade) = store.degrade {
                target.degrade = degrade.apply(target.degrade.clone())?;
            }
        }
        Ok(())
    }

    /// Applies environment variables read through `get`.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<()> {
        if let Some(ns) = get("PALISADE_NAMESPACE") {
            self.namespace = Namespace::new(ns).map_err(|e| config_error(e.message().to_owned()))?;
        }
        if let Some(n) = get("PALISADE_POOL_SIZE") {
            self.pool_size = check_pool(n.parse().map_err(|_| config_error("PALISADE_POOL_SIZE must be a number"))?)?;
        }
        if let Some(ms) = get("PALISADE_CONNECT_TIMEOUT_MS") {
            self.connect_timeout = Duration::from_millis(
                ms.parse().map_err(|_| config_error("PALISADE_CONNECT_TIMEOUT_MS must be a number"))?,
            );
        }
        if let Some(ms) = get("PALISADE_OP_TIMEOUT_MS") {
            self.op_timeout =
                Duration::from_millis(ms.parse().map_err(|_| config_error("PALISADE_OP_TIMEOUT_MS must be a number"))?);
        }
        if let Some(tls) = get("PALISADE_TLS") {
            self.tls = tls.parse().map_err(|_| config_error("PALISADE_TLS must be true or false"))?;
        }
        if let Some(migrate) = get("PALISADE_MIGRATE") {
            self.migrate = migrate.parse().map_err(|_| config_error("PALISADE_MIGRATE must be true or false"))?;
        }
        if let Some(n) = get("PALISADE_MEMORY_SESSION_CAPACITY") {
            let n = n.parse().map_err(|_| config_error("PALISADE_MEMORY_SESSION_CAPACITY must be a number"))?;
            self.memory_session_capacity = check_capacity(n)?;
            // The environment wins over `[backends.memory] session_capacity` too.
            if let Some(table) = self.backends.get_mut(palisade_memory::BACKEND) {
                table.insert("session_capacity".into(), n.into());
            }
        }
        let all_fallback = get("PALISADE_FALLBACK").map(|f| f.parse::<Fallback>()).transpose()?;
        for kind in StoreKind::ALL {
            let prefix = kind.env_prefix();
            let url = get(&format!("{prefix}_URL"));
            let fallback = get(&format!("{prefix}_FALLBACK")).map(|f| f.parse::<Fallback>()).transpose()?;
            let target = self.store_mut(kind);
            if let Some(url) = url {
                target.url =
                    StoreUrl::parse(&url).map_err(|e| config_error(format!("{prefix}_URL: {}", e.message())))?;
            }
            if let Some(fb) = fallback.or(all_fallback) {
                target.fallback = fb;
            }
        }
        Ok(())
    }

    /// What backend `backend` (an id) is told when a store connects to it in
    /// `ns` with `policy`: the shared settings and its `[backends.<id>]` table.
    pub fn connect_options(&self, backend: &str, ns: &Namespace, policy: InputPolicy) -> ConnectOptions {
        let mut tuning = self.backends.get(backend).cloned().unwrap_or_default();
        if backend == palisade_memory::BACKEND {
            tuning.entry("session_capacity").or_insert_with(|| self.memory_session_capacity.into());
        }
        ConnectOptions::new(ns.clone())
            .with_pool_size(self.pool_size)
            .with_connect_timeout(self.connect_timeout)
            .with_op_timeout(self.op_timeout)
            .with_tls(self.tls)
            .with_migrate(self.migrate)
            .with_policy(policy)
            .with_tuning(tuning)
    }

    /// The settings of one store.
    pub fn store(&self, kind: StoreKind) -> &StoreConfig {
        match kind {
            StoreKind::Events => &self.events,
            StoreKind::Sessions => &self.sessions,
            StoreKind::Documents => &self.documents,
            StoreKind::Reputation => &self.reputation,
        }
    }

    #[cfg(feature = "conformance")]
    pub(crate) fn store_mut_for_check(&mut self, kind: StoreKind) -> &mut StoreConfig {
        self.store_mut(kind)
    }

    fn store_mut(&mut self, kind: StoreKind) -> &mut StoreConfig {
        match kind {
            StoreKind::Events => &mut self.events,
            StoreKind::Sessions => &mut self.sessions,
            StoreKind::Documents => &mut self.documents,
            StoreKind::Reputation => &mut self.reputation,
        }
    }
}

fn check_capacity(n: u64) -> Result<u64> {
    if n == 0 {
        return Err(config_error("memory session capacity must be at least 1"));
    }
    Ok(n)
}

fn check_pool(n: u32) -> Result<u32> {
    if n == 0 || n > 1000 {
        return Err(config_error("pool size must be 1..=1000"));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_memory_everywhere() {
        let c = Config::default();
        for kind in StoreKind::ALL {
            assert_eq!(c.store(kind).url.scheme(), "memory");
            assert_eq!(c.store(kind).fallback, Fallback::None);
        }
    }

    #[test]
    fn passwords_never_show_in_debug_display_or_errors() {
        let u = StoreUrl::parse("postgres://app:hunter2@db:5432/sec").unwrap();
        assert!(!format!("{u:?} {u}").contains("hunter2"));
        assert!(u.expose().contains("hunter2"), "drivers still get it");
        let q = StoreUrl::parse("postgres://db/sec?sslmode=require&password=hunter2&auth_token=t0k3n").unwrap();
        let shown = format!("{q} {q:?}");
        assert!(!shown.contains("hunter2") && !shown.contains("t0k3n"), "{shown}");
        assert!(shown.contains("sslmode=require"), "{shown}");
        let err = StoreUrl::parse("postgres://app:hunter2@db:notaport/sec").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert!(err.to_string().contains("port"), "names what is wrong: {err}");
    }

    #[test]
    fn environment_overrides_the_file() {
        let mut c = Config::default();
        c.apply_toml("namespace = \"fromfile\"\npool_size = 4\n[events]\nurl = \"memory://\"\nfallback = \"memory\"\n[sessions]\nurl = \"redis://cache:6379\"\n").unwrap();
        assert_eq!(c.namespace.as_str(), "fromfile");
        assert_eq!(c.events.fallback, Fallback::Memory);
        c.apply_env(|k| match k {
            "PALISADE_NAMESPACE" => Some("fromenv".into()),
            "PALISADE_SESSIONS_URL" => Some("redis+fred://other:6379".into()),
            "PALISADE_FALLBACK" => Some("none".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(c.namespace.as_str(), "fromenv");
        assert_eq!(c.pool_size, 4);
        assert_eq!(c.sessions.url.scheme(), "redis+fred");
        assert_eq!(c.events.fallback, Fallback::None);
    }

    #[test]
    fn degraded_mode_is_tuned_for_all_stores_then_per_store() {
        let mut c = Config::default();
        c.apply_toml(
            "[degrade]\nbuffer_capacity = 10\nprobe_initial_ms = 50\n\
             [sessions.degrade]\nreplay_sessions = true\nprobe_max_ms = 60000\n\
             [events.degrade]\nreplay_batch = 32\nreplay_lock_budget_ms = 20\nreplay_grouped = false\n",
        )
        .unwrap();
        assert_eq!(c.events.degrade.buffer_capacity, 10);
        assert_eq!(c.events.degrade.replay_batch, 32);
        assert!(!c.events.degrade.replay_grouped);
        assert!(c.documents.degrade.replay_grouped, "on by default");
        assert_eq!(c.events.degrade.replay_lock_budget, Duration::from_millis(20));
        assert_eq!(c.sessions.degrade.replay_batch, DegradeConfig::default().replay_batch);
        assert_eq!(c.events.degrade.probe_initial, Duration::from_millis(50));
        assert!(!c.events.degrade.replay_sessions);
        assert!(c.sessions.degrade.replay_sessions);
        assert_eq!(c.sessions.degrade.buffer_capacity, 10, "the shared table applies first");
        assert_eq!(c.sessions.degrade.probe_max, Duration::from_secs(60));
        assert_eq!(c.documents.degrade.probe_max, DegradeConfig::default().probe_max);
        for bad in [
            "[degrade]\nbuffer_capacity = 0",
            "[degrade]\nreplay_batch = 0",
            "[degrade]\nreplay_lock_budget_ms = 0",
            "[degrade]\nprobe_initial_ms = 5000\nprobe_max_ms = 10",
            "[events.degrade]\nreplay = true",
        ] {
            assert_eq!(Config::default().apply_toml(bad).unwrap_err().kind(), ErrorKind::Config, "{bad}");
        }
    }

    #[test]
    fn auto_migration_is_on_by_default_and_off_by_toml_or_environment() {
        let ns = Namespace::new("t").unwrap();
        assert!(Config::default().connect_options("pg_sqlx", &ns, InputPolicy::default()).migrate);
        let mut c = Config::default();
        c.apply_toml("migrate = false").unwrap();
        assert!(!c.connect_options("pg_sqlx", &ns, InputPolicy::default()).migrate);
        c.apply_env(|k| (k == "PALISADE_MIGRATE").then(|| "true".to_owned())).unwrap();
        assert!(c.migrate, "the environment wins");
        let bad = Config::default().apply_env(|k| (k == "PALISADE_MIGRATE").then(|| "sometimes".to_owned()));
        assert_eq!(bad.unwrap_err().kind(), ErrorKind::Config);
    }

    #[test]
    fn shared_settings_and_backend_tables_reach_the_connect_options() {
        let mut c = Config::default();
        c.apply_toml(
            "pool_size = 3\ntls = true\nmemory_session_capacity = 9\n\
             [backends.redis_rs]\nscan_limit = 500\n[backends.memory]\nlive_buffer = 8\n",
        )
        .unwrap();
        let ns = Namespace::new("t").unwrap();
        let o = c.connect_options("redis_rs", &ns, InputPolicy::default());
        assert_eq!((o.pool_size, o.tls), (3, true));
        assert_eq!(o.tuning.get("scan_limit"), Some(&serde_json::json!(500)));
        assert!(c.connect_options("fred", &ns, InputPolicy::default()).tuning.is_empty());
        let m = c.connect_options("memory", &ns, InputPolicy::default()).tuning;
        assert_eq!((m.get("session_capacity"), m.get("live_buffer")), (Some(&9.into()), Some(&8.into())));
        let err = Config::default().apply_toml("[backends.cassandra]\nx = 1\n").unwrap_err();
        assert!(err.to_string().contains("unknown backend"), "{err}");
    }

    #[test]
    fn bad_settings_are_config_errors() {
        let mut c = Config::default();
        assert_eq!(c.apply_toml("colour = 1").unwrap_err().kind(), ErrorKind::Config);
        assert_eq!(c.apply_toml("pool_size = 0").unwrap_err().kind(), ErrorKind::Config);
        assert_eq!(
            c.apply_env(|k| (k == "PALISADE_NAMESPACE").then(|| "Bad-NS".into())).unwrap_err().kind(),
            ErrorKind::Config
        );
        assert_eq!(
            c.apply_env(|k| (k == "PALISADE_FALLBACK").then(|| "disk".into())).unwrap_err().kind(),
            ErrorKind::Config
        );
    }
}
