//! Stored instants as sqlx decodes them: [`StoredTime`] reads a
//! `timestamptz` through pg-common's [`stored_instant`], clamped to the
//! instants a store keeps — sqlx's own chrono decoding panics on values
//! beyond chrono's range (`infinity`, year 290000), which a row written
//! around the store may hold ([`palisade_pg_common::time`]).

use chrono::{DateTime, Utc};
use palisade_core::time::{max_instant, min_instant};
use palisade_pg_common::time::{binary_micros, stored_instant};
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgTypeInfo, PgValueFormat, PgValueRef, Postgres};

/// A `timestamptz` column read as an instant in years 1 to 9999.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StoredTime(pub(crate) DateTime<Utc>);

impl sqlx::Type<Postgres> for StoredTime {
    fn type_info() -> PgTypeInfo {
        <DateTime<Utc> as sqlx::Type<Postgres>>::type_info()
    }

    fn compatible(ty: &PgTypeInfo) -> bool {
        <DateTime<Utc> as sqlx::Type<Postgres>>::compatible(ty)
    }
}

impl<'r> sqlx::Decode<'r, Postgres> for StoredTime {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        if value.format() == PgValueFormat::Binary {
            let micros = binary_micros(value.as_bytes()?).ok_or("a binary timestamptz is 8 bytes")?;
            return Ok(StoredTime(stored_instant(micros)));
        }
        // Text values are parsed, which fails (never panics) beyond chrono.
        let parsed = <DateTime<Utc> as sqlx::Decode<'r, Postgres>>::decode(value)?;
        Ok(StoredTime(parsed.clamp(min_instant(), max_instant())))
    }
}
