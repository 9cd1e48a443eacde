//! The test vectors of `docs/group-auth-protocol.md` (#16): one independent-mode and one
//! represented-mode exchange made by the real roles from fixed identity keys, fixed times
//! and fixed "random" values ([`super::fixed_random`]), with the intermediate values of every
//! derivation. The checked-in file must be exactly what the code produces; regenerate it with
//! `PALISADE_WRITE_VECTORS=1 cargo test -p palisade --lib group::vectors`.

use super::wire::{signed_part, WireMessage};
use super::*;
use crate::ChallengeRequest;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const FILE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../docs/group-auth-vectors/vectors.json"
);
const NOW: u64 = 1_700_000_000;

fn fill(b: u8) -> [u8; 32] {
    [b; 32]
}

fn h(b: impl AsRef<[u8]>) -> Value {
    Value::String(hex::encode(b))
}

fn x25519_public(secret: [u8; 32]) -> [u8; 32] {
    x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(secret)).to_bytes()
}

fn vectors() -> Value {
    let (server_seed, gateway_seed, device_seed) = (fill(0x11), fill(0x22), fill(0x33));
    let server_key = SigningKey::from_bytes(&server_seed);
    let gateway_key = SigningKey::from_bytes(&gateway_seed);
    let device_key = SigningKey::from_bytes(&device_seed);
    let spub = server_key.verifying_key().to_bytes();
    let gpub = gateway_key.verifying_key().to_bytes();
    let dpub = device_key.verifying_key().to_bytes();
    let (group, gw, dev, srv) = ("grp-a", "gw-1", "dev-1", "srv-1");

    let mut server = Server::new(srv, Box::new(server_key), ServerConfig::default()).unwrap();
    let reg = server.registry_mut();
    reg.add_gateway(gw, &gpub).unwrap();
    reg.add_member(group, dev, &dpub).unwrap();
    reg.allow_representation(group, gw).unwrap();
    let mut gateway = GatewayAgent::new(gw, Box::new(gateway_key.clone()), &spub).unwrap();
    gateway.add_member(group, dev, &dpub).unwrap();
    let mut device = Device::new(dev, device_key, &spub).unwrap();
    device.trust_gateway(gw, &gpub).unwrap();

    // The gateway's signed request for a challenge (HTTP server role).
    let request_nonce = fill(0xa0);
    fixed_random::push(&request_nonce);
    let request = ChallengeRequest::signed(&gateway_key, gw, group, Mode::Independent, NOW)
        .unwrap()
        .to_bytes();

    // Independent mode.
    let (nonce, server_eph, device_eph) = (fill(0xa1), fill(0xa2), fill(0xa3));
    fixed_random::push(&nonce);
    fixed_random::push(&server_eph);
    let ch = server.challenge(group, gw, Mode::Independent, NOW).unwrap();
    gateway.accept_challenge(&ch, NOW).unwrap();
    fixed_random::push(&device_eph);
    let answer = device.answer_independent(&ch, NOW + 1).unwrap();
    let batch = gateway
        .relay_answers(&ch.nonce, vec![answer.clone()], NOW + 2)
        .unwrap();
    let out = server.complete_independent(&batch, NOW + 3).unwrap();
    let relayed = gateway
        .relay_confirmations(&out.confirmations, NOW + 3)
        .unwrap();
    let mut device_end = device.confirm(&relayed[0], NOW + 4).unwrap();
    let up = device_end.seal(b"21.5 C").unwrap();
    let mut server_end = out.channel(dev).unwrap();
    assert_eq!(server_end.open(&up).unwrap(), b"21.5 C");
    let down = server_end.seal(b"ok").unwrap();

    let digest = ch.digest();
    let shared = crypto::agree(
        &x25519_dalek::StaticSecret::from(device_eph),
        &x25519_public(server_eph),
    )
    .unwrap();
    let transcript = crypto::transcript_hash(&answer.to_bytes());
    let keys = crypto::derive_session(&shared, &digest, &transcript);
    let mac = crypto::confirmation_mac(&keys, &transcript);
    assert_eq!(
        mac, relayed[0].mac,
        "the server's MAC is the one derived here"
    );
    let independent = json!({
        "random": {"server_nonce": h(nonce), "server_ephemeral_secret": h(server_eph), "device_ephemeral_secret": h(device_eph)},
        "messages": {
            "group_challenge": h(ch.to_bytes()),
            "device_answer": h(answer.to_bytes()),
            "group_answers": h(batch.to_bytes()),
            "group_confirmations": h(out.confirmations.to_bytes()),
            "key_confirmation": h(relayed[0].to_bytes()),
            "sealed_to_server": h(up.to_bytes()),
            "sealed_to_device": h(down.to_bytes()),
        },
        "plaintexts": {"sealed_to_server": h(b"21.5 C"), "sealed_to_device": h(b"ok")},
        "intermediate": {
            "server_ephemeral_public": h(x25519_public(server_eph)),
            "device_ephemeral_public": h(x25519_public(device_eph)),
            "challenge_digest": h(digest),
            "device_answer_sig_structure": h(signed_part(&answer.to_bytes())),
            "shared_secret": h(*shared),
            "transcript_hash": h(transcript),
            "session_id": h(keys.session),
            "key_to_server": h(*keys.to_server),
            "key_to_device": h(*keys.to_device),
            "key_confirm": h(*keys.confirm),
            "confirmation_mac": h(mac),
        },
    });

    // Represented mode.
    let (nonce, local, gw_eph, server_eph2, group_key, association) = (
        fill(0xb1),
        fill(0xb2),
        fill(0xb3),
        fill(0xb4),
        fill(0xb5),
        [0xb6u8; 16],
    );
    fixed_random::push(&nonce);
    let chr = server.challenge(group, gw, Mode::Represented, NOW).unwrap();
    gateway.accept_challenge(&chr, NOW).unwrap();
    fixed_random::push(&local);
    let mc = gateway.member_challenge(&chr.nonce, NOW).unwrap();
    let ra = device.answer_represented(&mc, NOW + 1).unwrap();
    fixed_random::push(&gw_eph);
    let assertion = gateway
        .assert_members(&chr.nonce, std::slice::from_ref(&ra), NOW + 2)
        .unwrap();
    fixed_random::push(&server_eph2);
    fixed_random::push(&group_key);
    fixed_random::push(&association);
    let rep = server.complete_represented(&assertion, NOW + 3).unwrap();
    let sa = gateway
        .accept_association(&rep.association, NOW + 3)
        .unwrap();
    let mut gw_end = sa.channel();
    let report = gw_end.seal(b"group report").unwrap();
    assert_eq!(rep.channel().open(&report).unwrap(), b"group report");

    let wrap_shared = crypto::agree(
        &x25519_dalek::StaticSecret::from(gw_eph),
        &x25519_public(server_eph2),
    )
    .unwrap();
    let assertion_digest: [u8; 32] = Sha256::digest(assertion.to_bytes()).into();
    let akeys = crypto::association_session(&group_key, &association);
    // The fixed group key is the one the association carries.
    let mut check = SecureChannel::new(&akeys, ChannelRole::Server);
    assert_eq!(check.open(&report).unwrap(), b"group report");
    let represented = json!({
        "random": {
            "server_nonce": h(nonce), "gateway_member_nonce": h(local),
            "gateway_ephemeral_secret": h(gw_eph), "server_ephemeral_secret": h(server_eph2),
            "group_key": h(group_key), "association_id": h(association),
        },
        "messages": {
            "group_challenge": h(chr.to_bytes()),
            "member_challenge": h(mc.to_bytes()),
            "device_answer": h(ra.to_bytes()),
            "group_assertion": h(assertion.to_bytes()),
            "group_association": h(rep.association.to_bytes()),
            "sealed_to_server": h(report.to_bytes()),
        },
        "plaintexts": {"sealed_to_server": h(b"group report")},
        "intermediate": {
            "challenge_digest": h(chr.digest()),
            "member_challenge_digest": h(mc.digest()),
            "assertion_digest": h(assertion_digest),
            "wrap_shared_secret": h(*wrap_shared),
            "session_id": h(akeys.session),
            "key_to_server": h(*akeys.to_server),
            "key_to_device": h(*akeys.to_device),
        },
    });
    assert_eq!(fixed_random::left(), 0, "every fixed value was drawn");
    json!({
        "description": "docs/group-auth-protocol.md §10: made by the real roles (host/src/group/vectors.rs) from these keys, times and random values. Seeds are Ed25519 private keys (RFC 8032); X25519 secrets are RFC 7748 scalars before clamping.",
        "identities": {
            "server": {"id": srv, "seed": h(server_seed), "public_key": h(spub)},
            "gateway": {"id": gw, "seed": h(gateway_seed), "public_key": h(gpub)},
            "device": {"id": dev, "seed": h(device_seed), "public_key": h(dpub)},
            "group": group,
        },
        "times": {"challenge_issued_at": NOW, "challenge_ttl": 60, "association_ttl": 3600},
        "challenge_request": {"random": {"nonce": h(request_nonce)}, "message": h(request)},
        "independent": independent,
        "represented": represented,
    })
}

#[test]
fn the_checked_in_vectors_are_what_the_code_produces() {
    let v = vectors();
    let text = serde_json::to_string_pretty(&v).unwrap() + "\n";
    if std::env::var_os("PALISADE_WRITE_VECTORS").is_some() {
        std::fs::create_dir_all(std::path::Path::new(FILE).parent().unwrap()).unwrap();
        std::fs::write(FILE, &text).unwrap();
    }
    let on_disk = std::fs::read_to_string(FILE).expect("docs/group-auth-vectors/vectors.json");
    assert_eq!(
        serde_json::from_str::<Value>(&on_disk).unwrap(),
        v,
        "regenerate with PALISADE_WRITE_VECTORS=1 and review the diff"
    );
}

/// The vectors are not only reproducible but accepted: each message decodes to itself and
/// each signature verifies under the identity the spec says signs it.
#[test]
fn every_vector_message_decodes_and_its_signature_verifies() {
    let v = vectors();
    let key = |who: &str| {
        let k: [u8; 32] = hex::decode(v["identities"][who]["public_key"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        ed25519_dalek::VerifyingKey::from_bytes(&k).unwrap()
    };
    let bytes =
        |mode: &str, m: &str| hex::decode(v[mode]["messages"][m].as_str().unwrap()).unwrap();
    for (mode, m, signer) in [
        ("independent", "group_challenge", "server"),
        ("independent", "device_answer", "device"),
        ("independent", "group_answers", "gateway"),
        ("independent", "group_confirmations", "server"),
        ("represented", "group_challenge", "server"),
        ("represented", "member_challenge", "gateway"),
        ("represented", "device_answer", "device"),
        ("represented", "group_assertion", "gateway"),
        ("represented", "group_association", "server"),
    ] {
        let b = bytes(mode, m);
        assert_eq!(Message::decode(&b).unwrap().to_bytes(), b, "{mode} {m}");
        verify_encoded(&key(signer), &b, "vector").unwrap_or_else(|e| panic!("{mode} {m}: {e}"));
    }
    for (mode, m) in [
        ("independent", "key_confirmation"),
        ("independent", "sealed_to_server"),
        ("independent", "sealed_to_device"),
        ("represented", "sealed_to_server"),
    ] {
        let b = bytes(mode, m);
        assert_eq!(Message::decode(&b).unwrap().to_bytes(), b, "{mode} {m}");
    }
    let r = hex::decode(v["challenge_request"]["message"].as_str().unwrap()).unwrap();
    ChallengeRequest::from_bytes(&r)
        .unwrap()
        .verify(&key("gateway"))
        .unwrap();
}
