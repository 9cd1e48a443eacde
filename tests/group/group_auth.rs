//! Group authentication end to end through the public API (SER-027, SER-028, SER-012).

use palisade_group::{
    simulate, Device, GatewayAgent, GroupError, Mode, Rejection, Server, ServerConfig, SimConfig,
    StoreSigner, WireMessage,
};
use palisade_keys::{KeyKind, KeyScope, KeyStore, SoftwareKeyStore};
use std::sync::Arc;

const NOW: u64 = 1_700_000_000;

fn key() -> palisade_group::SigningKey {
    palisade_group::generate_identity_key()
}

#[test]
fn a_thousand_devices_with_three_forged_in_both_modes() {
    for mode in [Mode::Represented, Mode::Independent] {
        let mut cfg = SimConfig::new(1000, mode, NOW);
        cfg.forged = 3;
        cfg.device_by_device = false;
        let report = simulate(&cfg, &mut |_, _, _| {}).unwrap();
        assert_eq!(report.forged.len(), 3);
        for run in &report.runs {
            assert_eq!(run.authenticated, 997, "{mode:?} {}", run.name);
            let named: Vec<&str> = run.rejected.iter().map(|(d, _)| d.as_str()).collect();
            let mut expected: Vec<&str> = report.forged.iter().map(String::as_str).collect();
            expected.sort();
            assert_eq!(named, expected, "{mode:?} {}", run.name);
            assert!(run
                .rejected
                .iter()
                .all(|(_, r)| *r == Rejection::BadSignature));
            assert_eq!(run.wan_round_trips, 2);
        }
    }
}

#[test]
fn device_by_device_run_agrees_with_the_group_runs() {
    let mut cfg = SimConfig::new(40, Mode::Independent, NOW);
    cfg.forged = 2;
    cfg.device_by_device = true;
    let report = simulate(&cfg, &mut |_, _, _| {}).unwrap();
    assert_eq!(report.runs.len(), 3);
    for run in &report.runs {
        assert_eq!(run.authenticated, 38);
        assert_eq!(run.rejected.len(), 2);
    }
    // One session per device costs a WAN round trip pair per device; the group needs two.
    assert_eq!(report.runs[2].wan_round_trips, 80);
    assert!(report.runs[2].wan_bytes_per_device > report.runs[0].wan_bytes_per_device);
}

#[test]
fn gateway_identity_in_the_keystore_represents_its_group() {
    // SER-010: the gateway signs with a key that stays in the keystore.
    let store: Arc<dyn KeyStore> = Arc::new(SoftwareKeyStore::in_memory());
    let h = store
        .generate(
            &KeyScope::Gateway,
            KeyKind::Ed25519Signing,
            "gateway-identity",
        )
        .unwrap();
    let signer = StoreSigner::new(store.clone(), KeyScope::Gateway, h).unwrap();
    let gw_pub = palisade_group::GroupSigner::public_key(&signer);
    let sk = key();
    let spub = sk.verifying_key().to_bytes();
    let mut server = Server::new("srv", Box::new(sk), ServerConfig::default()).unwrap();
    server.registry_mut().add_gateway("gw", &gw_pub).unwrap();
    let mut gw = GatewayAgent::new("gw", Box::new(signer), &spub).unwrap();
    let mut devices = Vec::new();
    for i in 0..10 {
        let k = key();
        let id = format!("d{i}");
        server
            .registry_mut()
            .add_member("G", &id, &k.verifying_key().to_bytes())
            .unwrap();
        gw.add_member("G", &id, &k.verifying_key().to_bytes())
            .unwrap();
        let mut d = Device::new(&id, k, &spub).unwrap();
        d.trust_gateway("gw", &gw_pub).unwrap();
        devices.push(d);
    }
    // Not yet authorized: refused (SER-027).
    assert!(matches!(
        server.challenge("G", "gw", Mode::Represented, NOW),
        Err(GroupError::GatewayNotAuthorized { .. })
    ));
    server
        .registry_mut()
        .allow_representation("G", "gw")
        .unwrap();
    let ch = server.challenge("G", "gw", Mode::Represented, NOW).unwrap();
    gw.accept_challenge(&ch, NOW).unwrap();
    let mc = gw.member_challenge(&ch.nonce, NOW).unwrap();
    let answers: Vec<_> = devices
        .iter_mut()
        .map(|d| d.answer_represented(&mc, NOW).unwrap())
        .collect();
    let assertion = gw.assert_members(&ch.nonce, &answers, NOW).unwrap();
    let out = server.complete_represented(&assertion, NOW).unwrap();
    let sa = gw.accept_association(&out.association, NOW).unwrap();
    assert_eq!(sa.accepted, 10);
    let mut up = sa.channel();
    assert_eq!(
        out.channel().open(&up.seal(b"hello").unwrap()).unwrap(),
        b"hello"
    );
}

#[test]
fn relayed_bytes_hold_no_device_key() {
    // SER-028, black-box: record what the gateway relays; no derived key is in it.
    let sk = key();
    let spub = sk.verifying_key().to_bytes();
    let mut server = Server::new("srv", Box::new(sk), ServerConfig::default()).unwrap();
    let gk = key();
    server
        .registry_mut()
        .add_gateway("gw", &gk.verifying_key().to_bytes())
        .unwrap();
    let mut gw = GatewayAgent::new("gw", Box::new(gk), &spub).unwrap();
    let mut devices: Vec<Device> = (0..16)
        .map(|i| {
            let k = key();
            server
                .registry_mut()
                .add_member("G", &format!("d{i}"), &k.verifying_key().to_bytes())
                .unwrap();
            Device::new(&format!("d{i}"), k, &spub).unwrap()
        })
        .collect();
    let mut wire = Vec::new();
    let ch = server.challenge("G", "gw", Mode::Independent, NOW).unwrap();
    wire.extend(ch.to_bytes());
    gw.accept_challenge(&ch, NOW).unwrap();
    let answers: Vec<_> = devices
        .iter_mut()
        .map(|d| d.answer_independent(&ch, NOW).unwrap())
        .collect();
    let batch = gw.relay_answers(&ch.nonce, answers, NOW).unwrap();
    wire.extend(batch.to_bytes());
    let out = server.complete_independent(&batch, NOW).unwrap();
    wire.extend(out.confirmations.to_bytes());
    for (d, c) in devices
        .iter_mut()
        .zip(gw.relay_confirmations(&out.confirmations, NOW).unwrap())
    {
        wire.extend(c.to_bytes());
        let mut chan = d.confirm(&c, NOW).unwrap();
        wire.extend(chan.seal(b"secret reading").unwrap().to_bytes());
    }
    assert_eq!(out.sessions.len(), 16);
    for (_, k) in &out.sessions {
        assert!(!wire
            .windows(32)
            .any(|w| w == &k.to_server[..] || w == &k.to_device[..]));
    }
    assert!(!wire.windows(14).any(|w| w == b"secret reading"));
}

/// #16.5: a compromised gateway that may represent the group asserts a member that never
/// answered. Plain represented mode believes it (its documented trust assumption, SER-027);
/// with evidence the server verifies the members' own signatures and refuses the absent one,
/// and a server that requires evidence refuses an assertion without it.
#[test]
fn a_compromised_gateway_asserting_an_absent_member_is_caught_with_evidence() {
    use palisade_group::signed_part;
    use palisade_group::{GroupAssertion, GroupSigner};
    for (evidence, require) in [(false, false), (true, false), (true, true), (false, true)] {
        let (sk, gk) = (key(), key());
        let spub = sk.verifying_key().to_bytes();
        let mut config = ServerConfig::default();
        config.require_evidence = require;
        let mut server = Server::new("srv", Box::new(sk), config).unwrap();
        server
            .registry_mut()
            .add_gateway("gw", &gk.verifying_key().to_bytes())
            .unwrap();
        let mut gw = GatewayAgent::new("gw", Box::new(gk.clone()), &spub).unwrap();
        gw.set_evidence(evidence);
        let mut devices = Vec::new();
        for i in 0..4 {
            let k = key();
            let p = k.verifying_key().to_bytes();
            let name = format!("d{i}");
            server.registry_mut().add_member("G", &name, &p).unwrap();
            gw.add_member("G", &name, &p).unwrap();
            let mut d = Device::new(&name, k, &spub).unwrap();
            d.trust_gateway("gw", &gk.verifying_key().to_bytes())
                .unwrap();
            devices.push(d);
        }
        server
            .registry_mut()
            .allow_representation("G", "gw")
            .unwrap();
        let ch = server.challenge("G", "gw", Mode::Represented, NOW).unwrap();
        gw.accept_challenge(&ch, NOW).unwrap();
        let mc = gw.member_challenge(&ch.nonce, NOW).unwrap();
        // d3 is absent: only d0..d2 answer.
        let answers: Vec<_> = devices[..3]
            .iter_mut()
            .map(|d| d.answer_represented(&mc, NOW).unwrap())
            .collect();
        let honest = gw.assert_members(&ch.nonce, &answers, NOW).unwrap();
        assert_eq!(honest.evidence.len(), if evidence { 3 } else { 0 });
        // The compromised gateway adds d3 and signs again with its real key.
        let mut lie = GroupAssertion {
            authenticated: vec!["d0".into(), "d1".into(), "d2".into(), "d3".into()],
            ..honest
        };
        lie.signature = [0; 64];
        lie.signature = gk.sign(&signed_part(&lie.to_bytes())).unwrap();
        let outcome = server.complete_represented(&lie, NOW);
        match (evidence, require) {
            (false, false) => {
                // Plain mode: the trust assumption, the lie is believed.
                assert_eq!(outcome.unwrap().members.len(), 4);
            }
            (true, _) => {
                let out = outcome.unwrap();
                assert_eq!(out.members, ["d0", "d1", "d2"]);
                assert_eq!(out.rejected, [("d3".to_owned(), Rejection::NoEvidence)]);
            }
            (false, true) => assert!(matches!(outcome, Err(GroupError::EvidenceRequired(_)))),
        }
    }
}

/// Evidence cannot be borrowed from another round or made up: answers to another member
/// challenge, or a member challenge for another server challenge, count for nothing.
#[test]
fn evidence_from_another_round_does_not_count() {
    use palisade_group::signed_part;
    use palisade_group::{GroupAssertion, GroupSigner};
    let (sk, gk) = (key(), key());
    let spub = sk.verifying_key().to_bytes();
    let mut server = Server::new("srv", Box::new(sk), ServerConfig::default()).unwrap();
    server
        .registry_mut()
        .add_gateway("gw", &gk.verifying_key().to_bytes())
        .unwrap();
    let mut gw = GatewayAgent::new("gw", Box::new(gk.clone()), &spub).unwrap();
    gw.set_evidence(true);
    let k = key();
    let p = k.verifying_key().to_bytes();
    server.registry_mut().add_member("G", "d0", &p).unwrap();
    gw.add_member("G", "d0", &p).unwrap();
    server
        .registry_mut()
        .allow_representation("G", "gw")
        .unwrap();
    let mut d = Device::new("d0", k, &spub).unwrap();
    d.trust_gateway("gw", &gk.verifying_key().to_bytes())
        .unwrap();
    // Round 1 completes honestly; its evidence is then replayed into round 2.
    let ch1 = server.challenge("G", "gw", Mode::Represented, NOW).unwrap();
    gw.accept_challenge(&ch1, NOW).unwrap();
    let mc1 = gw.member_challenge(&ch1.nonce, NOW).unwrap();
    let a1 = d.answer_represented(&mc1, NOW).unwrap();
    let first = gw.assert_members(&ch1.nonce, &[a1], NOW).unwrap();
    assert_eq!(
        server.complete_represented(&first, NOW).unwrap().members,
        ["d0"]
    );
    let ch2 = server.challenge("G", "gw", Mode::Represented, NOW).unwrap();
    gw.accept_challenge(&ch2, NOW).unwrap();
    let _mc2 = gw.member_challenge(&ch2.nonce, NOW).unwrap();
    let second = gw.assert_members(&ch2.nonce, &[], NOW).unwrap();
    let resign = |mut a: GroupAssertion| {
        a.signature = gk.sign(&signed_part(&a.to_bytes())).unwrap();
        a
    };
    // Old answers under the new member challenge: d0 has no evidence.
    let replayed = resign(GroupAssertion {
        authenticated: vec!["d0".into()],
        evidence: first.evidence.clone(),
        ..second.clone()
    });
    let out = server.complete_represented(&replayed, NOW).unwrap();
    assert_eq!(out.rejected, [("d0".to_owned(), Rejection::NoEvidence)]);
    // The old member challenge with its answers: not for this challenge, refused whole.
    let ch3 = server.challenge("G", "gw", Mode::Represented, NOW).unwrap();
    gw.accept_challenge(&ch3, NOW).unwrap();
    gw.member_challenge(&ch3.nonce, NOW).unwrap();
    let third = gw.assert_members(&ch3.nonce, &[], NOW).unwrap();
    let borrowed = resign(GroupAssertion {
        authenticated: vec!["d0".into()],
        member_challenge: first.member_challenge.clone(),
        evidence: first.evidence.clone(),
        ..third
    });
    assert!(matches!(
        server.complete_represented(&borrowed, NOW),
        Err(GroupError::EvidenceRequired(_))
    ));
}

/// #16.7: a device without a real-time clock (its callers pass 0 as the time) authenticates
/// in both modes; its time is the newest server-signed `issued_at` it verified, so a
/// challenge held back until a later one was issued is refused as expired, and replays are
/// refused as for any device.
#[test]
fn a_device_without_a_clock_authenticates_and_refuses_stale_challenges() {
    let (sk, gk, dk) = (key(), key(), key());
    let spub = sk.verifying_key().to_bytes();
    let gpub = gk.verifying_key().to_bytes();
    let dpub = dk.verifying_key().to_bytes();
    let mut server = Server::new("srv", Box::new(sk), ServerConfig::default()).unwrap();
    server.registry_mut().add_gateway("gw", &gpub).unwrap();
    server.registry_mut().add_member("G", "d0", &dpub).unwrap();
    server
        .registry_mut()
        .allow_representation("G", "gw")
        .unwrap();
    let mut gw = GatewayAgent::new("gw", Box::new(gk), &spub).unwrap();
    gw.add_member("G", "d0", &dpub).unwrap();
    let mut d = Device::new("d0", dk, &spub).unwrap().without_clock();
    d.trust_gateway("gw", &gpub).unwrap();
    const NO_CLOCK: u64 = 0;

    // A challenge issued now is held back by an attacker; a later one is answered.
    let held = server.challenge("G", "gw", Mode::Independent, NOW).unwrap();
    let later = NOW + 120;
    let ch = server
        .challenge("G", "gw", Mode::Independent, later)
        .unwrap();
    gw.accept_challenge(&ch, later).unwrap();
    let a = d.answer_independent(&ch, NO_CLOCK).unwrap();
    let batch = gw.relay_answers(&ch.nonce, vec![a], later).unwrap();
    let out = server.complete_independent(&batch, later + 1).unwrap();
    let confs = gw
        .relay_confirmations(&out.confirmations, later + 1)
        .unwrap();
    let mut end = d.confirm(&confs[0], NO_CLOCK).unwrap();
    let mut server_end = out.channel("d0").unwrap();
    assert_eq!(
        server_end.open(&end.seal(b"no clock").unwrap()).unwrap(),
        b"no clock"
    );
    assert!(matches!(
        d.confirm(&confs[0], NO_CLOCK),
        Err(GroupError::ConfirmationReplayed)
    ));
    // The held-back challenge expired (NOW + 60) before the one the device saw was issued.
    assert!(matches!(
        d.answer_independent(&held, NO_CLOCK),
        Err(GroupError::ChallengeExpired { .. })
    ));
    // The same challenge again is a replay.
    assert!(matches!(
        d.answer_independent(&ch, NO_CLOCK),
        Err(GroupError::ChallengeReplayed)
    ));
    // Represented mode needs no clock either.
    let chr = server
        .challenge("G", "gw", Mode::Represented, later)
        .unwrap();
    gw.accept_challenge(&chr, later).unwrap();
    let mc = gw.member_challenge(&chr.nonce, later).unwrap();
    let ra = d.answer_represented(&mc, NO_CLOCK).unwrap();
    let assertion = gw.assert_members(&chr.nonce, &[ra], later).unwrap();
    let rep = server.complete_represented(&assertion, later + 1).unwrap();
    assert_eq!(rep.members, ["d0"]);
}
