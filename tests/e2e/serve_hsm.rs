//! `palisade serve` with its keys in a real PKCS#11 token (SoftHSM2, SER-023): the gateway's
//! audit key is generated inside the token, checkpoints are signed there, and the audit log
//! verifies against the public key the gateway publishes (SER-016).

use crate::support::server;

use std::path::PathBuf;
use std::process::Command;

use serde_json::json;
use server::Gateway;

fn softhsm_module() -> Option<PathBuf> {
    [
        "/usr/lib/softhsm/libsofthsm2.so",
        "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
        "/usr/local/lib/softhsm/libsofthsm2.so",
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|path| path.exists())
}

#[test]
fn the_gateway_signs_its_audit_log_inside_the_hsm() {
    let Some(module) = softhsm_module() else {
        assert!(
            std::env::var_os("PALISADE_REQUIRE_HSM").is_none(),
            "SoftHSM2 is required but not installed"
        );
        eprintln!("SKIPPED: SoftHSM2 not installed (apt-get install softhsm2)");
        return;
    };
    // A token of our own, in a temp folder (the child process inherits the environment).
    let hsm = tempfile::tempdir().unwrap();
    let tokens = hsm.path().join("tokens");
    std::fs::create_dir_all(&tokens).unwrap();
    let conf = hsm.path().join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .unwrap();
    std::env::set_var("SOFTHSM2_CONF", &conf);
    std::env::set_var("PALISADE_TEST_HSM_PIN", "1234");
    let init = Command::new("softhsm2-util")
        .args([
            "--init-token",
            "--free",
            "--label",
            "palisade-gw",
            "--so-pin",
            "5678",
            "--pin",
            "1234",
        ])
        .output()
        .expect("softhsm2-util");
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );

    let config = format!(
        r#"
[keystore]
backend = "pkcs11"
module = "{}"
token_label = "palisade-gw"
pin_env = "PALISADE_TEST_HSM_PIN"

[[app]]
name = "lights"
paths = ["/cse-in/lights"]
consent_real_identities = true
[[app.plugin]]
plugin = "acp"
config = {{ policies = [{{ id = "p", pv = {{ acr = [{{ acor = ["CAE1"], acop = 2 }}] }} }}] }}
"#,
        module.display()
    );
    let mut gateway = Gateway::start(&config, &[]);
    let permit = gateway.decide(
        &json!({"originator": "CAE1", "operation": "retrieve", "target": "/cse-in/lights/l1"}),
    );
    assert_eq!(permit.json()["decision"], "permit", "{}", permit.text());
    let data = gateway.data_dir();
    assert!(gateway.terminate().success());

    // No software key file holds the audit key: it lives in the token.
    assert!(
        !data.join("keys").exists()
            || std::fs::read_dir(data.join("keys"))
                .unwrap()
                .next()
                .is_none()
    );
    let output = Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(["audit", "verify", "--log"])
        .arg(data.join("audit"))
        .arg("--key")
        .arg(data.join("audit/gateway.pub"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );

    // Without the PIN the gateway refuses to start, naming the variable.
    std::env::remove_var("PALISADE_TEST_HSM_PIN");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("gateway.toml"), &config).unwrap();
    let refused = Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(dir.path().join("gateway.toml"))
        .arg("--data")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("PALISADE_TEST_HSM_PIN"));
}
