//! `palisade serve` configuration: errors that name the file, the line and the key; the demo
//! gateway with no config (keys and pseudonym secrets generated on first start and kept in
//! the data folder); and examples/gateway.toml, which must start as documented.

use crate::support::admin as common;
use crate::support::server;

use std::process::Command;

use palisade_registry::encode_public_key;
use palisade_registry::ModuleKind;
use serde_json::json;
use server::Gateway;

/// Runs `palisade serve --config <file>` with `text` in it; it must fail. Returns stderr.
fn fails(text: &str) -> String {
    fails_with(text, &[])
}

/// Like [`fails`], with `files` (name, contents) written beside the config first.
fn fails_with(text: &str, files: &[(&str, &[u8])]) -> String {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.json"), "{ not json").unwrap();
    for (name, contents) in files {
        std::fs::write(dir.path().join(name), contents).unwrap();
    }
    let file = dir.path().join("gw.toml");
    std::fs::write(&file, text).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&file)
        .arg("--data")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    // Refused before serving anything: it never got as far as listening.
    assert!(
        !String::from_utf8_lossy(&output.stdout).contains("listening on"),
        "{output:?}"
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts that every `(config, location, detail)` fails to start with both in its error.
fn all_fail(cases: &[(String, &str, &str)]) {
    for (text, location, detail) in cases {
        let stderr = fails(text);
        assert!(
            stderr.contains(location),
            "expected {location:?} in {stderr:?} for\n{text}"
        );
        assert!(
            stderr.contains(detail),
            "expected {detail:?} in {stderr:?} for\n{text}"
        );
    }
}

const APP: &str =
    "[[app]]\nname = \"lights\"\npaths = [\"/cse-in/lights\"]\n[[app.plugin]]\nplugin = \"acp\"\n";

/// A policy acp accepts (retrieve for everyone), for configs that must start.
const POLICY: &str =
    "config = { policies = [ { pv = { acr = [ { acor = [\"all\"], acop = 2 } ] } } ] }\n";

#[test]
fn config_errors_name_the_file_the_line_and_the_key() {
    let cases = [
        (
            format!("{APP}capabilities = [\"teleport\"]\n"),
            "gw.toml:6: app[0].plugin[0].capabilities[0]",
            "teleport",
        ),
        (
            format!("{APP}config_file = \"policy.json\"\n"),
            "gw.toml:6: app[0].plugin[0].config_file",
            "not valid JSON",
        ),
        (
            format!("{APP}config_file = \"missing.json\"\n"),
            "gw.toml:6: app[0].plugin[0].config_file",
            "cannot read",
        ),
        (
            APP.replace("\"acp\"", "\"nothing.wasm\""),
            "gw.toml:5: app[0].plugin[0].plugin",
            "not a reference plugin",
        ),
        (
            format!("{APP}mode = \"sometimes\"\n"),
            "gw.toml:6: app[0].plugin[0].mode",
            "unknown field",
        ),
        (
            APP.replace(
                "name = \"lights\"",
                "name = \"lights\"\nmode = \"sometimes\"",
            ),
            "gw.toml:3: app[0].mode",
            "sometimes",
        ),
        (
            format!("[upstream]\nurl = \"ftp://cse\"\n{APP}"),
            "gw.toml:2: upstream.url",
            "http://",
        ),
        (
            format!("[[listener]]\naddress = \"everywhere\"\n{APP}"),
            "gw.toml:2: listener[0].address",
            "not an IP address",
        ),
        (
            format!("[limits]\nmax_body_bytes = -1\n{APP}"),
            "gw.toml:2: limits.max_body_bytes",
            "",
        ),
        (
            format!("{APP}[[app]]\nname = \"lights\"\n"),
            "gw.toml:7: app[1].name",
            "defined twice",
        ),
        ("[[app]\nname = 1\n".to_string(), "gw.toml:1", ""),
    ];
    for (text, location, detail) in cases {
        let stderr = fails(&text);
        assert!(
            stderr.contains(location),
            "expected {location:?} in {stderr:?} for\n{text}"
        );
        assert!(stderr.contains(detail), "expected {detail:?} in {stderr:?}");
    }
}

#[test]
fn the_demo_gateway_starts_ready_and_keeps_its_keys() {
    let gateway = Gateway::start_demo();
    let printed = gateway.stdout.lock().unwrap().join("\n");
    assert!(
        printed.contains("app lights") && printed.contains("app meters"),
        "{printed}"
    );
    assert!(printed.contains("curl -s http://"), "{printed}");
    assert!(gateway.data_dir().join("demo/gateway.toml").exists());
    assert!(gateway.data_dir().join("keys/master.key").exists());

    // The printed curl lines work.
    let permit = gateway.decide(
        &json!({"originator": "CAE1", "operation": "retrieve", "target": "/cse-in/lights/lamp1"}),
    );
    assert_eq!(permit.json()["decision"], "permit");
    let deny = gateway.request(
        "GET",
        "/cse-in/lights/lamp1",
        &[("X-M2M-Origin", "CAE9"), ("X-M2M-RI", "req-1")],
        b"",
    );
    assert_eq!((deny.status, deny.header("x-m2m-rsc")), (403, Some("4103")));
    let token_line = printed
        .lines()
        .find(|line| line.contains("CAE-meter-1"))
        .expect("a token line");
    let body = token_line
        .split("-d '")
        .nth(1)
        .unwrap()
        .split('\'')
        .next()
        .unwrap();
    let request: serde_json::Value = serde_json::from_str(body).unwrap();
    let reader = gateway.decide(
        &json!({"originator": "CAE2", "operation": "retrieve", "target": "/cse-in/lights/lamp1"}),
    );
    assert_eq!(
        reader.json()["decision"],
        "permit",
        "group members may read"
    );
    let pseudonym_of_cae9 = gateway.decide(&json!({"originator": "CAE9", "operation": "retrieve", "target": "/cse-in/lights/lamp1"})).json()["reason"].clone();

    // A restart keeps the generated issuer key (the token minted before it verifies after
    // it) and the pseudonym secrets (the same originator gets the same pseudonym). The meters
    // app authenticates its originators by single-use tokens: the token works once, and a
    // second use is refused before any plugin runs (4106), across a restart too.
    let gateway = gateway.restart();
    assert_eq!(gateway.decide(&request).json()["decision"], "permit");
    let replay = gateway.decide(&request);
    assert_eq!(replay.status, 403, "{}", replay.text());
    assert_eq!(
        replay.json()["error"]["code"],
        "originator-not-authenticated"
    );
    let health = gateway.request("GET", "/health", &[], b"").json();
    let meters = health["apps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|app| app["app"] == "meters")
        .unwrap()
        .clone();
    assert_eq!(meters["originators"], "token");
    let again = gateway.decide(&json!({"originator": "CAE9", "operation": "retrieve", "target": "/cse-in/lights/lamp1"})).json()["reason"].clone();
    assert_eq!(pseudonym_of_cae9, again);
}

#[test]
fn the_documented_example_config_starts() {
    let example =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/gateway.toml");
    let text = std::fs::read_to_string(&example).unwrap();
    // The example's relative paths point into examples/; run it from there.
    let text = text.replace(
        "config_file = \"",
        &format!("config_file = \"{}/", example.parent().unwrap().display()),
    );
    let gateway = Gateway::start(&text, &[]);
    let health = gateway.request("GET", "/health", &[], b"").json();
    assert_eq!(health["status"], "ok");
    assert!(health["apps"].as_array().unwrap().len() >= 2, "{health}");
}

/// Issue #11.10: limits at which the gateway would refuse everything do not start.
#[test]
fn limits_that_refuse_every_request_do_not_start() {
    const ZERO: &str = "0 would refuse every request";
    let mut cases = Vec::new();
    for key in [
        "max_in_flight",
        "header_read_timeout_ms",
        "body_read_timeout_ms",
        "max_connections",
        "max_connections_per_address",
        "max_body_bytes",
    ] {
        cases.push((
            format!("[limits]\n{key} = 0\n{APP}"),
            "gw.toml:2: limits.",
            ZERO,
        ));
    }
    for key in ["timeout_ms", "connect_timeout_ms", "max_response_bytes"] {
        cases.push((
            format!("[upstream]\nurl = \"http://127.0.0.1:9\"\n{key} = 0\n{APP}"),
            "gw.toml:3: upstream.",
            ZERO,
        ));
    }
    cases.push((
        format!("[admin]\ntrust_roots = []\nadmin_keys = []\nmax_module_bytes = 0\n{APP}"),
        "gw.toml:4: admin.max_module_bytes",
        "0 would refuse every module",
    ));
    cases.push((
        format!("[rate_limit]\nmax_keys = 0\n{APP}"),
        "gw.toml:2: rate_limit.max_keys",
        ZERO,
    ));
    cases.push((
        format!("[admin]\ntrust_roots = []\nadmin_keys = []\nmax_concurrent_requests = 0\n{APP}"),
        "gw.toml:4: admin.max_concurrent_requests",
        ZERO,
    ));
    cases.push((
        format!("[rate_limit]\nper_originator = {{ per_second = 5, burst = 0 }}\n{APP}"),
        "gw.toml:2: rate_limit.per_originator",
        "burst = 0 with per_second = 5",
    ));
    cases.push((
        format!("[rate_limit.per_source_ip]\nper_second = 5\nburst = 0\n{APP}"),
        "rate_limit.per_source_ip",
        "refuses every request",
    ));
    for (limit, detail) in [
        ("memory_bytes = 0", "below one WebAssembly page"),
        ("deadline_ms = 0", "deadline_ms = 0"),
        ("host_calls = 0", "host_calls = 0"),
        ("max_reason_bytes = 0", "max_reason_bytes = 0"),
    ] {
        cases.push((
            APP.replace(
                "paths = [\"/cse-in/lights\"]",
                &format!("paths = [\"/cse-in/lights\"]\nlimits = {{ {limit} }}"),
            ),
            "gw.toml:4: app[0].limits",
            detail,
        ));
    }
    all_fail(&cases);
    // Every key's name is in its own error.
    let stderr = fails(&format!("[limits]\nheader_read_timeout_ms = 0\n{APP}"));
    assert!(
        stderr.contains("gw.toml:2: limits.header_read_timeout_ms: 0 would"),
        "{stderr}"
    );
    // The unaffected side: 0 where it means "off" still starts (no shutdown grace, no rate
    // limit), and the smallest working values start and serve.
    let gateway = Gateway::start(
        &format!("[limits]\nshutdown_grace_ms = 0\nmax_in_flight = 1\n[rate_limit]\nper_originator = {{ per_second = 0, burst = 0 }}\n{APP}{POLICY}"),
        &[],
    );
    assert_eq!(gateway.request("GET", "/health", &[], b"").status, 200);
    // A 1 ms header timeout is accepted and starts too. It is not asked to serve: on a loaded
    // machine a request's head can take longer than 1 ms to arrive after the connection is
    // accepted, and then the server is right to close it.
    drop(Gateway::start(
        &format!("[limits]\nheader_read_timeout_ms = 1\n{APP}{POLICY}"),
        &[],
    ));
}

/// Issue #11.10: app paths that match nothing, or match ambiguously, do not start; nor do
/// listeners that serve nothing or twice, nor an app that could only deny.
#[test]
fn apps_and_listeners_that_cannot_work_do_not_start() {
    let with_paths = |paths: &str| APP.replace("[\"/cse-in/lights\"]", paths);
    let mut cases = vec![
        (with_paths("[]"), "gw.toml:2: app[0].paths", "has no paths"),
        (
            APP.replace("paths = [\"/cse-in/lights\"]\n", ""),
            "gw.toml:2: app[0].paths",
            "has no paths",
        ),
    ];
    for (path, detail) in [
        ("cse-in/lights", "must start with '/'"),
        ("/cse-in//lights", "empty segment"),
        ("/cse-in/../meters", "\"..\" segment"),
        ("/cse-in/./lights", "\".\" segment"),
        ("/cse-in/lights;x", "';'"),
        ("/cse-in/%6Cights", "'%'"),
        ("/cse-in/lights?x", "'?'"),
        ("/cse-in/li ghts", "' '"),
    ] {
        cases.push((
            with_paths(&format!("[\"{path}\"]")),
            "gw.toml:3: app[0].paths[0]",
            detail,
        ));
    }
    cases.push((
        with_paths("[\"/cse-in/lights\", \"/cse-in/lights/\"]"),
        "gw.toml:3: app[0].paths[1]",
        "listed twice",
    ));
    cases.push((
        format!("{APP}[[app]]\nname = \"lamps\"\npaths = [\"/cse-in/lights/\"]\n[[app.plugin]]\nplugin = \"acp\"\n"),
        "gw.toml:8: app[1].paths[0]",
        "already belongs to application \"lights\"",
    ));
    cases.push((
        format!("[[listener]]\naddress = \"127.0.0.1:0\"\nserve = []\n{APP}"),
        "gw.toml:2: listener[0].serve",
        "serves nothing",
    ));
    cases.push((
        format!("[[listener]]\naddress = \"127.0.0.1:8080\"\n[[listener]]\naddress = \"127.0.0.1:8080\"\n{APP}"),
        "gw.toml:4: listener[1].address",
        "already listener[0]'s address",
    ));
    cases.push((
        APP.replace("\"acp\"", "\"token-auth\""),
        "gw.toml:2: app[0].plugin",
        "no authorizer",
    ));
    all_fail(&cases);
    // Nested prefixes are not ambiguous (the longest wins) and the SP-relative and absolute
    // forms are paths too: these start.
    let gateway = Gateway::start(
        &format!("{APP}{POLICY}[[app]]\nname = \"lamp1\"\npaths = [\"/cse-in/lights/lamp1\", \"/~/in-cse/lamps\", \"/_/sp.example/in-cse/lamps\"]\n[[app.plugin]]\nplugin = \"acp\"\nconfig = {{ policies = [ {{ pv = {{ acr = [] }} }} ] }}\n"),
        &[],
    );
    let health = gateway.request("GET", "/health", &[], b"").json();
    assert_eq!(health["apps"].as_array().unwrap().len(), 2, "{health}");
}

/// Issue #11.10 as reported: `acop = 64` started and the app denied everything while
/// `/health` said ok. Now acp refuses the policy in `prepare`, at load, in both isolation
/// modes, and the error names the file, the line of the plugin's configuration, the app, the
/// plugin and the plugin's own reason.
#[test]
fn a_policy_the_plugin_refuses_stops_the_start_at_its_line() {
    let bad = "config = { policies = [ { id = \"bad\", pv = { acr = [ { acor = [\"CAE1\"], acop = 64 } ] } } ] }\n";
    for isolation in ["warm", "fresh-per-request"] {
        let text = APP.replace(
            "paths = [\"/cse-in/lights\"]",
            &format!("paths = [\"/cse-in/lights\"]\nisolation = \"{isolation}\""),
        );
        let stderr = fails(&format!("{text}{bad}"));
        assert!(
            stderr.contains(
                "gw.toml:7: app[0].plugin[0].config: plugin \"acp\" of application \"lights\""
            ),
            "{isolation}: {stderr}"
        );
        assert!(
            stderr.contains("refused its configuration: invalid accessControlPolicy configuration: policies[0].pv.acr[0].acop: 64 is not an operation mask in 1..=63"),
            "{isolation}: {stderr}"
        );
    }
    // The same from a config_file: the line of `config_file`.
    let stderr = fails_with(
        &format!("{APP}config_file = \"acop64.json\"\n"),
        &[(
            "acop64.json",
            br#"{"policies": [{"pv": {"acr": [{"acor": ["all"], "acop": 64}]}}]}"#,
        )],
    );
    assert!(
        stderr.contains("gw.toml:6: app[0].plugin[0].config_file: plugin \"acp\""),
        "{stderr}"
    );
    assert!(
        stderr.contains("acop: 64 is not an operation mask"),
        "{stderr}"
    );
    // Other invalid policies, each with the plugin's reason.
    let mut cases = Vec::new();
    for (config, reason) in [
        (
            "{ policies = [ { pv = { acr = [ { acor = [\"CAE1\"], acop = 0 } ] } } ] }",
            "acop: 0 is not an operation mask",
        ),
        (
            "{ policies = [ { pv = { acr = [ { acor = [\"CAE1\"], acop = 2, acpo = 2 } ] } } ] }",
            "unknown field \"acpo\"",
        ),
        (
            "{ policies = [ { pv = { acr = [ { acor = [], acop = 2 } ] } } ] }",
            "acor",
        ),
        ("{ policies = [] }", "policies"),
        ("{}", "no `policies` list"),
    ] {
        cases.push((
            format!("{APP}config = {config}\n"),
            "gw.toml:6: app[0].plugin[0].config: plugin \"acp\"",
            reason,
        ));
    }
    // A plugin without any configuration is refused at the plugin reference.
    cases.push((
        APP.to_string(),
        "gw.toml:5: app[0].plugin[0].plugin: plugin \"acp\"",
        "no `policies` list",
    ));
    all_fail(&cases);
}

/// Issue #11.10: the other reference plugins refuse what cannot work at load too.
#[test]
fn token_auth_and_geo_privacy_refuse_bad_configs_at_start() {
    let with = |plugin: &str, config: &str| {
        format!("{APP}{POLICY}[[app.plugin]]\nplugin = \"{plugin}\"\nconfig = {config}\n")
    };
    all_fail(&[
        (
            with(
                "token-auth",
                "{ audience = \"in-cse\", trusted_issuers = {} }",
            ),
            "gw.toml:9: app[0].plugin[1].config: plugin \"token-auth\"",
            "trusted_issuers is empty",
        ),
        (
            with(
                "token-auth",
                "{ audience = \"\", trusted_issuers = { iss = [\"k\"] } }",
            ),
            "gw.toml:9: app[0].plugin[1].config",
            "audience names no CSE ID",
        ),
        (
            with(
                "token-auth",
                "{ audience = \"in-cse\", trusted_issuers = { iss = [\"k\"] }, tkau = 1 }",
            ),
            "gw.toml:9: app[0].plugin[1].config",
            "unknown field",
        ),
        (
            with("geo-privacy", "{ mode = \"coarsen\", decimals = 9 }"),
            "gw.toml:9: app[0].plugin[1].config: plugin \"geo-privacy\"",
            "decimals must be between 0 and 7",
        ),
        (
            with("geo-privacy", "{ members = [] }"),
            "gw.toml:9: app[0].plugin[1].config",
            "members is empty",
        ),
    ]);
}

/// SER-022 (issue #12): with trust roots, a `.wasm` plugin of the config file runs only when
/// signed for its app and kind by a key a root delegated; embedded reference plugins need no
/// signature; `allow_unsigned = true` runs one unsigned, loudly.
#[test]
fn with_trust_roots_only_signed_config_plugins_run() {
    let keys = common::Keys::new();
    let acp = palisade_artifacts::reference("acp").unwrap();
    let root = encode_public_key(&keys.root.verifying_key());
    let policy = POLICY;
    let config = |plugin: &str, extra: &str| {
        format!("[admin]\ntrust_roots = [\"root.pub\"]\nadmin_keys = []\n[[app]]\nname = \"lights\"\npaths = [\"/cse-in/lights\"]\n[[app.plugin]]\nplugin = \"{plugin}\"\n{extra}{policy}")
    };
    let other_root_delegation = palisade_registry::Delegation::issue(
        &keys.other_root,
        keys.publisher.verifying_key(),
        "lights",
        &[ModuleKind::Authorizer],
        common::now() - common::DAY,
        common::now() + common::DAY,
    )
    .unwrap();
    let refused: [(Vec<u8>, &str); 5] = [
        (acp.to_vec(), "unsigned"),
        (
            keys.module(acp, "meters", "policy", ModuleKind::Authorizer, "1.0.0"),
            "meters",
        ),
        (
            keys.module(acp, "lights", "policy", ModuleKind::Filter, "1.0.0"),
            "signed as a module of kind filter but the component is of kind authorizer",
        ),
        (
            common::sign_with(
                acp,
                "lights",
                "policy",
                ModuleKind::Authorizer,
                "1.0.0",
                &keys.publisher,
                &other_root_delegation,
            ),
            "root",
        ),
        (
            {
                let mut tampered =
                    keys.module(acp, "lights", "policy", ModuleKind::Authorizer, "1.0.0");
                let middle = tampered.len() / 2;
                tampered[middle] ^= 1;
                tampered
            },
            "",
        ),
    ];
    for (module, detail) in &refused {
        let stderr = fails_with(
            &config("policy.wasm", ""),
            &[("root.pub", root.as_bytes()), ("policy.wasm", module)],
        );
        assert!(
            stderr.contains("gw.toml:8: app[0].plugin[0].plugin: policy.wasm is refused: [admin] trust_roots are configured")
                || stderr.contains("gw.toml:8: app[0].plugin[0].plugin: policy.wasm is signed"),
            "{detail}: {stderr}"
        );
        assert!(stderr.contains(detail), "{detail}: {stderr}");
    }

    // Signed for lights as an authorizer: starts, decides, and names its signed version.
    let files = tempfile::tempdir().unwrap();
    let signed = files.path().join("signed.wasm");
    std::fs::write(
        &signed,
        keys.module(acp, "lights", "policy", ModuleKind::Authorizer, "1.2.3"),
    )
    .unwrap();
    let unsigned = files.path().join("unsigned.wasm");
    std::fs::write(&unsigned, acp).unwrap();
    let gateway = Gateway::start(
        &format!(
            "{}[[app]]\nname = \"meters\"\npaths = [\"/cse-in/meters\"]\n[[app.plugin]]\nplugin = \"{}\"\nallow_unsigned = true\n{policy}[[app]]\nname = \"embedded\"\npaths = [\"/cse-in/embedded\"]\n[[app.plugin]]\nplugin = \"acp\"\n{policy}",
            config(&signed.display().to_string(), ""),
            unsigned.display()
        ),
        &[("root.pub", &root)],
    );
    for app in ["lights", "meters", "embedded"] {
        let decision = gateway.decide(&json!({"originator": "CAE1", "operation": "retrieve", "target": format!("/cse-in/{app}/x")}));
        assert_eq!(
            decision.json()["decision"],
            "permit",
            "{app}: {}",
            decision.text()
        );
    }
    let health = gateway.request("GET", "/health", &[], b"").json();
    let app = |name: &str| {
        health["apps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|app| app["app"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(app("lights")["unsigned_plugins"], json!([]), "{health}");
    assert_eq!(app("lights")["plugins"][0]["version"], "1.2.3", "{health}");
    assert_eq!(
        app("meters")["unsigned_plugins"],
        json!(["unsigned"]),
        "{health}"
    );
    assert_eq!(app("embedded")["unsigned_plugins"], json!([]), "{health}");
    let log = gateway.stderr.lock().unwrap().clone();
    assert!(
        log.contains("UNSIGNED") && log.contains("allow_unsigned = true"),
        "the opt-out is logged at start: {log}"
    );
}

/// The same load-time check covers modules pushed through the admin API: a registry plugin
/// whose `[admin.plugins]` configuration the plugin refuses is not activated, the answer names
/// the plugin's reason, and the app keeps deciding with what it had.
#[test]
fn an_admin_push_whose_configuration_the_plugin_refuses_changes_nothing() {
    let keys = common::Keys::new();
    let root = encode_public_key(&keys.root.verifying_key());
    let admin_key = encode_public_key(&keys.admin.verifying_key());
    let gateway = Gateway::start(
        &format!("[admin]\ntrust_roots = [\"root.pub\"]\nadmin_keys = [\"admin.pub\"]\n[admin.plugins.\"lights/policy\"]\nconfig = {{ policies = [ {{ pv = {{ acr = [ {{ acor = [\"all\"], acop = 64 }} ] }} }} ] }}\n{}name = \"policy\"\n{POLICY}", APP.replace("paths = [\"/cse-in/lights\"]", "paths = [\"/cse-in/lights\"]\nconsent_real_identities = true")),
        &[("root.pub", &root), ("admin.pub", &admin_key)],
    );
    let module = keys.module(
        palisade_artifacts::reference("acp").unwrap(),
        "lights",
        "policy",
        ModuleKind::Authorizer,
        "1.0.0",
    );
    let answer = common::admin(
        &gateway,
        &keys.admin,
        "PUT",
        "/admin/v1/apps/lights/plugins/policy?activate=true",
        &module,
    );
    assert!(answer.status >= 400, "{} {}", answer.status, answer.text());
    assert!(
        answer.text().contains("acop: 64 is not an operation mask"),
        "{}",
        answer.text()
    );
    let (decision, version) = common::decision(&gateway, "lights");
    assert_eq!(decision, "permit");
    assert_eq!(
        version,
        serde_json::Value::Null,
        "the config plugin still decides"
    );
}
