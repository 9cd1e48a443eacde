//! The admin API against a real `palisade serve` (issue 3): every bad upload is refused with
//! its own code and changes nothing (checked by listing and by live decisions); admin requests
//! are signed, fresh and single-use (SER-008, SER-012).

#[path = "admin_common.rs"]
mod common;
#[path = "support/server.rs"]
mod server;

use common::*;
use palisade::registry::{Delegation, ModuleKind};
use serde_json::json;

const LIGHTS: &str = "/admin/v1/apps/lights/plugins/policy";

#[test]
fn bad_uploads_are_refused_and_change_nothing() {
    let keys = Keys::new();
    let gateway = start(&keys, 3600, 2 << 20);
    let acp = palisade::plugins::ACP;
    assert_eq!(
        decision(&gateway, "lights").0,
        "deny",
        "the config plugin denies"
    );

    // A good first version, activated: decisions now come from the registry's v1.0.0.
    let v1 = keys.module(acp, "lights", "policy", ModuleKind::Authorizer, "1.0.0");
    let answer = admin(
        &gateway,
        &keys.admin,
        "PUT",
        &format!("{LIGHTS}?activate=true"),
        &v1,
    );
    assert_eq!(answer.status, 201, "{}", answer.text());
    assert_eq!(answer.json()["status"], "stored");
    assert_eq!(
        decision(&gateway, "lights"),
        ("permit".into(), json!("1.0.0"))
    );
    let before = listing(&gateway, &keys.admin);
    assert_eq!(before.len(), 1);

    let put = |bytes: &[u8], path: &str| admin(&gateway, &keys.admin, "PUT", path, bytes);
    let activate = format!("{LIGHTS}?activate=true");
    let v2 = keys.module(acp, "lights", "policy", ModuleKind::Authorizer, "2.0.0");
    let now = now();
    let auth = [ModuleKind::Authorizer];
    let mut cases: Vec<(&str, Vec<u8>, String, u16, &str)> = Vec::new();
    cases.push(("unsigned", acp.to_vec(), activate.clone(), 422, "unsigned"));
    // Signed by a key the embedded delegation does not name (sign() refuses to make it).
    let (nb, na) = (now - DAY, now + DAY);
    let d_other = Delegation::issue(
        &keys.root,
        keys.other_publisher.verifying_key(),
        "lights",
        &auth,
        nb,
        na,
    )
    .unwrap();
    let not_delegated = replace_delegation(&v2, &d_other);
    cases.push((
        "signed by a key not delegated",
        not_delegated,
        activate.clone(),
        422,
        "key-not-delegated",
    ));
    // The publisher's delegation covers filters only; the module is an authorizer.
    let d_filter = Delegation::issue(
        &keys.root,
        keys.publisher.verifying_key(),
        "lights",
        &[ModuleKind::Filter],
        nb,
        na,
    )
    .unwrap();
    cases.push((
        "delegation for another kind",
        replace_delegation(&v2, &d_filter),
        activate.clone(),
        422,
        "delegation-for-other-kind",
    ));
    // The publisher's key is delegated for another app only.
    let d_locks = Delegation::issue(
        &keys.root,
        keys.publisher.verifying_key(),
        "locks",
        &auth,
        nb,
        na,
    )
    .unwrap();
    cases.push((
        "key delegated for another app",
        replace_delegation(&v2, &d_locks),
        activate.clone(),
        422,
        "delegation-for-other-app",
    ));
    let expired = common::sign_with(
        acp,
        "lights",
        "policy",
        ModuleKind::Authorizer,
        "2.0.0",
        &keys.publisher,
        &Delegation::issue(
            &keys.root,
            keys.publisher.verifying_key(),
            "lights",
            &auth,
            now - 2 * DAY,
            now - DAY,
        )
        .unwrap(),
    );
    cases.push((
        "delegation expired",
        expired,
        activate.clone(),
        422,
        "delegation-expired",
    ));
    let future = common::sign_with(
        acp,
        "lights",
        "policy",
        ModuleKind::Authorizer,
        "2.0.0",
        &keys.publisher,
        &Delegation::issue(
            &keys.root,
            keys.publisher.verifying_key(),
            "lights",
            &auth,
            now + DAY,
            now + 2 * DAY,
        )
        .unwrap(),
    );
    cases.push((
        "delegation not yet valid",
        future,
        activate.clone(),
        422,
        "delegation-not-yet-valid",
    ));
    let untrusted = common::sign_with(
        acp,
        "lights",
        "policy",
        ModuleKind::Authorizer,
        "2.0.0",
        &keys.publisher,
        &Delegation::issue(
            &keys.other_root,
            keys.publisher.verifying_key(),
            "lights",
            &auth,
            now - DAY,
            now + DAY,
        )
        .unwrap(),
    );
    cases.push((
        "untrusted root",
        untrusted,
        activate.clone(),
        422,
        "untrusted-root",
    ));
    let geo_as_authorizer = keys.module(
        palisade::plugins::GEO_PRIVACY,
        "lights",
        "policy",
        ModuleKind::Authorizer,
        "2.0.0",
    );
    cases.push((
        "wrong world",
        geo_as_authorizer,
        activate.clone(),
        422,
        "wrong-world",
    ));
    let mut truncated = v2.clone();
    truncated.truncate(v2.len() / 2);
    cases.push(("truncated", truncated, activate.clone(), 422, "truncated"));
    cases.push((
        "not a component",
        b"\0asm\x01\0\0\0".to_vec(),
        activate.clone(),
        422,
        "not-a-component",
    ));
    cases.push((
        "over the size limit",
        vec![0u8; (2 << 20) + 10],
        activate.clone(),
        413,
        "too-large",
    ));
    let old = keys.module(acp, "lights", "policy", ModuleKind::Authorizer, "0.9.0");
    cases.push((
        "version not greater",
        old,
        activate.clone(),
        409,
        "version-not-greater",
    ));
    let locks = keys.module(acp, "locks", "policy", ModuleKind::Authorizer, "2.0.0");
    cases.push((
        "manifest app differs from the path",
        locks,
        activate.clone(),
        422,
        "app-mismatch",
    ));
    cases.push((
        "name with ..",
        v2.clone(),
        "/admin/v1/apps/lights/plugins/..?activate=true".into(),
        400,
        "invalid-name",
    ));
    cases.push((
        "name with an encoded /",
        v2.clone(),
        "/admin/v1/apps/lights/plugins/a%2Fb?activate=true".into(),
        400,
        "invalid-name",
    ));
    cases.push((
        "app with ..",
        v2.clone(),
        "/admin/v1/apps/..%2Flights/plugins/policy".into(),
        400,
        "invalid-name",
    ));
    // Delegation for another kind: the publisher may sign filters only.
    let filter_only = common::sign_with(
        acp,
        "lights",
        "policy",
        ModuleKind::Filter,
        "2.0.0",
        &keys.publisher,
        &Delegation::issue(
            &keys.root,
            keys.publisher.verifying_key(),
            "lights",
            &[ModuleKind::Filter],
            now - DAY,
            now + DAY,
        )
        .unwrap(),
    );
    cases.push((
        "declared kind differs from the component's world",
        filter_only,
        activate.clone(),
        422,
        "wrong-world",
    ));
    let mut codes = std::collections::BTreeSet::new();
    for (what, bytes, path, status, code) in &cases {
        let answer = put(bytes, path);
        println!("{what}: {} {}", answer.status, answer.text());
        assert_refused(&answer, *status, code);
        codes.insert(code.to_string());
        assert_eq!(
            listing(&gateway, &keys.admin),
            before,
            "{what}: the registry changed"
        );
        assert_eq!(
            decision(&gateway, "lights"),
            ("permit".into(), json!("1.0.0")),
            "{what}: decisions changed"
        );
    }

    // One byte changed anywhere: every position class refused (header, code, signature).
    let mut positions: Vec<usize> = (0..48).map(|i| i * v2.len() / 48).collect();
    positions.extend([4, 8, v2.len() - 40, v2.len() - 1]);
    for position in positions {
        let mut changed = v2.clone();
        changed[position] ^= 0x01;
        let answer = put(&changed, &activate);
        println!(
            "byte {position} of {}: {} {}",
            v2.len(),
            answer.status,
            answer.text()
        );
        assert!(answer.status >= 400, "byte {position}: {}", answer.text());
        assert!(answer.json()["error"]["code"].is_string());
        assert_eq!(listing(&gateway, &keys.admin), before);
        assert_eq!(
            decision(&gateway, "lights"),
            ("permit".into(), json!("1.0.0"))
        );
    }

    // The same upload twice is idempotent.
    let again = put(&v1, &activate);
    assert_eq!(again.status, 200, "{}", again.text());
    assert_eq!(again.json()["status"], "already-present");
    assert_eq!(listing(&gateway, &keys.admin), before);

    // A good v2 goes through, then activate / rollback / remove.
    let answer = put(&v2, LIGHTS);
    assert_eq!(answer.status, 201, "{}", answer.text());
    assert_eq!(
        decision(&gateway, "lights").1,
        json!("1.0.0"),
        "stored, not active"
    );
    let answer = admin(
        &gateway,
        &keys.admin,
        "POST",
        &format!("{LIGHTS}/activate?version=2.0.0"),
        b"",
    );
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(
        decision(&gateway, "lights"),
        ("permit".into(), json!("2.0.0"))
    );
    let answer = admin(
        &gateway,
        &keys.admin,
        "POST",
        &format!("{LIGHTS}/rollback"),
        b"",
    );
    assert_refused(&answer, 400, "invalid-request");
    let answer = admin(
        &gateway,
        &keys.admin,
        "POST",
        &format!("{LIGHTS}/rollback?force=true"),
        b"",
    );
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(decision(&gateway, "lights").1, json!("1.0.0"));
    let answer = admin(
        &gateway,
        &keys.admin,
        "DELETE",
        &format!("{LIGHTS}/versions/2.0.0"),
        b"",
    );
    assert_eq!(answer.status, 200, "{}", answer.text());
    let answer = admin(
        &gateway,
        &keys.admin,
        "DELETE",
        &format!("{LIGHTS}/versions/1.0.0"),
        b"",
    );
    assert_refused(&answer, 409, "remove-active");
    let answer = admin(
        &gateway,
        &keys.admin,
        "DELETE",
        &format!("{LIGHTS}/versions/1.0.0?force=true"),
        b"",
    );
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(
        decision(&gateway, "lights").0,
        "deny",
        "no registry module: the plugin is gone"
    );
    println!("codes: {codes:?}");
}

#[test]
fn admin_requests_must_be_signed_fresh_and_single_use() {
    let keys = Keys::new();
    let gateway = start(&keys, 3600, 2 << 20);
    let path = "/admin/v1/modules";
    assert_refused(&gateway.request("GET", path, &[], b""), 401, "missing-auth");
    assert_refused(
        &admin(&gateway, &keys.other_admin, "GET", path, b""),
        401,
        "unknown-admin-key",
    );
    assert_refused(
        &admin_at(&gateway, &keys.admin, "GET", path, b"", now() - 301),
        401,
        "stale-request",
    );
    assert_refused(
        &admin_at(&gateway, &keys.admin, "GET", path, b"", now() + 400),
        401,
        "stale-request",
    );
    // A replay: the same headers twice.
    let headers = palisade::api::admin::sign_request(&keys.admin, "GET", path, b"", now());
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    assert_eq!(gateway.request("GET", path, &headers, b"").status, 200);
    assert_refused(
        &gateway.request("GET", path, &headers, b""),
        401,
        "replayed-request",
    );
    // A signature for another path or body does not carry over.
    let headers = palisade::api::admin::sign_request(
        &keys.admin,
        "GET",
        "/admin/v1/modules?app=x",
        b"",
        now(),
    );
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    assert_refused(
        &gateway.request("GET", path, &headers, b""),
        401,
        "bad-request-signature",
    );
    let v1 = keys.module(
        palisade::plugins::ACP,
        "lights",
        "policy",
        ModuleKind::Authorizer,
        "1.0.0",
    );
    let headers = palisade::api::admin::sign_request(&keys.admin, "PUT", LIGHTS, b"other", now());
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    assert_refused(
        &gateway.request("PUT", LIGHTS, &headers, &v1),
        401,
        "bad-request-signature",
    );
    assert!(listing(&gateway, &keys.admin).is_empty());
}

#[test]
fn push_cli_uploads_lists_and_activates() {
    let keys = Keys::new();
    let gateway = start(&keys, 3600, 2 << 20);
    let dir = gateway.dir.path();
    let v1 = keys.module(
        palisade::plugins::ACP,
        "lights",
        "policy",
        ModuleKind::Authorizer,
        "1.0.0",
    );
    std::fs::write(dir.join("v1.wasm"), &v1).unwrap();
    let url = format!("http://{}", gateway.addr);
    let push = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_palisade"))
            .arg("push")
            .args(["--gateway", &url, "--admin-key"])
            .arg(dir.join("admin.key"))
            .args(args)
            .output()
            .unwrap()
    };
    let out = push(&[
        "--app",
        "lights",
        "--name",
        "policy",
        "--activate",
        "--json",
        dir.join("v1.wasm").to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["status"], "stored");
    assert_eq!(
        decision(&gateway, "lights"),
        ("permit".into(), json!("1.0.0"))
    );
    let out = push(&["list"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("lights/policy@1.0.0") && text.contains("active"),
        "{text}"
    );
    let out = push(&["rollback", "--app", "lights", "--name", "policy", "--force"]);
    assert!(!out.status.success(), "nothing to roll back to");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-rollback-target"));
}
