//! Key derivation for group authentication.
//!
//! Independent mode (SER-028): per-device keys come from X25519 between the device's and the
//! server's ephemeral keys, through HKDF-SHA256 salted with the challenge digest and bound to
//! the transcript hash (the device's whole signed answer). Only the two ephemeral secrets give
//! the shared secret, and neither ever leaves its holder, so the relaying gateway cannot
//! derive the keys from anything it sees.
//!
//! Represented mode (SER-027): the group key is random, wrapped for the gateway under a key
//! derived the same way from the server's and the gateway's ephemeral keys.

use super::error::GroupError;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// The keys of one device's (or one group association's) session with the server. Zeroized
/// on drop.
pub struct SessionKeys {
    /// Public session id (names the session on channel messages).
    pub session: [u8; 16],
    /// Key for messages towards the server.
    pub to_server: Zeroizing<[u8; 32]>,
    /// Key for messages towards the device.
    pub to_device: Zeroizing<[u8; 32]>,
    /// Key for the key-confirmation MAC.
    pub(crate) confirm: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionKeys")
            .field("session", &hex::encode(self.session))
            .finish_non_exhaustive()
    }
}

/// SHA-256 over the full encoding of a device's answer (signature included): the transcript.
pub(crate) fn transcript_hash(answer_encoding: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"palisade/group/v1/transcript");
    h.update(answer_encoding);
    h.finalize().into()
}

/// X25519 with a low-order check: an all-zero shared secret means the peer chose a low-order
/// point to force a known key, and is refused.
pub(crate) fn agree(
    secret: &x25519_dalek::StaticSecret,
    peer: &[u8; 32],
) -> Result<Zeroizing<[u8; 32]>, GroupError> {
    let s = secret.diffie_hellman(&x25519_dalek::PublicKey::from(*peer));
    if !s.was_contributory() {
        return Err(GroupError::LowOrderKey);
    }
    Ok(Zeroizing::new(s.to_bytes()))
}

/// Derives the session keys from a shared secret, the challenge digest and the transcript.
pub fn derive_session(
    shared: &[u8; 32],
    challenge: &[u8; 32],
    transcript: &[u8; 32],
) -> SessionKeys {
    let hk = hkdf::Hkdf::<Sha256>::new(Some(challenge), shared);
    let expand = |label: &[u8]| {
        let mut k = Zeroizing::new([0u8; 32]);
        let info = [b"palisade/group/v1 ".as_slice(), label, transcript].concat();
        hk.expand(&info, &mut *k)
            .expect("32 bytes is a valid HKDF length");
        k
    };
    let sid = expand(b"session-id");
    SessionKeys {
        session: sid[..16].try_into().expect("16 bytes"),
        to_server: expand(b"to-server"),
        to_device: expand(b"to-device"),
        confirm: expand(b"confirm"),
    }
}

/// The server's key confirmation for a device: HMAC under the confirmation key over the
/// transcript. Only someone holding the derived keys can make or check it.
pub(crate) fn confirmation_mac(keys: &SessionKeys, transcript: &[u8; 32]) -> [u8; 32] {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&*keys.confirm).expect("any key length");
    m.update(b"palisade/group/v1 server-confirms");
    m.update(transcript);
    m.finalize().into_bytes().into()
}

/// Checks a confirmation in constant time.
pub(crate) fn check_confirmation(
    keys: &SessionKeys,
    transcript: &[u8; 32],
    mac: &[u8; 32],
) -> Result<(), GroupError> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&*keys.confirm).expect("any key length");
    m.update(b"palisade/group/v1 server-confirms");
    m.update(transcript);
    m.verify_slice(mac).map_err(|_| GroupError::BadConfirmation)
}

/// Session keys of a represented-mode association, derived from the group key.
pub(crate) fn association_session(group_key: &[u8; 32], association: &[u8; 16]) -> SessionKeys {
    derive_session(group_key, &Sha256::digest(association).into(), &[0u8; 32])
}

/// Wraps (`seal = true`) or unwraps the 32-byte group key under a key derived from the wrap
/// shared secret and the assertion's digest (the AEAD's associated data binds it too).
pub(crate) fn wrap_key(shared: &[u8; 32], assertion_digest: &[u8; 32], key: &[u8; 32]) -> [u8; 48] {
    let k = wrap_kek(shared, assertion_digest);
    let ct = ChaCha20Poly1305::new(Key::from_slice(&*k))
        .encrypt(
            Nonce::from_slice(&[0u8; 12]),
            Payload {
                msg: key,
                aad: assertion_digest,
            },
        )
        .expect("encrypting 32 bytes cannot fail");
    ct.try_into().expect("32 bytes + 16-byte tag")
}

/// Opens a wrapped group key.
pub(crate) fn unwrap_key(
    shared: &[u8; 32],
    assertion_digest: &[u8; 32],
    wrapped: &[u8; 48],
) -> Result<Zeroizing<[u8; 32]>, GroupError> {
    let k = wrap_kek(shared, assertion_digest);
    let pt = ChaCha20Poly1305::new(Key::from_slice(&*k))
        .decrypt(
            Nonce::from_slice(&[0u8; 12]),
            Payload {
                msg: wrapped,
                aad: assertion_digest,
            },
        )
        .map_err(|_| GroupError::UnwrapFailed)?;
    let pt = Zeroizing::new(pt);
    Ok(Zeroizing::new(
        pt.as_slice()
            .try_into()
            .map_err(|_| GroupError::UnwrapFailed)?,
    ))
}

/// The wrapping key: single-use (fresh ephemeral keys every time), so a zero nonce is safe.
fn wrap_kek(shared: &[u8; 32], assertion_digest: &[u8; 32]) -> Zeroizing<[u8; 32]> {
    let hk = hkdf::Hkdf::<Sha256>::new(Some(assertion_digest), shared);
    let mut k = Zeroizing::new([0u8; 32]);
    hk.expand(b"palisade/group/v1 group-key-wrap", &mut *k)
        .expect("valid length");
    k
}
