//! The request crossing after issue #18's host-side levers: the request is lowered into the
//! plugin from the host's own strings and lists (no copy into a `wit::Request`), and a
//! decision reads the clock per stage only when asked ([`Timing::Stages`]). Every field must
//! still reach the plugin intact, in both isolation modes and with either timing.

use palisade_test_support as support;

use palisade_core::{
    AccessRequest, AppSpec, Capability, Effect, Isolation, Location, Operation, PluginSetup,
    Runtime, Timing,
};

/// One rule per request field: each grants only when its field crossed intact.
const POLICY: &str = r#"{"policies":[{"id":"p","pv":{"acr":[
 {"acor":["role:auditor"],"acop":2},
 {"acor":["CAE-lan"],"acop":2,"acco":[{"acip":{"ipv4":["192.168.0.0/16"]}}]},
 {"acor":["CAE-v6"],"acop":2,"acco":[{"acip":{"ipv6":["2001:db8::/32"]}}]},
 {"acor":["CAE-fr"],"acop":2,"acco":[{"aclr":{"accc":["FR"]}}]},
 {"acor":["CAE-auth"],"acop":2,"acaf":true},
 {"acor":["CAE-creator"],"acop":1,"acod":[{"chty":[4]}]},
 {"acor":["CAE-é✓"],"acop":2}
]}}]}"#;

fn install(runtime: &Runtime, app: &str, isolation: Isolation) {
    let setup = PluginSetup::new("acp", POLICY).grant(Capability::Location);
    let mut spec = AppSpec::new(app).plugin(setup, palisade_artifacts::ACP);
    spec.isolation = isolation;
    runtime.install(spec).expect("installing acp");
}

/// Requests that only their one field can permit, and the same requests with that field
/// wrong or missing.
fn cases(app: &str) -> Vec<(&'static str, AccessRequest, Effect)> {
    let base = |originator: &str| {
        let mut request =
            support::request(app, originator, Operation::Retrieve, "/cse-in/lights/lamp1");
        // Attributes cross too (acp ignores them): a list of pairs on every request.
        request.attributes = vec![("rcn".into(), "1".into()), ("fu".into(), "2".into())];
        request
    };
    let with = |originator: &str, change: &dyn Fn(&mut AccessRequest)| {
        let mut request = base(originator);
        change(&mut request);
        request
    };
    let paris = |country: Option<&str>| Location {
        latitude: 48.8566,
        longitude: 2.3522,
        country: country.map(str::to_string),
    };
    vec![
        (
            "roles",
            with("CAE-x", &|r| {
                r.roles = vec!["viewer".into(), "auditor".into()]
            }),
            Effect::Permit,
        ),
        (
            "other roles",
            with("CAE-x", &|r| r.roles = vec!["viewer".into()]),
            Effect::Deny,
        ),
        (
            "IPv4 source",
            with("CAE-lan", &|r| r.source_ip = Some("192.168.7.9".into())),
            Effect::Permit,
        ),
        (
            "IPv4 outside",
            with("CAE-lan", &|r| r.source_ip = Some("10.0.0.1".into())),
            Effect::Deny,
        ),
        ("no source", base("CAE-lan"), Effect::Deny),
        (
            "IPv6 source",
            with("CAE-v6", &|r| r.source_ip = Some("2001:db8::42".into())),
            Effect::Permit,
        ),
        (
            "country",
            with("CAE-fr", &|r| r.location = Some(paris(Some("FR")))),
            Effect::Permit,
        ),
        (
            "no country",
            with("CAE-fr", &|r| r.location = Some(paris(None))),
            Effect::Deny,
        ),
        (
            "authenticated",
            with("CAE-auth", &|r| r.authenticated = true),
            Effect::Permit,
        ),
        ("not authenticated", base("CAE-auth"), Effect::Deny),
        (
            "create of type 4",
            with("CAE-creator", &|r| {
                r.operation = Operation::Create;
                r.resource_type = Some(4);
                r.target_resource_type = Some(3);
                r.target_specialization = Some("org.example.lamp".into());
            }),
            Effect::Permit,
        ),
        (
            "create of type 2",
            with("CAE-creator", &|r| {
                r.operation = Operation::Create;
                r.resource_type = Some(2);
            }),
            Effect::Deny,
        ),
        ("non-ASCII originator", base("CAE-é✓"), Effect::Permit),
        ("unknown originator", base("CAE-é"), Effect::Deny),
    ]
}

#[test]
fn every_request_field_reaches_the_plugin_warm_and_fresh_with_either_timing() {
    let runtime = support::runtime();
    install(&runtime, "warm", Isolation::Warm);
    install(&runtime, "fresh", Isolation::FreshPerRequest);
    for app in ["warm", "fresh"] {
        for (name, request, expected) in cases(app) {
            for timing in [Timing::Total, Timing::Stages] {
                // Twice: the first call of a plugin checks the borrowed lowering, later ones
                // use it.
                for round in 0..2 {
                    let decision = runtime.is_authorized_timed(&request, timing);
                    assert_eq!(
                        decision.effect, expected,
                        "{app}, {name}, {timing:?}, round {round}: {}",
                        decision.reason
                    );
                }
            }
        }
    }
}

#[test]
fn only_stages_timing_reads_the_clock_per_stage() {
    let runtime = support::runtime();
    install(&runtime, "warm", Isolation::Warm);
    let (_, request, _) = cases("warm").remove(0);

    let total = runtime.is_authorized_timed(&request, Timing::Total);
    assert_eq!(total.effect, Effect::Permit, "{}", total.reason);
    assert_eq!(total.stages.len(), 1, "the stage is reported, untimed");
    assert_eq!(total.stages[0].micros, 0);
    assert_eq!(total.timings.authorize_us, 0);
    assert_eq!(total.timings.authenticate_us, 0);

    // The same answer, explained: the default of `is_authorized`.
    let stages = runtime.is_authorized(&request);
    assert_eq!(
        (&stages.effect, &stages.reason, &stages.decided_by),
        (&total.effect, &total.reason, &total.decided_by)
    );
    assert_eq!(stages.stages[0].outcome, total.stages[0].outcome);
    assert!(
        stages.timings.total_us >= stages.timings.authorize_us
            && stages.timings.authorize_us >= stages.stages[0].micros,
        "the whole contains its parts: {:?} / {}",
        stages.timings,
        stages.stages[0].micros
    );
}
