//! pg-diesel's settings: [`PgDieselConfig`], built with its `with_*` methods
//! or from the facade's [`ConnectOptions`] (`[backends.pg_diesel]`).

use std::fmt;
use std::time::Duration;

use palisade_core::backend::ConnectOptions;
use palisade_core::{Error, ErrorKind, InputPolicy, Namespace, Result};
use serde::Deserialize;
use tokio_postgres::config::Host;

use crate::tls::{SslMode, Tls};
use crate::BACKEND;

/// The URL scheme of this backend (`postgres+diesel://user:pw@host/db`).
pub const SCHEME: &str = "postgres+diesel";

/// Connection settings. `Debug` never shows the URL's password.
#[derive(Clone)]
#[non_exhaustive]
pub struct PgDieselConfig {
    /// `postgres+diesel://user:password@host:port/database` (`postgres://`
    /// and `postgresql://` are accepted too).
    pub url: String,
    /// The schema every store is confined to.
    pub namespace: Namespace,
    /// Connections in the pool.
    pub pool_size: u32,
    /// How long to wait for a connection (connect and pool acquire).
    pub connect_timeout: Duration,
    /// Server-side `statement_timeout`.
    pub statement_timeout: Duration,
    /// Use verified TLS (`sslmode=verify-full`: the Mozilla roots, or the
    /// URL's `sslrootcert`) unless the URL or `PGSSLMODE` names a mode other
    /// than `prefer`/`allow` (see [`crate::tls`] for every mode).
    pub tls: bool,
    /// What the stores accept (depth and size limits), checked before any I/O.
    pub policy: InputPolicy,
    /// Apply pending migrations on connect (default); off, connecting only
    /// checks that none is pending (read-only), for data-only roles.
    pub migrate: bool,
}

/// Where and how to connect, parsed from [`PgDieselConfig`] before any I/O.
#[derive(Clone)]
pub(crate) struct Target {
    /// Host name or address and port (TCP).
    pub host: String,
    pub port: u16,
    /// Everything else tokio-postgres sends at startup: user, password,
    /// database, `search_path`, `statement_timeout`, application name.
    pub startup: tokio_postgres::Config,
    pub connect_timeout: Duration,
    /// TLS, unless `sslmode` never asks for it.
    pub tls: Option<Tls>,
}

impl PgDieselConfig {
    /// Defaults for `url` in `namespace`: 10 connections, 5 s connect, 30 s statements.
    pub fn new(url: impl Into<String>, namespace: Namespace) -> Self {
        PgDieselConfig {
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

    /// With auto-migration on or off (see [`PgDieselConfig::migrate`]).
    pub fn with_migrate(mut self, migrate: bool) -> Self {
        self.migrate = migrate;
        self
    }

    /// With `n` pooled connections.
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

    /// With verified TLS required (see [`PgDieselConfig::tls`]).
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
    /// timeout as `statement_timeout`, TLS and policy. pg-diesel has no
    /// tuning keys of its own yet, so any `[backends.pg_diesel]` key is a
    /// `Config` error. The URL is parsed (a malformed one is `Config`)
    /// before any I/O.
    pub fn from_options(url: &str, options: &ConnectOptions) -> Result<Self> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Tuning {}
        let Tuning {} = options.tuning(BACKEND)?;
        let config = PgDieselConfig::new(url, options.namespace.clone())
            .with_pool_size(options.pool_size)
            .with_connect_timeout(options.connect_timeout)
            .with_statement_timeout(options.op_timeout)
            .with_tls(options.tls)
            .with_policy(options.policy)
            .with_migrate(options.migrate);
        config.target()?;
        Ok(config)
    }

    /// Parses the URL into where to connect and what to send at startup.
    ///
    /// `sslmode` and `sslrootcert` come from the URL, else `PGSSLMODE` and
    /// `PGSSLROOTCERT` (see [`crate::tls`]); client certificates are not
    /// supported (`sslcert`/`sslkey` are `Config` errors). Only TCP hosts
    /// are supported (one host; no Unix sockets yet).
    pub(crate) fn target(&self) -> Result<Target> {
        let bad =
            |msg: &str| Error::new(ErrorKind::Config, format!("invalid pg-diesel URL: {msg}")).with_backend(BACKEND);
        let mut url = url::Url::parse(&self.url).map_err(|_| bad("not a URL"))?;
        match url.scheme() {
            SCHEME | "postgresql+diesel" | "postgres" | "postgresql" => {}
            _ => return Err(bad("the scheme must be postgres+diesel://")),
        }
        let mut sslmode = std::env::var("PGSSLMODE").ok();
        let mut rootcert = std::env::var("PGSSLROOTCERT").ok();
        // Every other parameter goes to tokio-postgres byte for byte (no
        // decode and re-encode, which would turn `%20` into `+`).
        let mut kept: Vec<String> = Vec::new();
        for segment in url.query().unwrap_or_default().split('&').filter(|s| !s.is_empty()) {
            let (key, value) = url::form_urlencoded::parse(segment.as_bytes()).next().unwrap_or_default();
            match key.as_ref() {
                "sslmode" => sslmode = Some(value.into_owned()),
                "sslrootcert" => rootcert = Some(value.into_owned()),
                "sslcert" | "sslkey" => return Err(bad("client certificates (sslcert, sslkey) are not supported")),
                // One address per connection, the one `host` names (which TLS verifies too).
                "hostaddr" => return Err(bad("hostaddr is not supported; put the address in the host")),
                _ => kept.push(segment.to_owned()),
            }
        }
        let kept = kept.join("&");
        let sslmode = match sslmode.as_deref() {
            None => None,
            Some(mode) => Some(SslMode::parse(mode).ok_or_else(|| bad("unknown sslmode"))?),
        };
        let mode = SslMode::effective(sslmode, self.tls);
        url.set_query((!kept.is_empty()).then_some(kept.as_str()));
        // tokio-postgres parses `postgres://` URLs; the scheme carries no other meaning.
        let text = url.as_str().replacen(&format!("{}://", url.scheme()), "postgres://", 1);
        let mut startup: tokio_postgres::Config = text.parse().map_err(|_| bad("unparsable connection settings"))?;
        // What the URL leaves out comes from the libpq environment variables
        // tokio-postgres does not read (pg-sqlx reads them too).
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        if startup.get_hosts().is_empty() {
            startup.host(env("PGHOST").as_deref().unwrap_or("localhost"));
        }
        if startup.get_ports().is_empty() {
            let port = env("PGPORT").map(|p| p.parse::<u16>().map_err(|_| bad("PGPORT is no port"))).transpose()?;
            startup.port(port.unwrap_or(5432));
        }
        if startup.get_user().is_none() {
            if let Some(user) = env("PGUSER") {
                startup.user(user);
            }
        }
        if startup.get_password().is_none() {
            if let Some(password) = env("PGPASSWORD") {
                startup.password(password);
            }
        }
        if startup.get_dbname().is_none() {
            if let Some(db) = env("PGDATABASE") {
                startup.dbname(db);
            }
        }
        let host = match startup.get_hosts() {
            [Host::Tcp(h)] => h.clone(),
            [Host::Tcp(_), ..] => return Err(bad("one host only")),
            _ => return Err(bad("only TCP hosts are supported")),
        };
        let port = match startup.get_ports() {
            [port] => *port,
            _ => return Err(bad("one port only")),
        };
        let base = startup.get_options().unwrap_or_default().to_owned();
        // The namespace is validated as [a-z][a-z0-9_]*: nothing to escape.
        let options = format!(
            "{base} -c search_path={} -c statement_timeout={}",
            self.namespace.as_str(),
            self.statement_timeout.as_millis()
        );
        startup.options(options.trim()).application_name("palisade").ssl_mode(tokio_postgres::config::SslMode::Disable);
        let tls = Tls::new(mode, &host, rootcert.as_deref())?;
        // The URL's `connect_timeout`, when given, is the more specific one.
        let connect_timeout = startup.get_connect_timeout().copied().unwrap_or(self.connect_timeout);
        Ok(Target { host, port, startup, connect_timeout, tls })
    }
}

impl fmt::Debug for PgDieselConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgDieselConfig")
            .field("url", &"<redacted>")
            .field("namespace", &self.namespace)
            .field("pool_size", &self.pool_size)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str) -> PgDieselConfig {
        PgDieselConfig::new(url, Namespace::new("tenant_a").unwrap())
    }

    #[test]
    fn the_url_gives_host_port_user_database_and_the_namespace_as_search_path() {
        let t = config("postgres+diesel://app:pw@127.0.0.1:5433/security?connect_timeout=3").target().unwrap();
        assert_eq!((t.host.as_str(), t.port), ("127.0.0.1", 5433));
        assert_eq!(t.startup.get_user(), Some("app"));
        assert_eq!(t.startup.get_dbname(), Some("security"));
        assert_eq!(t.startup.get_options(), Some("-c search_path=tenant_a -c statement_timeout=30000"));
        let t = config("postgres+diesel://h/db?options=-c%20lock_timeout%3D5s&sslmode=prefer").target().unwrap();
        let options = t.startup.get_options().unwrap_or_default();
        assert!(options.starts_with("-c lock_timeout=5s -c search_path=tenant_a"), "{options}");
        let t = config("postgres://db/x").target().unwrap();
        assert_eq!((t.host.as_str(), t.port), ("db", 5432));
        let t = config("postgresql+diesel://db:6000/x").target().unwrap();
        assert_eq!((t.host.as_str(), t.port), ("db", 6000), "both registered schemes are accepted");
    }

    #[test]
    fn sslmode_and_the_tls_flag_pick_the_tls_mode() {
        let mode = |url: &str, tls: bool| config(url).with_tls(tls).target().unwrap().tls.map(|t| t.mode);
        assert_eq!(mode("postgres+diesel://h/db", false), Some(SslMode::Prefer), "libpq's default");
        assert_eq!(mode("postgres+diesel://h/db", true), Some(SslMode::VerifyFull));
        assert_eq!(mode("postgres+diesel://h/db?sslmode=require", true), Some(SslMode::Require));
        assert_eq!(mode("postgres+diesel://h/db?sslmode=disable", true), None);
        assert_eq!(mode("postgres+diesel://h/db?sslmode=allow", false), None);
        let t = config("postgres+diesel://h/db?sslmode=verify-full&connect_timeout=3").target().unwrap();
        assert_eq!(t.connect_timeout, Duration::from_secs(3), "ssl keys out, the rest kept and honoured");
    }

    #[test]
    fn client_certificates_and_unreadable_roots_are_config_errors() {
        for url in [
            "postgres+diesel://h/db?hostaddr=10.0.0.5",
            "postgres+diesel://h/db?sslcert=/c.pem&sslkey=/k.pem",
            "postgres+diesel://h/db?sslmode=verify-ca&sslrootcert=/nonexistent/root.pem",
        ] {
            assert_eq!(config(url).target().err().map(|e| e.kind()), Some(ErrorKind::Config), "{url}");
        }
    }

    #[test]
    fn malformed_urls_and_unknown_tuning_are_config_errors() {
        for url in ["nope", "mysql://h/db", "postgres+diesel://h:notaport/db", "postgres+diesel://h/db?sslmode=maybe"] {
            assert_eq!(config(url).target().err().map(|e| e.kind()), Some(ErrorKind::Config), "{url}");
        }
        let options = ConnectOptions::new(Namespace::new("t").unwrap());
        let mut tuning = serde_json::Map::new();
        tuning.insert("pool".into(), 1.into());
        let err = PgDieselConfig::from_options("postgres+diesel://h/db", &options.with_tuning(tuning)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
    }

    #[test]
    fn debug_and_errors_never_show_the_password() {
        let c = config("postgres+diesel://app:s3cret@h/db?sslmode=require");
        assert!(!format!("{c:?}").contains("s3cret"));
        for url in ["postgres+diesel://app:s3cret@h/db?sslmode=bogus", "postgres+diesel://app:s3cret@h:99999/db"] {
            let e = config(url).target().err().map(|e| format!("{e} {e:?}")).expect("refused");
            assert!(!e.contains("s3cret"), "{e}");
        }
    }
}
