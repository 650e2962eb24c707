//! Every statement of the document store. Fixed statements are constants
//! whose parameters are listed in their docs; statements with a filter are
//! builders returning [`Sql`]. The documents table is always aliased `d` in
//! filtered statements, and every read, update and delete sees only live
//! rows (`expires_at` unset or after the statement's `now()`).

use palisade_core::documents::{FieldPath, Filter, FindOptions};

use super::{Bind, Sql};

/// A row of `documents d` is live unless `now >= expires_at`.
macro_rules! live {
    () => {
        "(d.expires_at IS NULL OR d.expires_at > now())"
    };
}

/// Deletes the expired documents of every collection.
pub const SWEEP: &str = "DELETE FROM documents WHERE expires_at <= now()";

/// `$1` collection: deletes its expired documents.
pub const PURGE_EXPIRED: &str = "DELETE FROM documents WHERE collection = $1 AND expires_at <= now()";

/// `$1` collection, `$2` ids (`text[]`): deletes the expired documents holding those ids.
pub const PURGE_EXPIRED_IDS: &str =
    "DELETE FROM documents WHERE collection = $1 AND id = ANY($2::text[]) AND expires_at <= now()";

/// `$1` collection: its stored spec (`jsonb`), no row when it does not exist.
pub const SPEC: &str = "SELECT spec FROM collections WHERE name = $1";

/// Like [`SPEC`], locking the collection's row against a concurrent drop
/// until the transaction ends.
pub const SPEC_LOCKED: &str = "SELECT spec FROM collections WHERE name = $1 FOR KEY SHARE";

/// `$1` collection: whether it exists (a boolean).
pub const EXISTS: &str = "SELECT EXISTS (SELECT 1 FROM collections WHERE name = $1)";

/// `$1` collection, `$2` stored spec (`jsonb`): creates the collection (and,
/// by trigger, its partition and indexes) unless it exists; one row
/// affected when created. Takes the documents table's lock: may fail with
/// [`LOCK_NOT_AVAILABLE`](crate::sqlstate::LOCK_NOT_AVAILABLE), to retry.
pub const CREATE_COLLECTION: &str =
    "INSERT INTO collections (name, spec) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING";

/// `$1` collection: drops it (and, by trigger, its partition); one row
/// affected when it existed. Retried like [`CREATE_COLLECTION`].
pub const DROP_COLLECTION: &str = "DELETE FROM collections WHERE name = $1";

/// `$1` collection, `$2` id: one row when the collection exists, whose one
/// column is the live document's body (`jsonb`) or NULL.
pub const GET: &str = concat!(
    "SELECT d.body FROM collections c LEFT JOIN documents d ON d.collection = c.name AND d.id = $2 AND ",
    live!(),
    " WHERE c.name = $1"
);

/// `$1` collection, `$2` id: the live document's version (`bigint`), its row locked.
pub const LOCK_VERSION: &str =
    concat!("SELECT d.version FROM documents d WHERE d.collection = $1 AND d.id = $2 AND ", live!(), " FOR UPDATE");

/// `$1` collection, `$2…$5` the id (`text[]`), encoded body (`jsonb[]`),
/// version (`bigint[]`) and expiry (`timestamptz[]`) of each
/// [`Staged`](super::Staged) row: inserts them, returning the ids inserted
/// (an id already taken is skipped).
pub const INSERT: &str = concat!(
    "INSERT INTO documents (collection, id, body, version, expires_at) ",
    "SELECT $1, t.id, t.body, t.version, t.expires_at ",
    "FROM unnest($2::text[], $3::jsonb[], $4::bigint[], $5::timestamptz[]) AS t(id, body, version, expires_at) ",
    "ON CONFLICT (collection, id) DO NOTHING RETURNING id"
);

/// The parameters of [`INSERT`]: writes the rows back over their documents.
pub const UPDATE: &str = concat!(
    "UPDATE documents AS d SET body = t.body, version = t.version, expires_at = t.expires_at ",
    "FROM unnest($2::text[], $3::jsonb[], $4::bigint[], $5::timestamptz[]) AS t(id, body, version, expires_at) ",
    "WHERE d.collection = $1 AND d.id = t.id"
);

/// `$1` collection, `$2` encoded bodies about to be written (`jsonb[]`),
/// `$3` the collection's unique paths ([`Collection::unique_paths`](super::Collection::unique_paths)):
/// queues behind concurrent writers of the same unique values (transaction
/// advisory locks), so two writers never deadlock on the exclusion constraints.
pub const LOCK_UNIQUE_KEYS: &str = "SELECT palisade_doc_lock_unique_keys($1, $2, $3)";

/// Checks unique constraints at commit instead of per statement (writes in
/// several chunks may move values between documents).
pub const DEFER_CONSTRAINTS: &str = "SET CONSTRAINTS ALL DEFERRED";

/// `find`: the matches' bodies, sorted, skipped and limited. `select` is
/// `SELECT d.body` (or `EXPLAIN … SELECT d.body`). With sort keys a second
/// column (boolean) says whether any sort value is an object or array, in
/// which case SQL's order is not the contract's and the caller sorts
/// [`matching`] rows itself. `indexed`: the collection's indexed paths.
pub fn find(select: &'static str, collection: &str, options: &FindOptions, indexed: &[FieldPath]) -> Sql {
    let keys = &options.sort;
    let mut sql = Sql::new(select).with_indexed(indexed);
    if !keys.is_empty() {
        sql.push(", ").containers_flag(keys);
    }
    sql.push(" FROM documents d");
    if !keys.is_empty() {
        sql.sort_values(keys);
    }
    sql.push(" WHERE d.collection = ").collection(collection);
    sql.push(concat!(" AND ", live!(), " AND ")).filter(&options.filter).order_by(keys);
    if options.skip > 0 {
        sql.push(" OFFSET ").bind(Bind::BigInt(i64::try_from(options.skip).unwrap_or(i64::MAX)), "::bigint");
    }
    if let Some(limit) = options.limit {
        sql.push(" LIMIT ").bind(Bind::BigInt(i64::try_from(limit).unwrap_or(i64::MAX)), "::bigint");
    }
    sql
}

/// The bodies of every live match, unordered.
pub fn matching(collection: &str, filter: &Filter, indexed: &[FieldPath]) -> Sql {
    filtered("SELECT d.body FROM documents d WHERE d.collection = ", collection, filter, indexed)
}

/// `update`: the id, body and version of every live match, locked, in `_id` order.
pub fn lock_matching(collection: &str, filter: &Filter, indexed: &[FieldPath]) -> Sql {
    let mut sql =
        filtered("SELECT d.id, d.body, d.version FROM documents d WHERE d.collection = ", collection, filter, indexed);
    sql.push(" ORDER BY d.id FOR UPDATE");
    sql
}

/// `delete`: deletes every live match (rows affected = how many).
pub fn delete(collection: &str, filter: &Filter, indexed: &[FieldPath]) -> Sql {
    filtered("DELETE FROM documents d WHERE d.collection = ", collection, filter, indexed)
}

/// `count`: one row — whether the collection exists (boolean), and how many
/// live documents match (bigint).
pub fn count(collection: &str, filter: &Filter, indexed: &[FieldPath]) -> Sql {
    let mut sql = Sql::new("SELECT EXISTS (SELECT 1 FROM collections WHERE name = ").with_indexed(indexed);
    sql.collection(collection).push("), (SELECT count(*) FROM documents d WHERE d.collection = ");
    sql.collection(collection).push(concat!(" AND ", live!(), " AND "));
    sql.filter(filter).push(")");
    sql
}

/// `head` (ending in `d.collection = `), the collection, then the live rows matching `filter`.
fn filtered(head: &'static str, collection: &str, filter: &Filter, indexed: &[FieldPath]) -> Sql {
    let mut sql = Sql::new(head).with_indexed(indexed);
    sql.collection(collection).push(concat!(" AND ", live!(), " AND "));
    sql.filter(filter);
    sql
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_core::documents::SortKey;
    use serde_json::json;

    fn filter(v: serde_json::Value) -> Filter {
        Filter::parse(&v).unwrap()
    }

    #[test]
    fn filtered_statements_name_the_collection_and_see_only_live_rows() {
        let live = "(d.expires_at IS NULL OR d.expires_at > now())";
        for sql in [
            matching("c", &filter(json!({"a": 1})), &[]),
            lock_matching("c", &filter(json!({"a": 1})), &[]),
            delete("c", &filter(json!({"a": 1})), &[]),
            count("c", &filter(json!({"a": 1})), &[]),
        ] {
            let text = sql.text().to_owned();
            assert!(text.contains("d.collection = 'c' AND ") && text.contains(live), "{text}");
            let statement = sql.into_statement();
            assert!(statement.reusable && !statement.binds.contains(&Bind::Text("c".into())), "{statement:?}");
        }
        // Only a valid collection name is written in; anything else is bound.
        let (text, binds) = matching("c'; --", &filter(json!({})), &[]).into_parts();
        assert!(text.contains("d.collection = $1::text AND "), "{text}");
        assert_eq!(binds, vec![Bind::Text("c'; --".into())]);
        assert!(lock_matching("c", &filter(json!({})), &[]).text().ends_with(" ORDER BY d.id FOR UPDATE"));
        for fixed in [GET, LOCK_VERSION] {
            assert!(fixed.contains(live), "{fixed}");
        }
    }

    #[test]
    fn find_sorts_then_skips_then_limits_with_bound_numbers() {
        let options =
            FindOptions::new(filter(json!({"a": {"$gt": 1}}))).sort(SortKey::desc("a").unwrap()).skip(5).limit(10);
        let (text, binds) = find("SELECT d.body", "c", &options, &[]).into_parts();
        assert!(text.starts_with("SELECT d.body, bool_or(palisade_doc_rank(s.k0) IN (4, 5)) OVER () FROM documents d"));
        let (order, offset, limit) =
            (text.find(" ORDER BY ").unwrap(), text.find(" OFFSET $").unwrap(), text.find(" LIMIT $").unwrap());
        assert!(order < offset && offset < limit, "{text}");
        assert_eq!(&binds[binds.len() - 2..], &[Bind::BigInt(5), Bind::BigInt(10)]);
    }
}
