//! Isolation: does a hostile app slow a good one down?
//!
//! In process, on one [`Runtime`] (one engine, one epoch ticker, one instance pool), as in the
//! gateway: the good app runs `acp` (warm isolation, default limits) and is asked at least
//! `decisions` times and for at least 3 s (so that an attack with a 10 ms deadline runs a few
//! hundred times) from this thread, each call timed. That is done alone, then while one attacker
//! thread calls a hostile app (the `plugins/hostile` fixture) in a loop, as fast as the
//! runtime answers it:
//!
//! - `loop`: spins until its 10 ms deadline traps it;
//! - `memory`: allocates and writes 1 MiB blocks until its 16 MiB cap refuses one.
//!
//! Each attack runs twice: with the attacker's quarantine off (`quarantine_after` =
//! u32::MAX), so that every call really runs the attack, and with the default quarantine,
//! which denies most calls without running them after the fifth failure. Issue #18's target
//! (the good app's p99 within 1.2× of alone) holds for all four. Each attacker call is
//! classified by its deny reason (time limit, memory limit, quarantine, other) so the report
//! shows the attack ran.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use palisade_core::{
    AccessRequest, AppSpec, Engine, EngineConfig, Operation, PluginSetup, Runtime, SandboxLimits,
};
use serde::Serialize;

use super::report::{format_ms, format_us, millis, Percentiles, Table, Target};

/// The hostile app's deadline: short, so an attack ends quickly and often.
const ATTACK_DEADLINE: Duration = Duration::from_millis(10);
/// How long the attacker runs before the good app is measured (steady state).
const ATTACK_HEAD_START: Duration = Duration::from_millis(200);
/// The shortest measurement per case, whatever `decisions` says.
const MIN_CASE_TIME: Duration = Duration::from_secs(3);
/// Issue #18's bound on the good app's p99 beside an attacker, against its p99 alone.
const TARGET_P99_RATIO: f64 = 1.2;

#[derive(Debug, Default, Serialize)]
pub struct Attacker {
    pub calls: u64,
    pub denied_time_limit: u64,
    pub denied_memory_limit: u64,
    pub denied_quarantined: u64,
    pub other: u64,
    /// One reason of the `other` kind, if any (to see what it was).
    pub other_example: Option<String>,
    pub mean_call_ms: f64,
}

#[derive(Debug, Serialize)]
pub struct Case {
    pub name: &'static str,
    pub good: Percentiles,
    /// Good-app decisions that were not permits (must be 0).
    pub wrong: u64,
    pub attacker: Option<Attacker>,
}

#[derive(Debug, Serialize)]
pub struct IsolationResult {
    pub decisions: usize,
    pub attack_deadline_ms: u64,
    pub cases: Vec<Case>,
}

pub fn run(decisions: usize) -> anyhow::Result<IsolationResult> {
    let runtime = Arc::new(Runtime::new(Engine::new(EngineConfig::default())?)?);
    let policy = r#"{"policies":[{"id":"good","pv":{"acr":[{"acor":["CAE1"],"acop":2}]}}]}"#;
    runtime.install(
        AppSpec::new("good").plugin(PluginSetup::new("acp", policy), palisade_artifacts::ACP),
    )?;
    let hostile = std::fs::read(palisade_artifacts::HOSTILE_PATH)?;
    let no_quarantine = SandboxLimits::default()
        .deadline(ATTACK_DEADLINE)
        .quarantine_after(u32::MAX);
    let default_quarantine = SandboxLimits::default().deadline(ATTACK_DEADLINE);
    for (name, attack, limits) in [
        ("attack-loop", "loop", &no_quarantine),
        ("attack-memory", "memory", &no_quarantine),
        ("attack-loop-quarantined", "loop", &default_quarantine),
        ("attack-memory-quarantined", "memory", &default_quarantine),
    ] {
        let mut spec = AppSpec::new(name).plugin(
            PluginSetup::new("hostile", format!(r#"{{"attack":"{attack}"}}"#)),
            hostile.clone(),
        );
        spec.limits = limits.clone();
        runtime.install(spec)?;
    }
    let mut cases = Vec::new();
    for (name, attacker) in [
        ("alone", None),
        ("+ attacker: loop, no quarantine", Some("attack-loop")),
        ("+ attacker: memory, no quarantine", Some("attack-memory")),
        (
            "+ attacker: loop, default quarantine",
            Some("attack-loop-quarantined"),
        ),
        (
            "+ attacker: memory, default quarantine",
            Some("attack-memory-quarantined"),
        ),
    ] {
        eprintln!("isolation: {name} ({decisions} decisions)");
        cases.push(measure(&runtime, name, decisions, attacker)?);
    }
    Ok(IsolationResult {
        decisions,
        attack_deadline_ms: ATTACK_DEADLINE.as_millis() as u64,
        cases,
    })
}

fn request(app: &str) -> AccessRequest {
    AccessRequest::new(
        app,
        "CAE1",
        Operation::Retrieve,
        format!("/cse-in/{app}/lamp"),
    )
}

fn measure(
    runtime: &Arc<Runtime>,
    name: &'static str,
    decisions: usize,
    attacker: Option<&'static str>,
) -> anyhow::Result<Case> {
    let good = request("good");
    let first = runtime.is_authorized(&good);
    if !first.is_permit() {
        bail!("the good app does not permit: {}", first.reason);
    }
    for _ in 0..decisions.min(5_000) {
        runtime.is_authorized(&good);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let thread = attacker.map(|app| {
        let runtime = runtime.clone();
        let stop = stop.clone();
        std::thread::spawn(move || attack(&runtime, app, &stop))
    });
    if thread.is_some() {
        std::thread::sleep(ATTACK_HEAD_START);
    }
    let mut samples = Vec::with_capacity(decisions);
    let mut wrong = 0;
    let measuring = Instant::now();
    while samples.len() < decisions || measuring.elapsed() < MIN_CASE_TIME {
        let started = Instant::now();
        let decision = runtime.is_authorized(&good);
        samples.push(started.elapsed());
        wrong += u64::from(!decision.is_permit());
    }
    stop.store(true, Ordering::Relaxed);
    let attacker = match thread {
        Some(thread) => Some(
            thread
                .join()
                .map_err(|_| anyhow::anyhow!("the attacker thread panicked"))?,
        ),
        None => None,
    };
    Ok(Case {
        name,
        good: Percentiles::of(&mut samples),
        wrong,
        attacker,
    })
}

/// Calls the hostile app until `stop`, classifying each deny by its reason.
fn attack(runtime: &Runtime, app: &str, stop: &AtomicBool) -> Attacker {
    let request = request(app);
    let mut result = Attacker::default();
    let started = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let decision = runtime.is_authorized(&request);
        result.calls += 1;
        let reason = &decision.reason;
        if reason.contains("time limit") {
            result.denied_time_limit += 1;
        } else if reason.contains("memory limit") {
            result.denied_memory_limit += 1;
        } else if reason.contains("quarantined") {
            result.denied_quarantined += 1;
        } else {
            result.other += 1;
            result
                .other_example
                .get_or_insert_with(|| format!("{:?}: {reason}", decision.effect));
        }
    }
    result.mean_call_ms = millis(started.elapsed()) / result.calls.max(1) as f64;
    result
}

impl IsolationResult {
    fn alone(&self) -> Option<&Case> {
        self.cases.iter().find(|case| case.attacker.is_none())
    }

    pub fn table(&self) -> Table {
        let mut table = Table::new(
            format!(
                "Isolation: good app (acp, warm) decision latency, >= {} decisions and >= {} s per case, in process; attacker deadline {} ms",
                self.decisions,
                MIN_CASE_TIME.as_secs(),
                self.attack_deadline_ms
            ),
            &[
                "case",
                "p50",
                "p99",
                "p99.9",
                "max",
                "p99 / alone",
                "decisions",
                "attacker calls",
                "time / mem / quar. / other",
                "attacker call",
            ],
        );
        let alone_p99 = self.alone().map_or(f64::NAN, |case| case.good.p99_us);
        for case in &self.cases {
            let (calls, kinds, call) = match &case.attacker {
                Some(a) => (
                    a.calls.to_string(),
                    format!(
                        "{} / {} / {} / {}",
                        a.denied_time_limit, a.denied_memory_limit, a.denied_quarantined, a.other
                    ),
                    format_ms(a.mean_call_ms),
                ),
                None => ("-".into(), "-".into(), "-".into()),
            };
            table.row(vec![
                case.name.into(),
                format_us(case.good.p50_us),
                format_us(case.good.p99_us),
                format_us(case.good.p999_us),
                format_us(case.good.max_us),
                format!("{:.2}x", case.good.p99_us / alone_p99),
                case.good.count.to_string(),
                calls,
                kinds,
                call,
            ]);
        }
        for case in &self.cases {
            if case.wrong > 0 {
                table.note(format!(
                    "{}: {} good-app decisions were not permits!",
                    case.name, case.wrong
                ));
            }
            if let Some(example) = case
                .attacker
                .as_ref()
                .and_then(|a| a.other_example.as_ref())
            {
                table.note(format!(
                    "{}: unexpected attacker answer: {example}",
                    case.name
                ));
            }
        }
        table.note("Attacker denies by reason: time limit / memory limit / quarantined / other. Without quarantine every attacker call ran the attack; with the default quarantine most were denied unrun after the fifth failure.");
        table
    }

    pub fn targets(&self) -> Vec<Target> {
        let Some(alone) = self.alone() else {
            return Vec::new();
        };
        self.cases
            .iter()
            .filter(|case| case.attacker.is_some())
            .map(|case| {
                let ratio = case.good.p99_us / alone.good.p99_us;
                Target::new(
                    "isolation",
                    format!(
                        "good app p99, {} / alone",
                        case.name.trim_start_matches("+ ")
                    ),
                    format!("<= {TARGET_P99_RATIO}x"),
                    format!(
                        "{:.2}x ({} vs {})",
                        ratio,
                        format_us(case.good.p99_us),
                        format_us(alone.good.p99_us)
                    ),
                    ratio <= TARGET_P99_RATIO
                        && case.wrong == 0
                        && case.attacker.as_ref().is_some_and(|a| a.calls > 0),
                )
            })
            .collect()
    }
}
