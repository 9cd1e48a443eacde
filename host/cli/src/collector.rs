//! `palisade collector --config collector.toml`: the fleet's decision-log collector (issue
//! #17): HTTPS with required client certificates, each gateway's batches checked against its
//! audit key on arrival and stored in PostgreSQL (`palisade_collector`).

use std::path::PathBuf;

use anyhow::Context;

/// Run the decision-log collector.
#[derive(Debug, clap::Args)]
pub struct CollectorArgs {
    /// The collector's configuration file (listen, database_url, [tls], [[gateway]]).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
}

/// Runs until SIGINT or SIGTERM.
pub fn run(args: CollectorArgs) -> anyhow::Result<bool> {
    let config = palisade_collector::CollectorConfig::load(&args.config)?;
    let runtime = tokio::runtime::Runtime::new().context("tokio runtime")?;
    runtime.block_on(palisade_collector::run(&config))?;
    Ok(true)
}
