//! For backend authors: how a backend crate plugs into the facade, and the
//! helpers every backend shares so that all of them behave alike:
//!
//! - [`check`]: input checks run before any I/O;
//! - [`clock`]: "now", TTLs and expiry instants, fixed when a call is made;
//! - [`documents`]: a collection spec's stored form and the document faults;
//! - [`stored`]: decoding stored JSON so one row never fails a whole read;
//! - [`eval`]: the reference semantics (document filters, sorts and
//!   projections, event grouping, leaderboard ranks) for backends that
//!   evaluate in process, and that the others must agree with;
//! - [`tail`]: a live tail over reads by position, woken by notifications.
//!
//! Services rarely need these (one exception: [`clock::now_ms`], "now" at the
//! stores' precision); they use the traits and models.
//!
//! # Connecting
//!
//! A backend crate exposes one [`Connector`] (a unit struct, usually). The
//! facade's registry lists the compiled-in connectors; for each store it
//! hands the connector the store's URL and the [`ConnectOptions`] built from
//! `Config` — the settings every backend understands plus the backend's own
//! `[backends.<id>]` TOML table ([`ConnectOptions::tuning`]). The backend
//! parses both into its own `#[non_exhaustive]` config (refusing unknown
//! tuning keys with a `Config` error) and returns a [`Backend`]: one
//! connection pool in one namespace, from which the stores are taken.
//!
//! Contract of a connector:
//! - Configuration errors (malformed URL, unknown tuning key) are
//!   `ErrorKind::Config` and happen before any I/O.
//! - An unreachable server is `Unavailable` or `Timeout` (temporary): with a
//!   fallback configured, the facade then boots degraded and connects later.
//! - Neither the URL nor credentials appear in errors, `Debug` or logs.

pub mod check;
pub mod clock;
pub mod documents;
pub mod eval;
pub mod stored;
pub mod tail;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::{
    Capabilities, DocumentStore, Error, ErrorKind, EventStore, InputPolicy, Namespace, ReputationRepo, Result,
    SessionCache,
};

/// What the facade tells every backend when connecting. Build with
/// [`ConnectOptions::new`] and the `with_*` methods.
#[derive(Clone)]
#[non_exhaustive]
pub struct ConnectOptions {
    /// The namespace every store is confined to.
    pub namespace: Namespace,
    /// Connections per pool (where the backend pools).
    pub pool_size: u32,
    /// How long connecting (and waiting for a pooled connection) may take.
    pub connect_timeout: Duration,
    /// How long one operation may take on the server.
    pub op_timeout: Duration,
    /// Use verified TLS where the URL does not already say how.
    pub tls: bool,
    /// What the stores accept, checked before any I/O.
    pub policy: InputPolicy,
    /// The backend's own settings (`[backends.<id>]` in TOML), parsed by the
    /// backend with [`ConnectOptions::tuning`].
    pub tuning: Map<String, Value>,
    /// Whether connecting applies the namespace's schema (Postgres
    /// migrations, Mongo indexes). Off, connecting only checks — with
    /// read-only queries — that the schema is in place, and refuses with a
    /// `Config` error naming what is missing (`palisade migrate` fixes it):
    /// for services running as a data-only role.
    pub migrate: bool,
}

impl ConnectOptions {
    /// Defaults in `namespace`: 10 connections, 5 s connect, 10 s per
    /// operation, no forced TLS, the default input policy, no tuning.
    pub fn new(namespace: Namespace) -> Self {
        ConnectOptions {
            namespace,
            pool_size: 10,
            connect_timeout: Duration::from_secs(5),
            op_timeout: Duration::from_secs(10),
            tls: false,
            policy: InputPolicy::default(),
            tuning: Map::new(),
            migrate: true,
        }
    }

    /// With `n` connections per pool.
    pub fn with_pool_size(mut self, n: u32) -> Self {
        self.pool_size = n;
        self
    }

    /// With connect timeout `d`.
    pub fn with_connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    /// With operation timeout `d`.
    pub fn with_op_timeout(mut self, d: Duration) -> Self {
        self.op_timeout = d;
        self
    }

    /// With forced TLS on or off.
    pub fn with_tls(mut self, tls: bool) -> Self {
        self.tls = tls;
        self
    }

    /// With input policy `policy`.
    pub fn with_policy(mut self, policy: InputPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// With auto-migration on or off (see [`ConnectOptions::migrate`]).
    pub fn with_migrate(mut self, migrate: bool) -> Self {
        self.migrate = migrate;
        self
    }

    /// With the backend's own settings.
    pub fn with_tuning(mut self, tuning: Map<String, Value>) -> Self {
        self.tuning = tuning;
        self
    }

    /// The backend's own settings as `T` (a `#[serde(deny_unknown_fields)]`
    /// struct of optional fields, typically); a key `T` does not know or a
    /// value of the wrong type is a `Config` error naming `backend`'s table.
    pub fn tuning<T: DeserializeOwned>(&self, backend: &'static str) -> Result<T> {
        serde_json::from_value(Value::Object(self.tuning.clone())).map_err(|e| {
            Error::new(ErrorKind::Config, format!("[backends.{backend}]: {e}")).with_backend(backend).with_op("config")
        })
    }
}

impl fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("namespace", &self.namespace)
            .field("pool_size", &self.pool_size)
            .field("connect_timeout", &self.connect_timeout)
            .field("op_timeout", &self.op_timeout)
            .field("tls", &self.tls)
            .field("migrate", &self.migrate)
            .field("tuning", &self.tuning.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// A migration's state in a namespace (`palisade migrate`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationStatus {
    /// Version (file prefix).
    pub version: i64,
    /// Description (file name).
    pub description: String,
    /// Whether it is applied.
    pub applied: bool,
}

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

/// Opens backends of one kind; see the [module docs](self).
#[async_trait]
pub trait Connector: Send + Sync {
    /// The backend id (`pg_sqlx`, `redis_rs`, …), as errors and spans name it.
    fn id(&self) -> &'static str;
    /// What the backend's stores guarantee (known before connecting, so a
    /// store whose server is down at start-up reports them too).
    fn capabilities(&self) -> Capabilities;
    /// Checks `url` and `options` as `connect` would, without any I/O: a
    /// malformed URL or an unknown tuning key is a `Config` error.
    fn validate(&self, url: &str, options: &ConnectOptions) -> Result<()>;
    /// Connects to the server at `url` in `options.namespace`, migrating
    /// first where the backend has a schema — or, with
    /// [`ConnectOptions::migrate`] off, only checking (read-only) that the
    /// schema is in place.
    async fn connect(&self, url: &str, options: &ConnectOptions) -> Result<Arc<dyn Backend>>;
    /// Checks that the server at `url` answers, touching no namespace.
    async fn ping(&self, url: &str, options: &ConnectOptions) -> Result<()>;
    /// Drops `options.namespace` at `url` without migrating it first.
    async fn drop_namespace(&self, url: &str, options: &ConnectOptions) -> Result<()> {
        self.connect(url, options).await?.drop_namespace().await
    }
    /// Applies pending schema migrations (only reads their state when
    /// `dry_run`) and returns every migration's state; `None` for a backend
    /// without a schema (the default).
    async fn migrate(
        &self,
        url: &str,
        options: &ConnectOptions,
        dry_run: bool,
    ) -> Result<Option<Vec<MigrationStatus>>> {
        let _ = (url, options, dry_run);
        Ok(None)
    }
    /// What a runtime role or user named `role` needs on this backend to
    /// use `ns` with auto-migration off, as text an operator runs or pastes
    /// (SQL grants, an ACL rule, a role definition); `None` when the backend
    /// has no access control (memory). `palisade migrate --print-grants`.
    fn grants(&self, ns: &Namespace, role: &str) -> Option<String> {
        let _ = (ns, role);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug, Default)]
    #[serde(deny_unknown_fields)]
    struct Tuning {
        scan_limit: Option<usize>,
    }

    #[test]
    fn tuning_parses_known_keys_and_refuses_others() {
        let ns = Namespace::new("t").unwrap();
        let mut map = Map::new();
        map.insert("scan_limit".into(), Value::from(5));
        let options = ConnectOptions::new(ns.clone()).with_tuning(map.clone());
        assert_eq!(options.tuning::<Tuning>("x").unwrap().scan_limit, Some(5));
        map.insert("scan_limt".into(), Value::from(5));
        let err = ConnectOptions::new(ns.clone()).with_tuning(map).tuning::<Tuning>("redis_rs").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        assert!(err.to_string().contains("[backends.redis_rs]") && err.to_string().contains("scan_limt"), "{err}");
        assert!(ConnectOptions::new(ns).tuning::<Tuning>("x").unwrap().scan_limit.is_none());
    }
}
