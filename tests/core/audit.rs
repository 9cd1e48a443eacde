//! The audit sink (SER-016) through the real runtime and real plugins: every decision an
//! embedder gets, through `is_authorized` or the privacy split's `evaluate` (its
//! authentication sandbox included), was handed to the sink first, once, as the plugins saw
//! the request; a sink that cannot record turns it into a deny naming the failure, unless the
//! embedder chose otherwise.

use std::sync::{Arc, Mutex};

use palisade_core::{
    AccessRequest, AppSpec, AuditFailure, AuditSink, Credential, DecisionRecord, Effect, Mode,
    OnAuditFailure, Operation, PluginKind, PluginSetup, PrivacySplit, PseudonymError, Pseudonyms,
    Runtime, AUTHN_SUFFIX, FIELD_LIMIT, UNAVAILABLE_PSEUDONYM,
};
use palisade_test_support as support;
use serde_json::json;
use sha2::{Digest, Sha256};
use support::{request, runtime, TEST_TIME};

/// Keeps every record it is given.
#[derive(Default)]
struct Recording(Mutex<Vec<DecisionRecord>>);

impl AuditSink for Recording {
    fn record(&self, record: &DecisionRecord) -> Result<(), AuditFailure> {
        self.0.lock().unwrap().push(record.clone());
        Ok(())
    }
}

impl Recording {
    fn take(&self) -> Vec<DecisionRecord> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// Storage that has failed.
struct Refusing;

impl AuditSink for Refusing {
    fn record(&self, _: &DecisionRecord) -> Result<(), AuditFailure> {
        Err(AuditFailure::new(std::io::Error::other(
            "no space left on the audit disk",
        )))
    }
}

/// Pseudonyms by a keyed hash, as an embedder makes them.
struct Keyed;

impl Pseudonyms for Keyed {
    fn pseudonym(&self, originator: &str) -> Result<String, PseudonymError> {
        let hash = Sha256::digest(format!("lights-secret/{originator}"));
        Ok(format!("anon-{}", hex::encode(&hash[..8])))
    }
}

/// A secret that is gone.
struct Unavailable;

impl Pseudonyms for Unavailable {
    fn pseudonym(&self, _: &str) -> Result<String, PseudonymError> {
        Err(PseudonymError::new("the token is not present"))
    }
}

/// An ACP application permitting `allowed` to retrieve, in `mode`.
fn acp_app(name: &str, allowed: &str, mode: Mode) -> AppSpec {
    let policy =
        json!({"policies": [{"id": "p", "pv": {"acr": [{"acor": [allowed], "acop": 2}]}}]});
    let mut spec = AppSpec::new(name).plugin(
        PluginSetup::new("acp", policy.to_string()),
        palisade_artifacts::ACP,
    );
    spec.mode = mode;
    spec
}

/// The hidden authentication application of `app`: the hostile fixture as an authenticator
/// running `attack` (`well-behaved` accepts the credential as the subject, `long-reason`
/// rejects it).
fn authn_app(app: &str, attack: serde_json::Value) -> AppSpec {
    let mut setup = PluginSetup::new("token", attack.to_string());
    setup.kind = Some(PluginKind::Authenticator);
    let mut spec =
        AppSpec::new(format!("{app}{AUTHN_SUFFIX}")).plugin(setup, support::hostile_bytes());
    spec.limits = support::tight_limits();
    spec
}

fn with_sink(sink: Arc<dyn AuditSink>, on_failure: OnAuditFailure) -> Runtime {
    let runtime = runtime();
    runtime
        .install(acp_app("lights", "CAE1", Mode::Enforce))
        .unwrap();
    runtime
        .install(acp_app("watched", "CAE1", Mode::Monitor))
        .unwrap();
    runtime.set_audit_sink(sink, on_failure).unwrap();
    runtime
}

fn retrieve(app: &str, originator: &str) -> AccessRequest {
    request(app, originator, Operation::Retrieve, "/cse-in/lights/lamp1")
}

fn with_credential(mut request: AccessRequest) -> AccessRequest {
    request.credential = Some(Credential {
        scheme: "bearer".into(),
        value: "device-7".into(),
    });
    request
}

fn assert_denied_for_audit(decision: &palisade_core::Decision) {
    assert_eq!(decision.effect, Effect::Deny, "{}", decision.reason);
    assert!(decision.enforced);
    assert!(
        decision.reason.contains("could not be recorded")
            && decision.reason.contains("no space left on the audit disk"),
        "the reason names the audit failure: {}",
        decision.reason
    );
}

#[test]
fn a_sink_that_cannot_record_turns_every_decision_into_a_deny_naming_the_failure() {
    let runtime = with_sink(Arc::new(Refusing), OnAuditFailure::Deny);
    // A permit, a monitor-mode permit, an unknown application, the privacy split with and
    // without consent, a pseudonym that cannot be computed: all denied for the audit.
    let permitted = runtime.is_authorized(&retrieve("lights", "CAE1"));
    assert_denied_for_audit(&permitted);
    assert!(
        permitted
            .reason
            .ends_with("it was permit: permitted by acp"),
        "{}",
        permitted.reason
    );
    assert!(permitted.decided_by.is_none(), "no plugin made this deny");
    let monitored = runtime.is_authorized(&retrieve("watched", "CAE9"));
    assert_denied_for_audit(&monitored);
    assert!(monitored.would_deny.is_none());
    assert_denied_for_audit(&runtime.is_authorized(&retrieve("nobody", "CAE1")));
    assert_denied_for_audit(&runtime.evaluate(retrieve("lights", "CAE1"), None).decision);
    let split = PrivacySplit::new(&Keyed);
    let allowed = Keyed.pseudonym("CAE1").unwrap();
    runtime
        .install(acp_app("private", &allowed, Mode::Enforce))
        .unwrap();
    assert_denied_for_audit(
        &runtime
            .evaluate(retrieve("private", "CAE1"), Some(split))
            .decision,
    );
    let gone = PrivacySplit::new(&Unavailable);
    assert_denied_for_audit(
        &runtime
            .evaluate(retrieve("private", "CAE1"), Some(gone))
            .decision,
    );
}

#[test]
fn an_embedder_may_choose_to_answer_unrecorded_and_it_is_counted() {
    let runtime = with_sink(Arc::new(Refusing), OnAuditFailure::AnswerUnrecorded);
    let decision = runtime.is_authorized(&retrieve("lights", "CAE1"));
    assert_eq!(decision.effect, Effect::Permit, "{}", decision.reason);
    assert_eq!(decision.reason, "permitted by acp");
    assert_eq!(runtime.unrecorded_decisions(), 1);
    let denied = runtime.is_authorized(&retrieve("lights", "CAE9"));
    assert_eq!(denied.effect, Effect::Deny);
    assert_eq!(runtime.unrecorded_decisions(), 2);
}

#[test]
fn without_a_sink_nothing_changes() {
    let runtime = runtime();
    runtime
        .install(acp_app("lights", "CAE1", Mode::Enforce))
        .unwrap();
    let decision = runtime.is_authorized(&retrieve("lights", "CAE1"));
    assert_eq!(decision.effect, Effect::Permit);
    assert_eq!(decision.decision_id, None);
    assert!(!runtime.has_audit_sink());
    assert_eq!(runtime.unrecorded_decisions(), 0);
    let json = serde_json::to_value(&decision).unwrap();
    assert!(json.get("decision_id").is_none(), "{json}");
}

#[test]
fn a_sink_is_installed_once() {
    let first = Arc::new(Recording::default());
    let runtime = with_sink(first.clone(), OnAuditFailure::Deny);
    let refused = runtime.set_audit_sink(Arc::new(Refusing), OnAuditFailure::AnswerUnrecorded);
    assert!(refused.is_err());
    // The first sink and its policy stay.
    assert_eq!(
        runtime.is_authorized(&retrieve("lights", "CAE1")).effect,
        Effect::Permit
    );
    assert_eq!(first.take().len(), 1);
}

#[test]
fn the_sink_gets_each_decision_with_its_fields_before_it_is_returned() {
    let sink = Arc::new(Recording::default());
    let runtime = with_sink(sink.clone(), OnAuditFailure::Deny);

    let permit = runtime.is_authorized(&retrieve("lights", "CAE1"));
    let deny = runtime.is_authorized(&request(
        "lights",
        "CAE1",
        Operation::Delete,
        "/cse-in/lights/lamp1",
    ));
    let monitored = runtime.is_authorized(&retrieve("watched", "CAE9"));
    let unknown = runtime.is_authorized(&retrieve("nobody", "CAE1"));
    let records = sink.take();
    assert_eq!(records.len(), 4, "one record per decision: {records:#?}");

    let record = &records[0];
    assert_eq!(Some(&record.decision_id), permit.decision_id.as_ref());
    assert_eq!(record.decision_id.len(), 32);
    assert_eq!(record.app, "lights");
    assert_eq!(record.originator, "CAE1");
    assert_eq!(record.operation, "retrieve");
    assert_eq!(record.target, "/cse-in/lights/lamp1");
    assert_eq!(record.effect, Effect::Permit);
    assert_eq!(record.reason, "permitted by acp");
    assert!(record.enforced);
    assert_eq!(record.would_deny, None);
    assert_eq!(record.module.as_ref().unwrap().name, "acp");
    assert_eq!(record.module.as_ref().unwrap().kind, PluginKind::Authorizer);
    assert_eq!(record.subject, None);
    assert_eq!(record.request_time, TEST_TIME);
    assert!(record.extension.is_empty());
    assert_eq!(record.truncated, None);

    assert_eq!(records[1].effect, Effect::Deny);
    assert_eq!(records[1].operation, "delete");
    assert_eq!(records[1].reason, deny.reason);
    assert_eq!(Some(&records[1].decision_id), deny.decision_id.as_ref());

    // Monitor mode: permitted, not enforced, with the deny it would have been.
    assert_eq!(records[2].effect, Effect::Permit);
    assert!(!records[2].enforced);
    assert_eq!(records[2].would_deny, monitored.would_deny);
    assert!(records[2].would_deny.is_some());

    assert_eq!(records[3].app, "nobody");
    assert_eq!(records[3].effect, Effect::Deny);
    assert_eq!(records[3].module, None);
    assert_eq!(Some(&records[3].decision_id), unknown.decision_id.as_ref());

    let ids: std::collections::HashSet<_> = records.iter().map(|r| &r.decision_id).collect();
    assert_eq!(ids.len(), 4, "ids are unique");

    // A client-controlled field is bounded, with the hash of what it was.
    let long = "/cse-in/".to_string() + &"x".repeat(5_000);
    runtime.is_authorized(&request("lights", "CAE1", Operation::Retrieve, &long));
    let record = sink.take().remove(0);
    assert_eq!(record.target.len(), FIELD_LIMIT);
    assert_eq!(
        record.truncated.unwrap()["target"],
        hex::encode(Sha256::digest(long.as_bytes()))
    );
}

#[test]
fn the_privacy_split_records_once_what_the_authorizers_saw() {
    let sink = Arc::new(Recording::default());
    let runtime = with_sink(sink.clone(), OnAuditFailure::Deny);
    let pseudonym = Keyed.pseudonym("CAE1").unwrap();
    runtime
        .install(acp_app("private", &pseudonym, Mode::Enforce))
        .unwrap();
    runtime
        .install(authn_app("private", json!({"attack": "well-behaved"})))
        .unwrap();
    runtime
        .install(acp_app("strict", &pseudonym, Mode::Enforce))
        .unwrap();
    runtime
        .install(authn_app(
            "strict",
            json!({"attack": "long-reason", "size": 40}),
        ))
        .unwrap();

    // Authenticated through the authentication sandbox, then permitted: one record, with
    // the pseudonyms of the originator and of the subject, never the real IDs.
    let split = PrivacySplit::new(&Keyed).authenticators("private.authn");
    let answer = runtime.evaluate(with_credential(retrieve("private", "CAE1")), Some(split));
    assert_eq!(
        answer.decision.effect,
        Effect::Permit,
        "{}",
        answer.decision.reason
    );
    let records = sink.take();
    assert_eq!(
        records.len(),
        1,
        "the inner steps are not recorded apart: {records:#?}"
    );
    let record = &records[0];
    assert_eq!(record.app, "private");
    assert_eq!(record.originator, pseudonym);
    assert_eq!(record.subject, Some(Keyed.pseudonym("device-7").unwrap()));
    assert_eq!(record.subject, answer.subject);
    assert_eq!(
        Some(&record.decision_id),
        answer.decision.decision_id.as_ref()
    );
    let text = serde_json::to_string(record).unwrap();
    assert!(
        !text.contains("CAE1") && !text.contains("device-7"),
        "{text}"
    );

    // The authentication sandbox rejects: its answer is the decision, recorded once under
    // the application's name and the pseudonym.
    let split = PrivacySplit::new(&Keyed).authenticators("strict.authn");
    let answer = runtime.evaluate(with_credential(retrieve("strict", "CAE1")), Some(split));
    assert_eq!(answer.decision.effect, Effect::Deny);
    let records = sink.take();
    assert_eq!(records.len(), 1, "{records:#?}");
    assert_eq!(records[0].app, "strict");
    assert_eq!(records[0].originator, pseudonym);
    assert_eq!(records[0].effect, Effect::Deny);
    assert!(
        records[0]
            .reason
            .starts_with("credential rejected by token"),
        "{}",
        records[0].reason
    );
    assert_eq!(
        records[0].module.as_ref().unwrap().kind,
        PluginKind::Authenticator
    );

    // A pseudonym that cannot be computed: a deny, recorded without the real ID.
    let answer = runtime.evaluate(
        retrieve("private", "CAE1"),
        Some(PrivacySplit::new(&Unavailable)),
    );
    assert_eq!(answer.decision.effect, Effect::Deny);
    let records = sink.take();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].originator, UNAVAILABLE_PSEUDONYM);
    assert!(
        records[0].reason.contains("pseudonym"),
        "{}",
        records[0].reason
    );

    // Consent (no split): the real originator, recorded once.
    let answer = runtime.evaluate(retrieve("lights", "CAE1"), None);
    assert_eq!(answer.decision.effect, Effect::Permit);
    let records = sink.take();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].originator, "CAE1");
}
