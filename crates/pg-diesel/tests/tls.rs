//! pg-diesel over TLS, against a Postgres of the test's own with TLS on (a
//! certificate for 127.0.0.1 from a throwaway CA): every `sslmode` does what
//! libpq's does — `verify-full` and `verify-ca` trust only `sslrootcert`,
//! `verify-ca` ignores the host name, `require` encrypts without verifying,
//! `prefer` encrypts when offered — and a server without TLS is refused
//! when the mode demands it. Pooled connections and the live tail's listener
//! both run over TLS. Runs where a Postgres installation is (the same
//! condition as the other Postgres tests).

use std::time::Duration;

use diesel::sql_types::Bool;
use diesel::QueryableByName;
use diesel_async::RunQueryDsl;
use futures::StreamExt;
use palisade_conformance::pg_server::PgServer;
use palisade_conformance::server_url;
use palisade_core::events::{AppendBatch, Cursor, EventFilter, NewEvent, SubscriptionItem};
use palisade_core::sessions::SetMode;
use palisade_core::{ErrorKind, EventStore, Namespace, SessionCache};
use palisade_pg_diesel::{PgDieselBackend, PgDieselConfig};
use serde_json::json;

#[derive(QueryableByName)]
struct Ssl {
    #[diesel(sql_type = Bool)]
    ssl: bool,
}

async fn connect(url: String) -> palisade_core::Result<PgDieselBackend> {
    let config = PgDieselConfig::new(url, Namespace::random("pgdtls").unwrap())
        .with_pool_size(2)
        .with_connect_timeout(Duration::from_secs(3));
    PgDieselBackend::connect(&config).await
}

/// Whether the backend's pooled connection and (if any) live tail listener use TLS.
async fn on_tls(b: &PgDieselBackend, query: &str) -> Vec<bool> {
    let mut conn = b.connection().await.unwrap();
    let rows: Vec<Ssl> = diesel::sql_query(query).load(&mut **conn).await.unwrap();
    rows.into_iter().map(|r| r.ssl).collect()
}

const MINE: &str = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";
const LISTENERS: &str =
    "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.query LIKE 'LISTEN %'";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sslmode_behaves_as_libpq_says() {
    // Where Postgres tests run (a server is, or must be, available), this
    // one starts its own servers from the same installation.
    if server_url("postgres", "PALISADE_TEST_POSTGRES_URL").is_none() {
        return;
    }
    let server = PgServer::init(5444);
    let ca = server.enable_tls();
    server.start();
    let ca = ca.to_str().unwrap().to_owned();
    let base = "postgres+diesel://postgres@127.0.0.1:5444/postgres";

    // verify-full with the test CA: the stores work, over TLS, tail included.
    let b = connect(format!("{base}?sslmode=verify-full&sslrootcert={ca}")).await.expect("verified TLS");
    assert_eq!(on_tls(&b, MINE).await, vec![true]);
    let sessions = b.sessions();
    assert!(sessions.set("k", json!({"v": 1}), None, SetMode::Always).await.unwrap());
    assert_eq!(sessions.get("k").await.unwrap(), Some(json!({"v": 1})));
    let events = b.events();
    let mut tail = events.subscribe(Cursor::Start, EventFilter::all()).await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), tail.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(first, SubscriptionItem::CaughtUp);
    assert_eq!(on_tls(&b, LISTENERS).await, vec![true], "the listener runs over TLS too");
    events.append(AppendBatch::new(vec![NewEvent::new("tls", "tick")])).await.unwrap();
    let item = tokio::time::timeout(Duration::from_secs(10), tail.next()).await.unwrap().unwrap().unwrap();
    assert!(matches!(item, SubscriptionItem::Event(e) if e.kind == "tick"));
    drop(tail);
    b.drop_namespace().await.unwrap();

    // The Mozilla roots do not know the test CA.
    let e = connect(format!("{base}?sslmode=verify-full")).await.err().expect("an unknown CA is refused");
    assert_eq!((e.kind(), e.is_temporary()), (ErrorKind::Config, false), "{e}");
    // The certificate names 127.0.0.1, not localhost: verify-full refuses, verify-ca accepts.
    let by_name = "postgres+diesel://postgres@localhost:5444/postgres";
    let e = connect(format!("{by_name}?sslmode=verify-full&sslrootcert={ca}")).await.err().expect("wrong name");
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    let b = connect(format!("{by_name}?sslmode=verify-ca&sslrootcert={ca}")).await.expect("verify-ca ignores the name");
    assert_eq!(on_tls(&b, MINE).await, vec![true]);
    b.drop_namespace().await.unwrap();
    // require and prefer encrypt without verifying.
    for mode in ["require", "prefer"] {
        let b = connect(format!("{base}?sslmode={mode}")).await.expect(mode);
        assert_eq!(on_tls(&b, MINE).await, vec![true], "{mode}");
        b.drop_namespace().await.unwrap();
    }
    let b = connect(format!("{base}?sslmode=disable")).await.expect("disable");
    assert_eq!(on_tls(&b, MINE).await, vec![false]);
    b.drop_namespace().await.unwrap();

    // A server without TLS: refused when demanded, plain text when preferred.
    let plain_server = PgServer::init(5445);
    plain_server.start();
    let plain = "postgres+diesel://postgres@127.0.0.1:5445/postgres";
    let e = connect(format!("{plain}?sslmode=require")).await.err().expect("no TLS, but required");
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    let b = connect(format!("{plain}?sslmode=prefer")).await.expect("prefer falls back to plain text");
    assert_eq!(on_tls(&b, MINE).await, vec![false]);
    b.drop_namespace().await.unwrap();
}
