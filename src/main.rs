//! The `palisade` command line.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "palisade", version, about = "Persistence adapters for security platforms")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Simulate a gatekeeper and a threat-intel platform on the stores and print what they saw.
    Demo(palisade::demo::DemoArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Demo(args) => {
            let stores = palisade::Stores::memory(palisade::Namespace::new("demo")?);
            let report = palisade::demo::run(&stores, &args).await?;
            print!("{report}");
        }
    }
    Ok(())
}
