//! Stakeholder identity privacy (SER-011, SER-018, SER-025).
//!
//! An application's plugins are often written by its service provider, a third party to the
//! originators that talk to it. Unless the application's configuration records that those
//! stakeholders consented (`consent_real_identities = true`, SER-015), its **authorizers,
//! filters and the audit log** see a stable pseudonym instead of the originator ID:
//! `anon-` followed by the first 128 bits of HMAC-SHA256(app secret, originator), in hex.
//!
//! - Stable: the same originator gets the same pseudonym in one application across restarts,
//!   so policies, rate-limit forensics and audit trails still correlate.
//! - Unlinkable across applications: each application has its own secret, generated in the
//!   gateway keystore on first start (label `pseudonym`, scope of the app, encrypted at rest,
//!   never exported: SER-010). Two applications cannot join their views of one originator.
//! - **Authenticators see the real originator.** A credential is bound to a real identity (a
//!   token's holder `tkhd` is the real originator ID) and checking that binding is the
//!   authenticator's job; so the gateway runs an application's authenticators in a separate
//!   sandbox (`<app>.authn`) with the real request, then hands the authorizers the pseudonym,
//!   the authenticated flag and the roles it established — never the credential. That split
//!   lives in core ([`palisade_core::Runtime::evaluate`]), so every embedder gets it; this module
//!   supplies the keystore-backed [`Pseudonymizer`] it runs on.
//! - Policies name originators through the marker `"originator:<ID>"` in plugin configuration
//!   (and plainly in `groups`): the gateway replaces it with the pseudonym (or the real ID
//!   with consent) when it installs the plugin, so one policy text works both ways. Wildcard
//!   originator patterns (`C*`) cannot match pseudonyms by design; use roles or groups.

use std::sync::Arc;

use palisade_core::{PseudonymError, Pseudonyms};
use palisade_keys::{KeyError, KeyHandle, KeyKind, KeyScope, KeyStore};

pub use palisade_core::rewrite_markers;

/// The keystore label of each application's pseudonym secret.
const SECRET_LABEL: &str = "pseudonym";

/// What every pseudonym starts with.
const PSEUDONYM_PREFIX: &str = "anon-";

/// Computes one application's pseudonyms.
#[derive(Clone)]
pub struct Pseudonymizer {
    store: Arc<dyn KeyStore>,
    scope: KeyScope,
    handle: KeyHandle,
}

impl Pseudonymizer {
    /// The application's pseudonymizer, generating its secret in `store` on first use.
    pub fn open(store: Arc<dyn KeyStore>, app: &str) -> Result<Pseudonymizer, KeyError> {
        let scope = KeyScope::App(app.to_string());
        let existing = store
            .list(&scope)?
            .into_iter()
            .find(|info| info.label == SECRET_LABEL && info.kind == KeyKind::HmacSecret);
        let handle = match existing {
            Some(info) => info.handle,
            None => store.generate(&scope, KeyKind::HmacSecret, SECRET_LABEL)?,
        };
        Ok(Pseudonymizer {
            store,
            scope,
            handle,
        })
    }

    /// The pseudonym of `originator` in this application.
    pub fn pseudonym(&self, originator: &str) -> Result<String, KeyError> {
        let mac = self
            .store
            .hmac(&self.scope, &self.handle, originator.as_bytes())?;
        let mut pseudonym = String::with_capacity(PSEUDONYM_PREFIX.len() + 32);
        pseudonym.push_str(PSEUDONYM_PREFIX);
        pseudonym.push_str(&hex::encode(&mac[..16]));
        Ok(pseudonym)
    }

    /// Replaces every `"originator:<ID>"` string in a plugin configuration with the ID's
    /// pseudonym.
    pub fn rewrite_config(&self, value: &mut serde_json::Value) -> Result<(), KeyError> {
        rewrite_markers(value, &mut |id| self.pseudonym(id))
    }
}

impl Pseudonyms for Pseudonymizer {
    fn pseudonym(&self, originator: &str) -> Result<String, PseudonymError> {
        Pseudonymizer::pseudonym(self, originator).map_err(PseudonymError::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_keys::SoftwareKeyStore;

    #[test]
    fn pseudonyms_are_stable_per_app_and_differ_across_apps() {
        let store: Arc<dyn KeyStore> = Arc::new(SoftwareKeyStore::in_memory());
        let lights = Pseudonymizer::open(store.clone(), "lights").unwrap();
        let again = Pseudonymizer::open(store.clone(), "lights").unwrap();
        let meters = Pseudonymizer::open(store, "meters").unwrap();
        let a = lights.pseudonym("CAE1").unwrap();
        assert_eq!(a, again.pseudonym("CAE1").unwrap());
        assert_ne!(a, meters.pseudonym("CAE1").unwrap());
        assert_ne!(a, lights.pseudonym("CAE2").unwrap());
        assert!(a.starts_with("anon-") && a.len() == 37, "{a}");
    }
}
