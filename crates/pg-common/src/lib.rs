//! # palisade-pg-common
//!
//! What every Palisade PostgreSQL backend shares, whatever its driver: the
//! schema and everything that must agree with it. No driver types appear
//! here — a backend crate (pg-sqlx, pg-diesel) binds the values, runs the
//! statements and maps its driver's errors; this crate says *what* to run.
//!
//! - [`migrations`]: the workspace's `migrations/` folder, embedded, in order.
//!   Every Postgres backend applies exactly these, tracked in the namespace's
//!   own `palisade_migrations` table, so either driver can serve a namespace
//!   the other migrated.
//! - [`sqlstate`]: the SQLSTATE → [`ErrorKind`](palisade_core::ErrorKind)
//!   table. A backend's one error-mapping function reads the code from its
//!   driver's error and asks here; kinds never come from message text.
//! - [`json`]: the reversible, order-preserving U+0000 encoding every JSON
//!   value bound as `jsonb` goes through, and the lenient decoding of stored
//!   JSON text.
//! - [`documents`]: the document store's SQL: filters and sorts as SQL text
//!   plus typed [`Bind`](documents::Bind) values (never inlined), the fixed
//!   statements, collection specs as stored and compiled, and the document
//!   faults a backend detects itself.
//! - [`events`]: the gap-safe ordered read (transaction-id positions
//!   bounded by the snapshot's xmin) and its health statement.
//! - [`consumers`]: durable consumers' lease and checkpoint statements.
//! - [`reputation`]: the leaderboard statements (index-ordered pages that
//!   stop early, ranks from one count).
//! - [`namespace`]: the schema-level statements (empty, drop, migration
//!   status) and identifier quoting.
//!
//! ## SQL text is built from fixed fragments only
//!
//! Every value and every JSON path is a bound parameter (`$n` placeholders,
//! numbered in push order by [`documents::Sql`]); identifiers are namespaces,
//! validated by core as `[a-z][a-z0-9_]*` and quoted by
//! [`namespace::quote_ident`] all the same. A backend never formats values
//! into SQL.

pub mod consumers;
pub mod documents;
pub mod events;
pub mod json;
pub mod migrations;
pub mod namespace;
pub mod reputation;
pub mod sqlstate;
pub mod time;

use palisade_core::Capabilities;

/// What every store of a Postgres backend guarantees: the guarantees come
/// from the shared schema and its SQL functions (durable tables, one
/// statement per append batch, LISTEN/NOTIFY, SQL aggregates, JSON-schema
/// checks), not from the driver, so pg-sqlx and pg-diesel report the same.
/// Positions are gap-safe but not gap-free (`gap_free_order` is unset): they
/// are transaction ids, so appends never wait on a global lock.
pub fn capabilities() -> Capabilities {
    let mut caps = Capabilities::none();
    caps.durable = true;
    caps.atomic_batch = true;
    caps.live_tail = true;
    caps.analytics = true;
    caps.schema_validation = true;
    caps.durable_consumers = true;
    caps
}
