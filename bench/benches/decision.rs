//! One authorization decision, Palisade against its peers (issue #6): the same request
//! ([`bench_request`]: only the last of ten rules grants it) decided on the same policy
//! (acp10) by the acp plugin in Palisade's sandbox, by the same acp code compiled natively,
//! and by Cedar on the equivalent policy set. `tests/equivalence.rs` checks that the three
//! agree on a table of requests, so the rows compare the same work.
//!
//! Every row starts from the gateway's request (`palisade_core::AccessRequest`) and ends with a
//! decision, so each pays for turning the request into what its engine reads:
//! - `palisade_warm`: `Runtime::is_authorized` — application look-up, the WIT record built
//!   from the request and lowered into a warm instance, the guest's acp evaluation on its
//!   already compiled policy, the answer lifted, checked and wrapped in a `Decision`.
//! - `native_rust`: the same record built natively (`sdk_request`, the same string copies)
//!   and `acp::eval::decide` on the policy compiled once before the loop.
//! - `cedar`: the Cedar request built (UIDs and a context with originator, roles, UTC hour,
//!   authentication, parsed source address) and `Authorizer::is_authorized` on the policy set
//!   and entity store built once before the loop.
//! - `palisade_warm_total_only`: the same with only the whole decision timed
//!   (`Timing::Total`), as the gateway decides without `?explain=true`.
//! - `palisade_fresh` (group `fresh_decision`): as `palisade_warm`, on a new instance per
//!   request. acp exports `prepare`, so every instance starts from the snapshot the host took
//!   after acp compiled acp10 (`host/src/sandbox/prepare.rs`): the difference with
//!   `palisade_warm` is making the instance and dropping it (its pooled memory slot is reset).
//!
//! Group `decision_parts` splits the peers' rows to show where their time goes: evaluation of
//! a request converted before the loop, and building the Cedar request alone.
//!
//! `cargo bench -p palisade-bench --bench decision` (add `-- --warm-up-time 1
//! --measurement-time 3` for a quick run).

use std::hint::black_box;

use cedar_policy::Decision as CedarDecision;
use criterion::{criterion_group, criterion_main, Criterion};
use palisade_bench::cedar::CedarPeer;
use palisade_bench::native::{sdk_request, NativeAcp};
use palisade_bench::{bench_request, palisade_runtime};
use palisade_core::{Effect, Isolation, Runtime, Timing};

/// Builds a runtime and checks, before anything is timed, that it permits the benchmark
/// request: a row that measured a deny or a plugin failure would be meaningless.
fn runtime(isolation: Isolation) -> Runtime {
    let runtime = palisade_runtime(isolation).expect("installing acp10");
    let decision = runtime.is_authorized(&bench_request());
    assert_eq!(
        decision.effect,
        Effect::Permit,
        "{isolation:?}: {}",
        decision.reason
    );
    runtime
}

fn peers() -> (NativeAcp, CedarPeer) {
    let native = NativeAcp::new().expect("compiling acp10 natively");
    let cedar = CedarPeer::new().expect("loading acp10.cedar");
    let request = bench_request();
    assert!(matches!(
        native.decide(&request),
        palisade_sdk::Decision::Permit
    ));
    assert_eq!(cedar.decide(&request).unwrap(), CedarDecision::Allow);
    (native, cedar)
}

fn warm_decision(c: &mut Criterion) {
    let runtime = runtime(Isolation::Warm);
    let (native, cedar) = peers();
    let request = bench_request();
    let mut group = c.benchmark_group("warm_decision");
    group.bench_function("palisade_warm", |b| {
        b.iter(|| runtime.is_authorized(black_box(&request)))
    });
    // What `palisade serve` pays without `?explain=true`, and `palisade bench` measures: the
    // decision timed as a whole only (two clock reads instead of six).
    group.bench_function("palisade_warm_total_only", |b| {
        b.iter(|| runtime.is_authorized_timed(black_box(&request), Timing::Total))
    });
    group.bench_function("native_rust", |b| {
        b.iter(|| native.decide(black_box(&request)))
    });
    group.bench_function("cedar", |b| {
        b.iter(|| cedar.decide(black_box(&request)).expect("a valid request"))
    });
    group.finish();
}

fn fresh_decision(c: &mut Criterion) {
    let runtime = runtime(Isolation::FreshPerRequest);
    let request = bench_request();
    let mut group = c.benchmark_group("fresh_decision");
    group.bench_function("palisade_fresh", |b| {
        b.iter(|| runtime.is_authorized(black_box(&request)))
    });
    group.finish();
}

fn decision_parts(c: &mut Criterion) {
    let (native, cedar) = peers();
    let request = bench_request();
    let sdk = sdk_request(&request);
    let prepared = cedar.request(&request).expect("a valid request");
    let mut group = c.benchmark_group("decision_parts");
    // acp's evaluation alone: the request was converted before the loop.
    group.bench_function("native_eval_only", |b| {
        b.iter(|| native.decide_sdk(black_box(&sdk)))
    });
    // Cedar's evaluation alone: the Cedar request was built before the loop.
    group.bench_function("cedar_eval_only", |b| {
        b.iter(|| cedar.is_authorized(black_box(&prepared)))
    });
    // Building the Cedar request (UIDs, context) without evaluating it.
    group.bench_function("cedar_request_only", |b| {
        b.iter(|| cedar.request(black_box(&request)).expect("a valid request"))
    });
    group.finish();
}

criterion_group!(benches, warm_decision, fresh_decision, decision_parts);
criterion_main!(benches);
