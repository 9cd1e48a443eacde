//! Server-side group authentication in independent mode (SER-028): batch verification of the
//! members' signatures against checking them one by one, for groups of 1 to 4096 devices.
//! Throughput is in devices, so criterion reports devices per second.
//!
//! Timed: `Server::complete_independent` only — the gateway's signature, the members'
//! signatures (the part batching speeds up), and per device an X25519 agreement, a key
//! derivation and a confirmation MAC (the same work in both rows), then the signed
//! confirmations. Not timed: the challenge, the devices' answers and the gateway's relay,
//! prepared for every round (challenges are single-use) by `GroupBench::prepare`; nor
//! dropping the outcome.
//!
//! `cargo bench -p palisade-bench --bench group`.

use std::time::{Duration, Instant};

use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use palisade_bench::group_auth::GroupBench;
use palisade_group::Verification;

const SIZES: [usize; 4] = [1, 16, 256, 4096];

/// Runs one round outside the timing and checks that every device was authenticated, so
/// that neither row measures a rejection path.
fn check(bench: &mut GroupBench, how: Verification) {
    bench.set_verification(how);
    let round = bench.prepare().expect("preparing a round");
    let outcome = bench.verify(&round).expect("verifying a round");
    assert_eq!(outcome.sessions.len(), bench.devices(), "{how:?}");
    assert!(
        outcome.rejected.is_empty(),
        "{how:?}: {:?}",
        outcome.rejected
    );
}

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
        for (name, how) in [
            ("batch", Verification::Batch),
            ("one_by_one", Verification::OneByOne),
        ] {
            check(&mut bench, how);
            group.bench_function(BenchmarkId::new(name, devices), |b| {
                b.iter_custom(|rounds| {
                    let mut timed = Duration::ZERO;
                    for _ in 0..rounds {
                        let round = bench.prepare().expect("preparing a round");
                        let started = Instant::now();
                        let outcome = bench.verify(&round);
                        timed += started.elapsed();
                        outcome.expect("verifying a round");
                    }
                    timed
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, group_independent);
criterion_main!(benches);
