//! `palisade group simulate`: all three roles in one process, for N devices of which K are
//! forged (they claim a member's id but hold another key). The same group is run with batch
//! verification, with one-by-one verification, and device by device (one session per device,
//! the work group authentication saves), and each run reports what it authenticated, whom it
//! rejected, its throughput, and the round trips and bytes it put on the wire.

use super::error::{GroupError, Rejection};
use super::messages::DeviceAnswer;
use super::server::{Server, ServerConfig};
use super::verify::Verification;
use super::wire::WireMessage;
use super::{Device, GatewayAgent, Mode};
use ed25519_dalek::SigningKey;
use serde::Serialize;
use std::time::{Duration, Instant};

/// What to simulate.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SimConfig {
    /// Group size.
    pub devices: usize,
    /// Represented or independent.
    pub mode: Mode,
    /// How many members are forged.
    pub forged: usize,
    /// The simulated clock (Unix seconds).
    pub now: u64,
    /// Also run one session per device (slow for big groups, off by default for > 4096).
    pub device_by_device: bool,
    /// Each run is repeated this many times, interleaved, and the fastest timings kept, so
    /// that a busy machine disturbs the comparison less (at least 1).
    pub rounds: usize,
}

impl SimConfig {
    /// `devices` honest members in `mode` at time `now`: none forged, one round, and the
    /// device-by-device run only for groups of at most 4096 (it is slow for bigger ones).
    pub fn new(devices: usize, mode: Mode, now: u64) -> SimConfig {
        SimConfig {
            devices,
            mode,
            forged: 0,
            now,
            device_by_device: devices <= 4096,
            rounds: 1,
        }
    }
}

/// Where a run is, for a progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimPhase {
    /// Generating device keys and registries.
    Setup,
    /// Group run with batch verification.
    Batch,
    /// Group run with one-by-one verification.
    OneByOne,
    /// One session per device.
    DeviceByDevice,
}

/// The result of one run.
#[derive(Debug, Clone, Serialize)]
pub struct SimRun {
    /// `batch`, `one_by_one` or `device_by_device`.
    pub name: &'static str,
    /// Devices authenticated (independent mode: confirmed at the device too).
    pub authenticated: usize,
    /// Devices rejected, with why.
    pub rejected: Vec<(String, Rejection)>,
    /// Wall time of the whole protocol, all roles, in seconds.
    pub seconds: f64,
    /// Devices handled per second, all roles.
    pub devices_per_second: f64,
    /// Time spent in the server role, in seconds.
    pub server_seconds: f64,
    /// Devices handled per second by the server role alone.
    pub server_devices_per_second: f64,
    /// Time spent in the gateway role, in seconds (in represented mode the member
    /// signatures are verified here).
    pub gateway_seconds: f64,
    /// Devices handled per second by the gateway role alone.
    pub gateway_devices_per_second: f64,
    /// Gateway↔server round trips for the whole group.
    pub wan_round_trips: usize,
    /// Gateway↔server round trips per device.
    pub wan_round_trips_per_device: f64,
    /// Device↔gateway round trips per device.
    pub local_round_trips_per_device: f64,
    /// Gateway↔server bytes per device.
    pub wan_bytes_per_device: f64,
    /// Device↔gateway bytes per device.
    pub local_bytes_per_device: f64,
}

/// The simulation's report.
#[derive(Debug, Clone, Serialize)]
pub struct SimReport {
    /// Group size.
    pub devices: usize,
    /// Mode.
    pub mode: Mode,
    /// The forged members' names.
    pub forged: Vec<String>,
    /// Batch, one-by-one and (if asked) device-by-device runs.
    pub runs: Vec<SimRun>,
}

const GROUP: &str = "grp-sim";
const GATEWAY: &str = "gw-sim";

struct World {
    server: Server,
    gateway: GatewayAgent,
    devices: Vec<Device>,
}

/// Names of the forged members: spread evenly over the group.
fn forged_indices(n: usize, k: usize) -> Vec<usize> {
    let k = k.min(n);
    (0..k).map(|j| j * n / k + (n / k) / 2).collect()
}

fn build(cfg: &SimConfig, keys: &[SigningKey], forged: &[usize]) -> Result<World, GroupError> {
    let server_key = SigningKey::generate(&mut rand::rngs::OsRng);
    let server_pub = server_key.verifying_key().to_bytes();
    let mut server = Server::new("srv-sim", Box::new(server_key), ServerConfig::default())?;
    let gw_key = SigningKey::generate(&mut rand::rngs::OsRng);
    let gw_pub = gw_key.verifying_key().to_bytes();
    let mut gateway = GatewayAgent::new(GATEWAY, Box::new(gw_key), &server_pub)?;
    server.registry_mut().add_gateway(GATEWAY, &gw_pub)?;
    let mut devices = Vec::with_capacity(cfg.devices);
    for (i, k) in keys.iter().enumerate() {
        let name = format!("dev-{i:05}");
        let public = k.verifying_key().to_bytes();
        server.registry_mut().add_member(GROUP, &name, &public)?;
        gateway.add_member(GROUP, &name, &public)?;
        // A forged member claims the id but holds a key of its own.
        let held = if forged.contains(&i) {
            SigningKey::generate(&mut rand::rngs::OsRng)
        } else {
            k.clone()
        };
        let mut d = Device::new(&name, held, &server_pub)?;
        d.trust_gateway(GATEWAY, &gw_pub)?;
        devices.push(d);
    }
    server.registry_mut().allow_representation(GROUP, GATEWAY)?;
    Ok(World {
        server,
        gateway,
        devices,
    })
}

#[derive(Default)]
struct Tally {
    authenticated: usize,
    rejected: Vec<(String, Rejection)>,
    server: Duration,
    gateway: Duration,
    wan_rtt: usize,
    wan_bytes: usize,
    local_bytes: usize,
}

/// One group session over `members` (indices into the world's devices).
fn session(
    w: &mut World,
    mode: Mode,
    members: &[usize],
    now: u64,
    t: &mut Tally,
) -> Result<(), GroupError> {
    let s0 = Instant::now();
    let ch = w.server.challenge(GROUP, GATEWAY, mode, now)?;
    t.server += s0.elapsed();
    // Gateway asks for a challenge and gets it; sends the answers and gets the result.
    t.wan_rtt += 2;
    t.wan_bytes += ch.to_bytes().len();
    w.gateway.accept_challenge(&ch, now)?;
    match mode {
        Mode::Independent => {
            let relayed = ch.to_bytes().len();
            let mut answers: Vec<DeviceAnswer> = Vec::with_capacity(members.len());
            for &i in members {
                let a = w.devices[i].answer_independent(&ch, now)?;
                t.local_bytes += relayed + a.to_bytes().len();
                answers.push(a);
            }
            let g0 = Instant::now();
            let batch = w.gateway.relay_answers(&ch.nonce, answers, now)?;
            t.gateway += g0.elapsed();
            t.wan_bytes += batch.to_bytes().len();
            let s1 = Instant::now();
            let out = w.server.complete_independent(&batch, now)?;
            t.server += s1.elapsed();
            t.wan_bytes += out.confirmations.to_bytes().len();
            let g1 = Instant::now();
            let confs = w.gateway.relay_confirmations(&out.confirmations, now)?;
            t.gateway += g1.elapsed();
            let index: std::collections::HashMap<&str, usize> =
                members.iter().map(|&i| (w.devices[i].id(), i)).collect();
            let index: std::collections::HashMap<String, usize> =
                index.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            for c in confs {
                t.local_bytes += c.to_bytes().len();
                if let Some(&i) = index.get(&c.device) {
                    if w.devices[i].confirm(&c, now).is_ok() {
                        t.authenticated += 1;
                    }
                }
            }
            t.rejected.extend(out.rejected);
        }
        Mode::Represented => {
            let mc = w.gateway.member_challenge(&ch.nonce, now)?;
            let mc_len = mc.to_bytes().len();
            let mut answers = Vec::with_capacity(members.len());
            for &i in members {
                let a = w.devices[i].answer_represented(&mc, now)?;
                t.local_bytes += mc_len + a.to_bytes().len();
                answers.push(a);
            }
            let g0 = Instant::now();
            let assertion = w.gateway.assert_members(&ch.nonce, &answers, now)?;
            t.gateway += g0.elapsed();
            t.wan_bytes += assertion.to_bytes().len();
            let s1 = Instant::now();
            let out = w.server.complete_represented(&assertion, now)?;
            t.server += s1.elapsed();
            t.wan_bytes += out.association.to_bytes().len();
            let g1 = Instant::now();
            let sa = w.gateway.accept_association(&out.association, now)?;
            t.gateway += g1.elapsed();
            t.authenticated += sa.accepted as usize;
            t.rejected.extend(out.rejected);
        }
    }
    Ok(())
}

fn run(
    w: &mut World,
    cfg: &SimConfig,
    name: &'static str,
    how: Verification,
    per_device: bool,
    now: u64,
    tick: &mut dyn FnMut(usize),
) -> Result<SimRun, GroupError> {
    w.server.set_verification(how);
    w.gateway.set_verification(how);
    let n = w.devices.len();
    let mut t = Tally::default();
    let start = Instant::now();
    if per_device {
        // Progress every 1% of the group: a progress bar stays live during the slow
        // one-session-per-device run without the reporting weighing on its timing.
        let step = (n / 100).max(1);
        for i in 0..n {
            session(w, cfg.mode, &[i], now, &mut t)?;
            if (i + 1) % step == 0 {
                tick(i + 1);
            }
        }
    } else {
        let all: Vec<usize> = (0..n).collect();
        session(w, cfg.mode, &all, now, &mut t)?;
    }
    let secs = start.elapsed().as_secs_f64();
    let server = t.server.as_secs_f64();
    let per = |x: usize| if n == 0 { 0.0 } else { x as f64 / n as f64 };
    let local_rtt = match cfg.mode {
        Mode::Independent => 1.5, // challenge, answer, confirmation
        Mode::Represented => 1.0, // member challenge, answer
    };
    t.rejected.sort();
    Ok(SimRun {
        name,
        authenticated: t.authenticated,
        rejected: t.rejected,
        seconds: secs,
        devices_per_second: n as f64 / secs.max(1e-9),
        server_seconds: server,
        server_devices_per_second: n as f64 / server.max(1e-9),
        gateway_seconds: t.gateway.as_secs_f64(),
        gateway_devices_per_second: n as f64 / t.gateway.as_secs_f64().max(1e-9),
        wan_round_trips: t.wan_rtt,
        wan_round_trips_per_device: per(t.wan_rtt),
        local_round_trips_per_device: local_rtt,
        wan_bytes_per_device: per(t.wan_bytes),
        local_bytes_per_device: per(t.local_bytes),
    })
}

/// Keeps the outcome of `a` (runs agree on it) with the fastest timing of each role.
fn fastest(a: SimRun, b: SimRun) -> SimRun {
    SimRun {
        seconds: a.seconds.min(b.seconds),
        devices_per_second: a.devices_per_second.max(b.devices_per_second),
        server_seconds: a.server_seconds.min(b.server_seconds),
        server_devices_per_second: a.server_devices_per_second.max(b.server_devices_per_second),
        gateway_seconds: a.gateway_seconds.min(b.gateway_seconds),
        gateway_devices_per_second: a
            .gateway_devices_per_second
            .max(b.gateway_devices_per_second),
        ..a
    }
}

/// Runs the simulation; `progress` is told each phase as it starts and ends, and how far
/// it got in between for the long phases (key generation, one session per device), as
/// (phase, done, total).
pub fn simulate(
    cfg: &SimConfig,
    progress: &mut dyn FnMut(SimPhase, usize, usize),
) -> Result<SimReport, GroupError> {
    if cfg.devices == 0 || cfg.devices > super::wire::MAX_MEMBERS {
        return Err(GroupError::TooManyMembers {
            count: cfg.devices,
            max: super::wire::MAX_MEMBERS,
        });
    }
    let n = cfg.devices;
    progress(SimPhase::Setup, 0, n);
    let step = (n / 100).max(1);
    let keys: Vec<SigningKey> = (0..n)
        .map(|i| {
            if i > 0 && i % step == 0 {
                progress(SimPhase::Setup, i, n);
            }
            SigningKey::generate(&mut rand::rngs::OsRng)
        })
        .collect();
    let forged = forged_indices(n, cfg.forged);
    progress(SimPhase::Setup, n, n);
    let mut plan = vec![
        (SimPhase::Batch, "batch", Verification::Batch, false),
        (
            SimPhase::OneByOne,
            "one_by_one",
            Verification::OneByOne,
            false,
        ),
    ];
    if cfg.device_by_device {
        plan.push((
            SimPhase::DeviceByDevice,
            "device_by_device",
            Verification::OneByOne,
            true,
        ));
    }
    let mut best: Vec<Option<SimRun>> = vec![None; plan.len()];
    for _ in 0..cfg.rounds.max(1) {
        for (slot, &(phase, name, how, per_device)) in best.iter_mut().zip(&plan) {
            progress(phase, 0, n);
            // A fresh world per run: devices and gateway remember answered challenges.
            let mut w = build(cfg, &keys, &forged)?;
            let mut tick = |done: usize| progress(phase, done, n);
            let r = run(&mut w, cfg, name, how, per_device, cfg.now, &mut tick)?;
            progress(phase, n, n);
            *slot = Some(match slot.take() {
                None => r,
                Some(b) => fastest(b, r),
            });
        }
    }
    let runs = best.into_iter().flatten().collect();
    Ok(SimReport {
        devices: n,
        mode: cfg.mode,
        forged: forged.iter().map(|i| format!("dev-{i:05}")).collect(),
        runs,
    })
}
