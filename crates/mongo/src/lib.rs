//! # palisade-mongo
//!
//! Palisade on MongoDB through the official `mongodb` driver 3.x: all four
//! stores, selected in the facade with feature `mongo` and URLs
//! `mongodb://…` or `mongodb+srv://…` ([`MongoConnector`]).
//!
//! **A replica set (or sharded cluster) is required**: appends, reputation
//! records and multi-document writes are transactions, the live tail
//! follows a change stream. Connecting to a standalone server is refused
//! with a `Config` error saying so (run it as a one-node replica set).
//!
//! - **Namespace = database**: every store of a namespace lives in the
//!   database named after it (namespaces are `[a-z][a-z0-9_]*`, valid
//!   database names).
//! - **Connecting** ([`MongoBackend::connect`]): the driver's options from the
//!   URL (`mongodb://`, or `mongodb+srv://` resolved when connecting), then
//!   Palisade's connect and server-selection timeouts, pool size and TLS
//!   (`PALISADE_TLS` turns TLS on unless the URL says `tls=`); a `ping`
//!   fails an unreachable server at connect time with `Unavailable`.
//! - **Errors**: one mapping (`error.rs`) from server error codes (11000
//!   duplicate key → `Conflict`, 121 validation → `SchemaViolation`, 112
//!   write conflict → temporary `Conflict`, 50 → `Timeout`, …), the
//!   driver's transient labels (temporary) and its error variants (network,
//!   pool cleared, server selection → temporary `Unavailable`) — never from
//!   message text, never echoing the URL.
//! - **Events**: see [`MongoEventStore`] (gap-free positions from a head
//!   counter written by every append's transaction).
//! - **Documents**: see [`MongoDocumentStore`].
//! - **Sessions**: see [`MongoSessionCache`]; a TTL index on `sessions.exp`
//!   is created (idempotently) at connect.
//! - **Reputation**: see [`MongoReputationRepo`]: one multi-document
//!   transaction per record (a replica set is needed, as for every
//!   transaction; the test server is a one-node replica set).
//! - **Test server**: the suite runs against SecantusDB, a Mongo-wire server
//!   from PyPI that `scripts/mongo-server.sh` installs and starts; it is not
//!   linked into Palisade, and the backend targets MongoDB 6–8.

pub mod config;
mod consumers;
mod documents;
mod error;
mod events;
mod reputation;
mod sessions;
mod txn;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use mongodb::bson::doc;
use mongodb::options::IndexOptions;
use mongodb::{Client, Database, IndexModel};
use palisade_core::backend::{Backend, ConnectOptions, Connector, MigrationStatus};
use palisade_core::{
    Capabilities, DocumentStore, Error, ErrorKind, EventStore, InputPolicy, Namespace, ReputationRepo, Result,
    SessionCache,
};

pub use config::MongoConfig;
pub use documents::MongoDocumentStore;
pub use events::{MongoEventStore, MAX_TRANSACTION_BYTES};
pub use reputation::MongoReputationRepo;
pub use sessions::MongoSessionCache;

/// The backend id used in errors, spans and test names.
pub const BACKEND: &str = "mongo";

/// What this backend's stores guarantee — on a replica set or sharded
/// cluster, the only servers [`MongoBackend::connect`] accepts (a
/// standalone server has neither transactions nor change streams):
/// durable; atomic, gap-free appends (one transaction each); a live tail
/// (change streams, or polling where they are unavailable); analytics
/// (aggregation pipelines); TTL indexes (reads hide expired data at once
/// anyway); schema validation (core's validator before every write, and a
/// `$jsonSchema` validator on each collection with a schema).
pub fn capabilities() -> Capabilities {
    let mut c = Capabilities::none();
    c.durable = true;
    c.atomic_batch = true;
    c.gap_free_order = true;
    c.live_tail = true;
    c.analytics = true;
    c.native_ttl = true;
    c.schema_validation = true;
    c.durable_consumers = true;
    c
}

/// A client confined to one namespace's database.
#[derive(Clone)]
pub struct MongoBackend {
    client: Client,
    db: Database,
    namespace: Namespace,
    policy: InputPolicy,
    op_timeout: Duration,
}

impl MongoBackend {
    /// Connects (eagerly: a `ping` makes an unreachable server or bad
    /// credentials fail here, with their kind).
    pub async fn connect(config: &MongoConfig) -> Result<Self> {
        let backend = Self::open(config).await?;
        backend.check_topology().await?;
        if config.migrate {
            backend.ensure_indexes().await?;
        } else {
            backend.check_indexes().await?;
        }
        Ok(backend)
    }

    /// A client that answered a `ping`, touching nothing in the namespace.
    async fn open(config: &MongoConfig) -> Result<Self> {
        let options = config.client_options().await?;
        let client = Client::with_options(options).map_err(|e| error::map("connect", e))?;
        let db = client.database(config.namespace.as_str());
        let backend = MongoBackend {
            client,
            db,
            namespace: config.namespace.clone(),
            policy: config.policy,
            op_timeout: config.op_timeout,
        };
        backend.ping().await?;
        Ok(backend)
    }

    /// `Config` unless the server is a replica set member or a `mongos`:
    /// transactions (appends, reputation records, document writes) and
    /// change streams need one. A standalone server can run as a one-node
    /// replica set (`--replSet rs0`, then `rs.initiate()`).
    async fn check_topology(&self) -> Result<()> {
        let hello = self.db.run_command(doc! {"hello": 1}).await.map_err(|e| error::map("connect", e))?;
        if replicated(&hello) {
            Ok(())
        } else {
            Err(Error::new(
                ErrorKind::Config,
                "palisade-mongo needs a replica set or a sharded cluster (transactions); \
                 run a standalone server as a one-node replica set",
            )
            .with_backend(BACKEND)
            .with_op("connect"))
        }
    }

    /// The stores' indexes, by collection: what [`ensure_indexes`](Self::ensure_indexes)
    /// creates and a connect without auto-migration requires.
    fn index_plan() -> Vec<(&'static str, IndexModel)> {
        let named = |keys, name: &str| {
            IndexModel::builder().keys(keys).options(IndexOptions::builder().name(name.to_owned()).build()).build()
        };
        vec![
            // Reclaims expired sessions some time after they expire; reads
            // already ignore them.
            (
                sessions::COLLECTION,
                IndexModel::builder()
                    .keys(doc! {"exp": 1})
                    .options(IndexOptions::builder().expire_after(Duration::ZERO).name("exp_ttl".to_owned()).build())
                    .build(),
            ),
            // A subject's history, newest first (ties by id are sorted after the
            // index scan; the test server's range scans of a four-field index
            // with `_id` miss boundary values).
            (reputation::EVENTS, named(doc! {"k": 1, "s": 1, "at": -1}, "k_1_s_1_at_-1")),
            // Boards: by score, ties by subject id; also counts of greater scores.
            (reputation::SCORES, named(doc! {"p": 1, "k": 1, "score": -1, "s": 1}, "p_1_k_1_score_-1_s_1")),
            (
                events::EVENTS,
                IndexModel::builder()
                    .keys(doc! {"pos": 1})
                    .options(IndexOptions::builder().unique(true).name("pos_unique".to_owned()).build())
                    .build(),
            ),
            (events::EVENTS, named(doc! {"session": 1, "pos": -1}, "session_1_pos_-1")),
            (events::EVENTS, named(doc! {"ip_key": 1, "pos": -1}, "ip_key_1_pos_-1")),
            (events::EVENTS, named(doc! {"kind": 1, "at": -1}, "kind_1_at_-1")),
            (events::EVENTS, named(doc! {"tag_set": 1, "pos": -1}, "tag_set_1_pos_-1")),
            (events::EVENTS, named(doc! {"stream": 1, "version": 1}, "stream_1_version_1")),
            (events::EVENTS, named(doc! {"at": 1}, "at_1")),
        ]
    }

    /// Creates the stores' indexes (idempotent: an existing index with the
    /// same keys and options is left alone) and the event head.
    async fn ensure_indexes(&self) -> Result<()> {
        for (collection, model) in Self::index_plan() {
            self.db
                .collection::<mongodb::bson::Document>(collection)
                .create_index(model)
                .await
                .map_err(|e| error::map("connect", e))?;
        }
        // The head exists before the first append, so appends never race to create it.
        let head = self.db.collection::<mongodb::bson::Document>(events::HEAD);
        match head.insert_one(doc! {"_id": "head", "n": 0_i64}).await {
            Ok(_) => {}
            Err(e) if error::is_duplicate_key(&e) => {}
            Err(e) => return Err(error::map("connect", e)),
        }
        Ok(())
    }

    /// The state of the namespace's schema, reading only: one entry per
    /// index the stores use, then the event head
    /// (what `palisade migrate` lists for Mongo).
    pub async fn schema_status(&self) -> Result<Vec<MigrationStatus>> {
        let mut out = Vec::new();
        let mut listed: Vec<(&str, Vec<String>)> = Vec::new();
        for (collection, model) in Self::index_plan() {
            let name = model.options.as_ref().and_then(|o| o.name.clone()).unwrap_or_default();
            if !listed.iter().any(|(c, _)| *c == collection) {
                let names = match self.db.collection::<mongodb::bson::Document>(collection).list_index_names().await {
                    Ok(names) => names,
                    Err(e) if error::server_code(&e) == Some(error::code::NAMESPACE_NOT_FOUND) => Vec::new(),
                    Err(e) => return Err(error::map("schema_status", e)),
                };
                listed.push((collection, names));
            }
            let applied = listed.iter().any(|(c, names)| *c == collection && names.contains(&name));
            let version = i64::try_from(out.len()).unwrap_or(i64::MAX) + 1;
            out.push(MigrationStatus { version, description: format!("index {collection}.{name}"), applied });
        }
        let head = self.db.collection::<mongodb::bson::Document>(events::HEAD);
        let applied = head.find_one(doc! {"_id": "head"}).await.map_err(|e| error::map("schema_status", e))?.is_some();
        let version = i64::try_from(out.len()).unwrap_or(i64::MAX) + 1;
        out.push(MigrationStatus { version, description: format!("document {}.head", events::HEAD), applied });
        Ok(out)
    }

    /// With auto-migration off: checks, reading only, that the schema is in
    /// place ([`schema_status`](Self::schema_status)); a `Config` error
    /// names what is missing (`palisade migrate` creates it).
    async fn check_indexes(&self) -> Result<()> {
        let missing: Vec<String> =
            self.schema_status().await?.into_iter().filter(|m| !m.applied).map(|m| m.description).collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(Error::new(
            ErrorKind::Config,
            format!(
                "namespace {} is missing {} and auto-migration is off: run `palisade migrate` as a user that may create indexes",
                self.namespace,
                missing.join(", ")
            ),
        )
        .with_backend(BACKEND)
        .with_op("connect"))
    }

    /// The document store of this namespace.
    pub fn documents(&self) -> MongoDocumentStore {
        MongoDocumentStore::new(self.clone())
    }

    /// The event store of this namespace.
    pub fn events(&self) -> MongoEventStore {
        MongoEventStore::new(self.clone())
    }

    /// The reputation repo of this namespace.
    pub fn reputation(&self) -> MongoReputationRepo {
        MongoReputationRepo::new(self.clone())
    }

    /// The driver's client (shared by every clone).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The session cache of this namespace.
    pub fn sessions(&self) -> MongoSessionCache {
        MongoSessionCache::new(self.clone())
    }

    /// The same client confined to another namespace (its indexes created).
    pub async fn with_namespace(&self, namespace: Namespace) -> Result<Self> {
        let db = self.client.database(namespace.as_str());
        let backend = MongoBackend {
            client: self.client.clone(),
            db,
            namespace,
            policy: self.policy,
            op_timeout: self.op_timeout,
        };
        backend.ensure_indexes().await?;
        Ok(backend)
    }

    /// The namespace (database).
    pub fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    /// How long one operation may take (so far it bounds `record`'s
    /// transaction retries; see the crate docs).
    pub fn op_timeout(&self) -> Duration {
        self.op_timeout
    }

    /// The input policy the stores enforce.
    pub fn policy(&self) -> InputPolicy {
        self.policy
    }

    /// The namespace's database, for a service's own queries.
    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Checks that the server answers.
    pub async fn ping(&self) -> Result<()> {
        self.db.run_command(doc! {"ping": 1}).await.map(|_| ()).map_err(|e| error::map("ping", e))
    }

    /// Drops the namespace's database and everything in it.
    pub async fn drop_namespace(&self) -> Result<()> {
        self.db.drop().await.map_err(|e| error::map("drop_namespace", e))
    }

    /// Closes the client's connections (clones share them).
    pub async fn shutdown(self) {
        self.client.shutdown().await;
    }
}

#[async_trait]
impl Backend for MongoBackend {
    fn events(&self) -> Result<Arc<dyn EventStore>> {
        Ok(Arc::new(MongoBackend::events(self)))
    }
    fn sessions(&self) -> Result<Arc<dyn SessionCache>> {
        Ok(Arc::new(MongoBackend::sessions(self)))
    }
    fn documents(&self) -> Result<Arc<dyn DocumentStore>> {
        Ok(Arc::new(MongoBackend::documents(self)))
    }
    fn reputation(&self) -> Result<Arc<dyn ReputationRepo>> {
        Ok(Arc::new(MongoBackend::reputation(self)))
    }
    async fn drop_namespace(&self) -> Result<()> {
        MongoBackend::drop_namespace(self).await
    }
}

/// The mongo connector (`mongodb://`, `mongodb+srv://`): one client per
/// server and namespace, indexes created on connect. Settings:
/// [`MongoConfig::from_options`].
#[derive(Debug, Clone, Copy, Default)]
pub struct MongoConnector;

#[async_trait]
impl Connector for MongoConnector {
    /// A role with `find`/`insert`/`update`/`remove` on the namespace's
    /// database (what `readWrite` gives, without `createIndex` and
    /// `dropCollection`: with auto-migration off, indexes are created by
    /// `palisade migrate`), plus `listIndexes`/`listCollections` for the
    /// connect check and `changeStream` for live tails; run in `mongosh`.
    fn grants(&self, ns: &Namespace, role: &str) -> Option<String> {
        let (db, role) = (serde_json::Value::from(ns.as_str()), serde_json::Value::from(role));
        Some(format!(
            "db.getSiblingDB({db}).createRole({{ role: {role}, roles: [], privileges: [{{ resource: {{ db: {db}, collection: \"\" }}, \
             actions: [\"find\", \"insert\", \"update\", \"remove\", \"listIndexes\", \"listCollections\", \"changeStream\", \"createCollection\"] }}] }})\n\
             // then: db.getSiblingDB({db}).createUser({{ user: {role}, pwd: passwordPrompt(), roles: [{role}] }})\n"
        ))
    }
    fn id(&self) -> &'static str {
        BACKEND
    }
    fn capabilities(&self) -> Capabilities {
        capabilities()
    }
    fn validate(&self, url: &str, options: &ConnectOptions) -> Result<()> {
        MongoConfig::from_options(url, options).map(|_| ())
    }
    async fn connect(&self, url: &str, options: &ConnectOptions) -> Result<Arc<dyn Backend>> {
        Ok(Arc::new(MongoBackend::connect(&MongoConfig::from_options(url, options)?).await?))
    }
    async fn ping(&self, url: &str, options: &ConnectOptions) -> Result<()> {
        MongoBackend::open(&MongoConfig::from_options(url, options)?).await.map(|_| ())
    }
    /// Creates the indexes and the event head (unless `dry_run`) and lists
    /// them, one entry each, as migrations.
    async fn migrate(
        &self,
        url: &str,
        options: &ConnectOptions,
        dry_run: bool,
    ) -> Result<Option<Vec<MigrationStatus>>> {
        let config = MongoConfig::from_options(url, options)?;
        let backend = MongoBackend::open(&config).await?;
        if !dry_run {
            backend.check_topology().await?;
            backend.ensure_indexes().await?;
        }
        backend.schema_status().await.map(Some)
    }
    async fn drop_namespace(&self, url: &str, options: &ConnectOptions) -> Result<()> {
        MongoBackend::open(&MongoConfig::from_options(url, options)?).await?.drop_namespace().await
    }
}

/// Whether a `hello` reply comes from a replica set member or a `mongos`.
fn replicated(hello: &mongodb::bson::Document) -> bool {
    hello.get_str("setName").is_ok() || hello.get_str("msg").is_ok_and(|m| m == "isdbgrid")
}

fn invalid_state(msg: &'static str) -> Error {
    Error::new(ErrorKind::Unexpected, msg).with_backend(BACKEND)
}

/// An instant as BSON stores it (milliseconds, the stores' precision).
fn bson_date(at: chrono::DateTime<chrono::Utc>) -> mongodb::bson::DateTime {
    mongodb::bson::DateTime::from_millis(at.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_replica_sets_and_mongos_are_accepted() {
        assert!(replicated(&doc! {"isWritablePrimary": true, "setName": "rs0"}));
        assert!(replicated(&doc! {"isWritablePrimary": true, "msg": "isdbgrid"}));
        assert!(!replicated(&doc! {"isWritablePrimary": true}), "a standalone server");
        assert!(!replicated(&doc! {"msg": "other"}));
    }

    #[test]
    fn capabilities_are_those_of_a_replica_set() {
        let c = capabilities();
        assert!(c.durable && c.atomic_batch && c.gap_free_order && c.live_tail && c.analytics);
        assert!(c.native_ttl && c.schema_validation && !c.bounded_capacity);
    }
}
