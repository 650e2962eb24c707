//! A collection's spec as stored in `collections.spec` (jsonb; core's
//! stored form, [`to_json`]), and its compiled form: schema validator, TTL
//! rule and indexes.

use chrono::{DateTime, Utc};
use palisade_core::documents::{CollectionSpec, FieldPath, SchemaValidator};
use palisade_core::{Error, ErrorDetail, Result};
use serde_json::{json, Map, Value};

use super::DocumentFault;
pub use palisade_core::backend::documents::{from_json, to_json};

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
    use palisade_core::documents::{IndexSpec, SortKey};
    use palisade_core::ErrorKind;

    use super::*;

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
}
