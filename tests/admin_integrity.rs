//! Integrity of stored modules (SER-013) against a real `palisade serve`: a byte changed on
//! disk is found by the periodic check, that version is taken out of service (fallback to the
//! last good version, or deny), and `/health`, `/metrics` and the log report it; at boot a
//! bad module of one app never stops the others.

#[path = "admin_common.rs"]
mod common;
#[path = "support/server.rs"]
mod server;

use std::time::{Duration, Instant};

use common::*;
use palisade_registry::ModuleKind;
use serde_json::json;

fn tamper(gateway: &server::Gateway, sha256: &str) {
    let path = gateway
        .data_dir()
        .join("registry/modules")
        .join(format!("{sha256}.wasm"));
    let mut bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x20;
    std::fs::write(&path, bytes).unwrap();
}

fn upload(gateway: &server::Gateway, keys: &Keys, app: &str, version: &str) -> String {
    let module = keys.module(
        palisade_artifacts::ACP,
        app,
        "policy",
        ModuleKind::Authorizer,
        version,
    );
    let answer = admin(
        gateway,
        &keys.admin,
        "PUT",
        &format!("/admin/v1/apps/{app}/plugins/policy?activate=true"),
        &module,
    );
    assert_eq!(answer.status, 201, "{}", answer.text());
    answer.json()["module"]["sha256"]
        .as_str()
        .unwrap()
        .to_string()
}

fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_changed_byte_is_found_and_taken_out_of_service() {
    let keys = Keys::new();
    let gateway = start(&keys, 1, 2 << 20);
    upload(&gateway, &keys, "lights", "1.0.0");
    let v2 = upload(&gateway, &keys, "lights", "2.0.0");
    let locks = upload(&gateway, &keys, "locks", "1.0.0");
    assert_eq!(
        decision(&gateway, "lights"),
        ("permit".into(), json!("2.0.0"))
    );
    assert_eq!(
        decision(&gateway, "locks"),
        ("permit".into(), json!("1.0.0"))
    );

    tamper(&gateway, &v2);
    tamper(&gateway, &locks);
    wait_for("the periodic check", || {
        decision(&gateway, "lights").1 == json!("1.0.0")
    });
    assert_eq!(
        decision(&gateway, "lights"),
        ("permit".into(), json!("1.0.0")),
        "fell back to the last good version"
    );
    wait_for("locks to deny", || decision(&gateway, "locks").0 == "deny");
    let health = gateway.request("GET", "/health", &[], b"").json();
    let failures = health["registry"]["integrity_failures"].as_array().unwrap();
    let modules: Vec<&str> = failures
        .iter()
        .map(|f| f["module"].as_str().unwrap())
        .collect();
    assert!(
        modules.contains(&"lights/policy@2.0.0") && modules.contains(&"locks/policy@1.0.0"),
        "{health}"
    );
    assert!(gateway
        .metrics()
        .contains("palisade_registry_integrity_failures 2"));
    // SER-016: the failure and the uploads are in the audit trail.
    wait_for("the audit trail", || {
        let text = audit_text(&gateway.data_dir().join("audit"));
        text.contains("lights/policy@2.0.0")
            && text.contains("integrity")
            && text.contains("/admin/v1/apps/locks/plugins/policy")
    });
    let states = listing(&gateway, &keys.admin);
    assert!(
        states.contains(&(
            "lights".into(),
            "policy".into(),
            "2.0.0".into(),
            "failed-integrity".into()
        )),
        "{states:?}"
    );
    assert!(
        states.contains(&(
            "lights".into(),
            "policy".into(),
            "1.0.0".into(),
            "active".into()
        )),
        "{states:?}"
    );
}

#[test]
fn a_bad_module_at_boot_never_stops_the_other_apps() {
    let keys = Keys::new();
    let gateway = start(&keys, 3600, 2 << 20);
    upload(&gateway, &keys, "lights", "1.0.0");
    let locks = upload(&gateway, &keys, "locks", "1.0.0");
    tamper(&gateway, &locks);
    let gateway = gateway.restart();
    assert_eq!(
        decision(&gateway, "lights"),
        ("permit".into(), json!("1.0.0")),
        "lights still served"
    );
    assert_eq!(
        decision(&gateway, "locks").0,
        "deny",
        "locks lost its only registry version: deny"
    );
    let health = gateway.request("GET", "/health", &[], b"").json();
    assert_eq!(
        health["registry"]["integrity_failures"][0]["module"], "locks/policy@1.0.0",
        "{health}"
    );
    assert_eq!(health["registry"]["integrity_failures"][0]["found"], "boot");
}

/// Every file of the audit folder as text.
fn audit_text(dir: &std::path::Path) -> String {
    let mut text = String::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.path().is_dir() {
            text.push_str(&audit_text(&entry.path()));
        } else if let Ok(bytes) = std::fs::read(entry.path()) {
            text.push_str(&String::from_utf8_lossy(&bytes));
        }
    }
    text
}
