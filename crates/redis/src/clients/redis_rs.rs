//! [`Client`] over redis-rs: a `ConnectionManager` for a standalone server (one
//! multiplexed connection that reconnects by itself, also after the server
//! restarted while the store was idle) or an async cluster connection.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use palisade_core::{Error, ErrorKind, Result};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::TlsCertificates;

use super::{Client, Cmd, Lua, Reply};
use crate::config::Settings;
use crate::error::map_redis_rs;
use crate::scripts;

/// The backend id of this client.
pub(crate) const BACKEND: &str = "redis_rs";

#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

/// redis-rs behind [`Client`].
pub(crate) struct RedisRs {
    conn: Conn,
    scripts: HashMap<&'static str, redis::Script>,
    settings: Settings,
}

/// Connects now (so bad configuration fails here) with explicit connect and
/// response timeouts.
pub(crate) async fn connect(settings: &Settings) -> Result<Arc<dyn Client>> {
    let conn = open(settings, settings.response_timeout).await?;
    let scripts = scripts::ALL.iter().map(|s| (s.name, redis::Script::new(s.source))).collect();
    Ok(Arc::new(RedisRs { conn, scripts, settings: settings.clone() }))
}

async fn open(settings: &Settings, response_timeout: Duration) -> Result<Conn> {
    if settings.tls {
        super::install_tls_provider();
    }
    let roots = || TlsCertificates { client_tls: None, root_cert: settings.root_ca.clone() };
    let opening = async {
        if settings.cluster {
            let mut builder = ClusterClientBuilder::new(settings.urls.clone())
                .connection_timeout(settings.connect_timeout)
                .response_timeout(response_timeout);
            if settings.root_ca.is_some() {
                builder = builder.certs(roots());
            }
            let client = builder.build().map_err(|e| map_redis_rs("connect", e))?;
            let conn = client.get_async_connection().await.map_err(|e| map_redis_rs("connect", e))?;
            Ok(Conn::Cluster(conn))
        } else {
            let url = settings.urls.first().map(String::as_str).unwrap_or_default();
            let client = match settings.root_ca {
                Some(_) => redis::Client::build_with_tls(url, roots()),
                None => redis::Client::open(url),
            }
            .map_err(|e| map_redis_rs("connect", e))?;
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(settings.connect_timeout))
                .set_response_timeout(Some(response_timeout))
                .set_number_of_retries(3)
                .set_min_delay(Duration::from_millis(50))
                .set_max_delay(Duration::from_secs(2));
            let conn =
                ConnectionManager::new_with_config(client, config).await.map_err(|e| map_redis_rs("connect", e))?;
            Ok(Conn::Single(conn))
        }
    };
    // The manager retries a failed first connection; bound the whole attempt.
    tokio::time::timeout(settings.connect_timeout * 4, opening).await.map_err(|_| {
        Error::new(ErrorKind::Timeout, "connecting to redis timed out").with_backend(BACKEND).with_op("connect")
    })?
}

fn to_reply(v: redis::Value) -> Result<Reply> {
    use redis::Value as V;
    Ok(match v {
        V::Nil => Reply::Nil,
        V::Int(n) => Reply::Int(n),
        V::BulkString(b) => Reply::Data(b),
        V::SimpleString(s) => Reply::Status(s),
        V::Okay => Reply::Status("OK".to_owned()),
        V::Double(d) => Reply::Double(d),
        V::Boolean(b) => Reply::Bool(b),
        V::VerbatimString { text, .. } => Reply::Data(text.into_bytes()),
        V::BigNumber(n) => Reply::Data(n),
        V::Array(items) | V::Set(items) | V::Push { data: items, .. } => {
            Reply::Array(items.into_iter().map(to_reply).collect::<Result<_>>()?)
        }
        V::Map(pairs) => {
            let mut flat = Vec::with_capacity(pairs.len() * 2);
            for (k, v) in pairs {
                flat.push(to_reply(k)?);
                flat.push(to_reply(v)?);
            }
            Reply::Array(flat)
        }
        V::Attribute { data, .. } => to_reply(*data)?,
        V::ServerError(e) => return Err(map_redis_rs("reply", redis::RedisError::from(e))),
        _ => return Err(Error::new(ErrorKind::Unexpected, "unknown redis-rs reply type").with_backend(BACKEND)),
    })
}

#[async_trait]
impl Client for RedisRs {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn call(&self, op: &'static str, cmd: Cmd) -> Result<Reply> {
        let mut c = redis::cmd(cmd.name);
        for a in &cmd.args {
            c.arg(a.as_slice());
        }
        let value: redis::Value = match self.conn.clone() {
            Conn::Single(mut conn) => c.query_async(&mut conn).await,
            Conn::Cluster(mut conn) => c.query_async(&mut conn).await,
        }
        .map_err(|e| map_redis_rs(op, e))?;
        to_reply(value).map_err(|e| e.with_op(op))
    }

    async fn eval(
        &self,
        op: &'static str,
        script: &'static Lua,
        keys: Vec<Vec<u8>>,
        args: Vec<Vec<u8>>,
    ) -> Result<Reply> {
        let compiled = self.scripts.get(script.name).ok_or_else(|| {
            Error::new(ErrorKind::Unexpected, format!("script {} is not registered", script.name))
                .with_backend(BACKEND)
                .with_op(op)
        })?;
        let mut invocation = compiled.prepare_invoke();
        for k in &keys {
            invocation.key(k.as_slice());
        }
        for a in &args {
            invocation.arg(a.as_slice());
        }
        // `invoke_async` sends EVALSHA and falls back to EVAL on NOSCRIPT.
        let value: redis::Value = match self.conn.clone() {
            Conn::Single(mut conn) => invocation.invoke_async(&mut conn).await,
            Conn::Cluster(mut conn) => invocation.invoke_async(&mut conn).await,
        }
        .map_err(|e| map_redis_rs(op, e))?;
        to_reply(value).map_err(|e| e.with_op(op))
    }

    async fn blocking(&self, block: Duration) -> Result<Arc<dyn Client>> {
        let conn = open(&self.settings, self.settings.response_timeout + block).await?;
        Ok(Arc::new(RedisRs { conn, scripts: self.scripts.clone(), settings: self.settings.clone() }))
    }
}
