//! `gatekeeper`: an axum service on all four Palisade stores — sessions via
//! tower-sessions, distributed rate limits, security events for every block,
//! reputation, analysis documents with a schema, health and a live event tail.
//!
//! ```text
//! cargo run -p palisade --features tower --example gatekeeper
//! ```
//!
//! It runs on memory by default; the usual configuration picks servers
//! (`PALISADE_CONFIG`, `PALISADE_EVENTS_URL`, …; build with their features,
//! e.g. `--features tower,pg-sqlx,redis-rs`). `GATEKEEPER_ADDR` sets the
//! address (default `127.0.0.1:8080`); `GATEKEEPER_TRUSTED_PROXIES` (comma-
//! separated CIDRs) makes it believe `X-Forwarded-For` from those proxies;
//! `GATEKEEPER_ADMIN_TOKEN` turns on `/live` for clients that send it as a
//! bearer token. Ctrl-C stops it after the requests in flight, and the
//! security events still queued are appended before it exits.

mod app;

use palisade::tower::ClientIp;
use palisade::{Config, Stores};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();
    let config = Config::load(None)?;
    let stores = Stores::connect(&config).await?;
    let mut settings = app::Settings::default();
    if let Ok(list) = std::env::var("GATEKEEPER_TRUSTED_PROXIES") {
        let nets = list.split(',').map(|s| s.trim().parse()).collect::<Result<Vec<ipnet::IpNet>, _>>()?;
        settings.client_ip = ClientIp::behind(nets);
    }
    settings.admin_token = std::env::var("GATEKEEPER_ADMIN_TOKEN").ok().filter(|t| !t.is_empty());
    let addr = std::env::var("GATEKEEPER_ADDR").unwrap_or_else(|_| "127.0.0.1:8080".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("gatekeeper listening on http://{}", listener.local_addr()?);
    let gatekeeper = app::build(stores, settings).await?;
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    app::serve(listener, gatekeeper.router, shutdown).await?;
    gatekeeper.sink.flush().await;
    let stats = gatekeeper.sink.stats();
    println!(
        "stopped; security events: {} appended, {} refused, {} failed",
        stats.appended,
        stats.overflowed + stats.invalid,
        stats.failed
    );
    Ok(())
}
