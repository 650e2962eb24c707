//! Stream versions as `append` checks them; a model shared by events and
//! the errors that report a failed check (kept apart so neither module
//! depends on the other).

use serde::{Deserialize, Serialize};

/// What the caller expects a stream's version to be when appending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExpectedVersion {
    /// No check.
    Any,
    /// The stream has no events yet.
    NoStream,
    /// The stream's last event has exactly this version (≥ 1).
    Exact(u64),
}

impl ExpectedVersion {
    /// Whether a stream at `actual` (0 = no stream) satisfies the expectation.
    pub fn holds(&self, actual: u64) -> bool {
        match self {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => actual == 0,
            ExpectedVersion::Exact(v) => *v == actual,
        }
    }
}
