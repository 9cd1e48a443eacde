//! # palisade-bench: what Palisade's benchmarks share (see BENCHMARKS.md)
//!
//! Issue #6 compares one authorization decision made three ways, on the same ten-rule policy
//! ([`ACP10_JSON`], mirrored in Cedar by [`ACP10_CEDAR`]) and the same requests:
//!
//! - **Palisade**: the reference `acp` plugin in its WebAssembly sandbox, through
//!   [`palisade_core::Runtime::is_authorized`] ([`palisade_runtime`]);
//! - **native Rust**: the very same `acp` evaluation compiled natively and called directly
//!   ([`native::NativeAcp`]), the floor no sandbox can beat;
//! - **Cedar**: the `cedar-policy` crate on an equivalent policy set ([`cedar::CedarPeer`]).
//!
//! A timing comparison is only honest if the three decide the same thing, so the request
//! table ([`cases::cases`]) is shared by the benches and by `tests/equivalence.rs`, which
//! checks that the three agree on every row. [`group_auth`] prepares the group-authentication
//! rounds of `benches/group.rs`.
//!
//! Everything here is set-up: building a runtime, compiling a policy, preparing a round. The
//! benches decide what is inside the timed loop and say so next to each row.

pub mod cases;
pub mod cedar;
pub mod group_auth;
pub mod native;

use palisade_core::{
    AccessRequest, AppSpec, Capability, Engine, EngineConfig, Isolation, Operation, PluginSetup,
    Runtime,
};

/// The ten-rule accessControlPolicy every decision benchmark uses (issue #6): exact IDs, a
/// wildcard, a role, a time window, IPv4 and IPv6 ranges, a country, the authentication flag
/// and a create restricted to a child type, with the request's own rule last.
pub const ACP10_JSON: &str = include_str!("../fixtures/acp10.json");

/// [`ACP10_JSON`] as ten Cedar `permit` policies; the file explains the request model.
pub const ACP10_CEDAR: &str = include_str!("../fixtures/acp10.cedar");

/// The application the Palisade rows install the policy under.
pub const APP: &str = "bench";

/// The target of every request (acp10 has no `scope` or `sbpt`, so any path would do).
pub const TARGET: &str = "/cse-in/lights/lamp1";

/// The request time of the benchmark request, Unix seconds (10:15:00 UTC): fixed so that no
/// result depends on the clock, and outside the night window of rule 4.
pub const REQUEST_TIME: u64 = 1_795_860_900;

/// The benchmarked request: `CAE1` retrieves a lamp from the LAN. Only the last rule grants
/// it, so acp has to look at all ten rules: the worst case for its scan.
pub fn bench_request() -> AccessRequest {
    let mut request = AccessRequest::new(APP, "CAE1", Operation::Retrieve, TARGET);
    request.request_time = Some(REQUEST_TIME);
    request.source_ip = Some("192.168.1.20".into());
    request
}

/// A runtime with [`APP`] installed: the embedded acp plugin configured with [`ACP10_JSON`],
/// with `isolation`, default limits and the default engine — what `palisade bench` measures.
///
/// The plugin is granted `location`: without it the host withholds the request's location
/// (SER-026) and the country rule could never grant, unlike in the native and Cedar rows.
pub fn palisade_runtime(isolation: Isolation) -> anyhow::Result<Runtime> {
    let runtime = Runtime::new(Engine::new(EngineConfig::default())?)?;
    let setup = PluginSetup::new("acp", ACP10_JSON).grant(Capability::Location);
    let mut spec = AppSpec::new(APP).plugin(setup, palisade_artifacts::ACP);
    spec.isolation = isolation;
    runtime.install(spec)?;
    Ok(runtime)
}
