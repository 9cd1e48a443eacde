//! Group-authentication server work in a form callgrind can count (BENCHMARKS.md, group rows):
//! wall time on a shared 2-core machine is too noisy to compare a few percent, instruction
//! counts are not. Each part runs in one function that is never inlined, so callgrind can
//! collect inside it alone while the untimed preparation (device answers, gateway relay) runs
//! uncounted:
//!
//! ```text
//! cargo build --release -p palisade-bench --bins
//! valgrind --tool=callgrind --toggle-collect='*GroupBench*serve*' \
//!     target/release/group_counts serve --rounds 3
//! valgrind --tool=callgrind --toggle-collect='*group_auth*wire_work*' \
//!     target/release/group_counts wire --rounds 3
//! ```
//!
//! Instructions per round are callgrind's total divided by `--rounds` (the tool prints what
//! it ran). Parts: `serve` (the HTTP handler's whole step: decode, complete, encode), `wire`
//! (its encoding and decoding alone), `verify` (`Server::complete_independent` for every
//! gateway's round; `--one-by-one` for the baseline).
//!
//! `verify` also prints the server thread's CPU time per round (`CLOCK_THREAD_CPUTIME_ID`)
//! and devices per CPU-second: on a loaded machine a thread's CPU time, unlike wall time,
//! does not count the time it waited for a core, so this is devices per second per core.

use anyhow::{bail, Context};
use palisade_bench::group_auth::{wire_work, GroupBench};
use palisade_group::Verification;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let part = args.next().context("usage: group_counts serve|wire|verify [--devices N] [--gateways N] [--rounds N] [--one-by-one]")?;
    let (mut devices, mut gateways, mut rounds, mut how) = (256, 1, 3, Verification::Batch);
    while let Some(arg) = args.next() {
        let mut number = |name: &str| -> anyhow::Result<usize> {
            args.next()
                .with_context(|| format!("{name} needs a number"))?
                .parse()
                .with_context(|| format!("{name} needs a number"))
        };
        match arg.as_str() {
            "--devices" => devices = number("--devices")?,
            "--gateways" => gateways = number("--gateways")?,
            "--rounds" => rounds = number("--rounds")?,
            "--one-by-one" => how = Verification::OneByOne,
            other => bail!("unknown argument {other:?}"),
        }
    }
    let mut bench = GroupBench::fleet(gateways, devices)?;
    bench.set_verification(how);
    let mut produced = 0usize;
    match part.as_str() {
        "serve" => {
            anyhow::ensure!(gateways == 1, "serve runs one gateway's round");
            for _ in 0..rounds {
                let round = bench.prepare()?;
                let (outcome, bytes) = bench.serve(&round[0])?;
                anyhow::ensure!(
                    outcome.sessions.len() == devices,
                    "every device authenticated"
                );
                produced += bytes.len();
            }
        }
        "wire" => {
            anyhow::ensure!(gateways == 1, "wire runs one gateway's round");
            // The server answer `wire_work` encodes: one of the same size, from a round
            // served before any is counted (`serve` is not collected in this part).
            let round = bench.prepare()?;
            let (outcome, _) = bench.serve(&round[0])?;
            anyhow::ensure!(
                outcome.sessions.len() == devices,
                "every device authenticated"
            );
            let confirmations = outcome.confirmations;
            for _ in 0..rounds {
                let round = bench.prepare()?;
                produced += wire_work(&round[0], &confirmations);
            }
        }
        "verify" => {
            let mut cpu = Vec::with_capacity(rounds);
            for _ in 0..rounds {
                let prepared = bench.prepare()?;
                let started = thread_cpu_seconds();
                let outcomes = bench.verify(&prepared);
                cpu.push(thread_cpu_seconds() - started);
                let outcomes = outcomes?;
                let sessions: usize = outcomes.iter().map(|o| o.sessions.len()).sum();
                anyhow::ensure!(sessions == bench.devices(), "every device authenticated");
                produced += sessions;
            }
            cpu.sort_by(f64::total_cmp);
            let median = cpu[cpu.len() / 2];
            println!(
                "verify: server CPU per round {:.1} ms (median of {rounds}: {}), {:.0} devices per CPU-second",
                median * 1e3,
                cpu.iter()
                    .map(|s| format!("{:.1}", s * 1e3))
                    .collect::<Vec<_>>()
                    .join(" / "),
                bench.devices() as f64 / median
            );
        }
        other => bail!("unknown part {other:?} (serve, wire or verify)"),
    }
    println!(
        "{part}: {rounds} rounds of {gateways} x {devices} devices ({how:?}); {produced} produced"
    );
    Ok(())
}

/// This thread's CPU time, in seconds.
fn thread_cpu_seconds() -> f64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid, writable timespec; the clock id is a constant Linux supports.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
}
