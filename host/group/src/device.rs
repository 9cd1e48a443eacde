//! The device role: a group member holding an Ed25519 identity key (SER-027/028).

use super::channel::{ChannelRole, SecureChannel};
use super::crypto::{self, SessionKeys};
use super::error::GroupError;
use super::messages::{DeviceAnswer, GroupChallenge, KeyConfirmation, MemberChallenge};
use super::replay::ReplayCache;
use super::wire::WireMessage;
use super::{check_id, check_window, verify_encoded, Mode};
use ed25519_dalek::{SigningKey, VerifyingKey};
use std::collections::HashMap;

/// Most key exchanges a device keeps open at once (one per group it belongs to, normally).
const MAX_PENDING: usize = 64;

/// An answered independent-mode challenge waiting for the server's key confirmation.
pub struct PendingExchange {
    transcript: [u8; 32],
    keys: SessionKeys,
    expires_at: u64,
}

/// A device (group member).
pub struct Device {
    id: String,
    key: SigningKey,
    server_key: VerifyingKey,
    gateways: HashMap<String, VerifyingKey>,
    answered: ReplayCache,
    confirmed: ReplayCache,
    pending: HashMap<[u8; 32], PendingExchange>,
    /// `None`: the device has a real-time clock and the callers' `now` is used. `Some(t)`:
    /// a device without one (#16.7); `t` is the latest `issued_at` of a server challenge it
    /// verified, and stands in for the time in every check.
    learned: Option<u64>,
}

impl Device {
    /// A device with its identity key and the server's public key (both provisioned by the
    /// service provider, SER-019/020).
    pub fn new(id: &str, key: SigningKey, server_key: &[u8; 32]) -> Result<Self, GroupError> {
        check_id(id)?;
        Ok(Device {
            id: id.to_owned(),
            key,
            server_key: palisade_keys::check_ed25519_public(server_key)?,
            gateways: HashMap::new(),
            answered: ReplayCache::new(1024),
            confirmed: ReplayCache::new(1024),
            pending: HashMap::new(),
            learned: None,
        })
    }

    /// A device without a real-time clock (#16.7): the `now` its callers pass is ignored.
    /// Its time is the latest `issued_at` of a server-signed challenge it verified, a value
    /// that only moves forward and that only the server can move. So a challenge that expired
    /// before a later one was issued is refused as expired, a challenge is still answered
    /// once and a confirmation accepted once, and (independent mode) the confirmation MAC is
    /// over the device's fresh ephemeral key: a server that confirms is live now, whatever
    /// the time. What such a device cannot tell is how old the newest challenge it saw is:
    /// the server's expiry and single-use nonces bound that at the server.
    pub fn without_clock(mut self) -> Self {
        self.learned = Some(0);
        self
    }

    /// The time the checks use: the caller's, or the learned one.
    fn time(&self, now: u64) -> u64 {
        self.learned.unwrap_or(now)
    }

    /// Trusts a gateway to run represented-mode rounds (SER-009: the device authenticates the
    /// gateway that challenges it).
    pub fn trust_gateway(&mut self, gateway: &str, key: &[u8; 32]) -> Result<(), GroupError> {
        check_id(gateway)?;
        self.gateways.insert(
            gateway.to_owned(),
            palisade_keys::check_ed25519_public(key)?,
        );
        Ok(())
    }

    /// The device id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The device's Ed25519 public key (what the server registers).
    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    fn sign_answer(&self, challenge: [u8; 32], ephemeral: Option<[u8; 32]>) -> DeviceAnswer {
        let mut a = DeviceAnswer {
            device: self.id.clone(),
            challenge,
            ephemeral,
            signature: [0; 64],
        };
        let signed = super::wire::signed_part(&a.to_bytes());
        a.signature = ed25519_dalek::Signer::sign(&self.key, &signed).to_bytes();
        a
    }

    /// Independent mode (SER-028): checks the server's signed challenge, then answers with a
    /// fresh ephemeral X25519 key and a signature over the whole transcript. The derived keys
    /// wait for the server's confirmation ([`Device::confirm`]).
    pub fn answer_independent(
        &mut self,
        ch: &GroupChallenge,
        now: u64,
    ) -> Result<DeviceAnswer, GroupError> {
        if ch.mode != Mode::Independent {
            return Err(GroupError::WrongMode {
                expected: Mode::Independent,
                got: ch.mode,
            });
        }
        let encoded = ch.to_bytes();
        verify_encoded(&self.server_key, &encoded, "server")?;
        if let Some(t) = &mut self.learned {
            // Only after the signature verified: nobody else can move this time.
            *t = (*t).max(ch.issued_at);
        }
        let now = self.time(now);
        check_window(ch.issued_at, ch.expires_at, now)?;
        let server_eph = ch.server_ephemeral.ok_or(GroupError::WrongMode {
            expected: Mode::Independent,
            got: Mode::Represented,
        })?;
        let digest: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(&encoded).into();
        self.pending.retain(|_, p| p.expires_at > now);
        if self.pending.len() >= MAX_PENDING {
            return Err(GroupError::ReplayCacheFull);
        }
        // SER-012: a challenge is answered once; a replayed challenge gets nothing.
        if !self.answered.insert(digest, ch.expires_at, now)? {
            return Err(GroupError::ChallengeReplayed);
        }
        let eph = x25519_dalek::StaticSecret::random_from_rng(crate::Rng);
        let shared = crypto::agree(&eph, &server_eph)?;
        let answer = self.sign_answer(digest, Some(x25519_dalek::PublicKey::from(&eph).to_bytes()));
        // The ephemeral secret is dropped (zeroized) here: only the derived keys remain.
        drop(eph);
        let transcript = crypto::transcript_hash(&answer.to_bytes());
        let keys = crypto::derive_session(&shared, &digest, &transcript);
        self.pending.insert(
            digest,
            PendingExchange {
                transcript,
                keys,
                expires_at: ch.expires_at,
            },
        );
        Ok(answer)
    }

    /// Represented mode (SER-027): checks the gateway's signed member challenge and answers
    /// with a signature over it.
    pub fn answer_represented(
        &mut self,
        mc: &MemberChallenge,
        now: u64,
    ) -> Result<DeviceAnswer, GroupError> {
        let gw = self
            .gateways
            .get(&mc.gateway)
            .ok_or_else(|| GroupError::UnknownGateway(mc.gateway.clone()))?;
        let encoded = mc.to_bytes();
        verify_encoded(gw, &encoded, "gateway")?;
        let now = self.time(now);
        if now >= mc.expires_at {
            return Err(GroupError::ChallengeExpired {
                expired_at: mc.expires_at,
                now,
            });
        }
        let digest: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(&encoded).into();
        if !self.answered.insert(digest, mc.expires_at, now)? {
            return Err(GroupError::ChallengeReplayed);
        }
        Ok(self.sign_answer(digest, None))
    }

    /// Accepts the server's key confirmation (relayed by the gateway) and opens the
    /// end-to-end channel. A replayed confirmation, one for no pending exchange, or a wrong
    /// MAC is refused; a wrong MAC leaves the exchange pending so that a gateway cannot cancel
    /// it with garbage.
    pub fn confirm(&mut self, c: &KeyConfirmation, now: u64) -> Result<SecureChannel, GroupError> {
        let now = self.time(now);
        if self.confirmed.contains(&c.challenge, now) {
            return Err(GroupError::ConfirmationReplayed);
        }
        if c.device != self.id {
            return Err(GroupError::UnknownSession);
        }
        let p = self
            .pending
            .remove(&c.challenge)
            .ok_or(GroupError::UnknownSession)?;
        if now >= p.expires_at {
            return Err(GroupError::ChallengeExpired {
                expired_at: p.expires_at,
                now,
            });
        }
        if let Err(e) = crypto::check_confirmation(&p.keys, &p.transcript, &c.mac) {
            self.pending.insert(c.challenge, p);
            return Err(e);
        }
        self.confirmed.insert(c.challenge, p.expires_at, now)?;
        Ok(SecureChannel::new(&p.keys, ChannelRole::Device))
    }
}
