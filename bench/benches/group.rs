//! Server-side group authentication in independent mode (SER-028). Throughput is in devices,
//! so criterion reports devices per second; every row runs on one thread, so that is devices
//! per second per core.
//!
//! - `group_independent`: batch verification of the members' signatures against checking
//!   them one by one, for one gateway's group of 1 to 4096 devices. Timed:
//!   `Server::complete_independent` only — the gateway's signature, the members' signatures
//!   (the part batching speeds up), and per device an X25519 agreement, a key derivation and
//!   a confirmation MAC (the same work in both rows), then the signed confirmations.
//! - `group_fleet` (issue #18): 64 gateways × 256 devices arriving together: 64 challenges
//!   open at once on one server, then the 64 relayed answer messages completed one after
//!   another, batch against one by one.
//! - `group_wire` (issue #16): the whole server step of the HTTP handler for one 256-device
//!   round (the arrived bytes decoded, the round completed, the answer encoded) against the
//!   deterministic CBOR and COSE_Sign1 work of that step alone (`group_auth::wire_work`).
//! - `group_per_device`: what each device costs the server that no batch can share, one
//!   X25519 agreement and one key derivation, and, for scale, one strict signature check.
//!
//! Not timed: the challenges, the devices' answers and the gateways' relays, prepared for
//! every round (challenges are single-use) by `GroupBench::prepare`; nor dropping outcomes.
//!
//! `cargo bench -p palisade-bench --bench group`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use palisade_bench::group_auth::{wire_work, GroupBench};
use palisade_group::{derive_session, generate_identity_key, Verification};

const SIZES: [usize; 4] = [1, 16, 256, 4096];

/// The fleet of issue #18: gateways, and devices behind each.
const FLEET: (usize, usize) = (64, 256);

/// Runs one round outside the timing and checks that every device was authenticated, so
/// that no row measures a rejection path.
fn check(bench: &mut GroupBench, how: Verification) {
    bench.set_verification(how);
    let rounds = bench.prepare().expect("preparing a round");
    let outcomes = bench.verify(&rounds).expect("verifying a round");
    let sessions: usize = outcomes.iter().map(|o| o.sessions.len()).sum();
    assert_eq!(sessions, bench.devices(), "{how:?}");
    for outcome in &outcomes {
        assert!(
            outcome.rejected.is_empty(),
            "{how:?}: {:?}",
            outcome.rejected
        );
    }
}

/// Times `verify` on freshly prepared rounds.
fn time_rounds(bench: &mut GroupBench, iterations: u64) -> Duration {
    let mut timed = Duration::ZERO;
    for _ in 0..iterations {
        let rounds = bench.prepare().expect("preparing a round");
        let started = Instant::now();
        let outcomes = bench.verify(&rounds);
        timed += started.elapsed();
        outcomes.expect("verifying a round");
    }
    timed
}

const MODES: [(&str, Verification); 2] = [
    ("batch", Verification::Batch),
    ("one_by_one", Verification::OneByOne),
];

fn group_independent(c: &mut Criterion) {
    let mut group = c.benchmark_group("group_independent");
    // Every timed round needs an untimed one's worth of device work prepared first, which for
    // the large groups costs more than the verification: flat sampling with few samples keeps
    // the run to minutes, and there is no JIT or cache for a long warm-up to settle.
    group.sampling_mode(SamplingMode::Flat);
    group.warm_up_time(Duration::from_secs(1));
    for devices in SIZES {
        let mut bench = GroupBench::new(devices).expect("building the group");
        group.throughput(Throughput::Elements(devices as u64));
        group.sample_size(if devices >= 256 { 10 } else { 30 });
        for (name, how) in MODES {
            check(&mut bench, how);
            group.bench_function(BenchmarkId::new(name, devices), |b| {
                b.iter_custom(|rounds| time_rounds(&mut bench, rounds))
            });
        }
    }
    group.finish();
}

fn group_fleet(c: &mut Criterion) {
    let (gateways, devices) = FLEET;
    let mut bench = GroupBench::fleet(gateways, devices).expect("building the fleet");
    let mut group = c.benchmark_group("group_fleet");
    // A round is 16,384 devices: seconds of preparation and of server work each.
    group.sampling_mode(SamplingMode::Flat);
    group.warm_up_time(Duration::from_secs(1));
    group.sample_size(10);
    group.throughput(Throughput::Elements((gateways * devices) as u64));
    for (name, how) in MODES {
        check(&mut bench, how);
        group.bench_function(
            BenchmarkId::new(name, format!("{gateways}x{devices}")),
            |b| b.iter_custom(|rounds| time_rounds(&mut bench, rounds)),
        );
    }
    group.finish();
}

fn group_wire(c: &mut Criterion) {
    const DEVICES: usize = 256;
    let mut bench = GroupBench::new(DEVICES).expect("building the group");
    check(&mut bench, Verification::Batch);
    // A server answer of the right size for `wire_work` to encode.
    let round = bench.prepare().expect("preparing a round");
    let (outcome, _) = bench.serve(&round[0]).expect("serving a round");
    assert_eq!(outcome.sessions.len(), DEVICES);
    let confirmations = outcome.confirmations;
    let mut group = c.benchmark_group("group_wire");
    group.sampling_mode(SamplingMode::Flat);
    group.warm_up_time(Duration::from_secs(1));
    group.sample_size(10);
    group.throughput(Throughput::Elements(DEVICES as u64));
    group.bench_function(BenchmarkId::new("server_step", DEVICES), |b| {
        b.iter_custom(|iterations| {
            let mut timed = Duration::ZERO;
            for _ in 0..iterations {
                let rounds = bench.prepare().expect("preparing a round");
                let started = Instant::now();
                let served = bench.serve(&rounds[0]);
                timed += started.elapsed();
                served.expect("serving a round");
            }
            timed
        })
    });
    // Decoding and encoding need no fresh challenge: one round, decoded again and again.
    let round = bench.prepare().expect("preparing a round");
    group.bench_function(BenchmarkId::new("encoding_only", DEVICES), |b| {
        b.iter(|| wire_work(black_box(&round[0]), black_box(&confirmations)))
    });
    group.finish();
}

fn group_per_device(c: &mut Criterion) {
    let server = x25519_dalek::StaticSecret::random_from_rng(rand::rngs::OsRng);
    let device = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::random_from_rng(
        rand::rngs::OsRng,
    ));
    let shared = server.diffie_hellman(&device).to_bytes();
    let key = generate_identity_key();
    let message = [7u8; 200];
    let signature = ed25519_dalek::Signer::sign(&key, &message);
    let public = key.verifying_key();
    let mut group = c.benchmark_group("group_per_device");
    group.throughput(Throughput::Elements(1));
    // As the server's `agree`: the agreement and its low-order check.
    group.bench_function("x25519_agreement", |b| {
        b.iter(|| {
            let s = black_box(&server).diffie_hellman(black_box(&device));
            s.was_contributory()
        })
    });
    group.bench_function("derive_session", |b| {
        b.iter(|| derive_session(black_box(&shared), &[1; 32], &[2; 32]))
    });
    group.bench_function("verify_strict", |b| {
        b.iter(|| public.verify_strict(black_box(&message), black_box(&signature)))
    });
    group.finish();
}

criterion_group!(
    benches,
    group_independent,
    group_fleet,
    group_wire,
    group_per_device
);
criterion_main!(benches);
