//! Signed Palisade modules carried by OCI registries (issue #17).
//!
//! A registry is transport only: the Palisade signature travels inside the component (the
//! `palisade-signature` section), so a gateway trusts what it pulls because of that signature,
//! its delegation and the version rule, never because of where it came from (SER-022). What
//! this crate adds on top of the OCI client (`oci-client`, ORAS project):
//!
//! - the artifact: the Wasm OCI artifact layout that `wkg` and the CNCF TAG Runtime wasm OCI
//!   work use (an OCI image manifest, config `application/vnd.wasm.config.v0+json`, one layer
//!   `application/wasm`), published with [`publish`] and read back with
//!   [`pull`], which bounds every size it is given before reading and checks the
//!   manifest, config and layer digests and sizes itself.
//! - the subscription ([`Subscriber`]): a gateway's subscription of one plugin to a reference (a pinned digest,
//!   a tag, or a tag gated on a canary), polled with a bounded interval and exponential
//!   back-off with jitter, keeping the last good version on any failure. Verification and
//!   installation are the gateway's ([`Installer`]), so this crate has no HTTP
//!   server code.
//! - the canary signal ([`fetch_attestation`]), carried through the registry itself as an attestation tag
//!   next to the digest it speaks for (`sha256-<hex>.palisade-canary`).
//!
//! TLS is rustls with the ring provider (the one provider of the Palisade process); plain
//! HTTP is used only for registries the configuration names as insecure ([`RegistryConfig`]).

#![deny(missing_docs)]

mod artifact;
mod canary;
mod config;
mod error;
mod subscription;

// The public API is this list; every module is private, so an item is public only when it
// is named here (issue #14).
pub use artifact::{
    parse_reference, publish, pull, resolve, sha256_digest, ComponentInfo, Published, PulledModule,
};
pub use canary::{fetch_attestation, Attestation};
pub use config::{RegistryConfig, DEFAULT_MAX_MANIFEST_BYTES, DEFAULT_REQUEST_TIMEOUT};
pub use error::OciError;
pub use oci_client::Reference;
pub use subscription::{
    system_clock, Clock, Counts, InstallError, Installer, Outcome, Subscriber, SubscriptionConfig,
    SubscriptionStatus, DEFAULT_MAX_BACKOFF, DEFAULT_POLL_INTERVAL, MAX_POLL_INTERVAL,
    MIN_POLL_INTERVAL,
};
