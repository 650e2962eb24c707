//! The backend registry: which URL scheme means which backend, which Cargo
//! feature compiles it, which stores it offers, and its connector. The rest
//! of the facade asks the registry instead of matching on schemes itself.
//! Each backend crate parses its own URL and settings (see
//! `palisade_core::backend`); adding one is a line in [`BACKENDS`] and one in
//! `connector()`.

pub use palisade_core::backend::{Backend, ConnectOptions, Connector};
use palisade_core::{Error, ErrorKind, Result};

use crate::config::{Config, StoreKind, StoreUrl};

/// A backend Palisade knows about, compiled in or not.
#[derive(Debug)]
pub struct BackendInfo {
    /// Backend id (`memory`, `pg_sqlx`, …).
    pub id: &'static str,
    /// URL schemes that select it.
    pub schemes: &'static [&'static str],
    /// The facade feature that compiles it.
    pub feature: &'static str,
    /// The stores it offers.
    pub offers: &'static [StoreKind],
}

const ALL: &[StoreKind] = &StoreKind::ALL;
const NO_DOCUMENTS: &[StoreKind] = &[StoreKind::Events, StoreKind::Sessions, StoreKind::Reputation];

/// Every backend, in the order `palisade health` lists them.
pub const BACKENDS: &[BackendInfo] = &[
    BackendInfo { id: "memory", schemes: &["memory"], feature: "memory", offers: ALL },
    BackendInfo { id: "pg_sqlx", schemes: &["postgres", "postgresql"], feature: "pg-sqlx", offers: ALL },
    BackendInfo {
        id: "pg_diesel",
        schemes: &["postgres+diesel", "postgresql+diesel"],
        feature: "pg-diesel",
        offers: ALL,
    },
    BackendInfo { id: "redis_rs", schemes: &["redis", "rediss"], feature: "redis-rs", offers: NO_DOCUMENTS },
    BackendInfo { id: "fred", schemes: &["redis+fred", "rediss+fred"], feature: "fred", offers: NO_DOCUMENTS },
    BackendInfo { id: "mongo", schemes: &["mongodb", "mongodb+srv"], feature: "mongo", offers: ALL },
];

/// The memory backend's settings for store `kind` (also used for the
/// degraded-mode fallback of that store).
pub fn memory_config(config: &Config, kind: StoreKind) -> Result<palisade_memory::MemoryConfig> {
    let options = config.connect_options(palisade_memory::BACKEND, &config.namespace, config.store(kind).limits);
    palisade_memory::MemoryConfig::from_options(&options)
}

/// The connector of a compiled-in backend: one line per backend.
fn connector(id: &str) -> Option<&'static dyn Connector> {
    match id {
        "memory" => Some(&palisade_memory::MemoryConnector),
        #[cfg(feature = "pg-sqlx")]
        "pg_sqlx" => Some(&palisade_pg_sqlx::PgSqlxConnector),
        #[cfg(feature = "pg-diesel")]
        "pg_diesel" => Some(&palisade_pg_diesel::PgDieselConnector),
        #[cfg(feature = "redis-rs")]
        "redis_rs" => Some(&palisade_redis::RedisConnector(palisade_redis::ClientKind::RedisRs)),
        #[cfg(feature = "fred")]
        "fred" => Some(&palisade_redis::RedisConnector(palisade_redis::ClientKind::Fred)),
        #[cfg(feature = "mongo")]
        "mongo" => Some(&palisade_mongo::MongoConnector),
        _ => None,
    }
}

/// Finds the backend for `url` and checks it is compiled in and offers `kind`.
/// Errors name the scheme and, when missing, the feature to enable — never
/// the URL itself.
pub fn resolve(url: &StoreUrl, kind: StoreKind) -> Result<(&'static BackendInfo, &'static dyn Connector)> {
    let scheme = url.scheme();
    let info = BACKENDS.iter().find(|b| b.schemes.contains(&scheme)).ok_or_else(|| {
        let known: Vec<&str> = BACKENDS.iter().flat_map(|b| b.schemes.iter().copied()).collect();
        Error::new(
            ErrorKind::Config,
            format!("unknown URL scheme `{scheme}` for {kind}; known schemes: {}", known.join(", ")),
        )
    })?;
    if !info.offers.contains(&kind) {
        let offering: Vec<&str> = BACKENDS.iter().filter(|b| b.offers.contains(&kind)).map(|b| b.id).collect();
        return Err(Error::new(
            ErrorKind::Unsupported,
            format!("backend `{}` does not offer the {kind} store; backends that do: {}", info.id, offering.join(", ")),
        ));
    }
    let connector = connector(info.id).ok_or_else(|| not_compiled(scheme, info))?;
    Ok((info, connector))
}

/// The error for a URL whose backend this build lacks: names the feature.
fn not_compiled(scheme: &str, info: &BackendInfo) -> Error {
    Error::new(
        ErrorKind::Config,
        format!(
            "URL scheme `{scheme}` needs the `{feature}` feature of palisade, which this build lacks \
             (cargo add palisade --features {feature})",
            feature = info.feature
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> StoreUrl {
        StoreUrl::parse(s).unwrap()
    }

    #[test]
    fn every_compiled_connector_matches_its_catalogue_entry() {
        let mut compiled = 0;
        for info in BACKENDS {
            if let Some(c) = connector(info.id) {
                compiled += 1;
                assert_eq!(c.id(), info.id);
                assert_eq!(
                    resolve(&url(&format!("{}://h", info.schemes[0])), StoreKind::Events).unwrap().0.id,
                    info.id
                );
            }
        }
        assert!(compiled >= 1, "memory is always compiled");
    }

    #[test]
    fn memory_resolves_for_every_store() {
        for kind in StoreKind::ALL {
            assert_eq!(resolve(&url("memory://"), kind).unwrap().0.id, "memory");
        }
    }

    #[test]
    fn missing_feature_is_named_without_the_password() {
        let u = url("mongodb://admin:s3cret@localhost");
        let info = BACKENDS.iter().find(|b| b.id == "mongo").unwrap();
        let err = not_compiled(u.scheme(), info);
        assert_eq!(err.kind(), ErrorKind::Config);
        let text = err.to_string();
        assert!(text.contains("`mongo` feature"), "{text}");
        assert!(!text.contains("s3cret"), "{text}");
        // Without the feature, resolving says exactly that.
        if cfg!(not(feature = "mongo")) {
            assert_eq!(resolve(&u, StoreKind::Events).err().unwrap().to_string(), text);
        }
    }

    #[test]
    fn redis_does_not_offer_documents() {
        let err = resolve(&url("redis://localhost"), StoreKind::Documents).err().unwrap();
        assert_eq!(err.kind(), ErrorKind::Unsupported);
        assert!(err.to_string().contains("memory, pg_sqlx, pg_diesel, mongo"), "{err}");
    }

    #[test]
    fn unknown_scheme_lists_the_known_ones() {
        let err = resolve(&url("cassandra://x"), StoreKind::Events).err().unwrap();
        assert_eq!(err.kind(), ErrorKind::Config);
        assert!(err.to_string().contains("postgres+diesel"));
    }
}
