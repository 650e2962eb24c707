//! Session GET / SET-with-expiry throughput, 50 concurrent tasks, for each
//! client: through `RedisSessionCache` and through the raw client sending the
//! same commands (`SET k v EX 60`, `GET k`), in the same run, with ratios.
//!
//! `cargo bench -p palisade-redis --features redis-rs,fred --bench sessions`
//! (server: `PALISADE_BENCH_REDIS_URL`, default `redis://127.0.0.1:6379`).
//! Run without `--bench` (as `cargo test --all-targets` does) it only prints
//! this hint.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::TimeDelta;
use futures::future::join_all;
use palisade_core::sessions::SetMode;
use palisade_core::{Namespace, SessionCache};
use palisade_redis::{ClientKind, RedisBackend, RedisConfig};
use serde_json::json;

const TASKS: usize = 50;
const OPS_PER_TASK: usize = 400;

fn value() -> serde_json::Value {
    json!({"user": "u-1", "roles": ["admin", "analyst"], "mfa": true, "ip": "203.0.113.7"})
}

/// Runs `TASKS` tasks of `OPS_PER_TASK` calls of `op(task, i)`; returns ops/s.
async fn measure<F, Fut>(op: F) -> f64
where
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let started = Instant::now();
    let tasks = (0..TASKS).map(|t| {
        let op = Arc::clone(&op);
        tokio::spawn(async move {
            for i in 0..OPS_PER_TASK {
                op(t, i).await;
            }
        })
    });
    for r in join_all(tasks).await {
        r.expect("bench task panicked");
    }
    (TASKS * OPS_PER_TASK) as f64 / started.elapsed().as_secs_f64()
}

fn bench_key(t: usize, i: usize) -> String {
    format!("k{t}:{}", i % 64)
}

struct Row {
    client: &'static str,
    op: &'static str,
    store: f64,
    raw: f64,
}

async fn store_ops(cache: Arc<dyn SessionCache>) -> (f64, f64) {
    let c = Arc::clone(&cache);
    let set = measure(move |t, i| {
        let c = Arc::clone(&c);
        async move {
            let ok = c.set(&bench_key(t, i), value(), Some(TimeDelta::seconds(60).into()), SetMode::Always).await;
            assert!(ok.expect("store set"));
        }
    })
    .await;
    let c = Arc::clone(&cache);
    let get = measure(move |t, i| {
        let c = Arc::clone(&c);
        async move {
            c.get(&bench_key(t, i)).await.expect("store get");
        }
    })
    .await;
    (set, get)
}

async fn redis_rs_raw(url: &str) -> (f64, f64) {
    use redis::aio::{ConnectionManager, ConnectionManagerConfig};
    let client = redis::Client::open(url).expect("redis-rs client");
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(5)))
        .set_response_timeout(Some(Duration::from_secs(10)));
    let conn = ConnectionManager::new_with_config(client, config).await.expect("redis-rs connect");
    let payload = value().to_string();
    let (c, p) = (conn.clone(), payload.clone());
    let set = measure(move |t, i| {
        let (mut c, p) = (c.clone(), p.clone());
        async move {
            let key = format!("raw:{}", bench_key(t, i));
            let _: () = redis::cmd("SET").arg(key).arg(p).arg("EX").arg(60).query_async(&mut c).await.expect("SET");
        }
    })
    .await;
    let get = measure(move |t, i| {
        let mut c = conn.clone();
        async move {
            let key = format!("raw:{}", bench_key(t, i));
            let _: Option<Vec<u8>> = redis::cmd("GET").arg(key).query_async(&mut c).await.expect("GET");
        }
    })
    .await;
    (set, get)
}

async fn fred_raw(url: &str, pool_size: usize) -> (f64, f64) {
    use fred::prelude::{Builder, ClientLike, Config, Value};
    use fred::types::{ClusterHash, CustomCommand};
    let config = Config::from_url(url).expect("fred config");
    let pool = Builder::from_config(config).build_pool(pool_size).expect("fred pool");
    pool.init().await.expect("fred connect");
    let payload = value().to_string();
    let (p1, v) = (pool.clone(), payload.clone());
    let set = measure(move |t, i| {
        let (p, v) = (p1.clone(), v.clone());
        async move {
            let cmd = CustomCommand::new_static("SET", ClusterHash::FirstKey, false);
            let args: Vec<Value> = vec![format!("raw:{}", bench_key(t, i)).into(), v.into(), "EX".into(), 60.into()];
            let _: Value = p.custom(cmd, args).await.expect("SET");
        }
    })
    .await;
    let p2 = pool.clone();
    let get = measure(move |t, i| {
        let p = p2.clone();
        async move {
            let cmd = CustomCommand::new_static("GET", ClusterHash::FirstKey, false);
            let _: Value = p.custom(cmd, vec![Value::from(format!("raw:{}", bench_key(t, i)))]).await.expect("GET");
        }
    })
    .await;
    let _ = pool.quit().await;
    (set, get)
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("sessions bench: run with `cargo bench -p palisade-redis --features redis-rs,fred --bench sessions`");
        return;
    }
    let url = std::env::var("PALISADE_BENCH_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    rt.block_on(async move {
        let mut rows = Vec::new();
        for kind in [ClientKind::RedisRs, ClientKind::Fred] {
            let ns = Namespace::random("bench").expect("namespace");
            let mut config = RedisConfig::new(url.clone(), ns);
            config.client = kind;
            let backend = RedisBackend::connect(&config).await.expect("connect");
            let cache: Arc<dyn SessionCache> = Arc::new(backend.sessions());
            let (store_set, store_get) = store_ops(cache).await;
            let (raw_set, raw_get) = match kind {
                ClientKind::RedisRs => redis_rs_raw(&url).await,
                ClientKind::Fred => fred_raw(&url, config.pool_size).await,
            };
            backend.drop_namespace().await.expect("drop bench namespace");
            rows.push(Row { client: kind.backend(), op: "SET EX", store: store_set, raw: raw_set });
            rows.push(Row { client: kind.backend(), op: "GET", store: store_get, raw: raw_get });
        }
        println!("\nsession throughput, {TASKS} concurrent tasks × {OPS_PER_TASK} ops ({url})");
        println!("{:<9} {:<7} {:>14} {:>14} {:>10}", "client", "op", "store ops/s", "raw ops/s", "store/raw");
        for r in rows {
            println!("{:<9} {:<7} {:>14.0} {:>14.0} {:>9.2}x", r.client, r.op, r.store, r.raw, r.store / r.raw);
        }
    });
}
