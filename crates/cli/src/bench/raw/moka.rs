//! The raw side for the memory backend's session cache: a bare moka cache,
//! the library the memory backend is built on.

use std::sync::Arc;

use moka::sync::Cache;
use serde_json::Value;

use super::super::runner::{op, Call, Op};
use super::super::workload::{self as w, Workload};

/// Values with the workload's TTL; counters with the rate-limit window.
pub struct RawMoka {
    values: Cache<String, Value>,
    counters: Cache<String, i64>,
}

impl RawMoka {
    /// Empty caches holding at most `capacity` keys each.
    pub fn new(capacity: u64) -> Self {
        let ttl = |d: chrono::TimeDelta| d.to_std().unwrap_or_default();
        RawMoka {
            values: Cache::builder().max_capacity(capacity).time_to_live(ttl(w::SESSION_TTL)).build(),
            counters: Cache::builder().max_capacity(capacity).time_to_live(ttl(w::HIT_WINDOW)).build(),
        }
    }

    /// Workload `w` on the caches; sessions only.
    pub fn op(&self, workload: Workload) -> Option<Op> {
        let (values, counters) = (self.values.clone(), self.counters.clone());
        let count = move |key: String| {
            let counters = counters.clone();
            async move {
                counters.entry(key).and_upsert_with(|e| e.map_or(1, |e| e.into_value() + 1));
                Ok::<(), palisade_core::Error>(())
            }
        };
        let count = Arc::new(count);
        Some(match workload {
            Workload::SessionSet => op(move |c: Call| {
                let values = values.clone();
                async move {
                    values.insert(w::session_key('v', c.seq), w::session_value(c.seq));
                    Ok(())
                }
            }),
            Workload::SessionGet => op(move |c: Call| {
                let values = values.clone();
                async move {
                    let _ = values.get(&w::session_key('v', c.seq));
                    Ok(())
                }
            }),
            Workload::SessionIncr => op(move |c: Call| count(w::session_key('c', c.seq))),
            Workload::SessionHit => op(move |c: Call| count(w::session_key('r', c.seq))),
            _ => return None,
        })
    }
}
