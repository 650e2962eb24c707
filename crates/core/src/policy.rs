//! The input policy: one set of rules every backend enforces, memory included,
//! **before any I/O**, so all backends accept and refuse the same inputs.
//!
//! Palisade stores attacker data (WAF payloads, hostile session contents,
//! analysis results of malicious files), so every stored value is bounded:
//!
//! | rule | default | applies to |
//! |---|---|---|
//! | JSON nesting depth ([`InputPolicy::max_depth`]) | 64 levels | session values and history entries, event `data`, documents (which are further held to 32 levels by their field-path rule, [`MAX_DEPTH`](crate::documents::MAX_DEPTH)) |
//! | serialized size of a session value / history entry | 4 MiB | `SessionCache::set`, `push` |
//! | serialized size of an event's `data` | 1 MiB | `EventStore::append` |
//! | serialized size of a document | 8 MiB | every document write, after `update` operators are applied |
//! | reputation `reason` | 1,024 bytes | `ReputationRepo::record` |
//! | `$in` / `$nin` list length | 10,000 values | filters ([`MAX_IN_LIST`]) |
//! | kinds / sources / tags in one event filter | 10,000 each | `EventStore::query`, `count_by`, `subscribe` |
//!
//! Depth counts containers: `{}` and `[]` are depth 1, `{"a": []}` depth 2,
//! a scalar depth 0. Sizes are the bytes of the compact JSON text
//! (`serde_json::to_vec`). A violation is `InvalidInput` naming the limit and
//! changes nothing.
//!
//! # U+0000
//! NUL bytes occur in real attacker payloads (path truncation, C-string
//! smuggling), and a security platform must keep evidence byte-exact. So:
//! - **inside stored JSON values** — strings *and* object keys of session
//!   values, event `data` and document values — U+0000 is data: every backend
//!   stores it and returns it byte-exact (Postgres `jsonb`, which cannot hold
//!   it, gets a reversible, order-preserving encoding inside the backend), and
//!   filters compare it like any other code point;
//! - **in names** — event `source`/`kind`/`stream`/`session_id`/tags, document
//!   field names, `_id`s and collection names, reputation subject ids and
//!   reasons — control characters, U+0000 included, are `InvalidInput`: names
//!   are addressed, indexed and shown in logs and CLIs;
//! - **session keys** are any UTF-8 (U+0000 included), compared as bytes.
//!
//! # Reading stored data
//! Reads never fail as a whole because of one stored row: data written before
//! this policy existed (or by another writer) is decoded with
//! [`decode_stored_json`](crate::backend::stored::decode_stored_json), which does not use serde_json's recursion limit
//! (128). Values nest at most [`MAX_STORED_DEPTH`] (1,024) levels — no write
//! path accepts more, whatever the configured `max_depth` — because even
//! dropping or comparing a `serde_json::Value` recurses; a foreign row nested
//! deeper reads back as the string [`UNREADABLE_DEPTH`] in its place (and a
//! warning is logged), so the rest of the read still works.

use std::io;

use serde_json::Value;

use crate::error::{Error, Result};

/// Deepest nesting of a stored JSON value accepted by default.
pub const DEFAULT_MAX_DEPTH: usize = 64;
/// Default largest session value or history entry (serialized), in bytes.
pub const DEFAULT_MAX_SESSION_VALUE_BYTES: usize = 4 << 20;
/// Default largest event `data` (serialized), in bytes.
pub const DEFAULT_MAX_EVENT_DATA_BYTES: usize = 1 << 20;
/// Default largest document (serialized), in bytes.
pub const DEFAULT_MAX_DOCUMENT_BYTES: usize = 8 << 20;
/// Deepest nesting any stored value may have: the ceiling of
/// [`InputPolicy::max_depth`] and of what reads decode.
pub const MAX_STORED_DEPTH: usize = 1_024;
/// What a stored value nested deeper than [`MAX_STORED_DEPTH`] reads back as.
pub const UNREADABLE_DEPTH: &str = "<palisade: stored JSON nests deeper than 1024 levels; not decoded>";
/// Most values in one `$in` / `$nin` list (fixed: filters are parsed before a
/// store is chosen).
pub const MAX_IN_LIST: usize = 10_000;

/// The limits a store enforces on what it is asked to store. See the module
/// docs for what each applies to. Configurable per store; [`Default`] holds the
/// documented defaults.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputPolicy {
    /// Deepest nesting of a stored JSON value.
    pub max_depth: usize,
    /// Largest session value or history entry, serialized, in bytes.
    pub max_session_value_bytes: usize,
    /// Largest event `data`, serialized, in bytes.
    pub max_event_data_bytes: usize,
    /// Largest document, serialized, in bytes.
    pub max_document_bytes: usize,
    /// Longest reputation `reason`, in bytes.
    pub max_reason_bytes: usize,
}

impl Default for InputPolicy {
    fn default() -> Self {
        InputPolicy {
            max_depth: DEFAULT_MAX_DEPTH,
            max_session_value_bytes: DEFAULT_MAX_SESSION_VALUE_BYTES,
            max_event_data_bytes: DEFAULT_MAX_EVENT_DATA_BYTES,
            max_document_bytes: DEFAULT_MAX_DOCUMENT_BYTES,
            max_reason_bytes: crate::reputation::MAX_REASON_LEN,
        }
    }
}

impl InputPolicy {
    /// Sets [`max_depth`](Self::max_depth); values above
    /// [`MAX_STORED_DEPTH`] act as that ceiling.
    pub fn with_max_depth(mut self, n: usize) -> Self {
        self.max_depth = n;
        self
    }
    /// Sets [`max_session_value_bytes`](Self::max_session_value_bytes).
    pub fn with_max_session_value_bytes(mut self, n: usize) -> Self {
        self.max_session_value_bytes = n;
        self
    }
    /// Sets [`max_event_data_bytes`](Self::max_event_data_bytes).
    pub fn with_max_event_data_bytes(mut self, n: usize) -> Self {
        self.max_event_data_bytes = n;
        self
    }
    /// Sets [`max_document_bytes`](Self::max_document_bytes).
    pub fn with_max_document_bytes(mut self, n: usize) -> Self {
        self.max_document_bytes = n;
        self
    }

    /// Sets [`max_reason_bytes`](Self::max_reason_bytes).
    pub fn with_max_reason_bytes(mut self, n: usize) -> Self {
        self.max_reason_bytes = n;
        self
    }

    /// Checks a session value or history entry.
    pub fn check_session_value(&self, v: &Value) -> Result<()> {
        self.check(v, "session value", self.max_session_value_bytes)
    }

    /// Checks an event's `data`.
    pub fn check_event_data(&self, v: &Value) -> Result<()> {
        self.check(v, "event data", self.max_event_data_bytes)
    }

    /// Checks a whole document as it would be stored.
    pub fn check_document(&self, v: &Value) -> Result<()> {
        self.check(v, "document", self.max_document_bytes)
    }

    /// Depth first (iteratively, so even a value nested a million levels deep
    /// is refused without recursing), then the serialized size.
    fn check(&self, v: &Value, what: &str, max_bytes: usize) -> Result<()> {
        let max_depth = self.max_depth.min(MAX_STORED_DEPTH);
        if depth_exceeds(v, max_depth) {
            return Err(Error::invalid(format!("{what} nests deeper than {max_depth} levels")));
        }
        if serialized_len_exceeds(v, max_bytes) {
            return Err(Error::invalid(format!("{what} is larger than {max_bytes} bytes serialized")));
        }
        Ok(())
    }
}

/// Whether `v` nests deeper than `max` containers. Iterative: never recurses;
/// only containers holding containers are stacked (scalars cost nothing).
pub(crate) fn depth_exceeds(v: &Value, max: usize) -> bool {
    fn is_container(v: &Value) -> bool {
        matches!(v, Value::Array(_) | Value::Object(_))
    }
    if !is_container(v) {
        return false;
    }
    // Containers to look into, with their depth (1 for `v`).
    let mut stack: Vec<(&Value, usize)> = vec![(v, 1)];
    while let Some((v, depth)) = stack.pop() {
        if depth > max {
            return true;
        }
        match v {
            Value::Array(a) => stack.extend(a.iter().filter(|c| is_container(c)).map(|c| (c, depth + 1))),
            Value::Object(m) => stack.extend(m.values().filter(|c| is_container(c)).map(|c| (c, depth + 1))),
            _ => {}
        }
    }
    false
}

/// Whether the compact JSON text of `v` is longer than `max` bytes. Stops
/// writing as soon as it is (no allocation of the text).
fn serialized_len_exceeds(v: &Value, max: usize) -> bool {
    struct Counter {
        left: usize,
    }
    impl io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.left = self.left.checked_sub(buf.len()).ok_or_else(|| io::Error::other("limit"))?;
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    serde_json::to_writer(&mut Counter { left: max }, v).is_err()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use serde_json::json;

    fn nested(depth: usize) -> Value {
        let mut v = json!(1);
        for _ in 0..depth {
            v = json!({ "a": v });
        }
        v
    }

    #[test]
    fn depth_counts_containers() {
        assert!(!depth_exceeds(&json!(1), 0));
        assert!(depth_exceeds(&json!({}), 0));
        assert!(!depth_exceeds(&json!({"a": []}), 2));
        assert!(depth_exceeds(&json!({"a": [[]]}), 2));
        assert!(!depth_exceeds(&nested(64), 64));
        assert!(depth_exceeds(&nested(65), 64));
    }

    #[test]
    fn policy_names_the_limit() {
        let p = InputPolicy::default().with_max_session_value_bytes(10);
        let e = p.check_session_value(&json!("0123456789")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.to_string().contains("10 bytes"), "{e}");
        assert!(p.check_session_value(&json!("01234567")).is_ok(), "exactly 10 bytes serialized");
        let e = p.check_event_data(&nested(65)).unwrap_err();
        assert!(e.to_string().contains("64 levels"), "{e}");
    }

    #[test]
    fn configured_depth_never_exceeds_the_ceiling() {
        let p = InputPolicy::default().with_max_depth(usize::MAX);
        assert!(p.check_session_value(&nested(MAX_STORED_DEPTH)).is_ok());
        assert!(p.check_session_value(&nested(MAX_STORED_DEPTH + 1)).is_err());
    }
}
