//! The gateway's signed request for a group challenge (body of `POST /group/v1/challenge`).
//!
//! Why signed: the server keeps a bounded table of open challenges (SER-001); an anonymous
//! request could fill it in any gateway's name and lock the real gateways out, and would learn
//! which groups a gateway may represent (SER-027). Signing with the gateway's identity key
//! (the key the server registered for it) authenticates the gateway before any of that; the
//! request's time and random nonce make it single-use (SER-012).

use crate::wire::{Reader, WireMessage, Writer};
use crate::WireError;
use crate::{check_id, sign_encoded, verify_encoded, GroupError, GroupSigner, Mode};
use ed25519_dalek::VerifyingKey;
use rand::RngCore;

/// Gateway → server: "challenge me for this group in this mode". Encoded like the library's
/// signed messages (a COSE_Sign1 over `[version, 0x20, fields...]`) and signed by the
/// gateway under the same signing context; the type keeps it from being taken for any other
/// signed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChallengeRequest {
    /// Represented (SER-027) or independent (SER-028).
    pub mode: Mode,
    /// The group to authenticate.
    pub group: String,
    /// The requesting gateway.
    pub gateway: String,
    /// When the gateway made the request, Unix seconds (must be near the server's clock).
    pub issued_at: u64,
    /// A fresh random nonce: the server serves a given request once (SER-012).
    pub nonce: [u8; 32],
    /// The gateway's signature.
    pub signature: [u8; 64],
}

impl WireMessage for ChallengeRequest {
    /// Outside the library's range (1..=9) on purpose, so both can grow.
    const TYPE: u8 = 0x20;
    const FIELDS: u64 = 5;
    fn encode_fields(&self, w: &mut Writer) {
        w.u8(self.mode as u8);
        w.id(&self.group);
        w.id(&self.gateway);
        w.u64(self.issued_at);
        w.raw(&self.nonce);
        w.signature(&self.signature);
    }
    fn decode_fields(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let m = r.u8("mode")?;
        Ok(ChallengeRequest {
            mode: Mode::from_code(m).ok_or(WireError::InvalidValue {
                field: "mode",
                value: m,
            })?,
            group: r.id("group")?,
            gateway: r.id("gateway")?,
            issued_at: r.u64("issued_at")?,
            nonce: r.arr("nonce")?,
            signature: r.signature()?,
        })
    }
}

impl ChallengeRequest {
    /// A request signed by `signer`, the gateway's identity key.
    pub fn signed(
        signer: &dyn GroupSigner,
        gateway: &str,
        group: &str,
        mode: Mode,
        now: u64,
    ) -> Result<Self, GroupError> {
        check_id(gateway)?;
        check_id(group)?;
        let mut nonce = [0u8; 32];
        crate::Rng.fill_bytes(&mut nonce);
        let mut r = ChallengeRequest {
            mode,
            group: group.to_owned(),
            gateway: gateway.to_owned(),
            issued_at: now,
            nonce,
            signature: [0; 64],
        };
        r.signature = sign_encoded(signer, &r.to_bytes())?;
        Ok(r)
    }

    /// Checks the gateway's signature.
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), GroupError> {
        verify_encoded(key, &self.to_bytes(), "gateway")
    }
}
