//! palisade-mongo's settings: [`MongoConfig`], built with its `with_*`
//! methods or from the facade's [`ConnectOptions`] (`[backends.mongo]`).

use std::fmt;
use std::time::Duration;

use mongodb::options::{ClientOptions, Tls, TlsOptions};
use palisade_core::backend::ConnectOptions;
use palisade_core::{Error, ErrorKind, InputPolicy, Namespace, Result};
use serde::Deserialize;

use crate::BACKEND;

/// The URL schemes of this backend.
pub const SCHEMES: [&str; 2] = ["mongodb", "mongodb+srv"];

/// Connection settings. `Debug` never shows the URL (it may hold a password).
#[derive(Clone)]
#[non_exhaustive]
pub struct MongoConfig {
    /// `mongodb://user:password@host:27017/?replicaSet=rs0` or `mongodb+srv://…`.
    pub url: String,
    /// The database every store is confined to.
    pub namespace: Namespace,
    /// Connections per server in the driver's pool.
    pub pool_size: u32,
    /// How long connecting and selecting a server may take.
    pub connect_timeout: Duration,
    /// How long one operation may take.
    pub op_timeout: Duration,
    /// Use TLS (verified against the system roots) unless the URL says how
    /// (`tls=` / `ssl=` options).
    pub tls: bool,
    /// What the stores accept, checked before any I/O.
    pub policy: InputPolicy,
    /// Create the indexes (and the event head) on connect (default); off,
    /// connecting only checks that they exist (read-only), for users with
    /// the `read`/`readWrite` role only.
    pub migrate: bool,
}

impl MongoConfig {
    /// Settings for `url` and `namespace` with the defaults of every backend.
    pub fn new(url: impl Into<String>, namespace: Namespace) -> Self {
        MongoConfig {
            url: url.into(),
            namespace,
            pool_size: 10,
            connect_timeout: Duration::from_secs(5),
            op_timeout: Duration::from_secs(10),
            tls: false,
            policy: InputPolicy::default(),
            migrate: true,
        }
    }

    /// With auto-migration on or off (see [`MongoConfig::migrate`]).
    pub fn with_migrate(mut self, migrate: bool) -> Self {
        self.migrate = migrate;
        self
    }

    /// With `n` pooled connections per server.
    pub fn with_pool_size(mut self, n: u32) -> Self {
        self.pool_size = n;
        self
    }

    /// With a connect (and server-selection) timeout of `d`.
    pub fn with_connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    /// With an operation timeout of `d`.
    pub fn with_op_timeout(mut self, d: Duration) -> Self {
        self.op_timeout = d;
        self
    }

    /// With TLS forced on (see [`MongoConfig::tls`]).
    pub fn with_tls(mut self, tls: bool) -> Self {
        self.tls = tls;
        self
    }

    /// With `policy` as the input policy.
    pub fn with_policy(mut self, policy: InputPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// From the facade's options: pool size, timeouts, TLS and policy.
    /// palisade-mongo has no tuning keys of its own yet, so any
    /// `[backends.mongo]` key is a `Config` error. The URL is checked
    /// before any I/O.
    pub fn from_options(url: &str, options: &ConnectOptions) -> Result<Self> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Tuning {}
        let Tuning {} = options.tuning(BACKEND)?;
        let config = MongoConfig::new(url, options.namespace.clone())
            .with_pool_size(options.pool_size)
            .with_connect_timeout(options.connect_timeout)
            .with_op_timeout(options.op_timeout)
            .with_tls(options.tls)
            .with_policy(options.policy)
            .with_migrate(options.migrate);
        config.check_url()?;
        Ok(config)
    }

    /// The URL's scheme and shape, without I/O (a `mongodb+srv://` URL is
    /// resolved only when connecting).
    pub(crate) fn check_url(&self) -> Result<()> {
        let bad = |msg: &str| Error::new(ErrorKind::Config, format!("invalid mongo URL: {msg}")).with_backend(BACKEND);
        let url = url::Url::parse(&self.url).map_err(|_| bad("not a URL"))?;
        if !SCHEMES.contains(&url.scheme()) {
            return Err(bad("the scheme must be mongodb:// or mongodb+srv://"));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(bad("no host"));
        }
        Ok(())
    }

    /// The driver's options: parsed from the URL (resolving `mongodb+srv`
    /// records), then Palisade's timeouts, pool size, application name and
    /// TLS applied. A parse failure is `Config`, never echoing the URL.
    pub(crate) async fn client_options(&self) -> Result<ClientOptions> {
        self.check_url()?;
        let mut options = ClientOptions::parse(&self.url).await.map_err(|e| {
            let e = crate::error::map("connect", e);
            // A malformed URL or option is configuration; an SRV lookup
            // that fails is an outage (kept as mapped).
            if e.kind() == ErrorKind::Unexpected {
                Error::new(ErrorKind::Config, "invalid mongo URL options").with_backend(BACKEND).with_op("connect")
            } else {
                e
            }
        })?;
        options.app_name = Some("palisade".to_owned());
        options.connect_timeout = Some(self.connect_timeout);
        options.server_selection_timeout = Some(self.connect_timeout);
        options.max_pool_size = Some(self.pool_size.max(1));
        if self.tls && options.tls.is_none() {
            options.tls = Some(Tls::Enabled(TlsOptions::default()));
        }
        Ok(options)
    }
}

impl fmt::Debug for MongoConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MongoConfig")
            .field("url", &"<redacted>")
            .field("namespace", &self.namespace)
            .field("pool_size", &self.pool_size)
            .field("connect_timeout", &self.connect_timeout)
            .field("op_timeout", &self.op_timeout)
            .field("tls", &self.tls)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str) -> MongoConfig {
        MongoConfig::new(url, Namespace::new("tenant_a").unwrap())
    }

    #[test]
    fn only_mongo_urls_with_a_host_are_accepted() {
        for url in ["nope", "postgres://h/db", "mongodb://", "redis://h:6379"] {
            assert_eq!(config(url).check_url().err().map(|e| e.kind()), Some(ErrorKind::Config), "{url}");
        }
        for url in ["mongodb://h:27017/?directConnection=true", "mongodb+srv://cluster0.example.net/", "mongodb://a,b/"]
        {
            assert!(config(url).check_url().is_ok(), "{url}");
        }
    }

    #[tokio::test]
    async fn palisade_settings_reach_the_driver_options() {
        let c = config("mongodb://h:27017/?directConnection=true")
            .with_pool_size(7)
            .with_connect_timeout(Duration::from_millis(1500))
            .with_tls(true);
        let o = c.client_options().await.unwrap();
        assert_eq!((o.max_pool_size, o.connect_timeout), (Some(7), Some(Duration::from_millis(1500))));
        assert_eq!(o.server_selection_timeout, Some(Duration::from_millis(1500)));
        assert!(matches!(o.tls, Some(Tls::Enabled(_))), "PALISADE_TLS turns TLS on");
        let o = config("mongodb://h/?tls=false").with_tls(true).client_options().await.unwrap();
        assert!(matches!(o.tls, Some(Tls::Disabled)), "an explicit tls=false in the URL stays");
    }

    #[tokio::test]
    async fn bad_options_are_config_errors_without_the_password() {
        let c = config("mongodb://app:s3cret@h/?retryWrites=maybe");
        let e = c.client_options().await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config, "{e}");
        let shown = format!("{e} {e:?} {c:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
    }

    #[test]
    fn unknown_tuning_keys_are_config_errors() {
        let mut tuning = serde_json::Map::new();
        tuning.insert("pool".into(), 1.into());
        let options = ConnectOptions::new(Namespace::new("t").unwrap()).with_tuning(tuning);
        assert_eq!(MongoConfig::from_options("mongodb://h/", &options).unwrap_err().kind(), ErrorKind::Config);
    }
}
