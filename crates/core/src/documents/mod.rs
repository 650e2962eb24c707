//! JSON documents in collections, and the [`DocumentStore`] trait.

mod filter;
pub(crate) mod matcher;
pub(crate) mod path;
mod schema;
mod update;
pub(crate) mod value;

pub use filter::{FieldOp, Filter, MAX_CONDITIONS, MAX_FILTER_DEPTH};
pub use path::{check_field_name, FieldPath, MAX_DEPTH, MAX_FIELD_LEN};
pub use schema::SchemaValidator;
pub use update::{UpdateOp, UpdateOps};

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::backend::check::check_collection_name;
use crate::backend::eval::reach;
use crate::error::{Error, Result};
use crate::store::Store;

/// Most documents one `insert_many` accepts.
pub const MAX_INSERT_MANY: usize = 100_000;
/// Largest `find` limit.
pub const MAX_FIND_LIMIT: usize = 10_000;
/// Longest `_id`, in bytes.
pub const MAX_ID_LEN: usize = 512;
/// Most fields in one index.
pub const MAX_INDEX_FIELDS: usize = 8;

/// Sort direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum SortOrder {
    /// Smallest first.
    Asc,
    /// Largest first.
    Desc,
}

/// One sort or index key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SortKey {
    /// The field.
    pub path: FieldPath,
    /// The direction.
    pub order: SortOrder,
}

impl SortKey {
    /// Ascending on `path`.
    pub fn asc(path: &str) -> Result<Self> {
        Ok(SortKey { path: FieldPath::parse(path)?, order: SortOrder::Asc })
    }
    /// Descending on `path`.
    pub fn desc(path: &str) -> Result<Self> {
        Ok(SortKey { path: FieldPath::parse(path)?, order: SortOrder::Desc })
    }
}

/// A secondary index.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IndexSpec {
    /// Indexed fields, in order (compound when more than one).
    pub fields: Vec<SortKey>,
    /// Whether two documents may share the indexed values.
    ///
    /// Unique indexes compare whole values (an array is one value, unlike
    /// MongoDB's multikey indexes), treat `1` and `1.0` as equal, and skip
    /// documents that lack any indexed field (like a sparse index).
    pub unique: bool,
}

impl IndexSpec {
    /// A non-unique index on the given fields.
    pub fn on(fields: Vec<SortKey>) -> Self {
        IndexSpec { fields, unique: false }
    }
    /// A unique index on the given fields.
    pub fn unique(fields: Vec<SortKey>) -> Self {
        IndexSpec { fields, unique: true }
    }
    /// A deterministic name such as `ip_1_seen_-1`.
    pub fn name(&self) -> String {
        self.fields
            .iter()
            .map(|k| format!("{}_{}", k.path, if k.order == SortOrder::Asc { "1" } else { "-1" }))
            .collect::<Vec<_>>()
            .join("_")
    }
    /// The canonical key of `doc` under this index, or `None` when the document
    /// lacks an indexed field.
    pub fn key_of(&self, doc: &Value) -> Option<String> {
        let mut parts = Vec::with_capacity(self.fields.len());
        for f in &self.fields {
            let reached = reach(doc, &f.path);
            let v = match reached.values.as_slice() {
                [] => return None,
                [one] => canonical(one),
                many => Value::Array(many.iter().map(|v| canonical(v)).collect()),
            };
            parts.push(v);
        }
        Some(Value::Array(parts).to_string())
    }
}

/// A copy of `v` with integral floats written as integers and object keys
/// in key order (whatever order the map keeps), so equal values produce
/// equal text.
fn canonical(v: &Value) -> Value {
    match v {
        Value::Number(n) => integral(n).unwrap_or_else(|| v.clone()),
        Value::Array(a) => Value::Array(a.iter().map(canonical).collect()),
        Value::Object(m) => {
            Value::Object(value::by_key(m).into_iter().map(|(k, v)| (k.clone(), canonical(v))).collect())
        }
        other => other.clone(),
    }
}

/// The integer a float's JSON text denotes, when it is one that fits an
/// `i64` or `u64` (`1.0` → `1`, `1e16` → `10000000000000000`). Read from the
/// text, as a database reading the stored JSON does (Postgres `jsonb`), so
/// unique keys agree with it even where the text is shorter than the float
/// (`1.152921504606847e18` is `1152921504606847000`, not 2^60).
fn integral(n: &serde_json::Number) -> Option<Value> {
    if !n.is_f64() {
        return None;
    }
    let text = n.to_string();
    let (mantissa, exp) = match text.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i32>().ok()?),
        None => (text.as_str(), 0),
    };
    let (negative, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let mut digits = format!("{whole}{fraction}");
    // value = digits × 10^scale
    let mut scale = exp.checked_sub(i32::try_from(fraction.len()).ok()?)?;
    while scale < 0 && digits.len() > 1 && digits.ends_with('0') {
        digits.pop();
        scale += 1;
    }
    if scale < 0 {
        return None;
    }
    let value = digits.parse::<i128>().ok()?.checked_mul(10i128.checked_pow(u32::try_from(scale).ok()?)?)?;
    let value = if negative { -value } else { value };
    i64::try_from(value).map(Value::from).or_else(|_| u64::try_from(value).map(Value::from)).ok()
}

/// Document expiry: a document expires `after` its `field` (an RFC 3339
/// timestamp string). Documents whose field is missing or not a timestamp never
/// expire. Expired documents are invisible to every read at once.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TtlSpec {
    /// The timestamp field.
    pub field: FieldPath,
    /// Seconds after the timestamp at which the document expires (0 = at it).
    pub after_seconds: u64,
}

impl TtlSpec {
    /// When `doc` expires under this spec, if ever.
    pub fn expires_at(&self, doc: &Value) -> Option<DateTime<Utc>> {
        let reached = reach(doc, &self.field);
        let text = reached.values.first()?.as_str()?;
        let at = DateTime::parse_from_rfc3339(text).ok()?.with_timezone(&Utc);
        let after = TimeDelta::try_seconds(i64::try_from(self.after_seconds).ok()?)?;
        at.checked_add_signed(after).map(crate::time::truncate_ms)
    }
}

/// What `ensure_collection` creates.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectionSpec {
    /// `[A-Za-z][A-Za-z0-9_]{0,62}`.
    pub name: String,
    /// Optional JSON schema of the documented subset (see [`SchemaValidator`]).
    pub schema: Option<Value>,
    /// Secondary indexes.
    pub indexes: Vec<IndexSpec>,
    /// Optional expiry rule.
    pub ttl: Option<TtlSpec>,
}

impl CollectionSpec {
    /// A collection without schema, indexes or TTL.
    pub fn new(name: impl Into<String>) -> Self {
        CollectionSpec { name: name.into(), schema: None, indexes: Vec::new(), ttl: None }
    }
    /// Sets the schema.
    pub fn with_schema(mut self, schema: Value) -> Self {
        self.schema = Some(schema);
        self
    }
    /// Adds an index.
    pub fn with_index(mut self, index: IndexSpec) -> Self {
        self.indexes.push(index);
        self
    }
    /// Sets the TTL rule.
    pub fn with_ttl(mut self, field: &str, after_seconds: u64) -> Result<Self> {
        self.ttl = Some(TtlSpec { field: FieldPath::parse(field)?, after_seconds });
        Ok(self)
    }

    /// Checks the name, compiles the schema, checks the indexes. Returns the
    /// compiled schema, if any.
    pub fn validate(&self) -> Result<Option<SchemaValidator>> {
        check_collection_name(&self.name)?;
        let compiled = self.schema.as_ref().map(SchemaValidator::compile).transpose()?;
        for idx in &self.indexes {
            if idx.fields.is_empty() || idx.fields.len() > MAX_INDEX_FIELDS {
                return Err(Error::invalid(format!("an index has 1..={MAX_INDEX_FIELDS} fields")));
            }
            if idx.fields.iter().any(|f| f.path.is_reserved()) {
                return Err(Error::invalid("`_id` and `_version` cannot be indexed again"));
            }
        }
        if let Some(ttl) = &self.ttl {
            if ttl.field.is_reserved() {
                return Err(Error::invalid("the TTL field cannot be `_id` or `_version`"));
            }
            if i64::try_from(ttl.after_seconds).is_err() {
                return Err(Error::invalid("TTL seconds out of range"));
            }
        }
        Ok(compiled)
    }
}

/// Which fields `find` returns. `_id` and `_version` are always returned.
#[derive(Debug, Clone, PartialEq)]
pub enum Projection {
    /// Only these fields.
    Include(Vec<FieldPath>),
    /// All but these fields.
    Exclude(Vec<FieldPath>),
}

/// Options of a `find`.
#[derive(Debug, Clone, PartialEq)]
pub struct FindOptions {
    /// Which documents.
    pub filter: Filter,
    /// Order (then always `_id` ascending).
    pub sort: Vec<SortKey>,
    /// How many matching documents to skip.
    pub skip: usize,
    /// At most this many (1..=[`MAX_FIND_LIMIT`]); `None` = all.
    pub limit: Option<usize>,
    /// Which fields.
    pub projection: Option<Projection>,
}

impl FindOptions {
    /// All documents matching `filter`, ordered by `_id`.
    pub fn new(filter: Filter) -> Self {
        FindOptions { filter, sort: Vec::new(), skip: 0, limit: None, projection: None }
    }
    /// Adds a sort key.
    pub fn sort(mut self, key: SortKey) -> Self {
        self.sort.push(key);
        self
    }
    /// Sets skip.
    pub fn skip(mut self, n: usize) -> Self {
        self.skip = n;
        self
    }
    /// Sets limit.
    pub fn limit(mut self, n: usize) -> Self {
        self.limit = Some(n);
        self
    }
    /// Sets the projection.
    pub fn project(mut self, p: Projection) -> Self {
        self.projection = Some(p);
        self
    }
    /// Checks the limit.
    pub fn validate(&self) -> Result<()> {
        if let Some(l) = self.limit {
            if l == 0 || l > MAX_FIND_LIMIT {
                return Err(Error::invalid(format!("find limit must be 1..={MAX_FIND_LIMIT}")));
            }
        }
        Ok(())
    }
}

/// Outcome of an `update`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct UpdateResult {
    /// Documents the filter matched.
    pub matched: u64,
    /// Documents whose content changed (their `_version` went up by one).
    pub modified: u64,
}

/// Checks the field names of a document value recursively: see
/// [`check_field_name`]; nesting at most [`MAX_DEPTH`].
pub(crate) fn validate_fields(v: &Value, depth: usize) -> Result<()> {
    if depth > MAX_DEPTH {
        return Err(Error::invalid(format!("documents nest at most {MAX_DEPTH} levels")));
    }
    match v {
        Value::Object(m) => m.iter().try_for_each(|(k, v)| {
            check_field_name(k)?;
            validate_fields(v, depth + 1)
        }),
        Value::Array(a) => a.iter().try_for_each(|v| validate_fields(v, depth + 1)),
        _ => Ok(()),
    }
}

/// JSON documents in named collections, with schemas, indexes, TTL and a
/// MongoDB-style filter language (see [`Filter`]).
///
/// # Contract
/// - **Collections** must be created with [`ensure_collection`](Self::ensure_collection)
///   before use; other calls on an unknown collection are `NotFound`. Ensuring
///   an existing collection with the same spec is a no-op (returns `false`); with
///   a different spec it is `Conflict`.
/// - **Documents** are JSON objects. `_id` is a string (a UUID v7 is generated
///   when absent); `_version` is store-managed: 1 on insert, +1 on every change.
///   Field names must not start with `$` or contain `.` or control characters;
///   documents nest at most 32 levels ([`MAX_DEPTH`]) and are held to the
///   store's [`InputPolicy`](crate::InputPolicy) (serialized size), also after
///   `update` operators are applied. U+0000 inside string values is stored and
///   returned byte-exact and compares like any other code point.
/// - **Writes are all-or-nothing**: `insert_many` and `update` change every
///   document or none. A write that breaks the schema is `SchemaViolation`; a
///   duplicate `_id` or unique-index value is `Conflict` with
///   [`ErrorDetail::UniqueViolation`](crate::ErrorDetail::UniqueViolation);
///   `replace` with a stale expected version is `Conflict` with
///   [`ErrorDetail::DocumentVersionConflict`](crate::ErrorDetail::DocumentVersionConflict).
///   In every error case nothing changes.
/// - **The schema** sees the document with `_id` and without `_version`.
/// - **Expired documents** (see [`TtlSpec`]) are invisible to every read and
///   are not matched by `update`/`delete` at once; a sweep reclaims them later.
/// - **`find`** orders by the sort keys (MongoDB's cross-type order; arrays sort
///   by their smallest element ascending, largest descending), then by `_id`.
///
/// # Errors
/// Filters and updates are parsed into typed values ([`Filter`], [`UpdateOps`])
/// before any call, so malformed ones never reach the backend.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait DocumentStore: Store {
    /// Creates the collection if missing; returns whether it was created.
    async fn ensure_collection(&self, spec: CollectionSpec) -> Result<bool>;
    /// Drops a collection and its documents; returns whether it existed.
    async fn drop_collection(&self, collection: &str) -> Result<bool>;
    /// Inserts one document and returns it as stored.
    async fn insert(&self, collection: &str, doc: Value) -> Result<Value>;
    /// Inserts all documents or none; returns them as stored, in order.
    async fn insert_many(&self, collection: &str, docs: Vec<Value>) -> Result<Vec<Value>>;
    /// The document with `id`, unless missing or expired.
    async fn get(&self, collection: &str, id: &str) -> Result<Option<Value>>;
    /// Replaces the document with `id` (`NotFound` if missing), optionally only
    /// if its `_version` equals `expected_version`; returns it as stored.
    async fn replace(&self, collection: &str, id: &str, doc: Value, expected_version: Option<u64>) -> Result<Value>;
    /// Applies `ops` to every document matching `filter`.
    async fn update(&self, collection: &str, filter: Filter, ops: UpdateOps) -> Result<UpdateResult>;
    /// Deletes every document matching `filter`; returns how many went.
    async fn delete(&self, collection: &str, filter: Filter) -> Result<u64>;
    /// Matching documents, sorted, skipped, limited and projected.
    async fn find(&self, collection: &str, options: FindOptions) -> Result<Vec<Value>>;
    /// How many documents match `filter`.
    async fn count(&self, collection: &str, filter: Filter) -> Result<u64>;
}

/// Typed (serde) and JSON-filter convenience methods for every [`DocumentStore`].
#[async_trait]
pub trait DocumentStoreExt: DocumentStore {
    /// Inserts a serde value; returns its `_id`.
    async fn insert_typed<T: Serialize + Sync>(&self, collection: &str, doc: &T) -> Result<String> {
        let stored = self.insert(collection, serde_json::to_value(doc)?).await?;
        stored
            .get("_id")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| Error::new(crate::ErrorKind::Unexpected, "stored document has no `_id`"))
    }

    /// `get` decoded into `T` (which may ignore `_id`/`_version`).
    async fn get_typed<T: DeserializeOwned>(&self, collection: &str, id: &str) -> Result<Option<T>> {
        match self.get(collection, id).await? {
            Some(v) => Ok(Some(serde_json::from_value(v)?)),
            None => Ok(None),
        }
    }

    /// `find` with a JSON filter, decoded into `T`s.
    async fn find_where<T: DeserializeOwned>(&self, collection: &str, filter: &Value) -> Result<Vec<T>> {
        let filter = Filter::parse(filter)?;
        self.find(collection, FindOptions::new(filter))
            .await?
            .into_iter()
            .map(|v| serde_json::from_value(v).map_err(Error::from))
            .collect()
    }

    /// `update` with JSON filter and update documents.
    async fn update_where(&self, collection: &str, filter: &Value, update: &Value) -> Result<UpdateResult> {
        let (filter, ops) = (Filter::parse(filter)?, UpdateOps::parse(update)?);
        self.update(collection, filter, ops).await
    }
}

impl<T: DocumentStore + ?Sized> DocumentStoreExt for T {}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(doc: Value) -> Option<String> {
        IndexSpec::unique(vec![SortKey::asc("n").unwrap()]).key_of(&doc)
    }

    #[test]
    fn unique_keys_equal_for_numbers_equal_by_value() {
        assert_eq!(key(json!({"n": 1})), key(json!({"n": 1.0})));
        assert_eq!(key(json!({"n": 0})), key(json!({"n": -0.0})));
        assert_eq!(key(json!({"n": 10_000_000_000_000_000u64})), key(json!({"n": 1e16})));
        assert_eq!(key(json!({"n": -10_000_000_000_000_000i64})), key(json!({"n": -1e16})));
        assert_eq!(key(json!({"n": 18_000_000_000_000_000_000u64})), key(json!({"n": 1.8e19})));
        // 2^60 as a float is written `1.152921504606847e18`: the text decides, as in jsonb.
        assert_eq!(key(json!({"n": 1_152_921_504_606_847_000i64})), key(json!({"n": 2f64.powi(60)})));
        assert_ne!(key(json!({"n": 1})), key(json!({"n": 1.5})));
        assert_ne!(key(json!({"n": 1e20})), key(json!({"n": 1e21})));
        assert_ne!(key(json!({"n": 1})), key(json!({"n": "1"})));
        assert_eq!(key(json!({"n": [1.0, {"m": 2.0}]})), key(json!({"n": [1, {"m": 2}]})));
        assert_eq!(key(json!({"m": 1})), None, "missing field: no key");
    }

    #[test]
    fn unique_keys_do_not_depend_on_the_maps_key_order() {
        // Insertion order differs; with serde_json's `preserve_order` (which
        // any dependency of a service may switch on) the maps keep it.
        let ba: Value = serde_json::from_str(r#"{"n": {"b": 2, "a": [1, {"d": 1, "c": 0}]}}"#).unwrap();
        let ab: Value = serde_json::from_str(r#"{"n": {"a": [1, {"c": 0, "d": 1.0}], "b": 2.0}}"#).unwrap();
        assert_eq!(key(ba), key(ab));
    }
}
