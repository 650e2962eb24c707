//! The reference semantics, for backends that evaluate in process (memory,
//! and any backend that filters, sorts or ranks after reading): the document
//! filter language, sort order and projections exactly as every backend must
//! answer them, event grouping and ranking, and leaderboard ranks. A backend
//! that translates to a query language (SQL, Redis scripts) must agree with
//! these; the conformance suite checks it against them. (The SQL functions
//! of migration `0003_documents.sql` mirror `reach`, `matches` and
//! `sort_value`; its comment names their old paths under `documents`, and
//! migrations are never edited.)

use std::net::IpAddr;

use crate::events::{Event, GroupBy, GroupCount};
use crate::reputation::{Ranked, Subject};

pub use crate::documents::matcher::{cmp_docs, matches, project, reach, sort_value, Reached};
pub use crate::documents::path::array_index;
pub use crate::documents::value::{cmp_bracketed, cmp_numbers, cmp_total, type_rank, values_equal};

/// Maps IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) to plain IPv4, as every
/// backend stores client IPs.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// The keys of `e` under `group` (none when the event lacks the field).
pub fn group_keys(e: &Event, group: GroupBy) -> Vec<String> {
    match group {
        GroupBy::Kind => vec![e.kind.clone()],
        GroupBy::Source => vec![e.source.clone()],
        GroupBy::Tag => {
            let mut tags = e.tags.clone();
            tags.sort();
            tags.dedup();
            tags
        }
        GroupBy::ClientIp => e.client_ip.map(|ip| canonical_ip(ip).to_string()).into_iter().collect(),
        GroupBy::Session => e.session_id.clone().into_iter().collect(),
    }
}

/// Sorts groups by count descending, then key ascending (code point order), and
/// keeps the first `top`. Every backend's `count_by` returns this order.
pub fn rank_groups(mut groups: Vec<GroupCount>, top: usize) -> Vec<GroupCount> {
    groups.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
    groups.truncate(top);
    groups
}

/// Competition ranks for one page of a board already sorted by score
/// descending (ties by subject id): the page starts at 0-based place
/// `offset`, and `greater` subjects score more than its first entry (a
/// count an index answers). Later entries need no count: one whose score
/// differs from its predecessor's ranks by its place. So a page costs the
/// page plus one count, whatever the board's size.
pub fn rank_page(offset: usize, greater: u64, entries: Vec<(Subject, i64)>) -> Vec<Ranked> {
    let mut out: Vec<Ranked> = Vec::with_capacity(entries.len());
    for (i, (subject, score)) in entries.into_iter().enumerate() {
        let rank = match out.last() {
            Some(prev) if prev.score == score => prev.rank,
            Some(_) => (offset + i) as u64 + 1,
            None => greater + 1,
        };
        out.push(Ranked { subject, score, rank });
    }
    out
}

/// Assigns competition ranks to `(subject, score)` pairs and sorts them by
/// score descending, then subject id ascending (code point order) — the order
/// every backend returns.
pub fn rank_entries(mut entries: Vec<(Subject, i64)>) -> Vec<Ranked> {
    entries.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.id.cmp(&b.0.id)));
    let mut out: Vec<Ranked> = Vec::with_capacity(entries.len());
    for (i, (subject, score)) in entries.into_iter().enumerate() {
        let rank = match out.last() {
            Some(prev) if prev.score == score => prev.rank,
            _ => i as u64 + 1,
        };
        out.push(Ranked { subject, score, rank });
    }
    out
}
