//! Stored JSON as sqlx decodes it: [`StoredJson`] reads a `jsonb` (or
//! `json`) column through pg-common's [`decode_text`], which has no
//! recursion limit (one deep row written before the input policy existed
//! never breaks a read) and undoes the U+0000 encoding that every bound
//! value went through ([`palisade_pg_common::json`]).

use palisade_pg_common::json::{decode_text, decode_text_exact, jsonb_text};
use serde_json::Value;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgTypeInfo, PgValueFormat, PgValueRef, Postgres};

/// A `jsonb` (or `json`) column read as stored by this backend: decoded
/// without a recursion limit, U+0000 restored. `EXACT` for a value about to
/// be changed and written back: a number `f64` cannot hold then fails the
/// decode instead of reading as a string, so a write-back never changes it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Json<const EXACT: bool>(pub(crate) Value);

/// What reads decode (see [`Json`]).
pub(crate) type StoredJson = Json<false>;
/// What `update` decodes before writing back (see [`Json`]).
pub(crate) type ExactJson = Json<true>;

impl<const EXACT: bool> sqlx::Type<Postgres> for Json<EXACT> {
    fn type_info() -> PgTypeInfo {
        PgTypeInfo::with_name("jsonb")
    }

    fn compatible(ty: &PgTypeInfo) -> bool {
        <serde_json::Value as sqlx::Type<Postgres>>::compatible(ty)
    }
}

impl<'r, const EXACT: bool> sqlx::Decode<'r, Postgres> for Json<EXACT> {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        let binary = value.format() == PgValueFormat::Binary;
        let bytes = value.as_bytes()?;
        let text = if binary { jsonb_text(bytes) } else { bytes };
        Ok(Json(if EXACT { decode_text_exact(text)? } else { decode_text(text)? }))
    }
}
