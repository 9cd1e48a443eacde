//! The audit trail of a real `palisade serve` (SER-016): every decision lands in the
//! hash-chained log, checkpoints are signed by the gateway's key in its keystore, and
//! `palisade audit verify` accepts the log as written and names the first edited entry.

use crate::support::server;

use serde_json::json;
use server::Gateway;

const CONFIG: &str = r#"
[rate_limit]
per_originator = { per_second = 10000, burst = 10000 }

[[app]]
name = "lights"
paths = ["/cse-in/lights"]
consent_real_identities = true
[[app.plugin]]
plugin = "acp"
config = { policies = [{ id = "p", pv = { acr = [{ acor = ["originator:CAE1"], acop = 2 }] } }] }
"#;

fn verify(data: &std::path::Path) -> (bool, String) {
    crate::support::audit_verify(&data.join("audit"), &data.join("audit/gateway.pub"), &[])
}

#[test]
fn decisions_are_audited_and_tampering_is_detected() {
    let mut gateway = Gateway::start(CONFIG, &[]);
    let mut ids = Vec::new();
    for (originator, operation) in [
        ("CAE1", "retrieve"),
        ("CAE1", "delete"),
        ("CAE9", "retrieve"),
    ] {
        let response = gateway.decide(&json!({
            "originator": originator, "operation": operation, "target": "/cse-in/lights/lamp1"
        }));
        assert_eq!(response.status, 200, "{}", response.text());
        ids.push(response.json()["decision_id"].as_str().unwrap().to_string());
    }
    let data = gateway.data_dir();
    assert!(gateway.terminate().success());

    let (ok, report) = verify(&data);
    assert!(ok, "a log written by the gateway verifies: {report}");
    let log_file = std::fs::read_dir(data.join("audit"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| {
            path.extension()
                .is_some_and(|ext| ext == "jsonl" || ext == "log")
        })
        .expect("an audit log file");
    let text = std::fs::read_to_string(&log_file).unwrap();
    for id in &ids {
        assert!(
            text.contains(id.as_str()),
            "decision {id} is in the audit log"
        );
    }

    // Turn the recorded deny of the delete into a permit: verification names that entry.
    let edited: String = text
        .lines()
        .map(|line| {
            if line.contains(&ids[1]) {
                line.replace("\"deny\"", "\"permit\"")
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n";
    assert_ne!(edited, text, "the deny is recorded as such");
    std::fs::write(&log_file, edited).unwrap();
    let (ok, report) = verify(&data);
    assert!(!ok, "an edited entry must fail verification: {report}");
    assert!(
        report.contains("edited") || report.contains("hash"),
        "{report}"
    );
}
