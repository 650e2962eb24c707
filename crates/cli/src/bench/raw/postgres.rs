//! The raw side for both Postgres backends: sqlx on a scratch schema that the
//! backend's own migrations created (same tables, same indexes), with the SQL
//! a developer would write by hand.
//!
//! Every statement is a `&'static str` (compiles on sqlx 0.8 and 0.9); the
//! scratch schema is chosen by the connections' `search_path` startup
//! option, never spliced into SQL.

use std::str::FromStr;

use palisade::Config;
use palisade_core::reputation::Period;
use palisade_core::{Namespace, Result};
use sqlx::postgres::PgPoolCopyExt;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};
use sqlx::types::{JsonValue, Uuid};
use sqlx::{PgPool, Row};

use super::super::runner::{op, Call, Op};
use super::super::workload::{self as w, Plan, Workload};

const DRIVER: &str = "sqlx";

fn fail(what: &'static str) -> impl Fn(sqlx::Error) -> palisade_core::Error {
    move |e| super::raw_error(DRIVER, what, e)
}

/// A sqlx pool on the scratch schema.
pub struct RawPostgres {
    pool: PgPool,
}

/// `url` for sqlx: `postgres+diesel://…` becomes `postgres://…`.
fn sqlx_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => format!("{}://{rest}", scheme.trim_end_matches("+diesel")),
        None => url.to_owned(),
    }
}

impl RawPostgres {
    /// Connects to `url` with `config`'s pool size, timeout and TLS rule, in
    /// the already migrated schema `scratch`, and adds what only the raw side
    /// needs (a position sequence, a plain JSONB table with an expression
    /// index).
    pub async fn connect(config: &Config, url: &str, scratch: &Namespace) -> Result<Self> {
        let opts = PgConnectOptions::from_str(&sqlx_url(url)).map_err(fail("connect"))?;
        // Same rule as the backends: `tls` raises the optional modes to verify-full.
        let weak = matches!(opts.get_ssl_mode(), PgSslMode::Prefer | PgSslMode::Allow);
        let opts = if config.tls && weak { opts.ssl_mode(PgSslMode::VerifyFull) } else { opts };
        let opts = opts.application_name("palisade-bench-raw").options([("search_path", scratch.as_str())]);
        let pool = PgPoolOptions::new()
            .max_connections(config.pool_size)
            .acquire_timeout(config.connect_timeout)
            .connect_with(opts)
            .await
            .map_err(fail("connect"))?;
        for ddl in [
            "CREATE SEQUENCE IF NOT EXISTS bench_position",
            "CREATE TABLE IF NOT EXISTS bench_documents (id text COLLATE \"C\" PRIMARY KEY, body jsonb NOT NULL)",
            "CREATE INDEX IF NOT EXISTS bench_documents_engine ON bench_documents ((body ->> 'engine'))",
        ] {
            sqlx::query(ddl).execute(&pool).await.map_err(fail("setup"))?;
        }
        Ok(RawPostgres { pool })
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Workload `w` as hand-written SQL; every workload has one.
    pub fn op(&self, workload: Workload, plan: &Plan) -> Option<Op> {
        let pool = self.pool.clone();
        let batch = plan.batch;
        Some(match workload {
            Workload::AppendOne => op(move |c: Call| append_one(pool.clone(), c.seq)),
            Workload::AppendSmallBatch => op(move |c: Call| append_many(pool.clone(), c.seq, w::SMALL_BATCH)),
            Workload::AppendLargeBatch => op(move |c: Call| append_copy(pool.clone(), c.seq, batch)),
            Workload::Query => op(move |c: Call| query_session(pool.clone(), c.seq)),
            Workload::TopClientIps => op(move |_| top_client_ips(pool.clone())),
            Workload::SessionSet => op(move |c: Call| session_set(pool.clone(), c.seq)),
            Workload::SessionGet => op(move |c: Call| session_get(pool.clone(), c.seq)),
            Workload::SessionIncr => {
                op(move |c: Call| counter(pool.clone(), w::session_key('c', c.seq), w::SESSION_TTL.num_milliseconds()))
            }
            Workload::SessionHit => {
                op(move |c: Call| counter(pool.clone(), w::session_key('r', c.seq), w::HIT_WINDOW.num_milliseconds()))
            }
            Workload::ReputationRecord => op(move |c: Call| record(pool.clone(), c.seq)),
            Workload::Leaderboard => op(move |_| top10(pool.clone())),
            Workload::DocumentInsert => op(move |c: Call| document_insert(pool.clone(), c.seq)),
            Workload::DocumentFind => op(move |c: Call| document_find(pool.clone(), c.seq)),
        })
    }
}

const INSERT_EVENT: &str =
    "INSERT INTO events (position, id, source, kind, session_id, client_ip, tags, data, occurred_at, recorded_at) \
     VALUES (nextval('bench_position'), $1, $2, $3, $4, $5::inet, $6, $7, $8, date_trunc('milliseconds', now()))";

async fn append_one(pool: PgPool, seq: usize) -> Result<()> {
    let e = w::event(seq);
    sqlx::query(INSERT_EVENT)
        .bind(e.id)
        .bind(e.source)
        .bind(e.kind)
        .bind(e.session_id)
        .bind(e.client_ip.map(|ip| ip.to_string()))
        .bind(e.tags)
        .bind(e.data)
        .bind(e.occurred_at)
        .execute(&pool)
        .await
        .map_err(fail("append"))?;
    Ok(())
}

/// A multi-row INSERT over arrays (tags travel as array literals: `unnest`
/// cannot take an array of arrays of different lengths).
const INSERT_EVENTS: &str = "INSERT INTO events (position, id, source, kind, session_id, client_ip, tags, data, occurred_at, recorded_at) \
     SELECT nextval('bench_position'), u.id, u.source, u.kind, u.session_id, u.client_ip::inet, u.tags::text[], u.data, \
            u.occurred_at, date_trunc('milliseconds', now()) \
     FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::jsonb[], $8::timestamptz[]) \
          AS u(id, source, kind, session_id, client_ip, tags, data, occurred_at)";

async fn append_many(pool: PgPool, seq: usize, n: usize) -> Result<()> {
    let events = w::events(seq, n);
    let mut cols = (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    let mut more = (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    for e in events {
        cols.0.push(e.id);
        cols.1.push(e.source);
        cols.2.push(e.kind);
        cols.3.push(e.session_id);
        more.0.push(e.client_ip.map(|ip| ip.to_string()));
        more.1.push(array_literal(&e.tags));
        more.2.push(e.data);
        more.3.push(e.occurred_at);
    }
    sqlx::query(INSERT_EVENTS)
        .bind(cols.0)
        .bind(cols.1)
        .bind(cols.2)
        .bind(cols.3)
        .bind(more.0)
        .bind(more.1)
        .bind(more.2)
        .bind(more.3)
        .execute(&pool)
        .await
        .map_err(fail("append batch"))?;
    Ok(())
}

/// Binary `COPY` of the columns [`copy_row`] writes.
const COPY_EVENTS: &str = "COPY events (position, seq, id, source, kind, session_id, client_ip, tags, data, \
     occurred_at, recorded_at) FROM STDIN (FORMAT binary)";

/// The large batch as a developer loads bulk rows: binary `COPY`, the batch
/// under one position with its events numbered by `seq` (the key Palisade's
/// own events have).
async fn append_copy(pool: PgPool, seq: usize, n: usize) -> Result<()> {
    let position: i64 =
        sqlx::query_scalar("SELECT nextval('bench_position')").fetch_one(&pool).await.map_err(fail("append copy"))?;
    let recorded_at = chrono::Utc::now();
    let mut buf = Vec::with_capacity(n * 512 + 32);
    buf.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
    buf.extend_from_slice(&[0; 8]); // flags, header extension length
    for (i, e) in w::events(seq, n).iter().enumerate() {
        copy_row(&mut buf, position, i as i32, e, recorded_at);
    }
    buf.extend_from_slice(&(-1_i16).to_be_bytes());
    let mut copy = pool.copy_in_raw(COPY_EVENTS).await.map_err(fail("append copy"))?;
    copy.send(buf).await.map_err(fail("append copy"))?;
    copy.finish().await.map_err(fail("append copy"))?;
    Ok(())
}

/// One event as a binary `COPY` tuple (PostgreSQL's send formats).
fn copy_row(
    buf: &mut Vec<u8>,
    position: i64,
    seq: i32,
    e: &palisade_core::events::NewEvent,
    recorded_at: chrono::DateTime<chrono::Utc>,
) {
    fn field(buf: &mut Vec<u8>, bytes: &[u8]) {
        buf.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
        buf.extend_from_slice(bytes);
    }
    /// Microseconds since 2000-01-01 UTC.
    fn timestamp(at: chrono::DateTime<chrono::Utc>) -> [u8; 8] {
        (at.timestamp_micros() - 946_684_800_000_000).to_be_bytes()
    }
    buf.extend_from_slice(&11_i16.to_be_bytes());
    field(buf, &position.to_be_bytes());
    field(buf, &seq.to_be_bytes());
    field(buf, e.id.as_bytes());
    field(buf, e.source.as_bytes());
    field(buf, e.kind.as_bytes());
    match &e.session_id {
        Some(s) => field(buf, s.as_bytes()),
        None => buf.extend_from_slice(&(-1_i32).to_be_bytes()),
    }
    match e.client_ip {
        // family (2 = inet, 3 = inet6), prefix bits, not cidr, address length, address
        Some(std::net::IpAddr::V4(a)) => field(buf, &[&[2, 32, 0, 4][..], &a.octets()].concat()),
        Some(std::net::IpAddr::V6(a)) => field(buf, &[&[3, 128, 0, 16][..], &a.octets()].concat()),
        None => buf.extend_from_slice(&(-1_i32).to_be_bytes()),
    }
    // text[]: dimensions, has-nulls flag, element type (text), then the dimension and its elements.
    let mut array = Vec::with_capacity(32);
    let dims: i32 = if e.tags.is_empty() { 0 } else { 1 };
    for word in [dims, 0, 25] {
        array.extend_from_slice(&word.to_be_bytes());
    }
    if dims == 1 {
        array.extend_from_slice(&(e.tags.len() as i32).to_be_bytes());
        array.extend_from_slice(&1_i32.to_be_bytes());
        for t in &e.tags {
            field(&mut array, t.as_bytes());
        }
    }
    field(buf, &array);
    // jsonb: format version 1, then the text.
    field(buf, &[&[1][..], e.data.to_string().as_bytes()].concat());
    field(buf, &timestamp(e.occurred_at));
    field(buf, &timestamp(recorded_at));
}

/// `{"a","b"}`: a Postgres text array literal, every element quoted.
fn array_literal(items: &[String]) -> String {
    let quoted: Vec<String> =
        items.iter().map(|t| format!("\"{}\"", t.replace('\\', "\\\\").replace('"', "\\\""))).collect();
    format!("{{{}}}", quoted.join(","))
}

async fn query_session(pool: PgPool, seq: usize) -> Result<()> {
    let rows = sqlx::query(
        "SELECT position, id, source, kind, stream, version, session_id, client_ip::text AS client_ip, tags, data, \
                occurred_at, recorded_at \
         FROM events WHERE session_id = $1 ORDER BY position DESC LIMIT 50",
    )
    .bind(w::session_id(seq))
    .fetch_all(&pool)
    .await
    .map_err(fail("query"))?;
    // Decoded as a caller would (Palisade decodes every event it returns).
    for r in rows {
        let _: (Uuid, Vec<String>, JsonValue) = (
            r.try_get("id").map_err(fail("decode"))?,
            r.try_get("tags").map_err(fail("decode"))?,
            r.try_get("data").map_err(fail("decode"))?,
        );
    }
    Ok(())
}

async fn top_client_ips(pool: PgPool) -> Result<()> {
    let rows = sqlx::query(
        "SELECT client_ip::text AS ip, count(*) AS n FROM events WHERE client_ip IS NOT NULL \
         GROUP BY client_ip ORDER BY n DESC, client_ip LIMIT 10",
    )
    .fetch_all(&pool)
    .await
    .map_err(fail("analytics"))?;
    for r in rows {
        let _: (String, i64) = (r.try_get("ip").map_err(fail("decode"))?, r.try_get("n").map_err(fail("decode"))?);
    }
    Ok(())
}

async fn session_set(pool: PgPool, seq: usize) -> Result<()> {
    sqlx::query(
        "INSERT INTO sessions (key, value, list, expires_at) \
         VALUES ($1, $2, NULL, clock_timestamp() + $3 * interval '1 millisecond') \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value, list = NULL, expires_at = excluded.expires_at",
    )
    .bind(w::session_key('v', seq).into_bytes())
    .bind(w::session_value(seq).to_string())
    .bind(w::SESSION_TTL.num_milliseconds())
    .execute(&pool)
    .await
    .map_err(fail("session set"))?;
    Ok(())
}

async fn session_get(pool: PgPool, seq: usize) -> Result<()> {
    let row = sqlx::query(
        "SELECT value FROM sessions WHERE key = $1 AND value IS NOT NULL \
         AND (expires_at IS NULL OR expires_at > clock_timestamp())",
    )
    .bind(w::session_key('v', seq).into_bytes())
    .fetch_optional(&pool)
    .await
    .map_err(fail("session get"))?;
    if let Some(row) = row {
        let text: String = row.try_get("value").map_err(fail("decode"))?;
        let _: JsonValue = serde_json::from_str(&text)?;
    }
    Ok(())
}

/// A counter with a TTL fixed when it is created (or restarted after
/// expiry): both `incr` and the fixed-window `hit`.
async fn counter(pool: PgPool, key: String, ttl_ms: i64) -> Result<()> {
    let row = sqlx::query(
        "INSERT INTO sessions (key, value, list, expires_at) \
         VALUES ($1, '1', NULL, clock_timestamp() + $2 * interval '1 millisecond') \
         ON CONFLICT (key) DO UPDATE SET \
           value = CASE WHEN sessions.expires_at <= clock_timestamp() THEN '1' \
                        ELSE (sessions.value::bigint + 1)::text END, \
           expires_at = CASE WHEN sessions.expires_at <= clock_timestamp() THEN excluded.expires_at \
                             ELSE sessions.expires_at END \
         RETURNING value",
    )
    .bind(key.into_bytes())
    .bind(ttl_ms)
    .fetch_one(&pool)
    .await
    .map_err(fail("counter"))?;
    let _: String = row.try_get("value").map_err(fail("decode"))?;
    Ok(())
}

async fn record(pool: PgPool, seq: usize) -> Result<()> {
    let e = w::reputation_event(seq);
    let periods: Vec<String> = Period::all_containing(e.at).iter().map(Period::key).collect();
    sqlx::query(
        "WITH logged AS ( \
           INSERT INTO reputation_events (id, subject_kind, subject_id, delta, reason, at) \
           VALUES ($1, $2, $3, $4, $5, $6)) \
         INSERT INTO reputation_scores (period, subject_kind, subject_id, score) \
         SELECT p, $2, $3, $4 FROM UNNEST($7::text[]) AS p \
         ON CONFLICT (period, subject_kind, subject_id) DO UPDATE SET score = reputation_scores.score + excluded.score",
    )
    .bind(e.id)
    .bind(e.subject.kind.as_str())
    .bind(e.subject.id)
    .bind(e.delta)
    .bind(e.reason)
    .bind(e.at)
    .bind(periods)
    .execute(&pool)
    .await
    .map_err(fail("record"))?;
    Ok(())
}

async fn top10(pool: PgPool) -> Result<()> {
    let rows = sqlx::query(
        "SELECT subject_id, score FROM reputation_scores WHERE period = 'all' AND subject_kind = 'user' \
         ORDER BY score DESC, subject_id COLLATE \"C\" LIMIT 10",
    )
    .fetch_all(&pool)
    .await
    .map_err(fail("leaderboard"))?;
    for r in rows {
        let _: (String, i64) =
            (r.try_get("subject_id").map_err(fail("decode"))?, r.try_get("score").map_err(fail("decode"))?);
    }
    Ok(())
}

async fn document_insert(pool: PgPool, seq: usize) -> Result<()> {
    let id = format!("{:032x}", rand::random::<u128>());
    let mut body = w::document(seq);
    if let Some(fields) = body.as_object_mut() {
        fields.insert("_id".into(), id.clone().into());
    }
    sqlx::query("INSERT INTO bench_documents (id, body) VALUES ($1, $2)")
        .bind(id)
        .bind(body)
        .execute(&pool)
        .await
        .map_err(fail("document insert"))?;
    Ok(())
}

async fn document_find(pool: PgPool, seq: usize) -> Result<()> {
    let rows = sqlx::query("SELECT body FROM bench_documents WHERE body ->> 'engine' = $1 ORDER BY id LIMIT 10")
        .bind(w::engine(seq))
        .fetch_all(&pool)
        .await
        .map_err(fail("document find"))?;
    for r in rows {
        let _: JsonValue = r.try_get("body").map_err(fail("decode"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diesel_urls_are_read_by_sqlx() {
        assert_eq!(sqlx_url("postgres+diesel://u@h:5432/db"), "postgres://u@h:5432/db");
        assert_eq!(sqlx_url("postgresql://u@h/db?sslmode=require"), "postgresql://u@h/db?sslmode=require");
    }

    #[test]
    fn tag_literals_quote_every_element() {
        assert_eq!(array_literal(&["a".into(), "rule:\"x\"".into()]), r#"{"a","rule:\"x\""}"#);
        assert_eq!(array_literal(&[]), "{}");
    }
}
