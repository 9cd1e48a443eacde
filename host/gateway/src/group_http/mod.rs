//! HTTP endpoints of group authentication (SER-027, SER-028, SER-012).
//!
//! Two routers over the same library roles:
//! - [`server_router`]: the M2M server role (`/group/v1/...`), called by gateway agents;
//! - [`agent_router`]: the gateway agent (`/agent/v1/...`), called by devices; it calls the
//!   server with a [`ServerClient`].
//!
//! Protocol bodies are the library's deterministic CBOR / COSE_Sign1 encoding ([`palisade_group::WireMessage`]) with the
//! media type [`CONTENT_TYPE`]; every body is size-bounded by axum's body limit before it is
//! decoded (SER-001). Refusals are JSON, `{"error": {"code": "...", "message": "..."}}`, with
//! a stable code and a matching HTTP status ([`HttpError`]). Per-member rejections are not
//! errors: they travel inside the successful answer, so one bad device never fails the others.
//!
//! Time comes from the system clock here, at the edge (the library takes `now` as an
//! argument); tests may substitute a [`Clock`].
//!
//! The challenge request is signed by the gateway's identity key ([`palisade_group::ChallengeRequest`]): the
//! server authenticates the gateway before it spends a pending-challenge slot on it (a bounded
//! table, SER-001) or says anything about the group (SER-027 authorization), and refuses a
//! replayed request (SER-012).

mod agent;
mod client;
mod error;
mod registry;

mod round;
mod sealed;
mod server;

pub use agent::{agent_router, AgentState, DEFAULT_ASSOCIATION_TTL, DEFAULT_SOURCE_RATE};
pub use client::ServerClient;
pub use error::{HttpError, RegistryError};
pub use registry::RegistryFile;

pub use server::{server_router, Established, ServerState};

use axum::extract::rejection::BytesRejection;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use palisade_group::GroupSigner;
use std::sync::Arc;

/// Media type of every binary group-authentication body.
pub const CONTENT_TYPE: &str = "application/vnd.palisade.group+cbor";

/// Where the HTTP layer reads the time (Unix seconds).
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The system clock. A clock before 1970 reads as 0, which makes every challenge look
/// expired rather than panicking.
pub fn system_clock() -> Clock {
    Arc::new(palisade_types::now_unix)
}

/// A [`GroupSigner`] shared between the library's [`palisade_group::GatewayAgent`] (which owns a boxed
/// signer) and the HTTP layer, which signs challenge requests with the same identity key.
pub struct SharedSigner(pub Arc<dyn GroupSigner>);

impl GroupSigner for SharedSigner {
    fn public_key(&self) -> [u8; 32] {
        self.0.public_key()
    }
    fn sign(&self, msg: &[u8]) -> Result<[u8; 64], palisade_group::GroupError> {
        self.0.sign(msg)
    }
}

/// A successful binary answer.
fn binary(bytes: Vec<u8>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE))],
        bytes,
    )
        .into_response()
}

/// The body of a binary request: the media type must be ours and the body within the route's
/// limit (axum's `DefaultBodyLimit`; beyond it, 413 as JSON rather than axum's plain text).
fn binary_body(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    limit: usize,
) -> Result<Bytes, HttpError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    if ct.as_deref() != Some(CONTENT_TYPE) {
        return Err(HttpError::UnsupportedMediaType);
    }
    body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            HttpError::BodyTooLarge { limit }
        } else {
            HttpError::BadBody(r.body_text())
        }
    })
}

/// JSON 404 for paths neither router serves.
async fn not_found(uri: axum::http::Uri) -> HttpError {
    HttpError::NotFound(uri.path().to_owned())
}

/// JSON 405 for a served path with the wrong method.
async fn method_not_allowed() -> HttpError {
    HttpError::MethodNotAllowed
}

/// Runs library work that may take a while (batch verification of thousands of signatures)
/// off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, HttpError> + Send + 'static,
) -> Result<T, HttpError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| HttpError::Internal(format!("worker failed: {e}")))?
}

/// Locks a mutex; a panic in another request must not take the endpoint down with it (the
/// library's state stays consistent between calls, each step checks its own inputs).
fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
