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
//! separated CIDRs) makes it believe `X-Forwarded-For` from those proxies.

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
    let addr = std::env::var("GATEKEEPER_ADDR").unwrap_or_else(|_| "127.0.0.1:8080".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("gatekeeper listening on http://{}", listener.local_addr()?);
    app::serve(listener, app::router(stores, settings).await?).await?;
    Ok(())
}
