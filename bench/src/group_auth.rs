//! Independent-mode group authentication rounds (SER-028) for `benches/group.rs`: a server, a
//! gateway and N honest devices wired as `palisade group simulate` wires them, with the
//! device and gateway work of each round done before the server is timed.
//!
//! Challenges are single-use and the device, gateway and server caches keep every unexpired
//! one, so a benchmark running thousands of rounds at one instant would fill them. The
//! simulated clock therefore moves one challenge lifetime (plus a second) per round: every
//! earlier round has expired, the caches stay small, and each round is like the first.

use palisade_group::{
    generate_identity_key, Device, GatewayAgent, GroupAnswers, GroupError, GroupSigner,
    IndependentOutcome, Mode, Server, ServerConfig, Verification,
};

use crate::REQUEST_TIME;

const GROUP: &str = "grp-bench";
const GATEWAY: &str = "gw-bench";
const SERVER: &str = "srv-bench";

/// One group, its gateway and its server, and the simulated clock.
pub struct GroupBench {
    server: Server,
    gateway: GatewayAgent,
    devices: Vec<Device>,
    ttl: u64,
    now: u64,
}

/// A round ready for the server: every device's answer, relayed and signed by the gateway.
pub struct Round {
    answers: GroupAnswers,
    now: u64,
}

impl GroupBench {
    /// A group of `devices` members with fresh Ed25519 identities, registered with the server.
    pub fn new(devices: usize) -> Result<GroupBench, GroupError> {
        let config = ServerConfig::default();
        let server_key = generate_identity_key();
        let server_public = server_key.public_key();
        let mut server = Server::new(SERVER, Box::new(server_key), config)?;
        let gateway_key = generate_identity_key();
        server
            .registry_mut()
            .add_gateway(GATEWAY, &gateway_key.public_key())?;
        let gateway = GatewayAgent::new(GATEWAY, Box::new(gateway_key), &server_public)?;
        let mut members = Vec::with_capacity(devices);
        for index in 0..devices {
            let id = format!("dev-{index:05}");
            let key = generate_identity_key();
            server
                .registry_mut()
                .add_member(GROUP, &id, &key.public_key())?;
            members.push(Device::new(&id, key, &server_public)?);
        }
        Ok(GroupBench {
            server,
            gateway,
            devices: members,
            ttl: config.challenge_ttl,
            now: REQUEST_TIME,
        })
    }

    /// The group size.
    pub fn devices(&self) -> usize {
        self.devices.len()
    }

    /// How the server checks the members' signatures from now on.
    pub fn set_verification(&mut self, how: Verification) {
        self.server.set_verification(how);
    }

    /// Everything before the server's verification, on a clock one challenge lifetime later
    /// than the previous round: the server's challenge, the gateway accepting it, every
    /// device answering it (signature over the transcript, ephemeral X25519 key) and the
    /// gateway relaying the answers in one signed message.
    pub fn prepare(&mut self) -> Result<Round, GroupError> {
        self.now += self.ttl + 1;
        let now = self.now;
        let challenge = self
            .server
            .challenge(GROUP, GATEWAY, Mode::Independent, now)?;
        self.gateway.accept_challenge(&challenge, now)?;
        let answers = self
            .devices
            .iter_mut()
            .map(|device| device.answer_independent(&challenge, now))
            .collect::<Result<Vec<_>, _>>()?;
        let answers = self.gateway.relay_answers(&challenge.nonce, answers, now)?;
        Ok(Round { answers, now })
    }

    /// The server's side of the round, the part `benches/group.rs` times: the gateway's
    /// signature, every member's signature (batch or one by one, as set), then one X25519
    /// agreement, key derivation and confirmation MAC per device, and the signed
    /// confirmations.
    pub fn verify(&mut self, round: &Round) -> Result<IndependentOutcome, GroupError> {
        self.server.complete_independent(&round.answers, round.now)
    }
}
