//! Wire format tests: every message round-trips, truncation and trailing bytes are refused,
//! and thousands of random or mutated inputs never panic the decoder (SER-001).

use super::tests::fixture;
use super::*;

const NOW: u64 = 1_700_000_000;

#[test]
fn every_message_round_trips_through_the_wire() {
    let mut f = fixture();
    let ch = f
        .server
        .challenge("A", "gw1", Mode::Independent, NOW)
        .unwrap();
    f.gw1.accept_challenge(&ch, NOW).unwrap();
    let answers = f.answers(&ch, &["a0", "a1"], NOW);
    let batch = f
        .gw1
        .relay_answers(&ch.nonce, answers.clone(), NOW)
        .unwrap();
    let out = f.server.complete_independent(&batch, NOW).unwrap();
    let chr = f
        .server
        .challenge("A", "gw1", Mode::Represented, NOW)
        .unwrap();
    f.gw1.accept_challenge(&chr, NOW).unwrap();
    let mc = f.gw1.member_challenge(&chr.nonce, NOW).unwrap();
    let ra: Vec<_> = (0..2)
        .map(|i| f.devices[i].answer_represented(&mc, NOW).unwrap())
        .collect();
    // With evidence, so that the optional member challenge and the evidence list round-trip
    // (the plain form is in the test vectors).
    f.gw1.set_evidence(true);
    let assertion = f.gw1.assert_members(&chr.nonce, &ra, NOW).unwrap();
    assert_eq!(assertion.evidence.len(), 2);
    let rep = f.server.complete_represented(&assertion, NOW).unwrap();
    let sealed = out.channel("a0").unwrap().seal(b"x").unwrap();
    let all = [
        Message::Challenge(ch),
        Message::MemberChallenge(mc),
        Message::Answer(answers[0].clone()),
        Message::Answers(batch),
        Message::Confirmations(out.confirmations.clone()),
        Message::Confirmation(out.confirmations.confirmations[0].clone()),
        Message::Assertion(assertion),
        Message::Association(rep.association.clone()),
        Message::Sealed(sealed),
    ];
    for m in &all {
        let b = m.to_bytes();
        assert_eq!(&Message::decode(&b).unwrap(), m);
        // Every strict prefix is refused, as is any trailing byte.
        for cut in 0..b.len() {
            assert!(Message::decode(&b[..cut]).is_err());
        }
        let mut longer = b.clone();
        longer.push(0);
        assert_eq!(Message::decode(&longer), Err(WireError::TrailingBytes(1)));
    }
    // Payloads [2, 1] and [1, 99].
    assert_eq!(
        Message::decode(&[0x82, 2, 1]),
        Err(WireError::UnsupportedVersion(2))
    );
    assert_eq!(
        Message::decode(&[0x82, 1, 0x18, 99]),
        Err(WireError::UnknownType(99))
    );
    // One encoding per message (deterministic CBOR, RFC 8949 §4.2): the same confirmation
    // with its array header in a longer form than needed is refused.
    let conf = all[5].to_bytes();
    assert_eq!(conf[0], 0x85);
    let longer = [&[0x98, 5][..], &conf[1..]].concat();
    assert_eq!(Message::decode(&longer), Err(WireError::NotCanonical));
    // A signed message without its envelope, or with another protected header, is refused.
    let answer = all[2].to_bytes();
    let mut other_alg = answer.clone();
    assert_eq!(&other_alg[2..6], &[0x43, 0xa1, 0x01, 0x27]);
    other_alg[5] = 0x26; // alg -7 (ES256)
    assert_eq!(
        Message::decode(&other_alg),
        Err(WireError::Malformed { field: "protected" })
    );
    assert!(matches!(
        GroupChallenge::from_bytes(&all[2].to_bytes()),
        Err(WireError::WrongType { .. })
    ));
}

#[test]
fn garbage_and_mutations_never_panic_the_decoder() {
    // A deterministic xorshift stream: thousands of random and mutated inputs, no proptest.
    let mut s: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut rnd = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let mut f = fixture();
    let ch = f
        .server
        .challenge("A", "gw1", Mode::Independent, NOW)
        .unwrap();
    f.gw1.accept_challenge(&ch, NOW).unwrap();
    let answers = f.answers(&ch, &["a0", "a1", "a2"], NOW);
    let batch = f.gw1.relay_answers(&ch.nonce, answers, NOW).unwrap();
    let out = f.server.complete_independent(&batch, NOW).unwrap();
    let seeds = [
        ch.to_bytes(),
        batch.to_bytes(),
        out.confirmations.to_bytes(),
    ];
    let mut decoded = 0;
    for i in 0..6000 {
        let mut b = if i % 3 == 0 {
            // Pure garbage, with a valid header half of the time so the fields get exercised.
            let len = (rnd() % 600) as usize;
            let mut v: Vec<u8> = (0..len).map(|_| rnd() as u8).collect();
            if v.len() >= 3 && i % 2 == 0 {
                v[0] = 0x80 | (2 + (rnd() % 8) as u8);
                v[1] = wire::WIRE_VERSION;
                v[2] = 1 + (rnd() % 9) as u8;
            }
            v
        } else {
            seeds[i % seeds.len()].clone()
        };
        if i % 3 != 0 {
            // Flip bytes, overwrite lengths with extremes, truncate or extend.
            for _ in 0..1 + rnd() % 4 {
                let p = (rnd() as usize) % b.len();
                match rnd() % 4 {
                    0 => b[p] ^= 1 << (rnd() % 8),
                    1 => b[p] = 0xff,
                    2 => b.truncate(p),
                    _ => b
                        .splice(p..p, (0..rnd() % 8).map(|_| rnd() as u8))
                        .for_each(drop),
                }
                if b.is_empty() {
                    break;
                }
            }
        }
        if let Ok(m) = Message::decode(&b) {
            // One encoding per message: what decodes re-encodes to the same bytes.
            assert_eq!(m.to_bytes(), b);
            decoded += 1;
        }
    }
    // Some mutations (e.g. inside a nonce) still decode; signatures catch those.
    assert!(decoded > 0);
    // A count claiming more entries than the bytes could hold is refused before allocating.
    let claiming = |n: usize| {
        let mut w = wire::Writer::new(GroupAnswers::TYPE, GroupAnswers::FIELDS);
        w.id("A");
        w.id("gw1");
        w.raw(&[0; 32]);
        w.list(n);
        w.signature(&[0; 64]);
        w.finish()
    };
    assert!(matches!(
        Message::decode(&claiming(wire::MAX_MEMBERS)),
        Err(WireError::Truncated { field: "answers" })
    ));
    assert!(matches!(
        Message::decode(&claiming(u32::MAX as usize)),
        Err(WireError::TooMany { .. })
    ));
    let too_big = vec![1u8; wire::MAX_MESSAGE_LEN + 1];
    assert!(matches!(
        Message::decode(&too_big),
        Err(WireError::MessageTooLarge { .. })
    ));
}
