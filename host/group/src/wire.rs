//! The encoding of group-authentication messages: deterministic CBOR (RFC 8949 §4.2), signed
//! messages in COSE_Sign1 (RFC 9052). The normative description, with the reasons for this
//! choice, is `docs/group-auth-protocol.md`; this module and `codec` implement it.
//!
//! - A message's **payload** is one CBOR array: `[version, type, fields...]`. Fixed-size
//!   values (nonces, keys, digests, MACs) are byte strings of exactly their size; identifiers
//!   are text strings; integers are unsigned; an absent optional key is `null`; lists are
//!   arrays.
//! - A **signed** message is `COSE_Sign1_Tagged` = tag 18 over `[protected, unprotected,
//!   payload, signature]` with `protected` = the bytes `A1 01 27` (`{1: -8}`, alg EdDSA),
//!   `unprotected` = `{}` and a 64-byte Ed25519 signature over the COSE `Sig_structure`
//!   `["Signature1", protected, external_aad, payload]`, where `external_aad` is
//!   [`SIGNING_CONTEXT`].
//! - Unsigned messages (key confirmations, sealed channel messages) are their payload alone.
//!
//! Every message has exactly one encoding: the generic deterministic-CBOR rules (shortest
//! headers, definite lengths, trailing bytes, counts bounded by cap and by the bytes left
//! before anything is allocated, SER-001) are palisade-codec's, and on top a decoded message
//! is encoded again and compared with what arrived, so no other form of the message's own
//! layout passes either. Signatures and digests are therefore over the one canonical form.

use super::error::WireError;
use palisade_codec::Reader as CborReader;
use palisade_codec::Writer as CborWriter;

/// The protocol version carried first in every payload.
pub const WIRE_VERSION: u8 = 1;
/// No message may be larger (16,384 members of ~260 bytes fit).
pub const MAX_MESSAGE_LEN: usize = 8 << 20;
/// Longest identifier (group, device, gateway, server), in bytes.
pub const MAX_ID_LEN: usize = 128;
/// Most members in one group message.
pub const MAX_MEMBERS: usize = 16_384;
/// Largest channel payload.
pub const MAX_PAYLOAD: usize = 64 * 1024;

/// The CBOR tag of `COSE_Sign1_Tagged`.
pub const COSE_SIGN1_TAG: u64 = 18;
/// The protected header of every signed message: the map `{1: -8}` (alg: EdDSA), encoded.
pub const PROTECTED_HEADER: [u8; 3] = [0xa1, 0x01, 0x27];

/// Context of everything signed in group authentication (the COSE `external_aad`), so that
/// a signature made here can never be taken for one made by the same key elsewhere.
pub const SIGNING_CONTEXT: &[u8] = b"palisade/group-auth/v1\0";

/// Appends the fields of a message's payload.
pub struct Writer {
    w: CborWriter,
    signature: Option<[u8; 64]>,
}

impl Writer {
    /// Starts the payload of a message of type `ty` with `fields` fields after the type.
    pub fn new(ty: u8, fields: u64) -> Self {
        let mut w = CborWriter::new();
        w.array(fields as usize + 2);
        w.u8(WIRE_VERSION);
        w.u8(ty);
        Writer { w, signature: None }
    }
    /// A fixed-size value (nonce, key, digest, MAC): a byte string.
    pub fn raw(&mut self, b: &[u8]) {
        self.w.bytes(b);
    }
    /// An unsigned integer.
    pub fn u8(&mut self, v: u8) {
        self.w.u8(v);
    }
    /// An unsigned integer.
    pub fn u32(&mut self, v: u32) {
        self.w.u32(v);
    }
    /// An unsigned integer.
    pub fn u64(&mut self, v: u64) {
        self.w.u64(v);
    }
    /// An identifier (callers validate identifiers at construction): a text string.
    pub fn id(&mut self, s: &str) {
        self.w.str(s);
    }
    /// A variable-length payload: a byte string.
    pub fn bytes(&mut self, b: &[u8]) {
        self.w.bytes(b);
    }
    /// An optional 32-byte key: a byte string, or `null`.
    pub fn opt32(&mut self, k: &Option<[u8; 32]>) {
        match k {
            Some(k) => self.w.bytes(k),
            None => self.w.null(),
        }
    }
    /// `null` (an absent optional value).
    pub fn null(&mut self) {
        self.w.null();
    }
    /// The header of a list of `n` entries (each entry one item).
    pub fn list(&mut self, n: usize) {
        self.w.array(n);
    }
    /// The header of an entry of `n` items (an array).
    pub fn tuple(&mut self, n: u64) {
        self.w.array(n as usize);
    }
    /// The message's signature: it is sent as a COSE_Sign1.
    pub fn signature(&mut self, sig: &[u8; 64]) {
        self.signature = Some(*sig);
    }
    /// The finished message.
    pub fn finish(self) -> Vec<u8> {
        let payload = self.w.into_vec();
        let Some(sig) = self.signature else {
            return payload;
        };
        let mut e = CborWriter::with_capacity(payload.len() + 80);
        e.tag(COSE_SIGN1_TAG);
        e.array(4);
        e.bytes(&PROTECTED_HEADER);
        e.map(0);
        e.bytes(&payload);
        e.bytes(&sig);
        e.into_vec()
    }
}

/// A message split into its payload and, for a signed one, its signature.
struct Envelope<'a> {
    payload: &'a [u8],
    signature: Option<[u8; 64]>,
}

/// Any codec error in a field of the envelope is that field's malformation.
fn malformed(field: &'static str) -> impl Fn(palisade_codec::CodecError) -> WireError {
    move |_| WireError::Malformed { field }
}

/// Splits a message: a COSE_Sign1_Tagged, or a bare payload.
fn open(buf: &[u8]) -> Result<Envelope<'_>, WireError> {
    if buf.len() > MAX_MESSAGE_LEN {
        return Err(WireError::MessageTooLarge {
            len: buf.len(),
            max: MAX_MESSAGE_LEN,
        });
    }
    let mut d = CborReader::new(buf);
    if !d.is_tag() {
        return Ok(Envelope {
            payload: buf,
            signature: None,
        });
    }
    let f = malformed("COSE_Sign1");
    if d.tag("COSE_Sign1").map_err(&f)? != COSE_SIGN1_TAG {
        return Err(WireError::Malformed {
            field: "COSE_Sign1",
        });
    }
    d.tuple("COSE_Sign1", 4).map_err(&f)?;
    if d.bytes("protected", PROTECTED_HEADER.len())
        .map_err(malformed("protected"))?
        != PROTECTED_HEADER
    {
        return Err(WireError::Malformed { field: "protected" });
    }
    // An empty map: any entry is over the cap of 0.
    d.map("unprotected", 0, 1)
        .map_err(malformed("unprotected"))?;
    let payload = d
        .bytes("payload", MAX_MESSAGE_LEN)
        .map_err(malformed("payload"))?;
    let signature = d.arr("signature").map_err(malformed("signature"))?;
    d.end()?;
    Ok(Envelope {
        payload,
        signature: Some(signature),
    })
}

/// Reads the fields of a message's payload, never past its end.
pub struct Reader<'a> {
    d: CborReader<'a>,
    signature: Option<[u8; 64]>,
}

impl<'a> Reader<'a> {
    /// Checks size, envelope, version, type and field count, and positions at the first
    /// field.
    pub fn new(buf: &'a [u8], ty: u8, fields: u64) -> Result<Self, WireError> {
        let env = open(buf)?;
        let mut d = CborReader::new(env.payload);
        let got = header(&mut d)?;
        if got.1 != ty {
            return Err(WireError::WrongType {
                expected: ty,
                got: got.1,
            });
        }
        if got.0 != fields {
            return Err(WireError::Malformed { field: "fields" });
        }
        Ok(Reader {
            d,
            signature: env.signature,
        })
    }

    /// A fixed-size value: a byte string of exactly `N` bytes.
    pub fn arr<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], WireError> {
        let b = self.d.bytes(field, usize::MAX)?;
        b.try_into().map_err(|_| WireError::FieldTooLong {
            field,
            len: b.len(),
            max: N,
        })
    }
    /// An unsigned integer that fits a `u8`.
    pub fn u8(&mut self, field: &'static str) -> Result<u8, WireError> {
        Ok(self.d.u8(field)?)
    }
    /// An unsigned integer that fits a `u32`.
    pub fn u32(&mut self, field: &'static str) -> Result<u32, WireError> {
        Ok(self.d.u32(field)?)
    }
    /// An unsigned integer.
    pub fn u64(&mut self, field: &'static str) -> Result<u64, WireError> {
        Ok(self.d.u64(field)?)
    }
    /// An identifier: a text string of 1..=128 printable ASCII bytes without spaces.
    pub fn id(&mut self, field: &'static str) -> Result<String, WireError> {
        let s = self.d.str(field, MAX_ID_LEN)?;
        if !valid_id_bytes(s.as_bytes()) {
            return Err(WireError::InvalidIdentifier { field });
        }
        Ok(s.to_owned())
    }
    /// A byte string of at most `max` bytes.
    pub fn bytes(&mut self, field: &'static str, max: usize) -> Result<Vec<u8>, WireError> {
        Ok(self.d.bytes(field, max)?.to_vec())
    }
    /// An optional 32-byte key: `null` or a byte string of 32 bytes.
    pub fn opt32(&mut self, field: &'static str) -> Result<Option<[u8; 32]>, WireError> {
        if self.d.is_null() {
            self.d.null(field)?;
            return Ok(None);
        }
        Ok(Some(self.arr(field)?))
    }
    /// An optional byte string of at most `max` bytes: `null` or a byte string.
    pub fn opt_bytes(
        &mut self,
        field: &'static str,
        max: usize,
    ) -> Result<Option<Vec<u8>>, WireError> {
        if self.d.is_null() {
            self.d.null(field)?;
            return Ok(None);
        }
        Ok(Some(self.bytes(field, max)?))
    }
    /// A list's count, capped by `max` and by what the remaining bytes could hold at
    /// `min_entry` bytes per entry (so the caller may allocate `count` entries safely).
    pub fn list(
        &mut self,
        field: &'static str,
        max: usize,
        min_entry: usize,
    ) -> Result<usize, WireError> {
        Ok(self.d.array(field, max, min_entry)?)
    }
    /// An entry of exactly `n` items.
    pub fn tuple(&mut self, field: &'static str, n: u64) -> Result<(), WireError> {
        Ok(self.d.tuple(field, n)?)
    }
    /// The signature of a signed message.
    pub fn signature(&mut self) -> Result<[u8; 64], WireError> {
        self.signature
            .ok_or(WireError::Malformed { field: "signature" })
    }
    /// Fails if bytes remain in the payload.
    pub fn end(self) -> Result<(), WireError> {
        Ok(self.d.end()?)
    }
}

/// Reads the payload's header: (fields after the type, type).
fn header(d: &mut CborReader<'_>) -> Result<(u64, u8), WireError> {
    // A payload is one array whose items are at least one byte each.
    let n = d.array("payload", usize::MAX, 1)? as u64;
    if n < 2 {
        return Err(WireError::Truncated { field: "type" });
    }
    let v = d.u8("version")?;
    if v != WIRE_VERSION {
        return Err(WireError::UnsupportedVersion(v));
    }
    Ok((n - 2, d.u8("type")?))
}

/// Checks the size, envelope and version of a message and returns its type.
pub fn peek_type(buf: &[u8]) -> Result<u8, WireError> {
    let env = open(buf)?;
    Ok(header(&mut CborReader::new(env.payload))?.1)
}

/// Identifier rule shared by the encoder's callers and the decoder.
pub fn valid_id_bytes(b: &[u8]) -> bool {
    !b.is_empty() && b.len() <= MAX_ID_LEN && b.iter().all(|c| c.is_ascii_graphic())
}

/// A message with a wire encoding.
pub trait WireMessage: Sized {
    /// The type code.
    const TYPE: u8;
    /// How many fields follow the type in the payload.
    const FIELDS: u64;
    /// Writes the fields after the header (and the signature, for a signed message).
    fn encode_fields(&self, w: &mut Writer);
    /// Reads the fields after the header.
    fn decode_fields(r: &mut Reader<'_>) -> Result<Self, WireError>;

    /// The full encoding.
    fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new(Self::TYPE, Self::FIELDS);
        self.encode_fields(&mut w);
        w.finish()
    }
    /// Decodes exactly one message of this type, in its one canonical encoding.
    fn from_bytes(b: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(b, Self::TYPE, Self::FIELDS)?;
        let m = Self::decode_fields(&mut r)?;
        r.end()?;
        if m.to_bytes() != b {
            return Err(WireError::NotCanonical);
        }
        Ok(m)
    }
}

/// The bytes a signed message's signature covers: the COSE `Sig_structure`
/// `["Signature1", protected, external_aad, payload]` with `SIGNING_CONTEXT` as the
/// external data. An encoding that is not a signed message gives a structure over an empty
/// payload, which no signature of a real message matches.
pub fn signed_part(encoded: &[u8]) -> Vec<u8> {
    let payload = match open(encoded) {
        Ok(Envelope {
            payload,
            signature: Some(_),
        }) => payload,
        _ => &[],
    };
    sig_structure(payload)
}

/// The COSE `Sig_structure` over an encoded payload, with [`SIGNING_CONTEXT`]: what every
/// signature of the protocol covers (also request proofs, whose payload is never sent).
pub fn sig_structure(payload: &[u8]) -> Vec<u8> {
    let mut e = CborWriter::with_capacity(payload.len() + 48);
    e.array(4);
    e.str("Signature1");
    e.bytes(&PROTECTED_HEADER);
    e.bytes(SIGNING_CONTEXT);
    e.bytes(payload);
    e.into_vec()
}

/// The signature of an encoded signed message.
pub fn signature_of(encoded: &[u8]) -> Option<[u8; 64]> {
    open(encoded).ok()?.signature
}
