//! Least privilege: services run as data-only roles with auto-migration off;
//! schema changes are the schema owner's explicit step.
//!
//! - Postgres: a role with only the grants `palisade migrate --print-grants`
//!   prints (`palisade_test_rw`, created here, dropped by `scripts/test.sh`)
//!   runs the whole conformance suite on namespaces the owner migrated —
//!   document collections created and dropped by the owner, the privileged
//!   step, every document operation as the role; connecting it to an unmigrated namespace
//!   is a `Config` error naming the migrations, with auto-migration on a
//!   `PermissionDenied`, and creating a document collection (DDL: the
//!   privileged step) is `PermissionDenied` — all changing nothing.
//! - Redis: an ACL user (`palisade_test_acl`) granted the printed rule per
//!   namespace runs the Redis suite on both clients, and is refused (`PermissionDenied`) on
//!   another namespace's keys, which stay as they were.
//!
//! Servers from `PALISADE_TEST_POSTGRES_URL` / `PALISADE_TEST_REDIS_URL`
//! (required in CI); roles and users are set up with `psql` / `redis-cli`.
#![cfg(all(feature = "conformance", feature = "pg-sqlx", feature = "redis-rs"))]

use std::process::Command;
use std::sync::Arc;

use async_trait::async_trait;
use palisade::harness::ConfigHarness;
use palisade::{Config, ErrorKind, Namespace, Result, StoreUrl, Stores};
use palisade_conformance::{harness_from_env, server_url, Harness};
use palisade_core::documents::UpdateResult;
use palisade_core::{DocumentStore, EventStore, ReputationRepo, SessionCache};
use serde_json::Value;

const PG_ROLE: &str = "palisade_test_rw";
const REDIS_USER: &str = "palisade_test_acl";
const REDIS_PASSWORD: &str = "palisade-test-acl-password";

/// Runs `sql` with `psql` as the owner at `url`; its output.
fn psql(url: &str, sql: &str) -> String {
    let out = Command::new("psql").args([url, "-v", "ON_ERROR_STOP=1", "-qAtc", sql]).output().expect("psql runs");
    assert!(out.status.success(), "psql {sql}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Runs a command with `redis-cli` as the default user at `url`.
fn redis_cli(url: &str, args: &[&str]) -> String {
    let out = Command::new("redis-cli").arg("-u").arg(url).args(args).output().expect("redis-cli runs");
    assert!(out.status.success(), "redis-cli {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// `url` with its user (and password) replaced.
fn as_user(url: &str, user: &str, password: Option<&str>) -> String {
    let mut u = url::Url::parse(url).expect("a server URL");
    u.set_username(user).expect("a URL with a host");
    u.set_password(password).expect("a URL with a host");
    u.to_string()
}

/// The data-only role, created once (idempotently, as other runs may have left it).
fn ensure_pg_role(admin: &str) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        psql(
            admin,
            &format!(
                "DO $$ BEGIN CREATE ROLE {PG_ROLE} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE; \
                 EXCEPTION WHEN duplicate_object THEN NULL; END $$"
            ),
        );
    });
}

/// Every store at `url` (Redis keeps no documents: those stay in memory).
fn config_at(url: &str, migrate: bool) -> Config {
    let parsed = StoreUrl::parse(url).expect("a store URL");
    let mut config = Config { migrate, pool_size: 2, ..Config::default() };
    for store in [&mut config.events, &mut config.sessions, &mut config.reputation] {
        store.url = parsed.clone();
    }
    if !url.starts_with("redis") {
        config.documents.url = parsed;
    }
    config
}

/// Applies the printed grants for the role in `ns` (as the owner).
fn grant(admin: &str, ns: &Namespace) -> Result<()> {
    let mut owner = config_at(admin, true);
    owner.namespace = ns.clone();
    let grants = palisade::migrate::grants(&owner, PG_ROLE)?;
    let sql: String = grants.lines().filter(|l| !l.starts_with('#')).collect::<Vec<_>>().join("\n");
    psql(admin, &sql);
    Ok(())
}

/// Migrates `ns` as the owner (`palisade migrate`) and grants the role.
async fn prepare_pg_namespace(admin: &str, ns: &Namespace) -> Result<()> {
    let mut owner = config_at(admin, true);
    owner.namespace = ns.clone();
    palisade::migrate::run(&owner, false).await?;
    grant(admin, ns)
}

/// The conformance harness of the data-only role: namespaces come migrated
/// and granted by the owner; stores open as the role with auto-migration off.
struct DataRole {
    admin: String,
    app: ConfigHarness,
    /// Recycles namespaces like the pg_sqlx runner (emptied, not dropped).
    owner: ConfigHarness,
    granted: &'static std::sync::Mutex<std::collections::HashSet<String>>,
}

/// The document store a data-only deployment has: collections are created
/// and dropped in the privileged step (the owner), every document operation
/// runs as the data role — so the document cases run the role's grants,
/// default privileges on the partitions the owner creates included.
struct PrivilegedCollections {
    owner: Arc<dyn DocumentStore>,
    app: Arc<dyn DocumentStore>,
}

#[async_trait]
impl palisade_core::Store for PrivilegedCollections {
    fn backend(&self) -> &'static str {
        self.app.backend()
    }
    fn capabilities(&self) -> palisade_core::Capabilities {
        self.app.capabilities()
    }
    async fn ping(&self) -> Result<()> {
        self.app.ping().await
    }
}

#[async_trait]
impl DocumentStore for PrivilegedCollections {
    async fn ensure_collection(&self, spec: palisade::CollectionSpec) -> Result<bool> {
        self.owner.ensure_collection(spec).await
    }
    async fn drop_collection(&self, collection: &str) -> Result<bool> {
        self.owner.drop_collection(collection).await
    }
    async fn insert(&self, collection: &str, doc: Value) -> Result<Value> {
        self.app.insert(collection, doc).await
    }
    async fn insert_many(&self, collection: &str, docs: Vec<Value>) -> Result<Vec<Value>> {
        self.app.insert_many(collection, docs).await
    }
    async fn get(&self, collection: &str, id: &str) -> Result<Option<Value>> {
        self.app.get(collection, id).await
    }
    async fn replace(&self, collection: &str, id: &str, doc: Value, expected: Option<u64>) -> Result<Value> {
        self.app.replace(collection, id, doc, expected).await
    }
    async fn update(
        &self,
        collection: &str,
        filter: palisade::Filter,
        ops: palisade::UpdateOps,
    ) -> Result<UpdateResult> {
        self.app.update(collection, filter, ops).await
    }
    async fn delete(&self, collection: &str, filter: palisade::Filter) -> Result<u64> {
        self.app.delete(collection, filter).await
    }
    async fn find(&self, collection: &str, options: palisade::FindOptions) -> Result<Vec<Value>> {
        self.app.find(collection, options).await
    }
    async fn count(&self, collection: &str, filter: palisade::Filter) -> Result<u64> {
        self.app.count(collection, filter).await
    }
}

#[async_trait]
impl Harness for DataRole {
    fn backend(&self) -> &'static str {
        "pg_sqlx"
    }
    async fn event_store(&self, ns: &Namespace) -> Result<Arc<dyn EventStore>> {
        self.app.event_store(ns).await
    }
    async fn session_cache(&self, ns: &Namespace) -> Result<Arc<dyn SessionCache>> {
        self.app.session_cache(ns).await
    }
    async fn document_store(&self, ns: &Namespace) -> Result<Arc<dyn DocumentStore>> {
        let owner = self.owner.document_store(ns).await?;
        let app = self.app.document_store(ns).await?;
        Ok(Arc::new(PrivilegedCollections { owner, app }))
    }
    async fn reputation_repo(&self, ns: &Namespace) -> Result<Arc<dyn ReputationRepo>> {
        self.app.reputation_repo(ns).await
    }
    /// A namespace the owner migrated and granted: a recycled one (emptied
    /// by the owner, grants kept) or a new one.
    async fn namespace(&self) -> Result<Namespace> {
        let ns = self.owner.namespace().await?;
        let granted = |set: &std::sync::Mutex<std::collections::HashSet<String>>| {
            set.lock().unwrap_or_else(std::sync::PoisonError::into_inner).contains(ns.as_str())
        };
        if !granted(self.granted) {
            // Opening a store as the owner migrates the namespace (and keeps
            // its backend for recycling); then the printed grants.
            self.owner.event_store(&ns).await?;
            grant(&self.admin, &ns)?;
            self.granted.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(ns.as_str().to_owned());
        }
        Ok(ns)
    }
    async fn release(&self, ns: &Namespace, reusable: bool) -> Result<()> {
        if !reusable {
            self.granted.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(ns.as_str());
        }
        self.owner.release(ns, reusable).await
    }
    async fn drop_namespace(&self, ns: &Namespace) -> Result<()> {
        self.owner.drop_namespace(ns).await
    }
}

async fn pg_data_role() -> Option<Arc<dyn Harness>> {
    harness_from_env("postgres", "PALISADE_TEST_POSTGRES_URL", |admin| async move {
        ensure_pg_role(&admin);
        let app = ConfigHarness::new(config_at(&as_user(&admin, PG_ROLE, None), false));
        let owner = ConfigHarness::new(config_at(&admin, true)).recycling();
        Ok(Arc::new(DataRole { admin, app, owner, granted: &GRANTED }) as Arc<dyn Harness>)
    })
    .await
}

/// Namespaces granted to the role so far (recycled ones keep their grants).
static GRANTED: std::sync::LazyLock<std::sync::Mutex<std::collections::HashSet<String>>> =
    std::sync::LazyLock::new(Default::default);

palisade_conformance::conformance_tests!(
    pg_sqlx_data_role,
    pg_data_role(),
    [event_store, consumers, session_cache, document_store, reputation_repo, tower]
);

/// The Redis ACL user's harness: each case's namespace is added to the
/// user's keys with the rule `--print-grants` prints, and to nothing else.
struct AclUser {
    admin: String,
    app: ConfigHarness,
}

#[async_trait]
impl Harness for AclUser {
    fn backend(&self) -> &'static str {
        "redis_rs"
    }
    async fn event_store(&self, ns: &Namespace) -> Result<Arc<dyn EventStore>> {
        self.app.event_store(ns).await
    }
    async fn session_cache(&self, ns: &Namespace) -> Result<Arc<dyn SessionCache>> {
        self.app.session_cache(ns).await
    }
    async fn document_store(&self, ns: &Namespace) -> Result<Arc<dyn DocumentStore>> {
        self.app.document_store(ns).await
    }
    async fn reputation_repo(&self, ns: &Namespace) -> Result<Arc<dyn ReputationRepo>> {
        self.app.reputation_repo(ns).await
    }
    async fn namespace(&self) -> Result<Namespace> {
        let ns = Namespace::random("conf")?;
        // The printed rule's key pattern for `ns`, added to the user's others.
        let rule = palisade::redis::acl_rule(&ns, REDIS_USER);
        let pattern = rule.split_whitespace().find(|w| w.starts_with('~')).expect("a key pattern").to_owned();
        redis_cli(&self.admin, &["ACL", "SETUSER", REDIS_USER, &pattern]);
        Ok(ns)
    }
    async fn drop_namespace(&self, ns: &Namespace) -> Result<()> {
        let admin = ConfigHarness::new(config_at(&self.admin, true));
        admin.drop_namespace(ns).await
    }
}

/// The ACL user, set up once per process with the printed rule (its key
/// patterns reset, so only the namespaces granted case by case are reachable).
fn ensure_acl_user(admin: &str) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let ns = Namespace::new("placeholder").expect("a namespace");
        let rule = palisade::redis::acl_rule(&ns, REDIS_USER).replace("CHANGE-ME", REDIS_PASSWORD);
        let args: Vec<&str> = rule.split_whitespace().filter(|w| !w.starts_with('~')).collect();
        redis_cli(admin, &args);
    });
}

/// The ACL user's harness on the client of `scheme` (`redis`, `redis+fred`).
async fn redis_acl_user(scheme: &'static str) -> Option<Arc<dyn Harness>> {
    harness_from_env("redis", "PALISADE_TEST_REDIS_URL", |admin| async move {
        ensure_acl_user(&admin);
        let url = as_user(&admin, REDIS_USER, Some(REDIS_PASSWORD)).replacen("redis", scheme, 1);
        let app = ConfigHarness::new(config_at(&url, true));
        Ok(Arc::new(AclUser { admin, app }) as Arc<dyn Harness>)
    })
    .await
}

palisade_conformance::conformance_tests!(
    redis_rs_acl_user,
    redis_acl_user("redis"),
    [event_store, consumers, session_cache, reputation_repo]
);

#[cfg(feature = "fred")]
palisade_conformance::conformance_tests!(
    fred_acl_user,
    redis_acl_user("redis+fred"),
    [event_store, consumers, session_cache, reputation_repo]
);

fn schema_exists(admin: &str, ns: &Namespace) -> bool {
    psql(admin, &format!("SELECT count(*) FROM pg_namespace WHERE nspname = '{ns}'")) == "1"
}

#[tokio::test]
async fn a_data_role_is_refused_an_unmigrated_namespace_by_name_and_nothing_is_created() {
    let Some(admin) = server_url("postgres", "PALISADE_TEST_POSTGRES_URL") else { return };
    ensure_pg_role(&admin);
    for scheme in ["postgres", "postgres+diesel"] {
        let app = as_user(&admin, PG_ROLE, None).replacen("postgres", scheme, 1);
        let ns = Namespace::random("pgd").unwrap();
        let mut off = config_at(&app, false);
        off.namespace = ns.clone();
        let e = Stores::connect(&off).await.err().expect("an unmigrated namespace is refused");
        assert_eq!(e.kind(), ErrorKind::Config, "{scheme}: {e}");
        assert!(e.to_string().contains("0001") && e.to_string().contains("palisade migrate"), "{scheme}: {e}");
        let mut on = off.clone();
        on.migrate = true;
        let e = Stores::connect(&on).await.err().expect("a data role cannot migrate");
        assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{scheme}: {e}");
        assert!(!schema_exists(&admin, &ns), "{scheme}: nothing was created");
    }
}

#[tokio::test]
async fn a_data_role_serves_a_migrated_namespace_but_cannot_create_collections() {
    let Some(admin) = server_url("postgres", "PALISADE_TEST_POSTGRES_URL") else { return };
    ensure_pg_role(&admin);
    for scheme in ["postgres", "postgres+diesel"] {
        let ns = Namespace::random("pgd").unwrap();
        prepare_pg_namespace(&admin, &ns).await.unwrap();
        let mut app = config_at(&as_user(&admin, PG_ROLE, None).replacen("postgres", scheme, 1), false);
        app.namespace = ns.clone();
        let stores = Stores::connect(&app).await.unwrap();
        let e = stores.documents.ensure_collection(palisade::CollectionSpec::new("analyses")).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{scheme}: collections are the privileged step: {e}");
        let count = psql(&admin, &format!("SELECT count(*) FROM \"{ns}\".collections"));
        assert_eq!(count, "0", "{scheme}: nothing was created");
        // The owner creates it; the role then uses it.
        let mut owner = config_at(&admin.replacen("postgres", scheme, 1), true);
        owner.namespace = ns.clone();
        let owned = Stores::connect(&owner).await.unwrap();
        owned.documents.ensure_collection(palisade::CollectionSpec::new("analyses")).await.unwrap();
        let again = stores.documents.ensure_collection(palisade::CollectionSpec::new("analyses")).await;
        assert_eq!(again.ok(), Some(false), "{scheme}: ensuring an existing collection needs no extra grant");
        let stored = stores.documents.insert("analyses", serde_json::json!({"verdict": "clean"})).await.unwrap();
        assert!(stored["_id"].is_string(), "{scheme}");
        // Tampering with the schema record is refused too.
        let e = psql_as_role(&admin, &format!("DELETE FROM \"{ns}\".palisade_migrations"));
        assert!(e.contains("permission denied"), "{scheme}: {e}");
        // So is naming a table for the owner's purge function to drop: the
        // partition list is the owner's, and a temporary stand-in is ignored.
        let e = psql_as_role(
            &admin,
            &format!("INSERT INTO \"{ns}\".event_partitions VALUES ('sessions', '-infinity', '-infinity')"),
        );
        assert!(e.contains("permission denied"), "{scheme}: {e}");
        let role = as_user(&admin, PG_ROLE, None);
        let sql = format!(
            "CREATE TEMP TABLE event_partitions (name text, lower timestamptz, upper timestamptz); \
             INSERT INTO event_partitions VALUES ('sessions', '-infinity', '-infinity'); \
             SELECT \"{ns}\".palisade_events_purge('2000-01-01')"
        );
        psql(&role, &sql);
        let sessions = psql(&admin, &format!("SELECT to_regclass('\"{ns}\".sessions') IS NOT NULL"));
        assert_eq!(sessions, "t", "{scheme}: the purge function dropped a table a caller named");
        psql(&admin, &format!("DROP SCHEMA \"{ns}\" CASCADE"));
    }
}

/// What the role is told when it runs `sql`, which must fail.
fn psql_as_role(admin: &str, sql: &str) -> String {
    let url = as_user(admin, PG_ROLE, None);
    let out = Command::new("psql").args([&url, "-qAtc", sql]).output().expect("psql runs");
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn an_acl_user_is_refused_another_namespace_and_changes_nothing() {
    let Some(admin) = server_url("redis", "PALISADE_TEST_REDIS_URL") else { return };
    ensure_acl_user(&admin);
    let theirs = Namespace::random("other").unwrap();
    // The owner of the other namespace stores a session value.
    let mut owner = config_at(&admin, true);
    owner.namespace = theirs.clone();
    let stores = Stores::connect(&owner).await.unwrap();
    stores.sessions.set("k", serde_json::json!("theirs"), None, palisade::SetMode::Always).await.unwrap();
    // The ACL user, never granted that namespace, is refused with a typed error.
    let mut intruder = config_at(&as_user(&admin, REDIS_USER, Some(REDIS_PASSWORD)), true);
    intruder.namespace = theirs.clone();
    let them = Stores::connect(&intruder).await.unwrap();
    let e = them.sessions.set("k", serde_json::json!("mine"), None, palisade::SetMode::Always).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    assert!(!e.is_temporary());
    let e = them.sessions.get("k").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    assert_eq!(stores.sessions.get("k").await.unwrap(), Some(serde_json::json!("theirs")), "unchanged");
    stores.sessions.delete("k").await.unwrap();
}
