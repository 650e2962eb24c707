//! `palisade check`: the conformance suite against the configured stores, in
//! throwaway namespaces, so an operator can verify a live deployment.

use std::fmt::Write as _;
use std::time::Instant;

use palisade::config::{Config, StoreKind};
use palisade::harness::ConfigHarness;
use palisade::registry::resolve;
use palisade::Result;
use palisade_conformance::{self as conformance, cases, execute, Case, Opener, Outcome};
use serde::Serialize;

/// Options of `palisade check`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct CheckArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Only run cases whose `trait::case` name contains this text.
    #[arg(long)]
    pub filter: Option<String>,
}

/// One case's result.
#[derive(Debug, Clone, Serialize)]
pub struct CaseResult {
    /// Which store.
    pub store: StoreKind,
    /// Backend id.
    pub backend: &'static str,
    /// Case name.
    pub case: &'static str,
    /// `pass`, `n/a` (the store lacks the capability the case is about) or `fail`.
    pub outcome: &'static str,
    /// The missing capability, for n/a.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capability: Option<&'static str>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Milliseconds taken.
    pub millis: u128,
}

/// All results of a check run.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    /// Per case.
    pub cases: Vec<CaseResult>,
}

impl CheckReport {
    /// How many cases ended with `outcome`.
    pub fn count(&self, outcome: &str) -> usize {
        self.cases.iter().filter(|c| c.outcome == outcome).count()
    }

    /// How many cases failed.
    pub fn failed(&self) -> usize {
        self.count("fail")
    }

    /// A table (or JSON): per store the passed / n/a / failed counts, then
    /// each n/a case with its capability and each failure.
    pub fn render(&self, json: bool) -> Result<String> {
        if json {
            return Ok(serde_json::to_string_pretty(self)? + "\n");
        }
        let mut out = String::new();
        let _ = writeln!(out, "{:<11} {:<10} {:>6} {:>6} {:>6}", "store", "backend", "passed", "n/a", "failed");
        for kind in StoreKind::ALL {
            let of: Vec<&CaseResult> = self.cases.iter().filter(|c| c.store == kind).collect();
            let Some(first) = of.first() else { continue };
            let n = |o: &str| of.iter().filter(|c| c.outcome == o).count();
            let row = (kind.as_str(), first.backend, n("pass"), n("n/a"), n("fail"));
            let _ = writeln!(out, "{:<11} {:<10} {:>6} {:>6} {:>6}", row.0, row.1, row.2, row.3, row.4);
        }
        for c in self.cases.iter().filter(|c| c.outcome == "n/a") {
            let _ = writeln!(out, "n/a  {}::{}: no {} capability", c.store, c.case, c.capability.unwrap_or("?"));
        }
        for c in self.cases.iter().filter(|c| c.outcome == "fail") {
            let _ = writeln!(out, "FAIL {}::{}: {}", c.store, c.case, c.error.as_deref().unwrap_or(""));
        }
        let (pass, na, fail) = (self.count("pass"), self.count("n/a"), self.failed());
        let _ = writeln!(out, "{pass} passed, {fail} failed ({na} n/a)");
        Ok(out)
    }
}

async fn run_cases<S>(
    harness: &ConfigHarness,
    kind: StoreKind,
    trait_id: &str,
    open: Opener<S>,
    list: Vec<Case<S>>,
    filter: Option<&str>,
    out: &mut Vec<CaseResult>,
) where
    S: ?Sized + Send + Sync + 'static,
{
    let backend = resolve(&harness.config().store(kind).url, kind).map_or("unknown", |(info, _)| info.id);
    for case in list {
        if filter.is_some_and(|f| !format!("{trait_id}::{}", case.name).contains(f)) {
            continue;
        }
        let started = Instant::now();
        let (outcome, capability, error) = match execute(harness, open, case.body).await {
            Ok(Outcome::Passed) => ("pass", None, None),
            Ok(Outcome::NotApplicable(capability)) => ("n/a", Some(capability), None),
            Err(failure) => ("fail", None, Some(failure.message())),
        };
        let millis = started.elapsed().as_millis();
        out.push(CaseResult { store: kind, backend, case: case.name, outcome, capability, error, millis });
    }
}

/// Runs every case against the stores `config` names. A store whose backend
/// does not offer its trait (e.g. Redis documents) is a configuration error.
pub async fn run(config: &Config, args: &CheckArgs) -> Result<CheckReport> {
    // The throwaway namespaces are the check's own: it creates their schema
    // whatever `migrate` says (so it needs the owner's credentials).
    let harness = ConfigHarness::new(Config { migrate: true, ..config.clone() });
    for kind in StoreKind::ALL {
        resolve(&config.store(kind).url, kind).map_err(|e| e.with_op("check"))?;
    }
    // Failed assertions are reported in the table, not as panic noise; the
    // guard restores the previous hook however this function ends.
    type Hook = Box<dyn Fn(&std::panic::PanicHookInfo<'_>) + Sync + Send + 'static>;
    struct QuietPanics(Option<Hook>);
    impl Drop for QuietPanics {
        fn drop(&mut self) {
            if let Some(hook) = self.0.take() {
                std::panic::set_hook(hook);
            }
        }
    }
    let _quiet = QuietPanics(Some(std::panic::take_hook()));
    std::panic::set_hook(Box::new(|_| {}));
    let filter = args.filter.as_deref();
    let mut out = Vec::new();
    run_cases(
        &harness,
        StoreKind::Events,
        "event_store",
        conformance::open_event_store,
        cases::event_store(),
        filter,
        &mut out,
    )
    .await;
    run_cases(
        &harness,
        StoreKind::Events,
        "consumers",
        conformance::open_shared_event_store,
        cases::consumers(),
        filter,
        &mut out,
    )
    .await;
    run_cases(
        &harness,
        StoreKind::Sessions,
        "session_cache",
        conformance::open_session_cache,
        cases::session_cache(),
        filter,
        &mut out,
    )
    .await;
    run_cases(
        &harness,
        StoreKind::Sessions,
        "tower",
        conformance::open_shared_session_cache,
        cases::tower(),
        filter,
        &mut out,
    )
    .await;
    run_cases(
        &harness,
        StoreKind::Documents,
        "document_store",
        conformance::open_document_store,
        cases::document_store(),
        filter,
        &mut out,
    )
    .await;
    run_cases(
        &harness,
        StoreKind::Reputation,
        "reputation_repo",
        conformance::open_reputation_repo,
        cases::reputation_repo(),
        filter,
        &mut out,
    )
    .await;
    Ok(CheckReport { cases: out })
}
