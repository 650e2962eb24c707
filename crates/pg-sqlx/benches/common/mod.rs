//! Helpers shared by the Postgres benchmarks.

use std::time::Duration;

/// Whether cargo runs the target as a benchmark (`cargo bench`); under
/// `cargo test --all-targets` the benches only print how to run them.
pub fn benchmarking(name: &str) -> bool {
    let on = std::env::args().any(|a| a == "--bench");
    if !on {
        println!("{name} benchmark: run it with `cargo bench -p palisade-pg-sqlx --bench {name}`");
    }
    on
}

/// The server: `PALISADE_TEST_POSTGRES_URL`, default the local test database.
pub fn url() -> String {
    std::env::var("PALISADE_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// The median of the measured rounds.
pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}
