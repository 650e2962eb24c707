//! Leaderboard reads next to the raw indexed query, in the same run (medians
//! of interleaved rounds; only ratios mean anything on a shared machine):
//! the top 10 (`leaderboard(AllTime, 0, 10)` vs `ORDER BY score DESC,
//! subject_id LIMIT 10` on the same index), a page deep in the board, `rank`
//! and `around`, on boards of 10,000 and 1,000,000 subjects — a top page costs
//! the same on both (pg-common's `reputation` statements).
//!
//! `cargo bench -p palisade-pg-sqlx --bench leaderboard` (uses
//! `PALISADE_TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/test`).

use std::time::{Duration, Instant};

use palisade_conformance::bench::{benchmarking, median, postgres_url};
use palisade_core::reputation::{Period, Subject, SubjectKind};
use palisade_core::{Namespace, ReputationRepo};
use palisade_pg_sqlx::{PgBackend, PgConfig};

const CALLS: usize = 200;

async fn timed<F, Fut>(mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut each = Vec::with_capacity(CALLS);
    for _ in 0..CALLS {
        let t = Instant::now();
        f().await;
        each.push(t.elapsed());
    }
    median(each)
}

#[tokio::main]
async fn main() {
    if !benchmarking("palisade-pg-sqlx", "leaderboard") {
        return;
    }
    println!("leaderboard reads, median of {CALLS} calls (palisade ÷ raw indexed query):");
    for subjects in [10_000i64, 1_000_000] {
        let backend =
            PgBackend::connect(&PgConfig::new(postgres_url(), Namespace::random("bench").unwrap())).await.unwrap();
        let pool = backend.pool().clone();
        // Scores written directly (the board is what is measured, not recording).
        sqlx::query(
            "INSERT INTO reputation_scores (period, subject_kind, subject_id, score) \
             SELECT 'all', 'user', 's' || n, (n * 7919) % 100000 FROM generate_series(1, $1) n",
        )
        .bind(subjects)
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query("ANALYZE reputation_scores").execute(&pool).await.unwrap();
        let repo = backend.reputation();
        let raw = "SELECT subject_id, score FROM reputation_scores WHERE period = 'all' AND subject_kind = 'user' \
                   ORDER BY score DESC, subject_id COLLATE \"C\" OFFSET $1 LIMIT 10";
        let deep = (subjects / 2) as usize;
        let probe = Subject { kind: SubjectKind::User, id: format!("s{}", subjects / 3) };
        let rows = [("top 10", 0usize), ("page at the middle", deep)];
        for (what, offset) in rows {
            let ours = timed(|| async {
                assert_eq!(repo.leaderboard(SubjectKind::User, Period::AllTime, offset, 10).await.unwrap().len(), 10);
            })
            .await;
            let theirs = timed(|| async {
                let n = sqlx::query(raw).bind(offset as i64).fetch_all(&pool).await.unwrap().len();
                assert_eq!(n, 10);
            })
            .await;
            println!(
                "  {subjects:>7} subjects  {what:<20} palisade {:>8.3} ms  raw {:>8.3} ms  {:.2}× the raw time",
                ours.as_secs_f64() * 1e3,
                theirs.as_secs_f64() * 1e3,
                ours.as_secs_f64() / theirs.as_secs_f64()
            );
        }
        let rank = timed(|| async {
            assert!(repo.rank(&probe, Period::AllTime).await.unwrap().is_some());
        })
        .await;
        let around = timed(|| async {
            assert!(!repo.around(&probe, Period::AllTime, 5).await.unwrap().is_empty());
        })
        .await;
        println!(
            "  {subjects:>7} subjects  rank {:.3} ms, around(5) {:.3} ms",
            rank.as_secs_f64() * 1e3,
            around.as_secs_f64() * 1e3
        );
        backend.drop_namespace().await.unwrap();
    }
}
