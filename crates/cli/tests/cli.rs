//! The `palisade` binary as an operator uses it.

use std::process::{Command, Output};

fn palisade(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_palisade"));
    cmd.args(args);
    for var in [
        "PALISADE_EVENTS_URL",
        "PALISADE_SESSIONS_URL",
        "PALISADE_DOCUMENTS_URL",
        "PALISADE_REPUTATION_URL",
        "PALISADE_CONFIG",
        "PALISADE_FALLBACK",
        "PALISADE_NAMESPACE",
    ] {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied());
    cmd.output().expect("the palisade binary runs")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn demo_prints_the_tables() {
    let out = palisade(&["demo", "--requests", "600", "--sessions", "50"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for heading in
        ["Top attacking IPs", "Rule effectiveness", "Rate-limited sessions", "Engine leaderboard", "Store health"]
    {
        assert!(stdout.contains(heading), "missing {heading}:\n{stdout}");
    }
}

#[test]
fn health_on_memory_is_healthy_and_exits_zero() {
    let out = palisade(&["health", "--json"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let statuses: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(statuses.as_array().map(Vec::len), Some(4));
    assert!(statuses.as_array().unwrap().iter().all(|s| s["status"] == "healthy"));
}

#[test]
fn health_on_an_unreachable_server_never_shows_the_password() {
    // A loopback port nothing listens on.
    let out = palisade(&["health"], &[("PALISADE_EVENTS_URL", "mongodb://admin:s3cret@127.0.0.1:9/")]);
    assert!(!out.status.success());
    let all = text(&out);
    assert!(all.contains("mongo"), "{all}");
    assert!(!all.contains("s3cret"), "{all}");
}

#[test]
fn malformed_url_names_the_setting_and_not_the_password() {
    let out = palisade(&["health"], &[("PALISADE_SESSIONS_URL", "postgres://u:hunter2@h:notaport/db")]);
    assert!(!out.status.success());
    let all = text(&out);
    assert!(all.contains("PALISADE_SESSIONS_URL") && all.contains("invalid port"), "{all}");
    assert!(!all.contains("hunter2"), "{all}");
}

#[test]
fn migrate_prints_the_grants_a_runtime_role_needs_without_connecting() {
    // Nothing listens on these ports: printing grants contacts no server.
    let env = [
        ("PALISADE_EVENTS_URL", "postgres://owner:hunter2@127.0.0.1:1/db"),
        ("PALISADE_SESSIONS_URL", "redis://127.0.0.1:1"),
        ("PALISADE_NAMESPACE", "shop"),
    ];
    let out = palisade(&["migrate", "--print-grants", "app_rw"], &env);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA \"shop\" TO \"app_rw\""),
        "{stdout}"
    );
    assert!(stdout.contains("ACL SETUSER app_rw") && stdout.contains("~{shop:*"), "{stdout}");
    assert!(!text(&out).contains("hunter2"), "{stdout}");
    let out = palisade(&["migrate", "--print-grants", "x\"; DROP ROLE postgres; --"], &env);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("invalid_input"), "{}", text(&out));
}

#[test]
fn check_passes_on_memory() {
    let out = palisade(&["check"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(" 0 failed"), "{stdout}");
}

#[test]
fn bench_on_memory_prints_json_and_an_svg() {
    let svg = std::env::temp_dir().join(format!("palisade-bench-{}.svg", std::process::id()));
    let svg_arg = svg.to_string_lossy().into_owned();
    let sizes = ["--ops", "16", "--tasks", "2", "--rounds", "1", "--batch", "50"];
    let out = palisade(&[&["bench", "--json", "--svg", &svg_arg][..], &sizes[..]].concat(), &[]);
    assert!(out.status.success(), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let measures = report["measures"].as_array().unwrap();
    assert_eq!(measures.len(), 13, "{report}");
    assert!(measures.iter().all(|m| m["palisade"]["per_second"].as_f64().is_some_and(|x| x > 0.0)), "{report}");
    let drawn = std::fs::read_to_string(&svg).unwrap();
    let _ = std::fs::remove_file(&svg);
    assert!(drawn.starts_with("<svg") && drawn.contains("sessions.get"), "{drawn}");
}

/// A tiny `bench` run on `urls` (events, sessions, documents, reputation):
/// every measure of the standard workload has a raw side that ran, so a
/// ratio, and it is measured against `drivers` (by store, in that order).
fn bench_compares_every_measure_with_its_raw_driver(urls: [&str; 4], drivers: [&str; 4]) {
    let env: Vec<(&str, &str)> =
        ["PALISADE_EVENTS_URL", "PALISADE_SESSIONS_URL", "PALISADE_DOCUMENTS_URL", "PALISADE_REPUTATION_URL"]
            .into_iter()
            .zip(urls)
            .collect();
    let sizes = ["--ops", "40", "--tasks", "2", "--rounds", "1", "--batch", "300"];
    let out = palisade(&[&["bench", "--json"][..], &sizes[..]].concat(), &env);
    assert!(out.status.success(), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let measures = report["measures"].as_array().unwrap();
    assert_eq!(measures.len(), 13, "{report}");
    for m in measures {
        let store = ["events", "sessions", "documents", "reputation"].iter().position(|s| m["store"] == *s);
        let want = drivers[store.unwrap_or_else(|| panic!("a store: {m}"))];
        assert_eq!(m["raw_driver"], want, "{m}");
        assert!(m["ratio"].as_f64().is_some_and(|r| r > 0.0), "{m}");
        assert!(m["raw"]["per_second"].as_f64().is_some_and(|x| x > 0.0), "{m}");
    }
}

/// The Postgres raw side (including the large batch's binary `COPY`, which
/// the server checks field by field) and both Redis clients.
#[test]
fn bench_on_postgres_and_redis_has_a_raw_ratio_for_every_measure() {
    let Some(pg) = palisade_conformance::server_url("postgres", "PALISADE_TEST_POSTGRES_URL") else { return };
    let Some(redis) = palisade_conformance::server_url("redis", "PALISADE_TEST_REDIS_URL") else { return };
    let diesel = pg.replacen("postgres://", "postgres+diesel://", 1);
    let fred = redis.replacen("redis://", "redis+fred://", 1);
    bench_compares_every_measure_with_its_raw_driver([&pg, &redis, &diesel, &pg], ["sqlx", "redis-rs", "sqlx", "sqlx"]);
    bench_compares_every_measure_with_its_raw_driver([&diesel, &fred, &pg, &diesel], ["sqlx", "fred", "sqlx", "sqlx"]);
}

/// The official MongoDB driver is the raw side of every Mongo measure.
#[test]
fn bench_on_mongo_has_a_raw_ratio_for_every_measure() {
    let Some(url) = palisade_conformance::server_url("mongo", "PALISADE_TEST_MONGO_URL") else { return };
    bench_compares_every_measure_with_its_raw_driver([&url; 4], ["mongodb"; 4]);
}

#[test]
fn config_file_selects_stores_and_env_overrides_it() {
    let dir = std::env::temp_dir().join(format!("palisade-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("palisade.toml");
    std::fs::write(&file, "namespace = \"ops\"\n[documents]\nurl = \"redis://localhost:6379\"\n").unwrap();
    let out = palisade(&["--config", file.to_str().unwrap(), "health"], &[]);
    assert!(!out.status.success(), "redis offers no documents");
    assert!(text(&out).contains("does not offer the documents store"), "{}", text(&out));
    let out = palisade(&["--config", file.to_str().unwrap(), "health"], &[("PALISADE_DOCUMENTS_URL", "memory://")]);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.status.success(), "{}", text(&out));
}

/// `migrate`, `health` and `demo` on `postgres+diesel://` URLs, against the
/// test server (`PALISADE_TEST_POSTGRES_URL`; skipped with a notice without
/// it, failed when `PALISADE_REQUIRE` names postgres).
#[test]
fn migrate_health_and_demo_work_on_postgres_through_diesel() {
    let Some(url) = palisade_conformance::server_url("postgres", "PALISADE_TEST_POSTGRES_URL") else { return };
    let url = match url.split_once("://") {
        Some((_, rest)) => format!("postgres+diesel://{rest}"),
        None => url,
    };
    let ns = palisade::Namespace::random("clid").unwrap();
    let env: Vec<(&str, &str)> = vec![
        ("PALISADE_NAMESPACE", ns.as_str()),
        ("PALISADE_EVENTS_URL", &url),
        ("PALISADE_SESSIONS_URL", &url),
        ("PALISADE_DOCUMENTS_URL", &url),
        ("PALISADE_REPUTATION_URL", &url),
    ];
    let dry = palisade(&["migrate", "--dry-run"], &env);
    assert!(dry.status.success() && text(&dry).contains("pending"), "{}", text(&dry));
    let migrated = palisade(&["migrate"], &env);
    assert!(migrated.status.success() && !text(&migrated).contains("pending"), "{}", text(&migrated));
    let health = palisade(&["health"], &env);
    assert!(health.status.success(), "{}", text(&health));
    assert_eq!(String::from_utf8_lossy(&health.stdout).matches("pg_diesel  healthy").count(), 4, "{}", text(&health));
    let demo = palisade(&["demo", "--requests", "300", "--sessions", "20"], &env);
    assert!(demo.status.success() && text(&demo).contains("Engine leaderboard"), "{}", text(&demo));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let config = palisade::pg_diesel::PgDieselConfig::new(&url, ns.clone());
        let backend = palisade::pg_diesel::PgDieselBackend::connect_without_migrating(&config).await.unwrap();
        backend.drop_namespace().await.unwrap();
    });
}

/// `health`, `check` and `demo` on `mongodb://` URLs, against the Mongo test
/// server (`PALISADE_TEST_MONGO_URL`; skipped with a notice without it,
/// failed when `PALISADE_REQUIRE` names mongo).
#[test]
fn health_check_and_demo_work_on_mongo() {
    let Some(url) = palisade_conformance::server_url("mongo", "PALISADE_TEST_MONGO_URL") else { return };
    let ns = palisade::Namespace::random("clim").unwrap();
    let env: Vec<(&str, &str)> = vec![
        ("PALISADE_NAMESPACE", ns.as_str()),
        ("PALISADE_EVENTS_URL", &url),
        ("PALISADE_SESSIONS_URL", &url),
        ("PALISADE_DOCUMENTS_URL", &url),
        ("PALISADE_REPUTATION_URL", &url),
    ];
    let health = palisade(&["health"], &env);
    assert!(health.status.success(), "{}", text(&health));
    let healthy = String::from_utf8_lossy(&health.stdout)
        .lines()
        .filter(|l| l.contains("mongo") && l.contains("healthy"))
        .count();
    assert_eq!(healthy, 4, "{}", text(&health));
    let check = palisade(&["check", "--filter", "event_fields_round_trip"], &env);
    assert!(check.status.success(), "{}", text(&check));
    assert!(text(&check).contains("mongo"), "{}", text(&check));
    let demo = palisade(&["demo", "--requests", "300", "--sessions", "20"], &env);
    assert!(demo.status.success() && text(&demo).contains("Engine leaderboard"), "{}", text(&demo));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let config = palisade::mongo::MongoConfig::new(&url, ns.clone());
        palisade::mongo::MongoBackend::connect(&config).await.unwrap().drop_namespace().await.unwrap();
    });
}

/// `palisade consumers` lists a durable consumer a service created, with its
/// checkpoint and lag, as table and JSON; `--delete` removes it (Postgres).
#[test]
fn consumers_lists_checkpoint_and_lag_and_deletes() {
    use palisade::config::StoreUrl;
    use palisade_core::consumers::{Consumer, ConsumerOptions};
    use palisade_core::events::{AppendBatch, EventFilter, NewEvent, SubscriptionItem};

    let Some(url) = palisade_conformance::server_url("postgres", "PALISADE_TEST_POSTGRES_URL") else { return };
    let ns = palisade::Namespace::random("clic").unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut config = palisade::Config { namespace: ns.clone(), ..palisade::Config::default() };
    config.events.url = StoreUrl::parse(&url).unwrap();
    let stores = runtime.block_on(palisade::Stores::connect(&config)).unwrap();
    let checkpoint = runtime.block_on(async {
        let events: Vec<NewEvent> = (0..5).map(|_| NewEvent::new("cli", "blocked")).collect();
        stores.events.append(AppendBatch::new(events)).await.unwrap();
        let mut c = Consumer::start(
            stores.events.clone(),
            "blocklist",
            EventFilter::all().kind("blocked"),
            ConsumerOptions::default(),
        )
        .await
        .unwrap();
        let mut last = None;
        for _ in 0..2 {
            if let Some(Ok(SubscriptionItem::Event(e))) = c.next().await {
                last = Some(e.position);
            }
        }
        c.ack(last.unwrap()).await.unwrap();
        c.release().await.unwrap();
        last.unwrap()
    });
    let env = [("PALISADE_NAMESPACE", ns.as_str()), ("PALISADE_EVENTS_URL", url.as_str())];
    let table = palisade(&["consumers"], &env);
    assert!(table.status.success(), "{}", text(&table));
    let line = String::from_utf8_lossy(&table.stdout).lines().find(|l| l.starts_with("blocklist")).map(str::to_owned);
    let line = line.unwrap_or_else(|| panic!("consumer listed: {}", text(&table)));
    assert!(line.contains(&checkpoint.to_string()) && line.contains(" 3 ") && line.contains("free"), "{line}");
    let json = palisade(&["consumers", "--json"], &env);
    let rows: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(rows[0]["name"], "blocklist");
    assert_eq!(rows[0]["lag"], 3);
    assert_eq!(rows[0]["filter"]["kinds"][0], "blocked");
    let deleted = palisade(&["consumers", "--delete", "blocklist"], &env);
    assert!(deleted.status.success() && text(&deleted).contains("deleted consumer blocklist"), "{}", text(&deleted));
    let empty = palisade(&["consumers"], &env);
    assert!(text(&empty).contains("(no consumers)"), "{}", text(&empty));
    runtime.block_on(async {
        let config = palisade::pg_sqlx::PgConfig::new(&url, ns.clone());
        palisade::pg_sqlx::PgBackend::connect_without_migrating(&config).await.unwrap().drop_namespace().await.unwrap();
    });
}
