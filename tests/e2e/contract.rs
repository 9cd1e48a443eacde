//! The plugin contract across versions: a gateway of contract 0.2 keeps running modules built
//! against 0.1.x (operators have signed 0.1 modules deployed), beside 0.2 modules, in every
//! world and isolation mode. The 0.1 module is `plugins/legacy-contract`, built by host/build.rs
//! from source against the frozen 0.1.0 text (`wit/v0.1.0/palisade.wit`) with plain
//! wit-bindgen, as 0.1 plugins were built.

use crate::support::server;
use palisade_test_support as support;

use std::collections::{HashMap, HashSet};

use palisade_core::{
    AppSpec, Capability, Credential, Effect, FilteredResponse, Isolation, Operation, PluginKind,
    PluginSetup, ResponseBody,
};
use serde_json::json;
use support::{request, runtime};

fn legacy_bytes() -> Vec<u8> {
    std::fs::read(palisade_artifacts::LEGACY_CONTRACT_PATH)
        .expect("the 0.1 fixture is built by host/build.rs")
}

fn legacy(name: &str, kind: PluginKind, config: serde_json::Value) -> (PluginSetup, Vec<u8>) {
    let mut setup = PluginSetup::new(name, config.to_string());
    setup.kind = Some(kind);
    (setup, legacy_bytes())
}

/// A create whose target's type is known: a 0.2 plugin sees it, a 0.1 plugin cannot.
fn create_with_target_type(app: &str) -> palisade_core::AccessRequest {
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
            {"acor": ["CAE1"], "acop": 1, "acod": [{"ty": 2, "chty": [3]}]}
        ]}}]});
        let mut spec = AppSpec::new("new").plugin(
            PluginSetup::new("acp", policy.to_string()),
            palisade_artifacts::ACP.to_vec(),
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
        // The 0.2 module decided on the target's type, which only 0.2 carries.
        let decision = runtime.is_authorized(&create_with_target_type("new"));
        assert_eq!(decision.effect, Effect::Permit, "{decision:?}");
        let mut unknown = create_with_target_type("new");
        unknown.target_resource_type = None;
        assert_eq!(runtime.is_authorized(&unknown).effect, Effect::Deny);

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
        let error = palisade_types::Chain(&runtime.install(spec).unwrap_err()).to_string();
        assert!(
            error.contains("legacy-0.1 refuses this configuration"),
            "{isolation:?}: {error}"
        );
    }
}

/// Through a real `palisade serve`: `/v1/decide` takes the target's type from its caller and
/// the acp plugin matches `acod` `ty`/`spty` against it for a create only; a 0.1 module runs in
/// the same gateway, and `/health` names each module's contract.
#[test]
fn decide_takes_the_target_type_from_its_caller_and_health_names_each_contract() {
    let config = format!(
        r#"
[rate_limit]
per_originator = {{ per_second = 10000, burst = 10000 }}

[[app]]
name = "home"
paths = ["/cse-in/home"]
consent_real_identities = true
[[app.plugin]]
plugin = "acp"
config = {{ policies = [ {{ id = "home", pv = {{ acr = [
  {{ acor = ["CAE1"], acop = 1, acod = [ {{ ty = 28, spty = "org.example.lamp", chty = [23] }} ] }},
  {{ acor = ["CAE1"], acop = 7, acod = [ {{ chty = [3] }} ] }}
] }} }} ] }}

[[app]]
name = "old"
paths = ["/cse-in/old"]
[[app.plugin]]
plugin = {:?}
config = {{ answer = "permit" }}
"#,
        palisade_artifacts::LEGACY_CONTRACT_PATH
    );
    let gateway = server::Gateway::start(&config, &[]);
    let decide = |body: serde_json::Value| {
        let response = gateway.decide(&body);
        assert_eq!(response.status, 200, "{}", response.text());
        response.json()
    };
    let subscribe = json!({"originator": "CAE1", "operation": "create",
        "target": "/cse-in/home/lamp1", "resource_type": 23,
        "target_resource_type": 28, "target_specialization": "org.example.lamp"});
    assert_eq!(decide(subscribe.clone())["decision"], "permit");
    let mut fan = subscribe.clone();
    fan["target_specialization"] = json!("org.example.fan");
    let answer = decide(fan);
    assert_eq!(answer["decision"], "deny");
    assert!(
        answer["reason"]
            .as_str()
            .unwrap()
            .contains("(type 28, specialization org.example.fan) (acod)"),
        "{answer}"
    );
    let mut unknown = subscribe;
    unknown
        .as_object_mut()
        .unwrap()
        .remove("target_resource_type");
    assert_eq!(decide(unknown)["decision"], "deny", "unknown target type");
    // The second rule's retrieve ignores its acod, whatever the caller says about types.
    let retrieve = json!({"originator": "CAE1", "operation": "retrieve",
        "target": "/cse-in/home/lamp1", "target_resource_type": 4});
    assert_eq!(decide(retrieve)["decision"], "permit");
    let old = json!({"originator": "CAE1", "operation": "create", "target": "/cse-in/old/x",
        "resource_type": 4, "target_resource_type": 3});
    assert_eq!(decide(old)["decision"], "permit");

    let health = gateway.request("GET", "/health", &[], b"").json();
    let text = health.to_string();
    assert!(
        text.contains(r#""contract":"palisade:plugin@0.2.0""#),
        "{text}"
    );
    assert!(
        text.contains(r#""contract":"palisade:plugin@0.1.0""#),
        "{text}"
    );
}

/// An authorizer component built against `palisade:plugin@{version}` (the current WIT text
/// with its version replaced), whose core module imports `log` so that the component imports
/// that version's interface. It permits; it is only ever loaded, never trusted to run.
fn component_of_contract(version: &str) -> Vec<u8> {
    use wasm_encoder::{
        CodeSection, EntityType, ExportKind, ExportSection, Function, FunctionSection,
        ImportSection, Instruction, MemorySection, MemoryType, Module, TypeSection, ValType,
    };
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../plugins/sdk/wit/palisade.wit"
    ))
    .unwrap()
    .replace(
        "palisade:plugin@0.2.0",
        &format!("palisade:plugin@{version}"),
    );
    let mut resolve = wit_parser::Resolve::default();
    let package = resolve.push_str("palisade.wit", &text).expect("the WIT");
    let world = resolve
        .select_world(&[package], Some("authorizer"))
        .expect("the authorizer world");

    let mut module = Module::new();
    let mut types = TypeSection::new();
    types.ty().function([ValType::I32; 3], []); // 0: log(level, ptr, len)
    types.ty().function([ValType::I32; 4], [ValType::I32]); // 1: cabi_realloc
    types.ty().function([ValType::I32], [ValType::I32]); // 2: authorize
    types.ty().function([ValType::I32], []); // 3: cabi_post_authorize
    module.section(&types);
    let mut imports = ImportSection::new();
    imports.import(
        &format!("palisade:plugin/log@{version}"),
        "log",
        EntityType::Function(0),
    );
    module.section(&imports);
    let mut functions = FunctionSection::new();
    for ty in 1..4 {
        functions.function(ty);
    }
    module.section(&functions);
    let mut memories = MemorySection::new();
    memories.memory(MemoryType {
        minimum: 1,
        maximum: None,
        memory64: false,
        shared: false,
        page_size_log2: None,
    });
    module.section(&memories);
    let mut exports = ExportSection::new();
    exports.export("memory", ExportKind::Memory, 0);
    exports.export("cabi_realloc", ExportKind::Func, 1);
    exports.export("authorize", ExportKind::Func, 2);
    exports.export("cabi_post_authorize", ExportKind::Func, 3);
    module.section(&exports);
    let mut code = CodeSection::new();
    for body in [
        &[Instruction::I32Const(64), Instruction::End][..],
        &[Instruction::I32Const(16), Instruction::End][..],
        &[Instruction::End][..],
    ] {
        let mut function = Function::new([]);
        for instruction in body {
            function.instruction(instruction);
        }
        code.function(&function);
    }
    module.section(&code);
    let mut core = module.finish();
    wit_component::embed_component_metadata(
        &mut core,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
    )
    .expect("embedding the world");
    wit_component::ComponentEncoder::default()
        .module(&core)
        .expect("a core module")
        .validate(true)
        .encode()
        .expect("a component")
}

#[test]
fn a_module_of_a_contract_this_host_does_not_load_is_refused_naming_its_version() {
    let runtime = runtime();
    // The same component at a version this host loads is accepted (and is a 0.2 plugin)...
    runtime
        .install(
            AppSpec::new("current")
                .plugin(PluginSetup::new("p", "{}"), component_of_contract("0.2.1")),
        )
        .unwrap();
    let status = serde_json::to_value(runtime.status()).unwrap();
    assert_eq!(status[0]["plugins"][0]["contract"], "palisade:plugin@0.2.1");
    // ...at an incompatible one, it is refused before anything is instantiated.
    for version in ["0.3.0", "1.0.0"] {
        let error = runtime
            .install(
                AppSpec::new("future")
                    .plugin(PluginSetup::new("p", "{}"), component_of_contract(version)),
            )
            .unwrap_err();
        let error = palisade_types::Chain(&error).to_string();
        assert!(
            error.contains(&format!(
                "the component was built against palisade:plugin@{version}; this host loads \
                 palisade:plugin 0.1.x and 0.2.x"
            )),
            "{error}"
        );
    }
}
