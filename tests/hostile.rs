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
        let error = runtime
            .install(hostile_app(
                "bad",
                config.clone(),
                Isolation::FreshPerRequest,
            ))
            .expect_err("a prepare that attacks must fail the load");
        let message = error.to_string();
        assert!(
            message.contains("pre-initialised") && message.contains(expected),
            "{attack}: {message}"
        );
        assert!(runtime.app("bad").is_none(), "{attack}: nothing installed");
        // Warm applications never run prepare: the same plugin loads, and only denies.
        runtime
            .install(hostile_app("warm", config, Isolation::Warm))
            .unwrap();
        let decision = runtime.is_authorized(&request("warm", "CAE1", Operation::Retrieve, "/ok"));
        assert_eq!(decision.effect, Effect::Deny);
        assert!(
            decision.reason.contains("prepare only"),
            "{}",
            decision.reason
        );
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

use palisade::{
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

fn with_credential(app: &str, originator: &str) -> palisade::AccessRequest {
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

fn health(runtime: &Runtime, app: &str) -> palisade::sandbox::PluginHealth {
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
        assert_eq!(decision.stages[0].outcome, "deny");
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
    assert_eq!(decision.stages[0].outcome, "rejected");
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
    assert_eq!(decision.stages[0].outcome, "rejected");
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

#[path = "support/server.rs"]
mod server;

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
            hostile = palisade::plugins::HOSTILE_PATH
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
