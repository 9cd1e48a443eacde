//! Cross-application isolation (SER-024): a plugin of application A cannot read application
//! B's key-value entries, configuration, groups or keys by any name it can forge, and
//! capabilities are denied unless granted.

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use palisade_core::{AppSpec, Capability, Effect, Isolation, Operation, PluginSetup, StaticKeys};
use serde_json::json;
use support::{hostile_bytes, request, runtime};

fn probe_app(name: &str, secret: &str, grant_all: bool) -> AppSpec {
    let mut setup = PluginSetup::new(
        "probe",
        json!({"attack": "probe", "secret": secret}).to_string(),
    );
    if grant_all {
        setup = setup
            .grant(Capability::Kv)
            .grant(Capability::Crypto)
            .grant(Capability::Groups);
    }
    let mut keys = StaticKeys::new();
    keys.insert_hmac_secret(format!("{name}-mac"), secret.as_bytes().to_vec());
    let mut spec = AppSpec::new(name).plugin(setup, hostile_bytes());
    spec.keys = Arc::new(keys);
    spec.kv = vec![(format!("{name}-entry"), secret.as_bytes().to_vec())];
    spec.groups = HashMap::from([(format!("{name}-group"), HashSet::from(["CAE1".to_string()]))]);
    spec.isolation = Isolation::Warm;
    spec
}

fn probe(runtime: &palisade_core::Runtime, app: &str, attributes: &[(&str, &str)]) -> String {
    let mut request = request(app, "CAE1", Operation::Retrieve, "/x");
    request.attributes = attributes
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let decision = runtime.is_authorized(&request);
    assert_eq!(decision.effect, Effect::Deny);
    decision.reason
}

#[test]
fn an_app_sees_its_own_state_and_nothing_of_another_apps() {
    let runtime = runtime();
    runtime
        .install(probe_app("alpha", "alpha-secret", true))
        .unwrap();
    runtime
        .install(probe_app("bravo", "bravo-secret", true))
        .unwrap();

    // Its own state is there...
    let own = probe(
        &runtime,
        "alpha",
        &[
            ("kv", "alpha-entry"),
            ("key", "alpha-mac"),
            ("group", "alpha-group"),
            ("member", "CAE1"),
        ],
    );
    assert!(
        own.contains("kv[alpha-entry]=Some(\"alpha-secret\")"),
        "{own}"
    );
    assert!(own.contains("hmac[alpha-mac]=Ok(32)"), "{own}");
    assert!(own.contains("group[alpha-group/CAE1]=true"), "{own}");
    assert!(own.contains("alpha-secret"), "its own config: {own}");

    // ...and bravo's, named exactly or with any prefix a plugin might try, is not.
    for (kv, key, group) in [
        ("bravo-entry", "bravo-mac", "bravo-group"),
        ("bravo/bravo-entry", "bravo/bravo-mac", "bravo/bravo-group"),
        (
            "../bravo/bravo-entry",
            "app:bravo:bravo-mac",
            "bravo:bravo-group",
        ),
    ] {
        let seen = probe(
            &runtime,
            "alpha",
            &[
                ("kv", kv),
                ("key", key),
                ("group", group),
                ("member", "CAE1"),
            ],
        );
        assert!(seen.contains(&format!("kv[{kv}]=None")), "{seen}");
        assert!(
            seen.contains(&format!("hmac[{key}]=Err(CryptoError::UnknownKey)")),
            "{seen}"
        );
        assert!(
            seen.contains(&format!("verify[{key}]=Err(CryptoError::UnknownKey)")),
            "{seen}"
        );
        assert!(
            seen.contains(&format!("group[{group}/CAE1]=false")),
            "{seen}"
        );
        assert!(
            !seen.contains("bravo-secret"),
            "bravo's secret leaked into alpha: {seen}"
        );
    }
}

#[test]
fn capabilities_are_denied_unless_granted() {
    let runtime = runtime();
    runtime
        .install(probe_app("plain", "plain-secret", false))
        .unwrap();
    for (attribute, capability) in [("kv", "kv"), ("key", "crypto")] {
        let decision = {
            let mut request = request("plain", "CAE1", Operation::Retrieve, "/x");
            request.attributes = vec![(attribute.to_string(), "anything".to_string())];
            runtime.is_authorized(&request)
        };
        assert_eq!(decision.effect, Effect::Deny);
        assert!(
            decision.reason.contains(&format!(
                "used the `{capability}` capability without a grant"
            )),
            "{}",
            decision.reason
        );
    }
    // Config is always the plugin's own, granted or not.
    let seen = probe(&runtime, "plain", &[]);
    assert!(seen.contains("plain-secret"), "{seen}");
}

#[test]
fn location_reaches_only_plugins_granted_it() {
    // The acp plugin's aclr context needs the location; without the grant it never holds.
    let runtime = runtime();
    let policy = json!({"policies": [{"id": "p", "pv": {"acr": [{"acor": ["all"], "acop": 63,
        "acco": [{"aclr": {"accc": ["FR"]}}]}]}}]});
    for (app, grant) in [("blind", false), ("sighted", true)] {
        let mut setup = PluginSetup::new("acp", policy.to_string());
        if grant {
            setup = setup.grant(Capability::Location);
        }
        runtime
            .install(AppSpec::new(app).plugin(setup, palisade_artifacts::ACP))
            .unwrap();
    }
    let located = |app: &str| {
        let mut request = request(app, "CAE1", Operation::Retrieve, "/x");
        request.location = Some(palisade_core::Location {
            latitude: 48.85,
            longitude: 2.35,
            country: Some("FR".into()),
        });
        runtime.is_authorized(&request)
    };
    assert_eq!(
        located("sighted").effect,
        Effect::Permit,
        "{}",
        located("sighted").reason
    );
    assert_eq!(located("blind").effect, Effect::Deny);
}

/// Memory scavenging across instance slots: an instance of one application fills memory with
/// a marker, then instances of another application are made in the very same pool slot (the
/// pool has one) and look for it in memory they grow and everywhere else: they must see
/// zeros and no marker, fresh per request and warm alike.
#[test]
fn memory_another_apps_instance_wrote_reads_as_zeros() {
    use palisade_core::{Engine, EngineConfig, Runtime};

    let engine = Engine::new(EngineConfig {
        pool_instances: 1,
        ..EngineConfig::default()
    })
    .expect("engine");
    let runtime = Runtime::new(engine).expect("runtime");
    // The marker's words are `KEY.rotate_right(13)`; the reader keeps only KEY.
    const KEY: u64 = 0x5ca7_7e2d_0bad_f00d;
    let app = |name: &str, attack: &str, isolation: Isolation| {
        let mut spec = AppSpec::new(name).plugin(
            PluginSetup::new(
                "scavenger",
                json!({"attack": attack, "pages": 64, "key": KEY}).to_string(),
            ),
            hostile_bytes(),
        );
        spec.isolation = isolation;
        spec.limits.deadline = std::time::Duration::from_millis(2_000);
        // Warm instances are not kept, so each call gives its slot back.
        spec.limits.warm_instances = 0;
        spec
    };
    runtime
        .install(app("writer", "scavenge-write", Isolation::FreshPerRequest))
        .unwrap();
    runtime
        .install(app(
            "reader-fresh",
            "scavenge-read",
            Isolation::FreshPerRequest,
        ))
        .unwrap();
    runtime
        .install(app("reader-warm", "scavenge-read", Isolation::Warm))
        .unwrap();
    let reason = |app: &str| {
        let decision = runtime.is_authorized(&request(app, "CAE1", Operation::Retrieve, "/x"));
        assert_eq!(decision.effect, Effect::Deny, "{app}: {}", decision.reason);
        decision.reason
    };
    for reader in ["reader-fresh", "reader-warm", "reader-fresh"] {
        let written = reason("writer");
        assert!(
            written.contains("scavenge-write: wrote 64 pages"),
            "{written}"
        );
        let read = reason(reader);
        assert!(
            read.contains("scavenge-read: grew 64 pages, nonzero bytes 0, marker words 0"),
            "{reader} found what the writer left: {read}"
        );
    }
}
