//! Errors of the gateway's JSON endpoints, each with a stable code and an HTTP status:
//! clients branch on `error.code`, people read `error.message`.
//!
//! ```json
//! {"error": {"code": "malformed-json", "message": "expected `:` at line 1 column 14"}}
//! ```

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use hyper::StatusCode;

use super::protect::Refusal;

/// Every response body the gateway sends.
pub type Body = Full<Bytes>;
/// Every response the gateway sends.
pub type Response = hyper::Response<Body>;

/// A request the gateway would not or could not handle.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 `malformed-json`: the body is not JSON.
    #[error("the body is not valid JSON: {0}")]
    MalformedJson(String),
    /// 400 `invalid-request`: JSON, but not a request (missing or unknown field, bad value).
    #[error("{0}")]
    InvalidRequest(String),
    /// 404 `unknown-app`: the named application is not installed.
    #[error("no application named {0:?} is installed")]
    UnknownApp(String),
    /// 404 `no-app-for-target`: no `app` given and no application's paths cover the target.
    #[error("no application's paths cover the target {0:?}; name the app or add the path to an app's `paths`")]
    NoAppForTarget(String),
    /// 413 `body-too-large` (SER-001).
    #[error("the body exceeds {limit} bytes")]
    BodyTooLarge { limit: usize },
    /// 408 `body-timeout`: the client did not send its body in time (SER-001).
    #[error("the body did not arrive within {ms} ms")]
    BodyTimeout { ms: u64 },
    /// 429 `rate-limited` (SER-001), with `Retry-After`.
    #[error("too many requests from this {}; retry in {} s", match .0 { Refusal::Originator(_) => "originator", Refusal::SourceIp(_) => "address" }, .0.retry_after_secs())]
    RateLimited(Refusal),
    /// 503 `overloaded`: too many requests in flight (SER-001), with `Retry-After`.
    #[error("the gateway is at its limit of requests in flight; retry shortly")]
    Overloaded,
    /// 405 `method-not-allowed`.
    #[error("{0}")]
    MethodNotAllowed(&'static str),
    /// 404 `not-found`.
    #[error("nothing is served at {0}")]
    NotFound(String),
    /// 400 `too-long`: a field over its `[limits]` bound, refused before any plugin runs
    /// (issue 11.4).
    #[error("{field} is {length} bytes, over the limit of {limit} ([limits] {key})")]
    TooLong {
        field: &'static str,
        length: usize,
        limit: usize,
        key: &'static str,
    },
    /// 403 `untrusted-field`: the request claims something (`authenticated`, `roles`,
    /// `request_time`) believed only from trusted callers (issue 11.8).
    #[error("{0} is believed only from trusted callers (a listener's trusted_decide_callers, or a client certificate it names in trusted_decide_clients); leave the field out and let the app's authenticators establish it")]
    UntrustedField(&'static str),
    /// 400 `target-outside-app`: the named application is not the one the target belongs
    /// to (issue 11.8).
    #[error("application {app:?} does not decide {target:?}: {}", match .owner { Some(owner) => format!("the target belongs to application {owner:?}"), None => "no application's paths cover it".to_string() })]
    TargetOutsideApp {
        app: String,
        target: String,
        owner: Option<String>,
    },
    /// 503 `audit-unavailable`: the decision could not be recorded, so it is not answered
    /// (SER-016), with `Retry-After`.
    #[error("refused: {0}")]
    AuditUnavailable(super::audit::AuditRefusal),
    /// 403 `originator-not-authenticated` (oneM2M 4106): the app establishes its originators
    /// by TLS or tokens and this request did not ([`super::originator`]); before any plugin.
    /// 503 `token-replay-unavailable` when the token replay check could not take the token
    /// (full or not writable: fail closed), with `Retry-After`.
    #[error("{0} (decision {1})")]
    Originator(super::originator::Refusal, String),
}

impl ApiError {
    /// The stable code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::MalformedJson(_) => "malformed-json",
            ApiError::InvalidRequest(_) => "invalid-request",
            ApiError::UnknownApp(_) => "unknown-app",
            ApiError::NoAppForTarget(_) => "no-app-for-target",
            ApiError::BodyTooLarge { .. } => "body-too-large",
            ApiError::BodyTimeout { .. } => "body-timeout",
            ApiError::RateLimited(_) => "rate-limited",
            ApiError::Overloaded => "overloaded",
            ApiError::MethodNotAllowed(_) => "method-not-allowed",
            ApiError::NotFound(_) => "not-found",
            ApiError::TooLong { .. } => "too-long",
            ApiError::UntrustedField(_) => "untrusted-field",
            ApiError::TargetOutsideApp { .. } => "target-outside-app",
            ApiError::AuditUnavailable(_) => "audit-unavailable",
            ApiError::Originator(super::originator::Refusal::NotAuthenticated { .. }, _) => {
                "originator-not-authenticated"
            }
            ApiError::Originator(super::originator::Refusal::ReplayUnavailable(_), _) => {
                "token-replay-unavailable"
            }
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::MalformedJson(_) | ApiError::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::UnknownApp(_) | ApiError::NoAppForTarget(_) | ApiError::NotFound(_) => {
                StatusCode::NOT_FOUND
            }
            ApiError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            ApiError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::TooLong { .. } | ApiError::TargetOutsideApp { .. } => StatusCode::BAD_REQUEST,
            ApiError::UntrustedField(_) => StatusCode::FORBIDDEN,
            ApiError::AuditUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Originator(super::originator::Refusal::NotAuthenticated { .. }, _) => {
                StatusCode::FORBIDDEN
            }
            ApiError::Originator(super::originator::Refusal::ReplayUnavailable(_), _) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }

    /// Seconds for `Retry-After`, for refusals that pass.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            ApiError::RateLimited(refusal) => Some(refusal.retry_after_secs()),
            ApiError::Overloaded | ApiError::AuditUnavailable(_) => Some(1),
            ApiError::Originator(super::originator::Refusal::ReplayUnavailable(_), _) => Some(1),
            _ => None,
        }
    }

    /// The JSON error response.
    pub fn into_response(self) -> Response {
        let body = ErrorBody::for_error(self.code(), &self);
        let mut response = json_response(self.status(), &body);
        if let Some(seconds) = self.retry_after() {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// The one JSON error body of every HTTP answer the gateway makes itself (decision API, admin,
/// provisioning, group authentication): `{"error": {"code": "...", "message": "..."}}`, the
/// code stable and machine-readable, the message for people (docs/http-errors.md). oneM2M
/// answers on the proxy are a different protocol and keep their `X-M2M-RSC` and `m2m:dbg`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The inside of an [`ErrorBody`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ErrorDetail {
    /// A stable, machine-readable code such as `rate-limited` or `invalid-name`.
    pub code: String,
    /// A sentence for people.
    pub message: String,
}

impl ErrorBody {
    /// The body for an error with this code.
    pub fn new(code: &str, message: impl std::fmt::Display) -> Self {
        ErrorBody {
            error: ErrorDetail {
                code: code.to_owned(),
                message: message.to_string(),
            },
        }
    }

    /// The body for an error with this code: the message is the error and each of its
    /// causes ([`palisade_types::Chain`]), so a client reads why, not only what failed.
    pub fn for_error(code: &str, error: &(dyn std::error::Error + 'static)) -> Self {
        ErrorBody::new(code, palisade_types::Chain(error))
    }

    /// The inside (`{"code", "message"}`) as a JSON value, for answers that put it in a larger
    /// document.
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::json!({"code": self.error.code, "message": self.error.message})
    }

    /// The whole body as a JSON value.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({ "error": self.to_value() })
    }
}

/// A JSON response.
pub fn json_response<T: serde::Serialize + ?Sized>(status: StatusCode, body: &T) -> Response {
    // A decision's answer is ~0.5-1 KiB: starting there saves the buffer's regrowths, which
    // were most of the serialization time (perf).
    let mut bytes = Vec::with_capacity(1024);
    // Serializing plain data into a Vec cannot fail; should a future type make it fail,
    // the client still gets JSON that says so.
    if let Err(error) = serde_json::to_writer(&mut bytes, body) {
        tracing::error!(%error, "response not serializable");
        bytes = br#"{"error":{"code":"internal","message":"response not serializable"}}"#.to_vec();
    }
    let mut response = hyper::Response::new(Full::new(Bytes::from(bytes)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// A plain-text response (metrics).
pub fn text_response(status: StatusCode, content_type: &'static str, body: String) -> Response {
    let mut response = hyper::Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

#[cfg(test)]
mod tests {
    use super::ErrorBody;
    use http_body_util::BodyExt as _;

    /// Every HTTP error family of the gateway answers with the one body (issue #14.3). Each
    /// built its own `json!` before, free to drift; now each must read back as [`ErrorBody`]
    /// with its stable code, and the group client parses what the group server writes.
    #[test]
    fn every_error_family_answers_the_one_body() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let read = |body: axum::body::Body| -> ErrorBody {
            let bytes = runtime.block_on(body.collect()).unwrap().to_bytes();
            serde_json::from_slice(&bytes).unwrap()
        };
        let api = super::ApiError::UnknownApp("meters".into()).into_response();
        let api = read(axum::body::Body::new(api.into_body()));
        assert_eq!(api.error.code, "unknown-app");
        assert!(api.error.message.contains("meters"), "{api:?}");

        let admin = crate::admin::AdminError::Replayed.into_response();
        let admin = read(axum::body::Body::new(admin.into_body()));
        assert_eq!(admin.error.code, "replayed-request");

        let group = axum::response::IntoResponse::into_response(
            crate::group_http::HttpError::RequestReplayed,
        );
        let group = read(group.into_body());
        assert_eq!(group.error.code, "request-replayed");
        assert_eq!(
            serde_json::to_value(&group).unwrap(),
            ErrorBody::new("request-replayed", "challenge request replayed").to_json()
        );
    }
}
