//! What every document store shares beyond core's models: a collection's
//! spec in its stored (JSON) form, and the faults a store detects itself
//! as core errors (the backend adds its id and the operation).

use crate::documents::{CollectionSpec, FieldPath, IndexSpec, SortKey, SortOrder, TtlSpec};
use crate::{Error, ErrorDetail, ErrorKind, Result};
use serde_json::{json, Map, Value};

/// The stored form of `spec` (its name is the row's key).
pub fn to_json(spec: &CollectionSpec) -> Value {
    let indexes: Vec<Value> = spec
        .indexes
        .iter()
        .map(|idx| {
            let fields: Vec<Value> =
                idx.fields.iter().map(|k| json!({"path": k.path.segments(), "order": order_name(k.order)})).collect();
            json!({"fields": fields, "unique": idx.unique})
        })
        .collect();
    json!({
        "schema": spec.schema,
        "indexes": indexes,
        "ttl": spec.ttl.as_ref().map(|t| json!({"path": t.field.segments(), "after_seconds": t.after_seconds})),
    })
}

fn order_name(order: SortOrder) -> &'static str {
    match order {
        SortOrder::Asc => "asc",
        SortOrder::Desc => "desc",
    }
}

fn corrupt() -> Error {
    Error::new(ErrorKind::Unexpected, "stored collection spec is unreadable")
}

fn path_of(v: Option<&Value>) -> Result<FieldPath> {
    let segments: Vec<&str> = v
        .and_then(Value::as_array)
        .ok_or_else(corrupt)?
        .iter()
        .map(|s| s.as_str().ok_or_else(corrupt))
        .collect::<Result<_>>()?;
    FieldPath::parse(&segments.join(".")).map_err(|_| corrupt())
}

/// Reads back what [`to_json`] wrote.
pub fn from_json(name: &str, v: &Value) -> Result<CollectionSpec> {
    let m: &Map<String, Value> = v.as_object().ok_or_else(corrupt)?;
    let schema = m.get("schema").filter(|s| !s.is_null()).cloned();
    let mut indexes = Vec::new();
    for idx in m.get("indexes").and_then(Value::as_array).ok_or_else(corrupt)? {
        let mut fields = Vec::new();
        for f in idx.get("fields").and_then(Value::as_array).ok_or_else(corrupt)? {
            let order = match f.get("order").and_then(Value::as_str) {
                Some("asc") => SortOrder::Asc,
                Some("desc") => SortOrder::Desc,
                _ => return Err(corrupt()),
            };
            fields.push(SortKey { path: path_of(f.get("path"))?, order });
        }
        let unique = idx.get("unique").and_then(Value::as_bool).ok_or_else(corrupt)?;
        indexes.push(IndexSpec { fields, unique });
    }
    let ttl = match m.get("ttl") {
        None | Some(Value::Null) => None,
        Some(t) => Some(TtlSpec {
            field: path_of(t.get("path"))?,
            after_seconds: t.get("after_seconds").and_then(Value::as_u64).ok_or_else(corrupt)?,
        }),
    };
    Ok(CollectionSpec { name: name.to_owned(), schema, indexes, ttl })
}

/// Faults the document store detects itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DocumentFault {
    /// The collection does not exist.
    NoCollection,
    /// The collection exists with another spec.
    SpecMismatch,
    /// A document to replace does not exist (or expired).
    NoDocument,
    /// `_id` or a unique index already holds the value.
    Unique(String),
    /// A document's `_version` differs from the expected one.
    Version {
        /// What the caller expected.
        expected: u64,
        /// What is stored.
        actual: u64,
    },
}

impl From<DocumentFault> for Error {
    fn from(f: DocumentFault) -> Self {
        match f {
            DocumentFault::NoCollection => {
                Error::new(ErrorKind::NotFound, "no such collection; call ensure_collection first")
            }
            DocumentFault::SpecMismatch => Error::new(ErrorKind::Conflict, "collection exists with a different spec"),
            DocumentFault::NoDocument => Error::new(ErrorKind::NotFound, "no document with that id"),
            DocumentFault::Unique(index) => {
                Error::new(ErrorKind::Conflict, format!("duplicate value for unique index `{index}`"))
                    .with_detail(ErrorDetail::UniqueViolation { index })
            }
            DocumentFault::Version { expected, actual } => {
                Error::new(ErrorKind::Conflict, "document `_version` changed")
                    .with_detail(ErrorDetail::DocumentVersionConflict { expected, actual })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_round_trip_through_json() {
        let spec = CollectionSpec::new("things")
            .with_schema(json!({"type": "object", "properties": {"n": {"maximum": 1.0}}}))
            .with_index(IndexSpec::unique(vec![SortKey::asc("ip").unwrap(), SortKey::desc("a.0.naïve'x").unwrap()]))
            .with_index(IndexSpec::on(vec![SortKey::asc("seen").unwrap()]))
            .with_ttl("seen", 60)
            .unwrap();
        let stored = to_json(&spec);
        let text = stored.to_string();
        let back: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(from_json("things", &back).unwrap(), spec);
        let plain = CollectionSpec::new("plain");
        assert_eq!(from_json("plain", &to_json(&plain)).unwrap(), plain);
    }

    #[test]
    fn unreadable_specs_are_unexpected() {
        let e = from_json("x", &json!({"indexes": 5})).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unexpected);
    }
    #[test]
    fn faults_have_the_kinds_and_details_of_the_contract() {
        assert_eq!(Error::from(DocumentFault::NoCollection).kind(), ErrorKind::NotFound);
        assert_eq!(Error::from(DocumentFault::NoDocument).kind(), ErrorKind::NotFound);
        assert_eq!(Error::from(DocumentFault::SpecMismatch).kind(), ErrorKind::Conflict);
        let e = Error::from(DocumentFault::Version { expected: 1, actual: 2 });
        assert!(matches!(e.detail(), Some(ErrorDetail::DocumentVersionConflict { expected: 1, actual: 2 })));
        let e = Error::from(DocumentFault::Unique("_id".into()));
        assert!(matches!(e.detail(), Some(ErrorDetail::UniqueViolation { index }) if index == "_id"));
    }
}
