//! Where client errors become `palisade_core::Error`s: one mapping function per
//! client ([`map_redis_rs`], [`map_fred`]) over one shared table of Redis error
//! codes ([`classify_code`]).
//!
//! Kinds come from the client's error kind (I/O, timeout, auth, …) and from
//! the reply's error *code* — the first word of a Redis error reply, which the
//! protocol defines (`WRONGTYPE`, `LOADING`, …; our scripts raise `WRONGTYPE`
//! and `OVERFLOW`). Messages are never parsed beyond that code.
//!
//! | cause | kind | temporary |
//! |---|---|---|
//! | connection refused / reset / dropped, cluster down, `LOADING`, `BUSY`, `MASTERDOWN`, `TRYAGAIN`, `READONLY`, `OOM` | `Unavailable` | yes |
//! | response or connect timeout | `Timeout` | yes |
//! | `WRONGTYPE` (a key holds another type), `OVERFLOW` (counter) | `Conflict` | no |
//! | authentication, bad URL or client configuration | `Config` | no |
//! | `NOPERM` (the ACL user may not run the command or touch the key) | `PermissionDenied` | no |
//! | anything else (`ERR`, script errors, unexpected replies) | `Unexpected` | no |

use palisade_core::{Error, ErrorKind};

/// Kind and temporariness for a Redis error code (the first word of an error reply).
pub(crate) fn classify_code(code: &str) -> (ErrorKind, bool) {
    match code {
        "WRONGTYPE" | "OVERFLOW" => (ErrorKind::Conflict, false),
        "LOADING" | "BUSY" | "MASTERDOWN" | "CLUSTERDOWN" | "TRYAGAIN" | "READONLY" | "OOM" | "MOVED" | "ASK" => {
            (ErrorKind::Unavailable, true)
        }
        "NOAUTH" | "WRONGPASS" => (ErrorKind::Config, false),
        // The ACL user may not run this command or touch this key.
        "NOPERM" => (ErrorKind::PermissionDenied, false),
        _ => (ErrorKind::Unexpected, false),
    }
}

fn build(
    backend: &'static str,
    op: &'static str,
    kind: ErrorKind,
    temporary: bool,
    message: String,
    source: impl std::error::Error + Send + Sync + 'static,
) -> Error {
    Error::new(kind, message).with_backend(backend).with_op(op).set_temporary(temporary).with_source(source)
}

/// Maps a redis-rs error from `op`, keeping it as the source.
#[cfg(feature = "redis-rs")]
pub(crate) fn map_redis_rs(op: &'static str, e: redis::RedisError) -> Error {
    use redis::ErrorKind as K;
    let backend = crate::ClientKind::RedisRs.backend();
    let (kind, temporary, message) = if e.is_timeout() {
        (ErrorKind::Timeout, true, "redis did not answer in time".to_owned())
    } else if e.is_connection_refusal() || e.is_connection_dropped() || e.is_io_error() {
        (ErrorKind::Unavailable, true, "cannot reach redis".to_owned())
    } else {
        match e.kind() {
            K::AuthenticationFailed | K::InvalidClientConfig => {
                (ErrorKind::Config, false, "redis rejected the configuration or credentials".to_owned())
            }
            K::ClusterConnectionNotFound => {
                (ErrorKind::Unavailable, true, "no connection to the cluster node".to_owned())
            }
            K::Parse | K::UnexpectedReturnType => (ErrorKind::Unexpected, false, "unexpected redis reply".to_owned()),
            _ => {
                let code = e.code().unwrap_or("").to_owned();
                let (kind, temporary) = classify_code(&code);
                (kind, temporary, format!("redis error {code}"))
            }
        }
    };
    build(backend, op, kind, temporary, message, e)
}

/// Maps a fred error from `op`, keeping it as the source.
#[cfg(feature = "fred")]
pub(crate) fn map_fred(op: &'static str, e: fred::error::Error) -> Error {
    use fred::error::ErrorKind as K;
    let backend = crate::ClientKind::Fred.backend();
    let (kind, temporary, message) = match e.kind() {
        K::Timeout => (ErrorKind::Timeout, true, "redis did not answer in time".to_owned()),
        K::IO | K::Canceled | K::Cluster | K::Routing | K::Backpressure => {
            (ErrorKind::Unavailable, true, "cannot reach redis".to_owned())
        }
        K::Auth | K::Config | K::Url => {
            (ErrorKind::Config, false, "redis rejected the configuration or credentials".to_owned())
        }
        K::Protocol | K::Parse | K::NotFound => (ErrorKind::Unexpected, false, "unexpected redis reply".to_owned()),
        _ => {
            // Server errors: fred keeps the reply, whose first word is the code
            // (Redis codes are upper-case words: ERR, WRONGTYPE, LOADING, …).
            let code = e.details().split_whitespace().next().unwrap_or("").to_owned();
            if is_server_code(&code) {
                let (kind, temporary) = classify_code(&code);
                (kind, temporary, format!("redis error {code}"))
            } else {
                // fred's own failures without a server reply, e.g. "Failed to
                // route command." while the connection is down, or "Max
                // attempts exceeded": the server is not reachable right now.
                (ErrorKind::Unavailable, true, "redis client could not deliver the command".to_owned())
            }
        }
    };
    build(backend, op, kind, temporary, message, e)
}

/// Whether `word` looks like a Redis error code (upper-case ASCII letters).
#[cfg(feature = "fred")]
fn is_server_code(word: &str) -> bool {
    !word.is_empty() && word.bytes().all(|b| b.is_ascii_uppercase())
}

/// Tags an error from core validation (or shared code) with the backend and `op`.
pub(crate) fn tagged(backend: &'static str, op: &'static str) -> impl Fn(Error) -> Error {
    move |e| e.with_backend(backend).with_op(op)
}

/// An answer of Redis that breaks an invariant of our own layout.
pub(crate) fn corrupt(backend: &'static str, what: &'static str) -> Error {
    Error::new(ErrorKind::Unexpected, format!("unexpected data in redis: {what}")).with_backend(backend)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "fred")]
    #[test]
    fn fred_routing_failures_are_temporary_unavailable() {
        use ::fred::error::{Error as FredError, ErrorKind as FredKind};
        let e = map_fred("get", FredError::new(FredKind::Unknown, "Failed to route command."));
        assert_eq!((e.kind(), e.is_temporary()), (ErrorKind::Unavailable, true));
        let e = map_fred("get", FredError::new(FredKind::Unknown, "WRONGTYPE Operation against a key"));
        assert_eq!(e.kind(), ErrorKind::Conflict, "server codes still classify");
    }

    #[test]
    fn acl_refusals_are_permission_denied_and_bad_credentials_config() {
        assert_eq!(classify_code("NOPERM"), (ErrorKind::PermissionDenied, false));
        assert_eq!(classify_code("WRONGPASS"), (ErrorKind::Config, false));
    }

    #[test]
    fn type_and_overflow_codes_are_conflicts() {
        assert_eq!(classify_code("WRONGTYPE"), (ErrorKind::Conflict, false));
        assert_eq!(classify_code("OVERFLOW"), (ErrorKind::Conflict, false));
    }

    #[test]
    fn server_side_outages_are_temporary_unavailable() {
        for code in ["LOADING", "BUSY", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "READONLY", "OOM"] {
            assert_eq!(classify_code(code), (ErrorKind::Unavailable, true), "{code}");
        }
    }

    #[test]
    fn generic_errors_are_unexpected() {
        assert_eq!(classify_code("ERR"), (ErrorKind::Unexpected, false));
        assert_eq!(classify_code(""), (ErrorKind::Unexpected, false));
    }

    #[cfg(feature = "redis-rs")]
    mod redis_rs {
        use std::io;

        use super::super::*;

        fn io_err(kind: io::ErrorKind) -> redis::RedisError {
            redis::RedisError::from(io::Error::new(kind, "x"))
        }

        #[test]
        fn refused_and_reset_connections_are_temporary_unavailable() {
            for k in [io::ErrorKind::ConnectionRefused, io::ErrorKind::ConnectionReset, io::ErrorKind::BrokenPipe] {
                let e = map_redis_rs("get", io_err(k));
                assert_eq!((e.kind(), e.is_temporary()), (ErrorKind::Unavailable, true), "{k:?}");
                assert_eq!((e.backend(), e.op()), ("redis_rs", "get"));
            }
        }

        #[test]
        fn timeouts_are_temporary_timeouts() {
            let e = map_redis_rs("get", io_err(io::ErrorKind::TimedOut));
            assert_eq!((e.kind(), e.is_temporary()), (ErrorKind::Timeout, true));
        }

        #[test]
        fn wrongtype_is_conflict_and_keeps_its_source() {
            let e = map_redis_rs("get", redis::make_extension_error("WRONGTYPE".into(), Some("Operation".into())));
            assert_eq!(e.kind(), ErrorKind::Conflict);
            let src = std::error::Error::source(&e).and_then(|s| s.downcast_ref::<redis::RedisError>());
            assert_eq!(src.and_then(|s| s.code()), Some("WRONGTYPE"));
        }

        #[test]
        fn script_errors_are_unexpected() {
            let e = map_redis_rs("push", redis::make_extension_error("ERR".into(), Some("user_script:1".into())));
            assert_eq!((e.kind(), e.is_temporary()), (ErrorKind::Unexpected, false));
        }
    }

    #[cfg(feature = "fred")]
    mod fred {
        use fred::error::{Error as FredError, ErrorKind as K};

        use super::super::*;

        #[test]
        fn io_and_cancelled_are_temporary_unavailable() {
            for k in [K::IO, K::Canceled] {
                let e = map_fred("get", FredError::new(k.clone(), "Connection refused"));
                assert_eq!((e.kind(), e.is_temporary()), (ErrorKind::Unavailable, true), "{k:?}");
                assert_eq!((e.backend(), e.op()), ("fred", "get"));
            }
        }

        #[test]
        fn timeouts_are_temporary_timeouts() {
            let e = map_fred("get", FredError::new(K::Timeout, "Request timed out."));
            assert_eq!((e.kind(), e.is_temporary()), (ErrorKind::Timeout, true));
        }

        #[test]
        fn wrongtype_and_overflow_replies_are_conflicts() {
            let e = map_fred("get", FredError::new(K::InvalidArgument, "WRONGTYPE Operation against a key"));
            assert_eq!(e.kind(), ErrorKind::Conflict);
            let e = map_fred("incr", FredError::new(K::Unknown, "OVERFLOW counter would overflow"));
            assert_eq!(e.kind(), ErrorKind::Conflict);
            assert!(std::error::Error::source(&e).is_some(), "driver error kept as source");
        }

        #[test]
        fn script_errors_are_unexpected() {
            let e = map_fred("push", FredError::new(K::Unknown, "ERR user_script:1: Script attempted"));
            assert_eq!((e.kind(), e.is_temporary()), (ErrorKind::Unexpected, false));
        }

        #[test]
        fn auth_failures_are_config() {
            let e = map_fred("connect", FredError::new(K::Auth, "WRONGPASS invalid"));
            assert_eq!(e.kind(), ErrorKind::Config);
        }
    }
}
