//! The errors of registry operations.

use oci_client::errors::OciDistributionError;

/// Why a registry operation failed. Every variant names the reference or digest concerned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OciError {
    /// The configuration is unusable.
    #[error("registry configuration: {0}")]
    Config(String),
    /// The reference does not parse, or is not of the form the operation needs.
    #[error("bad reference {reference:?}: {reason}")]
    Reference {
        /// The reference as given.
        reference: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The registry could not be reached or answered with an error.
    #[error("registry request for {reference} failed")]
    Registry {
        /// The reference being fetched or pushed.
        reference: String,
        /// The client's error.
        #[source]
        source: OciDistributionError,
    },
    /// The operation did not finish within the configured time.
    #[error("registry request for {reference} timed out after {seconds} s")]
    Timeout {
        /// The reference.
        reference: String,
        /// The configured limit.
        seconds: u64,
    },
    /// Something the registry sent is larger than allowed (checked before it is read).
    #[error("{what} of {reference} is {size} bytes, over the limit of {limit}")]
    TooLarge {
        /// Which part.
        what: &'static str,
        /// The reference.
        reference: String,
        /// The size declared or seen.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// Content does not hash to the digest it was asked for or declared with.
    #[error("{what} of {reference}: digest mismatch, expected {expected}, got {actual}")]
    DigestMismatch {
        /// Which part.
        what: &'static str,
        /// The reference.
        reference: String,
        /// The digest asked for.
        expected: String,
        /// The digest of what arrived.
        actual: String,
    },
    /// Content is not the size its descriptor declares.
    #[error("{what} of {reference}: declared {declared} bytes, received {received}")]
    SizeMismatch {
        /// Which part.
        what: &'static str,
        /// The reference.
        reference: String,
        /// The descriptor's size.
        declared: u64,
        /// What arrived (possibly cut off at the declared size plus one).
        received: u64,
    },
    /// The manifest is not a Wasm OCI artifact as this crate publishes them.
    #[error("{reference} is not a Wasm module artifact: {reason}")]
    NotWasmArtifact {
        /// The reference.
        reference: String,
        /// The first rule it breaks.
        reason: String,
    },
}

impl OciError {
    /// A short stable code for health, metrics and the audit.
    pub fn code(&self) -> &'static str {
        match self {
            OciError::Config(_) => "config",
            OciError::Reference { .. } => "bad-reference",
            OciError::Registry { .. } => "registry-unavailable",
            OciError::Timeout { .. } => "registry-timeout",
            OciError::TooLarge { .. } => "too-large",
            OciError::DigestMismatch { .. } => "digest-mismatch",
            OciError::SizeMismatch { .. } => "size-mismatch",
            OciError::NotWasmArtifact { .. } => "not-wasm-artifact",
        }
    }
}
