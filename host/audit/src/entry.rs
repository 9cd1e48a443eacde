//! One audit entry: its kinds, its canonical encoding and hash, and the checkpoint message.
//!
//! Why a hand-written canonical encoding: the hash must not depend on how a JSON library
//! orders keys or spaces its output, or a verifier built with other features (e.g. serde_json
//! `preserve_order`) would reject a genuine log (SER-016).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::fmt;

/// The `prev_hash` of entry 0.
pub const ZERO_HASH: [u8; 32] = [0; 32];

/// Domain separation tags: an entry hash can never be confused with a checkpoint message or
/// with a hash from another protocol or format version.
const ENTRY_TAG: &[u8] = b"palisade/audit/entry/v1\0";
const CHECKPOINT_TAG: &[u8] = b"palisade/audit/checkpoint/v1\0";

/// What an entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// An authorization or authentication decision (may be dropped into a gap under overload).
    Decision,
    /// An administrative action (module upload, key change, config change); never dropped.
    Admin,
    /// An integrity event (a module failing its re-check, SER-013); never dropped.
    Integrity,
    /// A lifecycle event of the gateway or the log itself; never dropped.
    System,
    /// Written by the log: decision entries dropped because storage fell behind.
    Gap,
    /// Written by the log: a signed checkpoint of the head.
    Checkpoint,
}

impl Kind {
    /// The kind as written in the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Decision => "decision",
            Kind::Admin => "admin",
            Kind::Integrity => "integrity",
            Kind::System => "system",
            Kind::Gap => "gap",
            Kind::Checkpoint => "checkpoint",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The canonical JSON of a value: object keys sorted by bytes, no insignificant whitespace,
/// strings and numbers as serde_json writes them (which round-trip exactly).
pub fn canonical_json(value: &Value) -> String {
    let mut out = Vec::with_capacity(256);
    write_canonical(value, &mut out);
    // serde_json writes UTF-8 and the structure added here is ASCII.
    String::from_utf8(out).unwrap_or_default()
}

fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut fields: Vec<(&String, &Value)> = map.iter().collect();
            fields.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (key, item)) in fields.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_scalar(key, out);
                out.push(b':');
                write_canonical(item, out);
            }
            out.push(b'}');
        }
        scalar => write_scalar(scalar, out),
    }
}

fn write_scalar<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) {
    // Writing strings, numbers, booleans and null into a Vec cannot fail.
    let _ = serde_json::to_writer(out, value);
}

fn put_bytes(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_be_bytes());
    h.update(bytes);
}

/// The hash of an entry: SHA-256 over the entry tag, seq and time (u64 big-endian), kind and
/// canonical payload (each u64-length-prefixed) and the previous hash.
pub fn entry_hash(
    seq: u64,
    time: u64,
    kind: Kind,
    canonical_payload: &str,
    prev_hash: &[u8; 32],
) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(ENTRY_TAG);
    h.update(seq.to_be_bytes());
    h.update(time.to_be_bytes());
    put_bytes(&mut h, kind.as_str().as_bytes());
    put_bytes(&mut h, canonical_payload.as_bytes());
    h.update(prev_hash);
    h.finalize().into()
}

/// The bytes a checkpoint signature covers: the checkpoint tag, the log id (length-prefixed),
/// the seq and hash of the head entry it covers, and the checkpoint's time.
pub fn checkpoint_message(log_id: &str, head_seq: u64, head_hash: &[u8; 32], time: u64) -> Vec<u8> {
    let mut m = Vec::with_capacity(CHECKPOINT_TAG.len() + 8 + log_id.len() + 48);
    m.extend_from_slice(CHECKPOINT_TAG);
    m.extend_from_slice(&(log_id.len() as u64).to_be_bytes());
    m.extend_from_slice(log_id.as_bytes());
    m.extend_from_slice(&head_seq.to_be_bytes());
    m.extend_from_slice(head_hash);
    m.extend_from_slice(&time.to_be_bytes());
    m
}

/// One line as written; `deny_unknown_fields` so that an added field is an edit, not noise.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Entry {
    pub seq: u64,
    pub time: u64,
    pub kind: Kind,
    pub payload: Value,
    pub prev_hash: String,
    pub hash: String,
}

/// The payload of a `checkpoint` entry.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CheckpointPayload {
    pub log_id: String,
    pub head_seq: u64,
    pub head_hash: String,
    pub signature: String,
    /// Informational: which key signed (verification uses the trusted key given to it).
    pub public_key: String,
}

/// The payload of a `gap` entry.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GapPayload {
    pub dropped: u64,
    pub first_seq: u64,
    pub last_seq: u64,
    pub first_time: u64,
    pub last_time: u64,
}

/// Appends one encoded line (with its newline) to `out`; returns the entry's hash.
pub(crate) fn encode_line(
    out: &mut Vec<u8>,
    seq: u64,
    time: u64,
    kind: Kind,
    canonical_payload: &str,
    prev_hash: &[u8; 32],
) -> [u8; 32] {
    use std::io::Write;
    let hash = entry_hash(seq, time, kind, canonical_payload, prev_hash);
    let (mut prev_hex, mut hash_hex) = ([0u8; 64], [0u8; 64]);
    // Both buffers are exactly twice the input length, so encoding cannot fail.
    let _ = hex::encode_to_slice(prev_hash, &mut prev_hex);
    let _ = hex::encode_to_slice(hash, &mut hash_hex);
    let _ = write!(
        out,
        "{{\"seq\":{seq},\"time\":{time},\"kind\":\"{kind}\",\"payload\":"
    );
    out.extend_from_slice(canonical_payload.as_bytes());
    out.extend_from_slice(b",\"prev_hash\":\"");
    out.extend_from_slice(&prev_hex);
    out.extend_from_slice(b"\",\"hash\":\"");
    out.extend_from_slice(&hash_hex);
    out.extend_from_slice(b"\"}\n");
    hash
}

/// Parses a 32-byte hex hash.
pub(crate) fn parse_hash(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}
