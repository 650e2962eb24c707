//! The raw side for the redis-rs backend: the plain commands a developer
//! would send with redis-rs on one `ConnectionManager` (as the backend uses).

use std::sync::Arc;

use palisade_core::{Namespace, Result};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::super::runner::{op, Call, Op};
use super::super::workload::{self as w, Workload};
use super::Keys;

const DRIVER: &str = "redis-rs";

fn fail(what: &'static str) -> impl Fn(redis::RedisError) -> palisade_core::Error {
    move |e| super::raw_error(DRIVER, what, e)
}

/// A redis-rs connection and the namespace's raw keys.
pub struct RawRedisRs {
    conn: ConnectionManager,
    keys: Arc<Keys>,
    hit: Arc<redis::Script>,
}

impl RawRedisRs {
    /// Connects to `url` (`rediss://` when `tls` asks for it).
    pub async fn connect(config: &palisade::Config, url: &str, ns: &Namespace) -> Result<Self> {
        let url = super::redis_url(url, config.tls);
        let client = redis::Client::open(url.as_str()).map_err(fail("connect"))?;
        let settings = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(Some(config.op_timeout));
        let conn = ConnectionManager::new_with_config(client, settings).await.map_err(fail("connect"))?;
        Ok(RawRedisRs { conn, keys: Arc::new(Keys::new(ns)), hit: Arc::new(redis::Script::new(super::HIT_LUA)) })
    }

    /// Workload `w` as redis-rs commands; sessions and reputation only.
    pub fn op(&self, workload: Workload) -> Option<Op> {
        let (conn, keys) = (self.conn.clone(), Arc::clone(&self.keys));
        Some(match workload {
            Workload::SessionSet => op(move |c: Call| {
                let (mut conn, key) = (conn.clone(), keys.session('v', c.seq));
                async move {
                    let ttl = w::SESSION_TTL.num_milliseconds();
                    let value = w::session_value(c.seq).to_string();
                    let cmd = redis::cmd("SET").arg(key).arg(value).arg("PX").arg(ttl).clone();
                    cmd.query_async::<()>(&mut conn).await.map_err(fail("SET"))
                }
            }),
            Workload::SessionGet => op(move |c: Call| {
                let (mut conn, key) = (conn.clone(), keys.session('v', c.seq));
                async move {
                    let text: Option<String> =
                        redis::cmd("GET").arg(key).query_async(&mut conn).await.map_err(fail("GET"))?;
                    if let Some(text) = text {
                        let _: serde_json::Value = serde_json::from_str(&text)?;
                    }
                    Ok(())
                }
            }),
            Workload::SessionIncr => op(move |c: Call| {
                let (mut conn, key) = (conn.clone(), keys.session('c', c.seq));
                async move {
                    let cmd = redis::cmd("INCRBY").arg(key).arg(1).clone();
                    cmd.query_async::<i64>(&mut conn).await.map_err(fail("INCRBY")).map(|_| ())
                }
            }),
            Workload::SessionHit => {
                let hit = Arc::clone(&self.hit);
                op(move |c: Call| {
                    let (mut conn, key, hit) = (conn.clone(), keys.session('r', c.seq), Arc::clone(&hit));
                    async move {
                        let window = w::HIT_WINDOW.num_milliseconds();
                        hit.key(key).arg(window).invoke_async::<i64>(&mut conn).await.map_err(fail("hit")).map(|_| ())
                    }
                })
            }
            Workload::ReputationRecord => op(move |c: Call| {
                let (mut conn, board) = (conn.clone(), keys.board.clone());
                async move {
                    let e = w::reputation_event(c.seq);
                    let cmd = redis::cmd("ZINCRBY").arg(board).arg(e.delta).arg(e.subject.id).clone();
                    cmd.query_async::<f64>(&mut conn).await.map_err(fail("ZINCRBY")).map(|_| ())
                }
            }),
            Workload::Leaderboard => op(move |_| {
                let (mut conn, board) = (conn.clone(), keys.board.clone());
                async move {
                    let cmd = redis::cmd("ZREVRANGE").arg(board).arg(0).arg(9).arg("WITHSCORES").clone();
                    cmd.query_async::<Vec<(String, f64)>>(&mut conn).await.map_err(fail("ZREVRANGE")).map(|_| ())
                }
            }),
            _ => return None,
        })
    }
}
