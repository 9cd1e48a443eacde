//! The honesty check behind `benches/decision.rs`: Palisade (warm and fresh instances), the
//! native acp evaluation and Cedar must give every request of the shared table the same
//! permit or deny, and the one the table expects, so that the benchmark rows implement the
//! same policy. Palisade's denies must come from acp itself, never from a plugin failure (a
//! trapping plugin also denies, and would make the comparison meaningless).

use cedar_policy::Decision as CedarDecision;
use palisade_bench::cases::{cases, Case};
use palisade_bench::cedar::CedarPeer;
use palisade_bench::native::NativeAcp;
use palisade_bench::palisade_runtime;
use palisade_core::{Effect, Isolation, Outcome, Runtime};

/// Palisade's answer, after checking that acp decided it (no failure, one authorize stage).
fn palisade_permits(runtime: &Runtime, case: &Case, mode: &str) -> bool {
    let decision = runtime.is_authorized(&case.request);
    assert!(
        decision.stages.len() == 1
            && decision.stages[0].failure.is_none()
            && matches!(decision.stages[0].outcome, Outcome::Permit | Outcome::Deny),
        "{mode}, {}: not an acp decision: {} {:?}",
        case.name,
        decision.reason,
        decision.stages
    );
    decision.effect == Effect::Permit
}

#[test]
fn palisade_native_and_cedar_agree_on_every_case() {
    let warm = palisade_runtime(Isolation::Warm).expect("installing acp10, warm");
    let fresh = palisade_runtime(Isolation::FreshPerRequest).expect("installing acp10, fresh");
    let native = NativeAcp::new().expect("compiling acp10 natively");
    let cedar = CedarPeer::new().expect("loading acp10.cedar");
    let table = cases();
    assert!(table.len() >= 30, "the table has {} rows", table.len());
    let mut disagreements = Vec::new();
    for case in &table {
        let answers = [
            ("palisade warm", palisade_permits(&warm, case, "warm")),
            ("palisade fresh", palisade_permits(&fresh, case, "fresh")),
            (
                "native acp",
                match native.decide(&case.request) {
                    palisade_sdk::Decision::Permit => true,
                    palisade_sdk::Decision::Deny(_) => false,
                    palisade_sdk::Decision::NotApplicable => {
                        panic!("{}: acp10 has no scope, yet not-applicable", case.name)
                    }
                },
            ),
            (
                "cedar",
                cedar.decide(&case.request).expect("a valid Cedar request") == CedarDecision::Allow,
            ),
        ];
        for (who, permit) in answers {
            if permit != case.permit {
                disagreements.push(format!(
                    "{}: {who} says {}, expected {}",
                    case.name,
                    verdict(permit),
                    verdict(case.permit)
                ));
            }
        }
    }
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
}

/// Every Cedar policy grants at least one row, so the table reaches all ten rules (one no row
/// reaches could differ between the engines unnoticed), and no row makes a policy fail to
/// evaluate: Cedar skips an erroring policy, which would pass for a deny.
#[test]
fn every_cedar_policy_grants_some_row_and_none_errs() {
    let cedar = CedarPeer::new().expect("loading acp10.cedar");
    let mut granting = std::collections::BTreeSet::new();
    for case in cases() {
        let request = cedar.request(&case.request).expect("a valid Cedar request");
        let response = cedar.is_authorized(&request);
        let errors: Vec<String> = response
            .diagnostics()
            .errors()
            .map(|error| error.to_string())
            .collect();
        assert!(errors.is_empty(), "{}: {errors:?}", case.name);
        granting.extend(response.diagnostics().reason().map(|id| id.to_string()));
    }
    let all: std::collections::BTreeSet<String> = (0..10).map(|i| format!("policy{i}")).collect();
    assert_eq!(granting, all, "the policies that granted some row");
}

fn verdict(permit: bool) -> &'static str {
    if permit {
        "permit"
    } else {
        "deny"
    }
}
