//! [`Client`] over fred: a pool of clients (round robin) with an exponential
//! reconnect policy, so calls made after the server restarted are sent once
//! the pool has reconnected (or time out after the response timeout).
//!
//! In-flight commands of the shared pool are attempted once (`max_command_attempts = 1`): a
//! command whose connection broke is reported as a temporary error instead of
//! being sent again, so non-idempotent calls (`incr`, `hit`) never apply twice.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use fred::bytes::Bytes;
use fred::prelude::{
    Builder, ClientLike, Config, Key, LuaInterface, Pool, ReconnectPolicy, Server, ServerConfig, Value,
};
use fred::types::{ClusterHash, CustomCommand};
use palisade_core::{Error, ErrorKind, Result};

use super::{Client, Cmd, Lua, Reply};
use crate::config::Settings;
use crate::error::map_fred;
use crate::scripts;

/// The backend id of this client.
pub(crate) const BACKEND: &str = "fred";

/// fred behind [`Client`].
pub(crate) struct Fred {
    pool: Pool,
    /// Script name → (SHA-1, source).
    scripts: Arc<HashMap<&'static str, String>>,
    settings: Settings,
}

impl Drop for Fred {
    fn drop(&mut self) {
        // Stop the pool's connection tasks with the store.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let pool = self.pool.clone();
            rt.spawn(async move {
                let _ = pool.quit().await;
            });
        }
    }
}

fn fred_config(settings: &Settings) -> Result<Config> {
    let first = settings.urls.first().map(String::as_str).unwrap_or_default();
    if settings.tls {
        super::install_tls_provider();
    }
    let mut config = Config::from_url(first).map_err(|e| map_fred("connect", e))?;
    if let Some(pem) = &settings.root_ca {
        config.tls = Some(fred::types::config::TlsConnector::from(rustls_config(pem)?).into());
    }
    if settings.cluster {
        let mut hosts = Vec::new();
        for u in &settings.urls {
            let parsed = url::Url::parse(u)
                .map_err(|e| Error::new(ErrorKind::Config, "malformed cluster node URL").with_source(e))?;
            let host = parsed.host_str().unwrap_or("127.0.0.1").to_owned();
            hosts.push(Server::new(host, parsed.port().unwrap_or(6379)));
        }
        config.server = ServerConfig::Clustered { hosts, policy: Default::default() };
    }
    Ok(config)
}

/// A rustls client configuration trusting only the PEM certificates in `pem`.
fn rustls_config(pem: &[u8]) -> Result<rustls::ClientConfig> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    let bad = || Error::new(ErrorKind::Config, "tls_ca holds no usable PEM certificate").with_op("connect");
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        roots.add(cert.map_err(|_| bad())?).map_err(|_| bad())?;
    }
    if roots.is_empty() {
        return Err(bad());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|_| bad())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

/// Connects the pool now (so bad configuration fails here).
pub(crate) async fn connect(settings: &Settings) -> Result<Arc<dyn Client>> {
    let scripts = scripts::ALL
        .iter()
        .map(|s| (s.name, fred::types::scripts::Script::from_lua(s.source).sha1().to_string()))
        .collect();
    let pool = open(settings, settings.response_timeout, settings.pool_size.max(1), 1).await?;
    Ok(Arc::new(Fred { pool, scripts: Arc::new(scripts), settings: settings.clone() }))
}

async fn open(settings: &Settings, response_timeout: Duration, size: usize, attempts: u32) -> Result<Pool> {
    let config = fred_config(settings)?;
    let mut builder = Builder::from_config(config);
    builder
        .with_connection_config(|c| {
            c.connection_timeout = settings.connect_timeout;
            c.internal_command_timeout = response_timeout;
            c.max_command_attempts = attempts;
        })
        .with_performance_config(|p| {
            p.default_command_timeout = response_timeout;
        })
        // 0 attempts = keep reconnecting; 50 ms doubling up to 2 s.
        .set_policy(ReconnectPolicy::new_exponential(0, 50, 2_000, 2));
    let pool = builder.build_pool(size).map_err(|e| map_fred("connect", e))?;
    match tokio::time::timeout(settings.connect_timeout * 2, pool.init()).await {
        Ok(Ok(_task)) => Ok(pool),
        Ok(Err(e)) => {
            let _ = pool.quit().await;
            Err(map_fred("connect", e))
        }
        Err(_) => {
            let _ = pool.quit().await;
            Err(Error::new(ErrorKind::Timeout, "connecting to redis timed out")
                .with_backend(BACKEND)
                .with_op("connect"))
        }
    }
}

fn to_reply(v: Value) -> Reply {
    match v {
        Value::Null => Reply::Nil,
        Value::Integer(n) => Reply::Int(n),
        Value::Double(d) => Reply::Double(d),
        Value::Boolean(b) => Reply::Bool(b),
        Value::String(s) => Reply::Data(s.as_bytes().to_vec()),
        Value::Bytes(b) => Reply::Data(b.to_vec()),
        Value::Queued => Reply::Status("QUEUED".to_owned()),
        Value::Array(items) => Reply::Array(items.into_iter().map(to_reply).collect()),
        Value::Map(map) => {
            let mut flat = Vec::new();
            for (k, v) in map.inner() {
                flat.push(Reply::Data(k.as_bytes().to_vec()));
                flat.push(to_reply(v));
            }
            Reply::Array(flat)
        }
    }
}

fn values(args: Vec<Vec<u8>>) -> Vec<Value> {
    args.into_iter().map(|a| Value::Bytes(Bytes::from(a))).collect()
}

#[async_trait]
impl Client for Fred {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn call(&self, op: &'static str, cmd: Cmd) -> Result<Reply> {
        let hash = cmd.key_at.map_or(ClusterHash::Random, ClusterHash::Offset);
        let blocking = cmd.name.eq_ignore_ascii_case("XREAD");
        let custom = CustomCommand::new_static(cmd.name, hash, blocking);
        let reply: Value = self.pool.custom(custom, values(cmd.args)).await.map_err(|e| map_fred(op, e))?;
        Ok(to_reply(reply))
    }

    async fn eval(
        &self,
        op: &'static str,
        script: &'static Lua,
        keys: Vec<Vec<u8>>,
        args: Vec<Vec<u8>>,
    ) -> Result<Reply> {
        let sha = self.scripts.get(script.name).cloned().ok_or_else(|| {
            Error::new(ErrorKind::Unexpected, format!("script {} is not registered", script.name))
                .with_backend(BACKEND)
                .with_op(op)
        })?;
        let keys: Vec<Key> = keys.into_iter().map(|k| Key::from(Bytes::from(k))).collect();
        let args = values(args);
        let client = self.pool.next();
        let first: std::result::Result<Value, fred::error::Error> =
            client.evalsha(sha, keys.clone(), args.clone()).await;
        let reply = match first {
            // The error code (first word of the reply) says the script is not cached.
            Err(e) if e.details().starts_with("NOSCRIPT") => client.eval(script.source, keys, args).await,
            other => other,
        }
        .map_err(|e| map_fred(op, e))?;
        Ok(to_reply(reply))
    }

    async fn blocking(&self, block: Duration) -> Result<Arc<dyn Client>> {
        // Only reads (`XREAD`) go here, so retrying a write is safe; fred needs
        // more than one attempt for blocking commands on a cluster.
        let pool = open(&self.settings, self.settings.response_timeout + block, 1, 3).await?;
        Ok(Arc::new(Fred { pool, scripts: Arc::clone(&self.scripts), settings: self.settings.clone() }))
    }
}
