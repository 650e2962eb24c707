//! Namespaces: the isolation unit of every store instance.

use std::fmt;

use crate::error::{Error, Result};

/// The name every store instance is confined to: a Postgres schema, a Redis key
/// prefix, a Mongo database, or one memory instance. Two namespaces on one server
/// never see each other's data.
///
/// A namespace is 1..=48 characters of `[a-z0-9_]`, starting with a letter, so it
/// is safe, unquoted, as a Postgres identifier, a Redis hash tag and a Mongo
/// database name.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct Namespace(String);

impl Namespace {
    /// The longest namespace accepted.
    pub const MAX_LEN: usize = 48;

    /// Validates and wraps `name`.
    pub fn new(name: impl Into<String>) -> Result<Self> {
        let name = name.into();
        let mut chars = name.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
        let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !first_ok || !rest_ok || name.len() > Self::MAX_LEN {
            return Err(Error::invalid(format!(
                "namespace must be 1..={} chars of [a-z0-9_] starting with a letter",
                Self::MAX_LEN
            ))
            .with_op("namespace"));
        }
        Ok(Namespace(name))
    }

    /// A fresh random namespace `<prefix>_<16 hex chars>`, for tests and
    /// throwaway checks. `prefix` must itself be a valid namespace of ≤ 31 chars.
    pub fn random(prefix: &str) -> Result<Self> {
        let suffix: u64 = rand::random();
        Namespace::new(format!("{prefix}_{suffix:016x}"))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Namespace {
    fn default() -> Self {
        Namespace("palisade".to_owned())
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Namespace({})", self.0)
    }
}

impl std::str::FromStr for Namespace {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Namespace::new(s)
    }
}

impl<'de> serde::Deserialize<'de> for Namespace {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Namespace::new(s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_lowercase_identifiers() {
        assert!(Namespace::new("tenant_42").is_ok());
    }

    #[test]
    fn rejects_anything_that_could_escape_an_identifier() {
        for bad in ["", "1abc", "Abc", "a-b", "a b", "a\"b", "a;drop", "a:b", &"a".repeat(49)] {
            assert!(Namespace::new(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn random_namespaces_differ() {
        let a = Namespace::random("t").unwrap();
        let b = Namespace::random("t").unwrap();
        assert_ne!(a, b);
    }
}
