//! The gateway agent: acts for a group towards the server.
//!
//! Represented mode (SER-027): it authenticates the members itself and asserts the result,
//! signed and bound to the server's nonce, and receives the group key wrapped for it.
//! Independent mode (SER-028): it relays — the server's challenge to the devices, all their
//! answers in one signed message to the server, and the per-device confirmations back — and
//! holds nothing that lets it derive a device's keys.

use super::channel::{ChannelRole, SecureChannel};
use super::crypto;
use super::error::{GroupError, Rejection};
use super::messages::{
    DeviceAnswer, GroupAnswers, GroupAssertion, GroupAssociation, GroupChallenge,
    GroupConfirmations, KeyConfirmation, MemberChallenge,
};
use super::replay::{IssuedLog, ReplayCache};
use super::verify::{check_answers, Verification};
use super::wire::WireMessage;
use super::{check_id, check_window, sign_encoded, verify_encoded, GroupSigner, Mode};
use ed25519_dalek::VerifyingKey;
use rand::RngCore;
use std::collections::HashMap;
use zeroize::Zeroizing;

/// Most sessions a gateway keeps open at once (SER-001).
const MAX_SESSIONS: usize = 1024;

struct Session {
    challenge: GroupChallenge,
    digest: [u8; 32],
    local: Option<[u8; 32]>,
    /// The member challenge's encoding, for evidence mode.
    local_bytes: Option<Vec<u8>>,
    ephemeral: Option<x25519_dalek::StaticSecret>,
    assertion: Option<[u8; 32]>,
}

/// The group's security association as the gateway holds it (represented mode).
pub struct GroupSecurityAssociation {
    /// The group.
    pub group: String,
    /// The association id.
    pub association: [u8; 16],
    /// Members the server accepted.
    pub accepted: u32,
    /// Members refused by the gateway or the server, with why.
    pub rejected: Vec<(String, Rejection)>,
    /// Expiry, Unix seconds.
    pub expires_at: u64,
    key: Zeroizing<[u8; 32]>,
}

impl GroupSecurityAssociation {
    /// The gateway's end of the channel protected by the group key.
    pub fn channel(&self) -> SecureChannel {
        SecureChannel::new(
            &crypto::association_session(&self.key, &self.association),
            ChannelRole::Device,
        )
    }
}

/// The gateway agent.
pub struct GatewayAgent {
    id: String,
    signer: Box<dyn GroupSigner>,
    server_key: VerifyingKey,
    members: HashMap<String, HashMap<String, VerifyingKey>>,
    seen: ReplayCache,
    completed: ReplayCache,
    issued: IssuedLog,
    sessions: HashMap<[u8; 32], Session>,
    verification: Verification,
    evidence: bool,
}

impl GatewayAgent {
    /// A gateway with its identity signer and the server's public key.
    pub fn new(
        id: &str,
        signer: Box<dyn GroupSigner>,
        server_key: &[u8; 32],
    ) -> Result<Self, GroupError> {
        check_id(id)?;
        Ok(GatewayAgent {
            id: id.to_owned(),
            signer,
            server_key: palisade_keys::check_ed25519_public(server_key)?,
            members: HashMap::new(),
            seen: ReplayCache::new(4 * MAX_SESSIONS),
            completed: ReplayCache::new(4 * MAX_SESSIONS),
            issued: IssuedLog::new(4 * MAX_SESSIONS),
            sessions: HashMap::new(),
            verification: Verification::Batch,
            evidence: false,
        })
    }

    /// How member signatures are checked in represented mode (batch by default).
    pub fn set_verification(&mut self, how: Verification) {
        self.verification = how;
    }

    /// Evidence mode of represented mode (#16.5): assertions carry the member challenge and
    /// the authenticated members' signed answers, so the server verifies the members itself
    /// instead of trusting this gateway's list. Off by default (plain SER-027).
    pub fn set_evidence(&mut self, on: bool) {
        self.evidence = on;
    }

    /// The gateway id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The gateway's public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.signer.public_key()
    }

    /// Registers a member's public key for local authentication (represented mode, from the
    /// service provider's provisioning, SER-020). Weak keys are refused.
    pub fn add_member(
        &mut self,
        group: &str,
        device: &str,
        key: &[u8; 32],
    ) -> Result<(), GroupError> {
        check_id(group)?;
        check_id(device)?;
        let vk = palisade_keys::check_ed25519_public(key)
            .map_err(|_| GroupError::WeakMemberKey(device.to_owned()))?;
        self.members
            .entry(group.to_owned())
            .or_default()
            .insert(device.to_owned(), vk);
        Ok(())
    }

    /// Accepts a server challenge addressed to this gateway: signature, addressee, validity
    /// and single use are checked (SER-009, SER-012). In independent mode the same challenge
    /// is then relayed unchanged to the devices.
    pub fn accept_challenge(&mut self, ch: &GroupChallenge, now: u64) -> Result<(), GroupError> {
        let encoded = ch.to_bytes();
        verify_encoded(&self.server_key, &encoded, "server")?;
        if ch.gateway != self.id {
            return Err(GroupError::GatewayMismatch {
                expected: self.id.clone(),
                got: ch.gateway.clone(),
            });
        }
        check_window(ch.issued_at, ch.expires_at, now)?;
        if ch.mode == Mode::Represented && !self.members.contains_key(&ch.group) {
            return Err(GroupError::UnknownGroup(ch.group.clone()));
        }
        self.sessions.retain(|_, s| s.challenge.expires_at > now);
        if self.sessions.len() >= MAX_SESSIONS {
            return Err(GroupError::ReplayCacheFull);
        }
        let digest: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(&encoded).into();
        if !self.seen.insert(digest, ch.expires_at, now)? {
            return Err(GroupError::ChallengeReplayed);
        }
        self.sessions.insert(
            ch.nonce,
            Session {
                challenge: ch.clone(),
                digest,
                local: None,
                local_bytes: None,
                ephemeral: None,
                assertion: None,
            },
        );
        Ok(())
    }

    fn session(
        &mut self,
        nonce: &[u8; 32],
        mode: Mode,
        now: u64,
    ) -> Result<&mut Session, GroupError> {
        if self.completed.contains(nonce, now) {
            return Err(GroupError::ChallengeAlreadyUsed);
        }
        let s = self
            .sessions
            .get_mut(nonce)
            .ok_or(GroupError::UnknownChallenge)?;
        if s.challenge.mode != mode {
            return Err(GroupError::WrongMode {
                expected: s.challenge.mode,
                got: mode,
            });
        }
        if now >= s.challenge.expires_at {
            return Err(GroupError::ChallengeExpired {
                expired_at: s.challenge.expires_at,
                now,
            });
        }
        Ok(s)
    }

    /// Represented mode: the gateway's own challenge to the members, signed and bound to the
    /// server's challenge. One per session, broadcast to every member.
    pub fn member_challenge(
        &mut self,
        nonce: &[u8; 32],
        now: u64,
    ) -> Result<MemberChallenge, GroupError> {
        let s = self.session(nonce, Mode::Represented, now)?;
        let mut local = [0u8; 32];
        crate::Rng.fill_bytes(&mut local);
        let mut mc = MemberChallenge {
            group: s.challenge.group.clone(),
            gateway: s.challenge.gateway.clone(),
            session: s.digest,
            nonce: local,
            expires_at: s.challenge.expires_at,
            signature: [0; 64],
        };
        mc.signature = sign_encoded(&*self.signer, &mc.to_bytes())?;
        let d = mc.digest();
        let s = self.sessions.get_mut(nonce).expect("checked above");
        s.local = Some(d);
        s.local_bytes = Some(mc.to_bytes());
        self.issued.record(d, &mc.group, now);
        Ok(mc)
    }

    /// Represented mode: authenticates the members' answers locally (batch verification with
    /// bisection) and returns the signed group assertion for the server.
    pub fn assert_members(
        &mut self,
        nonce: &[u8; 32],
        answers: &[DeviceAnswer],
        now: u64,
    ) -> Result<GroupAssertion, GroupError> {
        let how = self.verification;
        let s = self.session(nonce, Mode::Represented, now)?;
        let local = s.local.ok_or(GroupError::UnknownChallenge)?;
        let group = s.challenge.group.clone();
        let members = self
            .members
            .get(&group)
            .ok_or_else(|| GroupError::UnknownGroup(group.clone()))?;
        let issued = self.issued.groups_of(answers.iter().map(|a| &a.challenge));
        let checked = check_answers(answers, &local, &group, members, false, &issued, how);
        let eph = x25519_dalek::StaticSecret::random_from_rng(crate::Rng);
        let evidence = self.evidence;
        let s = self.sessions.get_mut(nonce).expect("checked above");
        let mut a = GroupAssertion {
            group,
            gateway: self.id.clone(),
            nonce: *nonce,
            challenge: s.digest,
            authenticated: checked
                .good
                .iter()
                .map(|&i| answers[i].device.clone())
                .collect(),
            rejected: checked.rejected,
            gateway_ephemeral: x25519_dalek::PublicKey::from(&eph).to_bytes(),
            member_challenge: evidence.then(|| s.local_bytes.clone()).flatten(),
            evidence: if evidence {
                checked.good.iter().map(|&i| answers[i].clone()).collect()
            } else {
                Vec::new()
            },
            signature: [0; 64],
        };
        a.signature = sign_encoded(&*self.signer, &a.to_bytes())?;
        s.ephemeral = Some(eph);
        s.assertion = Some(<sha2::Sha256 as sha2::Digest>::digest(a.to_bytes()).into());
        Ok(a)
    }

    /// Represented mode: accepts the server's association and unwraps the group key. Single
    /// use: the session closes here.
    pub fn accept_association(
        &mut self,
        m: &GroupAssociation,
        now: u64,
    ) -> Result<GroupSecurityAssociation, GroupError> {
        verify_encoded(&self.server_key, &m.to_bytes(), "server")?;
        let s = self.session(&m.nonce, Mode::Represented, now)?;
        if m.group != s.challenge.group {
            return Err(GroupError::GroupMismatch {
                expected: s.challenge.group.clone(),
                got: m.group.clone(),
            });
        }
        let (eph, assertion) = match (&s.ephemeral, &s.assertion) {
            (Some(e), Some(a)) => (e, *a),
            _ => return Err(GroupError::UnknownChallenge),
        };
        let shared = crypto::agree(eph, &m.server_ephemeral)?;
        let key = crypto::unwrap_key(&shared, &assertion, &m.wrapped_key)?;
        let expires = s.challenge.expires_at;
        self.sessions.remove(&m.nonce);
        self.completed.insert(m.nonce, expires, now)?;
        Ok(GroupSecurityAssociation {
            group: m.group.clone(),
            association: m.association,
            accepted: m.accepted,
            rejected: m.rejected.clone(),
            expires_at: m.expires_at,
            key,
        })
    }

    /// Independent mode: forwards all the devices' answers to the server in one signed message.
    pub fn relay_answers(
        &mut self,
        nonce: &[u8; 32],
        answers: Vec<DeviceAnswer>,
        now: u64,
    ) -> Result<GroupAnswers, GroupError> {
        let s = self.session(nonce, Mode::Independent, now)?;
        if answers.len() > super::wire::MAX_MEMBERS {
            return Err(GroupError::TooManyMembers {
                count: answers.len(),
                max: super::wire::MAX_MEMBERS,
            });
        }
        let mut m = GroupAnswers {
            group: s.challenge.group.clone(),
            gateway: self.id.clone(),
            nonce: *nonce,
            answers,
            signature: [0; 64],
        };
        m.signature = sign_encoded(&*self.signer, &m.to_bytes())?;
        Ok(m)
    }

    /// Independent mode: checks the server's signed confirmations and returns the per-device
    /// confirmations to deliver. Single use: a replayed confirmation message is refused.
    pub fn relay_confirmations(
        &mut self,
        m: &GroupConfirmations,
        now: u64,
    ) -> Result<Vec<KeyConfirmation>, GroupError> {
        verify_encoded(&self.server_key, &m.to_bytes(), "server")?;
        if self.completed.contains(&m.nonce, now) {
            return Err(GroupError::ConfirmationReplayed);
        }
        let s = self.session(&m.nonce, Mode::Independent, now)?;
        if m.group != s.challenge.group {
            return Err(GroupError::GroupMismatch {
                expected: s.challenge.group.clone(),
                got: m.group.clone(),
            });
        }
        let expires = s.challenge.expires_at;
        self.sessions.remove(&m.nonce);
        self.completed.insert(m.nonce, expires, now)?;
        Ok(m.confirmations.clone())
    }
}
