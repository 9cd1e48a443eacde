//! `palisade-collector`: the decision-log collector and the gateway's shipper as processes.
//!
//! - `palisade-collector serve --config collector.toml`
//! - `palisade-collector ship --config ship.toml`
//!
//! `palisade collector` runs the same service; `palisade audit verify --collector` verifies
//! a gateway's chain from the database.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use palisade_collector::{server, shipper::Shipper, CollectorConfig, ShipConfig};

#[derive(Parser)]
#[command(
    name = "palisade-collector",
    about = "Central decision logs for a fleet of Palisade gateways"
)]
enum Command {
    /// Run the collector (HTTPS with client certificates, PostgreSQL storage).
    Serve {
        /// The collector's configuration file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Ship a gateway's audit log to the collector, from where it stopped.
    Ship {
        /// The shipper's configuration file.
        #[arg(long)]
        config: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Runtime::new().context("tokio runtime")?;
    match Command::parse() {
        Command::Serve { config } => runtime.block_on(async {
            let config = CollectorConfig::load(&config)?;
            server::run(&config).await?;
            Ok(())
        }),
        Command::Ship { config } => runtime.block_on(async {
            let config = ShipConfig::load(&config)?;
            let shipper = Shipper::new(config)?;
            let (stop, stopped) = tokio::sync::watch::channel(false);
            let task = tokio::spawn(shipper.run(stopped));
            println!("shipper running");
            shutdown_signal().await;
            let _ = stop.send(true);
            let _ = task.await;
            Ok(())
        }),
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
