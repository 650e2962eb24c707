//! Reading back what is stored. One stored row never makes a whole read fail:
//! JSON written before the input policy existed, or by another writer, is
//! decoded without serde_json's recursion limit, and a value nested deeper
//! than [`MAX_STORED_DEPTH`] reads as [`UNREADABLE_DEPTH`] (see
//! [`policy`](crate::policy)).

use serde_json::{Map, Value};

use crate::error::{Error, ErrorKind, Result};
use crate::policy::{MAX_STORED_DEPTH, UNREADABLE_DEPTH};

/// Decodes stored JSON text without serde_json's recursion limit (the stack
/// grows on the heap as needed), so a row written before the input policy, or
/// by another writer, still reads back intact. Text nested deeper than
/// [`MAX_STORED_DEPTH`] reads as the string [`UNREADABLE_DEPTH`] (see the
/// module docs). Invalid JSON, trailing text included, is `Serialization`.
pub fn decode_stored_json(bytes: &[u8]) -> Result<Value> {
    if text_depth(bytes) > MAX_STORED_DEPTH {
        tracing::warn!(bytes = bytes.len(), "stored JSON nests deeper than {MAX_STORED_DEPTH} levels; not decoded");
        return Ok(Value::String(UNREADABLE_DEPTH.to_owned()));
    }
    let undecodable = |e| Error::new(ErrorKind::Serialization, "stored JSON does not decode").with_source(e);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    de.disable_recursion_limit();
    let v =
        <Value as serde::Deserialize>::deserialize(serde_stacker::Deserializer::new(&mut de)).map_err(undecodable)?;
    de.end().map_err(undecodable)?;
    Ok(v)
}

/// The stored form of a body: the body plus `_version`.
pub fn with_version(mut body: Map<String, Value>, version: u64) -> Value {
    body.insert("_version".to_owned(), Value::from(version));
    Value::Object(body)
}

/// The deepest bracket nesting of JSON text (brackets inside strings do not
/// count). One pass, no recursion; malformed text is left to the decoder.
fn text_depth(bytes: &[u8]) -> usize {
    let (mut depth, mut max, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &b in bytes {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::depth_exceeds;
    use serde_json::json;

    fn deep_text(depth: usize) -> String {
        format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
    }

    #[test]
    fn stored_json_decodes_beyond_serde_json_recursion_limit() {
        let text = deep_text(MAX_STORED_DEPTH);
        assert!(serde_json::from_str::<Value>(&text).is_err(), "serde_json's own limit trips");
        let v = decode_stored_json(text.as_bytes()).unwrap();
        assert!(depth_exceeds(&v, MAX_STORED_DEPTH - 1) && !depth_exceeds(&v, MAX_STORED_DEPTH));
    }

    #[test]
    fn stored_json_deeper_than_the_ceiling_reads_as_a_placeholder() {
        let text = deep_text(MAX_STORED_DEPTH + 1);
        assert_eq!(decode_stored_json(text.as_bytes()).unwrap(), json!(UNREADABLE_DEPTH));
        let in_strings = format!(r#"{{"s": "{}"}}"#, "[".repeat(5_000));
        assert!(decode_stored_json(in_strings.as_bytes()).unwrap()["s"].is_string(), "brackets in strings");
        assert_eq!(text_depth(br#"{"a": "\"[", "b": [{}]}"#), 3);
    }

    #[test]
    fn stored_json_must_be_one_whole_value() {
        assert_eq!(decode_stored_json(b"{").unwrap_err().kind(), ErrorKind::Serialization);
        assert_eq!(decode_stored_json(br#"{"a":1}xyz"#).unwrap_err().kind(), ErrorKind::Serialization);
        assert_eq!(decode_stored_json(b" [1] ").unwrap(), json!([1]));
    }
}
