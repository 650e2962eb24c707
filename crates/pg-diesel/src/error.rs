//! The one place diesel, diesel-async and pool errors become
//! `palisade_core::Error`s. Kinds come from SQLSTATE codes (pg-common's
//! table, shared by every Postgres backend) — read off the protocol by the
//! connection's tap, because diesel 2.3 does not expose them — and from
//! diesel's error variants, never from message text.

use diesel::result::{DatabaseErrorKind, Error as DieselError};
use palisade_core::{Error, ErrorKind};
use palisade_pg_common::sqlstate;

use crate::BACKEND;

/// Maps a diesel error from `op`, given the SQLSTATE the connection's tap
/// saw for it (if any), keeping the diesel error as the source.
pub(crate) fn map(op: &'static str, e: DieselError, code: Option<String>) -> Error {
    let err = match &e {
        DieselError::DatabaseError(kind, info) => match kind {
            // No server error behind these: the connection is gone.
            DatabaseErrorKind::UnableToSendCommand | DatabaseErrorKind::ClosedConnection => {
                Error::new(ErrorKind::Unavailable, "postgres connection broke").set_temporary(true)
            }
            _ => {
                // diesel's kind, where it names one, wins over a tapped code
                // that disagrees (the tap keeps one code per connection).
                let code = match (code_of(kind), code) {
                    (Some(known), Some(tapped)) if tapped != known => known.to_owned(),
                    (known, tapped) => tapped.or(known.map(str::to_owned)).unwrap_or_default(),
                };
                sqlstate::database_error(&code, info.constraint_name())
            }
        },
        DieselError::BrokenTransactionManager => {
            Error::new(ErrorKind::Unavailable, "postgres connection broke").set_temporary(true)
        }
        DieselError::NotFound => Error::new(ErrorKind::NotFound, "no such row"),
        DieselError::DeserializationError(_) | DieselError::SerializationError(_) => {
            Error::new(ErrorKind::Serialization, "value could not be encoded or decoded")
        }
        _ => Error::new(ErrorKind::Unexpected, "unexpected postgres error"),
    };
    err.with_backend(BACKEND).with_op(op).with_source(e)
}

/// Tags an error from core validation (or a store's own check) with this
/// backend and `op`.
pub(crate) fn tagged(op: &'static str) -> impl Fn(Error) -> Error {
    move |e| e.with_backend(BACKEND).with_op(op)
}

/// What a transaction's body fails with: a statement's error (mapped once
/// the transaction is over, with the SQLSTATE the connection saw) or a
/// Palisade error the store raised itself (which rolls the transaction back
/// just the same).
#[derive(Debug)]
pub(crate) enum TxError {
    Db(DieselError),
    Palisade(Error),
}

impl From<DieselError> for TxError {
    fn from(e: DieselError) -> Self {
        TxError::Db(e)
    }
}

impl From<Error> for TxError {
    fn from(e: Error) -> Self {
        TxError::Palisade(e)
    }
}

/// The code behind a diesel error kind, for when the tap saw none.
/// The SQLSTATE diesel's own error kind names, for errors of a connection
/// without the tap (a caller's, in `append_in`).
pub(crate) fn sqlstate_of(e: &DieselError) -> Option<String> {
    match e {
        DieselError::DatabaseError(kind, _) => code_of(kind).map(str::to_owned),
        _ => None,
    }
}

fn code_of(kind: &DatabaseErrorKind) -> Option<&'static str> {
    Some(match kind {
        DatabaseErrorKind::UniqueViolation => "23505",
        DatabaseErrorKind::ExclusionViolation => "23P01",
        DatabaseErrorKind::SerializationFailure => "40001",
        DatabaseErrorKind::ForeignKeyViolation => "23503",
        DatabaseErrorKind::NotNullViolation => "23502",
        DatabaseErrorKind::CheckViolation => "23514",
        DatabaseErrorKind::RestrictViolation => "23001",
        DatabaseErrorKind::ReadOnlyTransaction => "25006",
        _ => return None,
    })
}

/// Maps a pool error: waiting for a connection timed out, or creating one
/// failed (already mapped by the connection code).
pub(crate) fn pool(op: &'static str, e: deadpool::managed::PoolError<Error>) -> Error {
    use deadpool::managed::PoolError;
    match e {
        PoolError::Backend(e) => e.with_op(op),
        PoolError::Timeout(_) => Error::new(ErrorKind::Timeout, "timed out waiting for a postgres connection")
            .set_temporary(true)
            .with_backend(BACKEND)
            .with_op(op),
        PoolError::Closed => Error::new(ErrorKind::Unavailable, "the postgres pool is closed")
            .set_temporary(true)
            .with_backend(BACKEND)
            .with_op(op),
        other => Error::new(ErrorKind::Unexpected, "postgres pool failure")
            .with_backend(BACKEND)
            .with_op(op)
            .with_source(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(kind: DatabaseErrorKind) -> DieselError {
        DieselError::DatabaseError(kind, Box::new("value 'hostile' is wrong".to_owned()))
    }

    #[test]
    fn the_tapped_code_decides_the_kind() {
        let cases = [
            ("55P03", ErrorKind::Timeout, true),
            ("57014", ErrorKind::Timeout, true),
            ("PA001", ErrorKind::Conflict, false),
            ("22003", ErrorKind::Conflict, false),
            ("40P01", ErrorKind::Conflict, true),
            ("57P01", ErrorKind::Unavailable, true),
            ("42P01", ErrorKind::Config, false),
        ];
        for (code, kind, temporary) in cases {
            let e = map("op", db(DatabaseErrorKind::Unknown), Some(code.to_owned()));
            assert_eq!((e.kind(), e.is_temporary()), (kind, temporary), "{code}");
            assert!(!e.to_string().contains("hostile"), "server messages are not repeated: {e}");
        }
    }

    #[test]
    fn without_a_code_diesel_kinds_still_map() {
        let e = map("insert", db(DatabaseErrorKind::UniqueViolation), None);
        assert_eq!(e.kind(), ErrorKind::Conflict);
        let e = map("get", db(DatabaseErrorKind::Unknown), None);
        assert_eq!(e.kind(), ErrorKind::Unexpected);
        let e = map("get", db(DatabaseErrorKind::ClosedConnection), Some("23505".into()));
        assert_eq!((e.kind(), e.is_temporary()), (ErrorKind::Unavailable, true), "a stale code is ignored");
        assert!(std::error::Error::source(&e).is_some(), "driver error kept as source");
    }

    #[test]
    fn other_diesel_errors_map_by_variant() {
        assert_eq!(map("get", DieselError::NotFound, None).kind(), ErrorKind::NotFound);
        let e = map("get", DieselError::DeserializationError("bad".into()), None);
        assert_eq!(e.kind(), ErrorKind::Serialization);
        let e = map("append", DieselError::BrokenTransactionManager, None);
        assert_eq!((e.kind(), e.is_temporary()), (ErrorKind::Unavailable, true));
    }

    #[test]
    fn pool_timeouts_are_temporary() {
        let e = pool("get", deadpool::managed::PoolError::Timeout(deadpool::managed::TimeoutType::Wait));
        assert_eq!((e.kind(), e.is_temporary()), (ErrorKind::Timeout, true));
    }
}
