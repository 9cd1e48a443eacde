//! The enforcement proxy in front of a real oneM2M CSE (the ACME CSE, started by
//! `support/cse.rs`): through an app that allows everything, the CSE answers exactly as it
//! does without the gateway; through enforcement apps, every denial comes from the gateway
//! and never reaches the CSE, which the tests prove from the CSE's own state (SER-008).
//! Skipped with a message when the ACME CSE is not installed; failed when `CI` is set.

#[path = "support/cse.rs"]
mod cse;
#[path = "support/server.rs"]
mod server;

use cse::AcmeCse;
use serde_json::json;

#[test]
fn the_harness_starts_a_cse_that_answers_and_keeps_state() {
    let Some(cse) = AcmeCse::start("the_harness_starts_a_cse_that_answers_and_keeps_state") else {
        return;
    };
    let base = cse.state(&cse.base()).expect("the CSEBase exists");
    assert_eq!(base["m2m:cb"]["csi"], json!(cse.cse_id()));
    let created = cse.create(
        &cse.base(),
        Some("Charness"),
        2,
        &json!({"m2m:ae": {"rn": "harness", "api": "Nharness", "rr": false, "srv": ["3"]}}),
    );
    assert_eq!(
        created.header("x-m2m-rsc"),
        Some("2001"),
        "{}",
        created.text()
    );
    let path = format!("{}/harness", cse.base());
    assert_eq!(
        cse.state(&path).unwrap()["m2m:ae"]["aei"],
        json!("Charness")
    );
    assert!(cse.state(&format!("{}/absent", cse.base())).is_none());
}
