//! Stakeholder identity privacy (SER-011, SER-018, SER-025), for every embedder.
//!
//! An application's plugins are often written by its service provider, a third party to the
//! originators that talk to it. Unless the embedder records that those stakeholders consented
//! (SER-015), its **authorizers, filters and audit** see a stable pseudonym instead of the
//! originator ID. Where the pseudonyms come from is the embedder's business (the gateway keeps
//! one HMAC secret per application in its keystore); this module only needs a
//! [`Pseudonyms`] that is stable per application and unlinkable across applications.
//!
//! **Authenticators see the real originator**: a credential is bound to a real identity (a
//! token's holder is the real originator ID) and checking that binding is the authenticator's
//! job. So an application's authenticators run in a separate sandbox — the hidden application
//! `<app>`[`AUTHN_SUFFIX`] — on the real request, and the authorizers get the pseudonym, the
//! authenticated flag and the roles it established, never the credential.
//! [`Runtime::evaluate`] does that split; it fails closed: when a pseudonym cannot be
//! computed the answer is a deny, never the real ID.

use std::error::Error as StdError;
use std::time::Instant;

use crate::pipeline::{Decision, Outcome, Runtime, Timing};
use crate::request::AccessRequest;

/// Name suffix of the hidden application that runs an app's authenticators apart from its
/// authorizers. Application names must not end with it.
pub const AUTHN_SUFFIX: &str = ".authn";

/// The marker for originator IDs in plugin configuration: an embedder replaces every
/// `"originator:<ID>"` string with the ID's pseudonym (or the ID itself with consent) before
/// installing a non-authenticator plugin, so one policy text works both ways.
pub const ORIGINATOR_MARKER: &str = "originator:";

/// What the authorizers see instead of an originator whose pseudonym could not be computed.
pub const UNAVAILABLE_PSEUDONYM: &str = "anon-unavailable";

/// A pseudonym could not be computed (the secret behind it is unavailable).
#[derive(Debug, thiserror::Error)]
#[error("the pseudonym cannot be computed")]
#[non_exhaustive]
pub struct PseudonymError {
    #[source]
    source: Box<dyn StdError + Send + Sync>,
}

impl PseudonymError {
    /// A pseudonym error caused by `source`.
    pub fn new(source: impl Into<Box<dyn StdError + Send + Sync>>) -> PseudonymError {
        PseudonymError {
            source: source.into(),
        }
    }
}

/// One application's pseudonyms: the same originator always maps to the same pseudonym in
/// this application, and the pseudonyms of two applications cannot be joined.
pub trait Pseudonyms: Send + Sync {
    /// The pseudonym of `originator`.
    fn pseudonym(&self, originator: &str) -> Result<String, PseudonymError>;
}

/// How one application's requests are split between its authenticators and its authorizers
/// (see the module docs).
#[derive(Clone, Copy)]
#[non_exhaustive]
pub struct PrivacySplit<'a> {
    /// The application's pseudonyms.
    pub pseudonyms: &'a dyn Pseudonyms,
    /// The hidden application (`<app>`[`AUTHN_SUFFIX`]) holding the authenticators, when the
    /// application has any.
    pub authn_app: Option<&'a str>,
}

impl<'a> PrivacySplit<'a> {
    /// A split using `pseudonyms`, with no authenticators.
    pub fn new(pseudonyms: &'a dyn Pseudonyms) -> PrivacySplit<'a> {
        PrivacySplit {
            pseudonyms,
            authn_app: None,
        }
    }

    /// Runs credentials through the authenticators installed as application `authn_app`.
    pub fn authenticators(mut self, authn_app: &'a str) -> PrivacySplit<'a> {
        self.authn_app = Some(authn_app);
        self
    }
}

/// The answer to [`Runtime::evaluate`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Evaluated {
    /// The decision.
    pub decision: Decision,
    /// The request as the authorizers saw it (pseudonymous originator unless consent, no
    /// credential, authentication state and roles established): filters and audit must see
    /// the same.
    pub view: AccessRequest,
    /// The authenticated subject as the authorizers may know it (a pseudonym with a split).
    pub subject: Option<String>,
}

impl Runtime {
    /// Decides `request` with the identity-privacy split: without `split` (consent, SER-015)
    /// the plugins see the real originator; with it, as the module docs describe. Unlike
    /// [`Runtime::is_authorized`], the answer carries the view later stages must use. With an
    /// audit sink ([`Runtime::set_audit_sink`]) the decision is recorded once, on the view
    /// and the subject returned here (pseudonyms with a split), before it is returned.
    pub fn evaluate(&self, request: AccessRequest, split: Option<PrivacySplit<'_>>) -> Evaluated {
        self.evaluate_timed(request, split, Timing::Stages)
    }

    /// [`Runtime::evaluate`], measuring only what `timing` asks for (see [`Timing`]).
    pub fn evaluate_timed(
        &self,
        request: AccessRequest,
        split: Option<PrivacySplit<'_>>,
        timing: Timing,
    ) -> Evaluated {
        let Some(split) = split else {
            let decision = self.decide_unrecorded(&request, timing);
            let mut view = request;
            view.credential = None;
            if let Some(identity) = &decision.identity {
                view.authenticated = true;
                merge_roles(&mut view.roles, &identity.roles);
            }
            let subject = decision.identity.as_ref().map(|i| i.subject.clone());
            let decision = self.recorded(decision, &view, subject.clone());
            return Evaluated {
                decision,
                view,
                subject,
            };
        };
        let started = Instant::now();
        let mut view = request.clone();
        view.credential = None;
        view.originator = match split.pseudonyms.pseudonym(&request.originator) {
            // A request without an originator (an AE registration): there is no identity to
            // hide, and plugins must be able to tell it from a real one.
            _ if request.originator.is_empty() => String::new(),
            Ok(pseudonym) => pseudonym,
            Err(error) => {
                tracing::error!(app = %request.app, error = %error, source = ?error.source(), "cannot compute a pseudonym");
                view.originator = UNAVAILABLE_PSEUDONYM.into();
                let decision = Decision::deny_unplugged(
                    &request.app,
                    "the originator's pseudonym cannot be computed",
                    started.elapsed().as_micros() as u64,
                );
                let decision = self.recorded(decision, &view, None);
                return Evaluated {
                    decision,
                    view,
                    subject: None,
                };
            }
        };
        let mut authn_stages = Vec::new();
        let mut authenticate_us = 0;
        let mut identity = None;
        if let (Some(_), Some(authn_app)) = (&request.credential, split.authn_app) {
            let mut real = request.clone();
            real.app = authn_app.to_string();
            let mut outcome = self.decide_unrecorded(&real, timing);
            outcome.app = request.app.clone();
            match outcome.identity.take() {
                Some(found) => {
                    view.authenticated = true;
                    merge_roles(&mut view.roles, &found.roles);
                    identity = Some(found);
                }
                // Rejected, failed or expired (anything but not-applicable everywhere): that
                // answer stands, as it would in a single pipeline (monitor mode included).
                None if outcome
                    .stages
                    .iter()
                    .any(|s| s.outcome != Outcome::NotApplicable) =>
                {
                    // Recorded as the authorizers would see it: the pseudonym, no credential.
                    return Evaluated {
                        decision: self.recorded(outcome, &view, None),
                        view,
                        subject: None,
                    };
                }
                None => {}
            }
            authenticate_us = outcome.timings.authenticate_us;
            authn_stages = outcome.stages;
        }
        let mut decision = self.decide_unrecorded(&view, timing);
        if !authn_stages.is_empty() {
            authn_stages.append(&mut decision.stages);
            decision.stages = authn_stages;
        }
        decision.timings.authenticate_us = authenticate_us;
        decision.timings.total_us = started.elapsed().as_micros() as u64;
        let subject = identity.as_ref().map(|found| {
            split
                .pseudonyms
                .pseudonym(&found.subject)
                .unwrap_or_default()
        });
        decision.identity = identity;
        let decision = self.recorded(decision, &view, subject.clone());
        Evaluated {
            decision,
            view,
            subject,
        }
    }
}

/// Replaces every `"originator:<ID>"` string in `value` (not in object keys) with `map(ID)`.
pub fn rewrite_markers<E>(
    value: &mut serde_json::Value,
    map: &mut impl FnMut(&str) -> Result<String, E>,
) -> Result<(), E> {
    match value {
        serde_json::Value::String(text) => {
            if let Some(id) = text.strip_prefix(ORIGINATOR_MARKER) {
                *text = map(id)?;
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                rewrite_markers(item, map)?;
            }
        }
        serde_json::Value::Object(members) => {
            for (_, member) in members.iter_mut() {
                rewrite_markers(member, map)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn merge_roles(roles: &mut Vec<String>, extra: &[String]) {
    for role in extra {
        if !roles.contains(role) {
            roles.push(role.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Engine, EngineConfig};
    use crate::pipeline::{AppSpec, Effect};
    use crate::request::{Credential, Operation};
    use crate::sandbox::PluginSetup;

    /// Pseudonyms by a keyed hash, as an embedder would make them (the gateway's come from
    /// its keystore).
    struct Keyed(&'static str);

    impl Pseudonyms for Keyed {
        fn pseudonym(&self, originator: &str) -> Result<String, PseudonymError> {
            use hmac::Mac;
            let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(self.0.as_bytes())
                .expect("HMAC takes keys of any length");
            mac.update(originator.as_bytes());
            Ok(format!(
                "anon-{}",
                hex::encode(&mac.finalize().into_bytes()[..16])
            ))
        }
    }

    /// A secret that is gone (an HSM unplugged).
    struct Unavailable;

    impl Pseudonyms for Unavailable {
        fn pseudonym(&self, _: &str) -> Result<String, PseudonymError> {
            Err(PseudonymError::new("the token is not present"))
        }
    }

    /// An app whose ACP permits exactly `allowed` to retrieve.
    fn runtime_allowing(allowed: &str) -> Runtime {
        let runtime = Runtime::new(Engine::new(EngineConfig::default()).unwrap()).unwrap();
        let policy = serde_json::json!({"policies": [{"id": "p", "pv": {"acr": [{"acor": [allowed], "acop": 2}]}}]});
        runtime
            .install(AppSpec::new("lights").plugin(
                PluginSetup::new("acp", policy.to_string()),
                palisade_artifacts::ACP,
            ))
            .unwrap();
        runtime
    }

    fn retrieve(originator: &str) -> AccessRequest {
        let mut request = AccessRequest::new(
            "lights",
            originator,
            Operation::Retrieve,
            "/cse-in/lights/a",
        );
        request.credential = Some(Credential {
            scheme: "bearer".into(),
            value: "secret".into(),
        });
        request
    }

    #[test]
    fn authorizers_see_the_pseudonym_and_never_the_credential() {
        let keyed = Keyed("lights-secret");
        let pseudonym = keyed.pseudonym("CAE1").unwrap();
        let runtime = runtime_allowing(&pseudonym);
        let split = Some(PrivacySplit::new(&keyed));

        let answer = runtime.evaluate(retrieve("CAE1"), split);
        assert_eq!(
            answer.decision.effect,
            Effect::Permit,
            "{:?}",
            answer.decision
        );
        assert_eq!(answer.view.originator, pseudonym);
        assert!(answer.view.credential.is_none());
        // Another originator's pseudonym is not the permitted one.
        let other = runtime.evaluate(retrieve("CAE2"), split);
        assert_eq!(other.decision.effect, Effect::Deny);
        // Without the split (consent) the authorizer sees the real ID, which the policy
        // does not name.
        let consent = runtime.evaluate(retrieve("CAE1"), None);
        assert_eq!(consent.decision.effect, Effect::Deny);
        assert_eq!(consent.view.originator, "CAE1");
        assert!(consent.view.credential.is_none());
        // A request without an originator stays without one.
        let registration = runtime.evaluate(retrieve(""), split);
        assert_eq!(registration.view.originator, "");
    }

    #[test]
    fn a_pseudonym_that_cannot_be_computed_denies_without_running_a_plugin() {
        let runtime = runtime_allowing("CAE1");
        let answer = runtime.evaluate(retrieve("CAE1"), Some(PrivacySplit::new(&Unavailable)));
        assert_eq!(answer.decision.effect, Effect::Deny);
        assert!(
            answer.decision.reason.contains("pseudonym"),
            "{}",
            answer.decision.reason
        );
        assert!(answer.decision.stages.is_empty());
        assert_eq!(answer.view.originator, UNAVAILABLE_PSEUDONYM);
        assert!(answer.subject.is_none());
    }

    #[test]
    fn markers_are_rewritten_everywhere_but_keys() {
        let mut value = serde_json::json!({"acor": ["originator:CAE1", "all"], "originator:x": {"n": ["originator:C2"]}});
        rewrite_markers::<()>(&mut value, &mut |id| Ok(format!("<{id}>"))).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"acor": ["<CAE1>", "all"], "originator:x": {"n": ["<C2>"]}})
        );
    }
}
