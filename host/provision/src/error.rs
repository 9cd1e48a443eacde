//! Errors of provisioning. Every way a bundle can be refused is its own variant with a sentence
//! that names the problem, so the admin API and the CLI report it without string matching.

use palisade_keys::KeyError;
use std::path::PathBuf;

/// Why the bytes of a bundle could not be decoded. Decoding never panics and never allocates
/// more than the input can hold (SER-001).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input does not start with the bundle magic: not a provisioning bundle at all.
    #[error("not a Palisade provisioning bundle (bad magic bytes)")]
    BadMagic,
    /// A bundle of an earlier format, which this build no longer reads. Bundles live at most
    /// 90 days, so no reader for an old format is kept: the provider re-issues the bundle.
    #[error("bundle format {version} is no longer read: ask the provider to re-issue it with this version (format {current})", current = super::FORMAT_VERSION)]
    RetiredFormat {
        /// The format of the bundle.
        version: u8,
    },
    /// The format version byte is not one this build knows (a later format).
    #[error("unsupported bundle format version {0}")]
    UnsupportedVersion(u8),
    /// The CBOR is not the bundle's layout in its one deterministic encoding, or exceeds a
    /// bound (a count over its cap or over what the remaining bytes hold, trailing bytes...).
    #[error("the bundle's encoding is refused")]
    Encoding(#[from] palisade_codec::CodecError),
    /// An identifier (provider, gateway, device, group, app) is empty, too long or not
    /// printable ASCII.
    #[error("field {field} is not a valid identifier")]
    InvalidIdentifier {
        /// The field.
        field: &'static str,
    },
    /// A key name is not 1..=64 characters of `[A-Za-z0-9._:-]`.
    #[error("field {field} is not a valid key name")]
    InvalidName {
        /// The field.
        field: &'static str,
    },
}

/// Why a bundle was not built or not applied. Nothing is changed on the gateway when `apply`
/// returns any of these (SER-020/021).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProvisionError {
    /// The bundle is larger than 4 MiB; refused before decoding (SER-001).
    #[error("bundle of {len} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The bytes are not a well-formed bundle.
    #[error("malformed bundle")]
    Malformed(#[from] DecodeError),
    /// The provider that claims to have signed the bundle is not trusted by this gateway.
    #[error("provider {0:?} is not trusted by this gateway")]
    UntrustedProvider(String),
    /// The provider's signature does not verify: the bundle was changed after signing or
    /// signed by another key (SER-003 integrity, SER-020 provider authentication).
    #[error("the bundle's signature does not verify under provider {provider:?}'s key: it was tampered with or signed by another key")]
    BadSignature {
        /// The claimed provider.
        provider: String,
    },
    /// The bundle is addressed to another gateway.
    #[error(
        "the bundle is addressed to gateway {addressed_to:?}, but this gateway is {this_gateway:?}"
    )]
    MisAddressed {
        /// The gateway in the header.
        addressed_to: String,
        /// This gateway's id.
        this_gateway: String,
    },
    /// The bundle's validity starts in the future (beyond the allowed clock skew).
    #[error("the bundle is not valid yet: issued at {issued_at}, now is {now}")]
    NotYetValid {
        /// `issued_at` from the header.
        issued_at: u64,
        /// The gateway's clock.
        now: u64,
    },
    /// The bundle's validity has ended.
    #[error("the bundle expired at {expired_at}, now is {now}")]
    Expired {
        /// `expires_at` from the header.
        expired_at: u64,
        /// The gateway's clock.
        now: u64,
    },
    /// The validity window is empty or longer than 90 days.
    #[error(
        "the bundle's validity window {issued_at}..{expires_at} is empty or longer than allowed"
    )]
    InvalidValidity {
        /// Start.
        issued_at: u64,
        /// End.
        expires_at: u64,
    },
    /// This very bundle was applied before (SER-012).
    #[error("bundle {bundle_id} was already applied (replay, SER-012)")]
    Replayed {
        /// The bundle id, hex.
        bundle_id: String,
    },
    /// The sequence number is not above the last one applied from this provider: an old
    /// bundle replayed or bundles applied out of order (SER-012).
    #[error("sequence {sequence} from provider {provider:?} is not above the last applied sequence {last} (replayed or out of order, SER-012)")]
    StaleSequence {
        /// The provider.
        provider: String,
        /// The bundle's sequence number.
        sequence: u64,
        /// The last sequence applied from this provider.
        last: u64,
    },
    /// The bundle is encrypted to an X25519 key that is not this gateway's.
    #[error("the bundle is encrypted to X25519 key {recipient}, not to this gateway's key {ours}")]
    WrongRecipient {
        /// The recipient key in the header, hex.
        recipient: String,
        /// This gateway's key, hex.
        ours: String,
    },
    /// The ciphertext failed authentication (tampered, or sealed under another key).
    #[error(
        "the bundle's ciphertext failed authentication: tampered with or encrypted to another key"
    )]
    DecryptionFailed,
    /// An encrypted bundle reached code that has no gateway key to open it.
    #[error("the bundle is encrypted and no gateway X25519 key was given to open it")]
    NoDecryptionKey,
    /// Application secrets in an unencrypted bundle: refused when building and when applying
    /// (SER-021: secrets never travel in clear).
    #[error("the bundle carries application secrets but is not encrypted; secrets never travel in clear (SER-021)")]
    SecretsInClear,
    /// The provider named an application it is not entitled to (SER-022).
    #[error("provider {provider:?} may not provision application {app:?} (SER-022: a provider touches only its own applications)")]
    AppNotAllowed {
        /// The provider.
        provider: String,
        /// The application.
        app: String,
    },
    /// The provider set gateway-scoped groups without being entitled to (SER-022).
    #[error("provider {provider:?} may not provision the gateway's own groups")]
    GatewayScopeNotAllowed {
        /// The provider.
        provider: String,
    },
    /// The provider tried to change a device or group another provider owns.
    #[error("{item} belongs to provider {owner:?}; provider {provider:?} may not change it")]
    ForeignItem {
        /// What was touched (e.g. `device "dev-1"`).
        item: String,
        /// Its owner.
        owner: String,
        /// The provider of this bundle.
        provider: String,
    },
    /// One item of the bundle is unusable (weak key, bad secret length, unknown member...).
    #[error("{item} is invalid: {reason}")]
    InvalidItem {
        /// The item.
        item: String,
        /// Why.
        reason: String,
    },
    /// A member directory refused the update during validation.
    #[error("member directory refused the update: {0}")]
    Directory(String),
    /// The keystore failed while importing (everything imported was rolled back).
    #[error("the keystore failed while importing")]
    Key(#[from] KeyError),
    /// The provisioning state could not be read or written.
    #[error("provisioning state {path}")]
    StateIo {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Another process (e.g. the running gateway) holds the provisioning state.
    #[error("provisioning state {path} is in use by another process (a running gateway applies bundles through its admin API)")]
    StateLocked {
        /// The state directory.
        path: PathBuf,
    },
    /// The provisioning state file is not valid.
    #[error("provisioning state {path} is corrupt: {reason}")]
    CorruptState {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

impl ProvisionError {
    /// A stable machine-readable code for the admin API and `--json` output.
    pub fn code(&self) -> &'static str {
        use ProvisionError::*;
        match self {
            TooLarge { .. } => "too_large",
            Malformed(_) => "malformed",
            UntrustedProvider(_) => "untrusted_provider",
            BadSignature { .. } => "bad_signature",
            MisAddressed { .. } => "mis_addressed",
            NotYetValid { .. } => "not_yet_valid",
            Expired { .. } => "expired",
            InvalidValidity { .. } => "invalid_validity",
            Replayed { .. } => "replayed",
            StaleSequence { .. } => "stale_sequence",
            WrongRecipient { .. } => "wrong_recipient",
            DecryptionFailed => "decryption_failed",
            NoDecryptionKey => "no_decryption_key",
            SecretsInClear => "secrets_in_clear",
            AppNotAllowed { .. } => "app_not_allowed",
            GatewayScopeNotAllowed { .. } => "gateway_scope_not_allowed",
            ForeignItem { .. } => "foreign_item",
            InvalidItem { .. } => "invalid_item",
            Directory(_) => "directory_refused",
            Key(_) => "keystore_error",
            StateIo { .. } => "state_io",
            StateLocked { .. } => "state_locked",
            CorruptState { .. } => "corrupt_state",
        }
    }

    /// Whether the bundle itself was refused (as opposed to the gateway failing to store it):
    /// the admin API answers 4xx for these and 5xx for the others.
    pub fn is_rejection(&self) -> bool {
        !matches!(
            self,
            ProvisionError::Key(_)
                | ProvisionError::StateIo { .. }
                | ProvisionError::CorruptState { .. }
        )
    }

    pub(crate) fn invalid(item: impl Into<String>, reason: impl Into<String>) -> Self {
        ProvisionError::InvalidItem {
            item: item.into(),
            reason: reason.into(),
        }
    }
}
