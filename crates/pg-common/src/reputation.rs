//! The leaderboard statements, for any driver. A page of a board is read in
//! index order (`reputation_scores_board`: period, kind, score desc,
//! subject id in code point order) and stops at its last row. Its ranks
//! need the number of subjects scoring more than its first row: every one
//! of them lies before the page, so that is the page's offset less the
//! rows before it that tie with its first row — an equality count the same
//! index answers. A top page thus costs the same on a board of 10 or 10
//! million subjects. The first row's score and id enter that count as
//! scalar subqueries (computed once), so the count is an index range scan
//! whatever the table's statistics say: on a new namespace, whose tables
//! were planned while empty, a join there was planned the other way round
//! and walked the whole board. One statement each, so the page and the
//! count see one snapshot. Ranks follow with
//! [`rank_page`](palisade_core::backend::eval::rank_page).

/// `$1` period key, `$2` subject kind, `$3` subject id: the subject's row
/// `(subject_id text, score bigint, rank bigint)`, where `rank` is one more
/// than the number of subjects scoring strictly more (a count the board
/// index answers); no row when the subject has no score.
pub const RANK: &str = "SELECT subject_id, score, \
    (SELECT count(*) + 1 FROM reputation_scores o WHERE o.period = s.period AND o.subject_kind = s.subject_kind \
     AND o.score > s.score) AS rank \
    FROM reputation_scores s WHERE period = $1 AND subject_kind = $2 AND subject_id = $3";

/// `$1` period key, `$2` subject kind, `$3` offset, `$4` limit (`bigint`s):
/// the page's rows `(subject_id text, score bigint, greater bigint)`, best
/// first, where `greater` counts the subjects scoring more than the first row.
pub const BOARD_PAGE: &str = concat!(
    "WITH page AS (SELECT subject_id, score FROM reputation_scores WHERE period = $1 AND subject_kind = $2 ",
    "ORDER BY score DESC, subject_id COLLATE \"C\" OFFSET $3 LIMIT $4), ",
    "first AS (SELECT subject_id, score FROM page ORDER BY score DESC, subject_id COLLATE \"C\" LIMIT 1) ",
    "SELECT subject_id, score, $3 - (SELECT count(*) FROM reputation_scores o WHERE o.period = $1 ",
    "AND o.subject_kind = $2 AND o.score = (SELECT score FROM first) ",
    "AND o.subject_id COLLATE \"C\" < (SELECT subject_id FROM first) COLLATE \"C\") AS greater ",
    "FROM page ORDER BY score DESC, subject_id COLLATE \"C\""
);

/// `$1` period key, `$2` subject kind, `$3` subject id, `$4` k (`bigint`):
/// the rows within `k` places of the subject, as [`BOARD_PAGE`]'s plus
/// `first_place bigint` (the 0-based place of the first row); no rows when
/// the subject has no score. The subject's place is two counts the board
/// index answers (higher scores; equal scores with a smaller id).
pub const AROUND: &str = concat!(
    "WITH me AS (SELECT (SELECT count(*) FROM reputation_scores o WHERE o.period = $1 AND o.subject_kind = $2 ",
    "AND o.score > s.score) + (SELECT count(*) FROM reputation_scores o WHERE o.period = $1 ",
    "AND o.subject_kind = $2 AND o.score = s.score AND o.subject_id COLLATE \"C\" < s.subject_id COLLATE \"C\") AS place ",
    "FROM reputation_scores s WHERE s.period = $1 AND s.subject_kind = $2 AND s.subject_id = $3), ",
    "win AS (SELECT greatest(place - $4, 0) AS first, place + $4 + 1 - greatest(place - $4, 0) AS n FROM me), ",
    "page AS (SELECT subject_id, score FROM reputation_scores WHERE period = $1 AND subject_kind = $2 ",
    "AND EXISTS (SELECT 1 FROM me) ORDER BY score DESC, subject_id COLLATE \"C\" ",
    "OFFSET (SELECT first FROM win) LIMIT (SELECT n FROM win)), ",
    "first AS (SELECT subject_id, score FROM page ORDER BY score DESC, subject_id COLLATE \"C\" LIMIT 1) ",
    "SELECT subject_id, score, (SELECT first FROM win) - (SELECT count(*) FROM reputation_scores o ",
    "WHERE o.period = $1 AND o.subject_kind = $2 AND o.score = (SELECT score FROM first) ",
    "AND o.subject_id COLLATE \"C\" < (SELECT subject_id FROM first) COLLATE \"C\") AS greater, ",
    "(SELECT first FROM win) AS first_place ",
    "FROM page ORDER BY score DESC, subject_id COLLATE \"C\""
);
