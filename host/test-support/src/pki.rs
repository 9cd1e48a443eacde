//! Test certificates made by rcgen: a CA per party and leaf certificates signed by it, for the
//! TLS tests (listeners, client certificates, TLS towards the CSE, certificate-named
//! originators).

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, SanType,
};

/// A certificate authority.
pub struct Pki {
    /// The CA's self-signed certificate.
    pub ca: rcgen::Certificate,
    /// The CA's key, which signs the leaves.
    pub ca_key: KeyPair,
}

impl Pki {
    /// A new CA whose subject common name is `name`.
    pub fn new(name: &str) -> Pki {
        let ca_key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let ca = params.self_signed(&ca_key).unwrap();
        Pki { ca, ca_key }
    }

    /// A leaf certificate for the DNS names or addresses `names` (the first is also its
    /// common name) and its key, signed by this CA; a client certificate when `client`.
    pub fn leaf(&self, names: &[&str], client: bool) -> (rcgen::Certificate, KeyPair) {
        self.leaf_with_uri(names, None, client)
    }

    /// As [`Pki::leaf`], with `uri` as a URI SAN when given.
    pub fn leaf_with_uri(
        &self,
        names: &[&str],
        uri: Option<&str>,
        client: bool,
    ) -> (rcgen::Certificate, KeyPair) {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        if let Some(uri) = uri {
            params
                .subject_alt_names
                .push(SanType::URI(uri.try_into().unwrap()));
        }
        params.distinguished_name.push(DnType::CommonName, names[0]);
        if client {
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        }
        (params.signed_by(&key, &self.ca, &self.ca_key).unwrap(), key)
    }
}
