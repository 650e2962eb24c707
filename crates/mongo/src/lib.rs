//! # palisade-mongo
//!
//! Palisade on MongoDB through the official `mongodb` driver 3.x — **work in
//! progress** (issue #13): the settings, connecting and the error mapping
//! are here and tested; the four stores are not yet, so this backend is not
//! in the facade's registry and `mongodb://` URLs are not accepted by
//! `Stores::connect` yet.
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
//! - **Test server**: the suite runs against SecantusDB, a Mongo-wire server
//!   from PyPI that `scripts/mongo-server.sh` installs and starts; it is not
//!   linked into Palisade, and the backend targets MongoDB 6–8.

pub mod config;
mod error;

use mongodb::bson::doc;
use mongodb::{Client, Database};
use palisade_core::{Capabilities, InputPolicy, Namespace, Result};

pub use config::MongoConfig;

/// The backend id used in errors, spans and test names.
pub const BACKEND: &str = "mongo";

/// What this backend's stores guarantee. No store exists yet: nothing.
pub fn capabilities() -> Capabilities {
    Capabilities::none()
}

/// A client confined to one namespace's database.
#[derive(Clone)]
pub struct MongoBackend {
    client: Client,
    db: Database,
    namespace: Namespace,
    policy: InputPolicy,
}

impl MongoBackend {
    /// Connects (eagerly: a `ping` makes an unreachable server or bad
    /// credentials fail here, with their kind).
    pub async fn connect(config: &MongoConfig) -> Result<Self> {
        let options = config.client_options().await?;
        let client = Client::with_options(options).map_err(|e| error::map("connect", e))?;
        let db = client.database(config.namespace.as_str());
        let backend = MongoBackend { client, db, namespace: config.namespace.clone(), policy: config.policy };
        backend.ping().await?;
        Ok(backend)
    }

    /// The namespace (database).
    pub fn namespace(&self) -> &Namespace {
        &self.namespace
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

    /// Closes the client's connections.
    pub async fn shutdown(self) {
        self.client.shutdown().await;
    }
}
