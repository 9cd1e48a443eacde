//! What the pipeline answers: a decision with its reason, who made it, and diagnostics that
//! explain it stage by stage.

use std::sync::Arc;

use serde::Serialize;

use crate::sandbox::PluginLabel;

/// Permit or deny. There is nothing in between: anything indeterminate is a deny.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    Permit,
    Deny,
}

/// The identity an authenticator established.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Identity {
    pub subject: String,
    pub roles: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    /// The authenticator that established it.
    pub authenticator: String,
}

/// The pipeline's stages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    Resolve,
    Authenticate,
    Authorize,
    Filter,
}

/// What one plugin answered in one stage.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StageReport {
    pub stage: Stage,
    pub plugin: Arc<PluginLabel>,
    /// `permit`, `deny`, `not-applicable`, `authenticated`, `rejected`, `unchanged`,
    /// `rewrite`, `block` or `failed`.
    pub outcome: &'static str,
    /// The plugin's reason, or the failure's description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// For `failed`: a stable code (`time-limit`, `memory-limit`, `trap`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<&'static str>,
    pub micros: u64,
}

/// Time spent per stage, in microseconds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Timings {
    pub authenticate_us: u64,
    pub authorize_us: u64,
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
    pub would_deny: Option<String>,
    /// The identity established by authentication, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<Identity>,
    /// Every plugin's answer, in order.
    pub stages: Vec<StageReport>,
    pub timings: Timings,
}

impl Decision {
    pub fn is_permit(&self) -> bool {
        self.effect == Effect::Permit
    }
}

/// The answer to [`crate::Runtime::filter_response`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FilteredResponse {
    /// Deliver this body (the original, or as the filters rewrote it).
    Deliver {
        body: Vec<u8>,
        stages: Vec<StageReport>,
    },
    /// Deliver nothing; the reason says which filter blocked it or failed.
    Blocked {
        reason: String,
        stages: Vec<StageReport>,
    },
}
