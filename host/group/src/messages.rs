//! The messages of group authentication (SER-027/028) and their encodings (see `wire`).
//!
//! Signed messages travel in a COSE_Sign1 whose Ed25519 signature covers `wire::signed_part`
//! of their encoding (docs/group-auth-protocol.md §2.3); the `signature` fields hold it.
//! `digest()` of a challenge is SHA-256 of its whole encoding, signature included:
//! answers and confirmations name the challenge they belong to by this digest, which binds
//! group, nonce, expiry, gateway and (independent mode) the server's ephemeral key.

use super::error::Rejection;
use super::error::WireError;
use super::wire::WireMessage;
use super::Mode;
use sha2::{Digest, Sha256};

/// Server → gateway (and relayed to devices in independent mode): a signed group challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupChallenge {
    /// Represented (SER-027) or independent (SER-028).
    pub mode: Mode,
    /// The group being authenticated.
    pub group: String,
    /// The server's id.
    pub server: String,
    /// The gateway the challenge is addressed to.
    pub gateway: String,
    /// Single-use random nonce (SER-012).
    pub nonce: [u8; 32],
    /// Issue time, Unix seconds.
    pub issued_at: u64,
    /// Expiry, Unix seconds.
    pub expires_at: u64,
    /// The server's ephemeral X25519 key: present exactly in independent mode.
    pub server_ephemeral: Option<[u8; 32]>,
    /// The server's signature.
    pub signature: [u8; 64],
}

/// Gateway → devices in represented mode: the gateway's own signed challenge, bound to the
/// server's challenge by its digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberChallenge {
    /// The group.
    pub group: String,
    /// The gateway issuing it.
    pub gateway: String,
    /// Digest of the server's [`GroupChallenge`] this local round serves.
    pub session: [u8; 32],
    /// The gateway's fresh nonce.
    pub nonce: [u8; 32],
    /// Expiry, Unix seconds (never later than the server's).
    pub expires_at: u64,
    /// The gateway's signature.
    pub signature: [u8; 64],
}

/// Device → gateway: the answer to a challenge, signed by the device's identity key over the
/// whole transcript (challenge digest, device id, device ephemeral key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceAnswer {
    /// The device's id.
    pub device: String,
    /// Digest of the challenge answered (a [`GroupChallenge`] in independent mode, a
    /// [`MemberChallenge`] in represented mode).
    pub challenge: [u8; 32],
    /// The device's ephemeral X25519 key: present exactly in independent mode.
    pub ephemeral: Option<[u8; 32]>,
    /// The device's signature.
    pub signature: [u8; 64],
}

/// Gateway → server in independent mode: every answer in one message, signed by the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupAnswers {
    /// The group.
    pub group: String,
    /// The relaying gateway.
    pub gateway: String,
    /// The server's nonce.
    pub nonce: [u8; 32],
    /// The devices' answers, as relayed.
    pub answers: Vec<DeviceAnswer>,
    /// The gateway's signature.
    pub signature: [u8; 64],
}

/// Gateway → server in represented mode: the members the gateway authenticated, bound to the
/// server's nonce, signed by the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupAssertion {
    /// The group.
    pub group: String,
    /// The asserting gateway.
    pub gateway: String,
    /// The server's nonce.
    pub nonce: [u8; 32],
    /// Digest of the server's challenge.
    pub challenge: [u8; 32],
    /// Members the gateway authenticated.
    pub authenticated: Vec<String>,
    /// Members the gateway refused, with why.
    pub rejected: Vec<(String, Rejection)>,
    /// The gateway's ephemeral X25519 key, to which the group key is wrapped.
    pub gateway_ephemeral: [u8; 32],
    /// Evidence mode (#16.5): the encoding of the [`MemberChallenge`] the members answered;
    /// `None` in plain represented mode, where the server trusts the gateway's list.
    pub member_challenge: Option<Vec<u8>>,
    /// Evidence mode: the authenticated members' answers as they signed them, which the
    /// server verifies itself (batch) against their registered keys.
    pub evidence: Vec<DeviceAnswer>,
    /// The gateway's signature.
    pub signature: [u8; 64],
}

/// Server → gateway in represented mode: the group's security association, its key wrapped
/// for the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupAssociation {
    /// The group.
    pub group: String,
    /// The gateway.
    pub gateway: String,
    /// The server's nonce.
    pub nonce: [u8; 32],
    /// The association's id.
    pub association: [u8; 16],
    /// How many asserted members the server accepted.
    pub accepted: u32,
    /// Asserted members the server refused.
    pub rejected: Vec<(String, Rejection)>,
    /// The server's ephemeral X25519 key for the wrap.
    pub server_ephemeral: [u8; 32],
    /// The group key, ChaCha20-Poly1305-encrypted (32 bytes + 16 tag).
    pub wrapped_key: [u8; 48],
    /// Expiry of the association, Unix seconds.
    pub expires_at: u64,
    /// The server's signature.
    pub signature: [u8; 64],
}

/// One device's key confirmation (server → gateway → device).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyConfirmation {
    /// The device.
    pub device: String,
    /// Digest of the challenge the device answered.
    pub challenge: [u8; 32],
    /// HMAC-SHA256 under the device's confirmation key over the transcript.
    pub mac: [u8; 32],
}

/// Server → gateway in independent mode: per-device confirmations and rejections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupConfirmations {
    /// The group.
    pub group: String,
    /// The gateway.
    pub gateway: String,
    /// The server's nonce.
    pub nonce: [u8; 32],
    /// One per authenticated device; the gateway cannot check or forge them.
    pub confirmations: Vec<KeyConfirmation>,
    /// Devices refused, with why.
    pub rejected: Vec<(String, Rejection)>,
    /// The server's signature.
    pub signature: [u8; 64],
}

/// Direction of a channel message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Device (or, in represented mode, gateway) → server.
    ToServer = 1,
    /// Server → device (or gateway).
    ToDevice = 2,
}

/// An AEAD-protected channel message after the association (SER-002/003/012).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedMessage {
    /// The session (per device in independent mode, per association in represented mode).
    pub session: [u8; 16],
    /// Direction.
    pub direction: Direction,
    /// Per-direction counter, starting at 0.
    pub counter: u64,
    /// Ciphertext with the 16-byte tag.
    pub ciphertext: Vec<u8>,
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

impl GroupChallenge {
    /// SHA-256 of the whole encoding: how answers name this challenge.
    pub fn digest(&self) -> [u8; 32] {
        digest(&self.to_bytes())
    }
}

impl MemberChallenge {
    /// SHA-256 of the whole encoding: how answers name this challenge.
    pub fn digest(&self) -> [u8; 32] {
        digest(&self.to_bytes())
    }
}

/// Any group-authentication message, for a receiver that dispatches on the type byte.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Message {
    Challenge(GroupChallenge),
    MemberChallenge(MemberChallenge),
    Answer(DeviceAnswer),
    Answers(GroupAnswers),
    Assertion(GroupAssertion),
    Association(GroupAssociation),
    Confirmations(GroupConfirmations),
    Confirmation(KeyConfirmation),
    Sealed(SealedMessage),
}

impl Message {
    /// Decodes any message; garbage gives a [`WireError`], never a panic.
    pub fn decode(b: &[u8]) -> Result<Message, WireError> {
        Ok(match super::wire::peek_type(b)? {
            GroupChallenge::TYPE => Message::Challenge(GroupChallenge::from_bytes(b)?),
            MemberChallenge::TYPE => Message::MemberChallenge(MemberChallenge::from_bytes(b)?),
            DeviceAnswer::TYPE => Message::Answer(DeviceAnswer::from_bytes(b)?),
            GroupAnswers::TYPE => Message::Answers(GroupAnswers::from_bytes(b)?),
            GroupAssertion::TYPE => Message::Assertion(GroupAssertion::from_bytes(b)?),
            GroupAssociation::TYPE => Message::Association(GroupAssociation::from_bytes(b)?),
            GroupConfirmations::TYPE => Message::Confirmations(GroupConfirmations::from_bytes(b)?),
            KeyConfirmation::TYPE => Message::Confirmation(KeyConfirmation::from_bytes(b)?),
            SealedMessage::TYPE => Message::Sealed(SealedMessage::from_bytes(b)?),
            t => return Err(WireError::UnknownType(t)),
        })
    }

    /// Encodes the message.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Message::Challenge(m) => m.to_bytes(),
            Message::MemberChallenge(m) => m.to_bytes(),
            Message::Answer(m) => m.to_bytes(),
            Message::Answers(m) => m.to_bytes(),
            Message::Assertion(m) => m.to_bytes(),
            Message::Association(m) => m.to_bytes(),
            Message::Confirmations(m) => m.to_bytes(),
            Message::Confirmation(m) => m.to_bytes(),
            Message::Sealed(m) => m.to_bytes(),
        }
    }
}
