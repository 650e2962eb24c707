//! JSON as Postgres `jsonb` keeps it — and what `jsonb` cannot.
//!
//! `jsonb` rejects U+0000 in strings and keys (SQLSTATE 22P05), yet the
//! input policy says NUL inside stored values is data, stored byte-exact. So
//! every JSON value bound as `jsonb` goes through [`encode`] (a backend's
//! statement builders do it for their binds, see
//! [`Sql::into_parts`](crate::documents::Sql::into_parts)) and every one read
//! back through [`decode_text`], which undoes it:
//!
//! - U+0000 is written as U+0001 U+0001 and U+0001 as U+0001 U+0002 (in
//!   strings and object keys, at any depth); everything else is unchanged.
//! - The code is prefix-free and keeps code-point order (U+0001 U+0001 <
//!   U+0001 U+0002 < U+0002 …), so equality, `COLLATE "C"` comparisons,
//!   sorting and unique keys in SQL behave exactly as on the raw strings.
//! - Decoding is lenient: a U+0001 not followed by U+0001/U+0002 (a value
//!   stored before this encoding existed) is kept as it is.
//!
//! Reads decode without serde_json's recursion limit
//! ([`decode_stored_json`]), so a row nested deeper than the input policy
//! allows — written before it existed, or by another writer — still reads back.

use std::borrow::Cow;

use palisade_core::backend::stored::{decode_stored_json, decode_stored_json_exact};
use serde_json::{Map, Value};

const ESC: char = '\u{1}';

/// `v` with U+0000 and U+0001 escaped for `jsonb` (borrowed when it holds neither).
pub fn encode(v: &Value) -> Cow<'_, Value> {
    if needs_encoding(v) {
        Cow::Owned(encode_owned(v))
    } else {
        Cow::Borrowed(v)
    }
}

/// Like [`encode`], taking ownership (no copy when nothing needs escaping).
pub fn encoded(v: Value) -> Value {
    if needs_encoding(&v) {
        encode_owned(&v)
    } else {
        v
    }
}

/// `s` escaped for a `jsonb` string or a `text` column.
pub fn encode_str(s: &str) -> Cow<'_, str> {
    if !s.contains(['\0', ESC]) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\0' => out.push_str("\u{1}\u{1}"),
            ESC => out.push_str("\u{1}\u{2}"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

fn decode_str(s: &str) -> Cow<'_, str> {
    if !s.contains(ESC) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek()) {
            (ESC, Some('\u{1}')) => {
                chars.next();
                out.push('\0');
            }
            (ESC, Some('\u{2}')) => {
                chars.next();
                out.push(ESC);
            }
            (c, _) => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Inputs are held to the input policy's depth, so recursion is bounded here.
fn needs_encoding(v: &Value) -> bool {
    let special = |s: &str| s.contains(['\0', ESC]);
    match v {
        Value::String(s) => special(s),
        Value::Array(a) => a.iter().any(needs_encoding),
        Value::Object(m) => m.iter().any(|(k, v)| special(k) || needs_encoding(v)),
        _ => false,
    }
}

fn encode_owned(v: &Value) -> Value {
    match v {
        Value::String(s) => Value::String(encode_str(s).into_owned()),
        Value::Array(a) => Value::Array(a.iter().map(encode_owned).collect()),
        Value::Object(m) => {
            Value::Object(m.iter().map(|(k, v)| (encode_str(k).into_owned(), encode_owned(v))).collect())
        }
        other => other.clone(),
    }
}

/// Undoes [`encode`] in place. Iterative: stored values may nest at any depth.
fn decode_in_place(root: &mut Value) {
    let mut stack = vec![root];
    while let Some(v) = stack.pop() {
        match v {
            Value::String(s) => {
                if let Cow::Owned(d) = decode_str(s) {
                    *s = d;
                }
            }
            Value::Array(a) => stack.extend(a.iter_mut()),
            Value::Object(m) => {
                if m.keys().any(|k| k.contains(ESC)) {
                    let old = std::mem::take(m);
                    *m = old.into_iter().map(|(k, v)| (decode_str(&k).into_owned(), v)).collect::<Map<_, _>>();
                }
                stack.extend(m.values_mut());
            }
            _ => {}
        }
    }
}

/// Decodes stored JSON text (see the module docs): what a backend's column
/// decoder calls with the bytes of a `json`/`jsonb` column (for binary
/// `jsonb`, after its leading format-version byte, see [`jsonb_text`]).
pub fn decode_text(text: &[u8]) -> palisade_core::Result<Value> {
    restore(text, decode_stored_json(text)?)
}

/// [`decode_text`] for a read-modify-write: a number `f64` cannot hold is
/// an error, not a string (see `decode_stored_json_exact`).
pub fn decode_text_exact(text: &[u8]) -> palisade_core::Result<Value> {
    restore(text, decode_stored_json_exact(text)?)
}

/// Undoes the U+0000 encoding in `v`, decoded from `text`.
fn restore(text: &[u8], mut v: Value) -> palisade_core::Result<Value> {
    // The escape only ever appears as `\u0001` in JSON text.
    if text.windows(6).any(|w| w == b"\\u0001") {
        decode_in_place(&mut v);
    }
    Ok(v)
}

/// The JSON text of a `jsonb` value in binary wire format: a version byte
/// (1) then the text. Text-format values (and `json`) are the text itself —
/// JSON text never starts with a control character, so both are told apart.
pub fn jsonb_text(bytes: &[u8]) -> &[u8] {
    match bytes.split_first() {
        Some((1, text)) => text,
        _ => bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn round_trip(v: Value) {
        let text = encode(&v).to_string();
        assert!(!text.contains("\\u0000"), "jsonb would refuse {text}");
        assert_eq!(decode_text(text.as_bytes()).unwrap(), v);
    }

    #[test]
    fn nul_and_escape_round_trip_in_strings_and_keys() {
        round_trip(
            json!({"a\u{0}b": ["\u{0}", "\u{1}", "\u{1}\u{1}", "\u{1}\u{2}", "x\u{0}\u{1}\u{0}"], "k": "plain"}),
        );
        round_trip(json!("\u{0}\u{0}\u{0}"));
        round_trip(json!({"\u{1}": {"\u{0}": 1}}));
    }

    #[test]
    fn encoding_keeps_code_point_order() {
        let samples = ["", "\u{0}", "\u{0}\u{0}", "\u{0}a", "\u{1}", "\u{1}\u{0}", "\u{2}", "a", "a\u{0}", "ab", "é"];
        for a in samples {
            for b in samples {
                assert_eq!(a.cmp(b), encode_str(a).cmp(&encode_str(b)), "{a:?} vs {b:?}");
            }
        }
    }

    #[test]
    fn values_without_nul_are_borrowed() {
        assert!(matches!(encode(&json!({"a": ["b", 1]})), Cow::Borrowed(_)));
    }

    #[test]
    fn binary_jsonb_loses_its_version_byte() {
        assert_eq!(jsonb_text(b"\x01{\"a\":1}"), b"{\"a\":1}");
        assert_eq!(jsonb_text(b"{\"a\":1}"), b"{\"a\":1}");
        assert_eq!(jsonb_text(b""), b"");
    }

    #[test]
    fn stray_escape_from_older_rows_is_kept() {
        assert_eq!(decode_text(br#""a\u0001b""#).unwrap(), json!("a\u{1}b"));
    }
}
