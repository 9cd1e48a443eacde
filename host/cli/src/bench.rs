//! `palisade bench`: decisions per second and latency percentiles for one authorizer and one
//! request, through the same pipeline `palisade serve` uses, with warm instances and with a
//! fresh instance per request, measured side by side in one run.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::Serialize;

use super::harness::{read_config, read_request};
use palisade_core::AccessRequest;
use palisade_core::{AppSpec, Runtime, Timing};
use palisade_core::{Capabilities, Capability, Isolation, PluginSetup};
use palisade_core::{Engine, EngineConfig};

/// Measure decision latency and throughput for a plugin and a request.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// The authorizer: a .wasm component file, or a reference plugin name (acp).
    #[arg(long)]
    plugin: String,
    /// The plugin's configuration (JSON file). Default: `{}`.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The request (JSON file), as for `palisade eval`.
    #[arg(long)]
    request: PathBuf,
    /// Capabilities to grant, comma-separated: kv, groups, crypto, location.
    #[arg(long, value_delimiter = ',')]
    grant: Vec<Capability>,
    /// Timed decisions per isolation mode (after a warm-up of a tenth as many).
    #[arg(long, default_value_t = 100_000)]
    iterations: u32,
    /// Which isolation modes to measure.
    #[arg(long, value_enum, default_value_t = Modes::Both)]
    isolation: Modes,
    /// Print the results as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Modes {
    Warm,
    Fresh,
    Both,
}

/// Latency figures for one isolation mode.
#[derive(Debug, Serialize)]
pub struct BenchResult {
    pub isolation: Isolation,
    pub iterations: u32,
    pub decision: String,
    pub median_ns: u64,
    pub p90_ns: u64,
    pub p99_ns: u64,
    pub mean_ns: u64,
    pub decisions_per_second: u64,
}

pub fn run(args: BenchArgs) -> anyhow::Result<bool> {
    if args.iterations == 0 {
        bail!("--iterations must be at least 1");
    }
    let config_json = read_config(args.config.as_deref())?;
    let mut request = read_request(&args.request)?;
    request
        .request_time
        .get_or_insert_with(palisade_core::now_unix);
    let bytes = match palisade_artifacts::reference(&args.plugin) {
        Some(bytes) => bytes.to_vec(),
        None => std::fs::read(&args.plugin)
            .with_context(|| format!("cannot read plugin {}", args.plugin))?,
    };

    // One plugin, one call at a time: a small pool is all it needs, and it keeps the
    // address-space reservation small enough for profilers such as valgrind.
    let runtime = Runtime::new(Engine::new(EngineConfig::default().pool_instances(64))?)?;
    let modes: &[Isolation] = match args.isolation {
        Modes::Warm => &[Isolation::Warm],
        Modes::Fresh => &[Isolation::FreshPerRequest],
        Modes::Both => &[Isolation::Warm, Isolation::FreshPerRequest],
    };
    let mut results = Vec::new();
    for &isolation in modes {
        let app = format!("bench-{isolation:?}").to_lowercase();
        let mut setup = PluginSetup::new("plugin", config_json.clone());
        setup.capabilities = args.grant.iter().copied().collect::<Capabilities>();
        let mut spec = AppSpec::new(&app).plugin(setup, bytes.clone());
        spec.isolation = isolation;
        runtime.install(spec)?;
        let mut request = request.clone();
        request.app = app;
        results.push(measure(&runtime, &request, isolation, args.iterations));
    }

    if args.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    } else {
        println!(
            "{:<18} {:>10} {:>10} {:>10} {:>10} {:>14}  decision",
            "isolation", "median", "p90", "p99", "mean", "decisions/s"
        );
        for result in &results {
            println!(
                "{:<18} {:>10} {:>10} {:>10} {:>10} {:>14}  {}",
                format!("{:?}", result.isolation),
                show(result.median_ns),
                show(result.p90_ns),
                show(result.p99_ns),
                show(result.mean_ns),
                result.decisions_per_second,
                result.decision
            );
        }
        if let [warm, fresh] = results.as_slice() {
            println!(
                "fresh / warm median: {:.1}x",
                fresh.median_ns as f64 / warm.median_ns.max(1) as f64
            );
        }
    }
    Ok(true)
}

/// Times `iterations` decisions one by one after a warm-up. The pipeline times only the
/// whole decision ([`Timing::Total`]), as `palisade serve` does unless asked to explain: the
/// per-stage clock reads are not what a deployed decision pays.
pub fn measure(
    runtime: &Runtime,
    request: &AccessRequest,
    isolation: Isolation,
    iterations: u32,
) -> BenchResult {
    for _ in 0..(iterations / 10).max(10) {
        std::hint::black_box(runtime.is_authorized_timed(request, Timing::Total));
    }
    let mut samples = Vec::with_capacity(iterations as usize);
    let started = Instant::now();
    let mut last = None;
    for _ in 0..iterations {
        let call = Instant::now();
        let decision = runtime.is_authorized_timed(std::hint::black_box(request), Timing::Total);
        samples.push(call.elapsed());
        last = Some(decision);
    }
    let elapsed = started.elapsed();
    samples.sort_unstable();
    let at = |fraction: f64| samples[((samples.len() - 1) as f64 * fraction) as usize];
    let decision = last
        .map(|decision| format!("{:?}: {}", decision.effect, decision.reason))
        .unwrap_or_default();
    BenchResult {
        isolation,
        iterations,
        decision,
        median_ns: nanos(at(0.5)),
        p90_ns: nanos(at(0.9)),
        p99_ns: nanos(at(0.99)),
        mean_ns: nanos(elapsed / iterations),
        decisions_per_second: (f64::from(iterations) / elapsed.as_secs_f64()) as u64,
    }
}

fn nanos(duration: Duration) -> u64 {
    duration.as_nanos() as u64
}

fn show(nanos: u64) -> String {
    if nanos >= 10_000 {
        format!("{:.1} µs", nanos as f64 / 1000.0)
    } else {
        format!("{nanos} ns")
    }
}
