//! `palisade group`: group authentication tools (SER-027/028).

use crate::group::{simulate, Mode, SimConfig, SimPhase, SimReport};
use anyhow::Context as _;
use std::io::IsTerminal as _;

/// Group authentication of devices (SER-027 represented, SER-028 independent).
#[derive(Debug, clap::Args)]
pub struct GroupArgs {
    #[command(subcommand)]
    command: GroupCommand,
}

#[derive(Debug, clap::Subcommand)]
enum GroupCommand {
    /// Run device, gateway and server in one process and measure a group authentication,
    /// with batch verification, one-by-one verification and one session per device.
    Simulate(SimulateArgs),
}

#[derive(Debug, clap::Args)]
struct SimulateArgs {
    /// Number of devices in the group (1..=16384).
    #[arg(long, default_value_t = 256)]
    devices: usize,
    /// `represented` (the gateway vouches for the group, SER-027) or `independent` (each
    /// device gets its own keys with the server, SER-028).
    #[arg(long, default_value = "independent")]
    mode: Mode,
    /// How many members are forged (claim a member's id with another key).
    #[arg(long, default_value_t = 0)]
    forged: usize,
    /// Repeat each run this many times and keep the fastest timings.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Skip the one-session-per-device comparison (on by default up to 4096 devices).
    #[arg(long)]
    no_per_device: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `palisade group ...`.
pub fn run(args: GroupArgs) -> anyhow::Result<()> {
    match args.command {
        GroupCommand::Simulate(a) => simulate_cmd(a),
    }
}

fn simulate_cmd(a: SimulateArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        a.forged <= a.devices,
        "--forged {} exceeds --devices {}",
        a.forged,
        a.devices
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("system clock before 1970")?
        .as_secs();
    let cfg = SimConfig {
        devices: a.devices,
        mode: a.mode,
        forged: a.forged,
        now,
        device_by_device: !a.no_per_device && a.devices <= 4096,
        rounds: a.rounds,
    };
    let visible = !a.json && std::io::stderr().is_terminal();
    let mut bar: Option<(SimPhase, indicatif::ProgressBar)> = None;
    let mut progress = |phase: SimPhase, done: usize, total: usize| {
        if !visible {
            return;
        }
        if bar.as_ref().is_none_or(|(p, _)| *p != phase) {
            if let Some((_, old)) = bar.take() {
                old.finish_and_clear();
            }
            bar = Some((phase, progress_bar(phase, total)));
        }
        if let Some((_, b)) = &bar {
            b.set_position(done as u64);
        }
    };
    let report = simulate(&cfg, &mut progress);
    if let Some((_, b)) = bar {
        b.finish_and_clear();
    }
    let report = report.context("group simulation failed")?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(())
}

/// The progress bar of one phase, on stderr. It is only made when stderr is a terminal and
/// the output is not JSON, so that scripts and pipes see the report alone.
fn progress_bar(phase: SimPhase, total: usize) -> indicatif::ProgressBar {
    let what = match phase {
        SimPhase::Setup => "generating device keys",
        SimPhase::Batch => "group run, batch verification",
        SimPhase::OneByOne => "group run, one-by-one verification",
        SimPhase::DeviceByDevice => "one session per device",
    };
    let style =
        indicatif::ProgressStyle::with_template("{msg:<35} [{bar:20}] {pos}/{len} {elapsed}")
            .expect("the template is valid")
            .progress_chars("=> ");
    indicatif::ProgressBar::with_draw_target(
        Some(total as u64),
        indicatif::ProgressDrawTarget::stderr(),
    )
    .with_style(style)
    .with_message(what)
}

fn print_report(r: &SimReport) {
    let mode = match r.mode {
        Mode::Represented => "represented (SER-027)",
        Mode::Independent => "independent (SER-028)",
    };
    println!(
        "group of {} devices, {mode}, {} forged",
        r.devices,
        r.forged.len()
    );
    if !r.forged.is_empty() {
        println!("forged members: {}", r.forged.join(", "));
    }
    println!();
    println!(
        "{:<17} {:>6} {:>8} {:>10} {:>13} {:>13} {:>12} {:>10} {:>12}",
        "run",
        "auth",
        "rejected",
        "devices/s",
        "server dev/s",
        "gateway dev/s",
        "WAN RTT/dev",
        "WAN B/dev",
        "local B/dev"
    );
    for run in &r.runs {
        println!(
            "{:<17} {:>6} {:>8} {:>10.0} {:>13.0} {:>13.0} {:>12.4} {:>10.1} {:>12.1}",
            run.name,
            run.authenticated,
            run.rejected.len(),
            run.devices_per_second,
            run.server_devices_per_second,
            run.gateway_devices_per_second,
            run.wan_round_trips_per_device,
            run.wan_bytes_per_device,
            run.local_bytes_per_device,
        );
    }
    if let Some(first) = r.runs.first() {
        if !first.rejected.is_empty() {
            println!();
            println!("rejected:");
            for (d, why) in &first.rejected {
                println!("  {d}: {why}");
            }
        }
    }
    let verifier = match r.mode {
        Mode::Represented => "gateway",
        Mode::Independent => "server",
    };
    if let (Some(b), Some(o)) = (
        r.runs.iter().find(|x| x.name == "batch"),
        r.runs.iter().find(|x| x.name == "one_by_one"),
    ) {
        let rate = |x: &crate::group::SimRun| match r.mode {
            Mode::Represented => x.gateway_devices_per_second,
            Mode::Independent => x.server_devices_per_second,
        };
        println!();
        println!(
            "{verifier} (verifies the member signatures): batch {:.0} devices/s, one-by-one {:.0} devices/s ({:.2}x)",
            rate(b),
            rate(o),
            rate(b) / rate(o).max(1e-9)
        );
    }
}
