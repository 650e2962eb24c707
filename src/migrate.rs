//! Schema migrations of the configured stores (`palisade migrate`): applies
//! (or, in a dry run, lists) the shared SQL migrations in the configured
//! namespace of every Postgres store.

use std::fmt::Write as _;

use palisade_core::Result;

use crate::config::{Config, StoreKind};
use crate::registry::resolve;

/// Applies pending migrations (only lists them when `dry_run`) and returns a
/// printable report of each store's state.
#[cfg_attr(not(feature = "pg-sqlx"), allow(unused_variables))]
pub async fn run(config: &Config, dry_run: bool) -> Result<String> {
    let mut out = String::new();
    let mut done: Vec<String> = Vec::new();
    for kind in StoreKind::ALL {
        let url = &config.store(kind).url;
        let (info, _) = resolve(url, kind)?;
        if done.contains(&url.expose().to_owned()) {
            continue;
        }
        done.push(url.expose().to_owned());
        match info.id {
            #[cfg(feature = "pg-sqlx")]
            "pg_sqlx" => {
                let pg = crate::registry::PgSqlxConnector::pg_config(url, config, &config.namespace);
                let backend = palisade_pg_sqlx::PgBackend::connect_without_migrating(&pg).await?;
                if !dry_run {
                    backend.migrate().await?;
                }
                let _ = writeln!(out, "{} (namespace {}):", url.redacted(), config.namespace);
                for m in backend.migration_status().await? {
                    let state = if m.applied { "applied" } else { "pending" };
                    let _ = writeln!(out, "  {:>4}  {:<8} {}", m.version, state, m.description);
                }
            }
            other => {
                let _ = writeln!(out, "{} ({other}): no migrations needed", url.redacted());
            }
        }
    }
    Ok(out)
}
