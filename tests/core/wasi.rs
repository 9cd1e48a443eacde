//! The sandbox's own deny-all WASI host (SER-024, SER-001), seen from a real guest: the
//! hostile fixture (`plugins/hostile`, built with Rust's std for wasm32-wasip2) tries each
//! interface, warm and with a fresh instance per request. Where the WASI contract answers
//! with an error the guest gets that error (and reports it in its deny reason); where the
//! guest would wait, or goes past a budget, the call traps naming why.

use palisade_test_support as support;

use std::time::Duration;

use palisade_core::{AppSpec, Effect, Isolation, Operation, Runtime};
use serde_json::json;
use support::{hostile_app, request, runtime};

fn app(name: &str, config: serde_json::Value, isolation: Isolation) -> AppSpec {
    let mut spec = hostile_app(name, config, isolation);
    // Budgets, not time, must end these calls; a loaded machine must not turn one into a
    // time-limit failure.
    spec.limits.deadline = Duration::from_secs(2);
    spec
}

/// The deny reason `attack` ends in, for each isolation mode.
fn reasons(runtime: &Runtime, attack: serde_json::Value) -> Vec<String> {
    [Isolation::Warm, Isolation::FreshPerRequest]
        .into_iter()
        .map(|isolation| {
            let name = format!(
                "{}-{isolation:?}",
                attack["attack"].as_str().unwrap_or("attack")
            )
            .to_lowercase();
            runtime
                .install(app(&name, attack.clone(), isolation))
                .unwrap();
            let decision =
                runtime.is_authorized(&request(&name, "CAE1", Operation::Retrieve, "/ok"));
            assert_eq!(
                decision.effect,
                Effect::Deny,
                "{attack} ({isolation:?}) must be denied: {}",
                decision.reason
            );
            decision.reason
        })
        .collect()
}

fn assert_contains_all(reason: &str, texts: &[&str]) {
    for text in texts {
        assert!(
            reason.contains(text),
            "reason {reason:?} should contain {text:?}"
        );
    }
}

#[test]
fn sockets_answer_access_denied_to_the_guest_without_trapping() {
    let runtime = runtime();
    for reason in reasons(&runtime, json!({"attack": "socket"})) {
        // The guest ran to its own deny: every attempt came back as an error it could report.
        assert!(!reason.contains("trapped"), "{reason}");
        assert_contains_all(
            &reason,
            &[
                "socket: tcp connect 127.0.0.1:80: Permission denied",
                "udp bind 0.0.0.0:0: Permission denied",
                "lookup localhost:",
            ],
        );
    }
}

#[test]
fn the_filesystem_has_nothing_to_open() {
    let runtime = runtime();
    for reason in reasons(&runtime, json!({"attack": "open-file"})) {
        assert!(!reason.contains("trapped"), "{reason}");
        // No directory is preopened, so no path resolves to anything the guest may use.
        assert_contains_all(
            &reason,
            &[
                "open-file: every attempt failed",
                "read /etc/passwd:",
                "read_dir /:",
                "create /tmp/pwned:",
            ],
        );
    }
}

#[test]
fn environment_arguments_and_stdin_are_empty_and_output_goes_nowhere() {
    let runtime = runtime();
    for reason in reasons(&runtime, json!({"attack": "env"})) {
        assert_eq!(reason, "env: no environment, args or stdin");
    }
}

#[test]
fn both_clocks_are_frozen_at_zero() {
    let runtime = runtime();
    for reason in reasons(&runtime, json!({"attack": "clock"})) {
        assert_eq!(
            reason,
            "clock: wall clock reads 0s, monotonic clock advanced 0ns"
        );
    }
}

#[test]
fn sleeping_traps_instead_of_waiting() {
    let runtime = runtime();
    for reason in reasons(&runtime, json!({"attack": "sleep"})) {
        assert_contains_all(
            &reason,
            &[
                "trapped",
                "would block waiting on a pollable",
                "nothing to wait for",
            ],
        );
    }
}

#[test]
fn randomness_is_served_within_its_budgets() {
    let runtime = runtime();
    for reason in reasons(&runtime, json!({"attack": "random-small"})) {
        assert_eq!(reason, "random-small: got 32 bytes");
    }
    // One request past the per-request bound...
    for reason in reasons(&runtime, json!({"attack": "random-huge", "size": 4097})) {
        assert_contains_all(
            &reason,
            &["trapped", "asked for 4097 random bytes", "4096 per request"],
        );
    }
    // ...and many small ones past the per-call budget.
    for reason in reasons(&runtime, json!({"attack": "random-loop"})) {
        assert_contains_all(&reason, &["trapped", "65536 per call"]);
    }
}

#[test]
fn every_wasi_call_spends_the_host_call_budget() {
    let runtime = runtime();
    // Writing to stdout is a WASI call like any other: a flood of them ends on the budget.
    for reason in reasons(&runtime, json!({"attack": "output-flood"})) {
        assert_contains_all(&reason, &["host-call budget of 1000 calls"]);
    }
}

#[test]
fn output_is_bounded_per_call_and_handles_by_the_cap() {
    let runtime = runtime();
    let before = palisade_core::plugin_output_dropped_bytes();
    for reason in reasons(&runtime, json!({"attack": "output-burst", "size": 1 << 20})) {
        assert!(
            reason.contains("output-burst: wrote 1048576 bytes"),
            "{reason}"
        );
    }
    let dropped = palisade_core::plugin_output_dropped_bytes() - before;
    assert!(
        dropped >= 2 * ((1 << 20) - (64 << 10)),
        "only {dropped} bytes counted as dropped"
    );
    for attack in ["handle-leak", "pollable-leak"] {
        for reason in reasons(&runtime, json!({ "attack": attack })) {
            assert_contains_all(&reason, &["trapped", "more than 64 WASI resource handles"]);
        }
    }
}
