//! Helpers for the tests that hold both Postgres backends to the same
//! Postgres-specific behaviour (each test crate uses some of them).
#![allow(dead_code)]

use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;

use palisade_conformance::server_url;
use palisade_core::backend::Backend;
use palisade_core::{InputPolicy, Namespace};
use palisade_pg_diesel::{PgDieselBackend, PgDieselConfig};
use palisade_pg_sqlx::{PgBackend, PgConfig};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

/// The two Postgres backends, by id.
pub const DRIVERS: [&str; 2] = ["pg_sqlx", "pg_diesel"];

/// The test server, or `None` (skipped with a notice; failed when
/// `PALISADE_REQUIRE` names postgres).
pub fn url() -> Option<String> {
    server_url("postgres", "PALISADE_TEST_POSTGRES_URL")
}

/// `driver`'s backend on namespace `ns` (migrated), with `policy`.
pub async fn backend(driver: &str, url: &str, ns: &Namespace, policy: InputPolicy) -> Arc<dyn Backend> {
    match driver {
        "pg_sqlx" => {
            let mut config = PgConfig::new(url, ns.clone());
            config.policy = policy;
            Arc::new(PgBackend::connect(&config).await.expect("pg-sqlx connects"))
        }
        _ => {
            let config = PgDieselConfig::new(url, ns.clone()).with_policy(policy);
            Arc::new(PgDieselBackend::connect(&config).await.expect("pg-diesel connects"))
        }
    }
}

/// A sqlx pool whose `search_path` is `ns`, for raw SQL next to the stores.
pub async fn raw(url: &str, ns: &Namespace) -> PgPool {
    let options = PgConnectOptions::from_str(url).expect("test URL").options([("search_path", ns.as_str())]);
    PgPoolOptions::new().max_connections(2).connect_with(options).await.expect("raw pool")
}

/// What a case gets from [`on_both`].
pub struct Ctx {
    /// `pg_sqlx` or `pg_diesel`.
    pub driver: &'static str,
    pub url: String,
    /// The case's fresh, migrated namespace.
    pub ns: Namespace,
    /// `driver`'s backend on it, with the default input policy.
    pub backend: Arc<dyn Backend>,
    /// Raw SQL on it (sqlx, `search_path` = the namespace).
    pub raw: PgPool,
}

/// Runs `case` once per Postgres backend, each on a fresh namespace
/// (dropped afterwards, also when the case panics).
pub async fn on_both<F, Fut>(case: F)
where
    F: Fn(Ctx) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(url) = url() else { return };
    for driver in DRIVERS {
        let ns = Namespace::random("pgboth").unwrap();
        let backend = backend(driver, &url, &ns, InputPolicy::default()).await;
        let raw = raw(&url, &ns).await;
        let ctx = Ctx { driver, url: url.clone(), ns, backend: Arc::clone(&backend), raw };
        let outcome = tokio::spawn(case(ctx)).await;
        backend.drop_namespace().await.unwrap();
        if let Err(e) = outcome {
            eprintln!("failed on {driver}");
            std::panic::resume_unwind(e.into_panic());
        }
    }
}
