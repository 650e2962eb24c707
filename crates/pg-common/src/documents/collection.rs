//! A collection's spec as stored in `collections.spec` (jsonb), and its
//! compiled form: schema validator, TTL rule and indexes.

use chrono::{DateTime, Utc};
use palisade_core::documents::{CollectionSpec, FieldPath, IndexSpec, SchemaValidator, SortKey, SortOrder, TtlSpec};
use palisade_core::{Error, ErrorDetail, ErrorKind, Result};
use serde_json::{json, Map, Value};

use super::DocumentFault;

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

/// A collection as the store uses it for writes.
pub struct Collection {
    /// The stored spec, to tell whether a cached copy is still current.
    pub stored: Value,
    pub spec: CollectionSpec,
    schema: Option<SchemaValidator>,
}

impl Collection {
    /// Compiles the stored spec of collection `name`.
    pub fn compile(name: &str, stored: Value) -> Result<Self> {
        let spec = from_json(name, &stored)?;
        let schema = spec.validate()?;
        Ok(Collection { stored, spec, schema })
    }

    /// `SchemaViolation` unless `body` (with `_id`, without `_version`) fits the schema.
    pub fn check_schema(&self, body: &Map<String, Value>) -> Result<()> {
        match &self.schema {
            Some(s) => s.validate(&Value::Object(body.clone())),
            None => Ok(()),
        }
    }

    /// When the stored document `doc` expires, if ever.
    pub fn expiry(&self, doc: &Value) -> Option<DateTime<Utc>> {
        self.spec.ttl.as_ref().and_then(|t| t.expires_at(doc))
    }

    /// The paths of each unique index as `palisade_doc_unique_key` takes
    /// them (`[[segments…] per field] per index]`); `None` without unique indexes.
    pub fn unique_paths(&self) -> Option<Value> {
        let indexes: Vec<Value> = self
            .spec
            .indexes
            .iter()
            .filter(|idx| idx.unique)
            .map(|idx| idx.fields.iter().map(|k| json!(k.path.segments())).collect())
            .collect();
        (!indexes.is_empty()).then_some(Value::Array(indexes))
    }

    /// Every path some index covers (its btree index can serve conditions on it).
    pub fn indexed_paths(&self) -> Vec<FieldPath> {
        let mut paths: Vec<FieldPath> = Vec::new();
        for key in self.spec.indexes.iter().flat_map(|idx| &idx.fields) {
            if !paths.contains(&key.path) {
                paths.push(key.path.clone());
            }
        }
        paths
    }

    /// A violated unique constraint (`documents_<no>_unique_<i>`, see
    /// `migrations/0006_document_indexes.sql`) as a `UniqueViolation` naming
    /// index `i` of the spec; other errors unchanged.
    pub fn named_unique(&self, e: Error) -> Error {
        let index = match e.detail() {
            Some(ErrorDetail::UniqueViolation { index }) => index
                .rsplit_once("_unique_")
                .and_then(|(_, i)| i.parse::<usize>().ok())
                .and_then(|i| self.spec.indexes.get(i)),
            _ => None,
        };
        match index {
            Some(index) => Error::from(DocumentFault::Unique(index.name())).with_source(e),
            None => e,
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
    fn violated_unique_constraints_name_the_spec_index() {
        let spec = CollectionSpec::new("c")
            .with_index(IndexSpec::on(vec![SortKey::asc("a").unwrap()]))
            .with_index(IndexSpec::unique(vec![SortKey::asc("ip").unwrap(), SortKey::desc("port").unwrap()]));
        let coll = Collection::compile("c", to_json(&spec)).unwrap();
        let violation = |constraint: &str| {
            Error::new(ErrorKind::Conflict, "postgres error 23P01")
                .with_detail(ErrorDetail::UniqueViolation { index: constraint.to_owned() })
        };
        let index_of = |e: Error| match e.detail() {
            Some(ErrorDetail::UniqueViolation { index }) => index.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(index_of(coll.named_unique(violation("documents_7_unique_1"))), "ip_1_port_-1");
        assert_eq!(index_of(coll.named_unique(violation("documents_pkey"))), "documents_pkey");
        assert_eq!(index_of(coll.named_unique(violation("documents_7_unique_9"))), "documents_7_unique_9");
        assert_eq!(coll.unique_paths(), Some(json!([[["ip"], ["port"]]])));
        assert_eq!(coll.indexed_paths().len(), 3);
    }

    #[test]
    fn unreadable_specs_are_unexpected() {
        let e = from_json("x", &json!({"indexes": 5})).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unexpected);
    }
}
