//! Request handling of the admin API: authentication, routing and the five operations.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Method, StatusCode};
use sha2::{Digest, Sha256};

use super::auth::SignedBody;
use super::{Admin, AdminError};
use crate::error::{json_response, Response};
use crate::Gateway;
use palisade_core::now_unix;
use palisade_core::{KindOfComponent as _, PluginKind};
use palisade_registry::PutStatus;
use palisade_registry::{validate_name, verify_with, ModuleStore, Upload, VerifyPolicy, Version};

/// Time allowed for an authenticated admin body (a module of up to the size limit) to arrive
/// (SER-001).
const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// Handles one request under `/admin/v1/`. Mounted by the server's router.
pub async fn handle(gateway: &Arc<Gateway>, request: hyper::Request<Incoming>) -> Response {
    let Some(admin) = gateway.admin.clone() else {
        return AdminError::NotFound(request.uri().path().to_string()).into_response();
    };
    let method = request.method().clone();
    let path_and_query = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    // The path as the audit records it: a client chooses it, so it is bounded like a
    // decision's target, with the hash of the whole (SER-016).
    let mut recorded_path = path_and_query.clone();
    let mut path_truncated = None;
    crate::audit::bound(
        &mut recorded_path,
        "path",
        crate::audit::FIELD_LIMIT,
        &mut path_truncated,
    );
    let outcome = async {
        let (parts, body) = request.into_parts();
        // SER-008, SER-012: nothing is looked at, and no body read, before the request is
        // authenticated from its headers (SER-001: an unsigned upload costs no buffering).
        let signed = admin.keys.check_headers(
            &admin.replay,
            &parts.headers,
            parts.method.as_str(),
            &path_and_query,
            now_unix(),
        )?;
        let key_id = signed.key_id;
        // The store's own check stays the authority for what fits; this one keeps a signed
        // but oversized body from being read at all.
        if signed.body.length > admin.config.max_module_bytes {
            return Err(AdminError::TooLarge {
                limit: admin.config.max_module_bytes,
            });
        }
        let limit = admin.config.max_concurrent_requests;
        let slot = admin
            .slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| AdminError::Busy { limit })?;
        let body = read_signed_body(body, &signed.body).await?;
        // SER-016: a change is on record before it takes effect; one that cannot be
        // recorded is not made. The outcome is recorded after it (below).
        if parts.method != Method::GET {
            let mut intent = serde_json::json!({"phase": "request",
                "admin_key": key_id.to_string(), "method": parts.method.as_str(),
                "path": recorded_path, "body_bytes": body.len(),
                "body_sha256": hex::encode(Sha256::digest(&body))});
            if let Some(truncated) = &path_truncated {
                intent["truncated"] = serde_json::json!(truncated);
            }
            gateway
                .audit
                .event_recorded(palisade_audit::Kind::Admin, intent)
                .await
                .map_err(AdminError::AuditUnavailable)?;
        }
        let gateway = gateway.clone();
        let method = parts.method.clone();
        let path = parts.uri.path().to_string();
        let query = parts.uri.query().unwrap_or("").to_string();
        tokio::task::spawn_blocking(move || {
            // Held until the work is done, even if the client goes away meanwhile.
            let _slot = slot;
            dispatch(&gateway, &admin, &method, &path, &query, &body)
        })
        .await
        .map_err(|e| AdminError::Invalid(format!("the admin request failed: {e}")))?
        .map(|(status, body)| (key_id, status, body))
    }
    .await;
    match outcome {
        Ok((key_id, status, body)) => {
            // SER-016: every change made through the admin API is in the audit trail.
            if method != Method::GET {
                let mut record = serde_json::json!({"phase": "result", "admin_key": key_id.to_string(), "method": method.as_str(),
                    "path": recorded_path, "status": status.as_u16(), "result": body});
                if let Some(truncated) = &path_truncated {
                    record["truncated"] = serde_json::json!(truncated);
                }
                gateway.audit.event(palisade_audit::Kind::Admin, record);
            }
            json_response(status, &body)
        }
        Err(error) => {
            tracing::warn!(code = error.code(), error = %palisade_types::Chain(&error), "admin request refused");
            error.into_response()
        }
    }
}

/// Reads an authenticated request's body as it arrives, hashing it on the way: it must be
/// exactly the signed length and hash (the length is at most `max_module_bytes`, checked
/// before). The buffer is sized once, from the signed length.
async fn read_signed_body(mut body: Incoming, signed: &SignedBody) -> Result<Bytes, AdminError> {
    let length = usize::try_from(signed.length)
        .map_err(|_| AdminError::BodyMismatch("the signed length does not fit in memory".into()))?;
    let mut buffer = Vec::with_capacity(length);
    let mut hasher = Sha256::new();
    let read = async {
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|error| {
                AdminError::Invalid(format!("the body could not be read: {error}"))
            })?;
            if let Ok(data) = frame.into_data() {
                if buffer.len() + data.len() > length {
                    return Err(AdminError::BodyMismatch(format!(
                        "it is longer than the signed {length} bytes"
                    )));
                }
                hasher.update(&data);
                buffer.extend_from_slice(&data);
            }
        }
        Ok(())
    };
    match tokio::time::timeout(BODY_TIMEOUT, read).await {
        Ok(result) => result?,
        Err(_) => {
            return Err(AdminError::Invalid(
                "the body did not arrive in time".into(),
            ))
        }
    }
    if buffer.len() != length {
        return Err(AdminError::BodyMismatch(format!(
            "{} bytes arrived, {length} were signed",
            buffer.len()
        )));
    }
    if <[u8; 32]>::from(hasher.finalize()) != signed.sha256 {
        return Err(AdminError::BodyMismatch(
            "its SHA-256 is not the signed one".into(),
        ));
    }
    Ok(Bytes::from(buffer))
}

type Outcome = Result<(StatusCode, serde_json::Value), AdminError>;

fn dispatch(
    gateway: &Gateway,
    admin: &Admin,
    method: &Method,
    path: &str,
    query: &str,
    body: &[u8],
) -> Outcome {
    let rest = path.strip_prefix("/admin/v1/").unwrap_or("");
    let segments: Vec<String> = rest.split('/').map(percent_decode).collect();
    let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
    let flag = |name: &str| {
        query
            .split('&')
            .any(|kv| kv == name || kv == format!("{name}=true") || kv == format!("{name}=1"))
    };
    let param = |name: &str| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .map(percent_decode)
    };
    match (method, segs.as_slice()) {
        (&Method::GET, ["modules"]) => list(admin, param("app").as_deref()),
        (&Method::POST, ["provision"]) => match &admin.provision {
            Some(endpoint) => Ok(endpoint.apply(body, now_unix())),
            None => Err(AdminError::NotFound(
                "/admin/v1/provision (run `palisade provision init` and `trust` on the data folder first)".into(),
            )),
        },
        (&Method::PUT, ["apps", app, "plugins", name]) => {
            check_names(app, name)?;
            upload(gateway, admin, app, name, body, flag("activate"))
        }
        (&Method::POST, ["apps", app, "plugins", name, "activate"]) => {
            check_names(app, name)?;
            let version = param("version")
                .ok_or_else(|| AdminError::Invalid("activate needs ?version=X.Y.Z".into()))?;
            activate(
                gateway,
                admin,
                app,
                name,
                &parse_version(&version)?,
                flag("force"),
            )
        }
        (&Method::POST, ["apps", app, "plugins", name, "rollback"]) => {
            check_names(app, name)?;
            if !flag("force") {
                return Err(AdminError::Invalid(
                    "a rollback lowers the active version: confirm it with ?force=true".into(),
                ));
            }
            let _change = admin.changes.lock().unwrap_or_else(|p| p.into_inner());
            let outcome = admin.store.rollback(app, name)?;
            admin.load(gateway, &outcome.record)?;
            Ok((
                StatusCode::OK,
                serde_json::json!({"status": "rolled-back",
                "active": outcome.record, "previous": outcome.previous}),
            ))
        }
        (&Method::DELETE, ["apps", app, "plugins", name, "versions", version]) => {
            check_names(app, name)?;
            let _change = admin.changes.lock().unwrap_or_else(|p| p.into_inner());
            let outcome = admin
                .store
                .remove(app, name, &parse_version(version)?, flag("force"))?;
            if let Some(fallback) = &outcome.fallback {
                admin.apply_fallback(gateway, fallback);
            }
            Ok((
                StatusCode::OK,
                serde_json::json!({"status": "removed",
                "removed": outcome.removed, "fallback": outcome.fallback}),
            ))
        }
        (_, ["apps", app, "plugins", name, ..]) => {
            // A name with an encoded separator lands here with extra segments.
            check_names(app, name)?;
            Err(AdminError::NotFound(path.to_string()))
        }
        _ => Err(AdminError::NotFound(path.to_string())),
    }
}

fn check_names(app: &str, name: &str) -> Result<(), AdminError> {
    validate_name("application name", app)?;
    validate_name("plugin name", name)?;
    Ok(())
}

fn parse_version(text: &str) -> Result<Version, AdminError> {
    text.parse()
        .map_err(|e| AdminError::Invalid(format!("{text:?} is not a version: {e}")))
}

fn list(admin: &Admin, app: Option<&str>) -> Outcome {
    let modules = admin.store.list(app)?;
    Ok((StatusCode::OK, serde_json::json!({ "modules": modules })))
}

/// Verify (SER-022) → compile and type-check → store → activate and hot-swap. Also the
/// install step of OCI subscriptions ([`super::oci`]).
pub(super) fn upload(
    gateway: &Gateway,
    admin: &Admin,
    app: &str,
    name: &str,
    bytes: &[u8],
    activate: bool,
) -> Outcome {
    let now = now_unix();
    let anchors = admin.store.trust_anchors();
    let mut policy = VerifyPolicy::new(&anchors, now);
    policy.expected_app = Some(app);
    policy.max_size = admin.config.max_module_bytes;
    // The signature and manifest are checked before a single byte is compiled (SER-022).
    let verified = verify_with(bytes, &policy).map_err(palisade_registry::StoreError::from)?;
    if verified.manifest.name != name {
        return Err(AdminError::Invalid(format!(
            "the manifest names the plugin {:?}, but the upload path names {name:?}",
            verified.manifest.name
        )));
    }
    if gateway.route(app).is_none() {
        return Err(AdminError::UnknownApp(app.to_string()));
    }
    let engine = gateway.runtime.engine();
    let compiled = engine
        .compile(&verified.component)
        .map_err(AdminError::Compile)?;
    let declared = verified.manifest.kind;
    let found = PluginKind::of_component(&compiled.component, engine.wasmtime());
    if found != Some(declared) {
        return Err(AdminError::WrongWorld {
            declared: declared.name().into(),
            found: found.map_or("no plugin world".into(), |k| {
                format!("the {} world", k.name())
            }),
        });
    }
    // Reported with the upload; a version this gateway does not load is reported as null, and
    // loading it (on activation) fails naming the version.
    let contract = palisade_core::Contract::of_component(&compiled.component, engine.wasmtime())
        .ok()
        .map(|contract| contract.to_string());
    let _change = admin.changes.lock().unwrap_or_else(|p| p.into_inner());
    let outcome = admin.store.put(&Upload {
        bytes,
        expected_app: Some(app),
        expected_kind: Some(verified.manifest.kind),
        activate,
        now,
    })?;
    let active = admin
        .store
        .active_modules()?
        .into_iter()
        .find(|r| r.app == app && r.name == name);
    let changed = outcome.status != PutStatus::AlreadyPresent || outcome.replaced.is_some();
    if activate && changed && active.as_ref().map(|r| &r.sha256) == Some(&outcome.record.sha256) {
        admin.load(gateway, &outcome.record)?;
    }
    let status = match outcome.status {
        PutStatus::AlreadyPresent => StatusCode::OK,
        _ => StatusCode::CREATED,
    };
    tracing::info!(module = %outcome.record.label(), status = ?outcome.status, activate, "admin upload");
    Ok((
        status,
        serde_json::json!({
            "status": outcome.status,
            "module": outcome.record,
            "contract": contract,
            "replaced": outcome.replaced,
            "active": active.map(|r| r.version),
        }),
    ))
}

fn activate(
    gateway: &Gateway,
    admin: &Admin,
    app: &str,
    name: &str,
    version: &Version,
    force: bool,
) -> Outcome {
    let _change = admin.changes.lock().unwrap_or_else(|p| p.into_inner());
    let outcome = admin.store.activate(app, name, version, force)?;
    if outcome.changed {
        admin.load(gateway, &outcome.record)?;
    }
    Ok((
        StatusCode::OK,
        serde_json::json!({
            "status": if outcome.changed { "activated" } else { "already-active" },
            "active": outcome.record,
            "previous": outcome.previous,
        }),
    ))
}

/// Decodes `%XX` escapes so that an encoded `/` or `..` is seen (and refused) as what it is;
/// malformed escapes stay as they are and are then refused by the name rule.
fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}
