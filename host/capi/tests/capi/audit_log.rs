//! The signed audit log as the runtime's audit sink (SER-016), through the C API and the
//! Rust API of the bindings: every decision is in the log, with its id, before it is
//! returned; `palisade audit verify` (the real binary) accepts what was written; a log that
//! cannot take a record turns the decision into a deny naming why.

use std::ptr::{null, null_mut};
use std::sync::Arc;

use palisade_capi::*;
use palisade_core::{AccessRequest, Effect, OnAuditFailure, Operation};

use crate::support::{
    c, decide, decision_entries, install, message, new_runtime, palisade_bin, read, scratch,
    verify, SPEC,
};

fn set_audit_log(
    runtime: *mut PalisadeRuntime,
    log: &std::path::Path,
    keys: &std::path::Path,
    on_failure: u32,
) -> (PalisadeStatus, String) {
    let mut error = null_mut();
    let status = unsafe {
        palisade_runtime_set_audit_log(
            runtime,
            c(log.to_str().unwrap()).as_ptr(),
            c(keys.to_str().unwrap()).as_ptr(),
            on_failure,
            &mut error,
        )
    };
    let text = if error.is_null() {
        String::new()
    } else {
        message(error)
    };
    (status, text)
}

#[test]
fn decisions_are_in_the_signed_log_before_they_are_returned_and_it_verifies() {
    let dir = scratch("audit-verify");
    let (log, keys) = (dir.join("audit"), dir.join("keys"));
    let runtime = new_runtime();
    assert_eq!(install(runtime, SPEC, 0).0, PalisadeStatus::Ok);
    assert_eq!(
        set_audit_log(runtime, &log, &keys, 0),
        (PalisadeStatus::Ok, String::new())
    );

    let mut ids = Vec::new();
    for (originator, operation, effect) in [
        ("CAE1", "retrieve", "permit"),
        ("CAE1", "delete", "deny"),
        ("CAE9", "retrieve", "deny"),
    ] {
        let decision = decide(runtime, &format!(r#"{{"app": "lights", "originator": "{originator}", "operation": "{operation}", "target": "/cse-in/lights/l1", "request_time": 1718000000}}"#)).unwrap();
        let id = read(decision, palisade_decision_id).expect("a recorded decision has an id");
        assert_eq!(id.len(), 32, "{id}");
        let json: serde_json::Value =
            serde_json::from_str(&read(decision, palisade_decision_json).unwrap()).unwrap();
        assert_eq!(json["decision_id"], id.as_str());
        assert_eq!(json["effect"], effect);
        // On record before it was returned: the entry is in the file already.
        let entries = decision_entries(&log);
        let entry = entries.last().unwrap();
        assert_eq!(entry["decision_id"], id.as_str(), "{entry}");
        assert_eq!(entry["effect"], effect);
        assert_eq!(entry["originator"], originator);
        assert_eq!(entry["operation"], operation);
        assert_eq!(entry["target"], "/cse-in/lights/l1");
        assert_eq!(entry["app"], "lights");
        assert_eq!(entry["request_time"], 1_718_000_000);
        assert_eq!(entry["enforced"], true);
        assert_eq!(entry["module"]["name"], "acp");
        ids.push(id);
        assert_eq!(
            unsafe { palisade_decision_free(decision) },
            PalisadeStatus::Ok
        );
    }
    // An unknown application is decided (denied) and recorded too.
    let unknown = decide(
        runtime,
        r#"{"app": "nobody", "originator": "CAE1", "operation": "retrieve", "target": "/x"}"#,
    )
    .unwrap();
    let id = read(unknown, palisade_decision_id).unwrap();
    assert_eq!(
        decision_entries(&log).last().unwrap()["decision_id"],
        id.as_str()
    );
    assert_eq!(
        unsafe { palisade_decision_free(unknown) },
        PalisadeStatus::Ok
    );
    ids.push(id);
    let unique: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "ids are never reused: {ids:?}");

    // The log is set once: a second call is refused and the first log stays.
    let (status, text) = set_audit_log(runtime, &dir.join("other"), &keys, 0);
    assert_eq!(status, PalisadeStatus::AuditInstalled, "{text}");
    assert!(text.contains("cannot be replaced"), "{text}");
    assert!(!dir.join("other").exists(), "a refused call opens nothing");

    // Freeing the runtime closes the log with a signed checkpoint: it verifies whole.
    assert_eq!(
        unsafe { palisade_runtime_free(runtime) },
        PalisadeStatus::Ok
    );
    assert_eq!(decision_entries(&log).len(), 4);
    if let Some(bin) = palisade_bin() {
        let (ok, report) = verify(&bin, &log);
        assert!(ok, "the log the C API wrote verifies: {report}");
        // An edited record is found.
        let text = std::fs::read_to_string(log.join("audit.log")).unwrap();
        std::fs::write(
            log.join("audit.log"),
            text.replacen("\"effect\":\"deny\"", "\"effect\":\"permit\"", 1),
        )
        .unwrap();
        let (ok, report) = verify(&bin, &log);
        assert!(!ok, "an edited log fails: {report}");
    }
}

#[test]
fn the_log_resumes_and_one_writer_holds_it() {
    let dir = scratch("audit-resume");
    let (log, keys) = (dir.join("audit"), dir.join("keys"));
    let first = new_runtime();
    assert_eq!(set_audit_log(first, &log, &keys, 0).0, PalisadeStatus::Ok);
    // A second runtime on the same log would fork its chain: refused.
    let second = new_runtime();
    let (status, text) = set_audit_log(second, &log, &keys, 0);
    assert_eq!(status, PalisadeStatus::AuditLogFailed, "{text}");
    assert!(text.contains("cannot open the audit log"), "{text}");
    let denied = decide(
        first,
        r#"{"app": "none", "originator": "CAE1", "operation": "retrieve", "target": "/x"}"#,
    )
    .unwrap();
    assert_eq!(
        unsafe { palisade_decision_free(denied) },
        PalisadeStatus::Ok
    );
    assert_eq!(unsafe { palisade_runtime_free(first) }, PalisadeStatus::Ok);
    // Once the first is gone, the second resumes the same chain with the same key.
    assert_eq!(set_audit_log(second, &log, &keys, 0).0, PalisadeStatus::Ok);
    let again = decide(
        second,
        r#"{"app": "none", "originator": "CAE2", "operation": "retrieve", "target": "/x"}"#,
    )
    .unwrap();
    assert_eq!(unsafe { palisade_decision_free(again) }, PalisadeStatus::Ok);
    assert_eq!(unsafe { palisade_runtime_free(second) }, PalisadeStatus::Ok);
    let originators: Vec<_> = decision_entries(&log)
        .iter()
        .map(|entry| entry["originator"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(originators, ["CAE1", "CAE2"]);
    if let Some(bin) = palisade_bin() {
        let (ok, report) = verify(&bin, &log);
        assert!(ok, "the resumed log verifies: {report}");
    }
}

#[test]
fn bad_audit_arguments_are_refused() {
    let dir = scratch("audit-arguments");
    let runtime = new_runtime();
    let (status, text) = set_audit_log(runtime, &dir.join("a"), &dir.join("k"), 2);
    assert_eq!(status, PalisadeStatus::InvalidArgument, "{text}");
    assert!(text.contains("on_failure 2"), "{text}");
    let mut error = null_mut();
    let status =
        unsafe { palisade_runtime_set_audit_log(runtime, null(), c("k").as_ptr(), 0, &mut error) };
    assert_eq!(status, PalisadeStatus::NullPointer);
    assert!(message(error).contains("log_dir is NULL"));
    // A keystore path that is a file cannot hold the key.
    std::fs::write(dir.join("file"), "").unwrap();
    let (status, text) = set_audit_log(runtime, &dir.join("a"), &dir.join("file"), 0);
    assert_eq!(status, PalisadeStatus::AuditLogFailed, "{text}");
    assert!(text.contains("audit keystore"), "{text}");
    // Nothing was installed by the refusals: the runtime takes a log afterwards.
    assert_eq!(
        set_audit_log(runtime, &dir.join("a"), &dir.join("k"), 0).0,
        PalisadeStatus::Ok
    );
    assert_eq!(
        unsafe { palisade_runtime_free(runtime) },
        PalisadeStatus::Ok
    );
}

/// A log that stops taking records (here closed under the runtime) turns a permit into a
/// deny naming the failure; with `AnswerUnrecorded` the permit stands, counted.
#[test]
fn a_log_that_cannot_record_denies_unless_the_embedder_chose_otherwise() {
    let request = AccessRequest::new("lights", "CAE1", Operation::Retrieve, "/cse-in/lights/l1");
    for on_failure in [OnAuditFailure::Deny, OnAuditFailure::AnswerUnrecorded] {
        let dir = scratch(&format!("audit-closed-{on_failure:?}"));
        let embedded = EmbeddedRuntime::new(Default::default()).unwrap();
        embedded
            .install(
                SPEC,
                palisade_core::SpecFormat::Toml,
                std::path::Path::new("."),
            )
            .unwrap();
        let sink = Arc::new(AuditLogSink::open(&dir.join("audit"), &dir.join("keys")).unwrap());
        let runtime = embedded.runtime();
        runtime.set_audit_sink(sink.clone(), on_failure).unwrap();
        assert_eq!(runtime.is_authorized(&request).effect, Effect::Permit);
        sink.log().close().unwrap();
        let decision = runtime.is_authorized(&request);
        match on_failure {
            OnAuditFailure::Deny => {
                assert_eq!(decision.effect, Effect::Deny);
                assert!(
                    decision.reason.contains("could not be recorded")
                        && decision.reason.contains("closed"),
                    "{}",
                    decision.reason
                );
                assert!(decision.decided_by.is_none());
                assert_eq!(runtime.unrecorded_decisions(), 0);
            }
            _ => {
                assert_eq!(decision.effect, Effect::Permit, "{}", decision.reason);
                assert_eq!(runtime.unrecorded_decisions(), 1);
            }
        }
        assert_eq!(decision_entries(&dir.join("audit")).len(), 1);
    }
}
