//! The one place sqlx errors become `palisade_core::Error`s. Kinds come from
//! SQLSTATE codes and sqlx's error variants, never from message text.

use palisade_core::{Error, ErrorDetail, ErrorKind};

use crate::BACKEND;

/// Kind and temporariness for a SQLSTATE code.
pub(crate) fn classify_sqlstate(code: &str) -> (ErrorKind, bool) {
    match code {
        // integrity: unique_violation, exclusion_violation
        "23505" | "23P01" => (ErrorKind::Conflict, false),
        // Palisade's own: a session key holds another type.
        "PA001" => (ErrorKind::Conflict, false),
        // numeric_value_out_of_range: a stored counter would overflow.
        "22003" => (ErrorKind::Conflict, false),
        // serialization_failure, deadlock_detected: retry may succeed.
        "40001" | "40P01" => (ErrorKind::Conflict, true),
        // query_canceled (statement_timeout), lock_not_available
        "57014" | "55P03" => (ErrorKind::Timeout, true),
        // admin/crash shutdown, cannot_connect_now, too_many_connections, connection exceptions
        "57P01" | "57P02" | "57P03" | "53300" => (ErrorKind::Unavailable, true),
        c if c.starts_with("08") => (ErrorKind::Unavailable, true),
        // insufficient resources (disk full, out of memory)
        c if c.starts_with("53") => (ErrorKind::Unavailable, true),
        // data exceptions: bad input that got past validation (e.g. \u0000 in jsonb)
        c if c.starts_with("22") => (ErrorKind::InvalidInput, false),
        // undefined_table / invalid_schema_name: namespace not migrated
        "42P01" | "3F000" => (ErrorKind::Config, false),
        _ => (ErrorKind::Unexpected, false),
    }
}

/// Maps a sqlx error from `op` to a Palisade error, keeping it as the source.
pub(crate) fn map(op: &'static str, e: sqlx::Error) -> Error {
    let (kind, temporary, detail, message) = match &e {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            let (kind, temporary) = classify_sqlstate(&code);
            let detail = (code == "23505" || code == "23P01")
                .then(|| ErrorDetail::UniqueViolation { index: db.constraint().unwrap_or("unknown").to_owned() });
            (kind, temporary, detail, format!("postgres error {code}"))
        }
        sqlx::Error::PoolTimedOut => (ErrorKind::Timeout, true, None, "timed out waiting for a connection".into()),
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => {
            (ErrorKind::Unavailable, true, None, "cannot reach postgres".into())
        }
        sqlx::Error::Protocol(_) => (ErrorKind::Unavailable, true, None, "postgres connection broke".into()),
        sqlx::Error::RowNotFound => (ErrorKind::NotFound, false, None, "no such row".into()),
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) | sqlx::Error::Encode(_) => {
            (ErrorKind::Serialization, false, None, "value could not be encoded or decoded".into())
        }
        sqlx::Error::Configuration(_) => (ErrorKind::Config, false, None, "invalid postgres configuration".into()),
        _ => (ErrorKind::Unexpected, false, None, "unexpected postgres error".into()),
    };
    let mut err = Error::new(kind, message).with_backend(BACKEND).with_op(op).set_temporary(temporary).with_source(e);
    if let Some(d) = detail {
        err = err.with_detail(d);
    }
    err
}

/// Maps a migration error.
pub(crate) fn map_migrate(e: sqlx::migrate::MigrateError) -> Error {
    match e {
        sqlx::migrate::MigrateError::Execute(inner) => map("migrate", inner),
        sqlx::migrate::MigrateError::ExecuteMigration(inner, version) => {
            let e = map("migrate", inner);
            let (kind, temporary) = (e.kind(), e.is_temporary());
            Error::new(kind, format!("migration {version} failed"))
                .with_backend(BACKEND)
                .with_op("migrate")
                .set_temporary(temporary)
                .with_source(e)
        }
        other => Error::new(ErrorKind::Config, format!("migrations could not be applied: {other}"))
            .with_backend(BACKEND)
            .with_op("migrate")
            .with_source(other),
    }
}

/// Tags an error from core validation with this backend and `op`.
pub(crate) fn tagged(op: &'static str) -> impl Fn(Error) -> Error {
    move |e| e.with_backend(BACKEND).with_op(op)
}

/// Faults the document store detects itself.
#[derive(Debug)]
pub(crate) enum DocumentFault {
    /// The collection does not exist.
    NoCollection,
    /// The collection exists with another spec.
    SpecMismatch,
    /// A document to replace does not exist (or expired).
    NoDocument,
    /// `_id` or a unique index already holds the value.
    Unique(String),
    /// A document's `_version` differs from the expected one.
    Version { expected: u64, actual: u64 },
}

impl From<DocumentFault> for Error {
    fn from(f: DocumentFault) -> Self {
        let e = match f {
            DocumentFault::NoCollection => {
                Error::new(ErrorKind::NotFound, "no such collection; call ensure_collection first")
            }
            DocumentFault::SpecMismatch => Error::new(ErrorKind::Conflict, "collection exists with a different spec"),
            DocumentFault::NoDocument => Error::new(ErrorKind::NotFound, "no document with that id"),
            DocumentFault::Unique(index) => {
                Error::new(ErrorKind::Conflict, format!("duplicate value for unique index `{index}`"))
                    .with_detail(ErrorDetail::UniqueViolation { index })
            }
            DocumentFault::Version { expected, actual } => {
                Error::new(ErrorKind::Conflict, "document `_version` changed")
                    .with_detail(ErrorDetail::DocumentVersionConflict { expected, actual })
            }
        };
        e.with_backend(BACKEND)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_violation_is_conflict() {
        assert_eq!(classify_sqlstate("23505"), (ErrorKind::Conflict, false));
    }

    #[test]
    fn connection_failures_are_temporary_unavailable() {
        for code in ["08006", "08001", "57P01", "57P03", "53300"] {
            assert_eq!(classify_sqlstate(code), (ErrorKind::Unavailable, true), "{code}");
        }
    }

    #[test]
    fn statement_timeout_is_temporary_timeout() {
        assert_eq!(classify_sqlstate("57014"), (ErrorKind::Timeout, true));
    }

    #[test]
    fn serialization_failures_are_retryable_conflicts() {
        assert_eq!(classify_sqlstate("40001"), (ErrorKind::Conflict, true));
    }

    #[test]
    fn wrong_type_and_overflow_are_conflicts() {
        assert_eq!(classify_sqlstate("PA001").0, ErrorKind::Conflict);
        assert_eq!(classify_sqlstate("22003").0, ErrorKind::Conflict);
    }

    #[test]
    fn io_errors_and_pool_timeouts_are_temporary() {
        let io = map("get", sqlx::Error::Io(std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused")));
        assert_eq!((io.kind(), io.is_temporary()), (ErrorKind::Unavailable, true));
        assert!(std::error::Error::source(&io).is_some(), "driver error kept as source");
        let t = map("get", sqlx::Error::PoolTimedOut);
        assert_eq!((t.kind(), t.is_temporary()), (ErrorKind::Timeout, true));
    }

    #[test]
    fn decode_errors_are_serialization() {
        let e = map("get", sqlx::Error::Decode("bad".into()));
        assert_eq!(e.kind(), ErrorKind::Serialization);
    }
}
