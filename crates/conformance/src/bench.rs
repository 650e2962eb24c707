//! Helpers for the benchmarks that compare a Palisade backend with the raw
//! driver (or a peer library) in the same run.

use std::time::Duration;

/// Whether cargo runs the target as a benchmark (`cargo bench`); under
/// `cargo test --all-targets` a bench only prints how to run it.
pub fn benchmarking(package: &str, name: &str) -> bool {
    let on = std::env::args().any(|a| a == "--bench");
    if !on {
        println!("{name} benchmark: run it with `cargo bench -p {package} --bench {name}`");
    }
    on
}

/// The Postgres server: `PALISADE_TEST_POSTGRES_URL`, default the local test database.
pub fn postgres_url() -> String {
    std::env::var("PALISADE_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// The median of the measured rounds (zero for none).
pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

/// The `p`-th percentile (0..=100) of `v` (zero for none).
pub fn percentile(mut v: Vec<Duration>, p: usize) -> Duration {
    v.sort();
    let i = (v.len() * p.min(100) / 100).min(v.len().saturating_sub(1));
    v.get(i).copied().unwrap_or_default()
}
