//! A real `palisade serve` following an OCI tag on a real registry (Debian's `docker-registry`)
//! (issue #17): modules published with the real `palisade push --oci` are installed through
//! the admin upload path and hot-swapped with no failed decision; a tampered, unsigned or
//! older module leaves the running version in place and is reported in /health, the
//! metrics and the audit.

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::admin::*;
use crate::support::{registry, server};
use palisade_registry::ModuleKind;
use serde_json::Value;

/// Longest wait for a poll to show (polls are 1 s apart; this is a bound, not a timing).
const WAIT: Duration = Duration::from_secs(60);

/// `palisade push --oci REFERENCE --insecure FILE --json`, the real CLI.
fn push(reference: &str, module: &[u8], dir: &std::path::Path) -> Value {
    let file = dir.join("module.wasm");
    std::fs::write(&file, module).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(["push", "--oci", reference, "--insecure", "--json"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "push --oci failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn subscription(gateway: &server::Gateway) -> Value {
    let health = gateway.request("GET", "/health", &[], b"").json();
    health["registry"]["subscriptions"]["lights/policy"].clone()
}

/// Waits until the subscription's status satisfies `done`; panics with it after [`WAIT`].
fn wait_for(gateway: &server::Gateway, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let status = subscription(gateway);
        if done(&status) {
            return status;
        }
        assert!(Instant::now() < deadline, "{what}: still {status}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_gateway_follows_a_tag_and_keeps_its_version_through_bad_artifacts() {
    let Some(registry) = registry::Registry::start(
        "a_gateway_follows_a_tag_and_keeps_its_version_through_bad_artifacts",
    ) else {
        return;
    };
    let keys = Keys::new();
    let reference = format!("{}/palisade/lights-policy:stable", registry.host());
    let scratch = tempfile::tempdir().unwrap();
    let acp = |version: &str| {
        keys.module(
            palisade_artifacts::ACP,
            "lights",
            "policy",
            ModuleKind::Authorizer,
            version,
        )
    };
    let first = push(&reference, &acp("1.0.0"), scratch.path());
    assert_eq!(first["module"], "lights/policy@1.0.0");

    let config = config_text(3600, 2 << 20)
        .replace(
            "[rate_limit]",
            &format!(
                "[admin.oci]\ninsecure_registries = [\"{}\"]\n[rate_limit]",
                registry.host()
            ),
        )
        .replacen(
            &format!("[admin.plugins.\"lights/policy\"]\nconfig = {PERMIT_RETRIEVE}\n"),
            &format!(
                "[admin.plugins.\"lights/policy\"]\nconfig = {PERMIT_RETRIEVE}\n\
                 subscribe = {{ reference = \"{reference}\", poll_interval_s = 1, max_backoff_s = 2 }}\n"
            ),
            1,
        );
    assert!(config.contains("subscribe = "), "{config}");
    let gateway = Arc::new(start_with(&keys, &config));

    // Decisions run throughout; not one may fail while versions come and go.
    let stop = Arc::new(AtomicBool::new(false));
    let (answered, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let client = {
        let (gateway, stop, answered, failed) = (
            gateway.clone(),
            stop.clone(),
            answered.clone(),
            failed.clone(),
        );
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let answer = gateway.decide(&serde_json::json!({"app": "lights",
                    "originator": "CAE1", "operation": "retrieve", "target": "/cse-in/lights/x"}));
                answered.fetch_add(1, Ordering::Relaxed);
                if answer.status != 200 {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };

    // The tag's module is verified, stored and swapped in: decisions name its version.
    let status = wait_for(&gateway, "the first install", |s| {
        s["running"] == first["digest"]
    });
    assert_eq!(status["running_label"], "lights/policy@1.0.0");
    assert_eq!(
        decision(&gateway, "lights"),
        ("permit".into(), "1.0.0".into())
    );

    // The tag moves: the new version is served.
    let second = push(&reference, &acp("1.1.0"), scratch.path());
    wait_for(&gateway, "the moved tag", |s| {
        s["running"] == second["digest"]
    });
    assert_eq!(
        decision(&gateway, "lights"),
        ("permit".into(), "1.1.0".into())
    );

    // An unsigned module under the tag: refused by the upload path, 1.1.0 keeps deciding.
    let unsigned = {
        let file = scratch.path().join("unsigned.wasm");
        std::fs::write(&file, palisade_artifacts::ACP).unwrap();
        file
    };
    let output = Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(["push", "--oci", &reference, "--insecure"])
        .arg(&unsigned)
        .output()
        .unwrap();
    assert!(
        !output.status.success(),
        "the CLI refuses to publish an unsigned module"
    );
    // Published by another tool (the registry is transport only), it is refused by the gateway.
    let mut client_config = palisade_oci::RegistryConfig::default();
    client_config.insecure_registries = vec![registry.host()];
    let oci = client_config.client().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let tag = palisade_oci::parse_reference(&reference).unwrap();
    runtime
        .block_on(palisade_oci::publish(
            &oci,
            &client_config,
            &tag,
            palisade_artifacts::ACP,
            None,
            "2026-12-06T10:00:00Z",
            None,
        ))
        .unwrap();
    let status = wait_for(&gateway, "the unsigned refusal", |s| {
        s["counts"]["refused"].as_u64() >= Some(1)
    });
    assert_eq!(status["running"], second["digest"], "{status}");
    assert_eq!(
        decision(&gateway, "lights"),
        ("permit".into(), "1.1.0".into())
    );

    // An authentic older version: refused by the version rule.
    push(&reference, &acp("1.0.5"), scratch.path());
    let status = wait_for(&gateway, "the downgrade refusal", |s| {
        s["counts"]["refused"].as_u64() >= Some(2)
    });
    assert!(
        status["last_outcome"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("not greater"),
        "{status}"
    );
    assert_eq!(
        decision(&gateway, "lights"),
        ("permit".into(), "1.1.0".into())
    );

    // A newer version whose layer the registry serves altered: a failed poll, not an install.
    let third = push(&reference, &acp("1.2.0"), scratch.path());
    let path = registry.blob_path(third["layer"].as_str().unwrap());
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x20;
    std::fs::write(&path, &bytes).unwrap();
    let status = wait_for(&gateway, "the tampered layer", |s| {
        s["last_outcome"]["code"] == "digest-mismatch"
    });
    assert_eq!(status["running"], second["digest"], "{status}");
    assert_eq!(
        decision(&gateway, "lights"),
        ("permit".into(), "1.1.0".into())
    );

    stop.store(true, Ordering::Relaxed);
    client.join().unwrap();
    assert!(answered.load(Ordering::Relaxed) > 0);
    assert_eq!(failed.load(Ordering::Relaxed), 0, "no decision may fail");

    // Metrics and the audit say the same.
    let metrics = gateway.metrics();
    assert!(
        metrics.contains(&format!(
            "palisade_oci_running{{plugin=\"lights/policy\",digest=\"{}\"}} 1",
            second["digest"].as_str().unwrap()
        )),
        "{metrics}"
    );
    assert!(metrics
        .contains("palisade_oci_polls_total{plugin=\"lights/policy\",outcome=\"installed\"} 2"));
    let mut audit = String::new();
    for entry in std::fs::read_dir(gateway.data_dir().join("audit")).unwrap() {
        audit.push_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap_or_default());
    }
    let oci_lines: Vec<&str> = audit
        .lines()
        .filter(|l| l.contains("\"source\":\"oci\""))
        .collect();
    // Two installs and two refusals, each recorded before (request) and after (result).
    assert_eq!(oci_lines.len(), 8, "{oci_lines:#?}");
    assert_eq!(
        oci_lines
            .iter()
            .filter(|l| l.contains("\"status\":201"))
            .count(),
        2
    );
}

/// Issue #17's fleet figure: `PALISADE_FLEET_SIZE` gateways (default 50; `palisade serve`
/// processes on loopback, each polling every second) follow one tag; printed is the time from
/// the tag update (`push --oci` returned) to each of them, and the last, serving the new
/// version. A measurement, not a timed test (it asserts only that all get there):
/// `cargo test -p palisade --test oci_serve -- --ignored --nocapture fleet`.
#[test]
#[ignore]
fn fleet_time_from_a_tag_update_to_every_gateway_serving_it() {
    let Some(registry) = registry::Registry::start("fleet_time_from_a_tag_update") else {
        return;
    };
    let size: usize = std::env::var("PALISADE_FLEET_SIZE")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(50);
    let keys = Keys::new();
    let reference = format!("{}/palisade/lights-policy:stable", registry.host());
    let scratch = tempfile::tempdir().unwrap();
    let acp = |version: &str| {
        keys.module(
            palisade_artifacts::ACP,
            "lights",
            "policy",
            ModuleKind::Authorizer,
            version,
        )
    };
    let first = push(&reference, &acp("1.0.0"), scratch.path());
    let config = config_text(3600, 2 << 20)
        .replace(
            "[rate_limit]",
            &format!(
                "[admin.oci]\ninsecure_registries = [\"{}\"]\n[rate_limit]",
                registry.host()
            ),
        )
        .replacen(
            &format!("[admin.plugins.\"lights/policy\"]\nconfig = {PERMIT_RETRIEVE}\n"),
            &format!(
                "[admin.plugins.\"lights/policy\"]\nconfig = {PERMIT_RETRIEVE}\n\
                 subscribe = {{ reference = \"{reference}\", poll_interval_s = 1, max_backoff_s = 2 }}\n"
            ),
            1,
        );
    let started = Instant::now();
    let fleet: Vec<_> = (0..size).map(|_| start_with(&keys, &config)).collect();
    eprintln!("{size} gateways started in {:?}", started.elapsed());
    for gateway in &fleet {
        wait_for(gateway, "the first install", |s| {
            s["running"] == first["digest"]
        });
    }
    let second = push(&reference, &acp("1.1.0"), scratch.path());
    let updated = Instant::now();
    let mut serving: Vec<Option<Duration>> = vec![None; size];
    let deadline = updated + Duration::from_secs(300);
    while serving.iter().any(Option::is_none) {
        for (i, gateway) in fleet.iter().enumerate() {
            if serving[i].is_none() && subscription(gateway)["running"] == second["digest"] {
                serving[i] = Some(updated.elapsed());
            }
        }
        assert!(
            Instant::now() < deadline,
            "not every gateway updated: {serving:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut times: Vec<Duration> = serving.into_iter().flatten().collect();
    times.sort();
    for gateway in &fleet {
        assert_eq!(
            decision(gateway, "lights"),
            ("permit".into(), "1.1.0".into())
        );
    }
    eprintln!(
        "tag update -> {size} gateways serving it: first {:?}, median {:?}, last {:?}",
        times[0],
        times[size / 2],
        times[size - 1]
    );
}

/// A subscription that cannot work stops `check` (and so `serve`), naming the key and the
/// problem; a good one passes.
#[test]
fn bad_subscriptions_are_refused_at_start_naming_the_key() {
    let keys = Keys::new();
    let dir = tempfile::tempdir().unwrap();
    let root = palisade_registry::encode_public_key(&keys.root.verifying_key());
    let admin = palisade_registry::encode_public_key(&keys.admin.verifying_key());
    std::fs::write(dir.path().join("root.pub"), root).unwrap();
    std::fs::write(dir.path().join("admin.pub"), admin).unwrap();
    let check = |subscribe: &str, oci: &str| {
        let config = config_text(3600, 2 << 20)
            .replace("[rate_limit]", &format!("[admin.oci]\n{oci}\n[rate_limit]"))
            .replacen(
                &format!("[admin.plugins.\"lights/policy\"]\nconfig = {PERMIT_RETRIEVE}\n"),
                &format!(
                    "[admin.plugins.\"lights/policy\"]\nconfig = {PERMIT_RETRIEVE}\nsubscribe = {subscribe}\n"
                ),
                1,
            );
        std::fs::write(dir.path().join("gateway.toml"), config).unwrap();
        let output = Command::new(env!("CARGO_BIN_EXE_palisade"))
            .args(["check", "--config", "gateway.toml", "--data", "data"])
            .current_dir(dir.path())
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.success(), text)
    };
    let good = r#"{ reference = "127.0.0.1:5000/palisade/lights-policy:stable" }"#;
    let (ok, text) = check(good, "");
    assert!(ok, "{text}");
    let digest = format!("127.0.0.1:5000/p/acp@sha256:{}", "a".repeat(64));
    for (subscribe, oci, expected) in [
        (
            r#"{ reference = "lights-policy:stable" }"#,
            "",
            "the registry must be named",
        ),
        (
            r#"{ reference = "127.0.0.1:5000/p/acp:1", poll_interval_s = 0 }"#,
            "",
            "poll_interval",
        ),
        (
            r#"{ reference = "127.0.0.1:5000/p/acp:1", poll_interval_s = 600, max_backoff_s = 60 }"#,
            "",
            "max_backoff",
        ),
        (
            &format!(r#"{{ reference = "{digest}", after_canary_s = 60 }}"#),
            "",
            "after_canary needs a tag",
        ),
        (good, "request_timeout_s = 0", "request_timeout"),
        (good, r#"insecure_registries = ["http://x"]"#, "not a host"),
        (good, r#"ca_file = "missing.pem""#, "admin.oci.ca_file"),
    ] {
        let (ok, text) = check(subscribe, oci);
        assert!(!ok, "{subscribe} {oci} was accepted");
        assert!(text.contains(expected), "{subscribe} {oci}: {text}");
        assert!(text.contains("admin."), "names the key: {text}");
    }
}

/// Staged rollout between real gateways: a canary follows the tag and attests in the
/// registry; a gateway with `after_canary_s` installs only after the attestation covers its
/// soak time, and reports that it is waiting until then.
#[test]
fn a_follower_installs_only_after_the_canary_attested_its_soak() {
    let Some(registry) =
        registry::Registry::start("a_follower_installs_only_after_the_canary_attested_its_soak")
    else {
        return;
    };
    let keys = Keys::new();
    let reference = format!("{}/palisade/lights-policy:stable", registry.host());
    let scratch = tempfile::tempdir().unwrap();
    let module = keys.module(
        palisade_artifacts::ACP,
        "lights",
        "policy",
        ModuleKind::Authorizer,
        "1.0.0",
    );
    let published = push(&reference, &module, scratch.path());
    let config = |extra: &str| {
        config_text(3600, 2 << 20)
            .replace(
                "[rate_limit]",
                &format!(
                    "[admin.oci]\ninsecure_registries = [\"{}\"]\n[rate_limit]",
                    registry.host()
                ),
            )
            .replacen(
                &format!("[admin.plugins.\"lights/policy\"]\nconfig = {PERMIT_RETRIEVE}\n"),
                &format!(
                    "[admin.plugins.\"lights/policy\"]\nconfig = {PERMIT_RETRIEVE}\n\
                     subscribe = {{ reference = \"{reference}\", poll_interval_s = 1, max_backoff_s = 2, {extra} }}\n"
                ),
                1,
            )
    };
    // The follower starts first: nothing has attested the digest yet.
    let follower = start_with(&keys, &config("after_canary_s = 2"));
    let status = wait_for(&follower, "waiting for the canary", |s| {
        s["last_outcome"]["outcome"] == "waiting-for-canary"
    });
    assert!(status["running"].is_null(), "{status}");
    assert_eq!(
        decision(&follower, "lights").0,
        "deny",
        "still the config plugin"
    );

    let canary = start_with(&keys, &config("canary_name = \"gw-canary-1\""));
    let status = wait_for(&canary, "the canary install", |s| {
        s["running"] == published["digest"]
    });
    assert!(status["attestation_error"].is_null(), "{status}");
    // The follower installs once the canary's attestation covers two seconds without failures.
    wait_for(&follower, "the follower install", |s| {
        s["running"] == published["digest"]
    });
    assert_eq!(
        decision(&follower, "lights"),
        ("permit".into(), "1.0.0".into())
    );
    let tag = format!(
        "{}.palisade-canary",
        published["digest"].as_str().unwrap().replacen(':', "-", 1)
    );
    let tags = registry
        .storage()
        .join("docker/registry/v2/repositories/palisade/lights-policy/_manifests/tags")
        .join(&tag);
    assert!(
        tags.exists(),
        "the attestation is a tag in the same repository: {tag}"
    );
}
