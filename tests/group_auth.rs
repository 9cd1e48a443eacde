//! Group authentication end to end through the public API (SER-027, SER-028, SER-012).

use palisade::group::{
    simulate, Device, GatewayAgent, GroupError, Mode, Rejection, Server, ServerConfig, SimConfig,
    StoreSigner, WireMessage,
};
use palisade::keys::{KeyKind, KeyScope, KeyStore, SoftwareKeyStore};
use std::sync::Arc;

const NOW: u64 = 1_700_000_000;

fn key() -> palisade::group::SigningKey {
    palisade::group::generate_identity_key()
}

#[test]
fn a_thousand_devices_with_three_forged_in_both_modes() {
    for mode in [Mode::Represented, Mode::Independent] {
        let cfg = SimConfig {
            devices: 1000,
            mode,
            forged: 3,
            now: NOW,
            device_by_device: false,
            rounds: 1,
        };
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
    let cfg = SimConfig {
        devices: 40,
        mode: Mode::Independent,
        forged: 2,
        now: NOW,
        device_by_device: true,
        rounds: 1,
    };
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
    let gw_pub = palisade::group::GroupSigner::public_key(&signer);
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
