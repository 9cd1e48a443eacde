//! # legacy-contract: a TEST FIXTURE, never a real plugin
//!
//! A plugin as operators built them against the released `palisade:plugin@0.1.0` contract
//! (`wit/v0.1.0/palisade.wit`, frozen): `wit-bindgen` against that text, not the SDK, which
//! follows the current contract. A host of a later contract must keep loading it (signed 0.1
//! modules are deployed), and `tests/contract.rs` checks that it does, in every world.
//!
//! What it answers shows what it was given, so the tests can see that the host lowered a
//! well-formed 0.1 request:
//! - `authorize`: configuration `{"answer": "permit"}` permits; otherwise it denies with a
//!   reason that spells out the request (`0.1 request: originator=… operation=… …`). A request
//!   attribute `group` asks the `groups` import whether the originator is a member (permit if so).
//! - `authenticate`: scheme `legacy` authenticates the credential's value as the subject, with
//!   the role `legacy-0.1`; anything else is not applicable.
//! - `filter`: prefixes the body with `legacy-0.1:`.
//! - `prepare`: configuration `{"refuse": …}` is refused (error log, then trap), like the SDK's
//!   `config::refuse`.

#[allow(dead_code, clippy::all)]
mod bindings {
    wit_bindgen::generate!({
        world: "palisade:legacy/legacy",
        path: ["../../wit/v0.1.0", "wit"],
        generate_all,
    });
}

use bindings::palisade::plugin::types::{
    AuthResult, Credential, Decision, FilterResult, Identity, Operation, Request, Response,
};
use bindings::palisade::plugin::{config, groups, log};

struct Legacy;

fn describe(request: &Request) -> String {
    let operation = match request.operation {
        Operation::Create => "create",
        Operation::Retrieve => "retrieve",
        Operation::Update => "update",
        Operation::Delete => "delete",
        Operation::Notify => "notify",
        Operation::Discovery => "discovery",
    };
    format!(
        "0.1 request: originator={} operation={operation} target={} resource-type={:?} \
         authenticated={} roles={:?} source-ip={:?} time={} attributes={:?}",
        request.originator,
        request.target,
        request.resource_type,
        request.authenticated,
        request.roles,
        request.source_ip,
        request.request_time,
        request.attributes,
    )
}

impl bindings::Guest for Legacy {
    fn authorize(request: Request) -> Decision {
        log::log(log::Level::Debug, &describe(&request));
        if let Some((_, group)) = request.attributes.iter().find(|(name, _)| name == "group") {
            return if groups::is_member(group, &request.originator) {
                Decision::Permit
            } else {
                Decision::Deny(format!("{} is not a member of {group}", request.originator))
            };
        }
        if config::get()
            .replace(' ', "")
            .contains("\"answer\":\"permit\"")
        {
            Decision::Permit
        } else {
            Decision::Deny(describe(&request))
        }
    }

    fn authenticate(_request: Request, credential: Credential) -> AuthResult {
        if credential.scheme != "legacy" {
            return AuthResult::NotApplicable;
        }
        AuthResult::Authenticated(Identity {
            subject: credential.value,
            roles: vec!["legacy-0.1".into()],
            expires_at: None,
        })
    }

    fn filter(_request: Request, response: Response) -> FilterResult {
        let mut body = b"legacy-0.1:".to_vec();
        body.extend_from_slice(&response.body);
        FilterResult::Rewrite(body)
    }

    fn prepare() {
        if config::get().contains("\"refuse\"") {
            let reason = "legacy-0.1 refuses this configuration";
            log::log(log::Level::Error, reason);
            panic!("{reason}");
        }
    }
}

bindings::export!(Legacy with_types_in bindings);
