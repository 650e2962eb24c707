//! Stored JSON as diesel decodes it: [`StoredJson`] reads a `jsonb` column
//! through pg-common's [`decode_text`], which has no recursion limit (one
//! deep row written before the input policy existed never breaks a read)
//! and undoes the U+0000 encoding every bound value went through
//! ([`palisade_pg_common::json`]). Values are bound with diesel's own
//! `serde_json::Value` encoding after [`encoded`](palisade_pg_common::json::encoded).

use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::pg::{Pg, PgValue};
use diesel::sql_types::Jsonb;
use palisade_pg_common::json::{decode_text, decode_text_exact, jsonb_text};
use serde_json::Value;

/// A `jsonb` column read as stored by Palisade: decoded without a recursion
/// limit, U+0000 restored.
#[derive(Debug, Clone, PartialEq, FromSqlRow)]
pub(crate) struct StoredJson(pub(crate) Value);

impl FromSql<Jsonb, Pg> for StoredJson {
    fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
        Ok(StoredJson(decode_text(jsonb_text(value.as_bytes()))?))
    }
}

/// A `jsonb` column about to be changed and written back (`update`): like
/// [`StoredJson`], but a number `f64` cannot hold fails the decode instead of
/// reading as a string, so a write-back never changes it.
#[derive(Debug, Clone, PartialEq, FromSqlRow)]
pub(crate) struct ExactJson(pub(crate) Value);

impl FromSql<Jsonb, Pg> for ExactJson {
    fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
        Ok(ExactJson(decode_text_exact(jsonb_text(value.as_bytes()))?))
    }
}
