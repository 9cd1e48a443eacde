//! `palisade serve` configuration: errors that name the file, the line and the key; the demo
//! gateway with no config (keys and pseudonym secrets generated on first start and kept in
//! the data folder); and examples/gateway.toml, which must start as documented.

#[path = "support/server.rs"]
mod server;

use std::process::Command;

use serde_json::json;
use server::Gateway;

/// Runs `palisade serve --config <file>` with `text` in it; it must fail. Returns stderr.
fn fails(text: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.json"), "{ not json").unwrap();
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
    String::from_utf8_lossy(&output.stderr).into_owned()
}

const APP: &str =
    "[[app]]\nname = \"lights\"\npaths = [\"/cse-in/lights\"]\n[[app.plugin]]\nplugin = \"acp\"\n";

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
        .trim_end_matches('\'');
    let request: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(gateway.decide(&request).json()["decision"], "permit");
    let reader = gateway.decide(
        &json!({"originator": "CAE2", "operation": "retrieve", "target": "/cse-in/lights/lamp1"}),
    );
    assert_eq!(
        reader.json()["decision"],
        "permit",
        "group members may read"
    );
    let pseudonym_of_cae9 = gateway.decide(&json!({"originator": "CAE9", "operation": "retrieve", "target": "/cse-in/lights/lamp1"})).json()["reason"].clone();

    // A restart keeps the generated issuer key (the old token still verifies) and the
    // pseudonym secrets (the same originator gets the same pseudonym).
    let gateway = gateway.restart();
    assert_eq!(gateway.decide(&request).json()["decision"], "permit");
    let again = gateway.decide(&json!({"originator": "CAE9", "operation": "retrieve", "target": "/cse-in/lights/lamp1"})).json()["reason"].clone();
    assert_eq!(pseudonym_of_cae9, again);
}

#[test]
fn the_documented_example_config_starts() {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/gateway.toml");
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
