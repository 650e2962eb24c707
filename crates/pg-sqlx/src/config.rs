//! pg-sqlx's settings: [`PgConfig`], built with its `with_*` methods or from
//! the facade's [`ConnectOptions`] (`[backends.pg_sqlx]`).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use palisade_core::backend::ConnectOptions;
use palisade_core::{InputPolicy, Namespace, Result};
use serde::Deserialize;
use sqlx::postgres::{PgConnectOptions, PgSslMode};

use crate::{error, BACKEND};

/// Connection settings. `Debug` never shows the URL's password.
#[derive(Clone)]
#[non_exhaustive]
pub struct PgConfig {
    /// `postgres://user:password@host:port/database`.
    pub url: String,
    /// The schema every store is confined to.
    pub namespace: Namespace,
    /// Connections in the pool.
    pub pool_size: u32,
    /// How long to wait for a connection (connect and pool acquire).
    pub connect_timeout: Duration,
    /// Server-side `statement_timeout`.
    pub statement_timeout: Duration,
    /// Use verified TLS (`sslmode=verify-full`: system roots, or the URL's
    /// `sslrootcert`) unless the URL or `PGSSLMODE` names a mode other than
    /// `prefer`/`allow`.
    pub tls: bool,
    /// What the stores accept (depth and size limits), checked before any I/O.
    pub policy: InputPolicy,
    /// Apply pending migrations on connect (default); off, connecting only
    /// checks that none is pending (read-only), for data-only roles.
    pub migrate: bool,
}

impl PgConfig {
    /// Defaults for `url` in `namespace`: 10 connections, 5 s connect, 30 s statements.
    pub fn new(url: impl Into<String>, namespace: Namespace) -> Self {
        PgConfig {
            url: url.into(),
            namespace,
            pool_size: 10,
            connect_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(30),
            tls: false,
            policy: InputPolicy::default(),
            migrate: true,
        }
    }

    pub(crate) fn connect_options(&self) -> Result<PgConnectOptions> {
        let opts = PgConnectOptions::from_str(&self.url).map_err(|e| error::map("connect", e))?;
        let timeout_ms = self.statement_timeout.as_millis().to_string();
        // `tls` raises the optional modes (the default `prefer`, `allow`) to
        // `verify-full`; a mode that already says how (`disable`, `require`,
        // `verify-ca`, `verify-full`, from the URL or PGSSLMODE) stays.
        let weak = matches!(opts.get_ssl_mode(), PgSslMode::Prefer | PgSslMode::Allow);
        let opts = if self.tls && weak { opts.ssl_mode(PgSslMode::VerifyFull) } else { opts };
        Ok(opts
            .application_name("palisade")
            .options([("search_path", self.namespace.as_str()), ("statement_timeout", timeout_ms.as_str())]))
    }
}

impl PgConfig {
    /// With `n` pooled connections (and as many for live tails).
    pub fn with_pool_size(mut self, n: u32) -> Self {
        self.pool_size = n;
        self
    }

    /// With connect (and pool acquire) timeout `d`.
    pub fn with_connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    /// With server-side `statement_timeout` `d`.
    pub fn with_statement_timeout(mut self, d: Duration) -> Self {
        self.statement_timeout = d;
        self
    }

    /// With verified TLS forced on or off (see [`PgConfig::tls`]).
    pub fn with_tls(mut self, tls: bool) -> Self {
        self.tls = tls;
        self
    }

    /// With input policy `policy`.
    pub fn with_policy(mut self, policy: InputPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// With auto-migration on or off (see [`PgConfig::migrate`]).
    pub fn with_migrate(mut self, migrate: bool) -> Self {
        self.migrate = migrate;
        self
    }

    /// From the facade's options: pool size, connect timeout, the operation
    /// timeout as `statement_timeout`, TLS and policy. pg-sqlx has no tuning
    /// keys of its own yet, so any `[backends.pg_sqlx]` key is a `Config`
    /// error. The URL is parsed (a malformed one is `Config`) before any I/O.
    pub fn from_options(url: &str, options: &ConnectOptions) -> Result<Self> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Tuning {}
        let Tuning {} = options.tuning(BACKEND)?;
        let config = PgConfig::new(url, options.namespace.clone())
            .with_pool_size(options.pool_size)
            .with_connect_timeout(options.connect_timeout)
            .with_statement_timeout(options.op_timeout)
            .with_tls(options.tls)
            .with_policy(options.policy)
            .with_migrate(options.migrate);
        config.connect_options()?;
        Ok(config)
    }
}

impl fmt::Debug for PgConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgConfig")
            .field("url", &"<redacted>")
            .field("namespace", &self.namespace)
            .field("pool_size", &self.pool_size)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_core::ErrorKind;

    fn mode(url: &str, tls: bool) -> PgSslMode {
        let config = PgConfig::new(url, Namespace::new("t").unwrap()).with_tls(tls);
        config.connect_options().unwrap().get_ssl_mode()
    }

    #[test]
    fn the_tls_flag_makes_optional_tls_verified_and_keeps_explicit_modes() {
        assert!(matches!(mode("postgres://h/db?sslmode=prefer", true), PgSslMode::VerifyFull));
        assert!(matches!(mode("postgres://h/db?sslmode=allow", true), PgSslMode::VerifyFull));
        assert!(matches!(mode("postgres://h/db?sslmode=prefer", false), PgSslMode::Prefer));
        assert!(matches!(mode("postgres://h/db?sslmode=require", true), PgSslMode::Require));
        assert!(matches!(mode("postgres://h/db?sslmode=verify-ca", true), PgSslMode::VerifyCa));
        assert!(matches!(mode("postgres://h/db?sslmode=disable", true), PgSslMode::Disable));
    }

    #[test]
    fn options_map_onto_the_pool_and_unknown_tuning_is_refused() {
        let ns = Namespace::new("t").unwrap();
        let options = ConnectOptions::new(ns.clone())
            .with_pool_size(3)
            .with_op_timeout(Duration::from_millis(1500))
            .with_tls(true);
        let c = PgConfig::from_options("postgres://h/db", &options).unwrap();
        assert_eq!((c.pool_size, c.statement_timeout, c.tls), (3, Duration::from_millis(1500), true));
        let mut tuning = serde_json::Map::new();
        tuning.insert("pool".into(), 1.into());
        let err = PgConfig::from_options("postgres://h/db", &options.clone().with_tuning(tuning)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        let err = PgConfig::from_options("postgres://h:notaport/db", &options).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    }

    #[test]
    fn debug_never_shows_the_url() {
        let config = PgConfig::new("postgres://app:s3cret@h/db", Namespace::new("t").unwrap());
        assert!(!format!("{config:?}").contains("s3cret"));
    }
}
