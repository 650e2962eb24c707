//! The document store's SQL (`migrations/0003_documents.sql`,
//! `migrations/0006_document_indexes.sql`), for any driver.
//!
//! - [`Sql`] builds statements from fixed fragments and typed [`Bind`]s;
//!   [`Sql::filter`] translates core's filter AST (see `filter.rs` for the
//!   index and containment shortcuts), [`Sql::order_by`] core's sorts.
//! - [`statements`] holds every document statement: the fixed ones as
//!   constants with their parameters documented, the filtered ones as
//!   builders returning [`Sql`].
//! - [`Collection`] is a collection's spec as stored (`collections.spec`)
//!   and compiled: schema validator, TTL rule, unique and indexed paths, and
//!   the mapping from a violated constraint back to the spec's index.
//! - [`DocumentFault`] is what a backend detects itself (no collection, a
//!   taken `_id`, a version conflict) as a core [`Error`](palisade_core::Error).
//!
//! A backend runs a statement by binding each [`Bind`] with its driver's
//! type for the cast that follows the placeholder (`text`, `text[]`,
//! `jsonb`, `jsonb[]`, `bigint`), decodes `body` columns with
//! [`crate::json::decode_text`], and keeps transactions and retries as its
//! own driver allows.

mod collection;
mod fault;
mod filter;
pub mod statements;

use chrono::{DateTime, Utc};
use serde_json::Value;

pub use collection::{from_json, to_json, Collection};
pub use fault::DocumentFault;
pub use filter::{Bind, Sql, Statement};

/// Rows per statement when writing many documents (each column is one array parameter).
pub const CHUNK: usize = 5_000;

/// A document about to be written: one row of the `unnest` arrays that
/// [`statements::INSERT`] and [`statements::UPDATE`] take.
#[derive(Debug, Clone, PartialEq)]
pub struct Staged {
    /// `_id`.
    pub id: String,
    /// The stored form (with `_id` and `_version`), not yet U+0000-encoded.
    pub doc: Value,
    /// `_version`, as the `bigint` column holds it.
    pub version: i64,
    /// From the collection's TTL rule.
    pub expires_at: Option<DateTime<Utc>>,
}

impl Staged {
    /// `doc` (the stored form) as document `id` at `version` of `coll`.
    pub fn new(coll: &Collection, id: String, doc: Value, version: u64) -> Self {
        let expires_at = coll.expiry(&doc);
        Staged { id, doc, version: i64::try_from(version).unwrap_or(i64::MAX), expires_at }
    }
}

/// A stored `bigint` version as the `u64` the API speaks.
pub fn version_of(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}
