//! The one place sqlx errors become `palisade_core::Error`s. Kinds come from
//! SQLSTATE codes (pg-common's table, shared by every Postgres backend) and
//! sqlx's error variants, never from message text.

use palisade_core::{Error, ErrorKind};
use palisade_pg_common::sqlstate;

use crate::BACKEND;

/// Maps a sqlx error from `op` to a Palisade error, keeping it as the source.
pub(crate) fn map(op: &'static str, e: sqlx::Error) -> Error {
    let err = match &e {
        sqlx::Error::Database(db) => {
            sqlstate::database_error(db.code().as_deref().unwrap_or_default(), db.constraint())
        }
        sqlx::Error::PoolTimedOut => {
            Error::new(ErrorKind::Timeout, "timed out waiting for a connection").set_temporary(true)
        }
        // A certificate that does not verify is no outage: it stays wrong until
        // the configuration changes (with a fallback, boot fails instead of
        // waiting for it).
        sqlx::Error::Tls(_) => Error::new(ErrorKind::Config, "TLS with postgres failed"),
        sqlx::Error::Io(_) | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => {
            Error::new(ErrorKind::Unavailable, "cannot reach postgres").set_temporary(true)
        }
        sqlx::Error::Protocol(_) => Error::new(ErrorKind::Unavailable, "postgres connection broke").set_temporary(true),
        sqlx::Error::RowNotFound => Error::new(ErrorKind::NotFound, "no such row"),
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) | sqlx::Error::Encode(_) => {
            Error::new(ErrorKind::Serialization, "value could not be encoded or decoded")
        }
        sqlx::Error::Configuration(_) => Error::new(ErrorKind::Config, "invalid postgres configuration"),
        _ => Error::new(ErrorKind::Unexpected, "unexpected postgres error"),
    };
    err.with_backend(BACKEND).with_op(op).with_source(e)
}

/// Whether `e` is the server's `lock_not_available` (a `lock_timeout` expired).
pub(crate) fn is_lock_not_available(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some(sqlstate::LOCK_NOT_AVAILABLE))
}

/// Tags an error from core validation with this backend and `op`.
pub(crate) fn tagged(op: &'static str) -> impl Fn(Error) -> Error {
    move |e| e.with_backend(BACKEND).with_op(op)
}

#[cfg(test)]
mod tests {
    use super::*;

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
