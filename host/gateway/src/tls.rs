//! TLS on listeners (SER-002/003: confidentiality and integrity on the gateway's APIs) with
//! optional client-certificate authentication (SER-009: mutual authentication, e.g. for a
//! listener that serves only operators or the CSE).
//!
//! ```toml
//! [[listener]]
//! address = "0.0.0.0:8443"
//! [listener.tls]
//! cert_file = "gateway.crt"        # PEM chain, leaf first
//! key_file = "gateway.key"         # PEM private key (PKCS#8, PKCS#1 or SEC1)
//! client_ca_file = "clients.crt"   # optional: require a client certificate issued by these
//! ```
//!
//! rustls with the `ring` provider, TLS 1.2 and 1.3, its safe defaults (no renegotiation,
//! no compression, forward-secret suites only). With `client_ca_file`, a client without a
//! valid certificate never completes the handshake, so it never reaches a handler.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use toml::Spanned;

use super::config::{ConfigError, GatewayConfig};

/// A listener's `[listener.tls]` table.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    #[schemars(with = "String")]
    pub cert_file: Spanned<String>,
    #[schemars(with = "String")]
    pub key_file: Spanned<String>,
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub client_ca_file: Option<Spanned<String>>,
}

/// Builds the acceptor for listener `index`; errors name the file, line and key.
pub fn acceptor(
    config: &GatewayConfig,
    index: usize,
    tls: &TlsConfig,
) -> Result<tokio_rustls::TlsAcceptor, ConfigError> {
    let key = |name: &str| format!("listener[{index}].tls.{name}");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = read_certs(config, &tls.cert_file, &key("cert_file"))?;
    let path = config.base_dir().join(tls.key_file.get_ref());
    let private_key = PrivateKeyDer::from_pem_file(&path).map_err(|error| {
        config.error_at(
            tls.key_file.span(),
            key("key_file"),
            format!("no PEM private key in {}: {error}", path.display()),
        )
    })?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|error| {
            config.error_at(tls.cert_file.span(), key("cert_file"), error.to_string())
        })?;
    let builder = match &tls.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(file) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in read_certs(config, file, &key("client_ca_file"))? {
                roots.add(cert).map_err(|error| {
                    config.error_at(file.span(), key("client_ca_file"), error.to_string())
                })?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|error| {
                config.error_at(file.span(), key("client_ca_file"), error.to_string())
            })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut server = builder
        .with_single_cert(certs, private_key)
        .map_err(|error| {
            config.error_at(
                tls.key_file.span(),
                key("key_file"),
                format!("the key does not fit the certificate: {error}"),
            )
        })?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(server)))
}

fn read_certs(
    config: &GatewayConfig,
    file: &Spanned<String>,
    key: &str,
) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let path = config.base_dir().join(file.get_ref());
    let certs = CertificateDer::pem_file_iter(&path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|error| {
            config.error_at(
                file.span(),
                key,
                format!(
                    "cannot read PEM certificates from {}: {error}",
                    display(&path)
                ),
            )
        })?;
    if certs.is_empty() {
        return Err(config.error_at(
            file.span(),
            key,
            format!("{} holds no PEM certificate", display(&path)),
        ));
    }
    Ok(certs)
}

fn display(path: &Path) -> String {
    path.display().to_string()
}
