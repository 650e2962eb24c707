//! Schema migrations of the configured stores (`palisade migrate`): applies
//! (or, in a dry run, lists) the schema — Postgres migrations, Mongo indexes
//! — in the configured namespace of every store whose backend has one (its
//! connector's `migrate`), and prints what a data-only runtime role needs
//! (`--print-grants`, the connectors' `grants`).

use std::fmt::Write as _;

use palisade_core::{Error, ErrorKind, Result};

use crate::config::{Config, StoreKind, StoreUrl};
use crate::registry::{resolve, BackendInfo, Connector};

/// One configured server: its URL, the first store on it, its backend.
type Server<'a> = (&'a StoreUrl, StoreKind, &'static BackendInfo, &'static dyn Connector);

/// Every distinct server the configured stores use, in store order (stores
/// sharing a URL share its schema, so each is visited once).
fn servers(config: &Config) -> Result<Vec<Server<'_>>> {
    let mut out: Vec<Server<'_>> = Vec::new();
    for kind in StoreKind::ALL {
        let url = &config.store(kind).url;
        let (info, connector) = resolve(url, kind)?;
        if !out.iter().any(|(u, ..)| u.expose() == url.expose()) {
            out.push((url, kind, info, connector));
        }
    }
    Ok(out)
}

/// Applies pending migrations (only lists them when `dry_run`) and returns a
/// printable report of each store's state.
pub async fn run(config: &Config, dry_run: bool) -> Result<String> {
    let mut out = String::new();
    for (url, kind, info, connector) in servers(config)? {
        let options = config.connect_options(info.id, &config.namespace, config.store(kind).limits);
        match connector.migrate(url.expose(), &options, dry_run).await? {
            Some(migrations) => {
                let _ = writeln!(out, "{} (namespace {}):", url.redacted(), config.namespace);
                for m in migrations {
                    let state = if m.applied { "applied" } else { "pending" };
                    let _ = writeln!(out, "  {:>4}  {:<8} {}", m.version, state, m.description);
                }
            }
            None => {
                let _ = writeln!(out, "{} ({}): no migrations needed", url.redacted(), info.id);
            }
        }
    }
    Ok(out)
}

/// What runtime role `role` needs on every configured store's server to run
/// with auto-migration off (`palisade migrate --print-grants ROLE`): each
/// backend's grants (SQL for Postgres, an ACL rule for Redis, a role for
/// Mongo), once per server, for the configured namespace. Nothing is
/// contacted. `role` is 1-63 of `[A-Za-z0-9_-]`, starting with a letter or
/// `_` (a name every backend accepts as it is).
pub fn grants(config: &Config, role: &str) -> Result<String> {
    let valid = (1..=63).contains(&role.len())
        && role.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && role.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !valid {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            "a role name is 1-63 of [A-Za-z0-9_-], starting with a letter or _",
        )
        .with_op("grants"));
    }
    let mut out = String::new();
    for (url, _, info, connector) in servers(config)? {
        match connector.grants(&config.namespace, role) {
            Some(text) => {
                let _ = writeln!(out, "# {} ({}, namespace {}):", url.redacted(), info.id, config.namespace);
                out.push_str(&text);
            }
            None => {
                let _ = writeln!(out, "# {} ({}): nothing to grant", url.redacted(), info.id);
            }
        }
    }
    Ok(out)
}
