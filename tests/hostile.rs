//! Hostile plugins (SER-001, SER-024): every attack of the `plugins/hostile` fixture ends in
//! a deny whose reason names the cause, the process survives, and a well-behaved application
//! served concurrently keeps answering correctly throughout.

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use palisade::{Effect, Isolation, Operation};
use serde_json::json;
use support::{hostile_app, request, runtime};

/// (attack configuration, texts the deny reason must contain)
fn attacks() -> Vec<(serde_json::Value, Vec<&'static str>)> {
    vec![
        (json!({"attack": "loop"}), vec!["time limit", "50 ms"]),
        (
            json!({"attack": "memory"}),
            vec!["memory limit", "16384 KiB"],
        ),
        (json!({"attack": "recursion"}), vec!["stack overflow"]),
        (json!({"attack": "panic"}), vec!["trapped", "panicked"]),
        (json!({"attack": "huge-return"}), vec!["memory limit"]),
        (
            json!({"attack": "huge-return", "size": 1 << 20}),
            vec!["malformed answer", "1048576 bytes", "limit is 4096"],
        ),
        (
            json!({"attack": "open-file"}),
            vec![
                "open-file: every attempt failed",
                "/etc/passwd",
                "/tmp/pwned",
            ],
        ),
        (
            json!({"attack": "socket"}),
            vec!["socket:", "tcp connect", "udp bind", "lookup localhost"],
        ),
        (
            json!({"attack": "env"}),
            vec!["env: no environment, args or stdin"],
        ),
        (
            json!({"attack": "clock"}),
            vec!["wall clock reads 0s", "monotonic clock advanced 0ns"],
        ),
        (
            json!({"attack": "sleep"}),
            vec!["trapped", "would block", "nothing to wait for"],
        ),
        (
            json!({"attack": "host-call-flood"}),
            vec!["host-call budget of 1000 calls"],
        ),
        (
            json!({"attack": "garbage"}),
            vec!["malformed answer", "discriminant"],
        ),
        (
            json!({"attack": "garbage-utf8"}),
            vec!["malformed answer", "utf-8"],
        ),
        (
            json!({"attack": "garbage-pointer"}),
            vec!["malformed answer", "out of bounds"],
        ),
    ]
}

#[test]
fn every_attack_is_denied_with_its_cause_while_a_good_app_keeps_answering() {
    let runtime = Arc::new(runtime());
    runtime
        .install(hostile_app(
            "good",
            json!({"attack": "well-behaved"}),
            Isolation::Warm,
        ))
        .unwrap();
    for (index, (attack, _)) in attacks().iter().enumerate() {
        for isolation in [Isolation::Warm, Isolation::FreshPerRequest] {
            let name = format!("attack-{index}-{isolation:?}");
            runtime
                .install(hostile_app(&name, attack.clone(), isolation))
                .unwrap();
        }
    }

    // The good application is asked continuously from two threads while the attacks run.
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let good_threads: Vec<_> = (0..2)
        .map(|thread| {
            let runtime = runtime.clone();
            let stop = stop.clone();
            let answered = answered.clone();
            std::thread::spawn(move || {
                let mut wrong = Vec::new();
                let mut slowest = Duration::ZERO;
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let permitted = (i + thread).is_multiple_of(2);
                    let target = if permitted { "/ok/lamp" } else { "/no/lamp" };
                    let started = Instant::now();
                    let decision = runtime.is_authorized(&request(
                        "good",
                        "CAE1",
                        Operation::Retrieve,
                        target,
                    ));
                    slowest = slowest.max(started.elapsed());
                    let expected = if permitted {
                        Effect::Permit
                    } else {
                        Effect::Deny
                    };
                    if decision.effect != expected {
                        wrong.push(format!(
                            "{target}: {:?} {}",
                            decision.effect, decision.reason
                        ));
                    }
                    answered.fetch_add(1, Ordering::Relaxed);
                }
                (wrong, slowest)
            })
        })
        .collect();

    for (index, (attack, expected)) in attacks().iter().enumerate() {
        for isolation in [Isolation::Warm, Isolation::FreshPerRequest] {
            let name = format!("attack-{index}-{isolation:?}");
            let before = answered.load(Ordering::Relaxed);
            let decision =
                runtime.is_authorized(&request(&name, "CAE1", Operation::Retrieve, "/ok/x"));
            assert_eq!(
                decision.effect,
                Effect::Deny,
                "{attack} ({isolation:?}) must be denied: {}",
                decision.reason
            );
            for text in expected {
                assert!(
                    decision.reason.contains(text),
                    "{attack} ({isolation:?}): reason {:?} should contain {text:?}",
                    decision.reason
                );
            }
            assert!(
                decision.reason.len() < 8 << 10,
                "a reason is never passed on at full size"
            );
            // Someone else was served while this attack ran (the good app never waits for it).
            let waited = Instant::now();
            while answered.load(Ordering::Relaxed) == before
                && waited.elapsed() < Duration::from_secs(5)
            {
                std::thread::yield_now();
            }
            assert!(
                answered.load(Ordering::Relaxed) > before,
                "the good app stalled during {attack}"
            );
        }
    }

    stop.store(true, Ordering::Relaxed);
    for thread in good_threads {
        let (wrong, slowest) = thread.join().expect("a good-app thread panicked");
        assert!(wrong.is_empty(), "the good app answered wrongly: {wrong:?}");
        // Generous: the point is that it never waited for an attacker's deadline chain.
        assert!(
            slowest < Duration::from_secs(2),
            "the good app took {slowest:?} once"
        );
    }
    assert!(answered.load(Ordering::Relaxed) > 100);
}

#[test]
fn a_plugin_that_keeps_failing_is_quarantined_then_readmitted() {
    let runtime = runtime();
    let mut spec = hostile_app("flaky", json!({"attack": "panic"}), Isolation::Warm);
    spec.limits.quarantine_after = 3;
    spec.limits.quarantine_base = Duration::from_millis(300);
    runtime.install(spec).unwrap();
    runtime
        .install(hostile_app(
            "steady",
            json!({"attack": "well-behaved"}),
            Isolation::Warm,
        ))
        .unwrap();

    for _ in 0..3 {
        let decision = runtime.is_authorized(&request("flaky", "CAE1", Operation::Retrieve, "/ok"));
        assert!(decision.reason.contains("trapped"), "{}", decision.reason);
    }
    let quarantined = runtime.is_authorized(&request("flaky", "CAE1", Operation::Retrieve, "/ok"));
    assert_eq!(quarantined.effect, Effect::Deny);
    assert!(
        quarantined
            .reason
            .contains("quarantined after 3 consecutive failures"),
        "{}",
        quarantined.reason
    );
    assert_eq!(quarantined.stages[0].failure, Some("quarantined"));
    let status = runtime.app("flaky").unwrap().status();
    assert!(status.plugins[0].health.quarantined);

    // Other applications never notice.
    let steady = runtime.is_authorized(&request("steady", "CAE1", Operation::Retrieve, "/ok"));
    assert_eq!(steady.effect, Effect::Permit, "{}", steady.reason);

    // After the back-off the plugin is let through again (and, still panicking, traps).
    std::thread::sleep(Duration::from_millis(350));
    let readmitted = runtime.is_authorized(&request("flaky", "CAE1", Operation::Retrieve, "/ok"));
    assert!(
        readmitted.reason.contains("trapped"),
        "{}",
        readmitted.reason
    );
    // ...and goes straight back into a longer quarantine.
    let again = runtime.is_authorized(&request("flaky", "CAE1", Operation::Retrieve, "/ok"));
    assert!(again.reason.contains("quarantined"), "{}", again.reason);
    assert_eq!(
        runtime.app("flaky").unwrap().status().plugins[0]
            .health
            .total_quarantines,
        2
    );
}

#[test]
fn a_trapped_warm_instance_is_never_reused() {
    let runtime = runtime();
    runtime
        .install(hostile_app(
            "warm-good",
            json!({"attack": "well-behaved"}),
            Isolation::Warm,
        ))
        .unwrap();
    runtime
        .install(hostile_app(
            "warm-bad",
            json!({"attack": "panic"}),
            Isolation::Warm,
        ))
        .unwrap();
    runtime
        .install(hostile_app(
            "fresh-good",
            json!({"attack": "well-behaved"}),
            Isolation::FreshPerRequest,
        ))
        .unwrap();
    for app in ["warm-good", "warm-bad", "fresh-good"] {
        runtime.is_authorized(&request(app, "CAE1", Operation::Retrieve, "/ok"));
    }
    let warm = |app: &str| runtime.app(app).unwrap().warm_instances();
    assert_eq!(
        warm("warm-good"),
        1,
        "a healthy warm instance goes back to the pool"
    );
    assert_eq!(warm("warm-bad"), 0, "a trapped instance is dropped");
    assert_eq!(warm("fresh-good"), 0, "fresh-per-request keeps nothing");
}

#[test]
fn monitor_mode_reports_the_deny_and_permits() {
    let runtime = runtime();
    let mut spec = hostile_app(
        "watched",
        json!({"attack": "well-behaved"}),
        Isolation::Warm,
    );
    spec.mode = palisade::Mode::Monitor;
    runtime.install(spec).unwrap();
    let decision = runtime.is_authorized(&request("watched", "CAE1", Operation::Retrieve, "/no"));
    assert_eq!(decision.effect, Effect::Permit);
    assert!(!decision.enforced);
    assert_eq!(
        decision.would_deny.as_deref(),
        Some("well-behaved: not /ok")
    );
    let unknown = runtime.is_authorized(&request("nobody", "CAE1", Operation::Retrieve, "/ok"));
    assert_eq!(unknown.effect, Effect::Deny);
    assert!(unknown.reason.contains("unknown application"));
}

#[test]
fn a_prepare_hook_that_attacks_fails_the_load_with_its_cause() {
    let runtime = runtime();
    runtime
        .install(hostile_app(
            "good",
            json!({"attack": "well-behaved"}),
            Isolation::FreshPerRequest,
        ))
        .unwrap();
    for (attack, expected) in [
        ("loop", "time limit"),
        ("memory", "memory limit"),
        ("panic", "trapped"),
        ("kv", "`kv` capability"),
    ] {
        let config = json!({"attack": attack, "during": "prepare"});
        // Warm applications run `prepare` at load too (on a throw-away instance, to check
        // the configuration, issue #11): the same attack fails their load the same way.
        for isolation in [Isolation::FreshPerRequest, Isolation::Warm] {
            let error = runtime
                .install(hostile_app("bad", config.clone(), isolation))
                .expect_err("a prepare that attacks must fail the load");
            let message = error.to_string();
            assert!(
                message.contains("pre-initialised") && message.contains(expected),
                "{attack} ({isolation:?}): {message}"
            );
            assert!(runtime.app("bad").is_none(), "{attack}: nothing installed");
        }
    }
    // The gateway and its other applications are untouched.
    let decision = runtime.is_authorized(&request("good", "CAE1", Operation::Retrieve, "/ok"));
    assert_eq!(decision.effect, Effect::Permit, "{}", decision.reason);
}

#[test]
fn fresh_instances_start_from_the_prepared_snapshot_and_keep_nothing() {
    let runtime = runtime();
    for (app, isolation) in [
        ("warm", Isolation::Warm),
        ("fresh", Isolation::FreshPerRequest),
    ] {
        runtime
            .install(hostile_app(app, json!({"attack": "counter"}), isolation))
            .unwrap();
    }
    let reason = |app: &str| {
        runtime
            .is_authorized(&request(app, "CAE1", Operation::Retrieve, "/ok"))
            .reason
    };
    for call in 1..=5 {
        assert!(reason("warm").ends_with(&format!("counter: {call}")));
        assert!(
            reason("fresh").ends_with("counter: 1"),
            "call {call}: a fresh instance saw state from an earlier request"
        );
    }
}
