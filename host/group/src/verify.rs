//! Verifying many members' signatures at once (SER-027/028).
//!
//! Batch verification checks n signatures with one multi-scalar multiplication, about twice
//! as fast as n single checks. Answers are batched in chunks; a failed chunk says only "some
//! signature in here is bad", so it is bisected until the bad signatures are isolated, which
//! never fails a good member and costs about one extra chunk's worth of work per bad one.
//! Weak (small-order) public keys are refused at registration, before any batch: with them a
//! batch could accept a signature nobody made.
//!
//! **Strictness (#16).** Every single check is `verify_strict`, as for every other signature
//! in Palisade. A batch equation cannot be made exactly as strict (no batch check agrees with
//! cofactorless single verification on every input), so each signature is screened first for
//! what `verify_strict` refuses and a batch would not: an `R` that is not the canonical
//! encoding of a curve point, or is of small order. What remains is an `R` with a torsion
//! component, which only the holder of the member's key can produce, for its own message: it
//! forges nothing, and [`Verification::OneByOne`] refuses it too.

use super::error::Rejection;
use super::messages::DeviceAnswer;
use super::replay::classify;
use super::wire::{signed_part, WireMessage};
use ed25519_dalek::{Signature, VerifyingKey};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};

/// How the verifier checks member signatures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verification {
    /// `ed25519_dalek::verify_batch` with bisection on failure.
    Batch,
    /// One signature at a time (the baseline the simulation compares against).
    OneByOne,
}

/// One signature to check.
pub(crate) struct Item {
    pub msg: Vec<u8>,
    pub sig: Signature,
    pub key: VerifyingKey,
}

/// Below this size a failing range is checked one by one: bisecting tiny ranges costs more
/// batch set-ups than it saves.
const LEAF: usize = 4;

/// Signatures are batched in chunks of this size. A failed batch only says "some signature in
/// here is bad", and finding it costs about as much again as the batch, so one huge batch
/// makes a single forged member expensive; chunks of 64 keep most of the batch speed-up
/// (multi-scalar multiplication gains little beyond that) while a forged member only costs
/// the bisection of its own chunk.
const CHUNK: usize = 64;

/// Below this many signatures a batch costs more than checking them one by one (measured:
/// a batch of one is ~5% slower than a plain check; BENCHMARKS.md, group row), so smaller
/// chunks, including a small group's only chunk, are checked one by one.
const MIN_BATCH: usize = 4;

/// Indices (ascending) of the items whose signature does not verify.
pub(crate) fn find_bad(items: &[Item], how: Verification) -> Vec<usize> {
    let mut bad = Vec::new();
    let one_by_one = |items: &[Item], offset: usize, bad: &mut Vec<usize>| {
        for (i, it) in items.iter().enumerate() {
            if !strict_ok(it) {
                bad.push(offset + i);
            }
        }
    };
    match how {
        Verification::OneByOne => one_by_one(items, 0, &mut bad),
        Verification::Batch => {
            // Screened out before batching (see the module's notes on strictness); their
            // indices are merged back in order.
            let mut screened = Vec::new();
            let mut kept = Vec::with_capacity(items.len());
            let mut index = Vec::with_capacity(items.len());
            for (i, it) in items.iter().enumerate() {
                if r_acceptable(&it.sig) {
                    kept.push(it);
                    index.push(i);
                } else {
                    screened.push(i);
                }
            }
            for (c, chunk) in kept.chunks(CHUNK).enumerate() {
                let mut found = Vec::new();
                if chunk.len() < MIN_BATCH {
                    for (i, it) in chunk.iter().enumerate() {
                        if !strict_ok(it) {
                            found.push(i);
                        }
                    }
                } else if !batch_ok(chunk) {
                    bisect_failed(chunk, 0, &mut found);
                }
                bad.extend(found.into_iter().map(|k| index[c * CHUNK + k]));
            }
            bad.extend(screened);
            bad.sort_unstable();
        }
    }
    bad
}

/// `verify_strict`: what every other signature check of Palisade uses.
fn strict_ok(it: &Item) -> bool {
    it.key.verify_strict(&it.msg, &it.sig).is_ok()
}

/// What `verify_strict` requires of a signature's `R` and a batch equation does not check:
/// the canonical encoding of a curve point that is not of small order.
fn r_acceptable(sig: &Signature) -> bool {
    let r = curve25519_dalek::edwards::CompressedEdwardsY(sig.r_bytes().to_owned());
    match r.decompress() {
        Some(p) => p.compress() == r && !p.is_small_order(),
        None => false,
    }
}

fn batch_ok(items: &[&Item]) -> bool {
    let msgs: Vec<&[u8]> = items.iter().map(|i| i.msg.as_slice()).collect();
    let sigs: Vec<Signature> = items.iter().map(|i| i.sig).collect();
    let keys: Vec<VerifyingKey> = items.iter().map(|i| i.key).collect();
    ed25519_dalek::verify_batch(&msgs, &sigs, &keys).is_ok()
}

/// Finds the bad items of a range already known to fail: only the left half is verified; if
/// it passes, the right half must hold the failure and is split without being verified again.
fn bisect_failed(items: &[&Item], offset: usize, bad: &mut Vec<usize>) {
    if items.len() <= LEAF {
        for (i, it) in items.iter().enumerate() {
            if !strict_ok(it) {
                bad.push(offset + i);
            }
        }
        return;
    }
    let mid = items.len() / 2;
    let (left, right) = items.split_at(mid);
    if batch_ok(left) {
        bisect_failed(right, offset + mid, bad);
    } else {
        bisect_failed(left, offset, bad);
        if !batch_ok(right) {
            bisect_failed(right, offset + mid, bad);
        }
    }
}

/// The outcome of checking a batch of answers: indices of the good ones, and the refused
/// members with why, in answer order.
pub(crate) struct Checked {
    pub good: Vec<usize>,
    pub rejected: Vec<(String, Rejection)>,
}

/// Checks answers to the challenge `expected` of `group`: each device answers at most once, is
/// a member, answers this very challenge (SER-012: not an earlier one, not another group's),
/// carries an ephemeral key exactly when `want_ephemeral`, and signed the transcript; the
/// signatures are checked together as `how` says. One bad answer never fails another.
pub(crate) fn check_answers(
    answers: &[DeviceAnswer],
    expected: &[u8; 32],
    group: &str,
    members: &HashMap<String, VerifyingKey>,
    want_ephemeral: bool,
    issued: &HashMap<[u8; 32], String>,
    how: Verification,
) -> Checked {
    let mut rejected = Vec::new();
    let mut seen = HashSet::with_capacity(answers.len());
    let mut candidates = Vec::with_capacity(answers.len());
    let mut items = Vec::with_capacity(answers.len());
    for (i, a) in answers.iter().enumerate() {
        let why = if !seen.insert(a.device.as_str()) {
            Some(Rejection::DuplicateAnswer)
        } else if !members.contains_key(&a.device) {
            Some(Rejection::NotMember)
        } else if &a.challenge != expected {
            Some(classify(issued, &a.challenge, group))
        } else if a.ephemeral.is_some() != want_ephemeral {
            Some(Rejection::EphemeralKeyMismatch)
        } else {
            None
        };
        match why {
            Some(r) => rejected.push((i, r)),
            None => {
                candidates.push(i);
                items.push(Item {
                    msg: signed_part(&a.to_bytes()),
                    sig: Signature::from_bytes(&a.signature),
                    key: members[&a.device],
                });
            }
        }
    }
    let bad = find_bad(&items, how);
    let mut good = Vec::with_capacity(candidates.len());
    let mut b = bad.iter().peekable();
    for (k, &i) in candidates.iter().enumerate() {
        if b.peek() == Some(&&k) {
            b.next();
            rejected.push((i, Rejection::BadSignature));
        } else {
            good.push(i);
        }
    }
    rejected.sort_by_key(|(i, _)| *i);
    Checked {
        good,
        rejected: rejected
            .into_iter()
            .map(|(i, r)| (answers[i].device.clone(), r))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    fn items(n: usize, bad: &[usize]) -> Vec<Item> {
        (0..n)
            .map(|i| {
                let k = SigningKey::generate(&mut rand::rngs::OsRng);
                let msg = format!("message {i}").into_bytes();
                let signer = if bad.contains(&i) {
                    SigningKey::generate(&mut rand::rngs::OsRng)
                } else {
                    k.clone()
                };
                Item {
                    sig: signer.sign(&msg),
                    msg,
                    key: k.verifying_key(),
                }
            })
            .collect()
    }

    #[test]
    fn bisection_names_exactly_the_bad_ones() {
        for (n, bad) in [
            (1, vec![0]),
            (2, vec![]),
            (37, vec![0, 36]),
            (100, vec![3, 4, 5, 77]),
        ] {
            let it = items(n, &bad);
            assert_eq!(find_bad(&it, Verification::Batch), bad, "batch n={n}");
            assert_eq!(
                find_bad(&it, Verification::OneByOne),
                bad,
                "one-by-one n={n}"
            );
        }
        assert!(find_bad(&[], Verification::Batch).is_empty());
    }

    /// Signatures whose `R` is of small order or not canonically encoded are what
    /// `verify_strict` refuses outright; screened out before batching, they are named bad at
    /// their own index whatever the chunk size and position, and never hide a good neighbour.
    #[test]
    fn signatures_verify_strict_refuses_are_bad_in_a_batch_too() {
        let mut identity_r = [0u8; 64];
        identity_r[0] = 1; // R = (0, 1), the identity: small order, canonical.
        let mut non_canonical = [0u8; 64];
        // y = p + 1 ≡ 1: an encoding of the identity that is not canonical.
        non_canonical[..32].copy_from_slice(&{
            let mut y = [0xffu8; 32];
            y[0] = 0xee;
            y[31] = 0x7f;
            y
        });
        for n in [1, 3, 8, 64, 65, 130] {
            let mut it = items(n, &[]);
            let odd = [0, n / 2, n - 1];
            for (k, &i) in odd.iter().enumerate() {
                it[i].sig = Signature::from_bytes(if k % 2 == 0 {
                    &identity_r
                } else {
                    &non_canonical
                });
            }
            let mut want: Vec<usize> = odd.to_vec();
            want.dedup();
            assert_eq!(find_bad(&it, Verification::Batch), want, "batch n={n}");
            assert_eq!(find_bad(&it, Verification::OneByOne), want, "single n={n}");
        }
    }

    #[test]
    fn the_screen_accepts_every_honest_signature() {
        for it in items(32, &[]) {
            assert!(r_acceptable(&it.sig));
        }
    }
}
