//! Connections: tokio-postgres over a socket Palisade opens itself, wrapped
//! in diesel-async's `AsyncPgConnection`, pooled by deadpool.
//!
//! Why not `AsyncDieselConnectionManager`: diesel 2.3 does not expose a
//! server error's SQLSTATE (diesel-async turns every code it does not know
//! into `DatabaseErrorKind::Unknown`), and Palisade takes error kinds from
//! codes, never from message text. So each connection's socket is read
//! through a tap that frames the server's protocol messages and keeps
//! the `C` (code) field of the last `ErrorResponse`; the crate's error mapping
//! takes it from there. When diesel-async ships on diesel 2.4
//! (`DatabaseErrorInformation::sqlstate`), the tap can go.

use std::io;
use std::ops::{Deref, DerefMut};
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use diesel_async::pooled_connection::PoolableConnection;
use diesel_async::AsyncPgConnection;
use palisade_core::{Error, ErrorKind, Result};
use palisade_pg_common::sqlstate;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use tokio_postgres::config::SslMode;

use crate::config::Target;
use crate::tls::Tls;
use crate::BACKEND;

/// One connection: diesel-async's connection plus the tap on its socket.
pub struct Conn {
    conn: AsyncPgConnection,
    tap: Arc<Tap>,
    /// The task driving the socket; aborting it closes the connection.
    driver: tokio::task::AbortHandle,
}

impl Conn {
    /// The SQLSTATE of the server's last error on this connection, taken
    /// (a second call returns `None`).
    pub(crate) fn take_sqlstate(&self) -> Option<String> {
        self.tap.take()
    }

    /// Whether the server last reported no open transaction.
    #[cfg(test)]
    pub(crate) fn idle(&self) -> bool {
        self.tap.idle()
    }

    /// Maps an error of a statement that ran on this connection.
    pub(crate) fn error(&self, op: &'static str) -> impl Fn(diesel::result::Error) -> Error + '_ {
        move |e| crate::error::map(op, e, self.take_sqlstate())
    }

    /// Maps the error of a transaction that ran on this connection.
    pub(crate) fn tx_error(&self, op: &'static str) -> impl Fn(crate::error::TxError) -> Error + '_ {
        move |e| match e {
            crate::error::TxError::Db(e) => crate::error::map(op, e, self.take_sqlstate()),
            crate::error::TxError::Palisade(e) => e.with_backend(BACKEND).with_op(op),
        }
    }
}

impl Deref for Conn {
    type Target = AsyncPgConnection;
    fn deref(&self) -> &AsyncPgConnection {
        &self.conn
    }
}

impl DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut AsyncPgConnection {
        &mut self.conn
    }
}

/// Opens one connection to `target` (TCP, `TCP_NODELAY`, within the connect
/// timeout), with `search_path` and `statement_timeout` set at startup.
pub(crate) async fn connect(target: &Target) -> Result<Conn> {
    let timed_out =
        || Error::new(ErrorKind::Timeout, "connecting to postgres timed out").set_temporary(true).with_backend(BACKEND);
    let open = async {
        let socket = TcpStream::connect((target.host.as_str(), target.port)).await.map_err(unreachable)?;
        socket.set_nodelay(true).map_err(unreachable)?;
        if target.startup.get_keepalives() {
            // As tokio-postgres does for its own sockets (`keepalives`,
            // `keepalives_idle` from the URL; on by default, 2 h idle).
            let keepalive = socket2::TcpKeepalive::new().with_time(target.startup.get_keepalives_idle());
            socket2::SockRef::from(&socket).set_tcp_keepalive(&keepalive).map_err(unreachable)?;
        }
        let socket = match &target.tls {
            Some(tls) => negotiate_tls(socket, tls).await?,
            None => Box::new(socket),
        };
        let tap = Arc::new(Tap::default());
        let stream = TapStream { inner: socket, tap: Arc::clone(&tap), frames: Frames::default() };
        let (client, connection) =
            target.startup.connect_raw(stream, tokio_postgres::NoTls).await.map_err(connect_error)?;
        let driver = tokio::spawn(async move {
            // Ends when the connection closes; in-flight calls then fail.
            if let Err(e) = connection.await {
                tracing::debug!(backend = BACKEND, error = %e, "postgres connection ended");
            }
        })
        .abort_handle();
        let conn = AsyncPgConnection::try_from(client).await.map_err(|e| {
            Error::new(ErrorKind::Unavailable, "setting up the postgres connection failed")
                .set_temporary(true)
                .with_backend(BACKEND)
                .with_source(e)
        })?;
        Ok(Conn { conn, tap, driver })
    };
    tokio::time::timeout(target.connect_timeout, open).await.map_err(|_| timed_out())?
}

/// Any byte stream a connection runs over (TCP, or TLS over TCP).
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Postgres' `SSLRequest`: length 8, code 80877103.
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

/// Asks the server for TLS and, when it agrees, does the handshake (below
/// the tap, which then reads plaintext). A server that declines is spoken
/// to in plain text only when the mode allows it (`prefer`).
async fn negotiate_tls(mut socket: TcpStream, tls: &Tls) -> Result<Box<dyn Io>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    socket.write_all(&SSL_REQUEST).await.map_err(unreachable)?;
    let mut answer = [0u8; 1];
    socket.read_exact(&mut answer).await.map_err(unreachable)?;
    match answer[0] {
        b'S' => {
            let connector = tokio_rustls::TlsConnector::from(Arc::clone(&tls.config));
            let stream = connector.connect(tls.server_name.clone(), socket).await.map_err(|e| {
                // A certificate that does not verify stays wrong until the
                // configuration changes: no outage, not temporary.
                let kind =
                    if e.kind() == io::ErrorKind::InvalidData { ErrorKind::Config } else { ErrorKind::Unavailable };
                Error::new(kind, "TLS with postgres failed")
                    .set_temporary(kind == ErrorKind::Unavailable)
                    .with_backend(BACKEND)
                    .with_op("connect")
                    .with_source(e)
            })?;
            Ok(Box::new(stream))
        }
        b'N' if !tls.mode.demands_tls() => Ok(Box::new(socket)),
        b'N' => Err(Error::new(ErrorKind::Config, "postgres does not accept TLS, which sslmode demands")
            .with_backend(BACKEND)
            .with_op("connect")),
        _ => Err(Error::new(ErrorKind::Unavailable, "postgres answered the TLS request with something else")
            .set_temporary(true)
            .with_backend(BACKEND)
            .with_op("connect")),
    }
}

/// Opens a connection for `LISTEN` (outside the pool, no tap): diesel-async
/// delivers notifications only on connections whose driver task it spawned
/// itself (`try_from_client_and_connection`). When the connection dies, its
/// `notifications_stream` ends; the live tail then reconnects.
pub(crate) async fn listener(target: &Target) -> Result<AsyncPgConnection> {
    let open = async {
        // The same host, port and settings as the pooled connections.
        let mut config = target.startup.clone();
        config.connect_timeout(target.connect_timeout);
        let setup = |e: diesel::ConnectionError| {
            Error::new(ErrorKind::Unavailable, "setting up the postgres listener failed")
                .set_temporary(true)
                .with_backend(BACKEND)
                .with_source(e)
        };
        match &target.tls {
            Some(tls) => {
                // tokio-postgres knows prefer and require; the rustls
                // configuration does the verification the mode asks for.
                let mode = if tls.mode.demands_tls() { SslMode::Require } else { SslMode::Prefer };
                config.ssl_mode(mode);
                let connector = tokio_postgres_rustls::MakeRustlsConnect::new((*tls.config).clone());
                let (client, connection) = config.connect(connector).await.map_err(connect_error)?;
                AsyncPgConnection::try_from_client_and_connection(client, connection).await.map_err(setup)
            }
            None => {
                let (client, connection) = config.connect(tokio_postgres::NoTls).await.map_err(connect_error)?;
                AsyncPgConnection::try_from_client_and_connection(client, connection).await.map_err(setup)
            }
        }
    };
    tokio::time::timeout(target.connect_timeout, open).await.map_err(|_| {
        Error::new(ErrorKind::Timeout, "connecting to postgres timed out").set_temporary(true).with_backend(BACKEND)
    })?
}

fn unreachable(e: io::Error) -> Error {
    Error::new(ErrorKind::Unavailable, "cannot reach postgres")
        .set_temporary(true)
        .with_backend(BACKEND)
        .with_op("connect")
        .with_source(e)
}

/// A failed startup: a server error by its SQLSTATE (bad password →
/// `Config`, shutting down → `Unavailable`), anything else unreachable.
fn connect_error(e: tokio_postgres::Error) -> Error {
    let err = match e.code() {
        Some(code) => {
            let code = code.code();
            // invalid_authorization_specification / invalid_password /
            // invalid_catalog_name: configuration, not an outage.
            // Classes 42 and 22 at startup: a bad `options` setting in the URL.
            if code.starts_with("28") || code.starts_with("42") || code.starts_with("22") || code == "3D000" {
                Error::new(ErrorKind::Config, format!("postgres refused the connection ({code})"))
            } else {
                sqlstate::database_error(code, None)
            }
        }
        // No server code: an I/O failure is an outage; anything else (no
        // password given, an unsupported authentication method) is
        // configuration and stays wrong until it changes.
        None if std::error::Error::source(&e).is_some_and(|s| s.is::<io::Error>()) => {
            Error::new(ErrorKind::Unavailable, "cannot reach postgres").set_temporary(true)
        }
        None => Error::new(ErrorKind::Config, "postgres refused the connection settings"),
    };
    err.with_backend(BACKEND).with_op("connect").with_source(e)
}

/// Connections are replaced after this long (sqlx's default).
const MAX_LIFETIME: std::time::Duration = std::time::Duration::from_secs(30 * 60);
/// Connections idle this long are replaced rather than reused (sqlx's default).
const MAX_IDLE: std::time::Duration = std::time::Duration::from_secs(10 * 60);

/// deadpool's manager: opens connections as described above, discards one
/// that is closed or was left inside a transaction (a cancelled call).
pub struct Manager {
    pub(crate) target: Target,
}

impl deadpool::managed::Manager for Manager {
    type Type = Conn;
    type Error = Error;

    async fn create(&self) -> Result<Conn> {
        connect(&self.target).await
    }

    async fn recycle(
        &self,
        conn: &mut Conn,
        metrics: &deadpool::managed::Metrics,
    ) -> deadpool::managed::RecycleResult<Error> {
        // Rotated like sqlx's pool (pg-sqlx): no connection lives or idles
        // forever (server-side memory, load balancers dropping idle flows).
        if metrics.age() > MAX_LIFETIME || metrics.last_used() > MAX_IDLE {
            return Err(deadpool::managed::RecycleError::message("connection too old or idle too long"));
        }
        // diesel-async's own check, and the server's word: a `BEGIN` sent as
        // raw SQL and abandoned is invisible to diesel-async's transaction
        // manager but not to `ReadyForQuery`.
        if conn.conn.is_broken() || !conn.tap.idle() {
            return Err(deadpool::managed::RecycleError::message("connection closed or inside a transaction"));
        }
        conn.tap.take();
        Ok(())
    }
}

/// The pool of [`Conn`]s.
pub(crate) type Pool = deadpool::managed::Pool<Manager>;

/// A pooled connection; derefs to [`Conn`] and through it to diesel-async's
/// `AsyncPgConnection`.
///
/// Dropped inside a transaction — a call cancelled mid-transaction
/// (diesel-async issue #198), or a service's own transaction abandoned — it
/// closes the connection at once instead of parking it in the pool with the
/// transaction open: the server then rolls back and releases the locks as
/// soon as it notices, and the pool discards the closed connection when it
/// next recycles it.
pub struct PooledConnection(pub(crate) deadpool::managed::Object<Manager>);

impl Deref for PooledConnection {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        &self.0
    }
}

impl DerefMut for PooledConnection {
    fn deref_mut(&mut self) -> &mut Conn {
        &mut self.0
    }
}

impl Drop for PooledConnection {
    fn drop(&mut self) {
        let conn: &mut Conn = &mut self.0;
        if conn.conn.is_broken() || !conn.tap.idle() {
            conn.driver.abort();
        }
    }
}

/// The last server error code seen on one connection.
#[derive(Debug)]
pub(crate) struct Tap {
    code: Mutex<Option<[u8; 5]>>,
    /// The last `ReadyForQuery` status: `I` idle, `T` in a transaction,
    /// `E` in a failed transaction.
    status: AtomicU8,
}

impl Default for Tap {
    fn default() -> Self {
        Tap { code: Mutex::new(None), status: AtomicU8::new(b'I') }
    }
}

impl Tap {
    fn slot(&self) -> std::sync::MutexGuard<'_, Option<[u8; 5]>> {
        self.code.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set(&self, code: Option<[u8; 5]>) {
        *self.slot() = code;
    }

    fn set_status(&self, status: u8) {
        self.status.store(status, Ordering::Release);
    }

    /// Whether the server last said it is outside any transaction.
    pub(crate) fn idle(&self) -> bool {
        self.status.load(Ordering::Acquire) == b'I'
    }

    pub(crate) fn take(&self) -> Option<String> {
        self.slot().take().and_then(|c| std::str::from_utf8(&c).ok().map(str::to_owned))
    }
}

/// The socket, with the server's messages framed as they are read.
struct TapStream<S> {
    inner: S,
    tap: Arc<Tap>,
    frames: Frames,
}

impl<S: AsyncRead + Unpin> AsyncRead for TapStream<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            this.frames.feed(&buf.filled()[before..], &this.tap);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for TapStream<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Frames backend messages (type byte, big-endian length including itself,
/// body) across reads. Keeps the body of `ErrorResponse` (`E`, up to
/// [`MAX_ERROR_BODY`] bytes: its `C` field is the SQLSTATE) and of
/// `ReadyForQuery` (`Z`: the transaction status). `ParseComplete` (`1`) and
/// `BindComplete` (`2`), which start every extended-protocol statement,
/// clear the code, so a later statement never inherits an earlier one's;
/// a simple-protocol `ROLLBACK` after a failed statement does not (the
/// failed statement's caller still reads its code).
#[derive(Debug, Default)]
struct Frames {
    header: [u8; 5],
    have: usize,
    remaining: usize,
    body: Vec<u8>,
}

const MAX_ERROR_BODY: usize = 8 * 1024;

impl Frames {
    fn feed(&mut self, mut data: &[u8], tap: &Tap) {
        while !data.is_empty() {
            if self.have < 5 {
                let n = (5 - self.have).min(data.len());
                self.header[self.have..self.have + n].copy_from_slice(&data[..n]);
                self.have += n;
                data = &data[n..];
                if self.have == 5 {
                    let len = i32::from_be_bytes([self.header[1], self.header[2], self.header[3], self.header[4]]);
                    self.remaining = usize::try_from(len).unwrap_or(4).saturating_sub(4);
                    self.body.clear();
                    if self.remaining == 0 {
                        self.finish(tap);
                    }
                }
                continue;
            }
            let n = self.remaining.min(data.len());
            if matches!(self.header[0], b'E' | b'Z') && self.body.len() < MAX_ERROR_BODY {
                let room = MAX_ERROR_BODY - self.body.len();
                self.body.extend_from_slice(&data[..n.min(room)]);
            }
            self.remaining -= n;
            data = &data[n..];
            if self.remaining == 0 {
                self.finish(tap);
            }
        }
    }

    fn finish(&mut self, tap: &Tap) {
        match self.header[0] {
            b'E' => tap.set(error_code(&self.body)),
            b'1' | b'2' => tap.set(None),
            b'Z' => tap.set_status(self.body.first().copied().unwrap_or(b'?')),
            _ => {}
        }
        self.have = 0;
    }
}

/// The `C` field of an `ErrorResponse` body: `(type byte, C string)*, 0`.
fn error_code(mut body: &[u8]) -> Option<[u8; 5]> {
    while let Some((&field, rest)) = body.split_first() {
        if field == 0 {
            return None;
        }
        let end = rest.iter().position(|&b| b == 0)?;
        if field == b'C' {
            return rest[..end].try_into().ok();
        }
        body = &rest[end + 1..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![kind];
        m.extend_from_slice(&i32::try_from(body.len() + 4).unwrap().to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    fn error_response(code: &str) -> Vec<u8> {
        message(b'E', format!("SERROR\0VERROR\0C{code}\0Mvalue 'secret' is wrong\0\0").as_bytes())
    }

    #[test]
    fn the_code_of_an_error_response_is_kept_across_any_read_boundaries() {
        let mut stream = message(b'1', b"");
        stream.extend(message(b'D', &[0u8; 40]));
        stream.extend(error_response("55P03"));
        stream.extend(message(b'Z', b"I"));
        for chunk in [1, 2, 3, 7, 64, stream.len()] {
            let (tap, mut frames) = (Tap::default(), Frames::default());
            for piece in stream.chunks(chunk) {
                frames.feed(piece, &tap);
            }
            assert_eq!(tap.take().as_deref(), Some("55P03"), "chunks of {chunk}");
            assert_eq!(tap.take(), None, "taken once");
        }
    }

    #[test]
    fn a_later_statement_clears_an_earlier_code() {
        let (tap, mut frames) = (Tap::default(), Frames::default());
        frames.feed(&error_response("23505"), &tap);
        frames.feed(&message(b'2', b""), &tap);
        assert_eq!(tap.take(), None, "the next statement's BindComplete clears it");
        frames.feed(&error_response("40P01"), &tap);
        frames.feed(&message(b'C', b"ROLLBACK\0"), &tap);
        frames.feed(&message(b'Z', b"I"), &tap);
        assert_eq!(tap.take().as_deref(), Some("40P01"), "a ROLLBACK after the error keeps it");
    }

    #[test]
    fn ready_for_query_tells_whether_a_transaction_is_open() {
        let (tap, mut frames) = (Tap::default(), Frames::default());
        assert!(tap.idle());
        frames.feed(&message(b'C', b"BEGIN\0"), &tap);
        frames.feed(&message(b'Z', b"T"), &tap);
        assert!(!tap.idle());
        frames.feed(&message(b'Z', b"I"), &tap);
        assert!(tap.idle());
    }

    #[test]
    fn malformed_error_bodies_give_no_code() {
        assert_eq!(error_code(b"SERROR\0C12"), None, "unterminated");
        assert_eq!(error_code(b"SERROR\0\0"), None, "no C field");
        assert_eq!(error_code(b"C1234\0\0"), None, "not five bytes");
        assert_eq!(error_code(b"C40P01\0\0").map(|c| c.to_vec()), Some(b"40P01".to_vec()));
    }
}
