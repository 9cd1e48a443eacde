//! Contract 0.1: modules built against the released `palisade:plugin@0.1.0` (the frozen text in
//! `wit/v0.1.0/`) keep running on this host. Operators have signed 0.1 modules deployed, and a
//! gateway upgrade must not stop them.
//!
//! A 0.1 component imports the `@0.1.0` interfaces and exports functions whose `request` lacks
//! the 0.2 fields (the target's type), so it needs its own bindings. Its imports are the
//! current ones under the old names: each call here goes to the one implementation, with the
//! same capability checks and budgets. Its requests are the current request without the
//! target's type; its answers are converted to the current types before the host checks them,
//! so one set of checks (`convert.rs`) covers every version.

use super::bindings::wit;
use super::capabilities::Capabilities;
use super::state::HostState;
use crate::request::AccessRequest;

/// Host bindings of the 0.1.0 worlds, generated from the frozen WIT text.
pub mod bindings {
    pub mod imports {
        wasmtime::component::bindgen!({
            path: "../../wit/v0.1.0",
            world: "imports",
            imports: { default: trappable },
        });
    }

    pub mod authorizer {
        wasmtime::component::bindgen!({
            path: "../../wit/v0.1.0",
            world: "authorizer",
            imports: { default: trappable },
            with: { "palisade:plugin": super::imports::palisade::plugin },
        });
    }

    pub mod authenticator {
        wasmtime::component::bindgen!({
            path: "../../wit/v0.1.0",
            world: "authenticator",
            imports: { default: trappable },
            with: { "palisade:plugin": super::imports::palisade::plugin },
        });
    }

    pub mod filter {
        wasmtime::component::bindgen!({
            path: "../../wit/v0.1.0",
            world: "filter",
            imports: { default: trappable },
            with: { "palisade:plugin": super::imports::palisade::plugin },
        });
    }

    pub use imports::palisade::plugin::types as wit;
}

use crate::sandbox::bindings::imports::palisade::plugin as current;
use bindings::imports::palisade::plugin as old;
use bindings::wit as v01;

/// The request a 0.1 plugin sees: the current one without the target's type.
pub(crate) fn request(request: &AccessRequest, now: u64, grant: Capabilities) -> v01::Request {
    let wit::Request {
        originator,
        operation,
        target,
        resource_type,
        target_resource_type: _,
        target_specialization: _,
        authenticated,
        roles,
        source_ip,
        location,
        request_time,
        attributes,
    } = super::convert::request(request, now, grant);
    v01::Request {
        originator,
        operation: match operation {
            wit::Operation::Create => v01::Operation::Create,
            wit::Operation::Retrieve => v01::Operation::Retrieve,
            wit::Operation::Update => v01::Operation::Update,
            wit::Operation::Delete => v01::Operation::Delete,
            wit::Operation::Notify => v01::Operation::Notify,
            wit::Operation::Discovery => v01::Operation::Discovery,
        },
        target,
        resource_type,
        authenticated,
        roles,
        source_ip,
        location: location.map(|at| v01::Location {
            latitude: at.latitude,
            longitude: at.longitude,
            country: at.country,
        }),
        request_time,
        attributes,
    }
}

pub(crate) fn credential(credential: &wit::Credential) -> v01::Credential {
    v01::Credential {
        scheme: credential.scheme.clone(),
        value: credential.value.clone(),
    }
}

pub(crate) fn response(response: &wit::Response) -> v01::Response {
    v01::Response {
        status: response.status,
        content_type: response.content_type.clone(),
        body: response.body.clone(),
    }
}

pub(crate) fn decision(decision: v01::Decision) -> wit::Decision {
    match decision {
        v01::Decision::Permit => wit::Decision::Permit,
        v01::Decision::Deny(reason) => wit::Decision::Deny(reason),
        v01::Decision::NotApplicable => wit::Decision::NotApplicable,
    }
}

pub(crate) fn auth_result(result: v01::AuthResult) -> wit::AuthResult {
    match result {
        v01::AuthResult::Authenticated(identity) => wit::AuthResult::Authenticated(wit::Identity {
            subject: identity.subject,
            roles: identity.roles,
            expires_at: identity.expires_at,
        }),
        v01::AuthResult::Rejected(reason) => wit::AuthResult::Rejected(reason),
        v01::AuthResult::NotApplicable => wit::AuthResult::NotApplicable,
    }
}

pub(crate) fn filter_result(result: v01::FilterResult) -> wit::FilterResult {
    match result {
        v01::FilterResult::Unchanged => wit::FilterResult::Unchanged,
        v01::FilterResult::Rewrite(body) => wit::FilterResult::Rewrite(body),
        v01::FilterResult::Block(reason) => wit::FilterResult::Block(reason),
    }
}

impl old::types::Host for HostState {}

impl old::log::Host for HostState {
    fn log(&mut self, level: old::log::Level, message: String) -> wasmtime::Result<()> {
        use current::log::Level;
        let level = match level {
            old::log::Level::Trace => Level::Trace,
            old::log::Level::Debug => Level::Debug,
            old::log::Level::Info => Level::Info,
            old::log::Level::Warn => Level::Warn,
            old::log::Level::Error => Level::Error,
        };
        current::log::Host::log(self, level, message)
    }
}

impl old::config::Host for HostState {
    fn get(&mut self) -> wasmtime::Result<String> {
        current::config::Host::get(self)
    }
}

impl old::kv::Host for HostState {
    fn get(&mut self, key: String) -> wasmtime::Result<Option<Vec<u8>>> {
        current::kv::Host::get(self, key)
    }

    fn set(
        &mut self,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), old::kv::KvError>> {
        Ok(
            current::kv::Host::set(self, key, value)?.map_err(|error| match error {
                current::kv::KvError::TooLarge => old::kv::KvError::TooLarge,
                current::kv::KvError::QuotaExceeded => old::kv::KvError::QuotaExceeded,
            }),
        )
    }

    fn delete(&mut self, key: String) -> wasmtime::Result<()> {
        current::kv::Host::delete(self, key)
    }
}

impl old::groups::Host for HostState {
    fn is_member(&mut self, group: String, member: String) -> wasmtime::Result<bool> {
        current::groups::Host::is_member(self, group, member)
    }
}

fn crypto_error(error: current::crypto::CryptoError) -> old::crypto::CryptoError {
    match error {
        current::crypto::CryptoError::UnknownKey => old::crypto::CryptoError::UnknownKey,
        current::crypto::CryptoError::WrongKeyType => old::crypto::CryptoError::WrongKeyType,
    }
}

impl old::crypto::Host for HostState {
    fn verify_ed25519(
        &mut self,
        key: String,
        message: Vec<u8>,
        signature: Vec<u8>,
    ) -> wasmtime::Result<Result<bool, old::crypto::CryptoError>> {
        Ok(
            current::crypto::Host::verify_ed25519(self, key, message, signature)?
                .map_err(crypto_error),
        )
    }

    fn hmac_sha256(
        &mut self,
        key: String,
        message: Vec<u8>,
    ) -> wasmtime::Result<Result<Vec<u8>, old::crypto::CryptoError>> {
        Ok(current::crypto::Host::hmac_sha256(self, key, message)?.map_err(crypto_error))
    }
}
