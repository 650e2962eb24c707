//! The event store's ordered reads, shared by every driver (see migration
//! 0009 for the scheme).
//!
//! A position is `(position, seq)`: the appending transaction's id plus the
//! namespace's offset, and the event's place in its batch. Readers that
//! follow the order return only rows below the **gap-safe bound**
//! `pg_snapshot_xmin(pg_current_snapshot()) + xid_offset`, computed in the
//! same statement as the read: every transaction id below a snapshot's xmin
//! has committed or rolled back, so no event can later appear below a
//! position a reader has passed. Rows above the bound are committed but
//! *held back* until every older write transaction in the cluster has ended:
//! a long-running write transaction delays readers, never reorders them.

use std::time::Duration;

/// Longest a `read` waits for committed events held back behind an older
/// write transaction before it returns the gap-safe prefix alone (so a
/// caller reads its own appends while other writers are busy).
pub const READ_SETTLE: Duration = Duration::from_secs(5);

/// The columns every event read selects, in [`READ_AFTER`]'s order.
pub const COLUMNS: &str =
    "position, seq, id, source, kind, stream, version, session_id, client_ip, tags, data, occurred_at, recorded_at";

/// `$1` major, `$2` minor (the cursor: see [`cursor`]), `$3` limit: the next
/// events in order with [`COLUMNS`] plus `safe`, whether the row lies below
/// the gap-safe bound. Rows come in position order, so the safe rows are a
/// prefix; a reader returns that prefix only. One statement, one snapshot:
/// the bound and the rows are read together.
pub const READ_AFTER: &str = "SELECT e.position, e.seq, e.id, e.source, e.kind, e.stream, e.version, e.session_id, \
    e.client_ip, e.tags, e.data, e.occurred_at, e.recorded_at, e.position < b.bound AS safe \
    FROM events e, (SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint + h.xid_offset AS bound \
                      FROM event_head h) b \
    WHERE (e.position, e.seq) > ($1, $2) ORDER BY e.position, e.seq LIMIT $3";

/// Whether the namespace needs [`RESTORE_GUARD`] (`bool`), read without
/// locks. A namespace restored into another cluster (`pg_dump` /
/// `pg_restore`) keeps its positions, but that cluster's transaction ids may
/// be lower: new appends would be numbered *below* stored events, and
/// readers past those would never see them. Stored positions are otherwise
/// always below the next transaction id plus the offset (every stored
/// position is a committed transaction's id plus the offset), so this is
/// false on any namespace that was not restored, and connecting costs one
/// index lookup.
pub const RESTORE_NEEDED: &str = "SELECT EXISTS (SELECT 1 FROM event_head h \
    WHERE (SELECT max(position) FROM events) >= pg_snapshot_xmax(pg_current_snapshot())::text::bigint + h.xid_offset)";

/// Raises `xid_offset` after a restore ([`RESTORE_NEEDED`]), as one
/// transaction of two statements (simple query protocol). The lock waits for
/// every transaction that read the old offset (appends and ordered reads
/// hold `event_head` until they end) and holds new ones back until the new
/// offset is committed; the condition is checked again under it, so a
/// second service connecting at the same time changes nothing. The new
/// offset counts from the oldest transaction still running: a transaction
/// that took its id before the lock and reads the offset after it is still
/// numbered above every stored event, and so is every later one — readers,
/// bounded by their snapshot's oldest running id plus the offset, never
/// pass a position that can still appear.
pub const RESTORE_GUARD: &str = "LOCK TABLE event_head IN ACCESS EXCLUSIVE MODE; \
    UPDATE event_head SET xid_offset = m.top + 1 - pg_snapshot_xmin(pg_current_snapshot())::text::bigint \
    FROM (SELECT max(position) AS top FROM events) m \
    WHERE m.top >= pg_snapshot_xmax(pg_current_snapshot())::text::bigint + event_head.xid_offset";

/// How far the order is held back, for health: `held` (bigint) committed
/// events above the gap-safe bound, `waiting` (bigint) transaction ids the
/// bound waits for (`xmax − xmin` of the current snapshot, cluster-wide).
pub const HELD_BACK: &str = "SELECT \
    (SELECT count(*) FROM events e WHERE e.position >= b.bound) AS held, \
    (pg_snapshot_xmax(s.snap)::text::bigint - pg_snapshot_xmin(s.snap)::text::bigint) AS waiting \
    FROM (SELECT pg_current_snapshot() AS snap) s, \
         LATERAL (SELECT pg_snapshot_xmin(s.snap)::text::bigint + h.xid_offset AS bound FROM event_head h) b";

/// [`HELD_BACK`]'s answer as a health note: `None` when nothing is held back.
pub fn held_back_note(held: i64, waiting: i64) -> Option<String> {
    (held > 0).then(|| {
        format!(
            "{held} committed events held back from ordered reads (read, live tails) until older write \
             transactions end ({waiting} transaction ids in flight cluster-wide); a long-running write \
             transaction delays readers, never reorders them"
        )
    })
}

/// `purge(before)` (migration 0013): drops the partitions lying entirely
/// before `$1`, deletes the rest before it and the removed events' ids, and
/// premakes partitions ahead. One row, `gone` (bigint).
pub const PURGE: &str = "SELECT palisade_events_purge($1) AS gone";

/// The append statement for a caller's connection (`append_in`): the
/// function schema-qualified, so the caller's `search_path` does not matter
/// (migration 0013 pins the function's own `search_path` to the namespace).
pub fn append_in_sql(ns: &palisade_core::Namespace) -> String {
    format!(
        "SELECT * FROM {}.palisade_append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        crate::namespace::quote_ident(ns.as_str())
    )
}

/// A cursor as the `(major, minor)` pair [`READ_AFTER`] binds: `None` (from
/// the start) is below every stored position; values beyond the columns'
/// range are clamped (nothing is stored there).
pub fn cursor(after: Option<(u64, u64)>) -> (i64, i32) {
    match after {
        None => (0, -1),
        Some((major, minor)) => (i64::try_from(major).unwrap_or(i64::MAX), i32::try_from(minor).unwrap_or(i32::MAX)),
    }
}

/// Runs `read` (one [`READ_AFTER`] page: the safe prefix and whether rows
/// beyond it are held back) until nothing is held back, pausing 2 ms and
/// doubling up to 50 ms, for at most [`READ_SETTLE`]; then returns the last
/// safe prefix. So a caller reads its own appends, and a tail's catch-up
/// holds everything committed before it began, while another write
/// transaction is still open.
pub async fn settled<T, F, Fut>(mut read: F) -> palisade_core::Result<Vec<T>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = palisade_core::Result<(Vec<T>, bool)>>,
{
    let deadline = tokio::time::Instant::now() + READ_SETTLE;
    let mut pause = Duration::from_millis(2);
    loop {
        let (page, held_back) = read().await?;
        if !held_back || tokio::time::Instant::now() + pause > deadline {
            return Ok(page);
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// The prefix of `rows` a gap-safe reader returns: rows up to the first one
/// not `safe`, and whether any was held back.
pub fn safe_prefix<T>(mut rows: Vec<(T, bool)>) -> (Vec<T>, bool) {
    let cut = rows.iter().position(|(_, safe)| !safe).unwrap_or(rows.len());
    let held_back = cut < rows.len();
    rows.truncate(cut);
    (rows.into_iter().map(|(row, _)| row).collect(), held_back)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_start_below_every_position_and_clamp() {
        assert_eq!(cursor(None), (0, -1));
        assert_eq!(cursor(Some((7, 2))), (7, 2));
        assert_eq!(cursor(Some((u64::MAX, u64::MAX))), (i64::MAX, i32::MAX));
    }

    #[tokio::test(start_paused = true)]
    async fn settled_reads_again_while_rows_are_held_back_and_gives_up_at_the_deadline() {
        let mut calls = 0;
        let page = settled(|| {
            calls += 1;
            let held = calls < 3;
            async move { Ok((vec![calls], held)) }
        })
        .await
        .unwrap();
        assert_eq!((page, calls), (vec![3], 3), "read until nothing is held back");
        let started = tokio::time::Instant::now();
        let page = settled(|| async { Ok((vec![0], true)) }).await.unwrap();
        assert_eq!(page, vec![0], "the safe prefix once the deadline passes");
        assert!(started.elapsed() <= READ_SETTLE, "{:?}", started.elapsed());
        assert!(started.elapsed() >= READ_SETTLE - Duration::from_millis(60), "{:?}", started.elapsed());
    }

    #[test]
    fn only_the_safe_prefix_is_returned() {
        assert_eq!(safe_prefix(vec![(1, true), (2, true), (3, false), (4, true)]), (vec![1, 2], true));
        assert_eq!(safe_prefix(vec![(1, true)]), (vec![1], false));
        assert_eq!(safe_prefix::<i32>(vec![]), (vec![], false));
    }
}
