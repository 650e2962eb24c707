//! The `palisade` command line: `demo`, `health`, `check`, `migrate`, `bench`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use palisade::{Config, Stores};

mod bench;
mod check;
mod consumers;
mod demo;

#[derive(Parser)]
#[command(name = "palisade", version, about = "Persistence adapters for security platforms")]
struct Cli {
    /// TOML configuration file (default: $PALISADE_CONFIG; environment variables override it).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Simulate a gatekeeper and a threat-intel platform on the configured stores and print what they saw.
    Demo(demo::DemoArgs),
    /// Connect to the configured stores and print each one's status; exits non-zero if any is down.
    Health {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Run the conformance suite against the configured stores in a throwaway namespace.
    Check(check::CheckArgs),
    /// Apply the SQL migrations to every configured Postgres store (`--dry-run`: only show their state).
    Migrate {
        /// Only show which migrations are applied and which are pending.
        #[arg(long)]
        dry_run: bool,
        /// Print what runtime role ROLE needs (Postgres grants, a Redis ACL
        /// rule, a Mongo role) to run with `migrate = false`; changes nothing.
        #[arg(long, value_name = "ROLE", conflicts_with = "dry_run")]
        print_grants: Option<String>,
    },
    /// Benchmark the configured stores against their raw drivers, in a throwaway namespace.
    Bench(bench::BenchArgs),
    /// List the event store's durable consumers with their checkpoint, lease and lag (`--delete NAME` removes one).
    Consumers(consumers::ConsumersArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("palisade: {e}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> palisade::Result<ExitCode> {
    let config = Config::load(cli.config.as_deref())?;
    match cli.command {
        Command::Demo(args) => {
            let ns = demo::namespace(&args, &config)?;
            // A random namespace is the demo's own: it creates its schema
            // whatever `migrate` says.
            let config = if args.namespace.is_none() { Config { migrate: true, ..config } } else { config };
            let stores = Stores::connect_in(&config, &ns).await?;
            let report = demo::run(&stores, &args).await?;
            print!("{report}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Health { json } => {
            let statuses = palisade::probe(&config).await;
            if json {
                println!("{}", serde_json::to_string_pretty(&statuses).map_err(palisade::Error::from)?);
            } else {
                println!("{:<11} {:<10} {:<9} url / detail", "store", "backend", "status");
                for s in &statuses {
                    println!("{:<11} {:<10} {:<9} {}", s.store.as_str(), s.backend, s.status, s.url);
                    for line in s.detail.iter().cloned().chain(s.pressure()).chain(s.notes.iter().cloned()) {
                        println!("{:<32}{line}", "");
                    }
                }
            }
            Ok(if statuses.iter().all(|s| s.is_up()) { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Command::Migrate { print_grants: Some(role), .. } => {
            print!("{}", palisade::migrate::grants(&config, &role)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate { dry_run, print_grants: None } => {
            print!("{}", palisade::migrate::run(&config, dry_run).await?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Check(args) => {
            let report = check::run(&config, &args).await?;
            print!("{}", report.render(args.json)?);
            Ok(if report.failed() == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Command::Consumers(args) => {
            let stores = Stores::connect(&config).await?;
            print!("{}", consumers::run(&stores, &args).await?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(args) => {
            let report = bench::run(&config, &args).await?;
            print!("{}", if args.json { report.render_json()? } else { report.render_table() });
            if let Some(path) = &args.svg {
                std::fs::write(path, report.render_svg()).map_err(|e| {
                    palisade::Error::new(palisade::ErrorKind::Config, format!("cannot write {}", path.display()))
                        .with_source(e)
                })?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
