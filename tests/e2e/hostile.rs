//! Hostile plugins (SER-001, SER-024): every attack of the `plugins/hostile` fixture ends in
//! a deny whose reason names the cause, the process survives, and a well-behaved application
//! served concurrently keeps answering correctly throughout.

use palisade_test_support as support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use palisade_core::{Effect, Isolation, Operation};
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
        // An overlong reason is cut by the host, not held against the plugin (issue #11.4).
        (
            json!({"attack": "huge-return", "size": 1 << 20}),
            vec!["AAAA", "…[truncated by host: 1048576 bytes, limit 4096]"],
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
    // The good app's deadline is roomy: its calls take microseconds, but on a shared 2-core
    // machine running the rest of this suite a thread can be off-CPU for more than the
    // attackers' 50 ms, and the epoch deadline counts wall-clock time. What is tested is that
    // it is never held up by an attacker, not how fast the machine is.
    let mut good = hostile_app("good", json!({"attack": "well-behaved"}), Isolation::Warm);
    good.limits.deadline = Duration::from_secs(2);
    runtime.install(good).unwrap();
    for (index, (attack, _)) in attacks().iter().enumerate() {
        for isolation in [Isolation::Warm, Isolation::FreshPerRequest] {
            let name = format!("attack-{index}-{isolation:?}");
            let mut spec = hostile_app(&name, attack.clone(), isolation);
            // Only the loop attack is about time. Every other attack ends on its own limit
            // (memory, stack, budget, a malformed answer), which a loaded CI machine can take
            // longer than 50 ms of wall-clock time to reach: the deadline must not win first.
            if attack["attack"] != "loop" {
                spec.limits.deadline = Duration::from_secs(10);
            }
            runtime.install(spec).unwrap();
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
    // Changed with the quarantine rule (issue #11.4/#12.4): the failures of one originator
    // quarantine the plugin for that originator only; three failing originators quarantine
    // it for the application.
    let runtime = runtime();
    let mut spec = hostile_app("flaky", json!({"attack": "panic"}), Isolation::Warm);
    spec.limits.quarantine_after = 3;
    spec.limits.quarantine_base = Duration::from_millis(1000);
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
            .contains("quarantined for this originator after repeated failures"),
        "{}",
        quarantined.reason
    );
    assert_eq!(quarantined.stages[0].failure, Some("quarantined"));
    let health = &runtime.app("flaky").unwrap().status().plugins[0].health;
    assert!(
        !health.quarantined,
        "one originator never quarantines the app"
    );
    assert_eq!(health.quarantined_originators, 1);

    // Other applications never notice.
    let steady = runtime.is_authorized(&request("steady", "CAE1", Operation::Retrieve, "/ok"));
    assert_eq!(steady.effect, Effect::Permit, "{}", steady.reason);

    // Two more failing originators quarantine it for the application.
    for originator in ["CAE2", "CAE3"] {
        let decision =
            runtime.is_authorized(&request("flaky", originator, Operation::Retrieve, "/ok"));
        assert!(decision.reason.contains("trapped"), "{}", decision.reason);
    }
    let everyone = runtime.is_authorized(&request("flaky", "CNEW", Operation::Retrieve, "/ok"));
    assert!(
        everyone
            .reason
            .contains("quarantined after repeated failures across originators"),
        "{}",
        everyone.reason
    );
    assert!(
        runtime.app("flaky").unwrap().status().plugins[0]
            .health
            .quarantined
    );

    // After the back-off the plugin is let through again (and, still panicking, traps).
    std::thread::sleep(Duration::from_millis(1100));
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
            .originator_quarantines,
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
    spec.mode = palisade_core::Mode::Monitor;
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
            let mut app = hostile_app("bad", config.clone(), isolation);
            // Only the loop is meant to meet the time limit; the others get a generous one, so
            // that on a loaded machine their own limit, not the 50 ms deadline, fires first.
            if attack != "loop" {
                app.limits.deadline = Duration::from_secs(10);
            }
            let error = runtime
                .install(app)
                .expect_err("a prepare that attacks must fail the load");
            let message = palisade_types::Chain(&error).to_string();
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

// ---------------------------------------------------------------------------------------------
// Plugin answers and plugin text (issues #11.4, #12.4, #12.5, #12.6): the attacks of
// plugins/hostile/src/answers.rs, in every world.
// ---------------------------------------------------------------------------------------------

use palisade_core::{
    AppSpec, Credential, FilteredResponse, PluginKind, PluginSetup, ResponseBody, Runtime,
};

/// An application whose `kind` plugin is the hostile fixture running `attack`; an
/// authenticator or filter gets a well-behaved authorizer beside it.
fn world_app(name: &str, kind: PluginKind, attack: serde_json::Value) -> AppSpec {
    let mut setup = PluginSetup::new("hostile", attack.to_string());
    setup.kind = Some(kind);
    let mut spec = AppSpec::new(name).plugin(setup, support::hostile_bytes());
    if kind != PluginKind::Authorizer {
        let mut gate = PluginSetup::new("gate", json!({"attack": "well-behaved"}).to_string());
        gate.kind = Some(PluginKind::Authorizer);
        spec = spec.plugin(gate, support::hostile_bytes());
    }
    spec.limits = support::tight_limits();
    spec
}

fn with_credential(app: &str, originator: &str) -> palisade_core::AccessRequest {
    let mut request = request(app, originator, Operation::Retrieve, "/ok/x");
    request.credential = Some(Credential {
        scheme: "bearer".into(),
        value: "device-7".into(),
    });
    request
}

fn filtered(runtime: &Runtime, app: &str) -> FilteredResponse {
    runtime.filter_response(
        &request(app, "CAE1", Operation::Retrieve, "/ok/x"),
        ResponseBody {
            status: 2000,
            content_type: "application/json".into(),
            body: br#"{"m2m:cin":{"con":"21.5"}}"#.to_vec(),
        },
    )
}

fn health(runtime: &Runtime, app: &str) -> palisade_core::PluginHealth {
    let status = runtime.app(app).unwrap().status();
    status
        .plugins
        .iter()
        .find(|plugin| plugin.label.name == "hostile")
        .unwrap()
        .health
        .clone()
}

/// No control or bidirectional-text character survives in text the host passes on.
fn assert_clean(text: &str) {
    for c in text.chars() {
        assert!(
            !c.is_control()
                && !matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}'),
            "U+{:04X} reached the host's output: {text:?}",
            c as u32
        );
    }
}

#[test]
fn an_overlong_answer_is_cut_by_the_host_and_is_no_failure_in_any_world() {
    let runtime = runtime();
    let marker = "…[truncated by host: 5000 bytes, limit 4096]";

    runtime
        .install(world_app(
            "authz",
            PluginKind::Authorizer,
            json!({"attack": "long-reason"}),
        ))
        .unwrap();
    for _ in 0..10 {
        let decision = runtime.is_authorized(&request("authz", "CAE1", Operation::Retrieve, "/ok"));
        assert_eq!(decision.effect, Effect::Deny);
        assert!(decision.reason.ends_with(marker), "{}", decision.reason);
        assert!(decision.reason.len() <= 4096);
        assert_eq!(decision.stages[0].outcome, palisade_core::Outcome::Deny);
    }

    runtime
        .install(world_app(
            "authn-reason",
            PluginKind::Authenticator,
            json!({"attack": "long-reason"}),
        ))
        .unwrap();
    let decision = runtime.is_authorized(&with_credential("authn-reason", "CAE1"));
    assert_eq!(decision.effect, Effect::Deny);
    assert_eq!(decision.stages[0].outcome, palisade_core::Outcome::Rejected);
    assert!(decision.reason.ends_with(marker), "{}", decision.reason);

    runtime
        .install(world_app(
            "authn-subject",
            PluginKind::Authenticator,
            json!({"attack": "long-subject"}),
        ))
        .unwrap();
    let decision = runtime.is_authorized(&with_credential("authn-subject", "CAE1"));
    assert_eq!(decision.effect, Effect::Permit, "{}", decision.reason);
    let subject = &decision.identity.as_ref().unwrap().subject;
    assert!(subject.len() <= 4096);
    assert!(
        subject.contains("…[truncated by host: 5000 bytes, sha256 "),
        "{subject}"
    );

    runtime
        .install(world_app(
            "authn-roles",
            PluginKind::Authenticator,
            json!({"attack": "long-roles"}),
        ))
        .unwrap();
    let decision = runtime.is_authorized(&with_credential("authn-roles", "CAE1"));
    assert_eq!(decision.effect, Effect::Permit, "{}", decision.reason);
    let roles = &decision.identity.as_ref().unwrap().roles;
    assert_eq!(roles.len(), 256);
    assert!(roles.iter().all(|role| role.len() <= 256));
    assert_eq!(roles[255], "…[truncated by host: 300 roles, limit 256]");

    runtime
        .install(world_app(
            "filter-reason",
            PluginKind::Filter,
            json!({"attack": "long-reason"}),
        ))
        .unwrap();
    match filtered(&runtime, "filter-reason") {
        FilteredResponse::Blocked { reason, .. } => assert!(reason.ends_with(marker), "{reason}"),
        other => panic!("{other:?}"),
    }
    let mut spec = world_app(
        "filter-body",
        PluginKind::Filter,
        json!({"attack": "big-rewrite", "size": 2048}),
    );
    spec.limits.max_body_bytes = 1024;
    runtime.install(spec).unwrap();
    match filtered(&runtime, "filter-body") {
        FilteredResponse::Blocked { reason, stages } => {
            assert!(
                reason.contains("2048 bytes, over the limit of 1024"),
                "{reason}"
            );
            assert_eq!(stages[0].failure, None);
        }
        other => panic!("an oversize rewrite is never delivered: {other:?}"),
    }

    for app in [
        "authz",
        "authn-reason",
        "authn-subject",
        "authn-roles",
        "filter-reason",
        "filter-body",
    ] {
        let plugin_health = health(&runtime, app);
        assert_eq!(plugin_health.recent_failures, 0, "{app}");
        assert!(!plugin_health.quarantined, "{app}");
    }
}

#[test]
fn plugin_text_is_escaped_and_identities_with_control_characters_are_refused() {
    let runtime = runtime();
    runtime
        .install(world_app(
            "authz",
            PluginKind::Authorizer,
            json!({"attack": "control-text"}),
        ))
        .unwrap();
    let decision = runtime.is_authorized(&request("authz", "CAE1", Operation::Retrieve, "/ok"));
    assert_eq!(decision.effect, Effect::Deny);
    assert!(
        decision
            .reason
            .contains(r"control-text: ok\n2026-12-06T05:00:00.000000Z  INFO palisade: FORGED operator line\r\u{1b}[2J"),
        "{}",
        decision.reason
    );
    assert!(decision
        .reason
        .contains(r"\0\u{202e}tnemucod\u{2066}x\u{2069}"));
    assert_clean(&decision.reason);
    assert_eq!(decision.stages[0].failure, None, "escaped, not refused");

    runtime
        .install(world_app(
            "authn-text",
            PluginKind::Authenticator,
            json!({"attack": "control-text"}),
        ))
        .unwrap();
    let decision = runtime.is_authorized(&with_credential("authn-text", "CAE1"));
    assert_eq!(decision.stages[0].outcome, palisade_core::Outcome::Rejected);
    assert_clean(&decision.reason);

    for (attack, what) in [
        ("control-subject", "the identity's subject"),
        ("control-roles", "a role"),
    ] {
        runtime
            .install(world_app(
                "authn-identity",
                PluginKind::Authenticator,
                json!({"attack": attack}),
            ))
            .unwrap();
        let decision = runtime.is_authorized(&with_credential("authn-identity", "CAE1"));
        assert_eq!(decision.effect, Effect::Deny, "{attack}");
        assert!(
            decision.identity.is_none(),
            "{attack}: no identity accepted"
        );
        assert_eq!(decision.stages[0].failure, Some("invalid-identity"));
        assert!(
            decision.reason.contains(&format!(
                "plugin hostile returned an invalid identity: {what} contains the control character U+"
            )),
            "{attack}: {}",
            decision.reason
        );
        assert_clean(&decision.reason);
    }

    runtime
        .install(world_app(
            "filter-text",
            PluginKind::Filter,
            json!({"attack": "control-text"}),
        ))
        .unwrap();
    match filtered(&runtime, "filter-text") {
        FilteredResponse::Blocked { reason, .. } => {
            assert!(reason.contains(r"control-text: ok\n"), "{reason}");
            assert_clean(&reason);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn exit_and_other_failures_are_named_for_their_cause_without_a_backtrace() {
    let runtime = runtime();
    for kind in [
        PluginKind::Authorizer,
        PluginKind::Authenticator,
        PluginKind::Filter,
    ] {
        for isolation in [Isolation::Warm, Isolation::FreshPerRequest] {
            let app = format!("exit-{kind}-{isolation:?}").to_lowercase();
            let mut spec = world_app(&app, kind, json!({"attack": "exit"}));
            spec.isolation = isolation;
            runtime.install(spec).unwrap();
            let (reason, stages) = match kind {
                PluginKind::Authorizer => {
                    let decision =
                        runtime.is_authorized(&request(&app, "CAE1", Operation::Retrieve, "/ok"));
                    (decision.reason, decision.stages)
                }
                PluginKind::Authenticator => {
                    let decision = runtime.is_authorized(&with_credential(&app, "CAE1"));
                    (decision.reason, decision.stages)
                }
                PluginKind::Filter => match filtered(&runtime, &app) {
                    FilteredResponse::Blocked { reason, stages } => (reason, stages),
                    other => panic!("{other:?}"),
                },
            };
            assert_eq!(stages[0].failure, Some("exit"), "{app}: {reason}");
            assert!(
                reason.contains("plugin hostile called exit(1) instead of answering"),
                "{app}: {reason}"
            );
        }
    }
    // The answers that really are malformed still say so, with the cause and no backtrace.
    for attack in [
        "garbage",
        "garbage-utf8",
        "garbage-pointer",
        "panic",
        "exit",
    ] {
        runtime
            .install(hostile_app(
                "named",
                json!({"attack": attack}),
                Isolation::Warm,
            ))
            .unwrap();
        let decision = runtime.is_authorized(&request("named", "CAE1", Operation::Retrieve, "/ok"));
        for text in [
            &decision.reason,
            decision.stages[0].detail.as_ref().unwrap(),
        ] {
            assert!(
                !text.contains("backtrace")
                    && !text.contains("wasm function")
                    && !text.contains('\n'),
                "{attack}: {text}"
            );
        }
        let expected = match attack {
            "panic" => "trap",
            "exit" => "exit",
            _ => "malformed-answer",
        };
        assert_eq!(decision.stages[0].failure, Some(expected), "{attack}");
    }
}

/// One call of the `kind` plugin of `app` for `originator` and `target`: whether it went
/// through, and the failure code of the hostile plugin's stage.
fn call_world(
    runtime: &Runtime,
    app: &str,
    kind: PluginKind,
    originator: &str,
    target: &str,
) -> (bool, Option<&'static str>) {
    let mut asked = request(app, originator, Operation::Retrieve, target);
    match kind {
        PluginKind::Filter => {
            let response = ResponseBody {
                status: 2000,
                content_type: "application/json".into(),
                body: b"{}".to_vec(),
            };
            match runtime.filter_response(&asked, response) {
                FilteredResponse::Deliver { stages, .. } => (true, stages[0].failure),
                FilteredResponse::Blocked { stages, .. } => (false, stages[0].failure),
            }
        }
        _ => {
            if kind == PluginKind::Authenticator {
                asked.credential = Some(Credential {
                    scheme: "bearer".into(),
                    value: "device-7".into(),
                });
            }
            let decision = runtime.is_authorized(&asked);
            (
                decision.effect == Effect::Permit,
                decision.stages[0].failure,
            )
        }
    }
}

/// How many deadline-burning calls ran before the plugin was quarantined for `originators`
/// (round robin, each alternating a well-served request and one that burns the deadline).
fn burns_until_quarantined(
    runtime: &Runtime,
    app: &str,
    kind: PluginKind,
    originators: &[&str],
) -> usize {
    for (burns, round) in (0..150).enumerate() {
        let originator = originators[round % originators.len()];
        let (served, ok_failure) = call_world(runtime, app, kind, originator, "/ok/x");
        let (_, burn_failure) = call_world(runtime, app, kind, originator, "/burn");
        if ok_failure == Some("quarantined") || burn_failure == Some("quarantined") {
            return burns;
        }
        assert!(served, "{kind}: {ok_failure:?}");
        assert_eq!(burn_failure, Some("time-limit"), "{kind}");
    }
    panic!("150 deadline-burning calls and still not quarantined");
}

#[test]
fn alternating_successes_no_longer_hide_deadline_burning_failures() {
    let runtime = runtime();
    for kind in [
        PluginKind::Authorizer,
        PluginKind::Authenticator,
        PluginKind::Filter,
    ] {
        // One originator: quarantined for itself after three burnt deadlines.
        let one = format!("alternate-{kind}");
        runtime
            .install(world_app(&one, kind, json!({"attack": "alternate"})))
            .unwrap();
        // Three on any machine that runs them within a second or so of each other; the
        // window decays, so a very slow machine may need one or two more, never 150.
        let burns = burns_until_quarantined(&runtime, &one, kind, &["CAE1"]);
        assert!((3..=5).contains(&burns), "{kind}: {burns}");
        let plugin_health = health(&runtime, &one);
        assert_eq!(plugin_health.quarantined_originators, 1, "{kind}");
        assert!(!plugin_health.quarantined, "{kind}");
        // Originators in turn: the application is quarantined after three burns in all.
        let many = format!("alternate-many-{kind}");
        runtime
            .install(world_app(&many, kind, json!({"attack": "alternate"})))
            .unwrap();
        let burns = burns_until_quarantined(&runtime, &many, kind, &["C1", "C2", "C3", "C4"]);
        assert!(burns <= 5, "{kind}: {burns}");
        assert!(health(&runtime, &many).quarantined, "{kind}");
    }
}

#[test]
fn one_originator_cannot_quarantine_a_plugin_for_the_others() {
    let runtime = runtime();
    runtime
        .install(world_app(
            "shared",
            PluginKind::Authorizer,
            json!({"attack": "alternate"}),
        ))
        .unwrap();
    // The legitimate client has been served before the attack.
    let legit = || runtime.is_authorized(&request("shared", "CLEGIT", Operation::Retrieve, "/ok"));
    assert_eq!(legit().effect, Effect::Permit);
    for _ in 0..20 {
        let attack =
            runtime.is_authorized(&request("shared", "CATTACK", Operation::Retrieve, "/burn"));
        assert_eq!(attack.effect, Effect::Deny);
    }
    let plugin_health = health(&runtime, "shared");
    assert!(!plugin_health.quarantined, "{plugin_health:?}");
    assert_eq!(plugin_health.quarantined_originators, 1);
    for _ in 0..20 {
        let decision = legit();
        assert_eq!(decision.effect, Effect::Permit, "{}", decision.reason);
    }
    // The attacker's own requests are refused without running the plugin.
    let refused = runtime.is_authorized(&request("shared", "CATTACK", Operation::Retrieve, "/ok"));
    assert_eq!(refused.stages[0].failure, Some("quarantined"));
}

// ---------------------------------------------------------------------------------------------
// The same against a real `palisade serve`.
// ---------------------------------------------------------------------------------------------

use crate::support::server;

fn gateway_config(apps: &str) -> String {
    format!(
        r#"
[upstream]
url = "http://127.0.0.1:9"
timeout_ms = 5000

{apps}
"#
    )
}

/// Issue #11 finding 4: five requests with a 5 KB path or originator made acp's deny reason
/// exceed 4 KiB, which quarantined acp for every originator of the application.
#[test]
fn serve_long_paths_and_originators_no_longer_quarantine_acp_for_everyone() {
    let gateway = server::Gateway::start(
        &gateway_config(
            r#"
[[app]]
name = "lights"
paths = ["/cse-in/lights"]
[[app.plugin]]
plugin = "acp"
config = { policies = [ { id = "legit", pv = { acr = [ { acor = ["originator:CLEGIT"], acop = 2 } ] } } ] }
"#,
        ),
        &[],
    );
    let decide = |originator: &str, target: &str| {
        gateway
            .decide(&json!({"originator": originator, "operation": "retrieve", "target": target}))
    };
    let first = decide("CLEGIT", "/cse-in/lights/a").json();
    assert_eq!(first["decision"], "permit", "{first}");
    let long_path = format!("/cse-in/lights/{}", "p".repeat(5000));
    let long_originator = format!("C{}", "o".repeat(5000));
    let (mut cut, mut bounded_at_edge) = (0, 0);
    for round in 0..10 {
        for (originator, target) in [
            ("CATTACK", long_path.as_str()),
            (long_originator.as_str(), "/cse-in/lights/a"),
        ] {
            let response = decide(originator, target);
            // Either bounded at the edge (a 4xx of its own) or decided: never a permit, and a
            // deny whose reason the host cut, not a plugin failure.
            if response.status == 200 {
                let answer = response.json();
                assert_eq!(answer["decision"], "deny", "round {round}");
                let reason = answer["reason"].as_str().unwrap_or_default();
                assert!(!reason.contains("quarantined"), "{reason}");
                assert!(reason.len() <= 4200, "{}", reason.len());
                cut += usize::from(reason.contains("…[truncated by host: "));
            } else {
                bounded_at_edge += 1;
                assert!(
                    (400..500).contains(&response.status),
                    "{}: {}",
                    response.status,
                    response.text()
                );
            }
        }
    }
    assert!(
        cut >= 10 || bounded_at_edge > 0,
        "the long path's deny reasons were cut by the host ({cut})"
    );
    for _ in 0..20 {
        let answer = decide("CLEGIT", "/cse-in/lights/a").json();
        assert_eq!(answer["decision"], "permit", "{answer}");
    }
    let metrics = gateway.metrics();
    assert!(
        !metrics.contains(r#"palisade_plugin_failures_total{app="lights""#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"palisade_plugin_quarantined{app="lights",plugin="acp"} 0"#),
        "{metrics}"
    );
}

/// Every string in an audit record, recursively.
fn strings(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::String(text) => out.push(text.clone()),
        serde_json::Value::Array(items) => items.iter().for_each(|item| strings(item, out)),
        serde_json::Value::Object(map) => map.values().for_each(|item| strings(item, out)),
        _ => {}
    }
}

#[test]
fn serve_plugin_text_cannot_forge_operator_log_lines_or_audit_entries() {
    let mut gateway = server::Gateway::start(
        &gateway_config(&format!(
            r#"
[[app]]
name = "loud"
paths = ["/cse-in/loud"]
[[app.plugin]]
name = "hostile"
plugin = "{hostile}"
config = {{ attack = "control-text" }}

[[app]]
name = "alternate"
paths = ["/cse-in/alternate"]
limits = {{ quarantine_base_ms = 60000 }}
[[app.plugin]]
name = "hostile"
plugin = "{hostile}"
config = {{ attack = "alternate", burn = "/cse-in/alternate/burn" }}
"#,
            hostile = palisade_artifacts::HOSTILE_PATH
        )),
        &[],
    );
    let response = gateway.decide(
        &json!({"originator": "CAE1", "operation": "retrieve", "target": "/cse-in/loud/x"}),
    );
    assert_eq!(response.status, 200, "{}", response.text());
    let answer = response.json();
    assert_eq!(answer["decision"], "deny");
    let decision_id = answer["decision_id"].as_str().unwrap().to_string();
    if let Some(reason) = answer["reason"].as_str() {
        assert_clean(reason);
    }

    // One originator alternating successes with deadline burns is stopped after three,
    // and another originator is still served.
    let mut burns = 0;
    for _ in 0..20 {
        let burn = gateway
            .decide(&json!({"originator": "CATTACK", "operation": "retrieve", "target": "/cse-in/alternate/burn"}))
            .json();
        if burn["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("quarantined")
        {
            break;
        }
        burns += 1;
        let ok = gateway
            .decide(&json!({"originator": "CATTACK", "operation": "retrieve", "target": "/cse-in/alternate/ok"}))
            .json();
        if ok["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("quarantined")
        {
            break;
        }
    }
    assert!(
        burns <= 5,
        "{burns} deadline-burning calls before quarantine"
    );
    let metrics = gateway.metrics();
    assert!(
        metrics.contains(
            r#"palisade_plugin_quarantined_originators{app="alternate",plugin="hostile"} 1"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"palisade_plugin_quarantined{app="alternate",plugin="hostile"} 0"#),
        "{metrics}"
    );
    let other = gateway
        .decide(&json!({"originator": "CLEGIT", "operation": "retrieve", "target": "/cse-in/alternate/ok"}))
        .json();
    assert_eq!(other["decision"], "permit", "{other}");

    // The operator log: the plugin's message is one escaped line, tagged with its app.
    let waited = Instant::now();
    while !gateway.stderr.lock().unwrap().contains("FORGED")
        && waited.elapsed() < Duration::from_secs(10)
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = gateway.stderr.lock().unwrap().clone();
    let lines: Vec<&str> = log.lines().filter(|line| line.contains("FORGED")).collect();
    assert!(!lines.is_empty(), "the plugin's message is logged:\n{log}");
    for line in &lines {
        assert!(line.contains("loud"), "tagged with its app: {line}");
        assert!(line.contains(r"ok\n2026-12-06T05:00:00.000000Z"), "{line}");
    }
    assert!(
        !log.lines()
            .any(|line| line.starts_with("2026-12-06T05:00:00")),
        "a forged operator log line:\n{log}"
    );
    for forbidden in ["\u{1b}[2J", "\u{1b}]0;owned", "\0", "\u{202e}", "\u{2066}"] {
        assert!(
            !log.contains(forbidden),
            "{forbidden:?} reached the operator log"
        );
    }

    // The audit: the record of that decision holds only clean text.
    let data = gateway.data_dir();
    assert!(gateway.terminate().success());
    let mut found = false;
    for entry in std::fs::read_dir(data.join("audit")).unwrap() {
        let path = entry.unwrap().path();
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        for line in text.lines().filter(|line| line.contains(&decision_id)) {
            found = true;
            let record: serde_json::Value = serde_json::from_str(line).unwrap();
            let mut texts = Vec::new();
            strings(&record, &mut texts);
            texts.iter().for_each(|text| assert_clean(text));
            assert!(line.contains("FORGED"), "the reason is recorded: {line}");
        }
    }
    assert!(found, "decision {decision_id} is in the audit log");
}

// ---------------------------------------------------------------------------------------------
// Budgets (issue #12, findings 2 and 3): one memory cap per instance however many memories it
// declares, and every host call counted, WASI included.
// ---------------------------------------------------------------------------------------------

use palisade_core::Capability;

/// Pages each memory of [`multi_memory_component`] grows by: 15 MiB, under a 16 MiB cap for
/// any one memory, 60 MiB for the four.
const MULTI_MEMORY_GROWTH_PAGES: i32 = 240;

/// Instructions that grow memory 0 of the module they are in by [`MULTI_MEMORY_GROWTH_PAGES`],
/// trap (`unreachable`, as a Rust guest aborts) if that is refused, and write one byte to
/// every new page so that it is resident. Uses locals `base` and `base + 1`.
fn grow_and_touch(base: u32) -> Vec<wasm_encoder::Instruction<'static>> {
    use wasm_encoder::{BlockType, Instruction, MemArg};
    vec![
        Instruction::I32Const(MULTI_MEMORY_GROWTH_PAGES),
        Instruction::MemoryGrow(0),
        Instruction::LocalTee(base),
        Instruction::I32Const(-1),
        Instruction::I32Eq,
        Instruction::If(BlockType::Empty),
        Instruction::Unreachable,
        Instruction::End,
        Instruction::I32Const(0),
        Instruction::LocalSet(base + 1),
        Instruction::Block(BlockType::Empty),
        Instruction::Loop(BlockType::Empty),
        Instruction::LocalGet(base + 1),
        Instruction::I32Const(MULTI_MEMORY_GROWTH_PAGES),
        Instruction::I32GeU,
        Instruction::BrIf(1),
        Instruction::LocalGet(base),
        Instruction::LocalGet(base + 1),
        Instruction::I32Add,
        Instruction::I32Const(16),
        Instruction::I32Shl,
        Instruction::I32Const(1),
        Instruction::I32Store8(MemArg {
            offset: 0,
            align: 0,
            memory_index: 0,
        }),
        Instruction::LocalGet(base + 1),
        Instruction::I32Const(1),
        Instruction::I32Add,
        Instruction::LocalSet(base + 1),
        Instruction::Br(0),
        Instruction::End,
        Instruction::End,
    ]
}

/// One page of memory, unshared, growable.
fn one_page() -> wasm_encoder::MemoryType {
    wasm_encoder::MemoryType {
        minimum: 1,
        maximum: None,
        memory64: false,
        shared: false,
        page_size_log2: None,
    }
}

/// The names of the extra core modules of [`multi_memory_component`].
const EXTRA_MEMORY_MODULES: [&str; 3] = ["mem1", "mem2", "mem3"];

/// An extra core module with a memory of its own and a `grow` function for it.
fn extra_memory_module() -> Vec<u8> {
    use wasm_encoder::{
        CodeSection, ExportKind, ExportSection, Function, FunctionSection, Instruction,
        MemorySection, Module, TypeSection, ValType,
    };
    let mut module = Module::new();
    let mut types = TypeSection::new();
    types.ty().function([], []);
    module.section(&types);
    let mut functions = FunctionSection::new();
    functions.function(0);
    module.section(&functions);
    let mut memories = MemorySection::new();
    memories.memory(one_page());
    module.section(&memories);
    let mut exports = ExportSection::new();
    exports.export("grow", ExportKind::Func, 0);
    module.section(&exports);
    let mut code = CodeSection::new();
    let mut grow = Function::new([(2, ValType::I32)]);
    for instruction in grow_and_touch(0) {
        grow.instruction(&instruction);
    }
    grow.instruction(&Instruction::End);
    code.function(&grow);
    module.section(&code);
    module.finish()
}

/// An authorizer component of four core instances with one memory each (the shape the
/// pooling allocator admits: one memory per core module, up to four per component).
/// `authorize` grows its own memory by [`MULTI_MEMORY_GROWTH_PAGES`], then has each of the
/// three other modules grow theirs as much, each trapping as soon as a growth is refused, and
/// permits if all four grew. Built here because no toolchain emits such a component for a Rust
/// plugin; the extra modules are linked in as wit-component adapters.
fn multi_memory_component() -> Vec<u8> {
    use wasm_encoder::{
        CodeSection, ConstExpr, EntityType, ExportKind, ExportSection, Function, FunctionSection,
        GlobalSection, GlobalType, ImportSection, Instruction, MemArg, MemorySection, Module,
        TypeSection, ValType,
    };
    /// Where the answer is lowered: the decision's discriminant (permit is 0) at offset 0.
    const RETURN_AREA: i32 = 16;

    let mut module = Module::new();
    let mut types = TypeSection::new();
    types.ty().function([ValType::I32; 4], [ValType::I32]); // 0: cabi_realloc
    types.ty().function([ValType::I32], [ValType::I32]); // 1: authorize
    types.ty().function([ValType::I32], []); // 2: cabi_post_authorize
    types.ty().function([], []); // 3: an extra module's grow
    module.section(&types);
    let mut imports = ImportSection::new();
    for name in EXTRA_MEMORY_MODULES {
        imports.import(name, "grow", EntityType::Function(3));
    }
    module.section(&imports);
    // Functions 0..3 are the imports; 3 is cabi_realloc, 4 authorize, 5 the post-return.
    let mut functions = FunctionSection::new();
    for ty in 0..3 {
        functions.function(ty);
    }
    module.section(&functions);
    let mut memories = MemorySection::new();
    memories.memory(one_page());
    module.section(&memories);
    let mut globals = GlobalSection::new();
    globals.global(
        GlobalType {
            val_type: ValType::I32,
            mutable: true,
            shared: false,
        },
        &ConstExpr::i32_const(1024),
    );
    module.section(&globals);
    let mut exports = ExportSection::new();
    exports.export("memory", ExportKind::Memory, 0);
    exports.export("cabi_realloc", ExportKind::Func, 3);
    exports.export("authorize", ExportKind::Func, 4);
    exports.export("cabi_post_authorize", ExportKind::Func, 5);
    module.section(&exports);

    let mut code = CodeSection::new();
    // cabi_realloc(old, old_size, align, new_size): a bump allocator, 8-aligned (the
    // requests of these tests are far smaller than the first page).
    let mut realloc = Function::new([(1, ValType::I32)]);
    for instruction in [
        Instruction::GlobalGet(0),
        Instruction::I32Const(7),
        Instruction::I32Add,
        Instruction::I32Const(-8),
        Instruction::I32And,
        Instruction::LocalTee(4),
        Instruction::LocalGet(3),
        Instruction::I32Add,
        Instruction::GlobalSet(0),
        Instruction::LocalGet(4),
        Instruction::End,
    ] {
        realloc.instruction(&instruction);
    }
    code.function(&realloc);
    let mut authorize = Function::new([(2, ValType::I32)]);
    for instruction in grow_and_touch(1) {
        authorize.instruction(&instruction);
    }
    for import in 0..3 {
        authorize.instruction(&Instruction::Call(import));
    }
    for instruction in [
        Instruction::I32Const(RETURN_AREA),
        Instruction::I32Const(0),
        Instruction::I32Store8(MemArg {
            offset: 0,
            align: 0,
            memory_index: 0,
        }),
        Instruction::I32Const(RETURN_AREA),
        Instruction::End,
    ] {
        authorize.instruction(&instruction);
    }
    code.function(&authorize);
    let mut post_return = Function::new([]);
    post_return.instruction(&Instruction::End);
    code.function(&post_return);
    module.section(&code);

    let mut encoder = authorizer_encoder(module.finish());
    // wit-component links only adapters without memories of their own: link empty ones,
    // then swap each for the module with a memory (same exports, no imports either).
    let placeholder = placeholder_module();
    for name in EXTRA_MEMORY_MODULES {
        encoder = encoder
            .adapter(name, &placeholder)
            .expect("a placeholder module");
    }
    let component = encoder.encode().expect("a component");
    let (component, swapped) = swap_core_modules(&component, &placeholder, &extra_memory_module());
    assert_eq!(
        swapped,
        EXTRA_MEMORY_MODULES.len(),
        "every placeholder swapped"
    );
    component
}

/// An encoder of an authorizer component around `core`, a core module exporting `memory`,
/// `cabi_realloc`, `authorize` and `cabi_post_authorize` in the canonical ABI.
fn authorizer_encoder(mut core: Vec<u8>) -> wit_component::ComponentEncoder {
    let mut resolve = wit_parser::Resolve::default();
    let (package, _) = resolve
        .push_path(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../plugins/sdk/wit"
        ))
        .expect("the palisade WIT");
    let world = resolve
        .select_world(&[package], Some("authorizer"))
        .expect("the authorizer world");
    wit_component::embed_component_metadata(
        &mut core,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
    )
    .expect("embedding the world");
    wit_component::ComponentEncoder::default()
        .module(&core)
        .expect("a core module")
        .validate(true)
}

/// A module exporting a `grow` that does nothing.
fn placeholder_module() -> Vec<u8> {
    use wasm_encoder::{
        CodeSection, ExportKind, ExportSection, Function, FunctionSection, Instruction, Module,
        TypeSection,
    };
    let mut module = Module::new();
    let mut types = TypeSection::new();
    types.ty().function([], []);
    module.section(&types);
    let mut functions = FunctionSection::new();
    functions.function(0);
    module.section(&functions);
    let mut exports = ExportSection::new();
    exports.export("grow", ExportKind::Func, 0);
    module.section(&exports);
    let mut code = CodeSection::new();
    let mut grow = Function::new([]);
    grow.instruction(&Instruction::End);
    code.function(&grow);
    module.section(&code);
    module.finish()
}

/// Replaces every top-level core module of `component` whose bytes are `from` by `to`, and
/// says how many it replaced. A component is its 8-byte header and then sections of one id
/// byte, a LEB128 size and the payload; core modules are sections of id 1.
fn swap_core_modules(component: &[u8], from: &[u8], to: &[u8]) -> (Vec<u8>, usize) {
    use wasm_encoder::Encode;

    let mut out = component[..8].to_vec();
    let mut swapped = 0;
    let mut at = 8;
    while at < component.len() {
        let id = component[at];
        at += 1;
        let (mut size, mut shift) = (0usize, 0);
        loop {
            let byte = component[at];
            at += 1;
            size |= usize::from(byte & 0x7f) << shift;
            shift += 7;
            if byte & 0x80 == 0 {
                break;
            }
        }
        let payload = &component[at..at + size];
        at += size;
        let payload = if id == 1 && payload == from {
            swapped += 1;
            to
        } else {
            payload
        };
        out.push(id);
        payload.len().encode(&mut out);
        out.extend_from_slice(payload);
    }
    (out, swapped)
}

/// A hostile application with a 500 ms deadline (these attacks do real work before they hit
/// their limit, and the machine running the tests may be busy), granted what it asks for.
fn budget_app(name: &str, config: serde_json::Value, isolation: Isolation) -> AppSpec {
    let mut spec = hostile_app(name, config, isolation);
    spec.limits.deadline = Duration::from_millis(500);
    spec
}

fn deny_reason(runtime: &palisade_core::Runtime, app: &str) -> String {
    let decision = runtime.is_authorized(&request(app, "CAE1", Operation::Retrieve, "/ok"));
    assert_eq!(
        decision.effect,
        Effect::Deny,
        "{app} must be denied: {}",
        decision.reason
    );
    decision.reason
}

#[test]
fn several_core_memories_share_one_memory_cap() {
    let component = multi_memory_component();
    let runtime = runtime();
    for isolation in [Isolation::Warm, Isolation::FreshPerRequest] {
        // 16 MiB for the instance: one memory may take 15 MiB, the second cannot.
        let name = format!("memories-{isolation:?}");
        let mut spec =
            AppSpec::new(&name).plugin(PluginSetup::new("memories", "{}"), component.clone());
        spec.isolation = isolation;
        spec.limits = support::tight_limits();
        runtime.install(spec).unwrap();
        for _ in 0..3 {
            let reason = deny_reason(&runtime, &name);
            assert!(
                reason.contains("memory limit") && reason.contains("16384 KiB"),
                "{isolation:?}: {reason}"
            );
        }
        assert_eq!(runtime.app(&name).unwrap().warm_instances(), 0);

        // The other side: with 64 MiB for the instance, all four memories fit.
        let roomy = format!("roomy-{isolation:?}");
        let mut spec =
            AppSpec::new(&roomy).plugin(PluginSetup::new("memories", "{}"), component.clone());
        spec.isolation = isolation;
        spec.limits = support::tight_limits();
        spec.limits.memory_bytes = 64 << 20;
        runtime.install(spec).unwrap();
        let decision = runtime.is_authorized(&request(&roomy, "CAE1", Operation::Retrieve, "/ok"));
        assert_eq!(
            decision.effect,
            Effect::Permit,
            "{isolation:?}: {}",
            decision.reason
        );
    }
}

/// (attack configuration, texts the deny reason must contain)
fn budget_attacks() -> Vec<(serde_json::Value, Vec<&'static str>)> {
    vec![
        (
            json!({"attack": "random-huge"}),
            vec!["trapped", "67108864 random bytes", "4096 per request"],
        ),
        (
            json!({"attack": "random-huge", "size": 4096}),
            vec!["random-huge: got 4096 bytes"],
        ),
        (
            json!({"attack": "random-loop"}),
            vec!["trapped", "random-byte budget", "65536 per call"],
        ),
        (
            json!({"attack": "random-loop", "count": 16}),
            vec!["random-loop: got 65536 bytes"],
        ),
        (
            json!({"attack": "random-small"}),
            vec!["random-small: got 32 bytes"],
        ),
        (
            json!({"attack": "output-flood"}),
            vec!["host-call budget of 1000 calls"],
        ),
        (
            json!({"attack": "handle-leak"}),
            vec![
                "trapped",
                "more than 64 WASI resource handles",
                "resource-handle limit",
            ],
        ),
        (
            json!({"attack": "pollable-leak"}),
            vec![
                "trapped",
                "more than 64 WASI resource handles",
                "resource-handle limit",
            ],
        ),
    ]
}

#[test]
fn wasi_calls_are_bounded_and_name_their_limit() {
    let runtime = runtime();
    for (index, (attack, expected)) in budget_attacks().into_iter().enumerate() {
        for isolation in [Isolation::Warm, Isolation::FreshPerRequest] {
            let name = format!("budget-{index}-{isolation:?}");
            runtime
                .install(budget_app(&name, attack.clone(), isolation))
                .unwrap();
            let reason = deny_reason(&runtime, &name);
            for text in &expected {
                assert!(
                    reason.contains(text),
                    "{attack} ({isolation:?}): reason {reason:?} should contain {text:?}"
                );
            }
        }
    }
}

#[test]
fn output_past_the_per_call_bound_is_dropped_and_counted() {
    let runtime = runtime();
    runtime
        .install(budget_app(
            "burst",
            json!({"attack": "output-burst", "size": 1 << 20}),
            Isolation::Warm,
        ))
        .unwrap();
    let before = palisade_core::plugin_output_dropped_bytes();
    // The plugin is not failed for writing: its writes past 64 KiB are dropped, not refused.
    let reason = deny_reason(&runtime, "burst");
    assert!(
        reason.contains("output-burst: wrote 1048576 bytes"),
        "{reason}"
    );
    let dropped = palisade_core::plugin_output_dropped_bytes() - before;
    assert!(
        dropped >= (1 << 20) - (64 << 10),
        "only {dropped} bytes counted as dropped"
    );
    // The bound is per call: the next call of the same warm instance writes again.
    let again = deny_reason(&runtime, "burst");
    assert!(again.contains("wrote 1048576 bytes"), "{again}");
}

#[test]
fn a_warm_instance_cannot_hoard_handles_across_calls() {
    let runtime = runtime();
    runtime
        .install(budget_app(
            "hoarder",
            json!({"attack": "handle-leak-warm", "count": 16}),
            Isolation::Warm,
        ))
        .unwrap();
    // Each call keeps 16 more stderr handles in the same warm instance...
    let mut held = Vec::new();
    let mut trapped = None;
    for call in 1..=8 {
        let reason = deny_reason(&runtime, "hoarder");
        if reason.contains("resource-handle limit") {
            trapped = Some(call);
            break;
        }
        held.push(reason);
    }
    assert_eq!(
        held.first().map(String::as_str),
        Some("handle-leak-warm: holding 16")
    );
    // ...until the instance reaches the cap of 64 and traps, by its fifth call at the latest.
    let trapped = trapped.expect("the hoarding instance never reached the handle cap");
    assert!(trapped <= 5, "trapped only at call {trapped}: {held:?}");
    // The trapped instance, with every handle it held, is gone: the next one starts empty.
    assert_eq!(runtime.app("hoarder").unwrap().warm_instances(), 0);
    assert_eq!(
        deny_reason(&runtime, "hoarder"),
        "handle-leak-warm: holding 16"
    );
}

#[test]
fn large_inputs_to_every_import_are_bounded() {
    let runtime = runtime();
    let granted = |name: &str, size: usize| {
        let mut setup = PluginSetup::new(
            "hostile",
            json!({"attack": "large-inputs", "size": size}).to_string(),
        );
        for capability in [Capability::Kv, Capability::Groups, Capability::Crypto] {
            setup = setup.grant(capability);
        }
        let mut spec = AppSpec::new(name).plugin(setup, support::hostile_bytes());
        spec.limits = support::tight_limits();
        spec.limits.deadline = Duration::from_millis(500);
        spec
    };
    // 1 MiB to each import: every one answers within its own bounds (the log line is cut,
    // the key-value store refuses the value, no group or key has such a name)...
    runtime.install(granted("megabyte", 1 << 20)).unwrap();
    let reason = deny_reason(&runtime, "megabyte");
    for text in [
        "large-inputs: log ok",
        "kv-get false",
        "TooLarge",
        "groups false",
        "UnknownKey",
    ] {
        assert!(reason.contains(text), "{reason:?} should contain {text:?}");
    }
    // ...and 8 MiB is more than one crossing into the host may carry: the copy is refused
    // before the host holds it.
    runtime.install(granted("eight", 8 << 20)).unwrap();
    let reason = deny_reason(&runtime, "eight");
    assert!(
        reason.contains("exceeded a resource limit")
            && reason.contains("per-call copy limit")
            && reason.contains("too much data is being copied"),
        "{reason}"
    );
    assert!(!reason.contains("malformed"), "{reason}");

    // The configuration flows the other way: 20 MiB of it cannot be handed to a plugin
    // whose memory is capped at 16 MiB. `prepare` reads it when the plugin is loaded, so the
    // load fails on the memory limit, before any request.
    let padding = "p".repeat(20 << 20);
    let error = runtime
        .install(budget_app(
            "big-config",
            json!({"attack": "well-behaved", "padding": padding}),
            Isolation::Warm,
        ))
        .expect_err("a configuration larger than the memory cap cannot load");
    let error = format!("{error} / {error:?}");
    assert!(error.contains("MemoryLimit"), "{error}");
}

/// The gateway's growth allowed by [`wasi_budgets_and_memories_do_not_grow_a_live_gateway`]:
/// a few instances' worth of pool memory (each at most 16 MiB, and released when it traps)
/// plus allocator slack. Before these limits, eight concurrent `random(64 MiB)` calls grew a
/// gateway by 373 MB, and three warm four-memory instances by 195 MB.
const GATEWAY_GROWTH_BOUND: u64 = 64 << 20;

#[test]
fn wasi_budgets_and_memories_do_not_grow_a_live_gateway() {
    // Every attack here ends on its own budget; the 10 s deadline only keeps a loaded machine
    // (8 threads on 2 cores) from ending one on time first.
    let scratch = tempfile::tempdir().unwrap();
    let memories_path = scratch.path().join("memories.wasm");
    std::fs::write(&memories_path, multi_memory_component()).unwrap();
    let app = |name: &str, plugin: &str, config: &str| {
        format!(
            r#"
[[app]]
name = "{name}"
paths = ["/cse-in/{name}"]
isolation = "warm"
limits = {{ deadline_ms = 10000, quarantine_after = 1000000 }}
[[app.plugin]]
name = "{name}"
plugin = "{plugin}"
config = {config}
"#
        )
    };
    let hostile = palisade_artifacts::HOSTILE_PATH;
    let attacks = [
        ("random", r#"{ attack = "random-huge" }"#, "random bytes"),
        (
            "randomloop",
            r#"{ attack = "random-loop" }"#,
            "random-byte budget",
        ),
        (
            "leak",
            r#"{ attack = "handle-leak" }"#,
            "resource-handle limit",
        ),
        (
            "hoard",
            r#"{ attack = "handle-leak-warm", count = 16 }"#,
            "handle-leak-warm",
        ),
        (
            "flood",
            r#"{ attack = "output-flood" }"#,
            "host-call budget",
        ),
    ];
    let mut config = String::from("[upstream]\nurl = \"http://127.0.0.1:9\"\n");
    for (name, attack, _) in &attacks {
        config.push_str(&app(name, hostile, attack));
    }
    config.push_str(&app("memories", &memories_path.display().to_string(), "{}"));
    let gateway = server::Gateway::start(&config, &[]);
    // One originator per thread, so that no rate limit answers in the plugins' place.
    let decide = |app: &str, originator: &str| {
        let response = gateway.decide(&json!({
            "originator": originator,
            "operation": "retrieve",
            "target": format!("/cse-in/{app}/x"),
        }));
        assert_eq!(response.status, 200, "{}", response.text());
        let body = response.json();
        assert_eq!(body["decision"], "deny", "{app}: {body}");
        body["reason"].as_str().unwrap_or_default().to_string()
    };
    // Every path has run once before the baseline, so what follows can only add what the
    // attacks keep.
    for (name, _, _) in &attacks {
        decide(name, "CWARMUP");
    }
    decide("memories", "CWARMUP");
    let baseline = gateway.rss_bytes();

    for round in 0..5 {
        std::thread::scope(|scope| {
            for thread in 0..8 {
                let originator = format!("CATTACK{round}x{thread}");
                let decide = &decide;
                let attacks = &attacks;
                scope.spawn(move || {
                    for (name, _, expected) in attacks {
                        let reason = decide(name, &originator);
                        assert!(
                            reason.contains(expected) || reason.contains("resource-handle limit"),
                            "{name}: {reason}"
                        );
                    }
                    let reason = decide("memories", &originator);
                    assert!(reason.contains("memory limit"), "memories: {reason}");
                });
            }
        });
    }
    let grown = gateway.rss_bytes().saturating_sub(baseline);
    eprintln!(
        "gateway RSS: {} MiB before the attacks, grown by {} KiB",
        baseline >> 20,
        grown >> 10
    );
    assert!(
        grown < GATEWAY_GROWTH_BOUND,
        "the gateway grew by {} MiB under the attacks (bound {} MiB)",
        grown >> 20,
        GATEWAY_GROWTH_BOUND >> 20
    );
    // The dropped-output counter is exported.
    assert!(gateway
        .metrics()
        .contains("palisade_plugin_output_dropped_bytes_total"));
}

// ---------------------------------------------------------------------------------------------
// A hostile `cabi_realloc` (issue #12, load/call-time attacks). To hand a plugin its request
// the host asks the plugin's own exported allocator for room and writes there: whatever that
// allocator answers must end in a deny naming the cause, never a host crash, a write outside
// the plugin's memory, or a permit.
// ---------------------------------------------------------------------------------------------

/// Where [`realloc_component`]'s `authorize` writes its answer (permit) when it answers.
const REALLOC_RETURN_AREA: i32 = 16;

/// The `cabi_realloc` bodies of the attacks: (name, body, texts the deny reason must contain).
/// The body has the allocator's four `i32` parameters and one `i32` local (index 4).
fn realloc_attacks() -> Vec<(
    &'static str,
    Vec<wasm_encoder::Instruction<'static>>,
    Vec<&'static str>,
)> {
    use wasm_encoder::{BlockType, Instruction};
    vec![
        (
            // Far past the one page the plugin has: the host must not write there.
            "out-of-bounds",
            vec![Instruction::I32Const(0x7fff_0000), Instruction::End],
            vec!["malformed answer", "realloc return: beyond end of memory"],
        ),
        (
            // Past the end by less than the request's size: the end is checked, not only
            // the start.
            "straddling",
            vec![Instruction::I32Const(65_536 - 8), Instruction::End],
            vec!["malformed answer", "realloc return: beyond end of memory"],
        ),
        (
            // The request record is 8-aligned; 1 is not.
            "misaligned",
            vec![Instruction::I32Const(1), Instruction::End],
            vec!["malformed answer", "realloc return: result not aligned"],
        ),
        (
            "trapping",
            vec![Instruction::Unreachable, Instruction::End],
            vec!["trapped", "unreachable"],
        ),
        (
            "looping",
            vec![
                Instruction::Loop(BlockType::Empty),
                Instruction::Br(0),
                Instruction::End,
                Instruction::Unreachable,
                Instruction::End,
            ],
            vec!["time limit of 500 ms"],
        ),
        (
            // The same room for every allocation: the request's strings overwrite its record
            // (see `realloc_component`: this `authorize` answers from that very room).
            "overlapping",
            vec![Instruction::I32Const(64), Instruction::End],
            vec!["malformed answer", "discriminant"],
        ),
    ]
}

/// An authorizer component whose `cabi_realloc` is `realloc` and whose `authorize` permits.
/// With `answer_from_request`, `authorize` instead hands back the request's own room as its
/// answer, as a plugin reading back data its allocator let the host overwrite would.
fn realloc_component(
    realloc: &[wasm_encoder::Instruction<'static>],
    answer_from_request: bool,
) -> Vec<u8> {
    use wasm_encoder::{
        CodeSection, ExportKind, ExportSection, Function, FunctionSection, Instruction, MemArg,
        MemorySection, Module, TypeSection, ValType,
    };
    let mut module = Module::new();
    let mut types = TypeSection::new();
    types.ty().function([ValType::I32; 4], [ValType::I32]); // 0: cabi_realloc
    types.ty().function([ValType::I32], [ValType::I32]); // 1: authorize (request by pointer)
    types.ty().function([ValType::I32], []); // 2: cabi_post_authorize
    module.section(&types);
    let mut functions = FunctionSection::new();
    for ty in 0..3 {
        functions.function(ty);
    }
    module.section(&functions);
    let mut memories = MemorySection::new();
    memories.memory(wasm_encoder::MemoryType {
        maximum: Some(1),
        ..one_page()
    });
    module.section(&memories);
    let mut exports = ExportSection::new();
    exports.export("memory", ExportKind::Memory, 0);
    exports.export("cabi_realloc", ExportKind::Func, 0);
    exports.export("authorize", ExportKind::Func, 1);
    exports.export("cabi_post_authorize", ExportKind::Func, 2);
    module.section(&exports);
    let mut code = CodeSection::new();
    let mut allocator = Function::new([(1, ValType::I32)]);
    for instruction in realloc {
        allocator.instruction(instruction);
    }
    code.function(&allocator);
    let mut authorize = Function::new([]);
    let body = if answer_from_request {
        vec![Instruction::LocalGet(0), Instruction::End]
    } else {
        vec![
            Instruction::I32Const(REALLOC_RETURN_AREA),
            Instruction::I32Const(0),
            Instruction::I32Store8(MemArg {
                offset: 0,
                align: 0,
                memory_index: 0,
            }),
            Instruction::I32Const(REALLOC_RETURN_AREA),
            Instruction::End,
        ]
    };
    for instruction in &body {
        authorize.instruction(instruction);
    }
    code.function(&authorize);
    let mut post_return = Function::new([]);
    post_return.instruction(&Instruction::End);
    code.function(&post_return);
    module.section(&code);
    authorizer_encoder(module.finish())
        .encode()
        .expect("a component")
}

#[test]
fn a_hostile_cabi_realloc_ends_in_a_deny_naming_its_cause() {
    let runtime = runtime();
    let mut good = hostile_app("good", json!({"attack": "well-behaved"}), Isolation::Warm);
    good.limits.deadline = Duration::from_secs(2);
    runtime.install(good).unwrap();
    // The other side: the same component with an allocator whose room is in bounds and
    // aligned permits, so every deny below is the allocator's doing. (It hands out the same
    // room every time too: overlapping allocations only garble the plugin's own copy of the
    // request, which this `authorize` never reads; the "overlapping" attack reads it.)
    let sound = realloc_component(
        &[
            wasm_encoder::Instruction::I32Const(1024),
            wasm_encoder::Instruction::End,
        ],
        false,
    );
    for (attack, realloc, expected) in realloc_attacks() {
        let component = realloc_component(&realloc, attack == "overlapping");
        for isolation in [Isolation::Warm, Isolation::FreshPerRequest] {
            let name = format!("realloc-{attack}-{isolation:?}");
            let mut spec =
                AppSpec::new(&name).plugin(PluginSetup::new("realloc", "{}"), component.clone());
            spec.isolation = isolation;
            spec.limits = support::tight_limits();
            spec.limits.deadline = Duration::from_millis(500);
            runtime.install(spec).unwrap();
            for _ in 0..2 {
                let reason = deny_reason(&runtime, &name);
                for text in &expected {
                    assert!(
                        reason.contains(text),
                        "{attack} {isolation:?}: {reason:?} should contain {text:?}"
                    );
                }
                assert_clean(&reason);
                let decision =
                    runtime.is_authorized(&request("good", "CAE1", Operation::Retrieve, "/ok"));
                assert_eq!(decision.effect, Effect::Permit, "{}", decision.reason);
            }
            assert_eq!(runtime.app(&name).unwrap().warm_instances(), 0, "{name}");
        }
    }
    for isolation in [Isolation::Warm, Isolation::FreshPerRequest] {
        let name = format!("realloc-sound-{isolation:?}");
        let mut spec = AppSpec::new(&name).plugin(PluginSetup::new("realloc", "{}"), sound.clone());
        spec.isolation = isolation;
        spec.limits = support::tight_limits();
        runtime.install(spec).unwrap();
        let decision = runtime.is_authorized(&request(&name, "CAE1", Operation::Retrieve, "/ok"));
        assert_eq!(
            decision.effect,
            Effect::Permit,
            "{isolation:?}: {}",
            decision.reason
        );
    }
}
