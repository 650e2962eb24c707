//! Hostile input against a [`ReputationRepo`]: reasons and edge offsets.

use super::{add, score, t0, user, users};
use crate::{assert_kind, ok};
use palisade_core::error::ErrorKind;
use palisade_core::reputation::{Period, ReputationEvent, SubjectKind, MAX_REASON_LEN};
use palisade_core::ReputationRepo;

/// A reason over the policy's length, or with control characters (U+0000
/// included; tab, CR and LF are fine), is `InvalidInput` and records nothing.
pub async fn hostile_reasons_are_invalid_input_and_record_nothing(repo: &dyn ReputationRepo) {
    let alice = user("alice");
    for reason in ["x".repeat(MAX_REASON_LEN + 1), "a\u{0}b".to_owned(), "bell\u{7}".to_owned()] {
        let e = ReputationEvent::new(alice.clone(), 5, reason).at(t0());
        assert_kind(repo.record(e).await, ErrorKind::InvalidInput, "hostile reason");
    }
    let ancient = ReputationEvent::new(alice.clone(), 5, "x").at(chrono::DateTime::<chrono::Utc>::MIN_UTC);
    assert_kind(repo.record(ancient).await, ErrorKind::InvalidInput, "at outside years 1 to 9999");
    assert_eq!(score(repo, &alice).await, 0, "a refused record changed the score");
    let fine = ReputationEvent::new(alice.clone(), 5, "line one\r\n\tline two").at(t0());
    assert_eq!(ok(repo.record(fine).await, "record").score, 5);
    let history = ok(repo.history(&alice, palisade_core::time::TimeRange::all(), 10).await, "history");
    assert_eq!(history[0].reason, "line one\r\n\tline two");
}

/// Offsets past any possible board (up to `usize::MAX`) give empty pages,
/// never errors.
pub async fn leaderboard_offsets_past_any_board_are_empty(repo: &dyn ReputationRepo) {
    add(repo, &user("a"), 1, t0()).await;
    for offset in [1usize << 53, 1 << 63, usize::MAX - 1, usize::MAX] {
        let page = ok(repo.leaderboard(SubjectKind::User, Period::AllTime, offset, 10).await, "leaderboard");
        assert!(page.is_empty(), "offset {offset}");
    }
    assert_eq!(users(repo, Period::AllTime).await.len(), 1);
}
