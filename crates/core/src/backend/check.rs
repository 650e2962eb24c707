//! Input checks every backend runs **before any I/O**, so that all backends
//! accept and refuse the same inputs with the same `InvalidInput` messages
//! (see [`policy`](crate::policy) for the limits on stored values, which
//! [`InputPolicy`] checks). A store calls these at the top of each operation
//! the models' own `validate` methods do not already cover.

use serde_json::{Map, Value};

use crate::documents::{validate_fields, MAX_ID_LEN};
use crate::error::{Error, Result};
use crate::events::MAX_PAGE;
use crate::reputation::MAX_RANKED;
use crate::sessions::{MAX_HISTORY, MAX_KEY_LEN};
use crate::InputPolicy;

/// Checks a key: 1..=1024 bytes of UTF-8 (any characters, spaces and newlines included).
pub fn check_key(key: &str) -> Result<()> {
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(Error::invalid(format!("key must be 1..={MAX_KEY_LEN} bytes")));
    }
    Ok(())
}

/// Checks a history length / range limit: 1..=[`MAX_HISTORY`].
pub fn check_history_len(n: usize) -> Result<()> {
    if n == 0 || n > MAX_HISTORY {
        return Err(Error::invalid(format!("history length must be 1..={MAX_HISTORY}")));
    }
    Ok(())
}

/// Checks a page/read limit: 1..=[`MAX_PAGE`].
pub fn check_limit(limit: usize) -> Result<()> {
    if limit == 0 || limit > MAX_PAGE {
        return Err(Error::invalid(format!("limit must be 1..={MAX_PAGE}")));
    }
    Ok(())
}

/// Checks a page limit for leaderboards and history: 1..=[`MAX_RANKED`].
pub fn check_ranked_limit(limit: usize) -> Result<()> {
    if limit == 0 || limit > MAX_RANKED {
        return Err(Error::invalid(format!("limit must be 1..={MAX_RANKED}")));
    }
    Ok(())
}

/// Checks a collection name: `[A-Za-z][A-Za-z0-9_]{0,62}`.
pub fn check_collection_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 63;
    if ok {
        Ok(())
    } else {
        Err(Error::invalid("collection names are [A-Za-z][A-Za-z0-9_]{0,62}"))
    }
}

/// Checks an `_id`: a string of 1..=512 bytes without control characters.
pub fn check_id(id: &str) -> Result<()> {
    if id.is_empty() || id.len() > MAX_ID_LEN || id.chars().any(char::is_control) {
        return Err(Error::invalid(format!("`_id` must be 1..={MAX_ID_LEN} bytes without control characters")));
    }
    Ok(())
}

/// Prepares a document for insertion: must be an object with valid field
/// names, without `_version` (store-managed); `_id` is checked, or generated as
/// a UUID v7 string when absent; the stored form is held to `policy`. Returns
/// the id and the body with `_id` set and no `_version`.
pub fn prepare_insert(doc: Value, policy: &InputPolicy) -> Result<(String, Map<String, Value>)> {
    let Value::Object(mut m) = doc else {
        return Err(Error::invalid("a document must be a JSON object"));
    };
    if m.contains_key("_version") {
        return Err(Error::invalid("`_version` is store-managed; do not set it on insert"));
    }
    let id = match m.remove("_id") {
        None => uuid::Uuid::now_v7().to_string(),
        Some(Value::String(s)) => s,
        Some(_) => return Err(Error::invalid("`_id` must be a string")),
    };
    check_id(&id)?;
    m.insert("_id".to_owned(), Value::String(id.clone()));
    let body = Value::Object(m);
    validate_fields(&body, 0)?;
    policy.check_document(&body)?;
    let Value::Object(m) = body else { unreachable!("constructed as object above") };
    Ok((id, m))
}

/// Prepares a replacement document for `id`: like [`prepare_insert`], except
/// that an `_id` in the body must equal `id` and a `_version` in the body is
/// taken as the expected version (it must agree with `expected` if both are
/// given). Returns the body (with `_id`, without `_version`) and the expected
/// version.
pub fn prepare_replace(
    id: &str,
    doc: Value,
    expected: Option<u64>,
    policy: &InputPolicy,
) -> Result<(Map<String, Value>, Option<u64>)> {
    check_id(id)?;
    let Value::Object(mut m) = doc else {
        return Err(Error::invalid("a document must be a JSON object"));
    };
    let in_body = match m.remove("_version") {
        None => None,
        Some(v) => Some(v.as_u64().ok_or_else(|| Error::invalid("`_version` must be a positive integer"))?),
    };
    let expected = match (expected, in_body) {
        (Some(a), Some(b)) if a != b => {
            return Err(Error::invalid("`_version` in the body disagrees with the expected version"))
        }
        (a, b) => a.or(b),
    };
    match m.get("_id") {
        None => {}
        Some(Value::String(s)) if s == id => {}
        Some(_) => return Err(Error::invalid("`_id` in the body differs from the id replaced")),
    }
    m.insert("_id".to_owned(), Value::String(id.to_owned()));
    let (_, body) = prepare_insert(Value::Object(m), policy)?;
    Ok((body, expected))
}
