//! What the pipeline answers: a decision with its reason, who made it, and diagnostics that
//! explain it stage by stage.

use std::sync::Arc;

use serde::Serialize;

use crate::sandbox::PluginLabel;

/// Permit or deny. There is nothing in between: anything indeterminate is a deny.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    /// Allow the request.
    Permit,
    /// Refuse the request.
    Deny,
}

/// The identity an authenticator established.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Identity {
    /// Who the credential belongs to.
    pub subject: String,
    /// Roles the authenticator granted; authorizers see them with the request.
    pub roles: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// When the identity stops being valid (seconds since the Unix epoch).
    pub expires_at: Option<u64>,
    /// The authenticator that established it.
    pub authenticator: String,
}

/// The pipeline's stages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// Finding the application (no plugin runs).
    Resolve,
    /// Authenticators check the credential.
    Authenticate,
    /// Authorizers decide.
    Authorize,
    /// Filters check the response.
    Filter,
}

/// What one plugin answered in one stage.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StageReport {
    /// The stage.
    pub stage: Stage,
    /// The plugin that answered.
    pub plugin: Arc<PluginLabel>,
    /// What the plugin answered.
    pub outcome: Outcome,
    /// The plugin's reason, or the failure's description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// For `failed`: a stable code (`time-limit`, `memory-limit`, `trap`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<&'static str>,
    /// Time the plugin took, in microseconds (0 unless the decision was made with
    /// [`Timing::Stages`]).
    pub micros: u64,
}

/// What one plugin answered in one stage; serialized in kebab-case (`not-applicable`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Outcome {
    /// An authorizer permitted.
    Permit,
    /// An authorizer denied.
    Deny,
    /// An authorizer or authenticator did not apply to the request.
    NotApplicable,
    /// An authenticator accepted the credential.
    Authenticated,
    /// An authenticator rejected the credential.
    Rejected,
    /// A filter passed the response unchanged.
    Unchanged,
    /// A filter rewrote the response.
    Rewrite,
    /// A filter blocked the response.
    Block,
    /// The plugin failed (see [`StageReport::failure`]).
    Failed,
}

impl Outcome {
    /// The name used in JSON, logs and metrics (`not-applicable`).
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Permit => "permit",
            Outcome::Deny => "deny",
            Outcome::NotApplicable => "not-applicable",
            Outcome::Authenticated => "authenticated",
            Outcome::Rejected => "rejected",
            Outcome::Unchanged => "unchanged",
            Outcome::Rewrite => "rewrite",
            Outcome::Block => "block",
            Outcome::Failed => "failed",
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How much of a decision's time the pipeline measures.
///
/// Every clock read is on the decision path (~1-2 % of a warm decision each, BENCHMARKS.md,
/// round four), and per-stage times are wanted only when someone reads the explanation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Timing {
    /// `timings.total_us` only (two clock reads per decision): what metrics need.
    /// `authenticate_us`, `authorize_us` and every stage's `micros` are 0.
    Total,
    /// Every stage and every plugin call timed as well: two more clock reads per stage and
    /// per plugin call. What [`crate::Runtime::is_authorized`] does.
    #[default]
    Stages,
}

/// Time spent per stage, in microseconds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Timings {
    /// In the authenticators (0 unless timed with [`Timing::Stages`]).
    pub authenticate_us: u64,
    /// In the authorizers (0 unless timed with [`Timing::Stages`]).
    pub authorize_us: u64,
    /// The whole decision.
    pub total_us: u64,
}

/// The answer to [`crate::Runtime::is_authorized`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// What the gateway must do.
    pub effect: Effect,
    /// Why, in a sentence for operators and audit.
    pub reason: String,
    /// The application that decided.
    pub app: String,
    /// The plugin whose answer settled the decision (the denying one, or the first
    /// permitting one), if any plugin did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<Arc<PluginLabel>>,
    /// False in monitor mode: the effect is permit, and `would_deny` tells what enforcing
    /// would have done.
    pub enforced: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// In monitor mode, the reason enforcing would have denied.
    pub would_deny: Option<String>,
    /// The identity established by authentication, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<Identity>,
    /// Every plugin's answer, in order.
    pub stages: Vec<StageReport>,
    /// Where the time went.
    pub timings: Timings,
    /// The id of the decision's audit record, when the runtime has an audit sink
    /// ([`crate::Runtime::set_audit_sink`]); `None` otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision_id: Option<String>,
}

impl Decision {
    /// Whether the effect is [`Effect::Permit`].
    pub fn is_permit(&self) -> bool {
        self.effect == Effect::Permit
    }

    /// A deny no plugin took part in (an unknown application, the embedder's own refusal, a
    /// pseudonym that cannot be computed), after `total_us` microseconds.
    pub fn deny_unplugged(app: &str, reason: impl Into<String>, total_us: u64) -> Decision {
        Decision {
            effect: Effect::Deny,
            reason: reason.into(),
            app: app.to_string(),
            decided_by: None,
            enforced: true,
            would_deny: None,
            identity: None,
            stages: Vec::new(),
            timings: Timings {
                total_us,
                ..Timings::default()
            },
            decision_id: None,
        }
    }
}

/// The answer to [`crate::Runtime::filter_response`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FilteredResponse {
    /// Deliver this body (the original, or as the filters rewrote it).
    Deliver {
        /// The body to deliver.
        body: Vec<u8>,
        /// Every filter's answer, in order.
        stages: Vec<StageReport>,
    },
    /// Deliver nothing; the reason says which filter blocked it or failed.
    Blocked {
        /// Which filter blocked it, or failed.
        reason: String,
        /// Every filter's answer, in order.
        stages: Vec<StageReport>,
    },
}
