//! The one place driver errors become `palisade_core::Error`s: kinds from
//! server error codes and the driver's error labels and variants, never
//! from message text (which may echo stored values).

use mongodb::error::{
    Error as MongoError, ErrorKind as MongoKind, WriteFailure, RETRYABLE_WRITE_ERROR, TRANSIENT_TRANSACTION_ERROR,
    UNKNOWN_TRANSACTION_COMMIT_RESULT,
};
use palisade_core::{Error, ErrorKind};

use crate::BACKEND;

/// Server error codes Palisade tells apart.
pub(crate) mod code {
    pub const DUPLICATE_KEY: i32 = 11000;
    pub const DUPLICATE_KEY_LEGACY: i32 = 11001;
    pub const DOCUMENT_VALIDATION_FAILURE: i32 = 121;
    pub const WRITE_CONFLICT: i32 = 112;
    pub const MAX_TIME_MS_EXPIRED: i32 = 50;
    pub const NO_SUCH_TRANSACTION: i32 = 251;
    pub const NAMESPACE_NOT_FOUND: i32 = 26;
    pub const UNAUTHORIZED: i32 = 13;
    pub const AUTHENTICATION_FAILED: i32 = 18;
    pub const NETWORK_TIMEOUT: i32 = 89;
    /// `$toLong` and friends in an update pipeline: not a number, or out of range.
    pub const CONVERSION_FAILURE: i32 = 241;
}

/// Tags an error from core validation (or a store's own check) with this
/// backend and `op`.
pub(crate) fn tagged(op: &'static str) -> impl Fn(Error) -> Error {
    move |e| e.with_backend(BACKEND).with_op(op)
}

/// The server error code of `e`, if the server answered with one (a
/// command error, or the first write error of a write).
pub(crate) fn server_code(e: &MongoError) -> Option<i32> {
    match &*e.kind {
        MongoKind::Command(c) => Some(c.code),
        MongoKind::Write(WriteFailure::WriteError(w)) => Some(w.code),
        MongoKind::Write(WriteFailure::WriteConcernError(w)) => Some(w.code),
        MongoKind::InsertMany(m) => m.write_errors.as_deref().and_then(<[_]>::first).map(|w| w.code),
        _ => None,
    }
}

/// Whether `e` is a duplicate key (a unique index, `_id` included, already
/// holds the value).
pub(crate) fn is_duplicate_key(e: &MongoError) -> bool {
    server_code(e) == Some(code::DUPLICATE_KEY)
}

/// Maps a driver error from `op`, keeping it as the source.
pub(crate) fn map(op: &'static str, e: MongoError) -> Error {
    // Labels the server or driver attach when a retry can succeed.
    let retryable = [TRANSIENT_TRANSACTION_ERROR, RETRYABLE_WRITE_ERROR, UNKNOWN_TRANSACTION_COMMIT_RESULT]
        .iter()
        .any(|label| e.contains_label(label));
    let err = match &*e.kind {
        MongoKind::Io(_) | MongoKind::ConnectionPoolCleared { .. } | MongoKind::ServerSelection { .. } => {
            Error::new(ErrorKind::Unavailable, "cannot reach mongo").set_temporary(true)
        }
        MongoKind::Shutdown => Error::new(ErrorKind::Unavailable, "the mongo client is shut down"),
        MongoKind::DnsResolve { .. } => {
            Error::new(ErrorKind::Unavailable, "cannot resolve the mongo servers").set_temporary(true)
        }
        MongoKind::Authentication { .. } => Error::new(ErrorKind::Config, "mongo refused the credentials"),
        MongoKind::InvalidTlsConfig { .. } => Error::new(ErrorKind::Config, "invalid mongo TLS settings"),
        MongoKind::Command(c) => by_code(c.code),
        MongoKind::Write(WriteFailure::WriteError(w)) => by_code(w.code),
        MongoKind::Write(WriteFailure::WriteConcernError(w)) => by_code(w.code),
        MongoKind::InsertMany(m) => match (m.write_errors.as_deref().and_then(<[_]>::first), &m.write_concern_error) {
            (Some(w), _) => by_code(w.code),
            (None, Some(w)) => by_code(w.code),
            (None, None) => Error::new(ErrorKind::Unexpected, "insert failed"),
        },
        MongoKind::BulkWrite(b) => match b.write_errors.values().next() {
            Some(w) => by_code(w.code),
            None => match b.write_concern_errors.first() {
                Some(w) => by_code(w.code),
                None => Error::new(ErrorKind::Unexpected, "bulk write failed"),
            },
        },
        MongoKind::BsonDeserialization(_) | MongoKind::BsonSerialization(_) | MongoKind::Bson(_) => {
            Error::new(ErrorKind::Serialization, "value could not be encoded or decoded")
        }
        MongoKind::SessionsNotSupported | MongoKind::IncompatibleServer { .. } => {
            Error::new(ErrorKind::Unsupported, "the mongo server does not support this operation")
        }
        _ => Error::new(ErrorKind::Unexpected, "unexpected mongo error"),
    };
    let err = if retryable { err.set_temporary(true) } else { err };
    let err = err.with_backend(BACKEND).with_op(op);
    // A server's message may quote stored values (a duplicate key, a value
    // that failed a conversion): its code is in the message, the error
    // itself is not kept. Client-side errors are.
    if server_code(&e).is_some() {
        err
    } else {
        err.with_source(e)
    }
}

/// The kind of a server error code.
fn by_code(code: i32) -> Error {
    match code {
        code::DUPLICATE_KEY | code::DUPLICATE_KEY_LEGACY => {
            Error::new(ErrorKind::Conflict, format!("a unique index already holds this value ({code})"))
        }
        code::DOCUMENT_VALIDATION_FAILURE => {
            Error::new(ErrorKind::SchemaViolation, "the collection's validator refused the document")
        }
        code::WRITE_CONFLICT | code::NO_SUCH_TRANSACTION => {
            Error::new(ErrorKind::Conflict, "a concurrent write conflicted; retry").set_temporary(true)
        }
        code::MAX_TIME_MS_EXPIRED | code::NETWORK_TIMEOUT => {
            Error::new(ErrorKind::Timeout, "the mongo operation timed out").set_temporary(true)
        }
        code::NAMESPACE_NOT_FOUND => Error::new(ErrorKind::NotFound, "no such collection"),
        // BSONObjectTooLarge, and a document an update would grow past 16 MiB:
        // refused by the server, nothing changed.
        10334 | 17419 | 17420 => Error::new(
            ErrorKind::InvalidInput,
            format!("the value would exceed MongoDB's 16 MiB document limit ({code})"),
        ),
        code::UNAUTHORIZED => {
            Error::new(ErrorKind::PermissionDenied, format!("the mongo user may not run this operation ({code})"))
        }
        code::AUTHENTICATION_FAILED => Error::new(ErrorKind::Config, format!("mongo refused the credentials ({code})")),
        // HostUnreachable, HostNotFound, ShutdownInProgress, InterruptedAtShutdown,
        // InterruptedDueToReplStateChange, NotWritablePrimary, NotPrimaryNoSecondaryOk,
        // NotPrimaryOrSecondary, PrimarySteppedDown, SocketException.
        6 | 7 | 91 | 11600 | 11602 | 10107 | 13435 | 13436 | 189 | 9001 => {
            Error::new(ErrorKind::Unavailable, format!("mongo is not available ({code})")).set_temporary(true)
        }
        // BadValue, FailedToParse, TypeMismatch, InvalidLength, DollarPrefixedFieldName,
        // EmptyFieldName, ConflictingUpdateOperators, ImmutableField, InvalidOptions.
        2 | 9 | 14 | 16 | 52 | 56 | 40 | 66 | 72 => {
            Error::new(ErrorKind::InvalidInput, format!("mongo refused the request ({code})"))
        }
        _ => Error::new(ErrorKind::Unexpected, format!("unexpected mongo error ({code})")),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use mongodb::bson::doc;
    use mongodb::error::CommandError;

    use super::*;

    fn command(code: i32) -> MongoError {
        let c: CommandError = mongodb::bson::deserialize_from_document(
            doc! {"code": code, "codeName": "X", "errmsg": "value 'hostile' is wrong"},
        )
        .expect("a command error document");
        MongoError::from(MongoKind::Command(c))
    }

    #[test]
    fn server_codes_decide_the_kind() {
        let cases = [
            (11000, ErrorKind::Conflict, false),
            (121, ErrorKind::SchemaViolation, false),
            (112, ErrorKind::Conflict, true),
            (50, ErrorKind::Timeout, true),
            (26, ErrorKind::NotFound, false),
            (13, ErrorKind::PermissionDenied, false),
            (18, ErrorKind::Config, false),
            (91, ErrorKind::Unavailable, true),
            (2, ErrorKind::InvalidInput, false),
            (17419, ErrorKind::InvalidInput, false),
            (99999, ErrorKind::Unexpected, false),
        ];
        for (code, kind, temporary) in cases {
            let e = map("op", command(code));
            assert_eq!((e.kind(), e.is_temporary()), (kind, temporary), "{code}");
            let shown = format!("{e} {e:?}");
            assert!(!shown.contains("hostile"), "server messages (which may quote values) are not kept: {shown}");
        }
    }

    #[test]
    fn network_failures_are_temporarily_unavailable() {
        let io = MongoError::from(MongoKind::Io(Arc::new(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))));
        let e = map("ping", io);
        assert_eq!((e.kind(), e.is_temporary()), (ErrorKind::Unavailable, true));
        assert!(std::error::Error::source(&e).is_some(), "client-side errors are kept as source");
        let e = map("get", MongoError::from(MongoKind::SessionsNotSupported));
        assert_eq!(e.kind(), ErrorKind::Unsupported);
    }
}
