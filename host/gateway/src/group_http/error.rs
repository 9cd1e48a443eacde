//! Errors of the group-authentication endpoints. Each has a stable code (clients branch on
//! it) and an HTTP status; the body is `{"error": {"code": "...", "message": "..."}}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use palisade_group::{GroupError, Mode, Rejection};

/// Why a request to the server role or the gateway agent was refused.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// A refusal of the library (see [`HttpError::code`] for the mapping).
    #[error(transparent)]
    Group(#[from] GroupError),
    /// 413 `body-too-large` (SER-001).
    #[error("the body exceeds this endpoint's limit of {limit} bytes")]
    BodyTooLarge {
        /// The endpoint's limit.
        limit: usize,
    },
    /// 400 `bad-body`: the body could not be read.
    #[error("could not read the body: {0}")]
    BadBody(String),
    /// 415 `unsupported-media-type`.
    #[error("expected Content-Type: {}", super::CONTENT_TYPE)]
    UnsupportedMediaType,
    /// 400 `invalid-request`: a bad path or query parameter.
    #[error("{0}")]
    InvalidRequest(String),
    /// 422 `stale-request`: a challenge request's time is too far from the server's (SER-012).
    #[error("challenge request made at {issued_at}, server time is {now}")]
    StaleRequest {
        /// The request's time.
        issued_at: u64,
        /// The server's time.
        now: u64,
    },
    /// 409 `request-replayed`: this signed challenge request was already served (SER-012).
    #[error("challenge request replayed")]
    RequestReplayed,
    /// 404 `not-found`.
    #[error("nothing is served at {0}")]
    NotFound(String),
    /// 405 `method-not-allowed`.
    #[error("method not allowed on this path")]
    MethodNotAllowed,
    /// 404 `no-round`: the agent has no round open for the group.
    #[error("no round of group authentication is open for group {0}")]
    NoRound(String),
    /// 409 `round-in-progress`: a round for the group is still collecting or forwarding.
    #[error("a round of group authentication is already in progress for group {0}")]
    RoundInProgress(String),
    /// 409 `round-closed`: the round no longer collects answers.
    #[error("the round is closed: answers are no longer collected")]
    RoundClosed,
    /// 409 `wrong-mode`: the request does not apply to this round's mode.
    #[error("the round runs in {0:?} mode")]
    WrongMode(Mode),
    /// 403 `unexpected-device`: not a member the agent expects in this group.
    #[error("device {device} is not an expected member of group {group}")]
    UnexpectedDevice {
        /// The group.
        group: String,
        /// The device.
        device: String,
    },
    /// 409 `already-answered`: one answer per device and round.
    #[error("device {0} already answered in this round")]
    AlreadyAnswered(String),
    /// The agent refused a device's answer before it could take the member's slot: 401
    /// `bad-signature` (not signed by the member's provisioned key), 422 `ephemeral-key-mismatch`
    /// (made for the other mode).
    #[error("the answer of {device} was refused: {reason}")]
    AnswerRefused {
        /// The device it claims to be from.
        device: String,
        /// Why.
        reason: Rejection,
    },
    /// 410 `association-expired`: the association of this sealed message expired (#16.6).
    #[error("the association expired at {0}")]
    AssociationExpired(u64),
    /// 429 `too-many-requests`: this client address's bucket is empty (SER-001).
    #[error("too many requests from this address; retry in {retry_after_secs} s")]
    RateLimited {
        /// When to retry.
        retry_after_secs: u64,
    },
    /// 409 `answer-for-other-challenge`: the answer names another challenge than the round's
    /// (replayed from an earlier round, or made for another group; SER-012).
    #[error("the answer was made for another challenge than this round's")]
    AnswerForOtherChallenge,
    /// 403 `device-rejected`: the round finished and this device was not authenticated.
    #[error("device {device} was rejected: {reason}")]
    DeviceRejected {
        /// The device.
        device: String,
        /// Why.
        reason: Rejection,
    },
    /// 404 `no-confirmation`: the device did not answer in the finished round.
    #[error("no confirmation for device {0}: it did not answer in this round")]
    NoConfirmation(String),
    /// A refusal recorded earlier, replayed with its status and code: the server's own
    /// refusal passed through by the agent, or the failure of a round.
    #[error("{message}")]
    Failed {
        /// Its status.
        status: StatusCode,
        /// Its code.
        code: String,
        /// Its message.
        message: String,
    },
    /// 502 `server-unavailable`: the server could not be reached or answered badly.
    #[error("the group server is unavailable: {0}")]
    ServerUnavailable(String),
    /// 500 `internal`.
    #[error("internal error: {0}")]
    Internal(String),
}

fn group_status(e: &GroupError) -> (StatusCode, &'static str) {
    use GroupError as G;
    use StatusCode as S;
    match e {
        G::Wire(_) => (S::BAD_REQUEST, "malformed-message"),
        G::InvalidIdentifier(_) => (S::BAD_REQUEST, "invalid-identifier"),
        G::UnknownGroup(_) => (S::NOT_FOUND, "unknown-group"),
        // On the server an unregistered gateway is an unauthenticated one.
        G::UnknownGateway(_) => (S::UNAUTHORIZED, "unknown-gateway"),
        G::BadSignature(_) => (S::UNAUTHORIZED, "bad-signature"),
        G::GatewayNotAuthorized { .. } => (S::FORBIDDEN, "gateway-not-authorized"),
        G::GatewayMismatch { .. } => (S::FORBIDDEN, "gateway-mismatch"),
        G::DeviceRejected(_) => (S::FORBIDDEN, "device-rejected"),
        G::UnknownChallenge => (S::NOT_FOUND, "unknown-challenge"),
        G::UnknownSession => (S::NOT_FOUND, "unknown-session"),
        G::ChallengeExpired { .. } => (S::GONE, "challenge-expired"),
        G::ChallengeReplayed => (S::CONFLICT, "challenge-replayed"),
        G::ChallengeAlreadyUsed => (S::CONFLICT, "challenge-already-used"),
        G::ConfirmationReplayed => (S::CONFLICT, "confirmation-replayed"),
        G::TooManyMembers { .. } => (S::UNPROCESSABLE_ENTITY, "too-many-members"),
        G::InvalidValidity => (S::UNPROCESSABLE_ENTITY, "invalid-validity"),
        G::WrongMode { .. } => (S::UNPROCESSABLE_ENTITY, "wrong-mode"),
        G::GroupMismatch { .. } => (S::UNPROCESSABLE_ENTITY, "group-mismatch"),
        G::BadConfirmation => (S::UNPROCESSABLE_ENTITY, "bad-confirmation"),
        G::LowOrderKey => (S::UNPROCESSABLE_ENTITY, "low-order-key"),
        G::UnwrapFailed => (S::UNPROCESSABLE_ENTITY, "unwrap-failed"),
        G::EvidenceRequired(_) => (S::UNPROCESSABLE_ENTITY, "evidence-required"),
        G::ReplayCacheFull => (S::SERVICE_UNAVAILABLE, "busy"),
        // The shared state store did not answer: refused, never decided locally (#17.4).
        G::StateUnavailable(_) => (S::SERVICE_UNAVAILABLE, "state-unavailable"),
        G::WeakMemberKey(_) | G::Key(_) => (S::INTERNAL_SERVER_ERROR, "internal"),
        G::ChannelReplay { .. }
        | G::ChannelOutOfOrder { .. }
        | G::ChannelTampered
        | G::ChannelMisrouted
        | G::ChannelExhausted => (S::UNPROCESSABLE_ENTITY, "channel-error"),
        // A refusal this build does not know yet: a server-side failure, never a pass.
        _ => (S::INTERNAL_SERVER_ERROR, "internal"),
    }
}

impl HttpError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        use HttpError as H;
        use StatusCode as S;
        match self {
            H::Group(e) => group_status(e).0,
            H::BodyTooLarge { .. } => S::PAYLOAD_TOO_LARGE,
            H::BadBody(_) | H::InvalidRequest(_) => S::BAD_REQUEST,
            H::UnsupportedMediaType => S::UNSUPPORTED_MEDIA_TYPE,
            H::StaleRequest { .. } => S::UNPROCESSABLE_ENTITY,
            H::NotFound(_) | H::NoRound(_) | H::NoConfirmation(_) => S::NOT_FOUND,
            H::MethodNotAllowed => S::METHOD_NOT_ALLOWED,
            H::RequestReplayed
            | H::RoundInProgress(_)
            | H::RoundClosed
            | H::WrongMode(_)
            | H::AlreadyAnswered(_)
            | H::AnswerForOtherChallenge => S::CONFLICT,
            H::UnexpectedDevice { .. } | H::DeviceRejected { .. } => S::FORBIDDEN,
            H::Failed { status, .. } => *status,
            H::AnswerRefused {
                reason: Rejection::BadSignature,
                ..
            } => S::UNAUTHORIZED,
            H::AnswerRefused { .. } => S::UNPROCESSABLE_ENTITY,
            H::RateLimited { .. } => S::TOO_MANY_REQUESTS,
            H::AssociationExpired(_) => S::GONE,
            H::ServerUnavailable(_) => S::BAD_GATEWAY,
            H::Internal(_) => S::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable code.
    pub fn code(&self) -> &str {
        use HttpError as H;
        match self {
            H::Group(e) => group_status(e).1,
            H::BodyTooLarge { .. } => "body-too-large",
            H::BadBody(_) => "bad-body",
            H::UnsupportedMediaType => "unsupported-media-type",
            H::InvalidRequest(_) => "invalid-request",
            H::StaleRequest { .. } => "stale-request",
            H::RequestReplayed => "request-replayed",
            H::NotFound(_) => "not-found",
            H::MethodNotAllowed => "method-not-allowed",
            H::NoRound(_) => "no-round",
            H::RoundInProgress(_) => "round-in-progress",
            H::RoundClosed => "round-closed",
            H::WrongMode(_) => "wrong-mode",
            H::UnexpectedDevice { .. } => "unexpected-device",
            H::AlreadyAnswered(_) => "already-answered",
            H::AnswerForOtherChallenge => "answer-for-other-challenge",
            H::DeviceRejected { .. } => "device-rejected",
            H::NoConfirmation(_) => "no-confirmation",
            H::Failed { code, .. } => code,
            H::AnswerRefused {
                reason: Rejection::BadSignature,
                ..
            } => "bad-signature",
            H::AnswerRefused { .. } => "ephemeral-key-mismatch",
            H::RateLimited { .. } => "too-many-requests",
            H::AssociationExpired(_) => "association-expired",
            H::ServerUnavailable(_) => "server-unavailable",
            H::Internal(_) => "internal",
        }
    }

    /// A copy that keeps status, code and message (errors of the library are not `Clone`; a
    /// failed round answers every later request with its failure).
    pub fn recorded(&self) -> HttpError {
        HttpError::Failed {
            status: self.status(),
            code: self.code().to_owned(),
            message: palisade_types::Chain(self).to_string(),
        }
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(code = self.code(), error = %palisade_types::Chain(&self), "group endpoint failed");
        } else {
            tracing::debug!(code = self.code(), error = %palisade_types::Chain(&self), "group request refused");
        }
        let body = crate::error::ErrorBody::for_error(self.code(), &self);
        let retry = match &self {
            HttpError::RateLimited { retry_after_secs } => Some(*retry_after_secs),
            _ => None,
        };
        let mut r = (status, axum::Json(body)).into_response();
        if let Some(secs) = retry {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        } else if status == StatusCode::SERVICE_UNAVAILABLE {
            // A 503 is a full replay cache or pending table, which drains as challenges expire
            // (SER-001, SER-012), or an unreachable shared state store.
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        r
    }
}

/// Why a server registry file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A public key is not 64 hex digits.
    #[error("{0}: the public key must be 64 hex digits")]
    BadKey(String),
    /// A group names a device the file gives no key for.
    #[error("group {group} names device {device}, which has no entry in \"devices\"")]
    UnknownDevice {
        /// The group.
        group: String,
        /// The device.
        device: String,
    },
    /// A gateway may represent a group the file does not define.
    #[error("gateway {gateway} represents group {group}, which has no entry in \"groups\"")]
    UnknownGroup {
        /// The gateway.
        gateway: String,
        /// The group.
        group: String,
    },
    /// The library refused an entry (invalid identifier, weak key, too many members).
    #[error("{what} is refused")]
    Invalid {
        /// The entry.
        what: String,
        /// Why.
        source: GroupError,
    },
}
