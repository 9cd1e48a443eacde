//! Tests of the registry: fixtures shared by the test files below. Components are built by hand
//! (a component header, a nested core module, a custom section) so the tests need no plugin
//! build.

mod crash_tests;
mod key_tests;
mod store_tests;
mod verify_tests;

use ed25519_dalek::SigningKey;

use super::section::{append_custom_section, leb128, SIGNATURE_SECTION};
use super::{sign, Delegation, Manifest, ModuleCapability, ModuleKind, TrustAnchors};

/// A fixed "now" for every test (2027-01-15T08:00:00Z).
pub(crate) const NOW: u64 = 1_800_000_000;

/// A minimal valid component: header, a nested core module that carries its own
/// `palisade-signature` custom section (which is part of the module, not a signature), and a
/// top-level custom section with `payload`.
pub(crate) fn component(payload: &[u8]) -> Vec<u8> {
    let mut out = b"\0asm\x0d\x00\x01\x00".to_vec();
    let mut core = b"\0asm\x01\x00\x00\x00".to_vec();
    append_custom_section(&mut core, SIGNATURE_SECTION, b"not the signature");
    out.push(1);
    leb128(&mut out, core.len());
    out.extend_from_slice(&core);
    append_custom_section(&mut out, "payload", payload);
    out
}

/// A root, a publisher and the anchors that trust the root.
pub(crate) struct Chain {
    pub root: SigningKey,
    pub publisher: SigningKey,
    pub anchors: TrustAnchors,
}

impl Chain {
    pub(crate) fn new() -> Chain {
        Chain::with_seeds(1, 2)
    }

    pub(crate) fn with_seeds(root: u8, publisher: u8) -> Chain {
        let root = SigningKey::from_bytes(&[root; 32]);
        let publisher = SigningKey::from_bytes(&[publisher; 32]);
        let anchors = TrustAnchors::from_keys([root.verifying_key()]);
        Chain {
            root,
            publisher,
            anchors,
        }
    }

    /// A delegation to this chain's publisher, valid an hour around [`NOW`].
    pub(crate) fn delegation(&self, app: &str, kinds: &[ModuleKind]) -> Delegation {
        Delegation::issue(
            &self.root,
            self.publisher.verifying_key(),
            app,
            kinds,
            NOW - 3600,
            NOW + 3600,
        )
        .unwrap()
    }

    /// A signed authorizer `app/name@version` whose component carries `payload`.
    pub(crate) fn signed(&self, app: &str, name: &str, version: &str, payload: &[u8]) -> Vec<u8> {
        let delegation = self.delegation(app, &[ModuleKind::Authorizer]);
        sign(
            &component(payload),
            &manifest(app, ModuleKind::Authorizer, name, version),
            &self.publisher,
            &delegation,
        )
        .unwrap()
    }
}

pub(crate) fn manifest(app: &str, kind: ModuleKind, name: &str, version: &str) -> Manifest {
    Manifest::new(
        app,
        kind,
        name,
        version.parse().unwrap(),
        &[ModuleCapability::Kv],
    )
}
