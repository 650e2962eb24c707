//! Time conventions: UTC, millisecond precision, absolute expiry instants.

use chrono::{DateTime, Utc};

use crate::error::{Error, Result};

/// Truncates an instant to whole milliseconds, the precision every backend stores
/// and compares.
pub fn truncate_ms(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap_or(t)
}

/// The longest TTL accepted (100 years, in milliseconds).
pub const MAX_TTL_MS: i64 = 100 * 366 * 24 * 3600 * 1000;

/// The first instant a store keeps: 0001-01-01T00:00:00Z. Stored instants lie
/// in years 1 to 9999 (ISO 8601's four-digit years), a range every backend
/// holds; chrono's own range is far wider than Postgres' or BSON's.
pub fn min_instant() -> DateTime<Utc> {
    DateTime::from_timestamp_millis(-62_135_596_800_000).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// The last instant a store keeps: 9999-12-31T23:59:59.999Z (see [`min_instant`]).
pub fn max_instant() -> DateTime<Utc> {
    DateTime::from_timestamp_millis(253_402_300_799_999).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// `InvalidInput` unless `t` lies in years 1 to 9999 (see [`min_instant`]).
pub(crate) fn check_instant(what: &str, t: DateTime<Utc>) -> Result<()> {
    if t < min_instant() || t > max_instant() {
        return Err(Error::invalid(format!("{what} must lie in the years 1 to 9999")));
    }
    Ok(())
}

/// A half-open UTC interval `[from, to)`; either end may be open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct TimeRange {
    /// Inclusive lower bound.
    pub from: Option<DateTime<Utc>>,
    /// Exclusive upper bound.
    pub to: Option<DateTime<Utc>>,
}

impl TimeRange {
    /// The unbounded range.
    pub fn all() -> Self {
        TimeRange::default()
    }

    /// `[from, to)`.
    pub fn between(from: DateTime<Utc>, to: DateTime<Utc>) -> Self {
        TimeRange { from: Some(from), to: Some(to) }
    }

    /// `[from, ∞)`.
    pub fn since(from: DateTime<Utc>) -> Self {
        TimeRange { from: Some(from), to: None }
    }

    /// `(-∞, to)`.
    pub fn until(to: DateTime<Utc>) -> Self {
        TimeRange { from: None, to: Some(to) }
    }

    /// Whether `t` lies in the range (compared at millisecond precision).
    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        let t = truncate_ms(t);
        self.from.is_none_or(|f| t >= truncate_ms(f)) && self.to.is_none_or(|to| t < truncate_ms(to))
    }

    /// `InvalidInput` when `from > to` or a bound lies outside years 1 to 9999.
    pub fn validate(&self) -> Result<()> {
        for t in self.from.iter().chain(self.to.iter()) {
            check_instant("a time range bound", *t)?;
        }
        match (self.from, self.to) {
            (Some(f), Some(t)) if f > t => Err(Error::invalid("time range has from after to")),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_are_kept_in_years_1_to_9999() {
        assert_eq!(min_instant().to_rfc3339(), "0001-01-01T00:00:00+00:00");
        assert_eq!(max_instant().timestamp_millis() % 1000, 999);
        assert!(check_instant("t", DateTime::<Utc>::MIN_UTC).is_err());
        assert!(check_instant("t", DateTime::<Utc>::MAX_UTC).is_err());
        assert!(check_instant("t", min_instant()).is_ok() && check_instant("t", max_instant()).is_ok());
    }

    #[test]
    fn time_range_is_half_open() {
        let a = DateTime::from_timestamp_millis(1_000).unwrap();
        let b = DateTime::from_timestamp_millis(2_000).unwrap();
        let r = TimeRange::between(a, b);
        assert!(r.contains(a));
        assert!(!r.contains(b));
    }
}
