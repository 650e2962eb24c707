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
/// limit, U+0000 restored. `EXACT` for a value about to be changed and
/// written back (`update`): a number `f64` cannot hold then fails the decode
/// instead of reading as a string, so a write-back never changes it.
#[derive(Debug, Clone, PartialEq, FromSqlRow)]
pub(crate) struct Json<const EXACT: bool>(pub(crate) Value);

/// What reads decode (see [`Json`]).
pub(crate) type StoredJson = Json<false>;
/// What `update` decodes before writing back (see [`Json`]).
pub(crate) type ExactJson = Json<true>;

impl<const EXACT: bool> FromSql<Jsonb, Pg> for Json<EXACT> {
    fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
        let text = jsonb_text(value.as_bytes());
        Ok(Json(if EXACT { decode_text_exact(text)? } else { decode_text(text)? }))
    }
}
