//! The standard workload: what each measure does through Palisade, and the
//! data both sides use (so the raw driver moves exactly the same rows).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use chrono::TimeDelta;
use palisade::{StoreKind, Stores};
use palisade_core::documents::{CollectionSpec, Filter, FindOptions, IndexSpec, SortKey};
use palisade_core::events::{AppendBatch, EventFilter, NewEvent, PageRequest};
use palisade_core::reputation::{Period, ReputationEvent, Subject, SubjectKind};
use palisade_core::sessions::SetMode;
use palisade_core::{EventStoreExt, Result};
use serde_json::{json, Value};

use super::runner::{op, Call, Op, Shape};

/// Distinct sessions (and session keys) the workload spreads over.
pub const SESSIONS: usize = 1000;
/// Distinct client IPs events come from (the analytics query groups them).
pub const CLIENT_IPS: usize = 500;
/// Distinct reputation subjects (the leaderboard ranks them).
pub const SUBJECTS: usize = 1000;
/// Distinct engines in the documents (the indexed find selects one).
pub const ENGINES: usize = 100;
/// Events in a small batch.
pub const SMALL_BATCH: usize = 100;
/// Events one query page returns at most.
pub const QUERY_PAGE: usize = 50;
/// The collection the document measures use.
pub const COLLECTION: &str = "bench_analyses";
/// How long set session values live.
pub const SESSION_TTL: TimeDelta = TimeDelta::seconds(600);
/// The rate-limit window and limit of `sessions.hit`.
pub const HIT_WINDOW: TimeDelta = TimeDelta::seconds(60);
/// Hits allowed per window (high: the measure times counting, not refusals).
pub const HIT_LIMIT: u32 = 1_000_000;

/// One measure of the standard workload, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// One event per call, from concurrent tasks.
    AppendOne,
    /// [`SMALL_BATCH`] events per call.
    AppendSmallBatch,
    /// `--batch` events (10,000 by default) per call.
    AppendLargeBatch,
    /// The newest [`QUERY_PAGE`] events of one session.
    Query,
    /// `top_client_ips(10)` over every event.
    TopClientIps,
    /// Set a JSON value with a TTL.
    SessionSet,
    /// Get it back.
    SessionGet,
    /// Increment a counter.
    SessionIncr,
    /// A fixed-window rate-limit hit.
    SessionHit,
    /// Record a reputation event.
    ReputationRecord,
    /// The all-time top 10 users.
    Leaderboard,
    /// Insert a document into an indexed collection.
    DocumentInsert,
    /// Find by the indexed field, 10 documents.
    DocumentFind,
}

/// The sizes a run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Plan {
    /// Calls per side per round of a one-item measure.
    pub ops: usize,
    /// Concurrent tasks.
    pub tasks: usize,
    /// Interleaved rounds per measure.
    pub rounds: usize,
    /// Events in the large batch.
    pub batch: usize,
}

impl Workload {
    /// Every measure, in running order (writes before the reads they feed).
    pub const ALL: [Workload; 13] = [
        Workload::AppendOne,
        Workload::AppendSmallBatch,
        Workload::AppendLargeBatch,
        Workload::Query,
        Workload::TopClientIps,
        Workload::SessionSet,
        Workload::SessionGet,
        Workload::SessionIncr,
        Workload::SessionHit,
        Workload::ReputationRecord,
        Workload::Leaderboard,
        Workload::DocumentInsert,
        Workload::DocumentFind,
    ];

    /// The measure's name, `<store>.<what>`; `--only` matches its prefix.
    pub fn name(self) -> &'static str {
        match self {
            Workload::AppendOne => "events.append_one",
            Workload::AppendSmallBatch => "events.append_batch_100",
            Workload::AppendLargeBatch => "events.append_batch_large",
            Workload::Query => "events.query_session",
            Workload::TopClientIps => "events.top_client_ips",
            Workload::SessionSet => "sessions.set",
            Workload::SessionGet => "sessions.get",
            Workload::SessionIncr => "sessions.incr",
            Workload::SessionHit => "sessions.hit",
            Workload::ReputationRecord => "reputation.record",
            Workload::Leaderboard => "reputation.top10",
            Workload::DocumentInsert => "documents.insert",
            Workload::DocumentFind => "documents.find_indexed",
        }
    }

    /// The store it exercises.
    pub fn store(self) -> StoreKind {
        match self {
            Workload::AppendOne
            | Workload::AppendSmallBatch
            | Workload::AppendLargeBatch
            | Workload::Query
            | Workload::TopClientIps => StoreKind::Events,
            Workload::SessionSet | Workload::SessionGet | Workload::SessionIncr | Workload::SessionHit => {
                StoreKind::Sessions
            }
            Workload::ReputationRecord | Workload::Leaderboard => StoreKind::Reputation,
            Workload::DocumentInsert | Workload::DocumentFind => StoreKind::Documents,
        }
    }

    /// What its throughput counts.
    pub fn unit(self) -> &'static str {
        match self {
            Workload::AppendOne | Workload::AppendSmallBatch | Workload::AppendLargeBatch => "events",
            _ => "calls",
        }
    }

    /// The write that fills what this read needs; run once, untimed, when
    /// `--only` left the write out.
    pub fn fed_by(self) -> Option<Workload> {
        match self {
            Workload::Query | Workload::TopClientIps => Some(Workload::AppendLargeBatch),
            Workload::SessionGet => Some(Workload::SessionSet),
            Workload::Leaderboard => Some(Workload::ReputationRecord),
            Workload::DocumentFind => Some(Workload::DocumentInsert),
            _ => None,
        }
    }

    /// How a round is shaped under `plan`.
    pub fn shape(self, plan: &Plan) -> Shape {
        let spread =
            |calls: usize| Shape { tasks: plan.tasks, calls_per_task: (calls / plan.tasks).max(1), items_per_call: 1 };
        match self {
            // Batches go one at a time: the measure is the batch's cost, not
            // contention between batches.
            Workload::AppendSmallBatch => {
                Shape { tasks: 1, calls_per_task: (plan.ops / SMALL_BATCH).max(3), items_per_call: SMALL_BATCH }
            }
            Workload::AppendLargeBatch => Shape { tasks: 1, calls_per_task: 1, items_per_call: plan.batch },
            Workload::TopClientIps => spread(plan.ops / 20),
            Workload::Query | Workload::Leaderboard | Workload::DocumentFind => spread(plan.ops / 2),
            _ => spread(plan.ops),
        }
    }
}

/// The event of call `seq`: one of [`SESSIONS`] sessions and [`CLIENT_IPS`]
/// client IPs, two tags, a payload with a ~250-byte request excerpt (as a WAF
/// records). A [`SMALL_BATCH`] of them is ~30 KB on the wire: over the
/// 16 KiB at which a Postgres client without `TCP_NODELAY` (sqlx 0.9.0)
/// stalls each request ~40 ms on the server's delayed ACK, so
/// `events.append_batch_100` shows that stall if it ever comes back.
pub fn event(seq: usize) -> NewEvent {
    NewEvent::new("gatekeeper", if seq.is_multiple_of(7) { "blocked" } else { "allowed" })
        .with_session(session_id(seq))
        .with_client_ip(client_ip(seq))
        .with_tag("bench")
        .with_tag(format!("rule:{}", seq % 4))
        .with_data(json!({"n": seq, "path": "/login", "status": 403, "request": request_excerpt(seq)}))
}

/// A hostile-looking request line and headers, ~250 bytes.
fn request_excerpt(seq: usize) -> String {
    format!(
        "POST /login?next=%2F..%2F..%2Fetc%2Fpasswd&id={seq} HTTP/1.1\r\nHost: app.example\r\n\
         User-Agent: sqlmap/1.7.2#stable (https://sqlmap.org)\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         \r\nuser=admin'%20OR%201%3D1--&pass=x&csrf={seq:016x}"
    )
}

/// `n` events starting at call `seq`'s.
pub fn events(seq: usize, n: usize) -> Vec<NewEvent> {
    (0..n).map(|i| event(seq * n + i)).collect()
}

/// The session of call `seq`.
pub fn session_id(seq: usize) -> String {
    format!("s{:04}", seq % SESSIONS)
}

/// The client IP of call `seq` (skewed: low addresses repeat more).
pub fn client_ip(seq: usize) -> IpAddr {
    let n = (seq * seq) % CLIENT_IPS;
    IpAddr::V4(Ipv4Addr::new(10, 1, (n / 256) as u8, (n % 256) as u8))
}

/// The session key of call `seq` (`kind`: `v` values, `c` counters, `r` rate limits).
pub fn session_key(kind: char, seq: usize) -> String {
    format!("{kind}:{}", seq % SESSIONS)
}

/// The value `sessions.set` writes.
pub fn session_value(seq: usize) -> Value {
    json!({"user": format!("u{}", seq % SESSIONS), "roles": ["analyst"], "mfa": true, "ip": client_ip(seq).to_string()})
}

/// The reputation event of call `seq`.
pub fn reputation_event(seq: usize) -> ReputationEvent {
    let delta = if seq.is_multiple_of(3) { -2 } else { 5 };
    ReputationEvent::new(Subject::user(format!("u{}", (seq * 7919) % SUBJECTS)), delta, "bench")
}

/// The engine of call `seq`.
pub fn engine(seq: usize) -> String {
    format!("engine{}", seq % ENGINES)
}

/// The document `documents.insert` writes (Palisade adds `_id`).
pub fn document(seq: usize) -> Value {
    json!({"engine": engine(seq), "verdict": if seq.is_multiple_of(2) { "malicious" } else { "clean" }, "confidence": 0.9, "n": seq})
}

/// Prepares what the workload needs in the Palisade stores (the indexed collection).
pub async fn prepare(stores: &Stores) -> Result<()> {
    stores
        .documents
        .ensure_collection(CollectionSpec::new(COLLECTION).with_index(IndexSpec::on(vec![SortKey::asc("engine")?])))
        .await
        .map(|_| ())
}

/// Workload `w` through Palisade.
pub fn palisade_op(stores: &Stores, w: Workload, plan: &Plan) -> Op {
    let batch = plan.batch;
    match w {
        Workload::AppendOne => {
            let s = Arc::clone(&stores.events);
            op(move |c: Call| {
                let s = Arc::clone(&s);
                async move { s.append_one(event(c.seq)).await.map(|_| ()) }
            })
        }
        Workload::AppendSmallBatch | Workload::AppendLargeBatch => {
            let n = if w == Workload::AppendSmallBatch { SMALL_BATCH } else { batch };
            let s = Arc::clone(&stores.events);
            op(move |c: Call| {
                let s = Arc::clone(&s);
                async move { s.append(AppendBatch::new(events(c.seq, n))).await.map(|_| ()) }
            })
        }
        Workload::Query => {
            let s = Arc::clone(&stores.events);
            op(move |c: Call| {
                let s = Arc::clone(&s);
                let filter = EventFilter::all().session(session_id(c.seq));
                async move { s.query(filter, PageRequest::newest(QUERY_PAGE)).await.map(|_| ()) }
            })
        }
        Workload::TopClientIps => {
            let s = Arc::clone(&stores.events);
            op(move |_| {
                let s = Arc::clone(&s);
                async move { s.top_client_ips(EventFilter::all(), 10).await.map(|_| ()) }
            })
        }
        Workload::SessionSet => {
            let s = Arc::clone(&stores.sessions);
            op(move |c: Call| {
                let s = Arc::clone(&s);
                async move {
                    let key = session_key('v', c.seq);
                    s.set(&key, session_value(c.seq), Some(SESSION_TTL.into()), SetMode::Always).await.map(|_| ())
                }
            })
        }
        Workload::SessionGet => {
            let s = Arc::clone(&stores.sessions);
            op(move |c: Call| {
                let s = Arc::clone(&s);
                async move { s.get(&session_key('v', c.seq)).await.map(|_| ()) }
            })
        }
        Workload::SessionIncr => {
            let s = Arc::clone(&stores.sessions);
            op(move |c: Call| {
                let s = Arc::clone(&s);
                async move { s.incr(&session_key('c', c.seq), 1, Some(SESSION_TTL.into())).await.map(|_| ()) }
            })
        }
        Workload::SessionHit => {
            let s = Arc::clone(&stores.sessions);
            op(move |c: Call| {
                let s = Arc::clone(&s);
                async move { s.hit(&session_key('r', c.seq), HIT_LIMIT, HIT_WINDOW).await.map(|_| ()) }
            })
        }
        Workload::ReputationRecord => {
            let s = Arc::clone(&stores.reputation);
            op(move |c: Call| {
                let s = Arc::clone(&s);
                async move { s.record(reputation_event(c.seq)).await.map(|_| ()) }
            })
        }
        Workload::Leaderboard => {
            let s = Arc::clone(&stores.reputation);
            op(move |_| {
                let s = Arc::clone(&s);
                async move { s.leaderboard(SubjectKind::User, Period::AllTime, 0, 10).await.map(|_| ()) }
            })
        }
        Workload::DocumentInsert => {
            let s = Arc::clone(&stores.documents);
            op(move |c: Call| {
                let s = Arc::clone(&s);
                async move { s.insert(COLLECTION, document(c.seq)).await.map(|_| ()) }
            })
        }
        Workload::DocumentFind => {
            let s = Arc::clone(&stores.documents);
            op(move |c: Call| {
                let s = Arc::clone(&s);
                async move {
                    let filter = Filter::parse(&json!({"engine": engine(c.seq)}))?;
                    s.find(COLLECTION, FindOptions::new(filter).limit(10)).await.map(|_| ())
                }
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_prefixed_by_their_store() {
        let names: std::collections::BTreeSet<&str> = Workload::ALL.iter().map(|w| w.name()).collect();
        assert_eq!(names.len(), Workload::ALL.len());
        for w in Workload::ALL {
            assert!(w.name().starts_with(&format!("{}.", w.store())), "{}", w.name());
        }
    }

    #[test]
    fn every_read_is_fed_by_a_write_that_runs_before_it() {
        for w in Workload::ALL {
            if let Some(writer) = w.fed_by() {
                let at = |x| Workload::ALL.iter().position(|y| *y == x);
                assert!(at(writer) < at(w), "{}", w.name());
            }
        }
    }
}
