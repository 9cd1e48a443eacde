//! Group authentication of devices towards the M2M server (SER-027, SER-028, SER-012).
//!
//! Three roles, plain Rust with no I/O and no hidden clock (every step takes `now`, Unix
//! seconds), so the HTTP layer, the CLI simulation and the tests drive the same code:
//! - [`Device`]: a member holding an Ed25519 identity key provisioned by its service provider;
//! - [`GatewayAgent`]: the gateway acting for the group;
//! - [`Server`]: the M2M server holding the registry of device keys, groups and gateways.
//!
//! Represented mode (SER-027, the server trusts the gateway): challenge → the gateway
//! authenticates members locally → a signed group assertion bound to the server's nonce → the
//! server checks the gateway may represent the group and returns a group key wrapped for it.
//!
//! Independent mode (SER-028, the gateway is a third party that must learn nothing): the
//! challenge carries the server's ephemeral X25519 key; each device signs the whole transcript
//! with its own ephemeral key; the gateway forwards all answers in one message; the server
//! verifies them as a batch, bisects to name bad members, derives one key per device and
//! returns per-device confirmations that the gateway relays but cannot read or forge.
//!
//! Every message has one bounded encoding, deterministic CBOR with COSE_Sign1 signatures
//! (see `wire.rs`, on palisade-codec, the one bounded codec it shares with the provisioning
//! bundles; specified in `docs/group-auth-protocol.md`); after the association, traffic is
//! protected with [`SecureChannel`].
#![deny(missing_docs)]

mod challenge;
mod channel;
mod codec;
mod crypto;
mod device;
mod error;
mod gateway;
mod messages;
mod replay;
pub mod request_proof;
mod server;
mod simulate;
pub mod store;
mod verify;
mod wire;

// The public API is this list; every module is private, so an item is public only when it
// is named here (issue #14).

pub use challenge::ChallengeRequest;
pub use channel::{ChannelRole, SecureChannel};
pub use crypto::{derive_session, SessionKeys};
pub use device::{Device, PendingExchange};
pub use error::{GroupError, Rejection, WireError};
pub use gateway::{GatewayAgent, GroupSecurityAssociation};
pub use messages::{
    DeviceAnswer, Direction, GroupAnswers, GroupAssertion, GroupAssociation, GroupChallenge,
    GroupConfirmations, KeyConfirmation, MemberChallenge, Message, SealedMessage,
};
pub use replay::ReplayCache;
pub use request_proof::{CounterWindow, ProofHeader, ProofHeaderError, ProofRequest};
pub use server::{
    IndependentOutcome, Registry, RepresentedOutcome, Server, ServerConfig, ServerRegistry,
};
pub use simulate::{simulate, SimConfig, SimPhase, SimReport, SimRun};
pub use store::{MemoryStore, ServerStore, StoreError};
pub use verify::Verification;
pub use wire::{signature_of, signed_part, WireMessage, MAX_MEMBERS, MAX_MESSAGE_LEN};

use serde::{Deserialize, Serialize};

/// Device, gateway and server identities are Ed25519 keys.
pub use ed25519_dalek::SigningKey;

/// A fresh random Ed25519 identity key (for devices in tests and simulations; a gateway's own
/// identity belongs in the keystore, see [`StoreSigner`]).
pub fn generate_identity_key() -> SigningKey {
    SigningKey::generate(&mut rand::rngs::OsRng)
}

/// The roles' randomness (nonces, ephemeral keys, group keys, association ids): the
/// operating system's. In this crate's own tests it can be handed fixed values instead
/// (`fixed_random`), so that the published test vectors come from the real code paths.
pub(crate) struct Rng;

impl rand::RngCore for Rng {
    fn next_u32(&mut self) -> u32 {
        rand::rngs::OsRng.next_u32()
    }
    fn next_u64(&mut self) -> u64 {
        rand::rngs::OsRng.next_u64()
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        #[cfg(test)]
        if fixed_random::take(dest) {
            return;
        }
        rand::rngs::OsRng.fill_bytes(dest)
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl rand::CryptoRng for Rng {}

/// Fixed "random" values for the test vectors: each draw of [`Rng`] on this thread takes the
/// next queued value, which must have the drawn length.
#[cfg(test)]
pub(crate) mod fixed_random {
    use std::cell::RefCell;
    use std::collections::VecDeque;

    thread_local! {
        static QUEUE: RefCell<VecDeque<Vec<u8>>> = const { RefCell::new(VecDeque::new()) };
    }

    /// Queues the value of the next draw.
    pub fn push(v: &[u8]) {
        QUEUE.with(|q| q.borrow_mut().push_back(v.to_vec()));
    }

    /// Values queued and not drawn.
    pub fn left() -> usize {
        QUEUE.with(|q| q.borrow().len())
    }

    pub(super) fn take(dest: &mut [u8]) -> bool {
        QUEUE.with(|q| match q.borrow_mut().pop_front() {
            Some(v) => {
                assert_eq!(v.len(), dest.len(), "a fixed value of the drawn length");
                dest.copy_from_slice(&v);
                true
            }
            None => false,
        })
    }
}

/// Which of the two group-authentication modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// SER-027: the gateway authenticates members and represents the group.
    Represented = 1,
    /// SER-028: each device gets its own association with the server through the gateway.
    Independent = 2,
}

impl Mode {
    /// The mode with this wire code (1 represented, 2 independent), if any.
    pub fn from_code(c: u8) -> Option<Mode> {
        match c {
            1 => Some(Mode::Represented),
            2 => Some(Mode::Independent),
            _ => None,
        }
    }
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "represented" => Ok(Mode::Represented),
            "independent" => Ok(Mode::Independent),
            _ => Err(format!("unknown mode {s:?} (represented or independent)")),
        }
    }
}

/// Checks an identifier (group, device, gateway, server): 1..=128 printable ASCII bytes.
pub fn check_id(id: &str) -> Result<(), GroupError> {
    if wire::valid_id_bytes(id.as_bytes()) {
        Ok(())
    } else {
        Err(GroupError::InvalidIdentifier(id.to_owned()))
    }
}

/// Something that signs for a gateway or server: a raw key in tests and simulations, or a
/// keystore handle (software or HSM) in a deployment, so the identity key never has to leave
/// the keystore (SER-010, SER-023).
pub trait GroupSigner: Send + Sync {
    /// The Ed25519 public key.
    fn public_key(&self) -> [u8; 32];
    /// An Ed25519 signature over `msg`.
    fn sign(&self, msg: &[u8]) -> Result<[u8; 64], GroupError>;
}

impl GroupSigner for ed25519_dalek::SigningKey {
    fn public_key(&self) -> [u8; 32] {
        self.verifying_key().to_bytes()
    }
    fn sign(&self, msg: &[u8]) -> Result<[u8; 64], GroupError> {
        Ok(ed25519_dalek::Signer::sign(self, msg).to_bytes())
    }
}

/// A [`GroupSigner`] backed by a key in a [`palisade_keys::KeyStore`].
pub struct StoreSigner {
    store: std::sync::Arc<dyn palisade_keys::KeyStore>,
    scope: palisade_keys::KeyScope,
    handle: palisade_keys::KeyHandle,
    public: [u8; 32],
}

impl StoreSigner {
    /// Uses the Ed25519 signing key `handle` of `scope` (normally [`palisade_keys::KeyScope::Gateway`]).
    pub fn new(
        store: std::sync::Arc<dyn palisade_keys::KeyStore>,
        scope: palisade_keys::KeyScope,
        handle: palisade_keys::KeyHandle,
    ) -> Result<Self, GroupError> {
        let public = store.public_key(&scope, &handle)?;
        Ok(StoreSigner {
            store,
            scope,
            handle,
            public,
        })
    }
}

impl GroupSigner for StoreSigner {
    fn public_key(&self) -> [u8; 32] {
        self.public
    }
    fn sign(&self, msg: &[u8]) -> Result<[u8; 64], GroupError> {
        Ok(self.store.sign(&self.scope, &self.handle, msg)?)
    }
}

/// Signs the encoding of a signed message (its signature field is not covered), and returns
/// the signature.
pub(crate) fn sign_encoded(
    signer: &dyn GroupSigner,
    encoded: &[u8],
) -> Result<[u8; 64], GroupError> {
    signer.sign(&wire::signed_part(encoded))
}

/// Verifies the signature of an encoded signed message.
pub(crate) fn verify_encoded(
    key: &ed25519_dalek::VerifyingKey,
    encoded: &[u8],
    who: &'static str,
) -> Result<(), GroupError> {
    let sig = wire::signature_of(encoded).ok_or(GroupError::BadSignature(who))?;
    key.verify_strict(
        &wire::signed_part(encoded),
        &ed25519_dalek::Signature::from_bytes(&sig),
    )
    .map_err(|_| GroupError::BadSignature(who))
}

/// Checks a challenge's validity window against `now` (SER-012). A small allowance for clock
/// skew on `issued_at` keeps slightly fast server clocks from failing every device.
fn check_window(issued_at: u64, expires_at: u64, now: u64) -> Result<(), GroupError> {
    const SKEW: u64 = 30;
    if expires_at <= issued_at || issued_at > now.saturating_add(SKEW) {
        return Err(GroupError::InvalidValidity);
    }
    if now >= expires_at {
        return Err(GroupError::ChallengeExpired {
            expired_at: expires_at,
            now,
        });
    }
    Ok(())
}

#[cfg(test)]
mod independence_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod vectors;
#[cfg(test)]
mod wire_tests;
