//! Errors of group authentication. A whole message refused is a [`GroupError`]; one member
//! refused inside an otherwise good message is a [`Rejection`], so one bad device never fails
//! the others (SER-027/028).

use serde::{Deserialize, Serialize};
use std::fmt;

/// Why decoding a message failed. Decoding never panics (fuzzed: `fuzz/group_decode`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The message is larger than [`crate::MAX_MESSAGE_LEN`].
    #[error("message of {len} bytes exceeds the {max}-byte limit")]
    MessageTooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The message ended inside a field.
    #[error("message truncated in field {field}")]
    Truncated {
        /// The field being read.
        field: &'static str,
    },
    /// The version byte is not one this build speaks.
    #[error("unsupported wire version {0}")]
    UnsupportedVersion(u8),
    /// The message type byte is unknown.
    #[error("unknown message type {0}")]
    UnknownType(u8),
    /// A message of another type was given where one type was expected.
    #[error("expected message type {expected}, got {got}")]
    WrongType {
        /// The expected type code.
        expected: u8,
        /// The type code found.
        got: u8,
    },
    /// A length prefix exceeds the field's cap.
    #[error("field {field} is {len} bytes, the limit is {max}")]
    FieldTooLong {
        /// The field.
        field: &'static str,
        /// Its announced length.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// A list has more entries than allowed, or more than the remaining bytes can hold.
    #[error("list {field} announces {count} entries, the limit is {max}")]
    TooMany {
        /// The list.
        field: &'static str,
        /// The announced count.
        count: usize,
        /// The cap for this message.
        max: usize,
    },
    /// A field that must be non-empty printable ASCII is not.
    #[error("field {field} is not a valid identifier")]
    InvalidIdentifier {
        /// The field.
        field: &'static str,
    },
    /// An enum or flag byte has an undefined value.
    #[error("field {field} has undefined value {value}")]
    InvalidValue {
        /// The field.
        field: &'static str,
        /// The byte found.
        value: u8,
    },
    /// Bytes remain after the last field.
    #[error("{0} trailing bytes after the message")]
    TrailingBytes(usize),
    /// A field is not the CBOR item the protocol puts there (or the COSE_Sign1 envelope is
    /// not the one it defines).
    #[error("field {field} is not the expected CBOR item")]
    Malformed {
        /// The field.
        field: &'static str,
    },
    /// The message decodes but is not in its one canonical (deterministic) encoding.
    #[error("the message is not in deterministic CBOR encoding")]
    NotCanonical,
}

/// The codec's refusals in the protocol's terms (the variants callers and tests already
/// match on).
impl From<palisade_codec::CodecError> for WireError {
    fn from(e: palisade_codec::CodecError) -> Self {
        use palisade_codec::CodecError as C;
        match e {
            C::Truncated { field } => WireError::Truncated { field },
            C::FieldTooLong { field, len, max } => WireError::FieldTooLong { field, len, max },
            C::TooMany { field, count, max } => WireError::TooMany { field, count, max },
            C::NotCanonical { .. } => WireError::NotCanonical,
            C::TrailingBytes { count } => WireError::TrailingBytes(count),
            C::Unexpected { field, .. } | C::WrongCount { field, .. } | C::OutOfRange { field } => {
                WireError::Malformed { field }
            }
            // A variant added to the codec later: still a refusal of this message.
            _ => WireError::Malformed { field: "message" },
        }
    }
}

/// Why one member of a group was not authenticated. Sent on the wire as one byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Rejection {
    /// The device is not registered as a member of this group.
    NotMember = 1,
    /// The answer's signature does not verify under the member's registered key (a forged or
    /// tampered answer; found by bisection of the batch).
    BadSignature = 2,
    /// The member answered twice in one batch.
    DuplicateAnswer = 3,
    /// The answer was made for an earlier challenge of this group (SER-012 replay).
    AnswerReplayed = 4,
    /// The answer was made for a challenge of another group.
    AnswerForOtherGroup = 5,
    /// The answer refers to a challenge the server never issued.
    AnswerForUnknownChallenge = 6,
    /// Independent mode needs the device's ephemeral key, and it is missing (or present in
    /// represented mode).
    EphemeralKeyMismatch = 7,
    /// The device's ephemeral X25519 key is a low-order point (no shared secret).
    LowOrderEphemeral = 8,
    /// Evidence mode (#16.5): the gateway asserted the member without a valid signed answer
    /// of it to the gateway's member challenge.
    NoEvidence = 9,
}

impl Rejection {
    pub(crate) fn from_code(c: u8) -> Option<Rejection> {
        use Rejection::*;
        Some(match c {
            1 => NotMember,
            2 => BadSignature,
            3 => DuplicateAnswer,
            4 => AnswerReplayed,
            5 => AnswerForOtherGroup,
            6 => AnswerForUnknownChallenge,
            7 => EphemeralKeyMismatch,
            8 => LowOrderEphemeral,
            9 => NoEvidence,
            _ => return None,
        })
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Rejection::NotMember => "not a member of the group",
            Rejection::BadSignature => "signature does not verify",
            Rejection::DuplicateAnswer => "answered twice",
            Rejection::AnswerReplayed => "answer replayed from an earlier challenge",
            Rejection::AnswerForOtherGroup => "answer made for another group's challenge",
            Rejection::AnswerForUnknownChallenge => "answer for a challenge never issued",
            Rejection::EphemeralKeyMismatch => "ephemeral key missing or unexpected",
            Rejection::LowOrderEphemeral => "ephemeral key is a low-order point",
            Rejection::NoEvidence => "asserted without a valid answer of the member",
        })
    }
}

/// Why a group-authentication message or step was refused as a whole.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GroupError {
    /// The bytes are not a valid message.
    #[error("malformed message")]
    Wire(#[from] WireError),
    /// An identifier given to the API is empty, too long, or not printable ASCII.
    #[error("invalid identifier {0:?}")]
    InvalidIdentifier(String),
    /// The group is not registered here.
    #[error("unknown group {0}")]
    UnknownGroup(String),
    /// The gateway is not registered with the server.
    #[error("unknown gateway {0}")]
    UnknownGateway(String),
    /// SER-027: this gateway may not represent this group.
    #[error("gateway {gateway} is not authorized to represent group {group}")]
    GatewayNotAuthorized {
        /// The gateway.
        gateway: String,
        /// The group.
        group: String,
    },
    /// A registered member key is a weak (small-order) Ed25519 point.
    #[error("device {0} has a weak (small-order) public key")]
    WeakMemberKey(String),
    /// The group has more members than one message may carry.
    #[error("group has {count} members, the limit is {max}")]
    TooManyMembers {
        /// The count.
        count: usize,
        /// The cap.
        max: usize,
    },
    /// SER-012: the challenge (or the session it opened) is past its expiry.
    #[error("challenge expired at {expired_at} (now {now})")]
    ChallengeExpired {
        /// Its expiry (Unix seconds).
        expired_at: u64,
        /// The time given.
        now: u64,
    },
    /// The challenge claims to be issued in the future or its validity window is invalid.
    #[error("challenge validity window is invalid")]
    InvalidValidity,
    /// SER-012: this challenge was already seen here (a replayed challenge).
    #[error("challenge replayed")]
    ChallengeReplayed,
    /// SER-012: the session of this nonce was already completed (an old challenge used again).
    #[error("challenge already used")]
    ChallengeAlreadyUsed,
    /// No open session has this nonce.
    #[error("no open session for this challenge")]
    UnknownChallenge,
    /// The message's mode does not match the session's.
    #[error("message is for {got:?} mode, session is {expected:?}")]
    WrongMode {
        /// The session's mode.
        expected: super::Mode,
        /// The message's mode.
        got: super::Mode,
    },
    /// The message names another group than the session.
    #[error("message is for group {got}, session is for {expected}")]
    GroupMismatch {
        /// The session's group.
        expected: String,
        /// The message's group.
        got: String,
    },
    /// The message is addressed to or from another gateway than the session's.
    #[error("message is for gateway {got}, session is for {expected}")]
    GatewayMismatch {
        /// The session's gateway.
        expected: String,
        /// The message's gateway.
        got: String,
    },
    /// A signature by the named party does not verify (SER-009 mutual authentication).
    #[error("signature by the {0} does not verify")]
    BadSignature(&'static str),
    /// A confirmation arrived for a session the device does not have.
    #[error("no pending key exchange for this confirmation")]
    UnknownSession,
    /// SER-012: this key confirmation was already accepted once.
    #[error("key confirmation replayed")]
    ConfirmationReplayed,
    /// The key confirmation does not match the derived keys.
    #[error("key confirmation does not match")]
    BadConfirmation,
    /// The server refused this device; the reason is the server's.
    #[error("the server rejected this device: {0}")]
    DeviceRejected(Rejection),
    /// The shared secret is all-zero because a peer key is low-order.
    #[error("peer ephemeral key is a low-order point")]
    LowOrderKey,
    /// The server requires evidence in represented mode and the assertion carries none, or
    /// its member challenge is not the gateway's for this very challenge (#16.5).
    #[error("the assertion carries no valid evidence: {0}")]
    EvidenceRequired(&'static str),
    /// The wrapped group key did not decrypt (tampered association).
    #[error("wrapped group key failed to open")]
    UnwrapFailed,
    /// A replay cache is full of unexpired entries; the request is refused rather than
    /// forgetting an entry that could then be replayed (SER-001, SER-012).
    #[error("replay cache full; try again after current challenges expire")]
    ReplayCacheFull,
    /// The signing key in the keystore failed.
    #[error("the keystore failed")]
    Key(#[from] palisade_keys::KeyError),
    /// A channel message was already received (SER-012).
    #[error("channel message {counter} replayed (next expected {expected})")]
    ChannelReplay {
        /// The message's counter.
        counter: u64,
        /// The next counter the receiver accepts.
        expected: u64,
    },
    /// A channel message skipped ahead: a reordered or dropped message.
    #[error("channel message {counter} out of order (next expected {expected})")]
    ChannelOutOfOrder {
        /// The message's counter.
        counter: u64,
        /// The next counter the receiver accepts.
        expected: u64,
    },
    /// A channel message failed authentication (modified, or another session's key).
    #[error("channel message failed authentication")]
    ChannelTampered,
    /// A channel message belongs to another session or direction.
    #[error("channel message for another session or direction")]
    ChannelMisrouted,
    /// The channel's counter is exhausted; a new association is needed.
    #[error("channel counter exhausted")]
    ChannelExhausted,
    /// The server's state store (e.g. the PostgreSQL shared by several instances) did not
    /// answer: the request is refused rather than decided on partial state (fails closed).
    #[error("the server's state is unavailable")]
    StateUnavailable(#[source] super::store::StoreError),
}
