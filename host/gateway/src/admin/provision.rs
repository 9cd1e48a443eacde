//! `POST /admin/v1/provision`: a service provider's signed (and, with secrets, encrypted)
//! credential bundle applied to the running gateway (SER-019..021), behind the same signed,
//! replay-protected admin requests as module uploads (SER-008, SER-012). The bundle's own
//! checks (provider signature, addressee, expiry, sequence, the provider's apps) are the
//! provisioning module's; nothing is half-applied.
//!
//! The endpoint exists when the data folder was prepared with `palisade provision init` and
//! `palisade provision trust`; the running gateway then holds the provisioning state's lock,
//! so an offline `palisade provision apply` against the same folder is refused meanwhile.

use std::path::Path;
use std::sync::{Arc, Mutex};

use hyper::StatusCode;

use palisade_keys::{KeyKind, KeyScope, KeyStore};
use palisade_provision::{
    GatewayKey, ProvisionError, Provisioner, StateFile, TrustConfig, GATEWAY_X25519_LABEL,
};

/// The gateway's provisioner, shared by admin requests.
pub struct ProvisionEndpoint {
    provisioner: Mutex<Provisioner>,
}

/// Why provisioning could not be set up at start.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionSetupError {
    #[error("cannot read {path}: {message}")]
    Trust { path: String, message: String },
    #[error("no gateway X25519 key labelled {GATEWAY_X25519_LABEL:?} in the keystore: run `palisade provision init`")]
    NoGatewayKey,
    #[error(transparent)]
    Keys(#[from] palisade_keys::KeyError),
    #[error(transparent)]
    Provision(#[from] ProvisionError),
}

impl ProvisionEndpoint {
    /// Opens `<data>/provision` if it was prepared; `None` otherwise (no endpoint).
    /// `positions` is kept up to date with every applied bundle (and loaded from the state
    /// now): the proxy's location source.
    pub fn open(
        data_dir: &Path,
        keystore: Arc<dyn KeyStore>,
        positions: Arc<palisade_provision::PositionDirectory>,
    ) -> Result<Option<ProvisionEndpoint>, ProvisionSetupError> {
        let trust_file = data_dir.join("provision").join("trust.json");
        if !trust_file.exists() {
            return Ok(None);
        }
        let unreadable = |message: String| ProvisionSetupError::Trust {
            path: trust_file.display().to_string(),
            message,
        };
        let text = std::fs::read(&trust_file).map_err(|error| unreadable(error.to_string()))?;
        let trust: TrustConfig =
            serde_json::from_slice(&text).map_err(|error| unreadable(error.to_string()))?;
        let providers = trust.providers()?;
        let handle = keystore
            .list(&KeyScope::Gateway)?
            .into_iter()
            .find(|key| key.label == GATEWAY_X25519_LABEL && key.kind == KeyKind::X25519)
            .map(|key| key.handle)
            .ok_or(ProvisionSetupError::NoGatewayKey)?;
        let key = GatewayKey::from_store(keystore.clone(), handle)?;
        let state = StateFile::open(&data_dir.join("provision"))?;
        let mut provisioner = Provisioner::new(trust.gateway_id.clone(), key, keystore, state)?;
        for (id, provider) in providers {
            provisioner.trust(id, provider);
        }
        provisioner.add_directory(positions);
        Ok(Some(ProvisionEndpoint {
            provisioner: Mutex::new(provisioner),
        }))
    }

    /// Sends every committed bundle's group and device changes (and what is provisioned
    /// already, at once) to `directory`.
    pub fn add_directory(&self, directory: Arc<dyn palisade_provision::MemberDirectory>) {
        self.provisioner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .add_directory(directory);
    }

    /// Applies one bundle; the answer is the report, or the refusal with its stable code.
    pub fn apply(&self, bundle: &[u8], now: u64) -> (StatusCode, serde_json::Value) {
        let mut provisioner = self
            .provisioner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match provisioner.apply(bundle, now) {
            Ok(report) => (
                StatusCode::OK,
                serde_json::json!({ "applied": true, "report": report }),
            ),
            Err(error) => {
                let status = if error.is_rejection() {
                    StatusCode::UNPROCESSABLE_ENTITY
                } else {
                    StatusCode::INTERNAL_SERVER_ERROR
                };
                (
                    status,
                    crate::error::ErrorBody::for_error(error.code(), &error).to_json(),
                )
            }
        }
    }
}
