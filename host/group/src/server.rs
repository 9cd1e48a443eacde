//! The server role: the M2M server's registry of groups, device keys and gateways, and both
//! modes of group authentication (SER-027/028) with single-use, expiring challenges (SER-012).

use super::channel::{ChannelRole, SecureChannel};
use super::crypto::{self, SessionKeys};
use super::error::{GroupError, Rejection};
use super::messages::{
    GroupAnswers, GroupAssertion, GroupAssociation, GroupChallenge, GroupConfirmations,
    KeyConfirmation,
};
use super::store::{Lookup, MemoryStore, PendingChallenge, ServerStore};
use super::verify::{check_answers, Verification};
use super::wire::{WireMessage, MAX_MEMBERS};
use super::{check_id, sign_encoded, verify_encoded, GroupSigner, Mode};
use ed25519_dalek::VerifyingKey;
use rand::RngCore;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use zeroize::Zeroizing;

/// Server settings.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Lifetime of a challenge in seconds (SER-012).
    pub challenge_ttl: u64,
    /// Lifetime of a represented-mode association in seconds.
    pub association_ttl: u64,
    /// How member signatures are checked.
    pub verification: Verification,
    /// Represented mode only with evidence (#16.5): refuse assertions that do not carry the
    /// members' signed answers. Off by default: plain SER-027, where the server trusts an
    /// authorised gateway's list (a compromised one can assert absent members).
    pub require_evidence: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            challenge_ttl: 60,
            association_ttl: 3600,
            verification: Verification::Batch,
            require_evidence: false,
        }
    }
}

#[derive(Default, Clone)]
struct GroupEntry {
    members: HashMap<String, VerifyingKey>,
    representatives: HashSet<String>,
}

/// What the server knows: groups and their members' keys, gateways and which groups each may
/// represent (SER-027): the in-memory form, held by [`MemoryStore`] and loaded whole into a
/// shared store ([`ServerStore::replace_registry`]).
#[derive(Default, Clone)]
pub struct ServerRegistry {
    groups: HashMap<String, GroupEntry>,
    gateways: HashMap<String, VerifyingKey>,
}

impl ServerRegistry {
    /// Registers a gateway's public key.
    pub fn add_gateway(&mut self, gateway: &str, key: &[u8; 32]) -> Result<(), GroupError> {
        check_id(gateway)?;
        self.gateways.insert(
            gateway.to_owned(),
            palisade_keys::check_ed25519_public(key)?,
        );
        Ok(())
    }

    /// Registers a device key in a group. Weak (small-order) keys are refused here, before any
    /// batch verification could be fooled by them.
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
        let g = self.groups.entry(group.to_owned()).or_default();
        if g.members.len() >= MAX_MEMBERS && !g.members.contains_key(device) {
            return Err(GroupError::TooManyMembers {
                count: g.members.len() + 1,
                max: MAX_MEMBERS,
            });
        }
        g.members.insert(device.to_owned(), vk);
        Ok(())
    }

    /// Lets a registered gateway represent a registered group (SER-027).
    pub fn allow_representation(&mut self, group: &str, gateway: &str) -> Result<(), GroupError> {
        if !self.gateways.contains_key(gateway) {
            return Err(GroupError::UnknownGateway(gateway.to_owned()));
        }
        let g = self
            .groups
            .get_mut(group)
            .ok_or_else(|| GroupError::UnknownGroup(group.to_owned()))?;
        g.representatives.insert(gateway.to_owned());
        Ok(())
    }

    /// Withdraws a representation right.
    pub fn revoke_representation(&mut self, group: &str, gateway: &str) {
        if let Some(g) = self.groups.get_mut(group) {
            g.representatives.remove(gateway);
        }
    }

    /// Whether `gateway` may represent `group`.
    pub fn may_represent(&self, group: &str, gateway: &str) -> bool {
        self.groups
            .get(group)
            .is_some_and(|g| g.representatives.contains(gateway))
    }

    /// A gateway's key, if registered.
    pub fn gateway(&self, gateway: &str) -> Option<VerifyingKey> {
        self.gateways.get(gateway).copied()
    }

    /// A group's members and their keys, if the group is registered.
    pub fn members(&self, group: &str) -> Option<&HashMap<String, VerifyingKey>> {
        self.groups.get(group).map(|g| &g.members)
    }

    /// Every gateway and its key.
    pub fn gateways(&self) -> impl Iterator<Item = (&str, &VerifyingKey)> + '_ {
        self.gateways.iter().map(|(id, k)| (id.as_str(), k))
    }

    /// Every group with its members and the gateways that may represent it.
    pub fn groups(
        &self,
    ) -> impl Iterator<Item = (&str, &HashMap<String, VerifyingKey>, &HashSet<String>)> + '_ {
        self.groups
            .iter()
            .map(|(id, g)| (id.as_str(), &g.members, &g.representatives))
    }
}

/// The server's registry as its store holds it (in memory or shared): what
/// [`Server::registry_mut`] and [`Server::registry`] hand out.
pub struct Registry<'a> {
    store: &'a dyn ServerStore,
}

impl Registry<'_> {
    /// Registers a gateway's public key (weak keys refused).
    pub fn add_gateway(&self, gateway: &str, key: &[u8; 32]) -> Result<(), GroupError> {
        check_id(gateway)?;
        self.store
            .add_gateway(gateway, &palisade_keys::check_ed25519_public(key)?)
    }

    /// Registers a device key in a group. Weak (small-order) keys are refused here, before any
    /// batch verification could be fooled by them.
    pub fn add_member(&self, group: &str, device: &str, key: &[u8; 32]) -> Result<(), GroupError> {
        check_id(group)?;
        check_id(device)?;
        let vk = palisade_keys::check_ed25519_public(key)
            .map_err(|_| GroupError::WeakMemberKey(device.to_owned()))?;
        self.store.add_member(group, device, &vk)
    }

    /// Lets a registered gateway represent a registered group (SER-027).
    pub fn allow_representation(&self, group: &str, gateway: &str) -> Result<(), GroupError> {
        self.store.set_representation(group, gateway, true)
    }

    /// Withdraws a representation right.
    pub fn revoke_representation(&self, group: &str, gateway: &str) -> Result<(), GroupError> {
        self.store.set_representation(group, gateway, false)
    }

    /// Whether `gateway` may represent `group`.
    pub fn may_represent(&self, group: &str, gateway: &str) -> Result<bool, GroupError> {
        self.store.may_represent(group, gateway)
    }

    /// A gateway's key, if registered.
    pub fn gateway_key(&self, gateway: &str) -> Result<Option<VerifyingKey>, GroupError> {
        self.store.gateway_key(gateway)
    }

    /// Replaces the whole registry at once.
    pub fn replace(&self, registry: &ServerRegistry) -> Result<(), GroupError> {
        self.store.replace_registry(registry)
    }
}

/// The result of an independent-mode round: the message for the gateway, and the per-device
/// session keys for the server application.
pub struct IndependentOutcome {
    /// Send this to the gateway.
    pub confirmations: GroupConfirmations,
    /// Each authenticated device's session keys.
    pub sessions: Vec<(String, SessionKeys)>,
    /// Refused devices, with why.
    pub rejected: Vec<(String, Rejection)>,
}

impl IndependentOutcome {
    /// The server's end of the channel with `device`.
    pub fn channel(&self, device: &str) -> Option<SecureChannel> {
        let (_, k) = self.sessions.iter().find(|(d, _)| d == device)?;
        Some(SecureChannel::new(k, ChannelRole::Server))
    }
}

/// The result of a represented-mode round.
pub struct RepresentedOutcome {
    /// Send this to the gateway.
    pub association: GroupAssociation,
    /// Members the server accepted.
    pub members: Vec<String>,
    /// Members refused by the gateway or the server, with why.
    pub rejected: Vec<(String, Rejection)>,
    key: Zeroizing<[u8; 32]>,
}

impl RepresentedOutcome {
    /// The server's end of the channel with the gateway, under the group key.
    pub fn channel(&self) -> SecureChannel {
        let keys = crypto::association_session(&self.key, &self.association.association);
        SecureChannel::new(&keys, ChannelRole::Server)
    }
}

/// The M2M server role. Its steps take `&self`: the state lives in its [`ServerStore`], so
/// one server serves concurrent requests, and several servers may share one store.
pub struct Server {
    id: String,
    signer: Box<dyn GroupSigner>,
    config: ServerConfig,
    store: Arc<dyn ServerStore>,
}

impl Server {
    /// A server with its signing identity, keeping its state in memory ([`MemoryStore`]).
    pub fn new(
        id: &str,
        signer: Box<dyn GroupSigner>,
        config: ServerConfig,
    ) -> Result<Self, GroupError> {
        Self::with_store(id, signer, config, Arc::new(MemoryStore::default()))
    }

    /// A server keeping its state in `store` (e.g. one shared by several instances).
    pub fn with_store(
        id: &str,
        signer: Box<dyn GroupSigner>,
        config: ServerConfig,
        store: Arc<dyn ServerStore>,
    ) -> Result<Self, GroupError> {
        check_id(id)?;
        Ok(Server {
            id: id.to_owned(),
            signer,
            config,
            store,
        })
    }

    /// The server's public key (devices and gateways are provisioned with it).
    pub fn public_key(&self) -> [u8; 32] {
        self.signer.public_key()
    }

    /// The registry.
    pub fn registry(&self) -> Registry<'_> {
        Registry {
            store: &*self.store,
        }
    }

    /// The registry, to add groups, members and gateways (the same handle as
    /// [`Server::registry`]; kept for the callers that set the registry up).
    pub fn registry_mut(&mut self) -> Registry<'_> {
        self.registry()
    }

    /// Records a gateway's signed challenge request by its nonce until `expires_at`:
    /// `Ok(false)` if it was served before, here or by any instance sharing the store (SER-012).
    pub fn record_request(
        &self,
        nonce: [u8; 32],
        expires_at: u64,
        now: u64,
    ) -> Result<bool, GroupError> {
        self.store.record_request(nonce, expires_at, now)
    }

    /// Lifetime of an association in seconds ([`ServerConfig::association_ttl`]).
    pub fn association_ttl(&self) -> u64 {
        self.config.association_ttl
    }

    /// Changes how member signatures are checked.
    pub fn set_verification(&mut self, how: Verification) {
        self.config.verification = how;
    }

    /// Issues a signed, single-use group challenge to `gateway`. In represented mode the
    /// gateway must be allowed to represent the group (SER-027); in independent mode the
    /// challenge carries a fresh ephemeral X25519 key (SER-028).
    pub fn challenge(
        &self,
        group: &str,
        gateway: &str,
        mode: Mode,
        now: u64,
    ) -> Result<GroupChallenge, GroupError> {
        if !self.store.has_group(group)? {
            return Err(GroupError::UnknownGroup(group.to_owned()));
        }
        if self.store.gateway_key(gateway)?.is_none() {
            return Err(GroupError::UnknownGateway(gateway.to_owned()));
        }
        if mode == Mode::Represented && !self.store.may_represent(group, gateway)? {
            return Err(GroupError::GatewayNotAuthorized {
                gateway: gateway.into(),
                group: group.into(),
            });
        }
        let mut nonce = [0u8; 32];
        crate::Rng.fill_bytes(&mut nonce);
        let ephemeral = (mode == Mode::Independent)
            .then(|| x25519_dalek::StaticSecret::random_from_rng(crate::Rng));
        let mut ch = GroupChallenge {
            mode,
            group: group.to_owned(),
            server: self.id.clone(),
            gateway: gateway.to_owned(),
            nonce,
            issued_at: now,
            expires_at: now.saturating_add(self.config.challenge_ttl.max(1)),
            server_ephemeral: ephemeral
                .as_ref()
                .map(|e| x25519_dalek::PublicKey::from(e).to_bytes()),
            signature: [0; 64],
        };
        ch.signature = sign_encoded(&*self.signer, &ch.to_bytes())?;
        let digest = ch.digest();
        self.store.open(
            nonce,
            PendingChallenge {
                mode,
                group: group.to_owned(),
                gateway: gateway.to_owned(),
                digest,
                expires_at: ch.expires_at,
                ephemeral,
            },
            now,
        )?;
        self.store.record_issued(digest, group, now)?;
        Ok(ch)
    }

    /// Finds the open session of `nonce` and checks mode, expiry, group and gateway; does
    /// not consume it (a message that fails later checks must not burn a good session).
    fn open_session(
        &self,
        nonce: &[u8; 32],
        mode: Mode,
        group: &str,
        gateway: &str,
        now: u64,
    ) -> Result<PendingChallenge, GroupError> {
        let p = match self.store.lookup(nonce, now)? {
            Lookup::Used => return Err(GroupError::ChallengeAlreadyUsed),
            Lookup::Unknown => return Err(GroupError::UnknownChallenge),
            Lookup::Open(p) => p,
        };
        if now >= p.expires_at {
            return Err(GroupError::ChallengeExpired {
                expired_at: p.expires_at,
                now,
            });
        }
        if p.mode != mode {
            return Err(GroupError::WrongMode {
                expected: p.mode,
                got: mode,
            });
        }
        if p.group != group {
            return Err(GroupError::GroupMismatch {
                expected: p.group.clone(),
                got: group.into(),
            });
        }
        if p.gateway != gateway {
            return Err(GroupError::GatewayMismatch {
                expected: p.gateway.clone(),
                got: gateway.into(),
            });
        }
        Ok(p)
    }

    /// Closes a session for good (SER-012: the nonce is single-use). The store hands it to
    /// one caller only, so of two instances racing on one nonce the second is refused here.
    fn consume(&self, nonce: &[u8; 32], now: u64) -> Result<PendingChallenge, GroupError> {
        match self.store.take(nonce, now)? {
            Some(p) if now < p.expires_at => Ok(p),
            Some(p) => Err(GroupError::ChallengeExpired {
                expired_at: p.expires_at,
                now,
            }),
            None => Err(GroupError::ChallengeAlreadyUsed),
        }
    }

    fn gateway_key(&self, gateway: &str) -> Result<VerifyingKey, GroupError> {
        self.store
            .gateway_key(gateway)?
            .ok_or_else(|| GroupError::UnknownGateway(gateway.into()))
    }

    /// The groups of the issued challenges that `answers` name instead of `expected`, to say
    /// why each is refused (one store query, whatever the number of answers).
    fn issued_for(
        &self,
        answers: &[super::DeviceAnswer],
        expected: &[u8; 32],
    ) -> Result<HashMap<[u8; 32], String>, GroupError> {
        let mut other: Vec<[u8; 32]> = answers
            .iter()
            .map(|a| a.challenge)
            .filter(|c| c != expected)
            .collect();
        if other.is_empty() {
            return Ok(HashMap::new());
        }
        other.sort_unstable();
        other.dedup();
        self.store.issued_groups(&other)
    }

    /// Independent mode (SER-028): verifies all answers (batch, then bisection), derives one
    /// key set per authenticated device from X25519 + HKDF over its transcript, and returns the
    /// per-device confirmations for the gateway to relay.
    pub fn complete_independent(
        &self,
        m: &GroupAnswers,
        now: u64,
    ) -> Result<IndependentOutcome, GroupError> {
        self.open_session(&m.nonce, Mode::Independent, &m.group, &m.gateway, now)?;
        verify_encoded(&self.gateway_key(&m.gateway)?, &m.to_bytes(), "gateway")?;
        let p = self.consume(&m.nonce, now)?;
        let members = self
            .store
            .members(&p.group)?
            .ok_or_else(|| GroupError::UnknownGroup(p.group.clone()))?;
        let issued = self.issued_for(&m.answers, &p.digest)?;
        let checked = check_answers(
            &m.answers,
            &p.digest,
            &p.group,
            &members,
            true,
            &issued,
            self.config.verification,
        );
        let eph = p
            .ephemeral
            .as_ref()
            .expect("independent sessions hold an ephemeral key");
        let mut rejected = checked.rejected;
        let mut sessions = Vec::with_capacity(checked.good.len());
        let mut confirmations = Vec::with_capacity(checked.good.len());
        for &i in &checked.good {
            let a = &m.answers[i];
            let dev_eph = a.ephemeral.expect("checked: present");
            let Ok(shared) = crypto::agree(eph, &dev_eph) else {
                rejected.push((a.device.clone(), Rejection::LowOrderEphemeral));
                continue;
            };
            let transcript = crypto::transcript_hash(&a.to_bytes());
            let keys = crypto::derive_session(&shared, &p.digest, &transcript);
            confirmations.push(KeyConfirmation {
                device: a.device.clone(),
                challenge: p.digest,
                mac: crypto::confirmation_mac(&keys, &transcript),
            });
            sessions.push((a.device.clone(), keys));
        }
        let mut out = GroupConfirmations {
            group: p.group.clone(),
            gateway: p.gateway.clone(),
            nonce: m.nonce,
            confirmations,
            rejected: rejected.clone(),
            signature: [0; 64],
        };
        out.signature = sign_encoded(&*self.signer, &out.to_bytes())?;
        tracing::debug!(group = %p.group, authenticated = sessions.len(), rejected = rejected.len(), "independent group authentication");
        Ok(IndependentOutcome {
            confirmations: out,
            sessions,
            rejected,
        })
    }

    /// Represented mode (SER-027): checks that this gateway may represent the group and that
    /// its signed assertion answers this very challenge, then establishes the group's
    /// association: a fresh group key wrapped for the gateway.
    pub fn complete_represented(
        &self,
        a: &GroupAssertion,
        now: u64,
    ) -> Result<RepresentedOutcome, GroupError> {
        let digest = self
            .open_session(&a.nonce, Mode::Represented, &a.group, &a.gateway, now)?
            .digest;
        if a.challenge != digest {
            return Err(GroupError::UnknownChallenge);
        }
        // Checked again here: the right may have been withdrawn since the challenge.
        if !self.store.may_represent(&a.group, &a.gateway)? {
            return Err(GroupError::GatewayNotAuthorized {
                gateway: a.gateway.clone(),
                group: a.group.clone(),
            });
        }
        let encoded = a.to_bytes();
        let gateway_key = self.gateway_key(&a.gateway)?;
        verify_encoded(&gateway_key, &encoded, "gateway")?;
        // Evidence mode: the member challenge must be this gateway's, for this challenge.
        let local = match &a.member_challenge {
            None if self.config.require_evidence => {
                return Err(GroupError::EvidenceRequired("no member challenge"))
            }
            None => None,
            Some(b) => {
                let mc = super::MemberChallenge::from_bytes(b)?;
                verify_encoded(&gateway_key, b, "gateway")?;
                if mc.session != digest || mc.group != a.group || mc.gateway != a.gateway {
                    return Err(GroupError::EvidenceRequired(
                        "the member challenge is not for this challenge",
                    ));
                }
                Some(mc.digest())
            }
        };
        let p = self.consume(&a.nonce, now)?;
        let members = self
            .store
            .members(&p.group)?
            .ok_or_else(|| GroupError::UnknownGroup(p.group.clone()))?;
        let evidenced: Option<HashSet<&str>> = match local {
            None => None,
            Some(local) => {
                let issued = self.issued_for(&a.evidence, &local)?;
                let checked = check_answers(
                    &a.evidence,
                    &local,
                    &p.group,
                    &members,
                    false,
                    &issued,
                    self.config.verification,
                );
                Some(
                    checked
                        .good
                        .iter()
                        .map(|&i| a.evidence[i].device.as_str())
                        .collect(),
                )
            }
        };
        let mut rejected = a.rejected.clone();
        let mut accepted = Vec::with_capacity(a.authenticated.len());
        let mut seen = HashSet::with_capacity(a.authenticated.len());
        for d in &a.authenticated {
            if !seen.insert(d.as_str()) {
                rejected.push((d.clone(), Rejection::DuplicateAnswer));
            } else if !members.contains_key(d) {
                rejected.push((d.clone(), Rejection::NotMember));
            } else if evidenced.as_ref().is_some_and(|e| !e.contains(d.as_str())) {
                rejected.push((d.clone(), Rejection::NoEvidence));
            } else {
                accepted.push(d.clone());
            }
        }
        let eph = x25519_dalek::StaticSecret::random_from_rng(crate::Rng);
        let shared = crypto::agree(&eph, &a.gateway_ephemeral)?;
        let mut key = Zeroizing::new([0u8; 32]);
        crate::Rng.fill_bytes(&mut *key);
        let mut association = [0u8; 16];
        crate::Rng.fill_bytes(&mut association);
        let assertion_digest: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(&encoded).into();
        let mut out = GroupAssociation {
            group: p.group.clone(),
            gateway: p.gateway.clone(),
            nonce: a.nonce,
            association,
            accepted: accepted.len() as u32,
            rejected: rejected.clone(),
            server_ephemeral: x25519_dalek::PublicKey::from(&eph).to_bytes(),
            wrapped_key: crypto::wrap_key(&shared, &assertion_digest, &key),
            expires_at: now.saturating_add(self.config.association_ttl),
            signature: [0; 64],
        };
        out.signature = sign_encoded(&*self.signer, &out.to_bytes())?;
        tracing::debug!(group = %p.group, accepted = accepted.len(), rejected = rejected.len(), "represented group authentication");
        Ok(RepresentedOutcome {
            association: out,
            members: accepted,
            rejected,
            key,
        })
    }
}
