//! Independent-mode group authentication rounds (SER-028) for `benches/group.rs` and the
//! `group_counts` tool: one server, one or many gateways each relaying a group of N honest
//! devices, wired as `palisade group simulate` wires them, with the device and gateway work of
//! each round done before the server is measured.
//!
//! Challenges are single-use and the device, gateway and server caches keep every unexpired
//! one, so a benchmark running thousands of rounds at one instant would fill them. The
//! simulated clock therefore moves one challenge lifetime (plus a second) per round: every
//! earlier round has expired, the caches stay small, and each round is like the first.

use palisade_group::{
    generate_identity_key, Device, GatewayAgent, GroupAnswers, GroupConfirmations, GroupError,
    GroupSigner, IndependentOutcome, Mode, Server, ServerConfig, Verification, WireMessage,
};
use palisade_group::{signature_of, signed_part};

use crate::REQUEST_TIME;

const SERVER: &str = "srv-bench";

/// One gateway and the group it relays.
struct Site {
    group: String,
    gateway: GatewayAgent,
    devices: Vec<Device>,
}

/// One server, the gateways that relay its groups, and the simulated clock.
pub struct GroupBench {
    server: Server,
    sites: Vec<Site>,
    ttl: u64,
    now: u64,
}

/// One gateway's round, ready for the server: every device's answer relayed and signed by the
/// gateway, as a value and as the bytes the gateway sends (`POST /group/v1/independent`).
pub struct Round {
    answers: GroupAnswers,
    bytes: Vec<u8>,
    now: u64,
}

impl Round {
    /// The message as the server receives it.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl GroupBench {
    /// One gateway relaying a group of `devices` members.
    pub fn new(devices: usize) -> Result<GroupBench, GroupError> {
        GroupBench::fleet(1, devices)
    }

    /// `gateways` gateways, each relaying its own group of `devices` members, all registered
    /// with one server; every identity is a fresh Ed25519 key.
    pub fn fleet(gateways: usize, devices: usize) -> Result<GroupBench, GroupError> {
        let config = ServerConfig::default();
        let server_key = generate_identity_key();
        let server_public = server_key.public_key();
        let mut server = Server::new(SERVER, Box::new(server_key), config)?;
        let mut sites = Vec::with_capacity(gateways);
        for site in 0..gateways {
            let group = format!("grp-{site:03}");
            let gateway_id = format!("gw-{site:03}");
            let gateway_key = generate_identity_key();
            server
                .registry_mut()
                .add_gateway(&gateway_id, &gateway_key.public_key())?;
            let gateway = GatewayAgent::new(&gateway_id, Box::new(gateway_key), &server_public)?;
            let mut members = Vec::with_capacity(devices);
            for index in 0..devices {
                let id = format!("dev-{index:05}");
                let key = generate_identity_key();
                server
                    .registry_mut()
                    .add_member(&group, &id, &key.public_key())?;
                members.push(Device::new(&id, key, &server_public)?);
            }
            sites.push(Site {
                group,
                gateway,
                devices: members,
            });
        }
        Ok(GroupBench {
            server,
            sites,
            ttl: config.challenge_ttl,
            now: REQUEST_TIME,
        })
    }

    /// Devices over all groups.
    pub fn devices(&self) -> usize {
        self.sites.iter().map(|site| site.devices.len()).sum()
    }

    /// How the server checks the members' signatures from now on.
    pub fn set_verification(&mut self, how: Verification) {
        self.server.set_verification(how);
    }

    /// Everything before the server's verification, for every gateway at the same instant,
    /// on a clock one challenge lifetime later than the previous round: the server's
    /// challenges (all open at once, as when a fleet's gateways arrive together), each
    /// gateway accepting its own, every device answering it (signature over the transcript,
    /// ephemeral X25519 key) and each gateway relaying its group's answers in one signed
    /// message.
    pub fn prepare(&mut self) -> Result<Vec<Round>, GroupError> {
        self.now += self.ttl + 1;
        let now = self.now;
        let mut challenges = Vec::with_capacity(self.sites.len());
        for site in &self.sites {
            let gateway = site.gateway.id().to_owned();
            challenges.push(self.server.challenge(
                &site.group,
                &gateway,
                Mode::Independent,
                now,
            )?);
        }
        let mut rounds = Vec::with_capacity(self.sites.len());
        for (site, challenge) in self.sites.iter_mut().zip(&challenges) {
            site.gateway.accept_challenge(challenge, now)?;
            let answers = site
                .devices
                .iter_mut()
                .map(|device| device.answer_independent(challenge, now))
                .collect::<Result<Vec<_>, _>>()?;
            let answers = site.gateway.relay_answers(&challenge.nonce, answers, now)?;
            let bytes = answers.to_bytes();
            rounds.push(Round {
                answers,
                bytes,
                now,
            });
        }
        Ok(rounds)
    }

    /// The server's side of the rounds, the part the `group_independent` and `group_fleet`
    /// rows time: per round the gateway's signature, every member's signature (batch or one
    /// by one, as set), then one X25519 agreement, key derivation and confirmation MAC per
    /// device, and the signed confirmations.
    #[inline(never)]
    pub fn verify(&mut self, rounds: &[Round]) -> Result<Vec<IndependentOutcome>, GroupError> {
        rounds
            .iter()
            .map(|round| self.server.complete_independent(&round.answers, round.now))
            .collect()
    }

    /// What the gateway's HTTP server does for one round (`independent` in
    /// `host/gateway/src/group_http/server.rs`), without HTTP: the arrived bytes decoded,
    /// [`Server::complete_independent`], and the confirmations encoded for the answer. The
    /// whole server step that [`wire_work`] is compared with.
    #[inline(never)]
    pub fn serve(&mut self, round: &Round) -> Result<(IndependentOutcome, Vec<u8>), GroupError> {
        let answers = GroupAnswers::from_bytes(&round.bytes)?;
        let outcome = self.server.complete_independent(&answers, round.now)?;
        let bytes = outcome.confirmations.to_bytes();
        Ok((outcome, bytes))
    }
}

/// The encoding and decoding that [`GroupBench::serve`] does for one round, and nothing else
/// (no signature, hash, key agreement or derivation): the deterministic CBOR and COSE_Sign1
/// work of the new encoding (issue #16), mirrored call for call from
/// `Server::complete_independent`, `verify::check_answers` and the HTTP handler:
///
/// 1. the arrived `GroupAnswers` decoded (each answer decoded and re-encoded to check it is
///    canonical, then the whole message re-encoded for the same check);
/// 2. the gateway's signature: the message encoded again, its signature and COSE
///    `Sig_structure` taken out of that encoding (`verify_encoded`);
/// 3. per answer: its encoding and `Sig_structure` (the signature check) and its encoding
///    again (the transcript hash's input);
/// 4. the confirmations encoded to be signed, their `Sig_structure` (`sign_encoded`), and
///    encoded once more for the answer.
///
/// `confirmations` is a server answer of the same size (from an earlier round), standing in
/// for the one the server builds. Returns the bytes produced, for `black_box`.
#[inline(never)]
pub fn wire_work(round: &Round, confirmations: &GroupConfirmations) -> usize {
    let mut produced = 0;
    let answers = GroupAnswers::from_bytes(&round.bytes).expect("the gateway's own encoding");
    let encoded = answers.to_bytes();
    produced += signature_of(&encoded).map_or(0, |sig| sig.len());
    produced += signed_part(&encoded).len();
    for answer in &answers.answers {
        produced += signed_part(&answer.to_bytes()).len();
        produced += answer.to_bytes().len();
    }
    let encoded = confirmations.to_bytes();
    produced += signed_part(&encoded).len();
    produced += confirmations.to_bytes().len();
    produced
}
