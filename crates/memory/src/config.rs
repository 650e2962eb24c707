//! The memory backend's settings: [`MemoryConfig`], built with its `with_*`
//! methods or from the facade's [`ConnectOptions`] (`[backends.memory]`).

use std::time::Duration;

use palisade_core::backend::ConnectOptions;
use palisade_core::{Error, InputPolicy, Result};
use serde::Deserialize;

use crate::BACKEND;

/// Tuning of the memory backend.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct MemoryConfig {
    /// Most session keys kept; beyond it the least recently used are evicted
    /// (sessions are ephemeral by contract).
    pub session_capacity: u64,
    /// How often writes may sweep expired documents.
    pub sweep_interval: Duration,
    /// Buffer of the live-tail broadcast channel; a subscriber that falls
    /// further behind re-reads the log (nothing is skipped).
    pub live_buffer: usize,
    /// What the stores accept (depth and size limits).
    pub policy: InputPolicy,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig {
            session_capacity: 1_000_000,
            sweep_interval: Duration::from_secs(1),
            live_buffer: 4096,
            policy: InputPolicy::default(),
        }
    }
}

impl MemoryConfig {
    /// With at most `n` session keys.
    pub fn with_session_capacity(mut self, n: u64) -> Self {
        self.session_capacity = n;
        self
    }

    /// With a live-tail buffer of `n` events.
    pub fn with_live_buffer(mut self, n: usize) -> Self {
        self.live_buffer = n;
        self
    }

    /// With document sweeps at most every `d`.
    pub fn with_sweep_interval(mut self, d: Duration) -> Self {
        self.sweep_interval = d;
        self
    }

    /// With input policy `policy`.
    pub fn with_policy(mut self, policy: InputPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// From the facade's options: their policy, and the tuning keys
    /// `session_capacity` (at least 1), `live_buffer` (at least 1) and
    /// `sweep_interval_ms`; any other key is a `Config` error.
    pub fn from_options(options: &ConnectOptions) -> Result<Self> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Tuning {
            session_capacity: Option<u64>,
            live_buffer: Option<usize>,
            sweep_interval_ms: Option<u64>,
        }
        let t: Tuning = options.tuning(BACKEND)?;
        if t.session_capacity == Some(0) || t.live_buffer == Some(0) {
            return Err(Error::new(
                palisade_core::ErrorKind::Config,
                "[backends.memory]: capacities must be at least 1",
            )
            .with_backend(BACKEND));
        }
        let d = MemoryConfig::default();
        Ok(MemoryConfig {
            session_capacity: t.session_capacity.unwrap_or(d.session_capacity),
            live_buffer: t.live_buffer.unwrap_or(d.live_buffer),
            sweep_interval: t.sweep_interval_ms.map_or(d.sweep_interval, Duration::from_millis),
            policy: options.policy,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_core::{ErrorKind, Namespace};
    use serde_json::json;

    fn options(tuning: serde_json::Value) -> ConnectOptions {
        let tuning = tuning.as_object().cloned().unwrap_or_default();
        ConnectOptions::new(Namespace::new("t").unwrap()).with_tuning(tuning)
    }

    #[test]
    fn tuning_sets_capacity_and_refuses_unknown_or_zero() {
        let c = MemoryConfig::from_options(&options(json!({"session_capacity": 7, "sweep_interval_ms": 5}))).unwrap();
        assert_eq!((c.session_capacity, c.sweep_interval), (7, Duration::from_millis(5)));
        assert_eq!(MemoryConfig::from_options(&options(json!({}))).unwrap().live_buffer, 4096);
        for bad in [json!({"capacity": 1}), json!({"session_capacity": 0}), json!({"live_buffer": "x"})] {
            assert_eq!(MemoryConfig::from_options(&options(bad)).unwrap_err().kind(), ErrorKind::Config);
        }
    }
}
