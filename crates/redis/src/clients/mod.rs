//! The seam between the shared stores and the two Redis clients.
//!
//! Key layout, Lua scripts and semantics live in the stores and in
//! [`crate::scripts`]; a [`Client`] only sends a [`Cmd`] or runs a [`Lua`]
//! script and hands back a client-neutral [`Reply`]. Each client maps its own
//! errors in `crate::error`.

use std::sync::Arc;

use async_trait::async_trait;
use palisade_core::{Error, ErrorKind, Result};

#[cfg(feature = "fred")]
pub(crate) mod fred;
#[cfg(feature = "redis-rs")]
pub(crate) mod redis_rs;

/// Makes ring the process's rustls crypto provider unless one is set (TLS
/// for `rediss://`; sqlx uses ring too). Idempotent.
#[cfg(any(feature = "redis-rs", feature = "fred"))]
pub(crate) fn install_tls_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race to another installer is fine: a provider is set either way.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// One Redis command: a name and binary-safe arguments.
#[derive(Debug, Clone)]
pub struct Cmd {
    /// The command name, e.g. `GET`.
    pub name: &'static str,
    /// The arguments, binary-safe.
    pub args: Vec<Vec<u8>>,
    /// Index in `args` of the key that routes the command in a cluster
    /// (`None` for key-less commands such as `PING`).
    pub key_at: Option<usize>,
}

impl Cmd {
    /// A command whose first argument is its key.
    pub fn keyed(name: &'static str, key: Vec<u8>) -> Self {
        Cmd { name, args: vec![key], key_at: Some(0) }
    }

    /// A command without a key.
    pub fn keyless(name: &'static str) -> Self {
        Cmd { name, args: Vec::new(), key_at: None }
    }

    /// Appends one argument.
    pub fn arg(mut self, a: impl AsRef<[u8]>) -> Self {
        self.args.push(a.as_ref().to_vec());
        self
    }
}

/// A Lua script, shared by both clients. Clients run it with `EVALSHA` and
/// fall back to `EVAL` (which caches it) on `NOSCRIPT`.
#[derive(Debug)]
pub struct Lua {
    /// A short name for spans and errors.
    pub name: &'static str,
    /// The script source.
    pub source: &'static str,
}

/// A client-neutral reply.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// Nil (missing key, refused `SET NX`, …).
    Nil,
    /// An integer reply.
    Int(i64),
    /// A bulk string, binary-safe.
    Data(Vec<u8>),
    /// A status reply such as `OK`.
    Status(String),
    /// A double (RESP3).
    Double(f64),
    /// A boolean (RESP3).
    Bool(bool),
    /// An array (maps are flattened into key, value, …).
    Array(Vec<Reply>),
}

fn unexpected(what: &str) -> Error {
    Error::new(ErrorKind::Unexpected, format!("unexpected Redis reply: expected {what}"))
}

impl Reply {
    /// Whether the reply is nil.
    pub fn is_nil(&self) -> bool {
        matches!(self, Reply::Nil)
    }

    /// An integer (also parsed from a decimal bulk string).
    pub fn int(&self) -> Result<i64> {
        match self {
            Reply::Int(n) => Ok(*n),
            Reply::Data(d) => {
                std::str::from_utf8(d).ok().and_then(|s| s.parse().ok()).ok_or_else(|| unexpected("an integer"))
            }
            Reply::Status(s) => s.parse().map_err(|_| unexpected("an integer")),
            _ => Err(unexpected("an integer")),
        }
    }

    /// A double, from a bulk string (as Redis formats scores) or a RESP3 double.
    pub fn double(&self) -> Result<f64> {
        match self {
            Reply::Double(d) => Ok(*d),
            Reply::Int(n) => Ok(*n as f64),
            Reply::Data(d) => {
                std::str::from_utf8(d).ok().and_then(|s| s.parse().ok()).ok_or_else(|| unexpected("a number"))
            }
            Reply::Status(s) => s.parse().map_err(|_| unexpected("a number")),
            _ => Err(unexpected("a number")),
        }
    }

    /// The bytes of a bulk string or status.
    pub fn bytes(&self) -> Result<&[u8]> {
        match self {
            Reply::Data(d) => Ok(d),
            Reply::Status(s) => Ok(s.as_bytes()),
            _ => Err(unexpected("a string")),
        }
    }

    /// A UTF-8 string.
    pub fn text(&self) -> Result<&str> {
        std::str::from_utf8(self.bytes()?).map_err(|_| unexpected("UTF-8 text"))
    }

    /// The items of an array (nil counts as empty).
    pub fn array(self) -> Result<Vec<Reply>> {
        match self {
            Reply::Array(items) => Ok(items),
            Reply::Nil => Ok(Vec::new()),
            _ => Err(unexpected("an array")),
        }
    }
}

/// A connection to Redis (standalone or cluster) through one client library.
///
/// Implementations reconnect by themselves after the server restarts; a call
/// made while the server is down fails with `Unavailable` or `Timeout`
/// (temporary), never hangs past the response timeout.
#[async_trait]
pub trait Client: Send + Sync + 'static {
    /// The backend id (`redis_rs` or `fred`).
    fn backend(&self) -> &'static str;
    /// Sends one command.
    async fn call(&self, op: &'static str, cmd: Cmd) -> Result<Reply>;
    /// Runs a script with `keys` (all in one hash slot) and `args`.
    async fn eval(
        &self,
        op: &'static str,
        script: &'static Lua,
        keys: Vec<Vec<u8>>,
        args: Vec<Vec<u8>>,
    ) -> Result<Reply>;
    /// A new, separate connection for blocking commands (`XREAD BLOCK`), whose
    /// response timeout allows for `block` on top of the usual one.
    async fn blocking(&self, block: std::time::Duration) -> Result<Arc<dyn Client>>;
}
