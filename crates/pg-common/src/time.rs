//! `timestamptz` as stored, and what chrono cannot hold.
//!
//! Postgres keeps instants far outside chrono's range — `infinity`,
//! `-infinity`, years up to 294,276 — and a row written around the store
//! (by hand, a migration, another tool) may hold one. sqlx 0.8's own chrono
//! decoding panics on such a value (`NaiveDateTime + TimeDelta` overflow),
//! diesel's fails the read. Every driver therefore reads instants through
//! [`stored_instant`]: the stored microseconds, clamped to the instants a
//! store keeps (years 1 to 9999, [`min_instant`]..=[`max_instant`]), so one
//! such row never fails or aborts a read; it reads as the nearest instant a
//! store could have written.

use chrono::{DateTime, Utc};
use palisade_core::time::{max_instant, min_instant};

/// Microseconds from the Unix epoch to Postgres' epoch, 2000-01-01 UTC.
const PG_EPOCH_UNIX_MICROS: i64 = 946_684_800_000_000;

/// The instant of a `timestamptz`'s binary value (microseconds since
/// 2000-01-01 UTC; `i64::MAX` / `i64::MIN` are ±infinity), clamped to
/// years 1 to 9999.
pub fn stored_instant(pg_micros: i64) -> DateTime<Utc> {
    let unix = pg_micros.saturating_add(PG_EPOCH_UNIX_MICROS);
    match DateTime::from_timestamp_micros(unix) {
        Some(t) => t.clamp(min_instant(), max_instant()),
        None if unix < 0 => min_instant(),
        None => max_instant(),
    }
}

/// A `timestamptz`'s binary value: 8 bytes, big-endian microseconds since
/// 2000-01-01 UTC; `None` for any other length.
pub fn binary_micros(bytes: &[u8]) -> Option<i64> {
    bytes.try_into().ok().map(i64::from_be_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_beyond_chrono_or_the_store_read_as_the_nearest_kept_one() {
        assert_eq!(stored_instant(0), DateTime::from_timestamp(946_684_800, 0).unwrap());
        assert_eq!(stored_instant(i64::MAX), max_instant(), "infinity");
        assert_eq!(stored_instant(i64::MIN), min_instant(), "-infinity");
        // Year 290000 (in Postgres' range, beyond chrono's).
        assert_eq!(stored_instant(9_089_000_000_000_000_000), max_instant());
        let ms = DateTime::from_timestamp_millis(1_764_806_400_123).unwrap();
        assert_eq!(stored_instant((ms.timestamp_micros()) - PG_EPOCH_UNIX_MICROS), ms);
        assert_eq!(binary_micros(&7_i64.to_be_bytes()), Some(7));
        assert_eq!(binary_micros(&[0; 4]), None);
    }
}
