//! `POST /v1/noop`: everything `/v1/decide` does except deciding, for measuring the gateway.
//!
//! Served only when the config sets `[diagnostics] noop_endpoint = true`, on the listeners
//! that serve `decide`. A request goes through the same listener, connection limit, header
//! timeout, body size and time limits ([`read_body`]), in-flight bound and HTTP metrics as a
//! decision, and is answered with a fixed small JSON document:
//!
//! ```json
//! {"noop": true, "body_bytes": 74}
//! ```
//!
//! Nothing is parsed, rate-limited per originator, run, counted as a decision or audited.
//! Its throughput beside `/v1/decide`'s on the same server shows what a decision costs on top
//! of the HTTP path (the gateway benchmark in BENCHMARKS.md); it decides nothing, so a client
//! can learn nothing from it but that the gateway is up.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Method, StatusCode};

use super::error::{json_response, ApiError, Response};
use super::server::read_body;
use super::Gateway;

/// Handles `/v1/noop`.
pub async fn handle(gateway: &Arc<Gateway>, request: hyper::Request<Incoming>) -> Response {
    match noop(gateway, request).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn noop(
    gateway: &Arc<Gateway>,
    request: hyper::Request<Incoming>,
) -> Result<Response, ApiError> {
    if request.method() != Method::POST {
        return Err(ApiError::MethodNotAllowed("use POST for /v1/noop"));
    }
    let (parts, body) = request.into_parts();
    let body = read_body(gateway, &parts.headers, body).await?;
    // The same back-pressure as a decision: beyond the in-flight bound, 503 at once.
    let _permit = gateway.protection.admit().ok_or_else(|| {
        gateway.metrics.rejected("overloaded");
        ApiError::Overloaded
    })?;
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({"noop": true, "body_bytes": body.len()}),
    ))
}
