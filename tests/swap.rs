//! Hot swap: a new plugin version takes over while decisions run on other threads; no
//! decision fails or is lost, each names the version that made it, and the application's
//! key-value state carries over.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use palisade_core::pipeline::PluginSource;
use palisade_core::{Capability, Effect, Operation, PluginSetup};
use serde_json::json;
use support::{request, runtime};

fn acp_version(version: &str) -> PluginSource {
    let policy = json!({"policies": [{"id": "p", "pv": {"acr": [{"acor": ["all"], "acop": 2}]}}]});
    let mut setup = PluginSetup::new("policy", policy.to_string());
    setup.version = Some(version.to_string());
    PluginSource {
        setup,
        bytes: palisade_artifacts::ACP.into(),
    }
}

#[test]
fn swapping_versions_under_load_fails_no_decision() {
    let runtime = Arc::new(runtime());
    let mut spec = palisade_core::AppSpec::new("lights");
    spec.plugins.push(acp_version("1.0.0"));
    spec.kv = vec![("state".into(), b"kept".to_vec())];
    // The point here is the swap, not the deadline: on a shared 2-core machine compiling
    // the next version can starve a decision thread for longer than the default 50 ms.
    spec.limits.deadline = std::time::Duration::from_secs(5);
    runtime.install(spec).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..3)
        .map(|_| {
            let runtime = runtime.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let (mut decisions, mut failures, mut versions) =
                    (0u64, Vec::new(), std::collections::BTreeSet::new());
                while !stop.load(Ordering::Relaxed) {
                    let decision = runtime.is_authorized(&request(
                        "lights",
                        "CAE1",
                        Operation::Retrieve,
                        "/cse-in/lights",
                    ));
                    decisions += 1;
                    if decision.effect != Effect::Permit {
                        failures.push(decision.reason.clone());
                    }
                    if let Some(version) =
                        decision.decided_by.and_then(|label| label.version.clone())
                    {
                        versions.insert(version);
                    }
                }
                (decisions, failures, versions)
            })
        })
        .collect();

    const SWAPS: usize = 20;
    for swap in 1..=SWAPS {
        runtime
            .swap_plugin("lights", acp_version(&format!("1.0.{swap}")))
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    stop.store(true, Ordering::Relaxed);

    let (mut total, mut seen) = (0, std::collections::BTreeSet::new());
    for worker in workers {
        let (decisions, failures, versions) = worker.join().unwrap();
        assert!(
            failures.is_empty(),
            "decisions failed during swaps: {failures:?}"
        );
        total += decisions;
        seen.extend(versions);
    }
    println!(
        "hot swap: {total} decisions during {SWAPS} swaps, 0 failures, {} versions seen",
        seen.len()
    );
    assert!(total > 0);
    assert!(
        seen.len() > 1,
        "decisions should come from several versions: {seen:?}"
    );

    // The last version decides now, and the application's state survived every swap.
    let decision = runtime.is_authorized(&request(
        "lights",
        "CAE1",
        Operation::Retrieve,
        "/cse-in/lights",
    ));
    assert_eq!(
        decision.decided_by.unwrap().version.as_deref(),
        Some("1.0.20")
    );
    let app = runtime.app("lights").unwrap();
    assert_eq!(
        app.sandbox().environment().kv.get("state").as_deref(),
        Some(&b"kept"[..])
    );
}

#[test]
fn a_bad_new_version_changes_nothing() {
    let runtime = runtime();
    let mut spec = palisade_core::AppSpec::new("lights");
    spec.plugins.push(acp_version("1.0.0"));
    runtime.install(spec).unwrap();
    let broken = PluginSource {
        setup: PluginSetup::new("policy", "{}").grant(Capability::Kv),
        bytes: b"\0asm not really".to_vec().into(),
    };
    assert!(runtime.swap_plugin("lights", broken).is_err());
    let mut wrong_kind = PluginSetup::new("policy", "{}");
    wrong_kind.kind = Some(palisade_core::PluginKind::Filter);
    let wrong = PluginSource {
        setup: wrong_kind,
        bytes: palisade_artifacts::ACP.into(),
    };
    assert!(runtime.swap_plugin("lights", wrong).is_err());
    let decision = runtime.is_authorized(&request("lights", "CAE1", Operation::Retrieve, "/x"));
    assert_eq!(decision.effect, Effect::Permit);
    assert_eq!(
        decision.decided_by.unwrap().version.as_deref(),
        Some("1.0.0")
    );
    assert!(runtime.swap_plugin("nobody", acp_version("2.0.0")).is_err());
}
