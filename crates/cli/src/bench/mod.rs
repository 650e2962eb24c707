//! `palisade bench`: a standard workload on the configured stores and, for
//! each measure, the raw driver doing the same work in the same run
//! (interleaved rounds, medians), so an operator sees what Palisade costs on
//! their own servers. Runs in a throwaway namespace, dropped afterwards.
//!
//! - `runner`: timing one workload on both sides;
//! - `workload`: the measures, their data, and the Palisade side;
//! - `raw`: the raw side per driver (sqlx, redis-rs, fred, moka);
//! - `report`: table, JSON and SVG.

use std::path::PathBuf;

use palisade::config::Fallback;
use palisade::harness::ConfigHarness;
use palisade::registry::resolve;
use palisade::{Config, StoreKind, Stores};
use palisade_conformance::Harness as _;
use palisade_core::{Error, ErrorKind, Namespace, Result};

mod raw;
mod report;
mod runner;
mod workload;

use raw::RawSides;
pub use report::{Measure, Report, Skipped};
use runner::{measure, prime};
use workload::{palisade_op, Plan, Workload};

/// Options of `palisade bench`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct BenchArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also write an SVG bar chart of the ratios to this file.
    #[arg(long, value_name = "PATH")]
    pub svg: Option<PathBuf>,
    /// Small sizes for a first look (200 ops, 4 tasks, 2 rounds, batch 1,000); explicit sizes win.
    #[arg(long)]
    pub quick: bool,
    /// Calls per side and round of a one-item measure (reads: fewer) [default: 2000].
    #[arg(long)]
    pub ops: Option<usize>,
    /// Concurrent tasks [default: 8].
    #[arg(long)]
    pub tasks: Option<usize>,
    /// Interleaved rounds per measure [default: 3].
    #[arg(long)]
    pub rounds: Option<usize>,
    /// Events in the large batch append [default: 10000].
    #[arg(long)]
    pub batch: Option<usize>,
    /// Only the measures whose name starts with this (repeatable), e.g. `sessions` or `events.append`.
    #[arg(long, value_name = "PREFIX")]
    pub only: Vec<String>,
}

impl BenchArgs {
    /// The sizes to use: the options, else the `--quick` or full defaults.
    pub fn plan(&self) -> Result<Plan> {
        let pick =
            |given: Option<usize>, quick: usize, full: usize| given.unwrap_or(if self.quick { quick } else { full });
        let plan = Plan {
            ops: pick(self.ops, 200, 2000),
            tasks: pick(self.tasks, 4, 8),
            rounds: pick(self.rounds, 2, 3),
            batch: pick(self.batch, 1000, 10_000),
        };
        if plan.ops == 0 || plan.rounds == 0 || !(1..=1000).contains(&plan.tasks) {
            return Err(Error::invalid("--ops and --rounds must be at least 1, --tasks 1..=1000"));
        }
        if !(1..=palisade_core::events::MAX_BATCH).contains(&plan.batch) {
            return Err(Error::invalid(format!("--batch must be 1..={}", palisade_core::events::MAX_BATCH)));
        }
        Ok(plan)
    }

    /// The selected measures, in running order.
    fn workloads(&self) -> Result<Vec<Workload>> {
        let chosen: Vec<Workload> = Workload::ALL
            .into_iter()
            .filter(|w| self.only.is_empty() || self.only.iter().any(|p| w.name().starts_with(p.as_str())))
            .collect();
        if chosen.is_empty() {
            let names: Vec<&str> = Workload::ALL.iter().map(|w| w.name()).collect();
            return Err(Error::invalid(format!("--only matches no measure; measures: {}", names.join(", "))));
        }
        Ok(chosen)
    }
}

/// Runs the selected measures on the stores `config` names, in a fresh
/// `bench_…` namespace (raw Postgres tables in `bench_…_raw`), and drops both
/// afterwards, however the run ends. Fallbacks are off: a server that is
/// down fails the run instead of benchmarking memory.
pub async fn run(config: &Config, args: &BenchArgs) -> Result<Report> {
    let plan = args.plan()?;
    let workloads = args.workloads()?;
    for kind in StoreKind::ALL {
        resolve(&config.store(kind).url, kind).map_err(|e| e.with_op("bench"))?;
    }
    let mut config = config.clone();
    // The scratch namespaces are the bench's own: it creates their schema
    // whatever `migrate` says (so it needs the owner's credentials).
    config.migrate = true;
    for store in [&mut config.events, &mut config.sessions, &mut config.documents, &mut config.reputation] {
        store.fallback = Fallback::None;
    }
    let ns = Namespace::random("bench")?;
    let scratch = Namespace::new(format!("{ns}_raw"))?;
    let outcome = run_in(&config, &plan, &workloads, &ns, &scratch).await;
    let harness = ConfigHarness::new(config.clone());
    for n in [&ns, &scratch] {
        if let Err(e) = harness.drop_namespace(n).await {
            eprintln!("palisade bench: could not drop namespace {n}: {e}");
        }
    }
    outcome
}

async fn run_in(
    config: &Config,
    plan: &Plan,
    workloads: &[Workload],
    ns: &Namespace,
    scratch: &Namespace,
) -> Result<Report> {
    let stores = Stores::connect_in(config, ns).await?;
    let raw = RawSides::connect(config, ns, scratch).await?;
    let outcome = measure_all(config, &stores, &raw, plan, workloads).await;
    raw.close().await;
    outcome
}

async fn measure_all(
    config: &Config,
    stores: &Stores,
    raw: &RawSides,
    plan: &Plan,
    workloads: &[Workload],
) -> Result<Report> {
    if workloads.iter().any(|w| w.store() == StoreKind::Documents) {
        workload::prepare(stores).await?;
    }
    let progress = indicatif::ProgressBar::new(workloads.len() as u64).with_style(
        indicatif::ProgressStyle::with_template("{spinner} bench [{bar:30}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let mut measures = Vec::with_capacity(workloads.len());
    let mut skipped = Vec::new();
    let mut ran = Vec::new();
    for (i, &w) in workloads.iter().enumerate() {
        progress.set_position(i as u64);
        progress.set_message(w.name());
        let backend = resolve(&config.store(w.store()).url, w.store()).map_or("unknown", |(info, _)| info.id);
        let driver = raw.of(w.store());
        if let Some(writer) = w.fed_by().filter(|writer| !ran.contains(writer)) {
            // The read needs data the skipped write would have left.
            prime(&palisade_op(stores, writer, plan), writer.shape(plan)).await?;
            if let Some(raw_writer) = driver.and_then(|d| d.op(writer, plan)) {
                prime(&raw_writer, writer.shape(plan)).await?;
            }
            ran.push(writer);
        }
        let raw_op = driver.and_then(|d| d.op(w, plan));
        let shape = w.shape(plan);
        let (ours, theirs) = match measure(shape, plan.rounds, &palisade_op(stores, w, plan), raw_op.as_ref()).await {
            Ok(stats) => stats,
            Err(e) if e.kind() == ErrorKind::Unsupported => {
                skipped.push(Skipped { name: w.name(), backend, reason: e.to_string() });
                continue;
            }
            Err(e) => return Err(Error::new(e.kind(), format!("{}: {e}", w.name())).with_op("bench").with_source(e)),
        };
        measures.push(Measure {
            name: w.name(),
            store: w.store(),
            backend,
            unit: w.unit(),
            shape,
            palisade: ours,
            raw_driver: theirs.and(driver.map(raw::Raw::driver)),
            raw: theirs,
        });
        ran.push(w);
    }
    progress.finish_and_clear();
    Ok(Report { plan: *plan, measures, skipped })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> BenchArgs {
        BenchArgs { ops: Some(16), tasks: Some(2), rounds: Some(2), batch: Some(50), ..BenchArgs::default() }
    }

    #[tokio::test]
    async fn memory_run_reports_every_measure_with_positive_throughput() {
        let report = run(&Config::default(), &tiny()).await.unwrap();
        let names: Vec<&str> = report.measures.iter().map(|m| m.name).collect();
        assert_eq!(names, Workload::ALL.iter().map(|w| w.name()).collect::<Vec<_>>());
        for m in &report.measures {
            assert_eq!(m.backend, "memory");
            assert!(m.palisade.per_second > 0.0, "{}: {:?}", m.name, m.palisade);
            // moka is the raw side of memory sessions only; nothing else gets a ratio.
            assert_eq!(m.ratio().is_some(), m.store == StoreKind::Sessions, "{}", m.name);
            assert!(m.raw.is_none_or(|r| r.per_second > 0.0), "{}", m.name);
        }
        let table = report.render_table();
        assert!(Workload::ALL.iter().all(|w| table.contains(w.name())), "{table}");
    }

    #[tokio::test]
    async fn json_output_parses_with_a_ratio_or_null_per_measure() {
        let report = run(&Config::default(), &tiny()).await.unwrap();
        let v: serde_json::Value = serde_json::from_str(&report.render_json().unwrap()).unwrap();
        let measures = v["measures"].as_array().unwrap();
        assert_eq!(measures.len(), Workload::ALL.len());
        for m in measures {
            assert!(m["palisade"]["per_second"].as_f64().is_some_and(|x| x > 0.0), "{m}");
            assert!(m["ratio"].is_null() || m["ratio"].as_f64().is_some(), "{m}");
        }
        assert_eq!(v["plan"]["batch"], 50);
    }

    #[tokio::test]
    async fn only_selects_by_prefix_and_feeds_the_reads_it_keeps() {
        let args = BenchArgs { only: vec!["documents.find".into(), "sessions.get".into()], ..tiny() };
        let report = run(&Config::default(), &args).await.unwrap();
        let names: Vec<&str> = report.measures.iter().map(|m| m.name).collect();
        assert_eq!(names, ["sessions.get", "documents.find_indexed"]);
    }

    #[test]
    fn bad_sizes_and_unknown_prefixes_are_refused() {
        assert!(BenchArgs { tasks: Some(0), ..tiny() }.plan().is_err());
        assert!(BenchArgs { batch: Some(0), ..tiny() }.plan().is_err());
        assert!(BenchArgs { only: vec!["nope".into()], ..tiny() }.workloads().is_err());
        assert_eq!(BenchArgs { quick: true, ..BenchArgs::default() }.plan().unwrap().ops, 200);
    }
}
