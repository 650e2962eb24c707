//! `DocumentStore` on per-collection ordered maps with unique-index maps,
//! schema validation before every write and exact TTL on read.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use dashmap::DashMap;
use palisade_core::backend::check::{prepare_insert, prepare_replace};
use palisade_core::backend::clock::now_ms;
use palisade_core::backend::eval::{cmp_docs, matches, project};
use palisade_core::backend::stored::with_version;
use palisade_core::documents::{CollectionSpec, Filter, FindOptions, SchemaValidator, UpdateOps, UpdateResult};
use palisade_core::{Capabilities, DocumentStore, InputPolicy, Namespace, Result, Store};
use parking_lot::{Mutex, RwLock};
use serde_json::{Map, Value};

use crate::error::{tagged, Fault};
use crate::{capabilities, MemoryConfig};

struct StoredDoc {
    doc: Value,
    expires_at: Option<DateTime<Utc>>,
}

impl StoredDoc {
    fn live(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_none_or(|at| now < at)
    }
    fn version(&self) -> u64 {
        self.doc.get("_version").and_then(Value::as_u64).unwrap_or(0)
    }
}

struct UniqueIndex {
    name: String,
    spec: palisade_core::documents::IndexSpec,
    /// Canonical key → document id.
    owners: HashMap<String, String>,
}

struct Collection {
    /// Set by `drop_collection` under the write lock: a writer that fetched the
    /// collection before the drop then finds it gone instead of writing into it.
    dropped: bool,
    spec: CollectionSpec,
    schema: Option<SchemaValidator>,
    docs: BTreeMap<String, StoredDoc>,
    unique: Vec<UniqueIndex>,
    last_sweep: Instant,
}

/// A write staged against a collection: all checks pass before any is applied.
struct Staged {
    id: String,
    doc: Value,
}

impl Collection {
    fn new(spec: CollectionSpec, schema: Option<SchemaValidator>) -> Self {
        let unique = spec
            .indexes
            .iter()
            .filter(|i| i.unique)
            .map(|i| UniqueIndex { name: i.name(), spec: i.clone(), owners: HashMap::new() })
            .collect();
        Collection { dropped: false, spec, schema, docs: BTreeMap::new(), unique, last_sweep: Instant::now() }
    }

    fn check_schema(&self, body: &Map<String, Value>) -> Result<()> {
        match &self.schema {
            Some(s) => s.validate(&Value::Object(body.clone())),
            None => Ok(()),
        }
    }

    fn expiry(&self, doc: &Value) -> Option<DateTime<Utc>> {
        self.spec.ttl.as_ref().and_then(|t| t.expires_at(doc))
    }

    fn remove(&mut self, id: &str) -> Option<StoredDoc> {
        let old = self.docs.remove(id)?;
        for idx in &mut self.unique {
            if let Some(k) = idx.spec.key_of(&old.doc) {
                if idx.owners.get(&k).is_some_and(|owner| owner == id) {
                    idx.owners.remove(&k);
                }
            }
        }
        Some(old)
    }

    /// Removes expired documents (at most once per `every`, unless forced).
    fn sweep(&mut self, now: DateTime<Utc>, every: Duration) {
        if self.spec.ttl.is_none() || self.last_sweep.elapsed() < every {
            return;
        }
        self.last_sweep = Instant::now();
        let dead: Vec<String> = self.docs.iter().filter(|(_, d)| !d.live(now)).map(|(id, _)| id.clone()).collect();
        for id in dead {
            self.remove(&id);
        }
    }

    /// Checks that `staged` (new contents for their ids) can be written
    /// together: no `_id` taken by another live document when `fresh`, no
    /// unique key held by a live document outside the batch or twice inside it.
    /// Expired holders are removed first, since they are already invisible.
    fn check_unique(&mut self, staged: &[Staged], fresh: bool, now: DateTime<Utc>) -> Result<()> {
        let expired_holders: Vec<String> = staged
            .iter()
            .flat_map(|s| {
                let by_id = fresh.then(|| s.id.clone());
                let by_key = self
                    .unique
                    .iter()
                    .filter_map(|idx| idx.spec.key_of(&s.doc).and_then(|k| idx.owners.get(&k).cloned()));
                by_id.into_iter().chain(by_key).collect::<Vec<_>>()
            })
            .filter(|id| self.docs.get(id).is_some_and(|d| !d.live(now)))
            .collect();
        for id in expired_holders {
            self.remove(&id);
        }
        if fresh {
            let mut ids = std::collections::HashSet::new();
            for s in staged {
                if self.docs.contains_key(&s.id) || !ids.insert(s.id.as_str()) {
                    return Err(Fault::Unique("_id".to_owned()).into());
                }
            }
        }
        for idx in &self.unique {
            let mut seen: HashMap<String, &str> = HashMap::new();
            for s in staged {
                let Some(k) = idx.spec.key_of(&s.doc) else { continue };
                let taken_outside = idx.owners.get(&k).is_some_and(|owner| staged.iter().all(|o| o.id != *owner));
                if taken_outside || seen.insert(k, &s.id).is_some() {
                    return Err(Fault::Unique(idx.name.clone()).into());
                }
            }
        }
        Ok(())
    }

    /// Writes checked documents, replacing earlier versions.
    fn commit(&mut self, staged: Vec<Staged>) -> Vec<Value> {
        let mut out = Vec::with_capacity(staged.len());
        for s in staged {
            self.remove(&s.id);
            for idx in &mut self.unique {
                if let Some(k) = idx.spec.key_of(&s.doc) {
                    idx.owners.insert(k, s.id.clone());
                }
            }
            let expires_at = self.expiry(&s.doc);
            out.push(s.doc.clone());
            self.docs.insert(s.id, StoredDoc { doc: s.doc, expires_at });
        }
        out
    }

    fn live_matching<'a>(
        &'a self,
        filter: &'a Filter,
        now: DateTime<Utc>,
    ) -> impl Iterator<Item = (&'a String, &'a StoredDoc)> + 'a {
        self.docs.iter().filter(move |(_, d)| d.live(now) && matches(filter, &d.doc))
    }
}

/// In-memory [`DocumentStore`]. Every write to a collection runs in one short
/// critical section, so multi-document writes are all-or-nothing.
pub struct MemoryDocumentStore {
    namespace: Namespace,
    collections: DashMap<String, Arc<RwLock<Collection>>>,
    /// Serializes `ensure_collection` so concurrent calls agree on the spec.
    ddl: Mutex<()>,
    sweep_every: Duration,
    policy: InputPolicy,
}

impl MemoryDocumentStore {
    /// The namespace this store is confined to.
    pub fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    /// An empty store for `namespace`.
    pub fn new(namespace: Namespace, config: &MemoryConfig) -> Self {
        MemoryDocumentStore {
            namespace,
            collections: DashMap::new(),
            ddl: Mutex::new(()),
            sweep_every: config.sweep_interval,
            policy: config.policy,
        }
    }

    fn collection(&self, name: &str) -> Result<Arc<RwLock<Collection>>> {
        palisade_core::backend::check::check_collection_name(name)?;
        self.collections.get(name).map(|c| Arc::clone(c.value())).ok_or_else(|| Fault::NoCollection.into())
    }

    fn write<T>(&self, name: &str, f: impl FnOnce(&mut Collection, DateTime<Utc>) -> Result<T>) -> Result<T> {
        let coll = self.collection(name)?;
        let mut c = coll.write();
        if c.dropped {
            return Err(Fault::NoCollection.into());
        }
        let now = now_ms();
        c.sweep(now, self.sweep_every);
        f(&mut c, now)
    }

    fn read<T>(&self, name: &str, f: impl FnOnce(&Collection, DateTime<Utc>) -> Result<T>) -> Result<T> {
        let coll = self.collection(name)?;
        let c = coll.read();
        if c.dropped {
            return Err(Fault::NoCollection.into());
        }
        f(&c, now_ms())
    }
}

#[async_trait]
impl Store for MemoryDocumentStore {
    fn backend(&self) -> &'static str {
        crate::BACKEND
    }

    fn capabilities(&self) -> Capabilities {
        capabilities()
    }

    async fn ping(&self) -> Result<()> {
        Ok(())
    }
}

#[async_trait]
impl DocumentStore for MemoryDocumentStore {
    async fn ensure_collection(&self, spec: CollectionSpec) -> Result<bool> {
        let run = || {
            let schema = spec.validate()?;
            let _ddl = self.ddl.lock();
            if let Some(existing) = self.collections.get(&spec.name) {
                return if existing.read().spec == spec { Ok(false) } else { Err(Fault::SpecMismatch.into()) };
            }
            let name = spec.name.clone();
            self.collections.insert(name, Arc::new(RwLock::new(Collection::new(spec, schema))));
            Ok(true)
        };
        run().map_err(tagged("ensure_collection"))
    }

    async fn drop_collection(&self, collection: &str) -> Result<bool> {
        let run = || {
            palisade_core::backend::check::check_collection_name(collection)?;
            let _ddl = self.ddl.lock();
            match self.collections.remove(collection) {
                Some((_, coll)) => {
                    coll.write().dropped = true;
                    Ok(true)
                }
                None => Ok(false),
            }
        };
        run().map_err(tagged("drop_collection"))
    }

    async fn insert(&self, collection: &str, doc: Value) -> Result<Value> {
        let mut stored = self.insert_many(collection, vec![doc]).await.map_err(|e| e.with_op("insert"))?;
        stored
            .pop()
            .ok_or_else(|| palisade_core::Error::new(palisade_core::ErrorKind::Unexpected, "insert stored nothing"))
    }

    async fn insert_many(&self, collection: &str, docs: Vec<Value>) -> Result<Vec<Value>> {
        let run = || {
            if docs.is_empty() || docs.len() > palisade_core::documents::MAX_INSERT_MANY {
                return Err(palisade_core::Error::invalid(format!(
                    "insert_many takes 1..={} documents",
                    palisade_core::documents::MAX_INSERT_MANY
                )));
            }
            let prepared = docs.into_iter().map(|d| prepare_insert(d, &self.policy)).collect::<Result<Vec<_>>>()?;
            self.write(collection, |c, now| {
                for (_, body) in &prepared {
                    c.check_schema(body)?;
                }
                let staged: Vec<Staged> =
                    prepared.into_iter().map(|(id, body)| Staged { id, doc: with_version(body, 1) }).collect();
                c.check_unique(&staged, true, now)?;
                Ok(c.commit(staged))
            })
        };
        run().map_err(tagged("insert_many"))
    }

    async fn get(&self, collection: &str, id: &str) -> Result<Option<Value>> {
        let run = || {
            palisade_core::backend::check::check_id(id)?;
            self.read(collection, |c, now| Ok(c.docs.get(id).filter(|d| d.live(now)).map(|d| d.doc.clone())))
        };
        run().map_err(tagged("get"))
    }

    async fn replace(&self, collection: &str, id: &str, doc: Value, expected_version: Option<u64>) -> Result<Value> {
        let run = || {
            let (body, expected) = prepare_replace(id, doc, expected_version, &self.policy)?;
            self.write(collection, |c, now| {
                let actual = c.docs.get(id).filter(|d| d.live(now)).ok_or(Fault::NoDocument)?.version();
                if let Some(expected) = expected.filter(|e| *e != actual) {
                    return Err(Fault::DocVersion { expected, actual }.into());
                }
                c.check_schema(&body)?;
                let staged = vec![Staged { id: id.to_owned(), doc: with_version(body, actual + 1) }];
                c.check_unique(&staged, false, now)?;
                Ok(c.commit(staged).remove(0))
            })
        };
        run().map_err(tagged("replace"))
    }

    async fn update(&self, collection: &str, filter: Filter, ops: UpdateOps) -> Result<UpdateResult> {
        let run = || {
            self.write(collection, |c, now| {
                let mut matched = 0;
                let mut staged = Vec::new();
                for (id, d) in c.live_matching(&filter, now) {
                    matched += 1;
                    let mut next = d.doc.clone();
                    ops.apply(&mut next, &self.policy)?;
                    if next == d.doc {
                        continue;
                    }
                    let Value::Object(mut body) = next else { continue };
                    body.remove("_version");
                    c.check_schema(&body)?;
                    staged.push(Staged { id: id.clone(), doc: with_version(body, d.version() + 1) });
                }
                c.check_unique(&staged, false, now)?;
                let modified = staged.len() as u64;
                c.commit(staged);
                Ok(UpdateResult { matched, modified })
            })
        };
        run().map_err(tagged("update"))
    }

    async fn delete(&self, collection: &str, filter: Filter) -> Result<u64> {
        let run = || {
            self.write(collection, |c, now| {
                let ids: Vec<String> = c.live_matching(&filter, now).map(|(id, _)| id.clone()).collect();
                for id in &ids {
                    c.remove(id);
                }
                Ok(ids.len() as u64)
            })
        };
        run().map_err(tagged("delete"))
    }

    async fn find(&self, collection: &str, options: FindOptions) -> Result<Vec<Value>> {
        let run = || {
            options.validate()?;
            self.read(collection, |c, now| {
                let mut docs: Vec<&Value> = c.live_matching(&options.filter, now).map(|(_, d)| &d.doc).collect();
                if !options.sort.is_empty() {
                    docs.sort_by(|a, b| cmp_docs(a, b, &options.sort));
                }
                let page = docs.into_iter().skip(options.skip).take(options.limit.unwrap_or(usize::MAX));
                Ok(match &options.projection {
                    Some(p) => page.map(|d| project(d, p)).collect(),
                    None => page.cloned().collect(),
                })
            })
        };
        run().map_err(tagged("find"))
    }

    async fn count(&self, collection: &str, filter: Filter) -> Result<u64> {
        self.read(collection, |c, now| Ok(c.live_matching(&filter, now).count() as u64)).map_err(tagged("count"))
    }
}
