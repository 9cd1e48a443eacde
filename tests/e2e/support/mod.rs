//! Helpers shared by the end-to-end tests.

/// The admin API fixture: keys, signed modules, a gateway config with `[admin]`.
pub mod admin;
/// A real oneM2M CSE (the ACME CSE) on a loopback port.
pub mod cse;
/// Test certificates (rcgen) and the real OCI registry, shared with host/oci's tests.
pub use palisade_test_support::{pki, registry};
/// A real `palisade serve` on 127.0.0.1, a blocking HTTP client, a stand-in CSE.
pub mod server;

/// Runs this package's `palisade audit verify --log <log> --key <key> [extra...]`: whether
/// it accepted the log, and what it said.
pub fn audit_verify(
    log: &std::path::Path,
    key: &std::path::Path,
    extra: &[&str],
) -> (bool, String) {
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_palisade"));
    palisade_test_support::audit_verify(bin, log, key, extra)
}
