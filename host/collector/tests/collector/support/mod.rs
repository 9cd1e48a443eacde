//! What the collector tests share: a real PostgreSQL ([`pg`]), a test PKI with a collector
//! certificate and client certificates for gateways and an operator, and config files.

pub use palisade_test_support::{pg, pki};

use std::path::{Path, PathBuf};
use std::sync::Arc;

use palisade_audit::{CheckpointSigner, MemorySigner};

/// The audit key seed of gateway `n` (its checkpoint signer).
pub fn gateway_seed(n: u8) -> [u8; 32] {
    [n.wrapping_add(40); 32]
}

/// Gateway `n`'s checkpoint signer.
pub fn gateway_signer(n: u8) -> Arc<dyn CheckpointSigner> {
    Arc::new(MemorySigner::from_seed(gateway_seed(n)))
}

/// Certificates and keys written to a folder.
pub struct Fleet {
    pub dir: PathBuf,
    pub gateways: Vec<String>,
}

fn write_pair(dir: &Path, name: &str, (cert, key): (rcgen::Certificate, rcgen::KeyPair)) {
    std::fs::write(dir.join(format!("{name}.crt")), cert.pem()).unwrap();
    std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
}

impl Fleet {
    /// A CA, the collector's certificate (`collector.crt` for 127.0.0.1/localhost), client
    /// certificates `gw-N.crt` for `gateways` gateways, `ops.crt` (a query client) and
    /// `stranger.crt` (issued by the CA but configured nowhere), and `other-ca.crt` with
    /// `rogue.crt` issued by another CA.
    pub fn new(dir: &Path, gateways: usize) -> Fleet {
        let pki = pki::Pki::new("fleet CA");
        std::fs::write(dir.join("ca.crt"), pki.ca.pem()).unwrap();
        write_pair(
            dir,
            "collector",
            pki.leaf(&["localhost", "127.0.0.1"], false),
        );
        let names: Vec<String> = (1..=gateways).map(|n| format!("gw-{n}")).collect();
        for name in &names {
            write_pair(dir, name, pki.leaf(&[name.as_str()], true));
        }
        write_pair(dir, "ops", pki.leaf(&["ops.test"], true));
        write_pair(dir, "stranger", pki.leaf(&["stranger.test"], true));
        let other = pki::Pki::new("other CA");
        std::fs::write(dir.join("other-ca.crt"), other.ca.pem()).unwrap();
        write_pair(dir, "rogue", other.leaf(&["gw-1"], true));
        Fleet {
            dir: dir.to_path_buf(),
            gateways: names,
        }
    }

    /// A collector config on `listen` storing into `database_url`.
    pub fn collector_config(&self, listen: &str, database_url: &str, extra: &str) -> PathBuf {
        let mut text = format!(
            "listen = \"{listen}\"\ndatabase_url = \"{database_url}\"\nquery_clients = [\"ops.test\"]\n{extra}\n\
             [tls]\ncert_file = \"collector.crt\"\nkey_file = \"collector.key\"\nclient_ca_file = \"ca.crt\"\n"
        );
        for (i, name) in self.gateways.iter().enumerate() {
            let key = hex::encode(gateway_signer(i as u8 + 1).public_key());
            text.push_str(&format!(
                "[[gateway]]\nid = \"{name}\"\naudit_public_key = \"{key}\"\n"
            ));
        }
        let path = self.dir.join("collector.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    /// The shipper config of gateway `n` (1-based) for its audit dir.
    pub fn ship_config(&self, n: usize, collector: &str, audit_dir: &Path, extra: &str) -> PathBuf {
        let text = format!(
            "collector = \"{collector}\"\naudit_dir = \"{}\"\nca_file = \"ca.crt\"\ncert_file = \"gw-{n}.crt\"\n\
             key_file = \"gw-{n}.key\"\npoll_interval_ms = 20\nretry_max_ms = 200\n{extra}\n",
            audit_dir.display()
        );
        let path = self.dir.join(format!("ship-{n}.toml"));
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Client TLS files for `name` (`ops`, `gw-1`, `stranger`, `rogue`).
    pub fn client(&self, name: &str) -> palisade_gateway::ClientTlsFiles {
        palisade_gateway::ClientTlsFiles {
            ca_file: Some(self.dir.join("ca.crt")),
            cert_file: Some(self.dir.join(format!("{name}.crt"))),
            key_file: Some(self.dir.join(format!("{name}.key"))),
        }
    }
}
