//! The runner: one workload through Palisade and through the raw driver, in
//! interleaved rounds, timing every call.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use palisade_core::{Error, ErrorKind, Result};
use serde::Serialize;

/// Which call of a round this is: keys and ids are derived from `seq`.
#[derive(Debug, Clone, Copy)]
pub struct Call {
    /// 0.. over every call of the round, unique within it.
    pub seq: usize,
}

/// One call of a workload, Palisade's or the raw driver's.
pub type Op = Arc<dyn Fn(Call) -> Pin<Box<dyn Future<Output = Result<()>> + Send>> + Send + Sync>;

/// Wraps an async closure as an [`Op`].
pub fn op<F, Fut>(f: F) -> Op
where
    F: Fn(Call) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<()>> + Send + 'static,
{
    Arc::new(move |call| Box::pin(f(call)))
}

/// How a round of a workload is shaped: `tasks` concurrent tasks making
/// `calls_per_task` calls each, every call moving `items_per_call` items
/// (events in a batch, else 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Shape {
    /// Concurrent tasks.
    pub tasks: usize,
    /// Calls each task makes per round.
    pub calls_per_task: usize,
    /// Items one call moves.
    pub items_per_call: usize,
}

impl Shape {
    fn calls(&self) -> usize {
        self.tasks * self.calls_per_task
    }
}

/// What one side (Palisade or raw) achieved.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Stats {
    /// Items per second: the median of the rounds.
    pub per_second: f64,
    /// Median call latency over every call of every round, in milliseconds.
    pub p50_ms: f64,
    /// 99th-percentile call latency, in milliseconds.
    pub p99_ms: f64,
}

/// Every call's latency and the round's wall time.
struct Round {
    elapsed: Duration,
    latencies: Vec<Duration>,
}

/// Runs one round of `op`: `shape.tasks` tasks, each timing its calls.
async fn round(op: &Op, shape: Shape) -> Result<Round> {
    let started = Instant::now();
    let tasks: Vec<_> = (0..shape.tasks)
        .map(|task| {
            let op = Arc::clone(op);
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(shape.calls_per_task);
                for i in 0..shape.calls_per_task {
                    let at = Instant::now();
                    op(Call { seq: task * shape.calls_per_task + i }).await?;
                    latencies.push(at.elapsed());
                }
                Ok::<_, Error>(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(shape.calls());
    for task in futures::future::join_all(tasks).await {
        let task = task.map_err(|e| Error::new(ErrorKind::Unexpected, format!("bench task failed: {e}")))?;
        latencies.extend(task?);
    }
    Ok(Round { elapsed: started.elapsed(), latencies })
}

/// Runs `op` once, untimed (fills a store a read workload needs).
pub async fn prime(op: &Op, shape: Shape) -> Result<()> {
    round(op, shape).await.map(|_| ())
}

/// Measures `palisade` and, when given, `raw` over `rounds` interleaved
/// rounds: the two alternate, and which goes first alternates too, so drift
/// on a shared machine (autovacuum, caches, a neighbour's build) hits both.
pub async fn measure(shape: Shape, rounds: usize, palisade: &Op, raw: Option<&Op>) -> Result<(Stats, Option<Stats>)> {
    // One untimed call per task on each side first (pools filled, plans and
    // pages cached), except for batches, whose first call is the measure.
    if shape.items_per_call == 1 {
        let warm_up = Shape { calls_per_task: 1, ..shape };
        prime(palisade, warm_up).await?;
        if let Some(raw) = raw {
            prime(raw, warm_up).await?;
        }
    }
    let mut ours = Samples::default();
    let mut theirs = Samples::default();
    for r in 0..rounds.max(1) {
        let raw_first = r % 2 == 1;
        if let (true, Some(raw)) = (raw_first, raw) {
            theirs.add(round(raw, shape).await?, shape);
        }
        ours.add(round(palisade, shape).await?, shape);
        if let (false, Some(raw)) = (raw_first, raw) {
            theirs.add(round(raw, shape).await?, shape);
        }
    }
    Ok((ours.stats(), raw.map(|_| theirs.stats())))
}

#[derive(Default)]
struct Samples {
    rates: Vec<f64>,
    latencies: Vec<Duration>,
}

impl Samples {
    fn add(&mut self, round: Round, shape: Shape) {
        let items = (shape.calls() * shape.items_per_call) as f64;
        self.rates.push(items / round.elapsed.as_secs_f64().max(1e-9));
        self.latencies.extend(round.latencies);
    }

    fn stats(mut self) -> Stats {
        self.rates.sort_by(f64::total_cmp);
        let per_second = self.rates.get(self.rates.len() / 2).copied().unwrap_or_default();
        let ms = |p| palisade_conformance::bench::percentile(self.latencies.clone(), p).as_secs_f64() * 1e3;
        Stats { per_second, p50_ms: ms(50), p99_ms: ms(99) }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn every_call_of_every_round_runs_on_both_sides() {
        let (ours, theirs) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let counter = |n: &Arc<AtomicUsize>| {
            let n = Arc::clone(n);
            op(move |_| {
                let n = Arc::clone(&n);
                async move {
                    n.fetch_add(1, Ordering::Relaxed);
                    Ok(())
                }
            })
        };
        let shape = Shape { tasks: 3, calls_per_task: 5, items_per_call: 10 };
        let (a, b) = measure(shape, 4, &counter(&ours), Some(&counter(&theirs))).await.unwrap();
        assert_eq!((ours.load(Ordering::Relaxed), theirs.load(Ordering::Relaxed)), (60, 60), "no warm-up for batches");
        assert!(a.per_second > 0.0 && b.is_some_and(|b| b.per_second > 0.0));
        assert!(a.p50_ms <= a.p99_ms);
    }

    #[tokio::test]
    async fn a_failing_call_fails_the_measure() {
        let failing = op(|_| async { Err(Error::invalid("no")) });
        let shape = Shape { tasks: 2, calls_per_task: 2, items_per_call: 1 };
        assert!(measure(shape, 1, &failing, None).await.is_err());
    }
}
