//! `DocumentStore` for `Degradable<dyn DocumentStore>`.

use async_trait::async_trait;
use serde_json::Value;

use super::{Degradable, Replay, WritePolicy};
use crate::documents::{CollectionSpec, Filter, FindOptions, UpdateOp, UpdateOps, UpdateResult};
use crate::error::{Error, ErrorDetail, ErrorKind};
use crate::{DocumentStore, Result};

/// A buffered document write.
/// Fields mirror the parameters of the trait method of the same name.
#[allow(missing_docs)]
#[derive(Debug, Clone)]
pub enum DocumentOp {
    /// `ensure_collection`.
    Ensure(CollectionSpec),
    /// `drop_collection`.
    Drop(String),
    /// `insert`/`insert_many`, with the `_id`s the secondary assigned.
    Insert { collection: String, docs: Vec<Value> },
    /// `replace` (without an expected version: those are refused while degraded).
    Replace { collection: String, id: String, doc: Value },
    /// `update`, replayed with the same filter against the primary's data.
    Update { collection: String, filter: Filter, ops: UpdateOps },
    /// `delete`, replayed with the same filter against the primary's data.
    Delete { collection: String, filter: Filter },
}

fn without_version(mut doc: Value) -> Value {
    if let Value::Object(m) = &mut doc {
        m.remove("_version");
    }
    doc
}

#[async_trait]
impl<'a> Replay for dyn DocumentStore + 'a {
    type Op = DocumentOp;

    async fn replay(&self, op: &DocumentOp) -> Result<()> {
        match op.clone() {
            DocumentOp::Ensure(spec) => self.ensure_collection(spec).await.map(|_| ()),
            DocumentOp::Drop(name) => self.drop_collection(&name).await.map(|_| ()),
            DocumentOp::Insert { collection, docs } => match self.insert_many(&collection, docs.clone()).await {
                // Some ids exist already: from an earlier (interrupted or timed-out)
                // attempt — fine if the stored document is the same — or not.
                Err(e) if is_id_conflict(&e) => {
                    for doc in docs {
                        match self.insert(&collection, doc.clone()).await {
                            Err(e) if is_id_conflict(&e) => {
                                let id = doc.get("_id").and_then(Value::as_str).unwrap_or_default();
                                let stored = self.get(&collection, id).await?.map(without_version);
                                if stored.as_ref() != Some(&doc) {
                                    return Err(Error::new(
                                        ErrorKind::Conflict,
                                        "the primary holds a different document under a replayed insert's `_id`",
                                    )
                                    .with_source(e));
                                }
                            }
                            other => {
                                other?;
                            }
                        }
                    }
                    Ok(())
                }
                other => other.map(|_| ()),
            },
            DocumentOp::Replace { collection, id, doc } => self.replace(&collection, &id, doc, None).await.map(|_| ()),
            DocumentOp::Update { collection, filter, ops } => self.update(&collection, filter, ops).await.map(|_| ()),
            DocumentOp::Delete { collection, filter } => self.delete(&collection, filter).await.map(|_| ()),
        }
    }

    async fn probe(&self) -> Result<()> {
        self.ping().await
    }

    fn describe(op: &DocumentOp) -> String {
        match op {
            DocumentOp::Ensure(spec) => format!("ensure_collection {}", spec.name),
            DocumentOp::Drop(name) => format!("drop_collection {name}"),
            DocumentOp::Insert { collection, docs } => format!("insert of {} documents into {collection}", docs.len()),
            DocumentOp::Replace { collection, id, .. } => format!("replace of {id} in {collection}"),
            DocumentOp::Update { collection, .. } => format!("update in {collection}"),
            DocumentOp::Delete { collection, .. } => format!("delete in {collection}"),
        }
    }

    fn idempotent(op: &DocumentOp) -> bool {
        match op {
            DocumentOp::Update { ops, .. } => update_is_idempotent(ops),
            _ => true,
        }
    }
}

fn is_id_conflict(e: &Error) -> bool {
    matches!(e.detail(), Some(ErrorDetail::UniqueViolation { index }) if index == "_id")
}

/// `$set`/`$unset` give the same result twice; `$inc`/`$push` do not.
fn update_is_idempotent(ops: &UpdateOps) -> bool {
    ops.ops().iter().all(|op| matches!(op, UpdateOp::Set(..) | UpdateOp::Unset(..)))
}

/// Gives `doc` an `_id` (UUID v7) if it has none, so a timed-out insert is
/// replayed under the id the primary may already have stored it with.
fn with_id(mut doc: Value) -> Value {
    if let Value::Object(m) = &mut doc {
        m.entry("_id").or_insert_with(|| Value::String(uuid::Uuid::now_v7().to_string()));
    }
    doc
}

#[async_trait]
impl DocumentStore for Degradable<dyn DocumentStore> {
    /// Also ensures the collection on the secondary, so a later failover finds it.
    async fn ensure_collection(&self, spec: CollectionSpec) -> Result<bool> {
        let op = DocumentOp::Ensure(spec.clone());
        let created = self
            .write("ensure_collection", WritePolicy::Idempotent, |s| s.ensure_collection(spec.clone()), |_| Some(op))
            .await?;
        if !self.is_degraded() {
            match self.secondary.ensure_collection(spec).await {
                Ok(_) => {}
                // The secondary kept an older spec from a previous outage: the primary's answer stands.
                Err(e) if e.kind() == ErrorKind::Conflict => {}
                Err(e) => return Err(e),
            }
        }
        Ok(created)
    }

    async fn drop_collection(&self, collection: &str) -> Result<bool> {
        let op = DocumentOp::Drop(collection.to_owned());
        self.write("drop_collection", WritePolicy::Idempotent, |s| s.drop_collection(collection), |_| Some(op)).await
    }

    async fn insert(&self, collection: &str, doc: Value) -> Result<Value> {
        let op = |stored: &Value| {
            Some(DocumentOp::Insert { collection: collection.to_owned(), docs: vec![without_version(stored.clone())] })
        };
        let doc = with_id(doc);
        self.write("insert", WritePolicy::Idempotent, |s| s.insert(collection, doc.clone()), op).await
    }

    async fn insert_many(&self, collection: &str, docs: Vec<Value>) -> Result<Vec<Value>> {
        let op = |stored: &Vec<Value>| {
            let docs = stored.iter().cloned().map(without_version).collect();
            Some(DocumentOp::Insert { collection: collection.to_owned(), docs })
        };
        let docs: Vec<Value> = docs.into_iter().map(with_id).collect();
        self.write("insert_many", WritePolicy::Idempotent, |s| s.insert_many(collection, docs.clone()), op).await
    }

    async fn get(&self, collection: &str, id: &str) -> Result<Option<Value>> {
        self.read("get", |s| s.get(collection, id)).await
    }

    async fn replace(&self, collection: &str, id: &str, doc: Value, expected_version: Option<u64>) -> Result<Value> {
        let versioned = expected_version.is_some() || doc.get("_version").is_some();
        let policy = if versioned { WritePolicy::PrimaryOnly } else { WritePolicy::Idempotent };
        let op = |stored: &Value| {
            Some(DocumentOp::Replace {
                collection: collection.to_owned(),
                id: id.to_owned(),
                doc: without_version(stored.clone()),
            })
        };
        self.write("replace", policy, |s| s.replace(collection, id, doc.clone(), expected_version), op).await
    }

    async fn update(&self, collection: &str, filter: Filter, ops: UpdateOps) -> Result<UpdateResult> {
        let op = DocumentOp::Update { collection: collection.to_owned(), filter: filter.clone(), ops: ops.clone() };
        let policy = if update_is_idempotent(&ops) { WritePolicy::Idempotent } else { WritePolicy::NotIdempotent };
        self.write("update", policy, |s| s.update(collection, filter.clone(), ops.clone()), |_| Some(op)).await
    }

    async fn delete(&self, collection: &str, filter: Filter) -> Result<u64> {
        let op = DocumentOp::Delete { collection: collection.to_owned(), filter: filter.clone() };
        self.write("delete", WritePolicy::Idempotent, |s| s.delete(collection, filter.clone()), |_| Some(op)).await
    }

    async fn find(&self, collection: &str, options: FindOptions) -> Result<Vec<Value>> {
        self.read("find", |s| s.find(collection, options.clone())).await
    }

    async fn count(&self, collection: &str, filter: Filter) -> Result<u64> {
        self.read("count", |s| s.count(collection, filter.clone())).await
    }
}
