//! The one error type every Palisade store returns.
//!
//! An [`Error`] is a value with a [`ErrorKind`], the backend and operation that
//! produced it, whether retrying may help (`temporary`), and the driver error as
//! its `source` — boxed, never flattened into a string. Backends build errors in
//! exactly one place (their `error.rs`), so callers can match on kinds instead of
//! parsing messages.

use std::borrow::Cow;
use std::error::Error as StdError;
use std::fmt;

/// What went wrong, as far as a caller needs to decide what to do next.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The caller's input is malformed or out of range. Nothing was changed.
    InvalidInput,
    /// The addressed thing (collection, document) does not exist.
    NotFound,
    /// A uniqueness rule, an expected version or a stored value's type disagrees
    /// with the request. Nothing was changed.
    Conflict,
    /// A document write would break its collection's JSON schema. Nothing was changed.
    SchemaViolation,
    /// The backend does not offer this operation or capability.
    Unsupported,
    /// The backend could not be reached or refused service. Usually temporary.
    Unavailable,
    /// The backend did not answer in time. The operation may or may not have happened.
    Timeout,
    /// A value could not be encoded or decoded.
    Serialization,
    /// The store is misconfigured (bad URL, missing feature, bad namespace).
    Config,
    /// The server refused the operation to this role or user (a missing
    /// grant or ACL rule: SQLSTATE 42501, Redis `NOPERM`, Mongo
    /// `Unauthorized`). Not temporary; nothing was changed.
    PermissionDenied,
    /// Anything else: a bug, or a backend answer that breaks an invariant.
    Unexpected,
}

impl ErrorKind {
    /// A stable snake_case name, used in `Display` and in machine-readable output.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::SchemaViolation => "schema_violation",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Serialization => "serialization",
            ErrorKind::Config => "config",
            ErrorKind::PermissionDenied => "permission_denied",
            ErrorKind::Unexpected => "unexpected",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Structured detail for the errors a caller is expected to act on.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorDetail {
    /// An `append` named an expected stream version that did not hold.
    VersionConflict {
        /// The stream whose version was checked.
        stream: String,
        /// What the caller expected.
        expected: crate::version::ExpectedVersion,
        /// The stream's version at the time of the check (0 = no stream).
        actual: u64,
    },
    /// A document `replace` named an expected `_version` that did not hold.
    DocumentVersionConflict {
        /// What the caller expected.
        expected: u64,
        /// The stored version.
        actual: u64,
    },
    /// A unique index (or `_id`) already holds the value.
    UniqueViolation {
        /// The index name (`_id` for the primary key).
        index: String,
    },
    /// A durable consumer's lease: held by another instance, or no longer
    /// held by this one.
    ConsumerLease {
        /// The consumer's name.
        consumer: String,
        /// True when another live instance holds it (a waiting start retries);
        /// false when this instance's lease is gone.
        held_elsewhere: bool,
    },
    /// The operation exists on other backends.
    SupportedBy {
        /// Backend ids that offer the operation.
        backends: &'static [&'static str],
    },
}

type Source = Box<dyn StdError + Send + Sync + 'static>;

/// A Palisade error. See the module docs. One pointer wide: the details live
/// behind a `Box`, so `Result<T>` stays small on the happy path.
pub struct Error {
    inner: Box<Inner>,
}

struct Inner {
    kind: ErrorKind,
    backend: &'static str,
    op: &'static str,
    temporary: bool,
    message: Cow<'static, str>,
    detail: Option<ErrorDetail>,
    source: Option<Source>,
}

/// `Result` with Palisade's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A new error of `kind` with a human-readable message (never containing
    /// stored values or credentials). `Unavailable` and `Timeout` start out
    /// temporary.
    pub fn new(kind: ErrorKind, message: impl Into<Cow<'static, str>>) -> Self {
        Error {
            inner: Box::new(Inner {
                kind,
                backend: "",
                op: "",
                temporary: matches!(kind, ErrorKind::Unavailable | ErrorKind::Timeout),
                message: message.into(),
                detail: None,
                source: None,
            }),
        }
    }

    /// Shorthand for `Error::new(ErrorKind::InvalidInput, msg)`.
    pub fn invalid(message: impl Into<Cow<'static, str>>) -> Self {
        Error::new(ErrorKind::InvalidInput, message)
    }

    /// Shorthand for an `Unsupported` error naming the backends that do offer it.
    pub fn unsupported(message: impl Into<Cow<'static, str>>, supported_by: &'static [&'static str]) -> Self {
        Error::new(ErrorKind::Unsupported, message).with_detail(ErrorDetail::SupportedBy { backends: supported_by })
    }

    /// Sets the backend id (`memory`, `pg_sqlx`, …).
    pub fn with_backend(mut self, backend: &'static str) -> Self {
        self.inner.backend = backend;
        self
    }

    /// Sets the operation name (`append`, `set`, …) if none is set yet.
    pub fn with_op(mut self, op: &'static str) -> Self {
        if self.inner.op.is_empty() {
            self.inner.op = op;
        }
        self
    }

    /// Attaches the underlying driver error.
    pub fn with_source(mut self, source: impl Into<Source>) -> Self {
        self.inner.source = Some(source.into());
        self
    }

    /// Attaches structured detail.
    pub fn with_detail(mut self, detail: ErrorDetail) -> Self {
        self.inner.detail = Some(detail);
        self
    }

    /// Marks whether retrying the same call may succeed.
    pub fn set_temporary(mut self, temporary: bool) -> Self {
        self.inner.temporary = temporary;
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }

    /// The backend id that produced the error (empty when raised by core validation).
    pub fn backend(&self) -> &'static str {
        self.inner.backend
    }

    /// The operation that failed.
    pub fn op(&self) -> &'static str {
        self.inner.op
    }

    /// Whether retrying the same call may succeed.
    pub fn is_temporary(&self) -> bool {
        self.inner.temporary
    }

    /// The human-readable message, without backend/op decoration.
    pub fn message(&self) -> &str {
        &self.inner.message
    }

    /// Structured detail, when the kind has any.
    pub fn detail(&self) -> Option<&ErrorDetail> {
        self.inner.detail.as_ref()
    }

    /// True when this is a failure of the backend itself (`Unavailable` or
    /// `Timeout`) rather than of the request: the kinds `Degradable` fails over on.
    pub fn is_backend_failure(&self) -> bool {
        matches!(self.inner.kind, ErrorKind::Unavailable | ErrorKind::Timeout)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.inner.kind);
        if !self.inner.backend.is_empty() {
            d.field("backend", &self.inner.backend);
        }
        if !self.inner.op.is_empty() {
            d.field("op", &self.inner.op);
        }
        d.field("temporary", &self.inner.temporary).field("message", &self.inner.message);
        if let Some(detail) = &self.inner.detail {
            d.field("detail", detail);
        }
        if let Some(source) = &self.inner.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.inner.kind)?;
        match (self.inner.backend.is_empty(), self.inner.op.is_empty()) {
            (false, false) => write!(f, " ({} {})", self.inner.backend, self.inner.op)?,
            (false, true) => write!(f, " ({})", self.inner.backend)?,
            (true, false) => write!(f, " ({})", self.inner.op)?,
            (true, true) => {}
        }
        write!(f, ": {}", self.inner.message)?;
        if let Some(ErrorDetail::SupportedBy { backends }) = &self.inner.detail {
            write!(f, " (supported by: {})", backends.join(", "))?;
        }
        if self.inner.temporary {
            f.write_str(" [temporary]")?;
        }
        Ok(())
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.inner.source.as_ref().map(|s| s.as_ref() as &(dyn StdError + 'static))
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::new(ErrorKind::Serialization, "JSON (de)serialization failed").with_source(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unavailable_and_timeout_start_temporary() {
        assert!(Error::new(ErrorKind::Unavailable, "x").is_temporary());
        assert!(Error::new(ErrorKind::Timeout, "x").is_temporary());
        assert!(!Error::new(ErrorKind::Conflict, "x").is_temporary());
    }

    #[test]
    fn source_is_kept_not_flattened() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = Error::new(ErrorKind::Unavailable, "connect failed").with_source(io);
        let src = StdError::source(&e).and_then(|s| s.downcast_ref::<std::io::Error>());
        assert_eq!(src.map(|s| s.kind()), Some(std::io::ErrorKind::ConnectionRefused));
    }

    #[test]
    fn display_names_kind_backend_and_op() {
        let e = Error::invalid("key is empty").with_backend("memory").with_op("set");
        assert_eq!(e.to_string(), "invalid_input (memory set): key is empty");
    }

    #[test]
    fn with_op_keeps_the_innermost_op() {
        let e = Error::invalid("x").with_op("inner").with_op("outer");
        assert_eq!(e.op(), "inner");
    }
}
