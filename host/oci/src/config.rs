//! How a gateway or the CLI reaches registries.

use std::time::Duration;

use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::Client;

use crate::OciError;

/// The largest manifest accepted. A Wasm artifact's manifest is well under 1 KiB; 64 KiB leaves
/// room for annotations and refuses anything else.
pub const DEFAULT_MAX_MANIFEST_BYTES: u64 = 64 * 1024;

/// Time allowed for one whole registry operation (a pull of manifest, config and layer; a
/// push): a registry that trickles bytes is a failed poll, not a stuck subscription.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Connection settings and size bounds for registry access.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RegistryConfig {
    /// Registries (`host` or `host:port`, exactly as written in references) reached over plain
    /// HTTP. Every other registry is HTTPS with the system's roots; nothing falls back to HTTP
    /// by itself, not even for loopback. Default: none.
    pub insecure_registries: Vec<String>,
    /// The largest module layer accepted, checked on the manifest's descriptor before the
    /// layer is requested and again while it arrives. Default: 16 MiB, the signed-module
    /// size limit of the registry store.
    pub max_module_bytes: u64,
    /// The largest manifest (and config blob) accepted. Default [`DEFAULT_MAX_MANIFEST_BYTES`].
    pub max_manifest_bytes: u64,
    /// Time allowed for one registry operation. Default [`DEFAULT_REQUEST_TIMEOUT`].
    pub request_timeout: Duration,
    /// PEM CA certificates: when given, an HTTPS registry's certificate must chain to one of
    /// these and nothing else (no system store), as for the gateway's other TLS links.
    /// Default: none, the system's roots.
    pub ca_pem: Option<Vec<u8>>,
}

impl Default for RegistryConfig {
    fn default() -> RegistryConfig {
        RegistryConfig {
            insecure_registries: Vec::new(),
            max_module_bytes: 16 * 1024 * 1024,
            max_manifest_bytes: DEFAULT_MAX_MANIFEST_BYTES,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            ca_pem: None,
        }
    }
}

impl RegistryConfig {
    /// Checks the settings: bounds are positive, insecure registry names are plain
    /// `host[:port]` names.
    pub fn validate(&self) -> Result<(), OciError> {
        for name in &self.insecure_registries {
            let ok = !name.is_empty()
                && name.len() <= 255
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
            if !ok {
                return Err(OciError::Config(format!(
                    "insecure registry {name:?} is not a host or host:port name"
                )));
            }
        }
        if self.max_module_bytes == 0 || self.max_manifest_bytes == 0 {
            return Err(OciError::Config("size bounds must be positive".into()));
        }
        if self.request_timeout.is_zero() {
            return Err(OciError::Config("request_timeout must be positive".into()));
        }
        if self.ca_pem.is_some() && self.ca_certificates()?.is_empty() {
            return Err(OciError::Config(
                "the CA file holds no PEM certificate".into(),
            ));
        }
        Ok(())
    }

    /// The certificates of `ca_pem`, read by the one PEM reader of Palisade's client links
    /// ([`palisade_tls::parse_certificates`]) and handed to the registry client as DER.
    fn ca_certificates(&self) -> Result<Vec<Certificate>, OciError> {
        let pem = self.ca_pem.as_deref().unwrap_or_default();
        let certs = palisade_tls::parse_certificates(pem)
            .map_err(|error| OciError::Config(format!("the CA file: {error}")))?;
        Ok(certs
            .into_iter()
            .map(|der| Certificate {
                encoding: CertificateEncoding::Der,
                data: der.to_vec(),
            })
            .collect())
    }

    /// Whether references to `registry` travel over plain HTTP.
    pub fn is_insecure(&self, registry: &str) -> bool {
        self.insecure_registries.iter().any(|name| name == registry)
    }

    /// An OCI client with these settings.
    pub fn client(&self) -> Result<Client, OciError> {
        self.validate()?;
        // reqwest is built without a provider of its own: ring is the process's provider
        // (the gateway's listeners use it too). Installing fails only when one is already
        // installed, which is then the one used.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let config = ClientConfig {
            protocol: ClientProtocol::HttpsExcept(self.insecure_registries.clone()),
            connect_timeout: Some(self.request_timeout.min(Duration::from_secs(10))),
            read_timeout: Some(self.request_timeout),
            // An image index is never a Wasm artifact: refuse it rather than pick a platform.
            platform_resolver: None,
            user_agent: concat!("palisade/", env!("CARGO_PKG_VERSION")),
            tls_certs_only: self.ca_certificates()?,
            ..ClientConfig::default()
        };
        Ok(Client::new(config))
    }
}
