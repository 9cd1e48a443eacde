//! The canary signal of a staged rollout, carried by the registry itself.
//!
//! A canary gateway follows a tag like any other and, for the digest it runs, keeps an
//! attestation in the same repository under the tag `sha256-<hex>.palisade-canary` (the
//! naming of the OCI 1.1 referrers tag schema, which registries without the referrers API,
//! such as distribution 2.8, still store as a plain tag). The attestation is a small OCI
//! manifest whose config blob ([`ATTESTATION_MEDIA_TYPE`]) says which gateway ran the digest,
//! since when, when it last saw it healthy and how many failures it had. The canary refreshes
//! it on every poll; a failure is written into it at once.
//!
//! A gateway whose subscription waits for the canary installs a tag's new digest only when an
//! attestation for exactly that digest exists, reports no failure, and covers at least the
//! configured soak time (`last_ok - first_run`). The attestation decides *when* a module is
//! installed, never *whether it is trusted*: a forged or stale attestation can at worst make a
//! gateway install earlier or later a module that must still pass the signature, delegation
//! and version checks of the gateway itself (SER-022).

use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::OCI_IMAGE_MEDIA_TYPE;
use oci_client::{Client, Reference};
use serde::{Deserialize, Serialize};

use crate::artifact::{
    bounded, descriptor, fetch_blob, fetch_manifest, push_manifest, registry_error, sha256_digest,
};
use crate::{OciError, RegistryConfig};

/// The config media type of a canary attestation.
pub const ATTESTATION_MEDIA_TYPE: &str = "application/vnd.palisade.canary.v1+json";

/// An attestation is a few hundred bytes; nothing bigger is read.
const MAX_ATTESTATION_BYTES: u64 = 4096;

/// What a canary gateway says about one digest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attestation {
    /// The manifest digest the canary runs.
    pub digest: String,
    /// The canary gateway's name.
    pub gateway: String,
    /// When it started running the digest (seconds since the epoch, the canary's clock).
    pub first_run: u64,
    /// The last time it checked and saw no failure.
    pub last_ok: u64,
    /// Failures since it started running the digest; any failure holds the rollout.
    pub failures: u64,
}

impl Attestation {
    /// How long the canary has run the digest without failures (0 after any failure).
    pub fn soaked_seconds(&self) -> u64 {
        if self.failures > 0 {
            return 0;
        }
        self.last_ok.saturating_sub(self.first_run)
    }
}

/// The tag an attestation of `digest` is stored under.
pub fn attestation_tag(digest: &str) -> String {
    format!("{}.palisade-canary", digest.replacen(':', "-", 1))
}

fn attestation_reference(repository: &Reference, digest: &str) -> Reference {
    Reference::with_tag(
        repository.registry().to_string(),
        repository.repository().to_string(),
        attestation_tag(digest),
    )
}

/// Whether a registry error says the manifest or repository does not exist.
pub(crate) fn is_not_found(error: &OciDistributionError) -> bool {
    match error {
        OciDistributionError::ServerError { code, .. } => *code == 404,
        OciDistributionError::ImageManifestNotFoundError(_) => true,
        OciDistributionError::RegistryError { envelope, .. } => envelope.errors.iter().any(|e| {
            matches!(
                e.code,
                OciErrorCode::ManifestUnknown | OciErrorCode::NameUnknown
            )
        }),
        _ => false,
    }
}

/// Writes (or replaces) the attestation for `attestation.digest` in `repository`'s repository.
pub async fn publish_attestation(
    client: &Client,
    config: &RegistryConfig,
    repository: &Reference,
    attestation: &Attestation,
) -> Result<(), OciError> {
    let reference = attestation_reference(repository, &attestation.digest);
    let blob = serde_json::to_vec(attestation).expect("plain values serialize");
    let blob_digest = sha256_digest(&blob);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_IMAGE_MEDIA_TYPE,
        "config": {"mediaType": ATTESTATION_MEDIA_TYPE, "digest": blob_digest, "size": blob.len()},
        "layers": [],
    });
    let manifest = serde_json::to_vec(&manifest).expect("plain values serialize");
    bounded(config, &reference, async {
        client
            .push_blob(&reference, blob, &blob_digest)
            .await
            .map_err(|e| registry_error(&reference, e))?;
        push_manifest(client, &reference, manifest).await
    })
    .await
}

/// Reads the attestation for `digest`, if there is one. An attestation that names another
/// digest, is oversized or malformed is an error (the rollout waits), not an absence.
pub async fn fetch_attestation(
    client: &Client,
    config: &RegistryConfig,
    repository: &Reference,
    digest: &str,
) -> Result<Option<Attestation>, OciError> {
    let reference = attestation_reference(repository, digest);
    let manifest_digest = match crate::artifact::resolve(client, config, &reference).await {
        Ok(found) => found,
        Err(OciError::Registry { source, .. }) if is_not_found(&source) => return Ok(None),
        Err(other) => return Err(other),
    };
    let pinned = crate::artifact::pin(&reference, &manifest_digest);
    let bad = |reason: String| OciError::NotWasmArtifact {
        reference: reference.whole(),
        reason,
    };
    bounded(config, &reference, async {
        let (manifest, _) = fetch_manifest(client, config, &pinned).await?;
        let blob = descriptor(
            &pinned,
            &manifest["config"],
            "attestation",
            MAX_ATTESTATION_BYTES,
        )?;
        if blob.media_type != ATTESTATION_MEDIA_TYPE {
            return Err(bad(format!("attestation media type {:?}", blob.media_type)));
        }
        let bytes = fetch_blob(client, &pinned, &blob, "attestation").await?;
        let attestation: Attestation = serde_json::from_slice(&bytes)
            .map_err(|e| bad(format!("attestation is not readable: {e}")))?;
        if attestation.digest != digest {
            return Err(bad(format!(
                "the attestation under this tag is for {}",
                attestation.digest
            )));
        }
        Ok(Some(attestation))
    })
    .await
}
