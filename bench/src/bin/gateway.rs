//! Gateway-level benchmarks (issue #6): the real `palisade serve` binary, measured from the
//! outside, against the performance targets of BENCHMARKS.md.
//!
//! ```text
//! cargo build --release -p palisade -p palisade-bench
//! target/release/gateway all            # boot, memory, http, isolation + a summary
//! target/release/gateway boot --json    # one scenario, as JSON
//! ```
//!
//! - `boot`: spawn to serving with 100 apps, cold (empty data dir) vs cached, and a gateway
//!   with no apps in the same run;
//! - `memory`: resident size with 1,000 apps, after boot and after a decision each;
//! - `http`: `wrk` against `POST /v1/decide` and the no-op endpoint of the same gateway;
//! - `isolation`: a good app's latency alone and beside a hostile app (in process).
//!
//! The gateway is spawned on ports it picks itself (`--listen 127.0.0.1:0`) with a data dir
//! in a temp folder; every process and folder a scenario creates is gone when it ends,
//! whether it succeeded, failed or was interrupted ([`process`]). Each scenario stops by
//! itself. Progress goes to stderr; the tables (or with `--json`, JSON) to stdout. The exit
//! status is 0 when every scenario ran, whether or not it met its targets (the tables say
//! MET or MISSED), 1 when `all` could not run one of them, 2 when the one asked for failed.

// A crate root looks for its modules beside itself (src/bin/), hence the paths.
#[path = "gateway/boot.rs"]
mod boot;
#[path = "gateway/config.rs"]
mod config;
#[path = "gateway/http.rs"]
mod http;
#[path = "gateway/isolation.rs"]
mod isolation;
#[path = "gateway/memory.rs"]
mod memory;
#[path = "gateway/process.rs"]
mod process;
#[path = "gateway/report.rs"]
mod report;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use serde::Serialize;

use report::Target;

#[derive(Debug, Parser)]
#[command(about = "Gateway-level benchmarks: boot, memory, HTTP throughput, isolation")]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
    /// The gateway binary. Default: `palisade` next to this tool (target/release/).
    #[arg(long, global = true, value_name = "PATH")]
    palisade: Option<PathBuf>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    /// boot: apps in the gateway.
    #[arg(long, global = true, default_value_t = 100)]
    boot_apps: usize,
    /// boot: runs of (cold, cached, cache-cleared) starts; medians are reported.
    #[arg(long, global = true, default_value_t = 3)]
    runs: usize,
    /// memory: apps in the gateway.
    #[arg(long, global = true, default_value_t = 1000)]
    memory_apps: usize,
    /// http: wrk threads.
    #[arg(long, global = true, default_value_t = 1)]
    threads: u32,
    /// http: wrk keep-alive connections.
    #[arg(long, global = true, default_value_t = 16)]
    connections: u32,
    /// http: seconds of each measured wrk run.
    #[arg(long, global = true, default_value_t = 10)]
    duration: u64,
    /// http: seconds of the warm-up run before each measured one.
    #[arg(long, global = true, default_value_t = 2)]
    warmup: u64,
    /// isolation: good-app decisions measured per case (at least; each case also runs >= 3 s).
    #[arg(long, global = true, default_value_t = 100_000)]
    decisions: usize,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// Spawn to serving with many apps: cold vs cached artifact cache, and without apps.
    Boot,
    /// Resident memory with many apps, after boot and after one decision each.
    Memory,
    /// wrk against POST /v1/decide and POST /v1/noop on one gateway.
    Http,
    /// A good app's latency alone and beside a hostile app (loop, memory).
    Isolation,
    /// All four, then one summary of every target.
    All,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// One scenario's outcome: its result as JSON, its table and its targets.
struct Outcome {
    json: serde_json::Value,
    table: report::Table,
    targets: Vec<Target>,
}

fn outcome<T: Serialize>(
    result: &T,
    table: report::Table,
    targets: Vec<Target>,
) -> anyhow::Result<Outcome> {
    Ok(Outcome {
        json: serde_json::to_value(result)?,
        table,
        targets,
    })
}

/// Runs the chosen scenarios; `Ok(false)` when one could not run (`all` goes on with the
/// others and reports it as ERROR).
fn run(cli: &Cli) -> anyhow::Result<bool> {
    process::install_cleanup()?;
    let names: &[&'static str] = match cli.scenario {
        Scenario::Boot => &["boot"],
        Scenario::Memory => &["memory"],
        Scenario::Http => &["http"],
        Scenario::Isolation => &["isolation"],
        Scenario::All => &["boot", "memory", "http", "isolation"],
    };
    let needs_gateway = names.iter().any(|name| *name != "isolation");
    let palisade = if needs_gateway {
        Some(palisade_binary(cli)?)
    } else {
        None
    };
    let mut json = serde_json::Map::new();
    let mut targets = Vec::new();
    let mut failures = Vec::new();
    for &name in names {
        let result = match (name, palisade.as_deref()) {
            ("boot", Some(palisade)) => boot::run(palisade, cli.boot_apps, cli.runs)
                .and_then(|r| outcome(&r, r.table(), r.targets())),
            ("memory", Some(palisade)) => memory::run(palisade, cli.memory_apps)
                .and_then(|r| outcome(&r, r.table(), r.targets())),
            ("http", Some(palisade)) => http::run(
                palisade,
                http::Load {
                    threads: cli.threads,
                    connections: cli.connections,
                    duration_s: cli.duration,
                    warmup_s: cli.warmup,
                },
            )
            .and_then(|r| outcome(&r, r.table(), r.targets())),
            ("isolation", _) => {
                isolation::run(cli.decisions).and_then(|r| outcome(&r, r.table(), r.targets()))
            }
            _ => unreachable!("every scenario that spawns the gateway has its path"),
        };
        match result {
            Ok(outcome) => {
                if !cli.json {
                    println!("{}", outcome.table.render());
                }
                json.insert(name.into(), outcome.json);
                targets.extend(outcome.targets);
            }
            Err(error) => {
                if names.len() > 1 {
                    eprintln!("{name}: error: {error:#}");
                }
                failures.push((name, format!("{error:#}")));
            }
        }
    }
    if cli.json {
        json.insert("targets".into(), serde_json::to_value(&targets)?);
        let errors: serde_json::Map<String, serde_json::Value> = failures
            .iter()
            .map(|(name, error)| (name.to_string(), error.clone().into()))
            .collect();
        json.insert("errors".into(), errors.into());
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else if matches!(cli.scenario, Scenario::All) {
        println!("{}", report::summary(&targets, &failures).render());
    } else {
        for target in &targets {
            println!(
                "target: {} {} -> {} {}",
                target.name,
                target.target,
                target.measured,
                if target.met { "MET" } else { "MISSED" }
            );
        }
    }
    if let [(_, error)] = failures.as_slice() {
        if names.len() == 1 {
            anyhow::bail!("{error}");
        }
    }
    Ok(failures.is_empty())
}

/// `--palisade`, else `palisade` beside this executable (both are built into
/// target/release/ by `cargo build --release -p palisade -p palisade-bench`).
fn palisade_binary(cli: &Cli) -> anyhow::Result<PathBuf> {
    let path = match &cli.palisade {
        Some(path) => path.clone(),
        None => std::env::current_exe()
            .context("locating this executable")?
            .parent()
            .unwrap_or(Path::new("."))
            .join(format!("palisade{}", std::env::consts::EXE_SUFFIX)),
    };
    anyhow::ensure!(
        path.is_file(),
        "{} does not exist: build it with `cargo build --release -p palisade` or pass --palisade PATH",
        path.display()
    );
    Ok(path)
}
