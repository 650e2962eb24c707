//! The clock as every backend reads it: "now" at millisecond precision
//! ([`truncate_ms`]), TTLs checked and fixed into absolute instants when the
//! call is made (so a slow connection never stretches a TTL), and instants
//! kept inside the years every backend can store.

use chrono::{DateTime, TimeDelta, Utc};

use crate::error::{Error, Result};
use crate::sessions::Expiry;
use crate::time::{max_instant, min_instant, truncate_ms, MAX_TTL_MS};

/// The current instant, truncated to milliseconds.
pub fn now_ms() -> DateTime<Utc> {
    truncate_ms(Utc::now())
}

/// Checks a TTL: whole milliseconds, strictly positive, at most ~100 years.
/// Returns it as milliseconds.
pub fn ttl_millis(ttl: TimeDelta) -> Result<i64> {
    let ms = ttl.num_milliseconds();
    if ms <= 0 {
        return Err(Error::invalid("ttl must be at least 1 millisecond"));
    }
    if ttl.subsec_nanos() % 1_000_000 != 0 {
        return Err(Error::invalid("ttl must be whole milliseconds"));
    }
    if ms > MAX_TTL_MS {
        return Err(Error::invalid("ttl must be at most 100 years"));
    }
    Ok(ms)
}

/// `t` moved into years 1 to 9999, for bounds that only compare (`purge`).
pub fn clamp_instant(t: DateTime<Utc>) -> DateTime<Utc> {
    t.clamp(min_instant(), max_instant())
}

/// `now + ttl`, as the absolute expiry instant. Expired means `now >= expires_at`.
pub fn expiry_after(now: DateTime<Utc>, ttl_ms: i64) -> DateTime<Utc> {
    now + TimeDelta::milliseconds(ttl_ms)
}

/// The deadline of an optional expiry, fixed now (see [`Expiry::deadline`]).
pub fn deadline(expiry: Option<Expiry>) -> Result<Option<DateTime<Utc>>> {
    expiry.map(|e| e.deadline(now_ms())).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_and_negative_ttls_are_invalid() {
        assert!(ttl_millis(TimeDelta::zero()).is_err());
        assert!(ttl_millis(TimeDelta::milliseconds(-5)).is_err());
        assert!(ttl_millis(TimeDelta::microseconds(999)).is_err());
        assert!(ttl_millis(TimeDelta::microseconds(1500)).is_err(), "not whole milliseconds");
        assert_eq!(ttl_millis(TimeDelta::milliseconds(1)).ok(), Some(1));
    }

    #[test]
    fn clamping_keeps_instants_in_years_1_to_9999() {
        assert_eq!(clamp_instant(DateTime::<Utc>::MIN_UTC), min_instant());
        assert_eq!(clamp_instant(DateTime::<Utc>::MAX_UTC), max_instant());
    }
}
