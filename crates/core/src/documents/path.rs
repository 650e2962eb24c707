//! Dotted field paths into JSON documents, validated once.

use std::fmt;

use crate::error::{Error, Result};

/// Deepest path / document nesting accepted.
pub const MAX_DEPTH: usize = 32;
/// Longest single field name, in bytes.
pub const MAX_FIELD_LEN: usize = 256;

/// A validated dotted path such as `a.b.0.c`.
///
/// Segments are non-empty, at most 256 bytes, contain no `.`, NUL or other
/// control characters, and do not start with `$`. A segment of ASCII digits
/// indexes into an array (as in MongoDB). Backends may therefore embed segments
/// as bound parameters or quoted literals without further escaping concerns.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FieldPath(Vec<String>);

impl FieldPath {
    /// Parses and validates `path`.
    pub fn parse(path: &str) -> Result<Self> {
        let segments: Vec<String> = path.split('.').map(str::to_owned).collect();
        if segments.len() > MAX_DEPTH {
            return Err(Error::invalid(format!("field path deeper than {MAX_DEPTH}")));
        }
        for s in &segments {
            check_field_name(s).map_err(|_| Error::invalid(format!("invalid field path segment in {path:?}")))?;
        }
        Ok(FieldPath(segments))
    }

    /// The segments.
    pub fn segments(&self) -> &[String] {
        &self.0
    }

    /// The first segment.
    pub fn head(&self) -> &str {
        self.0.first().map(String::as_str).unwrap_or_default()
    }

    /// Whether `self` equals `other` or one is a prefix of the other.
    pub fn overlaps(&self, other: &FieldPath) -> bool {
        self.0.iter().zip(other.0.iter()).all(|(a, b)| a == b)
    }

    /// Whether the path starts at a store-managed field (`_id`, `_version`).
    pub fn is_reserved(&self) -> bool {
        matches!(self.head(), "_id" | "_version")
    }
}

/// Parses an array index segment (ASCII digits only, no sign, no leading `+`).
pub fn array_index(segment: &str) -> Option<usize> {
    if segment.is_empty() || !segment.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    segment.parse().ok()
}

/// Checks one field name of a stored document or path.
pub fn check_field_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > MAX_FIELD_LEN {
        return Err(Error::invalid(format!("field names must be 1..={MAX_FIELD_LEN} bytes")));
    }
    if name.starts_with('$') || name.contains('.') || name.chars().any(char::is_control) {
        return Err(Error::invalid("field names must not start with `$` or contain `.` or control characters"));
    }
    Ok(())
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("."))
    }
}

impl fmt::Debug for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FieldPath({self})")
    }
}

impl std::str::FromStr for FieldPath {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        FieldPath::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_paths_split_into_segments() {
        let p = FieldPath::parse("a.b.0").unwrap();
        assert_eq!(p.segments(), ["a", "b", "0"]);
        assert_eq!(array_index("0"), Some(0));
        assert_eq!(array_index("-1"), None);
    }

    #[test]
    fn hostile_paths_are_rejected() {
        for bad in ["", "a..b", "$where", "a.$b", "a\0b", ".a", "a."] {
            assert!(FieldPath::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn unicode_and_quotes_are_fine_in_paths() {
        assert!(FieldPath::parse("naïve.'quoted'.\"x\"").is_ok());
    }
}
