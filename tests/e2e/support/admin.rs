//! Shared fixture of the admin API tests (issue 3): keys, signed modules, a gateway config
//! with an `[admin]` section, and signed admin requests.

use std::time::{SystemTime, UNIX_EPOCH};

use ed25519_dalek::SigningKey;
use palisade_registry::{encode_private_key, encode_public_key, generate_key};
use palisade_registry::{sign, Delegation, Manifest, ModuleKind, Version};
use serde_json::{json, Value};
use wasm_encoder::Encode;

use super::server::{Gateway, Response};

pub const DAY: u64 = 86_400;

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The keys of one test: operator root, publisher, admin, and outsiders.
pub struct Keys {
    pub root: SigningKey,
    pub publisher: SigningKey,
    pub admin: SigningKey,
    pub other_root: SigningKey,
    pub other_publisher: SigningKey,
    pub other_admin: SigningKey,
}

impl Keys {
    pub fn new() -> Keys {
        Keys {
            root: generate_key(),
            publisher: generate_key(),
            admin: generate_key(),
            other_root: generate_key(),
            other_publisher: generate_key(),
            other_admin: generate_key(),
        }
    }

    /// A delegation from the trusted root to the publisher for `app` and `kinds`, valid now.
    pub fn delegation(&self, app: &str, kinds: &[ModuleKind]) -> Delegation {
        Delegation::issue(
            &self.root,
            self.publisher.verifying_key(),
            app,
            kinds,
            now() - DAY,
            now() + DAY,
        )
        .unwrap()
    }

    /// `component` signed by the publisher as `app/name@version` of `kind`.
    pub fn module(
        &self,
        component: &[u8],
        app: &str,
        name: &str,
        kind: ModuleKind,
        version: &str,
    ) -> Vec<u8> {
        // A marker section per app and version: distinct content addresses, so that
        // tampering with one version's file leaves the others intact.
        let component = &with_marker(component, &format!("{app}/{name}@{version}"));
        sign_with(
            component,
            app,
            name,
            kind,
            version,
            &self.publisher,
            &self.delegation(app, &[kind]),
        )
    }
}

pub fn sign_with(
    component: &[u8],
    app: &str,
    name: &str,
    kind: ModuleKind,
    version: &str,
    publisher: &SigningKey,
    delegation: &Delegation,
) -> Vec<u8> {
    let version: Version = version.parse().unwrap();
    let manifest = Manifest::new(app, kind, name, version, &[]);
    sign(component, &manifest, publisher, delegation).unwrap()
}

/// A policy that permits RETRIEVE for everyone: the registry's version of `lights/policy`.
pub const PERMIT_RETRIEVE: &str =
    r#"{ policies = [ { id = "p", pv = { acr = [ { acor = ["all"], acop = 2 } ] } } ] }"#;

/// A gateway whose config trusts `keys.root` and `keys.admin`; app `lights` (and `locks`) start
/// with a config plugin `policy` that denies everything, so a registry module shows in every
/// decision (permit, and its version).
pub fn config_text(interval_s: u64, max_module_bytes: u64) -> String {
    format!(
        r#"
[admin]
trust_roots = ["root.pub"]
admin_keys = ["admin.pub"]
integrity_interval_s = {interval_s}
max_module_bytes = {max_module_bytes}
[rate_limit]
per_originator = {{ per_second = 100000, burst = 100000 }}
per_source_ip = {{ per_second = 100000, burst = 100000 }}
[admin.plugins."lights/policy"]
config = {PERMIT_RETRIEVE}
[admin.plugins."locks/policy"]
config = {PERMIT_RETRIEVE}

[[app]]
name = "lights"
paths = ["/cse-in/lights"]
consent_real_identities = true
[[app.plugin]]
name = "policy"
plugin = "acp"
config = {{ policies = [ {{ id = "none", pv = {{ acr = [] }} }} ] }}

[[app]]
name = "locks"
paths = ["/cse-in/locks"]
consent_real_identities = true
[[app.plugin]]
name = "policy"
plugin = "acp"
config = {{ policies = [ {{ id = "none", pv = {{ acr = [] }} }} ] }}
"#
    )
}

/// Starts the gateway of [`config_text`] with the key files of `keys`.
pub fn start(keys: &Keys, interval_s: u64, max_module_bytes: u64) -> Gateway {
    start_with(keys, &config_text(interval_s, max_module_bytes))
}

/// Starts a gateway with `config` (e.g. [`config_text`] edited) and the key files of `keys`.
pub fn start_with(keys: &Keys, config: &str) -> Gateway {
    let root = encode_public_key(&keys.root.verifying_key());
    let admin = encode_public_key(&keys.admin.verifying_key());
    let gateway = Gateway::start(config, &[("root.pub", &root), ("admin.pub", &admin)]);
    let key_path = gateway.dir.path().join("admin.key");
    std::fs::write(&key_path, encode_private_key(&keys.admin).as_bytes()).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    gateway
}

/// A signed admin request with `key` at time `at`.
pub fn admin_at(
    gateway: &Gateway,
    key: &SigningKey,
    method: &str,
    path: &str,
    body: &[u8],
    at: u64,
) -> Response {
    let headers = palisade_gateway::sign_request(key, method, path, body, at);
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    gateway.request(method, path, &headers, body)
}

/// A signed admin request, now.
pub fn admin(
    gateway: &Gateway,
    key: &SigningKey,
    method: &str,
    path: &str,
    body: &[u8],
) -> Response {
    admin_at(gateway, key, method, path, body, now())
}

/// The registry's listing: `(app, name, version, state)` sorted.
pub fn listing(gateway: &Gateway, key: &SigningKey) -> Vec<(String, String, String, String)> {
    let answer = admin(gateway, key, "GET", "/admin/v1/modules", b"");
    assert_eq!(answer.status, 200, "{}", answer.text());
    let mut rows: Vec<_> = answer.json()["modules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let s = |k: &str| m[k].as_str().unwrap_or("").to_string();
            (s("app"), s("name"), s("version"), s("state"))
        })
        .collect();
    rows.sort();
    rows
}

/// One live decision for `app`: (decision, deciding version).
pub fn decision(gateway: &Gateway, app: &str) -> (String, Value) {
    let answer = gateway.decide(
        &json!({"app": app, "originator": "CAE1", "operation": "retrieve",
        "target": format!("/cse-in/{app}/x")}),
    );
    assert_eq!(answer.status, 200, "{}", answer.text());
    let body = answer.json();
    (
        body["decision"].as_str().unwrap().to_string(),
        body["module"]["version"].clone(),
    )
}

/// Asserts an error answer: status, code, and a message.
pub fn assert_refused(answer: &Response, status: u16, code: &str) {
    let body = answer.json();
    assert_eq!(answer.status, status, "{code}: {body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.len() > 15,
        "a sentence naming the problem: {message}"
    );
}

/// `signed` with its embedded delegation replaced by `delegation` (publisher signature and
/// manifest untouched): files `palisade sign` refuses to make, for the refusal tests.
pub fn replace_delegation(signed: &[u8], delegation: &Delegation) -> Vec<u8> {
    let component = palisade_registry::strip_signature(signed).unwrap().to_vec();
    let tag = b"{\"format\":\"palisade-signature";
    let start = signed
        .windows(tag.len())
        .rposition(|w| w == tag)
        .expect("a signature block");
    // Canonical form: the delegation is the block's last field.
    let text = std::str::from_utf8(&signed[start..]).unwrap();
    let key = ",\"delegation\":";
    let at = text.rfind(key).expect("a delegation field") + key.len();
    let block = format!("{}{}}}", &text[..at], delegation.to_json()).into_bytes();
    let name = palisade_registry::SIGNATURE_SECTION.as_bytes();
    let mut payload = Vec::new();
    name.len().encode(&mut payload);
    payload.extend_from_slice(name);
    payload.extend_from_slice(&block);
    let mut out = component;
    out.push(0);
    payload.len().encode(&mut out);
    out.extend_from_slice(&payload);
    out
}

/// `component` with a custom section `test-marker` holding `text`.
pub fn with_marker(component: &[u8], text: &str) -> Vec<u8> {
    let name = b"test-marker";
    let mut payload = Vec::new();
    name.len().encode(&mut payload);
    payload.extend_from_slice(name);
    payload.extend_from_slice(text.as_bytes());
    let mut out = component.to_vec();
    out.push(0);
    payload.len().encode(&mut out);
    out.extend_from_slice(&payload);
    out
}

/// Runs the real `palisade` binary in `dir`; panics with its output when it fails.
pub fn palisade(args: &[&str], dir: &std::path::Path) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "palisade {args:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Prepares provisioning as an operator does, in the gateway's folder: a service provider
/// key (`sp.key`, `sp.pub`), `provision init` as gateway `gw-1` (its X25519 key in
/// `gw.x25519.pub`) and `provision trust` of provider `sp-1` for `apps`. The endpoint
/// exists after the gateway restarts.
pub fn prepare_provisioning(gateway: &Gateway, apps: &[&str]) {
    let dir = gateway.dir.path();
    let data = gateway.data_dir().display().to_string();
    let provider = SigningKey::from_bytes(&[42; 32]);
    std::fs::write(dir.join("sp.key"), hex::encode(provider.to_bytes())).unwrap();
    std::fs::write(
        dir.join("sp.pub"),
        hex::encode(provider.verifying_key().to_bytes()),
    )
    .unwrap();
    palisade(
        &[
            "provision",
            "init",
            "--data",
            &data,
            "--gateway-id",
            "gw-1",
            "--out",
            "gw.x25519.pub",
        ],
        dir,
    );
    let mut trust = vec![
        "provision",
        "trust",
        "--data",
        &data,
        "--provider-id",
        "sp-1",
        "--provider-pub",
        "sp.pub",
    ];
    for app in apps {
        trust.extend(["--app", app]);
    }
    palisade(&trust, dir);
}
