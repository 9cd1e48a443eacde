//! Hot swap through the admin API under load (issue 3): a client hammers `/v1/decide` while
//! N signed versions are uploaded and activated; no decision fails, and each names the
//! version that made it. Run with `--nocapture` to see the counts.

#[path = "admin_common.rs"]
mod common;
#[path = "support/server.rs"]
mod server;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::*;
use palisade_registry::ModuleKind;
use serde_json::json;

const SWAPS: usize = 20;

#[test]
fn uploads_and_activations_under_load_fail_no_decision() {
    let keys = Keys::new();
    let gateway = Arc::new(start(&keys, 3600, 2 << 20));
    let path = "/admin/v1/apps/lights/plugins/policy?activate=true";
    let first = keys.module(
        palisade_artifacts::ACP,
        "lights",
        "policy",
        ModuleKind::Authorizer,
        "1.0.0",
    );
    assert_eq!(
        admin(&gateway, &keys.admin, "PUT", path, &first).status,
        201
    );

    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let (gateway, stop) = (gateway.clone(), stop.clone());
            std::thread::spawn(move || {
                let (mut decisions, mut failures) = (0u64, Vec::new());
                let mut versions = BTreeMap::<String, u64>::new();
                while !stop.load(Ordering::Relaxed) {
                    let answer = gateway.decide(&json!({"app": "lights", "originator": "CAE1",
                        "operation": "retrieve", "target": "/cse-in/lights/x"}));
                    decisions += 1;
                    let body: serde_json::Value =
                        serde_json::from_slice(&answer.body).unwrap_or_default();
                    if answer.status != 200 || body["decision"] != "permit" {
                        failures.push(format!("{} {}", answer.status, answer.text()));
                    }
                    let version = body["module"]["version"]
                        .as_str()
                        .unwrap_or("none")
                        .to_string();
                    *versions.entry(version).or_default() += 1;
                }
                (decisions, failures, versions)
            })
        })
        .collect();

    for swap in 1..=SWAPS {
        let module = keys.module(
            palisade_artifacts::ACP,
            "lights",
            "policy",
            ModuleKind::Authorizer,
            &format!("1.0.{swap}"),
        );
        let answer = admin(&gateway, &keys.admin, "PUT", path, &module);
        assert_eq!(answer.status, 201, "{}", answer.text());
    }
    std::thread::sleep(std::time::Duration::from_millis(100));
    stop.store(true, Ordering::Relaxed);

    let (mut total, mut failed, mut seen) = (0, Vec::new(), BTreeMap::<String, u64>::new());
    for client in clients {
        let (decisions, failures, versions) = client.join().unwrap();
        total += decisions;
        failed.extend(failures);
        for (version, count) in versions {
            *seen.entry(version).or_default() += count;
        }
    }
    println!("hot swap under load: {SWAPS} uploads+activations, {total} decisions, failures: {}, versions seen: {}", failed.len(), seen.len());
    println!("decisions per version: {seen:?}");
    assert!(
        failed.is_empty(),
        "decisions failed during swaps: {:?}",
        &failed[..failed.len().min(5)]
    );
    assert!(
        total > SWAPS as u64,
        "the clients made decisions throughout"
    );
    assert_eq!(
        decision(&gateway, "lights"),
        ("permit".into(), json!(format!("1.0.{SWAPS}")))
    );
    assert!(
        seen.len() > 2,
        "decisions came from several versions: {seen:?}"
    );
}
