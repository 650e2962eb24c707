//! Reading back what is stored. One stored row never makes a whole read fail:
//! JSON written before the input policy existed, or by another writer, is
//! decoded without serde_json's recursion limit, and a value nested deeper
//! than [`MAX_STORED_DEPTH`] reads as [`UNREADABLE_DEPTH`] (see
//! [`policy`](crate::policy)). A number beyond `f64`'s range (Postgres
//! `jsonb` holds `1e400`; serde_json cannot) reads back as a string of its
//! digits, so the row stays readable and nothing is made up.

use serde_json::{Map, Value};

use crate::error::{Error, ErrorKind, Result};
use crate::policy::{MAX_STORED_DEPTH, UNREADABLE_DEPTH};

/// Decodes stored JSON text without serde_json's recursion limit (the stack
/// grows on the heap as needed), so a row written before the input policy, or
/// by another writer, still reads back intact. Text nested deeper than
/// [`MAX_STORED_DEPTH`] reads as the string [`UNREADABLE_DEPTH`] (see the
/// module docs). A number `f64` cannot hold reads as the string of its text
/// (a warning is logged). Invalid JSON, trailing text included, is
/// `Serialization`.
pub fn decode_stored_json(bytes: &[u8]) -> Result<Value> {
    decode_stored(bytes, true)
}

/// [`decode_stored_json`] for a read-modify-write (an update writing the
/// value back): a number `f64` cannot hold is a `Serialization` error
/// instead of a string, so writing back never changes it.
pub fn decode_stored_json_exact(bytes: &[u8]) -> Result<Value> {
    decode_stored(bytes, false)
}

fn decode_stored(bytes: &[u8], numbers_as_strings: bool) -> Result<Value> {
    if text_depth(bytes) > MAX_STORED_DEPTH {
        tracing::warn!(bytes = bytes.len(), "stored JSON nests deeper than {MAX_STORED_DEPTH} levels; not decoded");
        return Ok(Value::String(UNREADABLE_DEPTH.to_owned()));
    }
    match decode_unbounded(bytes) {
        Err(e) if !numbers_as_strings => Err(e),
        Err(e) => match numbers_beyond_f64_as_strings(bytes) {
            Some(text) => {
                tracing::warn!(bytes = bytes.len(), "stored JSON holds numbers beyond f64; they read as strings");
                decode_unbounded(&text)
            }
            None => Err(e),
        },
        ok => ok,
    }
}

fn decode_unbounded(bytes: &[u8]) -> Result<Value> {
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

/// Tells the bytes of JSON text inside string literals (quotes included)
/// from the rest, one byte at a time.
#[derive(Default)]
struct Strings {
    inside: bool,
    escaped: bool,
}

impl Strings {
    /// Whether `b`, the next byte, belongs to a string literal.
    fn take(&mut self, b: u8) -> bool {
        if self.inside {
            match (self.escaped, b) {
                (true, _) => self.escaped = false,
                (false, b'\\') => self.escaped = true,
                (false, b'"') => self.inside = false,
                _ => {}
            }
            true
        } else {
            self.inside = b == b'"';
            self.inside
        }
    }
}

/// `text` with every number token that parses to an infinite `f64` quoted as
/// a string; `None` when there is none (the text is left to the decoder).
/// One pass outside strings, like [`text_depth`].
fn numbers_beyond_f64_as_strings(text: &[u8]) -> Option<Vec<u8>> {
    let is_number_byte = |b: u8| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E');
    let mut out = Vec::with_capacity(text.len() + 16);
    let (mut strings, mut changed, mut i) = (Strings::default(), false, 0);
    while i < text.len() {
        let b = text[i];
        if !strings.take(b) && (b == b'-' || b.is_ascii_digit()) {
            let end = text[i..].iter().position(|&c| !is_number_byte(c)).map_or(text.len(), |n| i + n);
            let token = &text[i..end];
            let infinite =
                std::str::from_utf8(token).ok().and_then(|t| t.parse::<f64>().ok()).is_some_and(f64::is_infinite);
            if infinite {
                out.push(b'"');
                out.extend_from_slice(token);
                out.push(b'"');
                changed = true;
            } else {
                out.extend_from_slice(token);
            }
            i = end;
            continue;
        }
        out.push(b);
        i += 1;
    }
    changed.then_some(out)
}

/// The deepest bracket nesting of JSON text (brackets inside strings do not
/// count). One pass, no recursion; malformed text is left to the decoder.
fn text_depth(bytes: &[u8]) -> usize {
    let (mut depth, mut max, mut strings) = (0usize, 0usize, Strings::default());
    for &b in bytes {
        if strings.take(b) {
            continue;
        }
        match b {
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
    fn stored_numbers_beyond_f64_read_as_their_text() {
        let v = decode_stored_json(br#"{"big": 1e400, "neg": -2E+999, "ok": 1.5e300, "s": "1e400", "a": [1e400]}"#);
        assert_eq!(v.unwrap(), json!({"big": "1e400", "neg": "-2E+999", "ok": 1.5e300, "s": "1e400", "a": ["1e400"]}));
        assert_eq!(numbers_beyond_f64_as_strings(br#"{"x": 1e3, "y": "\"9e999"}"#), None, "in range, or in a string");
        assert_eq!(decode_stored_json(b"[1e400").unwrap_err().kind(), ErrorKind::Serialization, "still invalid");
        let exact = decode_stored_json_exact(br#"{"big": 1e400}"#).unwrap_err();
        assert_eq!(exact.kind(), ErrorKind::Serialization, "a write-back refuses to change the number");
    }

    #[test]
    fn stored_json_must_be_one_whole_value() {
        assert_eq!(decode_stored_json(b"{").unwrap_err().kind(), ErrorKind::Serialization);
        assert_eq!(decode_stored_json(br#"{"a":1}xyz"#).unwrap_err().kind(), ErrorKind::Serialization);
        assert_eq!(decode_stored_json(b" [1] ").unwrap(), json!([1]));
    }
}
