//! SER-028 independence: everything the gateway relays in independent mode is recorded, and
//! the gateway — holding all of it plus its own keys — cannot produce a key that opens a
//! device→server message.

use super::crypto::{derive_session, transcript_hash, SessionKeys};
use super::*;
use ed25519_dalek::SigningKey;
use zeroize::Zeroizing;

const NOW: u64 = 1_700_000_000;

#[test]
fn the_relaying_gateway_cannot_derive_device_keys() {
    let sk = SigningKey::generate(&mut rand::rngs::OsRng);
    let spub = sk.verifying_key().to_bytes();
    let mut server = Server::new("srv", Box::new(sk), ServerConfig::default()).unwrap();
    let gk = SigningKey::generate(&mut rand::rngs::OsRng);
    server
        .registry_mut()
        .add_gateway("gw", &gk.verifying_key().to_bytes())
        .unwrap();
    let mut gw = GatewayAgent::new("gw", Box::new(gk.clone()), &spub).unwrap();
    let mut devices: Vec<Device> = (0..4)
        .map(|i| {
            let k = SigningKey::generate(&mut rand::rngs::OsRng);
            let id = format!("d{i}");
            server
                .registry_mut()
                .add_member("G", &id, &k.verifying_key().to_bytes())
                .unwrap();
            Device::new(&id, k, &spub).unwrap()
        })
        .collect();

    // Everything that passes through the gateway, in order.
    let mut relayed: Vec<Vec<u8>> = Vec::new();
    let ch = server.challenge("G", "gw", Mode::Independent, NOW).unwrap();
    relayed.push(ch.to_bytes());
    gw.accept_challenge(&ch, NOW).unwrap();
    let answers: Vec<_> = devices
        .iter_mut()
        .map(|d| d.answer_independent(&ch, NOW).unwrap())
        .collect();
    relayed.extend(answers.iter().map(|a| a.to_bytes()));
    let batch = gw.relay_answers(&ch.nonce, answers.clone(), NOW).unwrap();
    relayed.push(batch.to_bytes());
    let out = server.complete_independent(&batch, NOW).unwrap();
    relayed.push(out.confirmations.to_bytes());
    let confs = gw.relay_confirmations(&out.confirmations, NOW).unwrap();
    let mut secret_msgs = Vec::new();
    for (d, c) in devices.iter_mut().zip(&confs) {
        relayed.push(c.to_bytes());
        let mut chan = d.confirm(c, NOW).unwrap();
        let m = chan.seal(b"meter reading 4711").unwrap();
        relayed.push(m.to_bytes());
        secret_msgs.push((d.id().to_owned(), m));
    }
    let all: Vec<u8> = relayed.concat();

    // 1. No derived key appears anywhere in the relayed bytes.
    for (_, k) in &out.sessions {
        for key in [&k.to_server, &k.to_device, &k.confirm] {
            assert!(
                !all.windows(32).any(|w| w == &key[..]),
                "a derived key was relayed"
            );
        }
    }
    // The server really can read them (so the test below is not vacuous).
    for (id, m) in &secret_msgs {
        assert_eq!(
            out.channel(id).unwrap().open(m).unwrap(),
            b"meter reading 4711"
        );
    }

    // 2. The gateway's best tries: every 32-byte window of what it saw, and X25519 of its own
    //    secret (its Ed25519 seed and the matching X25519 scalar) with every public key it
    //    saw, each used as the shared secret (through the real KDF with the real transcript)
    //    and as a raw channel key. None opens any device's message.
    let mut candidates: Vec<[u8; 32]> = all.windows(32).map(|w| w.try_into().unwrap()).collect();
    let own = [gk.to_bytes(), gk.to_scalar_bytes()];
    let publics: Vec<[u8; 32]> = std::iter::once(ch.server_ephemeral.unwrap())
        .chain(answers.iter().map(|a| a.ephemeral.unwrap()))
        .collect();
    for s in own {
        candidates.push(s);
        let x = x25519_dalek::StaticSecret::from(s);
        for p in &publics {
            candidates.push(
                x.diffie_hellman(&x25519_dalek::PublicKey::from(*p))
                    .to_bytes(),
            );
        }
    }
    let digest = ch.digest();
    for (a, (_, m)) in answers.iter().zip(&secret_msgs) {
        let transcript = transcript_hash(&a.to_bytes());
        for c in &candidates {
            let derived = derive_session(c, &digest, &transcript);
            let raw = SessionKeys {
                session: derived.session,
                to_server: Zeroizing::new(*c),
                to_device: Zeroizing::new(*c),
                confirm: Zeroizing::new(*c),
            };
            for keys in [derived, raw] {
                let mut chan = SecureChannel::new(&keys, ChannelRole::Server);
                let mut forced = m.clone();
                forced.session = keys.session;
                assert!(
                    chan.open(&forced).is_err(),
                    "the gateway derived a working key"
                );
            }
        }
    }
}
