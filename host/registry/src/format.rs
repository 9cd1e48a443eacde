//! Reading the registry's JSON files and sections (key files, delegations, the signature
//! block): the one error type for "this text is not what it claims to be", and the strict
//! decoders for keys and signatures.

use ed25519_dalek::{Signature, VerifyingKey};

use super::{decode_hex, BadHex, NameError};

/// A key file, delegation or signature block that cannot be read. Every field is mandatory,
/// unknown fields are refused, and values have exactly one spelling, so a file can never be
/// made to pass a check by leaving something out or writing it differently.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// Not JSON, a missing or unknown field, or a value of the wrong type.
    #[error("it is not valid JSON of the expected shape")]
    Json(#[from] serde_json::Error),
    /// The `format` field names another kind of file or another version of this one.
    #[error("its format is {found:?}, expected {expected:?}")]
    WrongFormat {
        /// The format this reader understands.
        expected: &'static str,
        /// The format the file declares.
        found: String,
    },
    /// A key, key id, hash or signature is not written as lowercase hex of the right length.
    #[error(transparent)]
    Hex(#[from] BadHex),
    /// A public key is not a valid Ed25519 point, or is a small-order (weak) point under which
    /// a signature proves nothing.
    #[error("the {field} is not a usable Ed25519 public key (invalid or weak point)")]
    BadPublicKey {
        /// Which key.
        field: &'static str,
    },
    /// The key id written in a key file is not the id of the key in it.
    #[error("the key id {stated} does not belong to the key in the file (its id is {computed})")]
    KeyIdMismatch {
        /// The id written in the file.
        stated: String,
        /// The id computed from the key.
        computed: String,
    },
    /// An application or plugin name is not allowed.
    #[error(transparent)]
    InvalidName(#[from] NameError),
    /// A list (kinds, capabilities) is not in canonical order or has duplicates.
    #[error("the {field} must be listed once each, in canonical order ({order})")]
    NotSorted {
        /// Which list.
        field: &'static str,
        /// The canonical order.
        order: &'static str,
    },
    /// A list that must not be empty is empty.
    #[error("the {field} list is empty")]
    Empty {
        /// Which list.
        field: &'static str,
    },
    /// A delegation whose validity window is empty.
    #[error("not_before ({not_before}) must be earlier than not_after ({not_after})")]
    EmptyValidity {
        /// Start of the window, seconds since the epoch.
        not_before: u64,
        /// End of the window, seconds since the epoch.
        not_after: u64,
    },
    /// The bytes are not the canonical serialization of what they contain (extra spaces,
    /// another field order, escapes): refused so that one signed file has one byte form.
    #[error("the {what} is not in canonical form (compact JSON, fields in the documented order)")]
    NotCanonical {
        /// What was being read.
        what: &'static str,
    },
    /// The text is larger than any valid one.
    #[error("the {what} is {size} bytes, more than the {limit} allowed")]
    TooLarge {
        /// What was being read.
        what: &'static str,
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
}

/// Checks a `format` tag.
pub(crate) fn expect_format(found: &str, expected: &'static str) -> Result<(), FormatError> {
    if found == expected {
        Ok(())
    } else {
        Err(FormatError::WrongFormat {
            expected,
            found: found.to_owned(),
        })
    }
}

/// Decodes a public key, refusing invalid and small-order points (a weak key would let one
/// signature verify for many messages).
pub(crate) fn public_key(hex: &str, field: &'static str) -> Result<VerifyingKey, FormatError> {
    let bytes = decode_hex::<32>(hex, field)?;
    let key = VerifyingKey::from_bytes(&bytes).map_err(|_| FormatError::BadPublicKey { field })?;
    if key.is_weak() {
        return Err(FormatError::BadPublicKey { field });
    }
    Ok(key)
}

/// Decodes a 64-byte Ed25519 signature.
pub(crate) fn signature(hex: &str, field: &'static str) -> Result<Signature, FormatError> {
    Ok(Signature::from_bytes(&decode_hex::<64>(hex, field)?))
}

/// Checks that a list is strictly ascending (sorted, no duplicates).
pub(crate) fn strictly_sorted<T: Ord>(
    items: &[T],
    field: &'static str,
    order: &'static str,
) -> Result<(), FormatError> {
    if items.windows(2).all(|w| w[0] < w[1]) {
        Ok(())
    } else {
        Err(FormatError::NotSorted { field, order })
    }
}
