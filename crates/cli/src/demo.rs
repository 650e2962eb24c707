//! `palisade demo`: a gatekeeper and a threat-intel platform simulated on the
//! configured stores, then a report of what the stores saw.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};

use chrono::TimeDelta;
use palisade_core::documents::{CollectionSpec, Filter, IndexSpec, SortKey};
use palisade_core::events::{AppendBatch, EventFilter, GroupBy, NewEvent};
use palisade_core::reputation::{Period, ReputationEvent, Subject, SubjectKind};
use palisade_core::Result;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use palisade::Stores;

/// Options of `palisade demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Requests the gatekeeper handles.
    #[arg(long, default_value_t = 3000)]
    pub requests: usize,
    /// Distinct sessions.
    #[arg(long, default_value_t = 300)]
    pub sessions: usize,
    /// Seed for a reproducible run.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Stop handling requests after this many seconds, even if fewer were sent.
    #[arg(long)]
    pub duration_secs: Option<u64>,
    /// Namespace to run in (default: a fresh `demo_<random>` one, so runs against a
    /// server never mix).
    #[arg(long)]
    pub namespace: Option<String>,
}

impl Default for DemoArgs {
    fn default() -> Self {
        DemoArgs { requests: 3000, sessions: 300, seed: 7, duration_secs: None, namespace: None }
    }
}

/// The namespace a demo run uses: `--namespace`, else a fresh random one for
/// server backends, else the configured one.
pub fn namespace(args: &DemoArgs, config: &palisade::Config) -> Result<palisade_core::Namespace> {
    match &args.namespace {
        Some(ns) => palisade_core::Namespace::new(ns.clone()),
        None if palisade::StoreKind::ALL.iter().all(|k| config.store(*k).url.scheme() == "memory") => {
            Ok(config.namespace.clone())
        }
        None => palisade_core::Namespace::random("demo"),
    }
}

const RULES: [&str; 4] = ["sqli", "xss", "path_traversal", "bot"];
const ENGINES: [&str; 4] = ["yara", "sigma", "clamav", "ml_v2"];
/// Per-session rate limit: requests per 10-second window.
const RATE_LIMIT: u32 = 25;

struct Client {
    session: String,
    ip: IpAddr,
    malicious: bool,
}

/// Runs the simulation on `stores` and returns the printable report.
pub async fn run(stores: &Stores, args: &DemoArgs) -> Result<String> {
    if args.requests == 0 || args.sessions == 0 {
        return Err(palisade_core::Error::invalid("--requests and --sessions must be at least 1"));
    }
    let mut rng = StdRng::seed_from_u64(args.seed);
    let clients: Vec<Client> = (0..args.sessions)
        .map(|i| Client {
            session: format!("s{i:04}"),
            ip: IpAddr::V4(Ipv4Addr::new(10, rng.gen_range(0..4), rng.gen_range(0..8), rng.gen_range(1..32))),
            malicious: rng.gen_bool(0.12),
        })
        .collect();
    stores
        .documents
        .ensure_collection(
            CollectionSpec::new("analyses")
                .with_schema(json!({
                    "type": "object",
                    "required": ["event_id", "engine", "verdict"],
                    "properties": {
                        "engine": {"enum": ENGINES},
                        "verdict": {"enum": ["malicious", "clean"]},
                        "confidence": {"type": "number", "minimum": 0, "maximum": 1}
                    }
                }))
                .with_index(IndexSpec::unique(vec![SortKey::asc("event_id")?, SortKey::asc("engine")?])),
        )
        .await?;

    let progress = indicatif::ProgressBar::new(args.requests as u64).with_style(
        indicatif::ProgressStyle::with_template("{spinner} {msg} [{bar:40}] {pos}/{len} requests ({per_sec})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    progress.set_message("gatekeeper");
    let started = std::time::Instant::now();
    let deadline = args.duration_secs.map(std::time::Duration::from_secs);
    let mut batch = Vec::new();
    let mut limited = std::collections::BTreeSet::new();
    for n in 0..args.requests {
        if deadline.is_some_and(|d| started.elapsed() >= d) {
            break;
        }
        progress.inc(1);
        // A few hot sessions (scrapers, brute-forcers) send a fifth of all traffic.
        let hot = clients.len().min(8);
        let c =
            if rng.gen_bool(0.2) { &clients[rng.gen_range(0..hot)] } else { &clients[rng.gen_range(0..clients.len())] };
        let decision = stores.sessions.hit(&format!("rl:{}", c.session), RATE_LIMIT, TimeDelta::seconds(10)).await?;
        stores.sessions.incr(&format!("requests:{}", c.session), 1, Some(TimeDelta::minutes(30).into())).await?;
        stores
            .sessions
            .push(&format!("history:{}", c.session), json!({"n": n}), 20, Some(TimeDelta::minutes(30).into()))
            .await?;
        let attack = c.malicious && rng.gen_bool(0.6);
        let mut event = NewEvent::new("gatekeeper", "allowed").with_session(&c.session).with_client_ip(c.ip);
        if !decision.allowed {
            limited.insert(c.session.clone());
            event.kind = "rate_limited".into();
        } else if attack {
            event.kind = "blocked".into();
            event = event.with_tag("malicious").with_tag(format!("rule:{}", RULES[rng.gen_range(0..RULES.len())]));
        }
        batch.push(event);
        if batch.len() == 200 {
            analyse(stores, std::mem::take(&mut batch), &mut rng).await?;
        }
    }
    if !batch.is_empty() {
        analyse(stores, batch, &mut rng).await?;
    }
    progress.finish_and_clear();
    report(stores, limited.len()).await
}

/// Appends a batch, then lets the engines analyse its blocked requests.
async fn analyse(stores: &Stores, batch: Vec<NewEvent>, rng: &mut StdRng) -> Result<()> {
    let blocked: Vec<NewEvent> = batch.iter().filter(|e| e.kind == "blocked").cloned().collect();
    stores.events.append(AppendBatch::new(batch)).await?;
    for event in blocked {
        for engine in ENGINES {
            let detected = rng.gen_bool(match engine {
                "yara" => 0.9,
                "sigma" => 0.75,
                "clamav" => 0.5,
                _ => 0.65,
            });
            let verdict = if detected { "malicious" } else { "clean" };
            stores
                .documents
                .insert("analyses", json!({"event_id": event.id.to_string(), "engine": engine, "verdict": verdict, "confidence": rng.gen_range(0.5..1.0)}))
                .await?;
            let delta = if detected { 10 } else { -3 };
            stores.reputation.record(ReputationEvent::new(Subject::engine(engine), delta, verdict)).await?;
        }
    }
    Ok(())
}

async fn report(stores: &Stores, rate_limited_sessions: usize) -> Result<String> {
    let mut out = String::new();
    let attacks = EventFilter::all().tag("malicious");
    let _ = writeln!(out, "\nTop attacking IPs");
    for g in stores.events.count_by(attacks.clone(), GroupBy::ClientIp, 5).await? {
        let _ = writeln!(out, "  {:<16} {:>6} blocked", g.key, g.count);
    }
    let _ = writeln!(out, "\nRule effectiveness (blocked requests per rule)");
    for g in stores.events.count_by(attacks, GroupBy::Tag, 10).await? {
        if let Some(rule) = g.key.strip_prefix("rule:") {
            let _ = writeln!(out, "  {:<16} {:>6}", rule, g.count);
        }
    }
    let _ = writeln!(out, "\nRequests by outcome");
    for g in stores.events.count_by(EventFilter::all(), GroupBy::Kind, 10).await? {
        let _ = writeln!(out, "  {:<16} {:>6}", g.key, g.count);
    }
    let _ = writeln!(out, "\nRate-limited sessions ({rate_limited_sessions} hit the limit of {RATE_LIMIT} per 10 s)");
    let _ = writeln!(out, "  {:<10} {:>8}", "session", "refused");
    for g in stores.events.count_by(EventFilter::all().kind("rate_limited"), GroupBy::Session, 5).await? {
        let _ = writeln!(out, "  {:<10} {:>8}", g.key, g.count);
    }
    let malicious_verdicts =
        stores.documents.count("analyses", Filter::parse(&json!({"verdict": "malicious"}))?).await?;
    let all_verdicts = stores.documents.count("analyses", Filter::all()).await?;
    let _ = writeln!(out, "\nAnalyses stored: {all_verdicts} ({malicious_verdicts} malicious verdicts)");
    let _ = writeln!(out, "\nEngine leaderboard (all time)");
    let _ = writeln!(out, "  {:>4}  {:<10} {:>7}", "rank", "engine", "score");
    for r in stores.reputation.leaderboard(SubjectKind::Engine, Period::AllTime, 0, 10).await? {
        let _ = writeln!(out, "  {:>4}  {:<10} {:>7}", r.rank, r.subject.id, r.score);
    }
    let _ = writeln!(out, "\nStore health");
    for s in stores.health().await {
        let pressure = s.pressure().map(|p| format!(" — {p}")).unwrap_or_default();
        let detail = s.detail.map(|d| format!(" ({d})")).unwrap_or_default();
        let _ = writeln!(out, "  {:<11} {:<9} {}{detail}{pressure}", s.store.as_str(), s.backend, s.status);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn demo_report_lists_attackers_rules_and_leaderboard() {
        let stores = Stores::memory(palisade_core::Namespace::new("demo_test").unwrap());
        let report =
            run(&stores, &DemoArgs { requests: 400, sessions: 40, seed: 1, ..DemoArgs::default() }).await.unwrap();
        for heading in ["Top attacking IPs", "Rule effectiveness", "Engine leaderboard", "Store health"] {
            assert!(report.contains(heading), "missing {heading}:\n{report}");
        }
        let total: u64 =
            stores.events.count_by(EventFilter::all(), GroupBy::Kind, 10).await.unwrap().iter().map(|g| g.count).sum();
        assert_eq!(total, 400, "every simulated request is one event");
    }

    #[tokio::test]
    async fn same_seed_gives_same_report() {
        let args = DemoArgs { requests: 300, sessions: 30, seed: 42, ..DemoArgs::default() };
        let a = run(&Stores::memory(palisade_core::Namespace::new("a").unwrap()), &args).await.unwrap();
        let b = run(&Stores::memory(palisade_core::Namespace::new("b").unwrap()), &args).await.unwrap();
        assert_eq!(a, b);
    }
}
