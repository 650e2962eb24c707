//! Stored instants as diesel decodes them: [`StoredTime`] reads a
//! `timestamptz` through pg-common's [`stored_instant`], clamped to the
//! instants a store keeps — diesel's own chrono decoding fails the whole
//! read on values beyond chrono's range (`infinity`, year 290000), which a
//! row written around the store may hold ([`palisade_pg_common::time`]).

use chrono::{DateTime, Utc};
use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::pg::{Pg, PgValue};
use diesel::sql_types::Timestamptz;
use palisade_pg_common::time::{binary_micros, stored_instant};

/// A `timestamptz` column read as an instant in years 1 to 9999.
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromSqlRow)]
pub(crate) struct StoredTime(pub(crate) DateTime<Utc>);

impl FromSql<Timestamptz, Pg> for StoredTime {
    fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
        let micros = binary_micros(value.as_bytes()).ok_or("a binary timestamptz is 8 bytes")?;
        Ok(StoredTime(stored_instant(micros)))
    }
}
