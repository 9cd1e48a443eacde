//! The plugin contract across versions: a gateway of contract 0.2 keeps running modules built
//! against 0.1.x (operators have signed 0.1 modules deployed), beside 0.2 modules, in every
//! world and isolation mode. The 0.1 module is `plugins/legacy-contract`, built by host/build.rs
//! from source against the frozen 0.1.0 text (`wit/v0.1.0/palisade.wit`) with plain
//! wit-bindgen, as 0.1 plugins were built.

mod support;

use std::collections::{HashMap, HashSet};

use palisade::{
    AppSpec, Capability, Credential, Effect, FilteredResponse, Isolation, Operation, PluginKind,
    PluginSetup, ResponseBody,
};
use serde_json::json;
use support::{request, runtime};

fn legacy_bytes() -> Vec<u8> {
    std::fs::read(palisade::plugins::LEGACY_CONTRACT_PATH)
        .expect("the 0.1 fixture is built by host/build.rs")
}

fn legacy(name: &str, kind: PluginKind, config: serde_json::Value) -> (PluginSetup, Vec<u8>) {
    let mut setup = PluginSetup::new(name, config.to_string());
    setup.kind = Some(kind);
    (setup, legacy_bytes())
}

/// A create whose target's type is known: a 0.2 plugin sees it, a 0.1 plugin cannot.
fn create_with_target_type(app: &str) -> palisade::AccessRequest {
    let mut request = request(app, "CAE1", Operation::Create, "/cse-in/app1");
    request.resource_type = Some(3);
    request.target_resource_type = Some(2);
    request.target_specialization = Some("org.example.light".into());
    request.roles = vec!["operator".into()];
    request.attributes = vec![("rcn".into(), "1".into())];
    request
}

#[test]
fn a_module_built_against_0_1_decides_beside_a_0_2_module_in_both_isolation_modes() {
    for isolation in [Isolation::Warm, Isolation::FreshPerRequest] {
        let runtime = runtime();
        let (setup, bytes) = legacy("legacy", PluginKind::Authorizer, json!({}));
        let mut spec = AppSpec::new("old").plugin(setup, bytes);
        spec.isolation = isolation;
        runtime.install(spec).unwrap();
        // The current acp plugin, built against 0.2.0, in the same runtime.
        let policy = json!({"policies": [{"pv": {"acr": [
            {"acor": ["CAE1"], "acop": 1}
        ]}}]});
        let mut spec = AppSpec::new("new").plugin(
            PluginSetup::new("acp", policy.to_string()),
            palisade::plugins::ACP.to_vec(),
        );
        spec.isolation = isolation;
        runtime.install(spec).unwrap();

        // The 0.1 module got a well-formed 0.1 request: every field it knows, as sent.
        let decision = runtime.is_authorized(&create_with_target_type("old"));
        assert_eq!(decision.effect, Effect::Deny, "{decision:?}");
        assert_eq!(
            decision.reason,
            format!(
                "0.1 request: originator=CAE1 operation=create target=/cse-in/app1 \
                 resource-type=Some(3) authenticated=false roles=[\"operator\"] source-ip=None \
                 time={} attributes=[(\"rcn\", \"1\")]",
                support::TEST_TIME
            ),
            "{isolation:?}"
        );
        let decision = runtime.is_authorized(&create_with_target_type("new"));
        assert_eq!(decision.effect, Effect::Permit, "{decision:?}");

        // Each module's contract is reported.
        let status = serde_json::to_value(runtime.status()).unwrap();
        let contracts: HashMap<String, String> = status
            .as_array()
            .unwrap()
            .iter()
            .map(|app| {
                (
                    app["app"].as_str().unwrap().to_string(),
                    app["plugins"][0]["contract"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(contracts["old"], "palisade:plugin@0.1.0");
        assert_eq!(contracts["new"], "palisade:plugin@0.2.0");
    }
}

#[test]
fn a_0_1_module_reaches_the_imports_under_their_0_1_names_with_the_same_grants() {
    let runtime = runtime();
    let (setup, bytes) = legacy("legacy", PluginKind::Authorizer, json!({}));
    let mut spec = AppSpec::new("granted").plugin(setup.grant(Capability::Groups), bytes.clone());
    spec.groups = HashMap::from([("lamps".to_string(), HashSet::from(["CAE1".to_string()]))]);
    runtime.install(spec).unwrap();
    let (setup, _) = legacy("legacy", PluginKind::Authorizer, json!({}));
    runtime
        .install(AppSpec::new("ungranted").plugin(setup, bytes))
        .unwrap();

    let mut asking = request("granted", "CAE1", Operation::Retrieve, "/x");
    asking.attributes = vec![("group".into(), "lamps".into())];
    assert_eq!(runtime.is_authorized(&asking).effect, Effect::Permit);
    asking.originator = "CAE2".into();
    let decision = runtime.is_authorized(&asking);
    assert_eq!(decision.reason, "CAE2 is not a member of lamps");

    // Without the capability the 0.1 import is denied exactly like the 0.2 one: a trap.
    asking.app = "ungranted".into();
    asking.originator = "CAE1".into();
    let decision = runtime.is_authorized(&asking);
    assert_eq!(decision.effect, Effect::Deny);
    assert!(decision.reason.contains("groups"), "{}", decision.reason);
}

#[test]
fn a_0_1_authenticator_and_filter_work_and_their_answers_pass_the_same_checks() {
    let runtime = runtime();
    let (authenticator, bytes) = legacy("legacy-auth", PluginKind::Authenticator, json!({}));
    let (authorizer, _) = legacy(
        "legacy-authz",
        PluginKind::Authorizer,
        json!({"answer": "permit"}),
    );
    let (filter, _) = legacy("legacy-filter", PluginKind::Filter, json!({}));
    let spec = AppSpec::new("all-kinds")
        .plugin(authenticator, bytes.clone())
        .plugin(authorizer, bytes.clone())
        .plugin(filter, bytes);
    runtime.install(spec).unwrap();

    let mut asking = request("all-kinds", "CAE1", Operation::Retrieve, "/x");
    asking.credential = Some(Credential {
        scheme: "legacy".into(),
        value: "device-7".into(),
    });
    let decision = runtime.is_authorized(&asking);
    assert_eq!(decision.effect, Effect::Permit, "{decision:?}");
    let identity = decision.identity.expect("authenticated");
    assert_eq!(identity.subject, "device-7");
    assert_eq!(identity.roles, vec!["legacy-0.1".to_string()]);

    // The identity check of `convert.rs` applies to 0.1 answers too.
    asking.credential = Some(Credential {
        scheme: "legacy".into(),
        value: "dev\nice".into(),
    });
    let decision = runtime.is_authorized(&asking);
    assert_eq!(decision.effect, Effect::Deny, "{decision:?}");
    assert!(
        decision.reason.contains("control character"),
        "{}",
        decision.reason
    );

    let response = ResponseBody {
        status: 2000,
        content_type: "application/json".into(),
        body: b"{}".to_vec(),
    };
    match runtime.filter_response(&asking, response) {
        FilteredResponse::Deliver { body, .. } => assert_eq!(body, b"legacy-0.1:{}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_0_1_prepare_refusal_fails_the_load_with_its_reason() {
    for isolation in [Isolation::Warm, Isolation::FreshPerRequest] {
        let runtime = runtime();
        let (setup, bytes) = legacy("legacy", PluginKind::Authorizer, json!({"refuse": true}));
        let mut spec = AppSpec::new("refused").plugin(setup, bytes);
        spec.isolation = isolation;
        let error = runtime.install(spec).unwrap_err().to_string();
        assert!(
            error.contains("legacy-0.1 refuses this configuration"),
            "{isolation:?}: {error}"
        );
    }
}
