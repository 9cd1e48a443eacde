//! Apps that run one module share its type-checked pre-instantiation (issue #18: type-checking
//! acp against the linker for each of 100 apps was a quarter of a cached start). What is
//! shared is only the check's result: every app keeps its own configuration, instances and
//! answers, and every refusal a load made before is still made at load, for every app.

use std::sync::Arc;

use palisade_core::{
    AppSpec, Effect, InstallError, Isolation, LoadError, Operation, PluginKind, PluginSetup,
    Runtime, SharedModules,
};
use palisade_test_support::request;
use serde_json::json;

const APPS: usize = 12;

fn policy(own: &str) -> String {
    json!({"policies": [{"id": "p", "pv": {"acr": [{"acor": [own], "acop": 2}]}}]}).to_string()
}

fn acp_app(name: &str, setup: PluginSetup, isolation: Isolation) -> AppSpec {
    let mut spec = AppSpec::new(name).plugin(setup, palisade_artifacts::ACP);
    spec.isolation = isolation;
    // Room for a debug build on a loaded machine: only the answers count here.
    spec.limits.deadline = std::time::Duration::from_secs(2);
    spec
}

fn shared_acp(runtime: &Runtime) -> SharedModules {
    let mut compiled = SharedModules::default();
    compiled
        .get_or_compile(runtime.engine(), &Arc::from(palisade_artifacts::ACP))
        .expect("acp compiles");
    compiled
}

#[test]
fn apps_sharing_a_module_keep_their_own_configuration_in_both_isolations() {
    let runtime = palisade_test_support::runtime();
    let compiled = shared_acp(&runtime);
    let isolation = |app: usize| {
        if app.is_multiple_of(2) {
            Isolation::Warm
        } else {
            Isolation::FreshPerRequest
        }
    };
    for app in 0..APPS {
        let setup = PluginSetup::new("acp", policy(&format!("C{app}")));
        runtime
            .install_compiled(
                acp_app(&format!("app{app}"), setup, isolation(app)),
                &compiled,
            )
            .expect("install");
    }
    for app in 0..APPS {
        let name = format!("app{app}");
        let own = runtime.is_authorized(&request(
            &name,
            &format!("C{app}"),
            Operation::Retrieve,
            "/x",
        ));
        assert_eq!(own.effect, Effect::Permit, "{name}: {}", own.reason);
        let other = format!("C{}", (app + 1) % APPS);
        let theirs = runtime.is_authorized(&request(&name, &other, Operation::Retrieve, "/x"));
        assert_eq!(theirs.effect, Effect::Deny, "{name}");
        assert_eq!(theirs.stages[0].failure, None, "{name}: {}", theirs.reason);
    }
}

#[test]
fn every_load_refusal_still_happens_at_load_for_every_app() {
    let runtime = palisade_test_support::runtime();
    let compiled = shared_acp(&runtime);
    let good = |name: &str| {
        runtime.install_compiled(
            acp_app(name, PluginSetup::new("acp", policy("C1")), Isolation::Warm),
            &compiled,
        )
    };
    good("first").expect("the first app loads and type-checks acp");

    // Declared as another kind: refused for each app that says so, before and after a good
    // one, although acp's check as an authorizer is known by then.
    for name in ["filter-1", "filter-2"] {
        let mut setup = PluginSetup::new("acp", policy("C1"));
        setup.kind = Some(PluginKind::Filter);
        let error = runtime
            .install_compiled(acp_app(name, setup, Isolation::Warm), &compiled)
            .unwrap_err();
        assert!(
            matches!(
                error,
                InstallError::Load {
                    source: LoadError::WrongWorld {
                        declared: PluginKind::Filter,
                        found: PluginKind::Authorizer
                    },
                    ..
                }
            ),
            "{name}: {error:?}"
        );
        assert!(runtime.app(name).is_none());
    }
    // A configuration acp's `prepare` refuses is refused at load in either isolation (the
    // check runs per app; only the type check is shared).
    for (name, isolation) in [
        ("bad-warm", Isolation::Warm),
        ("bad-fresh", Isolation::FreshPerRequest),
    ] {
        let setup = PluginSetup::new("acp", json!({"policies": "none"}).to_string());
        let error = runtime
            .install_compiled(acp_app(name, setup, isolation), &compiled)
            .unwrap_err();
        assert!(
            matches!(
                error,
                InstallError::Load {
                    source: LoadError::Prepare(_),
                    ..
                }
            ),
            "{name}: {error:?}"
        );
    }
    // Declared as what it is, and undeclared: both load from the shared check.
    let mut setup = PluginSetup::new("acp", policy("C2"));
    setup.kind = Some(PluginKind::Authorizer);
    runtime
        .install_compiled(acp_app("declared", setup, Isolation::Warm), &compiled)
        .expect("declared authorizer");
    good("second").expect("a second undeclared app");
    let decision = runtime.is_authorized(&request("declared", "C2", Operation::Retrieve, "/x"));
    assert_eq!(decision.effect, Effect::Permit, "{}", decision.reason);
    let decision = runtime.is_authorized(&request("second", "C2", Operation::Retrieve, "/x"));
    assert_eq!(decision.effect, Effect::Deny, "{}", decision.reason);
}
