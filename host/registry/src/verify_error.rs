//! Why a module was refused: one variant per failure, each message a sentence that names the
//! problem, and a stable code for the admin API's JSON errors.

use super::format::FormatError;
use super::section::SectionError;
use super::time::format_rfc3339;
use super::{KeyId, ModuleHash, ModuleKind, NameError};

/// Why a signed module does not verify. Nothing in a refused module is trusted or stored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The file is larger than the configured limit (SER-001).
    #[error("the module is {size} bytes, over the {limit}-byte limit")]
    TooLarge {
        /// The file's size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The file ends early (in its header or inside a section).
    #[error("the file is truncated ({len} bytes): it ends inside its header or a section")]
    Truncated {
        /// The file's length.
        len: usize,
    },
    /// The file is not WebAssembly at all.
    #[error("the file is not WebAssembly (it does not start with \\0asm)")]
    NotWebAssembly,
    /// The file is WebAssembly but not a component (a core module, or another version).
    #[error("the file is not a WebAssembly component: {0}")]
    NotAComponent(SectionError),
    /// The component's sections cannot be parsed.
    #[error("the component is malformed at byte {offset}: {message}")]
    MalformedComponent {
        /// Where the parser stopped.
        offset: usize,
        /// What the parser reported.
        message: String,
    },
    /// No `palisade-signature` section: the module is not signed (SER-022).
    #[error("the module is unsigned: it has no palisade-signature section")]
    Unsigned,
    /// More than one top-level signature section.
    #[error("the module has {count} palisade-signature sections; exactly one is allowed")]
    DuplicateSignatureSection {
        /// How many there are.
        count: usize,
    },
    /// The signature section cannot be read, misses a field, or is not in canonical form.
    #[error("the palisade-signature section is malformed: {0}")]
    MalformedSignature(FormatError),
    /// An application or plugin name with a path separator, `..` or other forbidden text.
    #[error(transparent)]
    InvalidName(NameError),
    /// The delegation's root is not one of the gateway's trust anchors.
    #[error(
        "the delegation is signed by root key {root_key_id}, which this gateway does not trust"
    )]
    UntrustedRoot {
        /// The root the delegation names.
        root_key_id: KeyId,
    },
    /// The delegation's signature does not verify under its root.
    #[error("the delegation's signature does not verify under root key {root_key_id}")]
    BadDelegationSignature {
        /// The root the delegation names.
        root_key_id: KeyId,
    },
    /// The delegation's validity window has not started.
    #[error(
        "the delegation is not valid yet: it starts at {}, it is now {}",
        format_rfc3339(*not_before), format_rfc3339(*now)
    )]
    DelegationNotYetValid {
        /// Start of the window.
        not_before: u64,
        /// The time of the check.
        now: u64,
    },
    /// The delegation's validity window has ended.
    #[error(
        "the delegation expired at {}, it is now {}",
        format_rfc3339(*not_after), format_rfc3339(*now)
    )]
    DelegationExpired {
        /// End of the window.
        not_after: u64,
        /// The time of the check.
        now: u64,
    },
    /// The manifest was signed by a key that the attached delegation does not name.
    #[error(
        "the module is signed by key {signer}, which is not delegated for application {app:?}"
    )]
    KeyNotDelegated {
        /// The key that signed the manifest.
        signer: KeyId,
        /// The manifest's application.
        app: String,
    },
    /// The delegation is for another application than the manifest's.
    #[error("the delegation is for application {delegated:?}, but the module is for {app:?}")]
    DelegationForOtherApp {
        /// The delegation's application.
        delegated: String,
        /// The manifest's application.
        app: String,
    },
    /// The delegation does not cover the manifest's kind.
    #[error(
        "the delegation allows {} modules only, but this module is a {kind}",
        kind_list(delegated)
    )]
    DelegationForOtherKind {
        /// The kinds the delegation allows.
        delegated: Vec<ModuleKind>,
        /// The manifest's kind.
        kind: ModuleKind,
    },
    /// The publisher's signature over the manifest does not verify.
    #[error("the module signature does not verify under publisher key {publisher}")]
    BadModuleSignature {
        /// The publisher key.
        publisher: KeyId,
    },
    /// The component's bytes are not the ones the manifest was signed for (SER-013).
    #[error(
        "the module's bytes do not match its signed manifest: sha256 {actual} ({actual_size} \
         bytes), signed for {expected} ({expected_size} bytes)"
    )]
    ModuleHashMismatch {
        /// The hash in the manifest.
        expected: ModuleHash,
        /// The hash of the bytes.
        actual: ModuleHash,
        /// The size in the manifest.
        expected_size: u64,
        /// The size of the bytes.
        actual_size: u64,
    },
    /// The manifest's application is not the one expected (e.g. the upload path's).
    #[error("the module is for application {found:?}, not {expected:?}")]
    AppMismatch {
        /// The expected application.
        expected: String,
        /// The manifest's application.
        found: String,
    },
    /// The manifest's kind is not the one expected.
    #[error("the module is a {found}, not a {expected}")]
    KindMismatch {
        /// The expected kind.
        expected: ModuleKind,
        /// The manifest's kind.
        found: ModuleKind,
    },
}

fn kind_list(kinds: &[ModuleKind]) -> String {
    kinds
        .iter()
        .map(|k| k.name())
        .collect::<Vec<_>>()
        .join(", ")
}

impl VerifyError {
    /// A stable machine-readable code, one per variant (for JSON errors and metrics).
    pub fn code(&self) -> &'static str {
        match self {
            VerifyError::TooLarge { .. } => "too-large",
            VerifyError::Truncated { .. } => "truncated",
            VerifyError::NotWebAssembly => "not-webassembly",
            VerifyError::NotAComponent(_) => "not-a-component",
            VerifyError::MalformedComponent { .. } => "malformed-component",
            VerifyError::Unsigned => "unsigned",
            VerifyError::DuplicateSignatureSection { .. } => "duplicate-signature-section",
            VerifyError::MalformedSignature(_) => "malformed-signature",
            VerifyError::InvalidName(_) => "invalid-name",
            VerifyError::UntrustedRoot { .. } => "untrusted-root",
            VerifyError::BadDelegationSignature { .. } => "bad-delegation-signature",
            VerifyError::DelegationNotYetValid { .. } => "delegation-not-yet-valid",
            VerifyError::DelegationExpired { .. } => "delegation-expired",
            VerifyError::KeyNotDelegated { .. } => "key-not-delegated",
            VerifyError::DelegationForOtherApp { .. } => "delegation-for-other-app",
            VerifyError::DelegationForOtherKind { .. } => "delegation-for-other-kind",
            VerifyError::BadModuleSignature { .. } => "bad-module-signature",
            VerifyError::ModuleHashMismatch { .. } => "module-hash-mismatch",
            VerifyError::AppMismatch { .. } => "app-mismatch",
            VerifyError::KindMismatch { .. } => "kind-mismatch",
        }
    }
}

impl From<SectionError> for VerifyError {
    fn from(e: SectionError) -> VerifyError {
        match e {
            SectionError::Truncated { len } => VerifyError::Truncated { len },
            SectionError::NotWebAssembly => VerifyError::NotWebAssembly,
            e @ (SectionError::CoreModule | SectionError::NotAComponent { .. }) => {
                VerifyError::NotAComponent(e)
            }
            SectionError::Malformed { offset, message } => {
                VerifyError::MalformedComponent { offset, message }
            }
            SectionError::Duplicate { count } => VerifyError::DuplicateSignatureSection { count },
        }
    }
}
