//! The `palisade` command. `anyhow` lives here, at the edge; the library's errors are enums.

mod eval;
mod harness;
mod test;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use harness::{Answer, Harness, HostSetup, LoadedFile};

/// Palisade: a security runtime for M2M/IoT gateways. Sandboxed WebAssembly plugins make
/// each application's authentication and authorization decisions.
#[derive(Debug, Parser)]
#[command(name = "palisade", version, about, long_about = None)]
pub struct Cli {
    /// Log filter (e.g. `info`, `palisade=debug`); the RUST_LOG variable works too.
    #[arg(long, global = true, default_value = "warn")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// One decision from a plugin, its configuration and a request.
    Eval(eval::EvalArgs),
    /// Run a plugin's test cases (TOML files) and print a pass/fail table.
    Test(test::TestArgs),
}

/// Runs the command line; the exit code is 0 on success, 1 when a check failed (a failing
/// test case, a deny with --fail-on-deny), 2 when the command itself could not run.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log);
    let outcome = match cli.command {
        Command::Eval(args) => eval::run(args),
        Command::Test(args) => test::run(args),
    };
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn init_logging(default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
