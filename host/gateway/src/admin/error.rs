//! Errors of the admin API: `{"error":{"code","message"}}` with a stable code. Registry
//! refusals reuse the [`VerifyError`](palisade_registry::VerifyError) and [`StoreError`] codes.

use hyper::StatusCode;

use crate::error::{json_response, Response};
use palisade_registry::{NameError, StoreError};

/// Why an admin request was refused.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// 401 `missing-auth`: an admin header is missing (SER-008).
    #[error("the admin request has no {0} header; sign it (palisade push does)")]
    MissingAuth(&'static str),
    /// 401 `bad-auth`: an admin header is unreadable.
    #[error("{0}")]
    BadAuth(String),
    /// 401 `unknown-admin-key` (SER-008).
    #[error("the admin key {0} is not one of this gateway's admin keys")]
    UnknownAdminKey(String),
    /// 401 `bad-request-signature`.
    #[error("the admin request signature does not verify for this key id, method, path, body hash and length, timestamp and nonce")]
    BadSignature,
    /// 401 `stale-request` (SER-012).
    #[error("the admin request timestamp is {skew} s away from the gateway clock (at most 300 s allowed)")]
    Stale {
        /// Seconds between the request's timestamp and the gateway clock.
        skew: u64,
    },
    /// 401 `replayed-request` (SER-012).
    #[error("this admin request nonce was already used: the request is a replay")]
    Replayed,
    /// 503 `replay-cache-full` (SER-012: refuse rather than forget nonces).
    #[error("too many admin requests in the last minutes; retry later")]
    ReplayCacheFull,
    /// 411 `length-required`: a body without `Content-Length` (its length is signed).
    #[error(
        "admin requests need a Content-Length: the body's length is part of the signed request"
    )]
    LengthRequired,
    /// 401 `body-mismatch`: the body is not the one the request's signature names.
    #[error("the body does not match the signed request: {0}")]
    BodyMismatch(String),
    /// 503 `admin-busy`: the admin API's concurrency limit is reached (SER-001).
    #[error("the admin API is handling {limit} requests already; retry shortly")]
    Busy {
        /// `[admin] max_concurrent_requests`.
        limit: usize,
    },
    /// 503 `audit-unavailable` (SER-016): the action could not be recorded, so it was not
    /// performed.
    #[error("not performed: {0}")]
    AuditUnavailable(crate::audit::AuditRefusal),
    /// 400 `invalid-name`: an application or plugin name in the path.
    #[error(transparent)]
    Name(#[from] NameError),
    /// 400 `invalid-request`.
    #[error("{0}")]
    Invalid(String),
    /// 413 `too-large`: the body exceeds the module size limit (SER-001).
    #[error("the module exceeds the size limit of {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// 422 `wrong-world`: the component does not implement its declared kind's world.
    #[error("the manifest declares the kind {declared}, but the component implements {found}; it was not stored")]
    WrongWorld {
        /// The kind in the manifest.
        declared: String,
        /// What the component exports.
        found: String,
    },
    /// 422 `compile-failed`.
    #[error("the component does not compile")]
    Compile(#[source] palisade_core::EngineError),
    /// 404 `unknown-app`: the application is not installed on this gateway.
    #[error("no application named {0:?} is installed on this gateway")]
    UnknownApp(String),
    /// A registry refusal, with the registry's code.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// 500 `swap-failed`: stored and activated, but the runtime refused the swap.
    #[error("the module was activated in the registry but could not be loaded")]
    Swap(#[source] palisade_core::InstallError),
    /// 404 `not-found`.
    #[error("nothing is served at {0}")]
    NotFound(String),
}

impl AdminError {
    /// The stable code.
    pub fn code(&self) -> &'static str {
        match self {
            AdminError::MissingAuth(_) => "missing-auth",
            AdminError::BadAuth(_) => "bad-auth",
            AdminError::UnknownAdminKey(_) => "unknown-admin-key",
            AdminError::BadSignature => "bad-request-signature",
            AdminError::Stale { .. } => "stale-request",
            AdminError::Replayed => "replayed-request",
            AdminError::ReplayCacheFull => "replay-cache-full",
            AdminError::LengthRequired => "length-required",
            AdminError::BodyMismatch(_) => "body-mismatch",
            AdminError::Busy { .. } => "admin-busy",
            AdminError::AuditUnavailable(_) => "audit-unavailable",
            AdminError::Name(_) => "invalid-name",
            AdminError::Invalid(_) => "invalid-request",
            AdminError::TooLarge { .. } => "too-large",
            AdminError::WrongWorld { .. } => "wrong-world",
            AdminError::Compile(_) => "compile-failed",
            AdminError::UnknownApp(_) => "unknown-app",
            AdminError::Store(e) => e.code(),
            AdminError::Swap(_) => "swap-failed",
            AdminError::NotFound(_) => "not-found",
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        use StoreError as S;
        match self {
            AdminError::MissingAuth(_)
            | AdminError::BadAuth(_)
            | AdminError::UnknownAdminKey(_)
            | AdminError::BadSignature
            | AdminError::Stale { .. }
            | AdminError::Replayed
            | AdminError::BodyMismatch(_) => StatusCode::UNAUTHORIZED,
            AdminError::ReplayCacheFull
            | AdminError::Busy { .. }
            | AdminError::AuditUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AdminError::LengthRequired => StatusCode::LENGTH_REQUIRED,
            AdminError::Name(_) | AdminError::Invalid(_) => StatusCode::BAD_REQUEST,
            AdminError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            AdminError::WrongWorld { .. } | AdminError::Compile(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            AdminError::UnknownApp(_) | AdminError::NotFound(_) => StatusCode::NOT_FOUND,
            AdminError::Swap(_) => StatusCode::INTERNAL_SERVER_ERROR,
            AdminError::Store(e) => match e {
                S::Refused(palisade_registry::VerifyError::TooLarge { .. }) => {
                    StatusCode::PAYLOAD_TOO_LARGE
                }
                S::Refused(_) => StatusCode::UNPROCESSABLE_ENTITY,
                S::VersionNotGreater { .. }
                | S::VersionConflict { .. }
                | S::KindConflict { .. }
                | S::RemoveActive { .. }
                | S::NoRollbackTarget { .. }
                | S::Failed { .. } => StatusCode::CONFLICT,
                S::NotFound { .. } | S::NoActiveVersion { .. } => StatusCode::NOT_FOUND,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            },
        }
    }

    /// The JSON error response.
    pub fn into_response(self) -> Response {
        let body = crate::error::ErrorBody::for_error(self.code(), &self);
        let mut response = json_response(self.status(), &body);
        if matches!(self, AdminError::Busy { .. } | AdminError::ReplayCacheFull) {
            response.headers_mut().insert(
                hyper::header::RETRY_AFTER,
                hyper::header::HeaderValue::from(1),
            );
        }
        response
    }
}
