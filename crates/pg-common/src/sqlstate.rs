//! SQLSTATE codes → [`ErrorKind`]s, for every Postgres backend.
//!
//! A backend's one error-mapping function takes the code (and, for unique
//! violations, the constraint name) from its driver's error and calls
//! [`database_error`]; it then adds its backend id, the operation and the
//! driver error as the source. Kinds come from codes only, never from
//! message text, and the message never repeats the server's (which can
//! quote stored values).

use palisade_core::{Error, ErrorDetail, ErrorKind};

/// `lock_not_available`: a `lock_timeout` expired (collection DDL retries it).
pub const LOCK_NOT_AVAILABLE: &str = "55P03";

/// `unique_violation`.
pub const UNIQUE_VIOLATION: &str = "23505";

/// `deadlock_detected`.
pub const DEADLOCK_DETECTED: &str = "40P01";

/// Whether an append that failed with `code` lost a race to a concurrent
/// append (the same new stream or the same id, or ids stored in opposite
/// orders) and should be sent again: the retry sees the winner's rows.
pub fn append_race(code: &str) -> bool {
    matches!(code, UNIQUE_VIOLATION | DEADLOCK_DETECTED)
}

/// Kind and temporariness (whether a retry may succeed) for a SQLSTATE code.
pub fn classify(code: &str) -> (ErrorKind, bool) {
    match code {
        // integrity: unique_violation, exclusion_violation
        "23505" | "23P01" => (ErrorKind::Conflict, false),
        // Palisade's own: a session key holds another type.
        "PA001" => (ErrorKind::Conflict, false),
        // `palisade_events_purge` waited too long for the events table's lock.
        "PA002" => (ErrorKind::Conflict, true),
        // numeric_value_out_of_range: a stored counter would overflow.
        "22003" => (ErrorKind::Conflict, false),
        // serialization_failure, deadlock_detected: retry may succeed.
        "40001" | "40P01" => (ErrorKind::Conflict, true),
        // query_canceled (statement_timeout), lock_not_available
        "57014" | LOCK_NOT_AVAILABLE => (ErrorKind::Timeout, true),
        // admin/crash shutdown, cannot_connect_now, too_many_connections, connection exceptions
        "57P01" | "57P02" | "57P03" | "53300" => (ErrorKind::Unavailable, true),
        c if c.starts_with("08") => (ErrorKind::Unavailable, true),
        // insufficient resources (disk full, out of memory)
        c if c.starts_with("53") => (ErrorKind::Unavailable, true),
        // data exceptions: bad input that got past validation
        c if c.starts_with("22") => (ErrorKind::InvalidInput, false),
        // insufficient_privilege: the role lacks a grant
        "42501" => (ErrorKind::PermissionDenied, false),
        // undefined_table / invalid_schema_name: namespace not migrated
        "42P01" | "3F000" => (ErrorKind::Config, false),
        _ => (ErrorKind::Unexpected, false),
    }
}

/// Whether `code` says a unique index or exclusion constraint refused a row.
pub fn is_unique_violation(code: &str) -> bool {
    matches!(code, "23505" | "23P01")
}

/// The error for a server error with SQLSTATE `code`; a unique violation
/// carries [`ErrorDetail::UniqueViolation`] naming `constraint`. The caller
/// adds backend, op and source.
pub fn database_error(code: &str, constraint: Option<&str>) -> Error {
    let (kind, temporary) = classify(code);
    let err = Error::new(kind, format!("postgres error {code}")).set_temporary(temporary);
    if is_unique_violation(code) {
        err.with_detail(ErrorDetail::UniqueViolation { index: constraint.unwrap_or("unknown").to_owned() })
    } else {
        err
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_violation_is_conflict_naming_the_constraint() {
        assert_eq!(classify("23505"), (ErrorKind::Conflict, false));
        let e = database_error("23P01", Some("documents_7_unique_0"));
        assert_eq!(e.kind(), ErrorKind::Conflict);
        assert!(
            matches!(e.detail(), Some(ErrorDetail::UniqueViolation { index }) if index == "documents_7_unique_0"),
            "{:?}",
            e.detail()
        );
        assert!(database_error("22003", None).detail().is_none());
    }

    #[test]
    fn connection_failures_are_temporary_unavailable() {
        for code in ["08006", "08001", "57P01", "57P03", "53300"] {
            assert_eq!(classify(code), (ErrorKind::Unavailable, true), "{code}");
        }
    }

    #[test]
    fn statement_and_lock_timeouts_are_temporary_timeouts() {
        assert_eq!(classify("57014"), (ErrorKind::Timeout, true));
        assert_eq!(classify(LOCK_NOT_AVAILABLE), (ErrorKind::Timeout, true));
    }

    #[test]
    fn serialization_failures_and_deadlocks_are_retryable_conflicts() {
        assert_eq!(classify("40001"), (ErrorKind::Conflict, true));
        assert_eq!(classify("40P01"), (ErrorKind::Conflict, true));
    }

    #[test]
    fn wrong_type_and_overflow_are_conflicts() {
        assert_eq!(classify("PA001").0, ErrorKind::Conflict);
        assert_eq!(classify("PA002"), (ErrorKind::Conflict, true), "a purge behind a lock: retry, not a failover");
        assert_eq!(classify("22003").0, ErrorKind::Conflict);
    }

    #[test]
    fn missing_privileges_are_permission_denied() {
        assert_eq!(classify("42501"), (ErrorKind::PermissionDenied, false));
    }

    #[test]
    fn unmigrated_namespaces_are_configuration_errors() {
        assert_eq!(classify("42P01"), (ErrorKind::Config, false));
        assert_eq!(classify("3F000"), (ErrorKind::Config, false));
        assert_eq!(classify("XX000"), (ErrorKind::Unexpected, false));
    }
}
