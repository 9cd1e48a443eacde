//! `aclr` through a real `palisade serve` proxy (issue 13.7): originator positions reach the
//! gateway in a provider's signed bundle (`palisade provision create --positions`, applied
//! with `POST /admin/v1/provision`), the proxy gives each request its originator's position,
//! and the acp plugin's location context matches, does not match, or fails closed when the
//! position is unknown or the plugin is not granted `location` (SER-026). Positions survive
//! a restart (rebuilt from the committed state) and a later bundle removes one.

use crate::support::admin as admin_common;
use crate::support::server;

use std::process::Command;

use admin_common::{admin, palisade, Keys};
use server::{Answer, Gateway, StandInCse};

/// `field` lets Cfield-* retrieve from France or within 20 km of Berlin's centre; `blind` has
/// the same policy without the `location` capability.
fn config(cse: &str) -> String {
    let policy = r#"{ policies = [ { id = "field", pv = { acr = [
  { acor = ["Cfield-*"], acop = 2, acco = [ { aclr = { accc = ["FR"] } } ] },
  { acor = ["Cfield-*"], acop = 2, acco = [ { aclr = [ { accr = [[52.52, 13.405, 20000]] } ] } ] },
] } } ] }"#;
    format!(
        r#"
[upstream]
url = "{cse}"
timeout_ms = 2000
connect_timeout_ms = 500

[admin]
trust_roots = ["root.pub"]
admin_keys = ["admin.pub"]

[[app]]
name = "field"
paths = ["/cse-in/field"]
consent_real_identities = true
[[app.plugin]]
plugin = "acp"
capabilities = ["location"]
config = {policy}

[[app]]
name = "blind"
paths = ["/cse-in/blind"]
consent_real_identities = true
[[app.plugin]]
plugin = "acp"
config = {policy}
"#
    )
}

fn retrieve(gateway: &Gateway, app: &str, originator: &str) -> (u16, Option<String>) {
    let answer = gateway.request(
        "GET",
        &format!("/cse-in/{app}/c1"),
        &[("X-M2M-Origin", originator), ("X-M2M-RI", "loc")],
        b"",
    );
    (
        answer.status,
        answer.header("x-m2m-rsc").map(str::to_string),
    )
}

fn permitted(gateway: &Gateway, app: &str, originator: &str) -> bool {
    match retrieve(gateway, app, originator) {
        (200, Some(rsc)) if rsc == "2000" => true,
        (403, Some(rsc)) if rsc == "4103" => false,
        other => panic!("{app} {originator}: unexpected {other:?}"),
    }
}

#[test]
fn provisioned_positions_let_aclr_match_on_the_proxy_and_unknown_ones_fail_closed() {
    let cse = StandInCse::start(|_| Answer::json(200, 2000, "{}"));
    let keys = Keys::new();
    let gateway = admin_common::start_with(&keys, &config(&cse.url()));
    let dir = gateway.dir.path().to_path_buf();

    // Before anything is provisioned, every location is unknown: aclr fails closed.
    assert!(!permitted(&gateway, "field", "Cfield-paris"));

    admin_common::prepare_provisioning(&gateway, &["field", "blind"]);
    let gateway = gateway.restart();

    let bundle = |sequence: &str, positions: &str, out: &str| {
        std::fs::write(dir.join(format!("{out}.json")), positions).unwrap();
        palisade(
            &[
                "provision",
                "create",
                "--provider-key",
                "sp.key",
                "--provider-id",
                "sp-1",
                "--gateway-id",
                "gw-1",
                "--positions",
                &format!("{out}.json"),
                "--sequence",
                sequence,
                "--out",
                out,
            ],
            &dir,
        );
        let applied = admin(
            &gateway,
            &keys.admin,
            "POST",
            "/admin/v1/provision",
            &std::fs::read(dir.join(out)).unwrap(),
        );
        assert_eq!(applied.status, 200, "{}", applied.text());
        applied.json()
    };
    let report = bundle(
        "1",
        r#"{
  "field": {
    "Cfield-paris": {"latitude": 48.8566, "longitude": 2.3522, "country": "FR"},
    "Cfield-rome": {"latitude": 41.9028, "longitude": 12.4964, "country": "IT"},
    "Cfield-berlin": {"latitude": 52.5163, "longitude": 13.3777},
    "Cfield-potsdam": {"latitude": 52.3906, "longitude": 13.0645}
  },
  "blind": {"Cfield-paris": {"latitude": 48.8566, "longitude": 2.3522, "country": "FR"}}
}"#,
        "b1.bin",
    );
    assert_eq!(report["report"]["positions"], 5, "{report}");

    let before = cse.received.lock().unwrap().len();
    assert!(
        permitted(&gateway, "field", "Cfield-paris"),
        "country matches"
    );
    assert!(
        permitted(&gateway, "field", "Cfield-berlin"),
        "circle matches"
    );
    assert!(
        !permitted(&gateway, "field", "Cfield-rome"),
        "another country"
    );
    assert!(
        !permitted(&gateway, "field", "Cfield-potsdam"),
        "outside the circle"
    );
    assert!(
        !permitted(&gateway, "field", "Cfield-nowhere"),
        "unknown: fail-closed"
    );
    // Positions are per app: Rome's position in `field` is not Berlin's in another app, and
    // an app whose plugin lacks `location` never shows it (SER-026).
    assert!(!permitted(&gateway, "blind", "Cfield-paris"));
    assert_eq!(cse.received.lock().unwrap().len(), before + 2);

    // Rebuilt from the committed state at start.
    let gateway = gateway.restart();
    assert!(permitted(&gateway, "field", "Cfield-paris"));
    assert!(!permitted(&gateway, "field", "Cfield-rome"));

    // A later bundle removes a position: unknown again, denied.
    let bundle = |sequence: &str, positions: &str, out: &str| {
        std::fs::write(dir.join(format!("{out}.json")), positions).unwrap();
        palisade(
            &[
                "provision",
                "create",
                "--provider-key",
                "sp.key",
                "--provider-id",
                "sp-1",
                "--gateway-id",
                "gw-1",
                "--positions",
                &format!("{out}.json"),
                "--sequence",
                sequence,
                "--out",
                out,
            ],
            &dir,
        );
        admin(
            &gateway,
            &keys.admin,
            "POST",
            "/admin/v1/provision",
            &std::fs::read(dir.join(out)).unwrap(),
        )
    };
    let removed = bundle("2", r#"{"field": {"Cfield-paris": null}}"#, "b2.bin");
    assert_eq!(removed.status, 200, "{}", removed.text());
    assert!(!permitted(&gateway, "field", "Cfield-paris"));
    assert!(permitted(&gateway, "field", "Cfield-berlin"));

    // A provider without rights over an app cannot place its originators (SER-022).
    std::fs::write(
        dir.join("other.json"),
        r#"{"meters": {"Cfield-x": {"latitude": 1.0, "longitude": 2.0}}}"#,
    )
    .unwrap();
    palisade(
        &[
            "provision",
            "create",
            "--provider-key",
            "sp.key",
            "--provider-id",
            "sp-1",
            "--gateway-id",
            "gw-1",
            "--positions",
            "other.json",
            "--sequence",
            "3",
            "--out",
            "b3.bin",
        ],
        &dir,
    );
    let refused = admin(
        &gateway,
        &keys.admin,
        "POST",
        "/admin/v1/provision",
        &std::fs::read(dir.join("b3.bin")).unwrap(),
    );
    assert_eq!(refused.status, 422, "{}", refused.text());

    // An out-of-range position never makes a bundle.
    std::fs::write(
        dir.join("bad.json"),
        r#"{"field": {"Cfield-x": {"latitude": 91.0, "longitude": 2.0}}}"#,
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args([
            "provision",
            "create",
            "--provider-key",
            "sp.key",
            "--provider-id",
            "sp-1",
            "--gateway-id",
            "gw-1",
            "--positions",
            "bad.json",
            "--sequence",
            "4",
            "--out",
            "b4.bin",
        ])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("latitude"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
