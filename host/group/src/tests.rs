//! Protocol tests of the three roles: both modes, every replay case (SER-012), authorization
//! (SER-027), cross-group answers, channels.

use super::*;
use ed25519_dalek::SigningKey;

const NOW: u64 = 1_700_000_000;

fn key() -> SigningKey {
    SigningKey::generate(&mut rand::rngs::OsRng)
}

/// A server, two gateways (only `gw1` may represent `A`), groups `A` (a0..a4) and `B`
/// (b0..b2, plus a0 which is in both).
pub(super) struct Fixture {
    pub(super) server: Server,
    pub(super) gw1: GatewayAgent,
    gw2: GatewayAgent,
    pub(super) devices: Vec<Device>,
}

pub(super) fn fixture() -> Fixture {
    let sk = key();
    let spub = sk.verifying_key().to_bytes();
    let mut server = Server::new("srv", Box::new(sk), ServerConfig::default()).unwrap();
    let mut gws = Vec::new();
    for id in ["gw1", "gw2"] {
        let k = key();
        server
            .registry_mut()
            .add_gateway(id, &k.verifying_key().to_bytes())
            .unwrap();
        gws.push((
            GatewayAgent::new(id, Box::new(k.clone()), &spub).unwrap(),
            k,
        ));
    }
    let mut devices = Vec::new();
    for (group, names) in [
        ("A", vec!["a0", "a1", "a2", "a3", "a4"]),
        ("B", vec!["b0", "b1", "b2"]),
    ] {
        for n in names {
            let k = key();
            let p = k.verifying_key().to_bytes();
            server.registry_mut().add_member(group, n, &p).unwrap();
            for (g, _) in gws.iter_mut() {
                g.add_member(group, n, &p).unwrap();
            }
            let mut d = Device::new(n, k, &spub).unwrap();
            for (g, gk) in &gws {
                d.trust_gateway(g.id(), &gk.verifying_key().to_bytes())
                    .unwrap();
            }
            devices.push(d);
        }
    }
    // a0 is also a member of B, under the same key.
    let a0 = devices[0].public_key();
    server.registry_mut().add_member("B", "a0", &a0).unwrap();
    server
        .registry_mut()
        .allow_representation("A", "gw1")
        .unwrap();
    let (gw2, _) = gws.pop().unwrap();
    let (gw1, _) = gws.pop().unwrap();
    Fixture {
        server,
        gw1,
        gw2,
        devices,
    }
}

impl Fixture {
    fn idx(&self, name: &str) -> usize {
        self.devices.iter().position(|d| d.id() == name).unwrap()
    }
    pub(super) fn answers(
        &mut self,
        ch: &GroupChallenge,
        names: &[&str],
        now: u64,
    ) -> Vec<DeviceAnswer> {
        names
            .iter()
            .map(|n| {
                let i = self.idx(n);
                self.devices[i].answer_independent(ch, now).unwrap()
            })
            .collect()
    }
}

#[test]
fn independent_round_and_channel() {
    let mut f = fixture();
    let ch = f
        .server
        .challenge("A", "gw1", Mode::Independent, NOW)
        .unwrap();
    f.gw1.accept_challenge(&ch, NOW).unwrap();
    let answers = f.answers(&ch, &["a0", "a1", "a2"], NOW + 1);
    let batch = f.gw1.relay_answers(&ch.nonce, answers, NOW + 1).unwrap();
    let out = f.server.complete_independent(&batch, NOW + 2).unwrap();
    assert_eq!(out.sessions.len(), 3);
    assert!(out.rejected.is_empty());
    let confs = f
        .gw1
        .relay_confirmations(&out.confirmations, NOW + 2)
        .unwrap();
    let c1 = confs.iter().find(|c| c.device == "a1").unwrap().clone();
    let i = f.idx("a1");
    let mut dev = f.devices[i].confirm(&c1, NOW + 3).unwrap();
    let mut srv = out.channel("a1").unwrap();
    let m0 = dev.seal(b"temperature=21").unwrap();
    assert_eq!(srv.open(&m0).unwrap(), b"temperature=21");
    let r0 = srv.seal(b"ack").unwrap();
    assert_eq!(dev.open(&r0).unwrap(), b"ack");
    // Replayed, reordered, modified, misrouted: each refused with its own error.
    assert!(matches!(
        srv.open(&m0),
        Err(GroupError::ChannelReplay {
            counter: 0,
            expected: 1
        })
    ));
    let m1 = dev.seal(b"one").unwrap();
    let m2 = dev.seal(b"two").unwrap();
    assert!(matches!(
        srv.open(&m2),
        Err(GroupError::ChannelOutOfOrder {
            counter: 2,
            expected: 1
        })
    ));
    let mut bad = m1.clone();
    bad.ciphertext[0] ^= 1;
    assert!(matches!(srv.open(&bad), Err(GroupError::ChannelTampered)));
    let mut bad = m1.clone();
    bad.counter = 1_000;
    assert!(matches!(srv.open(&bad), Err(GroupError::ChannelTampered)));
    assert!(matches!(dev.open(&m1), Err(GroupError::ChannelMisrouted)));
    assert_eq!(srv.open(&m1).unwrap(), b"one");
    assert_eq!(srv.open(&m2).unwrap(), b"two");
    // Another device's channel cannot open a1's messages.
    let mut other = out.channel("a2").unwrap();
    assert!(matches!(
        other.open(&dev.seal(b"x").unwrap()),
        Err(GroupError::ChannelMisrouted)
    ));
}

#[test]
fn represented_round_and_group_channel() {
    let mut f = fixture();
    let ch = f
        .server
        .challenge("A", "gw1", Mode::Represented, NOW)
        .unwrap();
    f.gw1.accept_challenge(&ch, NOW).unwrap();
    let mc = f.gw1.member_challenge(&ch.nonce, NOW).unwrap();
    let mut answers: Vec<_> = (0..5)
        .map(|i| f.devices[i].answer_represented(&mc, NOW).unwrap())
        .collect();
    // A forged a3: another key claims its id.
    let mut forger = Device::new("a3", key(), &f.server.public_key()).unwrap();
    forger.trust_gateway("gw1", &f.gw1.public_key()).unwrap();
    answers[3] = forger.answer_represented(&mc, NOW).unwrap();
    let assertion = f.gw1.assert_members(&ch.nonce, &answers, NOW + 1).unwrap();
    assert_eq!(assertion.authenticated, vec!["a0", "a1", "a2", "a4"]);
    assert_eq!(
        assertion.rejected,
        vec![("a3".to_string(), Rejection::BadSignature)]
    );
    let out = f.server.complete_represented(&assertion, NOW + 1).unwrap();
    assert_eq!(out.members.len(), 4);
    let sa = f.gw1.accept_association(&out.association, NOW + 1).unwrap();
    assert_eq!(sa.accepted, 4);
    let (mut g, mut s) = (sa.channel(), out.channel());
    assert_eq!(
        s.open(&g.seal(b"group report").unwrap()).unwrap(),
        b"group report"
    );
    // The association is single-use.
    assert!(matches!(
        f.gw1.accept_association(&out.association, NOW + 1),
        Err(GroupError::ChallengeAlreadyUsed)
    ));
    assert!(matches!(
        f.server.complete_represented(&assertion, NOW + 1),
        Err(GroupError::ChallengeAlreadyUsed)
    ));
}

#[test]
fn unauthorized_gateway_is_refused_in_represented_mode() {
    let mut f = fixture();
    // gw2 may not represent A: no challenge is even issued.
    assert!(matches!(
        f.server.challenge("A", "gw2", Mode::Represented, NOW),
        Err(GroupError::GatewayNotAuthorized { .. })
    ));
    // gw2 answering gw1's session with its own assertion: the session is not its own.
    let ch = f
        .server
        .challenge("A", "gw1", Mode::Represented, NOW)
        .unwrap();
    assert!(matches!(
        f.gw2.accept_challenge(&ch, NOW),
        Err(GroupError::GatewayMismatch { .. })
    ));
    f.gw1.accept_challenge(&ch, NOW).unwrap();
    let mc = f.gw1.member_challenge(&ch.nonce, NOW).unwrap();
    let answers: Vec<_> = (0..5)
        .map(|i| f.devices[i].answer_represented(&mc, NOW).unwrap())
        .collect();
    let mut a = f.gw1.assert_members(&ch.nonce, &answers, NOW).unwrap();
    let mut forged = a.clone();
    forged.gateway = "gw2".into();
    assert!(matches!(
        f.server.complete_represented(&forged, NOW),
        Err(GroupError::GatewayMismatch { .. })
    ));
    // A right withdrawn after the challenge is checked again at the assertion.
    f.server
        .registry_mut()
        .revoke_representation("A", "gw1")
        .unwrap();
    assert!(matches!(
        f.server.complete_represented(&a, NOW),
        Err(GroupError::GatewayNotAuthorized { .. })
    ));
    f.server
        .registry_mut()
        .allow_representation("A", "gw1")
        .unwrap();
    // A tampered assertion (a member added) fails the gateway's signature.
    a.authenticated.push("b0".into());
    assert!(matches!(
        f.server.complete_represented(&a, NOW),
        Err(GroupError::BadSignature("gateway"))
    ));
}

#[test]
fn replay_cases_are_each_refused() {
    let mut f = fixture();
    let ch1 = f
        .server
        .challenge("A", "gw1", Mode::Independent, NOW)
        .unwrap();
    f.gw1.accept_challenge(&ch1, NOW).unwrap();
    // An old challenge shown again: the gateway and the device refuse it.
    assert!(matches!(
        f.gw1.accept_challenge(&ch1, NOW),
        Err(GroupError::ChallengeReplayed)
    ));
    let old = f.answers(&ch1, &["a0", "a1"], NOW);
    assert!(matches!(
        f.devices[0].answer_independent(&ch1, NOW),
        Err(GroupError::ChallengeReplayed)
    ));
    let b1 = f.gw1.relay_answers(&ch1.nonce, old.clone(), NOW).unwrap();
    let out1 = f.server.complete_independent(&b1, NOW).unwrap();
    // The completed session's nonce is single-use at the server.
    assert!(matches!(
        f.server.complete_independent(&b1, NOW),
        Err(GroupError::ChallengeAlreadyUsed)
    ));

    // A confirmation replayed: to the gateway, and to the device.
    let confs = f.gw1.relay_confirmations(&out1.confirmations, NOW).unwrap();
    assert!(matches!(
        f.gw1.relay_confirmations(&out1.confirmations, NOW),
        Err(GroupError::ConfirmationReplayed)
    ));
    f.devices[0].confirm(&confs[0], NOW).unwrap();
    assert!(matches!(
        f.devices[0].confirm(&confs[0], NOW),
        Err(GroupError::ConfirmationReplayed)
    ));

    // Answers replayed into a new session, and an answer made for another group's challenge.
    let ch2 = f
        .server
        .challenge("A", "gw1", Mode::Independent, NOW + 5)
        .unwrap();
    f.gw1.accept_challenge(&ch2, NOW + 5).unwrap();
    let chb = f
        .server
        .challenge("B", "gw1", Mode::Independent, NOW + 5)
        .unwrap();
    f.gw1.accept_challenge(&chb, NOW + 5).unwrap();
    let a0_for_b = f.answers(&chb, &["a0"], NOW + 5).remove(0);
    let mut answers = f.answers(&ch2, &["a2", "a3"], NOW + 5);
    answers.push(old[1].clone()); // a1's answer to ch1
    let b2 = f.gw1.relay_answers(&ch2.nonce, answers, NOW + 5).unwrap();
    let out2 = f.server.complete_independent(&b2, NOW + 5).unwrap();
    assert_eq!(out2.sessions.len(), 2);
    assert_eq!(
        out2.rejected,
        vec![("a1".to_string(), Rejection::AnswerReplayed)]
    );
    // a0 is in A and B: its answer for B's challenge does not count in a session for A...
    let ch3 = f
        .server
        .challenge("A", "gw1", Mode::Independent, NOW + 6)
        .unwrap();
    f.gw1.accept_challenge(&ch3, NOW + 6).unwrap();
    let b3 = f
        .gw1
        .relay_answers(&ch3.nonce, vec![a0_for_b.clone()], NOW + 6)
        .unwrap();
    let out3 = f.server.complete_independent(&b3, NOW + 6).unwrap();
    assert_eq!(
        out3.rejected,
        vec![("a0".to_string(), Rejection::AnswerForOtherGroup)]
    );
    // ...and a confirmation from one session does not confirm another.
    assert!(matches!(
        f.devices[0].confirm(&confs[0], NOW + 6),
        Err(GroupError::ConfirmationReplayed)
    ));
    let mut moved = confs[1].clone();
    moved.challenge = ch2.digest();
    assert!(matches!(
        f.devices[1].confirm(&moved, NOW + 6),
        Err(GroupError::UnknownSession)
    ));
}

#[test]
fn expired_challenges_are_refused_everywhere() {
    let mut f = fixture();
    let ch = f
        .server
        .challenge("A", "gw1", Mode::Independent, NOW)
        .unwrap();
    let late = ch.expires_at;
    assert!(matches!(
        f.gw1.accept_challenge(&ch, late),
        Err(GroupError::ChallengeExpired { .. })
    ));
    assert!(matches!(
        f.devices[0].answer_independent(&ch, late),
        Err(GroupError::ChallengeExpired { .. })
    ));
    f.gw1.accept_challenge(&ch, NOW).unwrap();
    let answers = f.answers(&ch, &["a0"], NOW);
    assert!(matches!(
        f.gw1.relay_answers(&ch.nonce, answers.clone(), late),
        Err(GroupError::ChallengeExpired { .. })
    ));
    let batch = f.gw1.relay_answers(&ch.nonce, answers, NOW).unwrap();
    assert!(matches!(
        f.server.complete_independent(&batch, late),
        Err(GroupError::ChallengeExpired { .. })
    ));
    // A challenge claiming to be issued in the future is not accepted either.
    assert!(matches!(
        f.gw1.accept_challenge(&ch, NOW - 3600),
        Err(GroupError::InvalidValidity)
    ));
}

#[test]
fn a_key_from_group_a_cannot_answer_for_group_b() {
    let mut f = fixture();
    let ch = f
        .server
        .challenge("B", "gw1", Mode::Independent, NOW)
        .unwrap();
    f.gw1.accept_challenge(&ch, NOW).unwrap();
    // a1 (member of A only) answers B's challenge with its own key and id.
    let a1 = f.answers(&ch, &["a1"], NOW).remove(0);
    // A group-A device key (registered for a9 in A) claims to be b1 of group B.
    let ka = key();
    f.server
        .registry_mut()
        .add_member("A", "a9", &ka.verifying_key().to_bytes())
        .unwrap();
    let mut imposter = Device::new("b1", ka, &f.server.public_key()).unwrap();
    let b1_imposter = imposter.answer_independent(&ch, NOW).unwrap();
    let b0 = f.answers(&ch, &["b0"], NOW).remove(0);
    let batch = f
        .gw1
        .relay_answers(&ch.nonce, vec![a1, b1_imposter, b0], NOW)
        .unwrap();
    let out = f.server.complete_independent(&batch, NOW).unwrap();
    assert_eq!(out.sessions.len(), 1);
    assert_eq!(out.sessions[0].0, "b0");
    let mut rej = out.rejected.clone();
    rej.sort();
    assert_eq!(
        rej,
        vec![
            ("a1".into(), Rejection::NotMember),
            ("b1".into(), Rejection::BadSignature)
        ]
    );
}

#[test]
fn tampered_and_misaddressed_messages() {
    let mut f = fixture();
    let mut ch = f
        .server
        .challenge("A", "gw1", Mode::Independent, NOW)
        .unwrap();
    let good = ch.clone();
    ch.expires_at += 3600;
    assert!(matches!(
        f.gw1.accept_challenge(&ch, NOW),
        Err(GroupError::BadSignature("server"))
    ));
    assert!(matches!(
        f.devices[0].answer_independent(&ch, NOW),
        Err(GroupError::BadSignature("server"))
    ));
    f.gw1.accept_challenge(&good, NOW).unwrap();
    let answers = f.answers(&good, &["a0"], NOW);
    let mut batch = f.gw1.relay_answers(&good.nonce, answers, NOW).unwrap();
    batch.answers[0].ephemeral = Some([9; 32]);
    assert!(matches!(
        f.server.complete_independent(&batch, NOW),
        Err(GroupError::BadSignature("gateway"))
    ));
    // A bad message did not burn the session: the genuine batch still completes.
    let answers = f.answers(&good, &["a1"], NOW);
    let batch = f.gw1.relay_answers(&good.nonce, answers, NOW).unwrap();
    assert_eq!(
        f.server
            .complete_independent(&batch, NOW)
            .unwrap()
            .sessions
            .len(),
        1
    );
    // Weak keys are refused at registration.
    let mut ident = [0u8; 32];
    ident[0] = 1;
    assert!(matches!(
        f.server.registry_mut().add_member("A", "weak", &ident),
        Err(GroupError::WeakMemberKey(_))
    ));
}
