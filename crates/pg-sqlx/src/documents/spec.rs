//! A collection's spec as stored in `collections.spec` (jsonb), and its
//! compiled form: schema validator, TTL rule and unique indexes.

use chrono::{DateTime, Utc};
use palisade_core::documents::{CollectionSpec, FieldPath, IndexSpec, SchemaValidator, SortKey, SortOrder, TtlSpec};
use palisade_core::{Error, ErrorKind, Result};
use serde_json::{json, Map, Value};

/// The stored form of `spec` (its name is the row's key).
pub(super) fn to_json(spec: &CollectionSpec) -> Value {
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
pub(super) fn from_json(name: &str, v: &Value) -> Result<CollectionSpec> {
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

/// A collection as the store uses it for writes.
pub(super) struct Collection {
    /// The stored spec, to tell whether a cached copy is still current.
    pub(super) stored: Value,
    pub(super) spec: CollectionSpec,
    schema: Option<SchemaValidator>,
}

impl Collection {
    /// Compiles the stored spec of collection `name`.
    pub(super) fn compile(name: &str, stored: Value) -> Result<Self> {
        let spec = from_json(name, &stored)?;
        let schema = spec.validate()?;
        Ok(Collection { stored, spec, schema })
    }

    /// `SchemaViolation` unless `body` (with `_id`, without `_version`) fits the schema.
    pub(super) fn check_schema(&self, body: &Map<String, Value>) -> Result<()> {
        match &self.schema {
            Some(s) => s.validate(&Value::Object(body.clone())),
            None => Ok(()),
        }
    }

    /// When the stored document `doc` expires, if ever.
    pub(super) fn expiry(&self, doc: &Value) -> Option<DateTime<Utc>> {
        self.spec.ttl.as_ref().and_then(|t| t.expires_at(doc))
    }

    /// The unique indexes with their position in the spec (`document_keys.index_no`).
    pub(super) fn unique_indexes(&self) -> impl Iterator<Item = (i32, &IndexSpec)> {
        self.spec.indexes.iter().enumerate().filter(|(_, idx)| idx.unique).map(|(i, idx)| (i as i32, idx))
    }

    /// The name of the index at `index_no`.
    pub(super) fn index_name(&self, index_no: i32) -> String {
        usize::try_from(index_no)
            .ok()
            .and_then(|i| self.spec.indexes.get(i))
            .map(IndexSpec::name)
            .unwrap_or_else(|| "unknown".to_owned())
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
}
