//! Request proofs (docs/group-auth-protocol.md §12, #16.6): a device that a group round
//! authenticated signs each later oneM2M request it sends through the gateway, so that the
//! gateway can treat its originator as authenticated (SER-027/028 keys used; SER-012 replay).
//!
//! The proof is an Ed25519 signature of the device's identity key (the gateway holds every
//! member's public key) over a never-sent payload of type 10 that binds the gateway, the
//! association reference (the digest the device's answer named), the device, a counter and
//! the request as sent. No key is shared, so nothing has to be handed from the server to the
//! gateway (§12.1).

use crate::wire::{sig_structure, Writer, MAX_ID_LEN};
use crate::{GroupError, GroupSigner};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::{Signature, VerifyingKey};
use sha2::{Digest, Sha256};

/// The HTTP header that carries a proof (lower case, as HTTP/2 and `http` spell it).
pub const PROOF_HEADER: &str = "x-palisade-group-proof";
/// Longest proof header accepted (a proof is 135 to 154 bytes).
pub const MAX_PROOF_HEADER: usize = 256;
/// The payload type of the to-be-signed request proof (never sent as a message).
pub const REQUEST_PROOF_TYPE: u8 = 10;
/// How far below the highest accepted counter a counter may still be accepted once.
pub const COUNTER_WINDOW: u64 = 64;

/// The request facts a proof covers, as the device sent them (§12.3).
#[derive(Debug, Clone, Copy)]
pub struct ProofRequest<'a> {
    /// The gateway the device authenticated through.
    pub gateway: &'a str,
    /// The association reference: the digest the device's answer named.
    pub association: [u8; 32],
    /// The device's group identity (its originator).
    pub device: &'a str,
    /// The device's request counter.
    pub counter: u64,
    /// The HTTP method as sent.
    pub method: &'a str,
    /// The HTTP request-target as sent (path and query).
    pub target: &'a str,
    /// `X-M2M-Origin` as sent.
    pub originator: &'a str,
    /// `X-M2M-RI` as sent (empty if absent).
    pub request_id: &'a str,
    /// SHA-256 of the body as sent.
    pub body_digest: [u8; 32],
}

impl ProofRequest<'_> {
    /// SHA-256 of a request body (the `body` field).
    pub fn body_digest(body: &[u8]) -> [u8; 32] {
        Sha256::digest(body).into()
    }

    /// The deterministic CBOR payload `[1, 10, gateway, association, device, counter, method,
    /// target, originator, request_id, body]`.
    pub fn payload(&self) -> Vec<u8> {
        let mut w = Writer::new(REQUEST_PROOF_TYPE, 9);
        w.id(self.gateway);
        w.raw(&self.association);
        w.id(self.device);
        w.u64(self.counter);
        w.id(self.method);
        w.id(self.target);
        w.id(self.originator);
        w.id(self.request_id);
        w.raw(&self.body_digest);
        w.finish()
    }

    /// The device's signature (COSE Sig_structure over [`Self::payload`], §2.3).
    pub fn sign(&self, signer: &dyn GroupSigner) -> Result<[u8; 64], GroupError> {
        signer.sign(&sig_structure(&self.payload()))
    }

    /// Verifies a proof's signature strictly under the device's key.
    pub fn verify(&self, key: &VerifyingKey, signature: &[u8; 64]) -> bool {
        key.verify_strict(
            &sig_structure(&self.payload()),
            &Signature::from_bytes(signature),
        )
        .is_ok()
    }

    /// The header value carrying this proof with `signature`.
    pub fn header(&self, signature: &[u8; 64]) -> String {
        ProofHeader {
            association: self.association,
            counter: self.counter,
            signature: *signature,
        }
        .to_string()
    }
}

/// A parsed `X-Palisade-Group-Proof` value: `v1.<A>.<counter>.<signature>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProofHeader {
    /// The association reference.
    pub association: [u8; 32],
    /// The counter.
    pub counter: u64,
    /// The device's signature.
    pub signature: [u8; 64],
}

/// Why a proof header is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofHeaderError {
    /// Longer than [`MAX_PROOF_HEADER`].
    #[error("the proof is {0} bytes, more than {MAX_PROOF_HEADER}")]
    TooLong(usize),
    /// Not `v1.<A>.<counter>.<signature>`.
    #[error("not v1.<association>.<counter>.<signature>")]
    Shape,
    /// The association or signature is not unpadded base64url of the right length.
    #[error("the {0} is not base64url of {1} bytes")]
    Encoding(&'static str, usize),
    /// The counter is not a canonical decimal u64.
    #[error("the counter is not a decimal number below 2^64 without leading zeros")]
    Counter,
}

impl ProofHeader {
    /// Parses a header value strictly (one form per proof, §12.3).
    pub fn parse(value: &str) -> Result<ProofHeader, ProofHeaderError> {
        if value.len() > MAX_PROOF_HEADER {
            return Err(ProofHeaderError::TooLong(value.len()));
        }
        let mut parts = value.split('.');
        let (Some("v1"), Some(a), Some(c), Some(s), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(ProofHeaderError::Shape);
        };
        let association = decode_fixed::<32>(a, "association")?;
        let signature = decode_fixed::<64>(s, "signature")?;
        let canonical = !c.is_empty()
            && c.len() <= 20
            && c.bytes().all(|b| b.is_ascii_digit())
            && (c == "0" || !c.starts_with('0'));
        let counter = c
            .parse::<u64>()
            .ok()
            .filter(|_| canonical)
            .ok_or(ProofHeaderError::Counter)?;
        Ok(ProofHeader {
            association,
            counter,
            signature,
        })
    }
}

impl std::fmt::Display for ProofHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "v1.{}.{}.{}",
            URL_SAFE_NO_PAD.encode(self.association),
            self.counter,
            URL_SAFE_NO_PAD.encode(self.signature)
        )
    }
}

fn decode_fixed<const N: usize>(
    text: &str,
    what: &'static str,
) -> Result<[u8; N], ProofHeaderError> {
    // Unpadded base64url has one encoding per value when the length is right and the
    // decoder refuses non-zero trailing bits (the engine's default).
    URL_SAFE_NO_PAD
        .decode(text)
        .ok()
        .and_then(|v| <[u8; N]>::try_from(v).ok())
        .ok_or(ProofHeaderError::Encoding(what, N))
}

/// The accepted counters of one association (§12.4): the highest, and a window of the
/// [`COUNTER_WINDOW`] below it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CounterWindow {
    highest: Option<u64>,
    /// Bit `i` set: counter `highest - 1 - i` was accepted.
    below: u64,
}

impl CounterWindow {
    /// Accepts `counter` once; `false` for a replay or a counter too far behind.
    pub fn accept(&mut self, counter: u64) -> bool {
        let Some(highest) = self.highest else {
            self.highest = Some(counter);
            return true;
        };
        if counter > highest {
            let shift = counter - highest;
            self.below = if shift > COUNTER_WINDOW {
                0
            } else {
                // The old highest becomes bit shift-1.
                (self.below << (shift - 1) << 1) | (1u64 << (shift - 1))
            };
            self.highest = Some(counter);
            return true;
        }
        let behind = highest - counter;
        if behind == 0 || behind > COUNTER_WINDOW {
            return false;
        }
        let bit = 1u64 << (behind - 1);
        if self.below & bit != 0 {
            return false;
        }
        self.below |= bit;
        true
    }
}

/// Checks an identifier the proof names (the device): the protocol's `id` rule.
pub fn valid_device(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID_LEN && id.bytes().all(|c| c.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;
    use serde_json::{json, Value};

    const FILE: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/group-auth-vectors/request-proof.json"
    );

    fn vector() -> Value {
        let device = SigningKey::from_bytes(&[0x33; 32]);
        let body = br#"{"m2m:cin":{"con":"21.5"}}"#;
        let req = ProofRequest {
            gateway: "gw-1",
            association: [0x5a; 32],
            device: "CAE-dev-1",
            counter: 7,
            method: "POST",
            target: "/cse-in/meter?rcn=1",
            originator: "CAE-dev-1",
            request_id: "req-0007",
            body_digest: ProofRequest::body_digest(body),
        };
        let payload = req.payload();
        let signature = req.sign(&device).unwrap();
        json!({
            "description": "docs/group-auth-protocol.md §12: one request proof, made by host/group/src/request_proof.rs from these values. The device seed is an Ed25519 private key (RFC 8032).",
            "device_seed": hex::encode([0x33; 32]),
            "device_public": hex::encode(device.verifying_key().to_bytes()),
            "gateway": req.gateway,
            "association": hex::encode(req.association),
            "device": req.device,
            "counter": req.counter,
            "method": req.method,
            "target": req.target,
            "originator": req.originator,
            "request_id": req.request_id,
            "body": String::from_utf8(body.to_vec()).unwrap(),
            "body_digest": hex::encode(req.body_digest),
            "payload": hex::encode(&payload),
            "sig_structure": hex::encode(sig_structure(&payload)),
            "signature": hex::encode(signature),
            "header": req.header(&signature),
        })
    }

    /// The checked-in vector is exactly what the code makes, and it verifies; regenerate
    /// with `PALISADE_WRITE_VECTORS=1 cargo test -p palisade-group --lib request_proof`.
    #[test]
    fn the_checked_in_vector_is_what_the_code_makes() {
        let made = vector();
        let text = serde_json::to_string_pretty(&made).unwrap() + "\n";
        if std::env::var_os("PALISADE_WRITE_VECTORS").is_some() {
            std::fs::write(FILE, &text).unwrap();
        }
        let stored: Value = serde_json::from_str(&std::fs::read_to_string(FILE).unwrap())
            .expect("the vector file is JSON");
        assert_eq!(stored, made, "regenerate {FILE}");
        let header = ProofHeader::parse(made["header"].as_str().unwrap()).unwrap();
        assert_eq!(header.counter, 7);
        let key = SigningKey::from_bytes(&[0x33; 32]).verifying_key();
        let mut req = ProofRequest {
            gateway: "gw-1",
            association: header.association,
            device: "CAE-dev-1",
            counter: header.counter,
            method: "POST",
            target: "/cse-in/meter?rcn=1",
            originator: "CAE-dev-1",
            request_id: "req-0007",
            body_digest: ProofRequest::body_digest(br#"{"m2m:cin":{"con":"21.5"}}"#),
        };
        assert!(req.verify(&key, &header.signature));
        // Every covered fact matters.
        req.target = "/cse-in/meter?rcn=2";
        assert!(!req.verify(&key, &header.signature));
    }

    #[test]
    fn headers_have_one_form() {
        let h = ProofHeader {
            association: [1; 32],
            counter: 0,
            signature: [2; 64],
        };
        let text = h.to_string();
        assert_eq!(ProofHeader::parse(&text), Ok(h));
        let bad = |v: &str| ProofHeader::parse(v).unwrap_err();
        let a = URL_SAFE_NO_PAD.encode([1u8; 32]);
        let s = URL_SAFE_NO_PAD.encode([2u8; 64]);
        assert_eq!(bad(&format!("v2.{a}.0.{s}")), ProofHeaderError::Shape);
        assert_eq!(bad(&format!("v1.{a}.0.{s}.x")), ProofHeaderError::Shape);
        assert_eq!(bad(&format!("v1.{a}.01.{s}")), ProofHeaderError::Counter);
        assert_eq!(bad(&format!("v1.{a}.+1.{s}")), ProofHeaderError::Counter);
        assert_eq!(
            bad(&format!("v1.{a}.18446744073709551616.{s}")),
            ProofHeaderError::Counter
        );
        assert!(ProofHeader::parse(&format!("v1.{a}.18446744073709551615.{s}")).is_ok());
        assert_eq!(
            bad(&format!("v1.{a}=.0.{s}")),
            ProofHeaderError::Encoding("association", 32)
        );
        assert_eq!(
            bad(&format!("v1.{}.0.{s}", &a[..42])),
            ProofHeaderError::Encoding("association", 32)
        );
        assert_eq!(
            bad(&"x".repeat(MAX_PROOF_HEADER + 1)),
            ProofHeaderError::TooLong(MAX_PROOF_HEADER + 1)
        );
    }

    #[test]
    fn a_counter_is_accepted_once_within_the_window() {
        let mut w = CounterWindow::default();
        assert!(w.accept(10));
        assert!(!w.accept(10));
        assert!(w.accept(12));
        assert!(w.accept(11), "overtaken, still in the window");
        assert!(!w.accept(11));
        assert!(w.accept(12 + COUNTER_WINDOW));
        assert!(!w.accept(12), "accepted before");
        assert!(!w.accept(11), "now below the window");
        assert!(w.accept(13), "the lowest counter the window still holds");
        assert!(!w.accept(13));
        assert!(w.accept(u64::MAX));
        assert!(!w.accept(u64::MAX));
        assert!(!w.accept(0));
    }
}
