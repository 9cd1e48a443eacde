//! # token-auth: oneM2M dynamic-authorization tokens as Ed25519-signed JWS
//!
//! A Palisade reference authenticator. An originator presents `Authorization: Bearer <token>`,
//! or tokens as TS-0009 §6.4.19 carries them (`Authorization: <jws>+<jws>`, no scheme word;
//! every token must verify), where each token is a JWS compact serialization (RFC 7515) with `alg` `EdDSA` (RFC 8037)
//! carrying oneM2M token claims (TS-0003 §7.3: `tkid`, `tkhd`, `tkis`, `tknb`, `tkna`, `tknm`,
//! `tkau`, `tkps`). The plugin checks the token and turns it into an identity: subject = the
//! holder, roles = the role IDs of its permissions, expiry = `tkna`.
//!
//! Why a plugin at all: the issuers an application trusts, and the gateway it accepts tokens
//! for, are the application's own policy (SER-022), delivered as configuration (SER-014). The
//! signature is verified by the host with a key named by handle, so the key never enters the
//! sandbox (SER-010, SER-023).
//!
//! Layout: [`b64`] and [`json`] decode strictly, [`token`] shapes the claims, [`check`] makes
//! the decision given a signature-verifying closure. Only the entry point below calls the host,
//! and only when built for WebAssembly, so everything else is unit-tested natively.

pub mod b64;
pub mod check;
pub mod json;
pub mod token;

#[cfg(test)]
mod tests;

#[cfg(target_arch = "wasm32")]
mod plugin {
    use palisade_sdk::config::Config;
    use palisade_sdk::{AuthResult, Authenticator, Credential, Request};

    /// Parsed once per instance: the configuration is constant for its lifetime.
    static CONFIG: Config<crate::check::Config> = Config::new();

    struct TokenAuth;

    impl Authenticator for TokenAuth {
        fn authenticate(request: Request, credential: Credential) -> AuthResult {
            crate::check::decide(
                CONFIG.get(),
                &credential,
                &request.originator,
                request.request_time,
                palisade_sdk::crypto::verify_ed25519,
            )
        }

        /// Parse the configuration when the host loads the plugin and refuse it there when
        /// it is invalid (the gateway does not start rather than reject every request); in
        /// fresh-instance applications the parsed form is then snapshotted.
        fn prepare() {
            if let Some(problem) = CONFIG.require().problem() {
                palisade_sdk::config::refuse(&problem);
            }
        }
    }

    palisade_sdk::export_authenticator!(TokenAuth);
}
