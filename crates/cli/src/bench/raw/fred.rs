//! The raw side for the fred backend: the plain commands a developer would
//! send with a fred pool of the configured size (as the backend uses).

use std::sync::Arc;

use fred::prelude::{Builder, ClientLike, Config, Pool, Value};
use fred::types::scripts::Script;
use fred::types::{ClusterHash, CustomCommand};
use palisade_core::{Namespace, Result};

use super::super::runner::{op, Call, Op};
use super::super::workload::{self as w, Workload};
use super::Keys;

const DRIVER: &str = "fred";

fn fail(what: &'static str) -> impl Fn(fred::error::Error) -> palisade_core::Error {
    move |e| super::raw_error(DRIVER, what, e)
}

/// A fred pool and the namespace's raw keys.
pub struct RawFred {
    pool: Pool,
    keys: Arc<Keys>,
    hit: Arc<Script>,
}

/// `redis+fred://…` → `redis://…` (fred reads plain Redis URLs).
fn fred_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => format!("{}://{rest}", scheme.trim_end_matches("+fred")),
        None => url.to_owned(),
    }
}

/// One command with its key first.
async fn call(pool: &Pool, name: &'static str, args: Vec<Value>) -> Result<Value> {
    pool.custom(CustomCommand::new_static(name, ClusterHash::FirstKey, false), args).await.map_err(fail(name))
}

impl RawFred {
    /// Connects a pool of `pool_size` clients to `url` (`rediss://` when `tls` asks for it).
    pub async fn connect(config: &palisade::Config, url: &str, ns: &Namespace) -> Result<Self> {
        let url = super::redis_url(&fred_url(url), config.tls);
        let fred_config = Config::from_url(&url).map_err(fail("connect"))?;
        let mut builder = Builder::from_config(fred_config);
        builder.with_connection_config(|c| c.connection_timeout = config.connect_timeout);
        builder.with_performance_config(|p| p.default_command_timeout = config.op_timeout);
        let pool = builder.build_pool(config.pool_size.max(1) as usize).map_err(fail("connect"))?;
        pool.init().await.map_err(fail("connect"))?;
        Ok(RawFred { pool, keys: Arc::new(Keys::new(ns)), hit: Arc::new(Script::from_lua(super::HIT_LUA)) })
    }

    /// Disconnects the pool.
    pub async fn close(&self) {
        let _ = self.pool.quit().await;
    }

    /// Workload `w` as fred commands; sessions and reputation only.
    pub fn op(&self, workload: Workload) -> Option<Op> {
        let (pool, keys) = (self.pool.clone(), Arc::clone(&self.keys));
        Some(match workload {
            Workload::SessionSet => op(move |c: Call| {
                let (pool, key) = (pool.clone(), keys.session('v', c.seq));
                async move {
                    let value = w::session_value(c.seq).to_string();
                    let ttl = w::SESSION_TTL.num_milliseconds();
                    call(&pool, "SET", vec![key.into(), value.into(), "PX".into(), ttl.into()]).await.map(|_| ())
                }
            }),
            Workload::SessionGet => op(move |c: Call| {
                let (pool, key) = (pool.clone(), keys.session('v', c.seq));
                async move {
                    if let Some(text) = call(&pool, "GET", vec![key.into()]).await?.as_str() {
                        let _: serde_json::Value = serde_json::from_str(&text)?;
                    }
                    Ok(())
                }
            }),
            Workload::SessionIncr => op(move |c: Call| {
                let (pool, key) = (pool.clone(), keys.session('c', c.seq));
                async move { call(&pool, "INCRBY", vec![key.into(), 1.into()]).await.map(|_| ()) }
            }),
            Workload::SessionHit => {
                let hit = Arc::clone(&self.hit);
                op(move |c: Call| {
                    let (pool, key, hit) = (pool.clone(), keys.session('r', c.seq), Arc::clone(&hit));
                    async move {
                        let window = w::HIT_WINDOW.num_milliseconds();
                        let hits = hit.evalsha_with_reload::<i64, _, _>(pool.next(), key, window).await;
                        hits.map_err(fail("hit")).map(|_| ())
                    }
                })
            }
            Workload::ReputationRecord => op(move |c: Call| {
                let (pool, board) = (pool.clone(), keys.board.clone());
                async move {
                    let e = w::reputation_event(c.seq);
                    call(&pool, "ZINCRBY", vec![board.into(), e.delta.into(), e.subject.id.into()]).await.map(|_| ())
                }
            }),
            Workload::Leaderboard => op(move |_| {
                let (pool, board) = (pool.clone(), keys.board.clone());
                async move {
                    let args = vec![board.into(), 0.into(), 9.into(), "WITHSCORES".into()];
                    call(&pool, "ZREVRANGE", args).await.map(|_| ())
                }
            }),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fred_urls_lose_their_suffix() {
        assert_eq!(fred_url("redis+fred://:pw@h:6379/0"), "redis://:pw@h:6379/0");
        assert_eq!(fred_url("rediss+fred://h"), "rediss://h");
    }
}
