//! Whole-decision tests, run natively: configuration in, decision out, with a fake group
//! look-up. The table-driven end-to-end cases live in `examples/acp/*.toml` (`palisade test`).

use palisade_sdk::{Decision, Location, Operation, Request};
use serde_json::json;

use crate::config::compile;
use crate::eval::decide;
use crate::policy::PolicySet;

/// 2026-11-28T10:15:00Z, a Saturday.
const SAT: u64 = 1_795_860_900;

fn request(originator: &str, operation: Operation, target: &str) -> Request {
    Request {
        request_time: SAT,
        ..Request::new(originator, operation, target)
    }
}

fn set(document: serde_json::Value) -> PolicySet {
    compile(&document).unwrap()
}

fn rules(acr: serde_json::Value) -> PolicySet {
    set(json!({ "policies": [ { "id": "acp1", "pv": { "acr": acr } } ] }))
}

fn groups(group: &str, member: &str) -> bool {
    group == "grp-lights" && (member == "CAE1" || member == "CAE2")
}

fn outcome(set: &PolicySet, request: &Request) -> Decision {
    decide(set, request, groups)
}

fn permits(set: &PolicySet, request: &Request) -> bool {
    matches!(outcome(set, request), Decision::Permit)
}

fn reason(set: &PolicySet, request: &Request) -> String {
    match outcome(set, request) {
        Decision::Deny(reason) => reason,
        other => panic!("expected a deny, got {other:?}"),
    }
}

#[test]
fn originators_and_operations() {
    let s = rules(json!([{ "acor": ["CAE1", "C*", "role:op", "<grp-lights>"], "acop": 3 }]));
    assert!(permits(
        &s,
        &request("CAE1", Operation::Retrieve, "/cse-in/a")
    ));
    assert!(permits(
        &s,
        &request("Cxyz", Operation::Create, "/cse-in/a")
    ));
    assert!(!permits(
        &s,
        &request("CAE1", Operation::Update, "/cse-in/a")
    ));
    assert!(!permits(
        &s,
        &request("C/x", Operation::Retrieve, "/cse-in/a")
    ));
    let mut r = request("S-other", Operation::Retrieve, "/cse-in/a");
    assert!(!permits(&s, &r));
    r.roles = vec!["op".into()];
    assert!(permits(&s, &r));
    let s = rules(json!([{ "acor": ["<grp-lights>"], "acop": 2 }]));
    assert!(permits(&s, &request("CAE2", Operation::Retrieve, "/x")));
    assert!(!permits(&s, &request("CAE3", Operation::Retrieve, "/x")));
    let why = reason(&s, &request("CAE3", Operation::Delete, "/cse-in/x"));
    assert_eq!(
        why,
        "no access control rule grants delete to CAE3 on /cse-in/x"
    );
}

#[test]
fn group_lookup_happens_last_and_once() {
    let s = rules(json!([
        { "acor": ["<g>"], "acop": 2, "acaf": true },
        { "acor": ["<g>"], "acop": 1 },
        { "acor": ["<g>"], "acop": 2, "acco": [{ "acip": { "ipv4": ["10.0.0.0/8"] } }] },
        { "acor": ["<g>"], "acop": 2 }
    ]));
    let mut calls = 0;
    let decision = decide(&s, &request("CAE1", Operation::Retrieve, "/x"), |_, _| {
        calls += 1;
        false
    });
    assert!(matches!(decision, Decision::Deny(_)));
    assert_eq!(
        calls, 1,
        "only the last rule reaches the look-up, and its answer is memoised"
    );
}

#[test]
fn a_local_grant_anywhere_spares_the_group_lookup() {
    let s = set(json!({ "policies": [
        { "id": "p1", "pv": { "acr": [{ "acor": ["<g>"], "acop": 2 }] } },
        { "id": "p2", "pv": { "acr": [{ "acor": ["C*"], "acop": 2 }] } }
    ]}));
    let mut calls = 0;
    let decision = decide(&s, &request("CAE1", Operation::Retrieve, "/x"), |_, _| {
        calls += 1;
        true
    });
    assert!(matches!(decision, Decision::Permit));
    assert_eq!(calls, 0);
    let decision = decide(
        &s,
        &request("XAE1", Operation::Retrieve, "/x"),
        |group, member| {
            calls += 1;
            group == "g" && member == "XAE1"
        },
    );
    assert!(matches!(decision, Decision::Permit));
    assert_eq!(calls, 1);
}

#[test]
fn permit_overrides_across_policies() {
    let s = set(json!({ "policies": [
        { "id": "p1", "pv": { "acr": [{ "acor": ["CAE1"], "acop": 2 }] } },
        { "id": "p2", "pv": { "acr": [{ "acor": ["CAE1"], "acop": 4 }] } }
    ]}));
    assert!(permits(&s, &request("CAE1", Operation::Retrieve, "/x")));
    assert!(permits(&s, &request("CAE1", Operation::Update, "/x")));
    let why = reason(&s, &request("CAE1", Operation::Delete, "/x"));
    assert!(
        why.contains("policy p1 rule 0 lists the originator but grants only retrieve"),
        "{why}"
    );
}

#[test]
fn scope_makes_other_targets_not_applicable() {
    let s = set(json!({ "policies": [
        { "id": "p1", "scope": ["/cse-in/app1"], "pv": { "acr": [{ "acor": ["all"], "acop": 63 }] } }
    ]}));
    assert!(permits(
        &s,
        &request("X", Operation::Delete, "/cse-in/app1/c")
    ));
    assert!(matches!(
        outcome(&s, &request("X", Operation::Delete, "/cse-in/app10")),
        Decision::NotApplicable
    ));
}

#[test]
fn contexts() {
    let s = rules(json!([{ "acor": ["all"], "acop": 2, "acco": [
        { "actw": ["* * 8-17 * * 1-5 *"] },
        { "acip": { "ipv6": ["2001:db8::/32"] }, "aclr": { "accr": [[-17.0, 180.0, 50000]] } }
    ]}]));
    let mut r = request("A", Operation::Retrieve, "/x");
    assert!(!permits(&s, &r), "Saturday, no address");
    r.request_time = SAT - 86_400; // Friday 10:15
    assert!(permits(&s, &r));
    r.request_time = SAT;
    r.source_ip = Some("2001:db8::5".into());
    assert!(!permits(&s, &r), "no location");
    r.location = Some(Location {
        latitude: -16.95,
        longitude: -179.9,
        country: None,
    });
    assert!(
        permits(&s, &r),
        "inside a circle that crosses the antimeridian"
    );
    r.source_ip = Some("2001:db9::5".into());
    let why = reason(&s, &r);
    assert!(
        why.contains("2 contexts and none holds; the first fails on actw"),
        "{why}"
    );
}

#[test]
fn authentication_and_object_details() {
    let s = rules(json!([{ "acor": ["CAE1"], "acop": 1, "acaf": true,
        "acod": [{ "chty": [4], "sbpt": ["/cse-in/app1/**"] }, { "ty": 2, "chty": [3] }] }]));
    let mut r = request("CAE1", Operation::Create, "/cse-in/app1/c1");
    r.resource_type = Some(4);
    assert!(reason(&s, &r).contains("acaf"));
    r.authenticated = true;
    assert!(permits(&s, &r));
    r.resource_type = Some(23);
    let why = reason(&s, &r);
    assert!(
        why.contains(
            "does not allow creating resource type 23 under this target (type unknown) (acod)"
        ),
        "{why}"
    );
    // `ty` is the target's type: a container (3) may be created under an AE (2) anywhere...
    r.target = "/cse-in/other".into();
    r.resource_type = Some(3);
    r.target_resource_type = Some(2);
    assert!(
        permits(&s, &r),
        "the second entry allows a container under an AE"
    );
    // ...but not under a target of another type, nor under one whose type is unknown.
    r.target_resource_type = Some(3);
    assert!(!permits(&s, &r));
    r.target_resource_type = None;
    assert!(!permits(&s, &r));
}

#[test]
fn object_details_apply_to_create_only_and_spty_matches_the_target() {
    let s = rules(json!([
        { "acor": ["CAE1"], "acop": 1, "acod": [{ "ty": 28, "spty": "org.example.lamp", "chty": [4] }] },
        { "acor": ["CAE1"], "acop": 7, "acod": [{ "chty": [3] }] }
    ]));
    let mut r = request("CAE1", Operation::Create, "/cse-in/lamp1");
    r.resource_type = Some(4);
    r.target_resource_type = Some(28);
    r.target_specialization = Some("org.example.lamp".into());
    assert!(permits(&s, &r));
    r.target_specialization = Some("org.example.fan".into());
    assert!(!permits(&s, &r), "another specialization");
    r.target_specialization = None;
    assert!(!permits(&s, &r), "unknown specialization");
    // The second rule's `chty` restricts only its create; its retrieve and update ignore it,
    // whatever the request says about types.
    r.resource_type = Some(3);
    assert!(
        permits(&s, &r),
        "a container may be created by the second rule"
    );
    for operation in [Operation::Retrieve, Operation::Update] {
        let mut other = request("CAE1", operation, "/cse-in/lamp1");
        other.target_resource_type = Some(99);
        assert!(permits(&s, &other), "{operation:?} ignores acod");
    }
    assert!(!permits(
        &s,
        &request("CAE1", Operation::Delete, "/cse-in/lamp1")
    ));
}

#[test]
fn policies_of_the_earlier_acod_reading_are_refused_naming_the_rule() {
    let refused = |acr: serde_json::Value| {
        compile(&json!({ "policies": [ { "pv": { "acr": acr } } ] })).unwrap_err()
    };
    // `ty` meant as the created type, without `chty`.
    let why = refused(json!([{ "acor": ["a"], "acop": 1, "acod": [{ "ty": 4 }] }]));
    assert!(why.contains("acr[0].acod[0]: `chty` is missing"), "{why}");
    assert!(why.contains("not of the resource it makes"), "{why}");
    // Object details on a rule without create.
    let why = refused(json!([{ "acor": ["a"], "acop": 12, "acod": [{ "ty": 3, "chty": [4] }] }]));
    assert!(
        why.contains("acr[0].acod: object details apply to CREATE only"),
        "{why}"
    );
    assert!(why.contains("grants only update, delete"), "{why}");
    // `ty`/`spty`/`sbpt` on a rule that also grants other operations.
    for (entry, name) in [
        (json!({ "ty": 2, "chty": [3] }), "ty"),
        (json!({ "ty": 28, "spty": "x", "chty": [4] }), "ty"),
        (json!({ "spty": "x", "chty": [4] }), "spty"),
        (json!({ "chty": [4], "sbpt": ["/a/**"] }), "sbpt"),
    ] {
        let why = refused(json!([{ "acor": ["a"], "acop": 3, "acod": [entry] }]));
        assert!(
            why.contains(&format!(
                "acr[0].acod[0].{name}: object details restrict only the CREATE"
            )),
            "{why}"
        );
        assert!(why.contains("also grants retrieve"), "{why}");
    }
    // A specializable type without its specialization; an empty specialization.
    let why = refused(json!([{ "acor": ["a"], "acop": 1, "acod": [{ "ty": 13, "chty": [4] }] }]));
    assert!(why.contains("`ty` 13 is a specializable type"), "{why}");
    let why = refused(json!([{ "acor": ["a"], "acop": 1, "acod": [{ "spty": "", "chty": [4] }] }]));
    assert!(
        why.contains("acod[0].spty: a specialization must not be empty"),
        "{why}"
    );
    // What means the same under both readings is accepted.
    compile(&json!({ "policies": [ { "pv": { "acr": [
        { "acor": ["a"], "acop": 63, "acod": [{ "chty": [4] }] },
        { "acor": ["a"], "acop": 1, "acod": [{ "ty": 2, "chty": [3], "sbpt": ["/a/**"] }] }
    ] } } ] }))
    .unwrap();
}

#[test]
fn malformed_configurations_name_the_problem() {
    let cases = [
        (json!({}), "no `policies`"),
        (
            json!({ "policies": [] }),
            "policies: the list must not be empty",
        ),
        (
            json!({ "policies": [], "extra": 1 }),
            "unknown field \"extra\"",
        ),
        (
            json!({ "policies": [{ "pv": { "acr": [{ "acor": ["a"], "acop": 64 }] } }] }),
            "acr[0].acop: 64",
        ),
        (
            json!({ "policies": [{ "pv": { "acr": [{ "acor": ["a"], "acop": 0 }] } }] }),
            "acop: 0",
        ),
        (
            json!({ "policies": [{ "pv": { "acr": [{ "acor": ["a"], "acop": "3" }] } }] }),
            "acop",
        ),
        (
            json!({ "policies": [{ "pv": { "acr": [{ "acor": ["a"] }] } }] }),
            "missing `acop`",
        ),
        (
            json!({ "policies": [{ "pv": { "acr": [{ "acor": [], "acop": 1 }] } }] }),
            "acor: the list must not be empty",
        ),
        (
            json!({ "policies": [{ "pv": { "acr": [{ "acor": ["<g"], "acop": 1 }] } }] }),
            "not a group reference",
        ),
        (
            json!({ "policies": [{ "pv": { "acr": [{ "acor": ["a"], "acop": 1, "acco": [{ "actx": [] }] }] } }] }),
            "acco[0]: unknown context element \"actx\"",
        ),
        (
            json!({ "policies": [{ "pv": { "acr": [{ "acor": ["a"], "acop": 1, "acco": [{ "actw": ["* * *"] }] }] } }] }),
            "has 3 fields",
        ),
        (
            json!({ "policies": [{ "pv": { "acr": [{ "acor": ["a"], "acop": 1, "acod": [{ "spty": 7, "chty": [4] }] }] } }] }),
            "acod[0].spty: 7 is not a string",
        ),
        (
            json!({ "policies": [{ "pv": { "acr": [{ "acor": ["a"], "acop": 1, "acaf": "yes" }] } }] }),
            "acaf",
        ),
        (
            json!({ "policies": [{ "pv": { "acr": [] }, "pvs": {} }] }),
            "selfPrivileges",
        ),
        (
            json!({ "policies": [{ "pv": { "acr": [{ "acor": ["a"], "acop": 1,
            "acco": [{ "aclr": { "accr": [[0, 0]] } }] }] } }] }),
            "expected a circle",
        ),
    ];
    for (document, expected) in cases {
        let problem = compile(&document).unwrap_err();
        assert!(
            problem.starts_with("invalid accessControlPolicy configuration: "),
            "{problem}"
        );
        assert!(
            problem.contains(expected),
            "{problem:?} should mention {expected:?}"
        );
    }
}

/// TS-0003 §7.1.2: a `<group>` resource ID in `acor` grants its members (the host's
/// look-up); the same entry still matches an originator spelled that way, without asking.
#[test]
fn resource_ids_in_acor_are_groups_as_well_as_ids() {
    let s = rules(json!([{ "acor": ["/id-in/grp1", "//sp.example/id-in/grp2"], "acop": 2 }]));
    let mut asked = Vec::new();
    let mut members = |group: &str, member: &str| {
        asked.push(format!("{group} {member}"));
        (group == "/id-in/grp1" && member == "CAE1")
            || (group == "//sp.example/id-in/grp2" && member == "CAE2")
    };
    let get = |originator| request(originator, Operation::Retrieve, "/cse-in/a");
    assert!(matches!(
        decide(&s, &get("CAE1"), &mut members),
        Decision::Permit
    ));
    assert!(matches!(
        decide(&s, &get("CAE2"), &mut members),
        Decision::Permit
    ));
    assert!(matches!(
        decide(&s, &get("CAE3"), &mut members),
        Decision::Deny(_)
    ));
    assert!(matches!(
        decide(&s, &get("/id-in/grp1"), &mut members),
        Decision::Permit
    ));
    assert_eq!(
        asked,
        [
            "/id-in/grp1 CAE1",
            "/id-in/grp1 CAE2",
            "//sp.example/id-in/grp2 CAE2",
            "/id-in/grp1 CAE3",
            "//sp.example/id-in/grp2 CAE3",
        ]
    );
    // Wildcards over resource IDs stay wildcards, never group look-ups.
    let w = rules(json!([{ "acor": ["/id-in/*"], "acop": 2 }]));
    assert!(matches!(
        decide(&w, &get("CAE1"), |_: &str, _: &str| panic!("no look-up")),
        Decision::Deny(_)
    ));
}
