//! The Wasm OCI artifact layout: publish and bounded, verified pull.
//!
//! The layout is the one of the CNCF TAG Runtime "Wasm OCI artifact" work that `wkg`, Spin
//! and wasmCloud use: an OCI image manifest whose config has media type
//! `application/vnd.wasm.config.v0+json` (architecture `wasm`, os `wasip2`, the layer digests,
//! the component's world) and exactly one layer, the component, `application/wasm`. Palisade
//! publishes the *signed* component as that layer, so any OCI tool can copy it and only a
//! Palisade gateway with the right trust anchors will run it.

use std::collections::BTreeMap;
use std::future::Future;

use futures_util::StreamExt;
use oci_client::errors::OciDistributionError;
use oci_client::manifest::{OciDescriptor, OCI_IMAGE_MEDIA_TYPE};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{OciError, RegistryConfig};

/// The config media type of a Wasm artifact.
pub const WASM_CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
/// The layer media type of a Wasm component.
pub const WASM_LAYER_MEDIA_TYPE: &str = "application/wasm";
/// Annotation carrying the Palisade manifest's `app/name@version` label (informative only:
/// the signed manifest inside the component is what is checked).
pub const LABEL_ANNOTATION: &str = "dev.palisade.module";

/// The config blob of a Wasm artifact (the fields of the CNCF layout; camelCase on the wire).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WasmConfig {
    /// RFC 3339 creation time.
    pub created: String,
    /// Optional author.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// Always `wasm`.
    pub architecture: String,
    /// `wasip2` for a component.
    pub os: String,
    /// The digests of the manifest's layers, in order.
    pub layer_digests: Vec<String>,
    /// The component's world, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<ComponentInfo>,
}

/// What a component exports and imports (interface names), as the layout records them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentInfo {
    /// Exported interfaces.
    pub exports: Vec<String>,
    /// Imported interfaces.
    pub imports: Vec<String>,
    /// The world the component targets, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// What [`publish`] pushed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Published {
    /// The manifest digest (`sha256:...`): what a pinned subscription names.
    pub manifest_digest: String,
    /// The layer (component) digest.
    pub layer_digest: String,
    /// The reference pinned to the manifest digest.
    pub pinned: String,
}

/// A module pulled and checked against every digest and size on the way.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PulledModule {
    /// The manifest digest the module came from.
    pub manifest_digest: String,
    /// The layer digest.
    pub layer_digest: String,
    /// The component bytes (still to be verified by the gateway's trust chain).
    pub bytes: Vec<u8>,
    /// The manifest's annotations.
    pub annotations: BTreeMap<String, String>,
}

/// `sha256:<hex>` of some bytes.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Parses a reference (`registry/repository:tag` or `...@sha256:<hex>`). The registry must be
/// written out: nothing is assumed to live on a default registry.
pub fn parse_reference(text: &str) -> Result<Reference, OciError> {
    let bad = |reason: &str| OciError::Reference {
        reference: text.to_string(),
        reason: reason.to_string(),
    };
    if text.len() > 1024 {
        return Err(bad("longer than 1024 bytes"));
    }
    let first = text.split('/').next().unwrap_or("");
    if !text.contains('/') || !(first.contains('.') || first.contains(':') || first == "localhost")
    {
        return Err(bad(
            "the registry must be named (e.g. registry.example:5000/palisade/acp:1.0)",
        ));
    }
    let reference: Reference = text.parse().map_err(|e| bad(&format!("{e}")))?;
    if let Some(digest) = reference.digest() {
        check_digest_form(digest).map_err(|reason| bad(&reason))?;
    }
    Ok(reference)
}

/// Only sha256 digests in canonical form: the client would hash anything else differently or
/// not at all.
fn check_digest_form(digest: &str) -> Result<(), String> {
    let hex = digest
        .strip_prefix("sha256:")
        .ok_or_else(|| format!("digest {digest:?} is not sha256"))?;
    if hex.len() != 64
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(format!("digest {digest:?} is not 64 lowercase hex digits"));
    }
    Ok(())
}

/// Runs one registry operation under the configured time limit.
pub(crate) async fn bounded<T>(
    config: &RegistryConfig,
    reference: &Reference,
    operation: impl Future<Output = Result<T, OciError>>,
) -> Result<T, OciError> {
    tokio::time::timeout(config.request_timeout, operation)
        .await
        .map_err(|_| OciError::Timeout {
            reference: reference.whole(),
            seconds: config.request_timeout.as_secs(),
        })?
}

pub(crate) fn registry_error(reference: &Reference, source: OciDistributionError) -> OciError {
    OciError::Registry {
        reference: reference.whole(),
        source,
    }
}

/// Publishes a signed component at `reference` (which must carry a tag) in the Wasm layout.
/// `created` is the RFC 3339 time recorded in the config; `label` goes into the
/// `LABEL_ANNOTATION` (`dev.palisade.module`). Blobs first, then the manifest, so a tag never names missing blobs.
pub async fn publish(
    client: &Client,
    config: &RegistryConfig,
    reference: &Reference,
    module: &[u8],
    component: Option<ComponentInfo>,
    created: &str,
    label: Option<&str>,
) -> Result<Published, OciError> {
    if reference.tag().is_none() || reference.digest().is_some() {
        return Err(OciError::Reference {
            reference: reference.whole(),
            reason: "publishing needs a tag and no digest".into(),
        });
    }
    if module.len() as u64 > config.max_module_bytes {
        return Err(OciError::TooLarge {
            what: "module",
            reference: reference.whole(),
            size: module.len() as u64,
            limit: config.max_module_bytes,
        });
    }
    let layer_digest = sha256_digest(module);
    let wasm_config = WasmConfig {
        created: created.to_string(),
        author: None,
        architecture: "wasm".into(),
        os: "wasip2".into(),
        layer_digests: vec![layer_digest.clone()],
        component,
    };
    let config_bytes = serde_json::to_vec(&wasm_config).expect("plain values serialize");
    let config_digest = sha256_digest(&config_bytes);
    let mut annotations = BTreeMap::new();
    annotations.insert(
        "org.opencontainers.image.created".to_string(),
        created.to_string(),
    );
    if let Some(label) = label {
        annotations.insert(LABEL_ANNOTATION.to_string(), label.to_string());
    }
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_IMAGE_MEDIA_TYPE,
        "config": {"mediaType": WASM_CONFIG_MEDIA_TYPE, "digest": config_digest,
                   "size": config_bytes.len()},
        "layers": [{"mediaType": WASM_LAYER_MEDIA_TYPE, "digest": layer_digest,
                    "size": module.len()}],
        "annotations": annotations,
    });
    let manifest_bytes = serde_json::to_vec(&manifest).expect("plain values serialize");
    let manifest_digest = sha256_digest(&manifest_bytes);
    let module = module.to_vec();
    bounded(config, reference, async {
        client
            .push_blob(reference, config_bytes, &config_digest)
            .await
            .map_err(|e| registry_error(reference, e))?;
        client
            .push_blob(reference, module, &layer_digest)
            .await
            .map_err(|e| registry_error(reference, e))?;
        push_manifest(client, reference, manifest_bytes).await
    })
    .await?;
    let pinned = Reference::with_digest(
        reference.registry().to_string(),
        reference.repository().to_string(),
        manifest_digest.clone(),
    )
    .whole();
    Ok(Published {
        manifest_digest,
        layer_digest,
        pinned,
    })
}

pub(crate) async fn push_manifest(
    client: &Client,
    reference: &Reference,
    bytes: Vec<u8>,
) -> Result<(), OciError> {
    client
        .push_manifest_raw(reference, bytes, http_header(OCI_IMAGE_MEDIA_TYPE))
        .await
        .map_err(|e| registry_error(reference, e))?;
    Ok(())
}

fn http_header(value: &'static str) -> http::HeaderValue {
    http::HeaderValue::from_static(value)
}

/// Resolves a reference to the manifest digest it names now (a pinned reference resolves to
/// its own digest without asking the registry).
pub async fn resolve(
    client: &Client,
    config: &RegistryConfig,
    reference: &Reference,
) -> Result<String, OciError> {
    if let Some(digest) = reference.digest() {
        return Ok(digest.to_string());
    }
    let digest = bounded(config, reference, async {
        client
            .fetch_manifest_digest(reference, &RegistryAuth::Anonymous)
            .await
            .map_err(|e| registry_error(reference, e))
    })
    .await?;
    check_digest_form(&digest).map_err(|reason| OciError::Reference {
        reference: reference.whole(),
        reason: format!("the registry resolved it to {reason}"),
    })?;
    Ok(digest)
}

/// Fetches and checks a manifest by digest: the bytes must hash to the digest, be at most
/// `max_manifest_bytes` and be an OCI image manifest.
pub(crate) async fn fetch_manifest(
    client: &Client,
    config: &RegistryConfig,
    pinned: &Reference,
) -> Result<(serde_json::Value, Vec<u8>), OciError> {
    let expected = pinned.digest().expect("callers pin").to_string();
    let (body, _) = client
        .pull_manifest_raw(pinned, &RegistryAuth::Anonymous, &[OCI_IMAGE_MEDIA_TYPE])
        .await
        .map_err(|e| match e {
            OciDistributionError::DigestError(_) => OciError::DigestMismatch {
                what: "manifest",
                reference: pinned.whole(),
                expected: expected.clone(),
                actual: "(differs)".into(),
            },
            other => registry_error(pinned, other),
        })?;
    // The client has read the body whole by now (it offers no streamed manifest read); the
    // request timeout bounds how long that can take, and this bound what is kept and parsed.
    if body.len() as u64 > config.max_manifest_bytes {
        return Err(OciError::TooLarge {
            what: "manifest",
            reference: pinned.whole(),
            size: body.len() as u64,
            limit: config.max_manifest_bytes,
        });
    }
    // The client compares against the digest too; this check does not depend on it.
    let actual = sha256_digest(&body);
    if actual != expected {
        return Err(OciError::DigestMismatch {
            what: "manifest",
            reference: pinned.whole(),
            expected,
            actual,
        });
    }
    let manifest: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| OciError::NotWasmArtifact {
            reference: pinned.whole(),
            reason: format!("the manifest is not JSON: {e}"),
        })?;
    Ok((manifest, body.to_vec()))
}

fn not_wasm(reference: &Reference, reason: impl Into<String>) -> OciError {
    OciError::NotWasmArtifact {
        reference: reference.whole(),
        reason: reason.into(),
    }
}

/// Reads one descriptor out of a manifest value, checking its digest form and size bound.
pub(crate) fn descriptor(
    reference: &Reference,
    value: &serde_json::Value,
    what: &'static str,
    limit: u64,
) -> Result<OciDescriptor, OciError> {
    let descriptor: OciDescriptor = serde_json::from_value(value.clone())
        .map_err(|e| not_wasm(reference, format!("{what} descriptor: {e}")))?;
    check_digest_form(&descriptor.digest).map_err(|r| not_wasm(reference, r))?;
    // Foreign URLs would make the gateway fetch from wherever the manifest says.
    if descriptor.urls.is_some() {
        return Err(not_wasm(reference, format!("{what} descriptor lists urls")));
    }
    let size = u64::try_from(descriptor.size)
        .map_err(|_| not_wasm(reference, format!("{what} size is negative")))?;
    if size > limit {
        return Err(OciError::TooLarge {
            what,
            reference: reference.whole(),
            size,
            limit,
        });
    }
    Ok(descriptor)
}

/// Reads a blob, stopping as soon as it exceeds its descriptor's size, and checks size and
/// digest of what arrived. The descriptor's size has been bounded by the caller.
pub(crate) async fn fetch_blob(
    client: &Client,
    pinned: &Reference,
    descriptor: &OciDescriptor,
    what: &'static str,
) -> Result<Vec<u8>, OciError> {
    let declared = descriptor.size as u64;
    let mut stream = client
        .pull_blob_stream(pinned, descriptor)
        .await
        .map_err(|e| registry_error(pinned, e))?;
    if let Some(length) = stream.content_length {
        if length > declared {
            return Err(OciError::SizeMismatch {
                what,
                reference: pinned.whole(),
                declared,
                received: length,
            });
        }
    }
    let mut bytes = Vec::with_capacity(declared as usize);
    let mut hasher = Sha256::new();
    let mut failure = None;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(chunk) => {
                if bytes.len() as u64 + chunk.len() as u64 > declared {
                    return Err(OciError::SizeMismatch {
                        what,
                        reference: pinned.whole(),
                        declared,
                        received: declared + 1,
                    });
                }
                hasher.update(&chunk);
                bytes.extend_from_slice(&chunk);
            }
            // The client's verifying stream ends with an error on a digest mismatch; the
            // check below names it precisely. Any other error is the transport's.
            Err(error) => {
                failure = Some(error);
                break;
            }
        }
    }
    let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
    if bytes.len() as u64 == declared && actual != descriptor.digest {
        return Err(OciError::DigestMismatch {
            what,
            reference: pinned.whole(),
            expected: descriptor.digest.clone(),
            actual,
        });
    }
    // The client's own digest check ending the stream is a content failure (reported as
    // the size mismatch below); any other stream error is the transport's.
    if let Some(error) = failure {
        let content = error
            .get_ref()
            .is_some_and(|inner| inner.is::<oci_client::errors::DigestError>());
        if !content {
            return Err(registry_error(pinned, OciDistributionError::IoError(error)));
        }
    }
    if bytes.len() as u64 != declared {
        return Err(OciError::SizeMismatch {
            what,
            reference: pinned.whole(),
            declared,
            received: bytes.len() as u64,
        });
    }
    Ok(bytes)
}

/// Pulls the module a pinned reference (`...@sha256:...`) names: manifest (digest, size,
/// layout), config (bounded, digest, its `layerDigests` agree), layer (size declared and
/// bounded before it is requested, read no further than declared, digest). The bytes are
/// then for the gateway to verify as a signed module.
pub async fn pull(
    client: &Client,
    config: &RegistryConfig,
    pinned: &Reference,
) -> Result<PulledModule, OciError> {
    if pinned.digest().is_none() {
        return Err(OciError::Reference {
            reference: pinned.whole(),
            reason: "a pull names a digest (resolve the tag first)".into(),
        });
    }
    bounded(config, pinned, async {
        let (manifest, _) = fetch_manifest(client, config, pinned).await?;
        if manifest["schemaVersion"] != 2 {
            return Err(not_wasm(pinned, "schemaVersion is not 2"));
        }
        if let Some(media_type) = manifest.get("mediaType") {
            if media_type != OCI_IMAGE_MEDIA_TYPE {
                return Err(not_wasm(
                    pinned,
                    format!("manifest media type {media_type}"),
                ));
            }
        }
        let config_descriptor = descriptor(
            pinned,
            &manifest["config"],
            "config",
            config.max_manifest_bytes,
        )?;
        if config_descriptor.media_type != WASM_CONFIG_MEDIA_TYPE {
            return Err(not_wasm(
                pinned,
                format!("config media type {:?}", config_descriptor.media_type),
            ));
        }
        let layers = manifest["layers"]
            .as_array()
            .ok_or_else(|| not_wasm(pinned, "no layers"))?;
        let [layer] = layers.as_slice() else {
            return Err(not_wasm(
                pinned,
                format!("{} layers, a module artifact has exactly one", layers.len()),
            ));
        };
        let layer = descriptor(pinned, layer, "module", config.max_module_bytes)?;
        if layer.media_type != WASM_LAYER_MEDIA_TYPE {
            return Err(not_wasm(
                pinned,
                format!("layer media type {:?}", layer.media_type),
            ));
        }
        let config_bytes = fetch_blob(client, pinned, &config_descriptor, "config").await?;
        let wasm_config: WasmConfig = serde_json::from_slice(&config_bytes)
            .map_err(|e| not_wasm(pinned, format!("config: {e}")))?;
        if wasm_config.architecture != "wasm" || wasm_config.layer_digests != [layer.digest.clone()]
        {
            return Err(not_wasm(
                pinned,
                "config architecture is not wasm or its layerDigests do not name the layer",
            ));
        }
        let bytes = fetch_blob(client, pinned, &layer, "module").await?;
        let annotations = manifest
            .get("annotations")
            .and_then(|a| serde_json::from_value(a.clone()).ok())
            .unwrap_or_default();
        Ok(PulledModule {
            manifest_digest: pinned.digest().expect("checked").to_string(),
            layer_digest: layer.digest,
            bytes,
            annotations,
        })
    })
    .await
}

/// The reference `reference` names, pinned to `digest`.
pub fn pin(reference: &Reference, digest: &str) -> Reference {
    Reference::with_digest(
        reference.registry().to_string(),
        reference.repository().to_string(),
        digest.to_string(),
    )
}
