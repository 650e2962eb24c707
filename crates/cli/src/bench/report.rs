//! What a bench run found, as a table, JSON or an SVG bar chart of the ratios.

use std::fmt::Write as _;

use palisade::StoreKind;
use palisade_core::Result;
use serde::Serialize;

use super::runner::{Shape, Stats};
use super::workload::Plan;

/// One measure: Palisade's figures and, where this backend has a raw
/// comparison, the raw driver's doing the same work in the same run.
#[derive(Debug, Clone, Serialize)]
pub struct Measure {
    /// `<store>.<what>`, e.g. `events.append_one`.
    pub name: &'static str,
    /// The store measured.
    pub store: StoreKind,
    /// Its backend id.
    pub backend: &'static str,
    /// What `per_second` counts: `events` or `calls`.
    pub unit: &'static str,
    /// Tasks, calls per task and items per call of each round.
    pub shape: Shape,
    /// Through Palisade.
    pub palisade: Stats,
    /// The raw driver (`sqlx`, `redis-rs`, `fred`, `moka`), if any.
    pub raw_driver: Option<&'static str>,
    /// Through the raw driver, if any.
    pub raw: Option<Stats>,
}

impl Measure {
    /// Palisade's time per item ÷ the raw driver's (raw throughput ÷
    /// Palisade's): 1.5 = Palisade takes 1.5× the raw time. `None` without a
    /// raw comparison — never estimated.
    pub fn ratio(&self) -> Option<f64> {
        let raw = self.raw?;
        (self.palisade.per_second > 0.0).then(|| raw.per_second / self.palisade.per_second)
    }
}

/// A measure the store could not run: it lacks the capability (e.g. no
/// analytics). Listed, never silently left out.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    /// The measure.
    pub name: &'static str,
    /// The store's backend id.
    pub backend: &'static str,
    /// What the store answered.
    pub reason: String,
}

/// Every measure of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The sizes used.
    pub plan: Plan,
    /// In running order.
    pub measures: Vec<Measure>,
    /// Measures the stores do not support.
    pub skipped: Vec<Skipped>,
}

#[derive(Serialize)]
struct JsonMeasure<'a> {
    #[serde(flatten)]
    measure: &'a Measure,
    /// Palisade time ÷ raw time; `null` without a raw comparison.
    ratio: Option<f64>,
}

#[derive(Serialize)]
struct JsonReport<'a> {
    plan: &'a Plan,
    measures: Vec<JsonMeasure<'a>>,
    skipped: &'a [Skipped],
}

fn ratio_text(ratio: Option<f64>) -> String {
    ratio.map_or_else(|| "—".to_owned(), |r| format!("{r:.2}×"))
}

impl Report {
    /// A text table: per measure, throughput and p50/p99 of both sides and
    /// the ratio (Palisade time ÷ raw time; `—` where there is no raw side).
    pub fn render_table(&self) -> String {
        let p = &self.plan;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} tasks, {} ops per round, {} interleaved rounds (medians), large batch {} events",
            p.tasks, p.ops, p.rounds, p.batch
        );
        let _ = writeln!(
            out,
            "{:<26} {:<9} {:>11} {:>8} {:>8}   {:<8} {:>11} {:>8} {:>8} {:>7}",
            "measure", "backend", "palisade/s", "p50 ms", "p99 ms", "raw", "raw/s", "p50 ms", "p99 ms", "ratio"
        );
        for m in &self.measures {
            let ours = &m.palisade;
            let _ = write!(
                out,
                "{:<26} {:<9} {:>11.0} {:>8.3} {:>8.3}   ",
                m.name, m.backend, ours.per_second, ours.p50_ms, ours.p99_ms
            );
            match m.raw {
                Some(raw) => {
                    let driver = m.raw_driver.unwrap_or("raw");
                    let _ = write!(out, "{driver:<8} {:>11.0} {:>8.3} {:>8.3}", raw.per_second, raw.p50_ms, raw.p99_ms);
                }
                None => {
                    let _ = write!(out, "{:<8} {:>11} {:>8} {:>8}", "—", "—", "—", "—");
                }
            }
            let _ = writeln!(out, " {:>7}", ratio_text(m.ratio()));
        }
        for s in &self.skipped {
            let _ = writeln!(out, "{:<26} {:<9} n/a: {}", s.name, s.backend, s.reason);
        }
        let _ = writeln!(out, "ratio = Palisade time ÷ raw time per item (1.00× = no overhead); /s counts events for appends, calls otherwise");
        out
    }

    /// The report as pretty JSON, each measure with its `ratio` (`null`
    /// without a raw comparison).
    pub fn render_json(&self) -> Result<String> {
        let json = JsonReport {
            plan: &self.plan,
            measures: self.measures.iter().map(|m| JsonMeasure { measure: m, ratio: m.ratio() }).collect(),
            skipped: &self.skipped,
        };
        Ok(serde_json::to_string_pretty(&json)? + "\n")
    }

    /// A horizontal bar chart of the ratios, with a line at 1×; a measure
    /// without a raw comparison gets `—` and no bar.
    pub fn render_svg(&self) -> String {
        const ROW: usize = 24;
        const LABEL: usize = 250;
        const PLOT: f64 = 420.0;
        let top = 40;
        let height = top + ROW * self.measures.len() + 30;
        let width = LABEL + PLOT as usize + 80;
        let max = self.measures.iter().filter_map(Measure::ratio).fold(1.0_f64, f64::max) * 1.1;
        let x = |r: f64| LABEL as f64 + r / max * PLOT;
        let mut svg = String::new();
        let _ = writeln!(
            svg,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
        let _ = writeln!(
            svg,
            r#"<text x="10" y="20" font-size="14">palisade bench: Palisade time ÷ raw driver time (lower is better)</text>"#
        );
        for (i, m) in self.measures.iter().enumerate() {
            let y = top + i * ROW;
            let label = format!("{} ({})", m.name, m.backend);
            let _ = writeln!(svg, r#"<text x="10" y="{}">{}</text>"#, y + 16, escape(&label));
            match m.ratio() {
                Some(r) => {
                    let fill = if r <= 1.5 { "#4a90d9" } else { "#e08a3c" };
                    let _ = writeln!(
                        svg,
                        r#"<rect x="{LABEL}" y="{}" width="{:.1}" height="{}" fill="{fill}"/>"#,
                        y + 4,
                        (x(r) - LABEL as f64).max(1.0),
                        ROW - 8
                    );
                    let _ = writeln!(svg, r#"<text x="{:.1}" y="{}">{r:.2}×</text>"#, x(r) + 4.0, y + 16);
                }
                None => {
                    let _ = writeln!(
                        svg,
                        r##"<text x="{}" y="{}" fill="#888">— (no raw comparison)</text>"##,
                        LABEL + 4,
                        y + 16
                    );
                }
            }
        }
        let (one, bottom) = (x(1.0), top + ROW * self.measures.len());
        let _ = writeln!(
            svg,
            r#"<line x1="{one:.1}" y1="{}" x2="{one:.1}" y2="{bottom}" stroke="black" stroke-dasharray="4 3"/>"#,
            top - 4
        );
        let _ = writeln!(svg, r#"<text x="{:.1}" y="{}" text-anchor="middle">1×</text>"#, one, bottom + 16);
        svg.push_str("</svg>\n");
        svg
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(per_second: f64) -> Stats {
        Stats { per_second, p50_ms: 1.0, p99_ms: 2.0 }
    }

    fn report() -> Report {
        let shape = Shape { tasks: 1, calls_per_task: 1, items_per_call: 1 };
        let m = |name, raw: Option<f64>| Measure {
            name,
            store: StoreKind::Sessions,
            backend: "memory",
            unit: "calls",
            shape,
            palisade: stats(100.0),
            raw_driver: raw.map(|_| "moka"),
            raw: raw.map(stats),
        };
        Report {
            plan: Plan { ops: 1, tasks: 1, rounds: 1, batch: 1 },
            measures: vec![m("sessions.get", Some(250.0)), m("events.query_session", None)],
            skipped: Vec::new(),
        }
    }

    #[test]
    fn ratio_is_palisade_time_over_raw_time_and_absent_without_raw() {
        let r = report();
        assert_eq!(r.measures[0].ratio(), Some(2.5));
        assert_eq!(r.measures[1].ratio(), None);
        let table = r.render_table();
        assert!(table.contains("2.50×"), "{table}");
        assert!(table.lines().any(|l| l.starts_with("events.query_session") && l.trim_end().ends_with('—')), "{table}");
    }

    #[test]
    fn json_has_a_null_ratio_without_raw() {
        let v: serde_json::Value = serde_json::from_str(&report().render_json().unwrap()).unwrap();
        assert_eq!(v["measures"][0]["ratio"], 2.5);
        assert!(v["measures"][1]["ratio"].is_null());
        assert!(v["measures"][1]["raw"].is_null());
    }

    #[test]
    fn svg_draws_a_bar_per_ratio_and_a_dash_without() {
        let svg = report().render_svg();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<rect x=").count(), 1);
        assert!(svg.contains("no raw comparison"));
    }
}
