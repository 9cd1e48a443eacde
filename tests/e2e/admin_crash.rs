//! Crash safety of uploads and activations (issue 3): `palisade serve` is killed with SIGKILL
//! at random points while an upload or activation is in flight, at least 50 rounds, and
//! restarted each time. After every restart the registry is consistent: exactly one complete
//! version active per app and plugin, every stored file matches its content address, no
//! partial (temporary) file is left to be served, and live decisions come from the active
//! version.

use crate::support::admin as common;
use crate::support::server;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use palisade_registry::{ModuleHash, ModuleKind};
use rand::Rng;
use serde_json::json;

const ROUNDS: usize = 60;

/// Starts `palisade serve` on `dir` (its own spawner: the shared helper has no SIGKILL).
fn spawn(dir: &Path) -> (Child, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(["serve", "--config"])
        .arg(dir.join("gateway.toml"))
        .args(["--listen", "127.0.0.1:0", "--data"])
        .arg(dir.join("data"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            if let Some(rest) = line.split("listening on http://").nth(1) {
                let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_string());
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("palisade serve started");
    (child, addr.parse().unwrap())
}

/// Sends a signed admin request and ignores the outcome (the server may die meanwhile).
fn fire(addr: SocketAddr, keys: &Keys, method: &str, path: &str, body: &[u8]) {
    let headers = palisade_gateway::sign_request(&keys.admin, method, path, body, now());
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return;
    };
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
    let mut out = Vec::new();
    let _ = std::io::Read::read_to_end(&mut stream, &mut out);
    if std::env::var_os("CRASH_DEBUG").is_some() {
        eprintln!("{}", String::from_utf8_lossy(&out));
    }
}

fn admin_json(addr: SocketAddr, keys: &Keys, method: &str, path: &str) -> serde_json::Value {
    let headers = palisade_gateway::sign_request(&keys.admin, method, path, b"", now());
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let answer = server::http(addr, method, path, &headers, b"");
    assert_eq!(answer.status, 200, "{}", answer.text());
    answer.json()
}

/// The checks after each restart; returns the active version, if any.
fn check_consistent(addr: SocketAddr, keys: &Keys, data: &Path, round: usize) -> Option<String> {
    let modules = admin_json(addr, keys, "GET", "/admin/v1/modules")["modules"].clone();
    let modules = modules.as_array().unwrap();
    let active: Vec<_> = modules.iter().filter(|m| m["state"] == "active").collect();
    assert!(
        active.len() <= 1,
        "round {round}: several active versions: {modules:?}"
    );
    // No partial file: every file in the modules folder is complete and matches its name.
    for entry in std::fs::read_dir(data.join("registry/modules")).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        let sha = name
            .strip_suffix(".wasm")
            .unwrap_or_else(|| panic!("round {round}: stray file {name} left after restart"));
        let bytes = std::fs::read(entry.path()).unwrap();
        let stripped = palisade_registry::strip_signature(&bytes).unwrap_or_default();
        assert!(
            ModuleHash::of(&bytes).to_hex() == sha || ModuleHash::of(&stripped).to_hex() == sha,
            "round {round}: {name} does not match its content address"
        );
    }
    for m in modules {
        let sha = m["sha256"].as_str().unwrap();
        assert!(
            data.join("registry/modules")
                .join(format!("{sha}.wasm"))
                .exists(),
            "round {round}: {m} has no file"
        );
    }
    let decision = server::http(addr, "POST", "/v1/decide", &[("content-type", "application/json")],
        json!({"app": "lights", "originator": "CAE1", "operation": "retrieve", "target": "/cse-in/lights/x"}).to_string().as_bytes()).json();
    match active.first() {
        Some(m) => {
            assert_eq!(decision["decision"], "permit", "round {round}: {decision}");
            assert_eq!(
                decision["module"]["version"], m["version"],
                "round {round}: the active version decides"
            );
            assert_eq!(decision["module"]["sha256"], m["sha256"], "round {round}");
            Some(m["version"].as_str().unwrap().to_string())
        }
        None => {
            assert_eq!(
                decision["decision"], "deny",
                "round {round}: the config plugin denies"
            );
            None
        }
    }
}

#[test]
fn sigkill_during_uploads_and_activations_leaves_a_consistent_registry() {
    let started = Instant::now();
    let keys = Keys::new();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("gateway.toml"), config_text(3600, 2 << 20)).unwrap();
    std::fs::write(
        dir.path().join("root.pub"),
        palisade_registry::encode_public_key(&keys.root.verifying_key()),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("admin.pub"),
        palisade_registry::encode_public_key(&keys.admin.verifying_key()),
    )
    .unwrap();
    let data = dir.path().join("data");
    let path = "/admin/v1/apps/lights/plugins/policy";
    let mut rng = rand::thread_rng();
    let (mut child, mut addr) = spawn(dir.path());
    // Calibration: how long one upload with activation takes here, so that the kills land
    // before, during and after the registry's writes.
    let first = keys.module(
        palisade_artifacts::ACP,
        "lights",
        "policy",
        ModuleKind::Authorizer,
        "1.0.0",
    );
    let timer = Instant::now();
    fire(addr, &keys, "PUT", &format!("{path}?activate=true"), &first);
    let upload_us = timer.elapsed().as_micros() as u64;
    let mut active = check_consistent(addr, &keys, &data, 0);
    assert_eq!(active.as_deref(), Some("1.0.0"));
    let (mut killed_mid_request, mut changes) = (0, 0);
    for round in 1..=ROUNDS {
        // Odd rounds upload (and activate) a new version; even rounds activate an older one.
        let (method, target, body) = if round % 2 == 1 || active.is_none() {
            let module = keys.module(
                palisade_artifacts::ACP,
                "lights",
                "policy",
                ModuleKind::Authorizer,
                &format!("1.0.{round}"),
            );
            ("PUT", format!("{path}?activate=true"), module)
        } else {
            let version = format!("1.0.{}", rng.gen_range(1..round));
            (
                "POST",
                format!("{path}/activate?version={version}&force=true"),
                Vec::new(),
            )
        };
        let keys_ref = &keys;
        let delay = Duration::from_micros(rng.gen_range(0..upload_us * 3 / 2));
        std::thread::scope(|scope| {
            let request = scope.spawn(move || fire(addr, keys_ref, method, &target, &body));
            std::thread::sleep(delay);
            if !request.is_finished() {
                killed_mid_request += 1;
            }
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            let _ = request.join();
        });
        (child, addr) = spawn(dir.path());
        let now_active = check_consistent(addr, &keys, &data, round);
        assert!(
            now_active.is_some(),
            "round {round}: exactly one version stays active"
        );
        if now_active != active {
            changes += 1;
        }
        active = now_active;
    }
    let _ = child.kill();
    let _ = child.wait();
    println!(
        "{ROUNDS} SIGKILL rounds ({killed_mid_request} during a request, {changes} changed the active version) in {:.1} s; one upload takes {upload_us} us; final active version {active:?}",
        started.elapsed().as_secs_f64()
    );
    assert!(started.elapsed() < Duration::from_secs(240));
}
