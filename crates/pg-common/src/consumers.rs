//! Durable consumers on Postgres (`event_consumers`, migration 0012): the
//! statements both drivers run and what their rows mean.
//!
//! Leases run on the **server's** clock (`clock_timestamp()`), so the hosts'
//! clocks never matter. A claim is one statement: it inserts the consumer on
//! first use, takes or renews the lease when the filter matches and the
//! lease is free, expired or already this token's, and otherwise reports the
//! stored row so the caller can say why. Two claims racing for an expired
//! lease serialize on the row lock; the loser re-checks the new holder
//! (READ COMMITTED re-evaluation) and is refused.

use chrono::{DateTime, Utc};
use palisade_core::consumers::{errors, Claim, ConsumerInfo};
use palisade_core::events::{Cursor, EventFilter, Position};
use palisade_core::{Error, Result};

/// Takes or renews a lease. Binds `$1` name, `$2` filter key (text), `$3`
/// token (uuid), `$4` lease in milliseconds (bigint), `$5` renew only
/// (boolean: never inserts, only extends the token's own lease). Returns at
/// most one row `(taken bool, same_filter bool, position bigint, seq
/// integer)`; no row means a concurrent first claim or delete raced this one
/// (claim again), or, when renewing, that the consumer is gone.
pub const CLAIM: &str = "WITH ins AS ( \
        INSERT INTO event_consumers (name, filter, holder, lease_expires) \
        SELECT $1, $2, $3, clock_timestamp() + $4::bigint * interval '1 millisecond' WHERE NOT $5::boolean \
        ON CONFLICT (name) DO NOTHING \
        RETURNING true AS taken, true AS same_filter, position, seq \
    ), upd AS ( \
        UPDATE event_consumers c \
        SET holder = $3, lease_expires = clock_timestamp() + $4::bigint * interval '1 millisecond' \
        WHERE c.name = $1 AND NOT EXISTS (SELECT 1 FROM ins) AND c.filter = $2 \
          AND ((c.holder = $3 AND c.lease_expires > clock_timestamp()) \
               OR (NOT $5::boolean AND (c.holder IS NULL OR c.lease_expires <= clock_timestamp()))) \
        RETURNING true AS taken, true AS same_filter, c.position, c.seq \
    ) \
    SELECT taken, same_filter, position, seq FROM ins \
    UNION ALL SELECT taken, same_filter, position, seq FROM upd \
    UNION ALL SELECT false, c.filter = $2, c.position, c.seq FROM event_consumers c \
        WHERE c.name = $1 AND NOT EXISTS (SELECT 1 FROM ins) AND NOT EXISTS (SELECT 1 FROM upd)";

/// Moves a checkpoint forward under the holder's token. Binds `$1` name, `$2`
/// token, `$3` position, `$4` seq. Zero rows affected: the token does not hold
/// a running lease (taken over, released, deleted, or run out). (A position at
/// or before the checkpoint leaves it.)
pub const ACK: &str = "UPDATE event_consumers SET \
        position = CASE WHEN position IS NULL OR (position, seq) < ($3, $4) THEN $3 ELSE position END, \
        seq = CASE WHEN position IS NULL OR (position, seq) < ($3, $4) THEN $4 ELSE seq END \
    WHERE name = $1 AND holder = $2 AND lease_expires > clock_timestamp()";

/// Gives a lease up. Binds `$1` name, `$2` token.
pub const RELEASE: &str =
    "UPDATE event_consumers SET holder = NULL, lease_expires = NULL WHERE name = $1 AND holder = $2";

/// Every consumer: `(name, filter, position, seq, lease_expires_ms)`, the
/// last only while a lease runs (epoch milliseconds).
pub const LIST: &str = "SELECT name, filter, position, seq, \
        CASE WHEN lease_expires > clock_timestamp() \
             THEN floor(extract(epoch FROM lease_expires) * 1000)::bigint END AS lease_ms \
    FROM event_consumers";

/// Deletes a consumer. Binds `$1` name.
pub const DELETE: &str = "DELETE FROM event_consumers WHERE name = $1";

/// The checkpoint a claim row reports.
pub fn checkpoint(position: Option<i64>, seq: Option<i32>) -> Cursor {
    match (position, seq) {
        (Some(p), Some(s)) => Cursor::After(Position::new(p.max(0) as u64, s.max(0) as u64)),
        _ => Cursor::Start,
    }
}

/// What a claim row means: the checkpoint, or why the lease was refused.
pub fn claimed(claim: &Claim, row: Option<(bool, bool, Option<i64>, Option<i32>)>) -> Option<Result<Cursor>> {
    let Some((taken, same_filter, position, seq)) = row else {
        return claim.renew.then(|| Err(errors::lease_lost(&claim.name)));
    };
    Some(match (taken, same_filter) {
        (true, _) => Ok(checkpoint(position, seq)),
        (false, _) if claim.renew => Err(errors::lease_lost(&claim.name)),
        (false, false) => Err(errors::other_filter(&claim.name)),
        (false, true) => Err(errors::held(&claim.name)),
    })
}

/// Runs a claim (`run`: one [`CLAIM`] statement, its row) until a row says
/// what happened: a row-less answer (a first claim or a delete raced this
/// one) is tried again, three times in all.
pub async fn claim_rounds<F, Fut>(claim: &Claim, mut run: F) -> Result<Cursor>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<(bool, bool, Option<i64>, Option<i32>)>>>,
{
    for _ in 0..3 {
        if let Some(outcome) = claimed(claim, run().await?) {
            return outcome;
        }
    }
    Err(Error::new(palisade_core::ErrorKind::Unavailable, "the consumer kept changing under the claim"))
}

/// A position as the `(position, seq)` columns hold it; `InvalidInput` when
/// it is beyond them (no Postgres event is there).
pub fn position_columns(p: Position) -> Result<(i64, i32)> {
    match (i64::try_from(p.major), i32::try_from(p.minor)) {
        (Ok(a), Ok(b)) => Ok((a, b)),
        _ => Err(Error::invalid("position is beyond any Postgres event position")),
    }
}

/// A listed row as [`ConsumerInfo`]; a row whose filter does not decode is
/// skipped with a warning (one stored row never fails the whole list).
pub fn info(
    name: String,
    filter: &str,
    position: Option<i64>,
    seq: Option<i32>,
    lease_ms: Option<i64>,
) -> Option<ConsumerInfo> {
    let filter: EventFilter = match serde_json::from_str(filter) {
        Ok(f) => f,
        Err(_) => {
            tracing::warn!(consumer = %name, "palisade: a stored consumer filter does not decode; not listed");
            return None;
        }
    };
    Some(ConsumerInfo {
        name,
        filter,
        checkpoint: checkpoint(position, seq),
        lease_expires_at: lease_ms.and_then(DateTime::<Utc>::from_timestamp_millis),
    })
}

/// Sorts listed consumers by name, bytewise (every backend lists alike,
/// whatever the database collation).
pub fn sorted(mut all: Vec<ConsumerInfo>) -> Vec<ConsumerInfo> {
    all.sort_by(|a, b| a.name.cmp(&b.name));
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_core::ErrorKind;
    use std::time::Duration;

    #[test]
    fn claim_rows_say_taken_held_or_other_filter() {
        let c = Claim {
            name: "p".into(),
            filter: EventFilter::all(),
            token: uuid::Uuid::nil(),
            lease: Duration::from_secs(1),
            renew: false,
        };
        let renew = Claim { renew: true, ..c.clone() };
        let lost = |r: Option<Result<Cursor>>| {
            matches!(
                r.unwrap().unwrap_err().detail(),
                Some(palisade_core::ErrorDetail::ConsumerLease { held_elsewhere: false, .. })
            )
        };
        assert!(lost(claimed(&renew, None)), "renewing a deleted consumer: lease lost, not a retry");
        assert!(lost(claimed(&renew, Some((false, true, None, None)))), "renewing a taken lease: lost");
        assert_eq!(claimed(&c, None).map(|r| r.is_ok()), None, "no row: claim again");
        assert_eq!(
            claimed(&c, Some((true, true, Some(7), Some(2)))).unwrap().unwrap(),
            Cursor::After(Position::new(7, 2))
        );
        assert_eq!(claimed(&c, Some((true, true, None, None))).unwrap().unwrap(), Cursor::Start);
        let held = claimed(&c, Some((false, true, None, None))).unwrap().unwrap_err();
        assert!(matches!(held.detail(), Some(palisade_core::ErrorDetail::ConsumerLease { held_elsewhere: true, .. })));
        let other = claimed(&c, Some((false, false, None, None))).unwrap().unwrap_err();
        assert_eq!(other.kind(), ErrorKind::Conflict);
        assert!(other.detail().is_none());
    }

    #[test]
    fn positions_beyond_the_columns_are_invalid_input() {
        assert_eq!(position_columns(Position::new(5, 1)).unwrap(), (5, 1));
        assert_eq!(position_columns(Position::new(u64::MAX, 0)).unwrap_err().kind(), ErrorKind::InvalidInput);
        assert_eq!(position_columns(Position::new(1, u64::MAX)).unwrap_err().kind(), ErrorKind::InvalidInput);
    }

    #[test]
    fn an_undecodable_filter_skips_only_its_row() {
        assert!(info("bad".into(), "{not json", None, None, None).is_none());
        let ok = info("good".into(), &serde_json::to_string(&EventFilter::all()).unwrap(), Some(3), Some(0), None);
        assert_eq!(ok.unwrap().checkpoint, Cursor::After(Position::new(3, 0)));
    }
}
