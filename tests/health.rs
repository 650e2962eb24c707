//! What `Stores::health` (and so `palisade health` and the demo) reports
//! beyond up and down.

use palisade::config::{Config, StoreKind};
use palisade::{EventStoreExt, SetMode, Stores};
use serde_json::json;

/// A memory session cache at its capacity evicts live keys; health counts
/// them, with the capacity taken from `Config`.
#[tokio::test]
async fn health_reports_memory_pressure_evictions() {
    let config = Config { memory_session_capacity: 50, ..Config::default() };
    let stores = Stores::connect(&config).await.unwrap();
    let before = stores.health().await;
    let sessions = before.iter().find(|s| s.store == StoreKind::Sessions).unwrap();
    assert_eq!(sessions.evictions, Some(0));
    assert!(sessions.pressure().is_none());
    for i in 0..5_000 {
        stores.sessions.set(&format!("k{i}"), json!(i), None, SetMode::Always).await.unwrap();
    }
    let after = stores.health().await;
    let sessions = after.iter().find(|s| s.store == StoreKind::Sessions).unwrap();
    let evicted = sessions.evictions.unwrap_or(0);
    assert!(evicted > 0 && evicted <= 5_000, "evictions: {evicted}");
    assert!(sessions.pressure().is_some_and(|p| p.contains("evicted")));
    let events = after.iter().find(|s| s.store == StoreKind::Events).unwrap();
    assert_eq!(events.evictions, None, "only session caches evict");
}

/// Limits from a TOML file apply to every store, and a store's own
/// `[<store>.limits]` wins over `[limits]`.
#[tokio::test]
async fn limits_from_config_reach_the_stores() {
    let mut config = Config::default();
    config
        .apply_toml(
            "[limits]\nmax_session_value_bytes = 100\n[events.limits]\nmax_event_data_bytes = 50\nmax_depth = 3\n",
        )
        .unwrap();
    assert_eq!(config.store(StoreKind::Events).limits.max_session_value_bytes, 100);
    let stores = Stores::connect(&config).await.unwrap();
    let big = json!("x".repeat(200));
    let err = stores.sessions.set("k", big, None, SetMode::Always).await.unwrap_err();
    assert_eq!(err.kind(), palisade::ErrorKind::InvalidInput);
    assert!(stores.sessions.set("k", json!("small"), None, SetMode::Always).await.unwrap());
    let deep = palisade::NewEvent::new("t", "k").with_data(json!({"a": {"b": {"c": {}}}}));
    let err = stores.events.append_one(deep).await.unwrap_err();
    assert!(err.to_string().contains("3 levels"), "{err}");
}

/// Nonsense limits are configuration errors, not silent footguns.
#[test]
fn out_of_range_limits_are_config_errors() {
    for bad in [
        "[limits]\nmax_depth = 0\n",
        "[limits]\nmax_depth = 5000\n",
        "[sessions.limits]\nmax_session_value_bytes = 0\n",
    ] {
        let err = Config::default().apply_toml(bad).unwrap_err();
        assert_eq!(err.kind(), palisade::ErrorKind::Config, "{bad}");
    }
}
