//! The binary encoding of group-authentication messages, written by hand so that every size is
//! bounded before anything is allocated (SER-001: a hostile peer cannot make us allocate).
//!
//! Layout: `version (1 byte) | type (1 byte) | fields...`. Fixed-size fields (nonces, keys,
//! signatures) are raw bytes; identifiers are `u8 length | ASCII`; payloads are
//! `u32 length | bytes`; lists are `u32 count | entries`; optional keys are a `0|1` flag then
//! the key; integers are big-endian. Every length and count is checked against its cap and
//! against the bytes remaining, and trailing bytes are an error, so a message has exactly one
//! encoding — which is what signatures are computed over.

use super::error::WireError;

/// The only version this build speaks.
pub const WIRE_VERSION: u8 = 1;
/// No message may be larger (16,384 members of ~260 bytes fit).
pub const MAX_MESSAGE_LEN: usize = 8 << 20;
/// Longest identifier (group, device, gateway, server), in bytes.
pub const MAX_ID_LEN: usize = 128;
/// Most members in one group message.
pub const MAX_MEMBERS: usize = 16_384;
/// Largest channel payload.
pub const MAX_PAYLOAD: usize = 64 * 1024;

/// Appends fields to a message buffer.
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// Starts a message of type `ty`.
    pub fn new(ty: u8) -> Self {
        let mut buf = Vec::with_capacity(128);
        buf.push(WIRE_VERSION);
        buf.push(ty);
        Writer { buf }
    }
    /// A raw fixed-size field.
    pub fn raw(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }
    /// One byte.
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    /// A big-endian u32.
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    /// A big-endian u64.
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    /// An identifier; callers validate identifiers at construction, so this cannot overflow
    /// the `u8` prefix (asserted).
    pub fn id(&mut self, s: &str) {
        assert!(
            s.len() <= MAX_ID_LEN,
            "identifiers are validated before encoding"
        );
        self.buf.push(s.len() as u8);
        self.buf.extend_from_slice(s.as_bytes());
    }
    /// A u32-length-prefixed payload.
    pub fn bytes(&mut self, b: &[u8]) {
        self.u32(b.len() as u32);
        self.buf.extend_from_slice(b);
    }
    /// An optional 32-byte key.
    pub fn opt32(&mut self, k: &Option<[u8; 32]>) {
        match k {
            Some(k) => {
                self.buf.push(1);
                self.buf.extend_from_slice(k);
            }
            None => self.buf.push(0),
        }
    }
    /// A list count.
    pub fn count(&mut self, n: usize) {
        self.u32(n as u32);
    }
    /// The finished message.
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// Reads fields from a message, never past its end.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Checks size, version and type, and positions after the header.
    pub fn new(buf: &'a [u8], ty: u8) -> Result<Self, WireError> {
        let got = peek_type(buf)?;
        if got != ty {
            return Err(WireError::WrongType { expected: ty, got });
        }
        Ok(Reader { buf, pos: 2 })
    }

    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], WireError> {
        if self.buf.len() - self.pos < n {
            return Err(WireError::Truncated { field });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    /// A fixed-size field.
    pub fn arr<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], WireError> {
        Ok(self
            .take(N, field)?
            .try_into()
            .expect("take returned N bytes"))
    }
    /// One byte.
    pub fn u8(&mut self, field: &'static str) -> Result<u8, WireError> {
        Ok(self.take(1, field)?[0])
    }
    /// A big-endian u32.
    pub fn u32(&mut self, field: &'static str) -> Result<u32, WireError> {
        Ok(u32::from_be_bytes(self.arr(field)?))
    }
    /// A big-endian u64.
    pub fn u64(&mut self, field: &'static str) -> Result<u64, WireError> {
        Ok(u64::from_be_bytes(self.arr(field)?))
    }
    /// An identifier: 1..=128 bytes of printable ASCII without spaces.
    pub fn id(&mut self, field: &'static str) -> Result<String, WireError> {
        let n = self.u8(field)? as usize;
        if n > MAX_ID_LEN {
            return Err(WireError::FieldTooLong {
                field,
                len: n,
                max: MAX_ID_LEN,
            });
        }
        let b = self.take(n, field)?;
        if !valid_id_bytes(b) {
            return Err(WireError::InvalidIdentifier { field });
        }
        Ok(String::from_utf8(b.to_vec()).expect("ASCII is UTF-8"))
    }
    /// A u32-length-prefixed payload of at most `max` bytes.
    pub fn bytes(&mut self, field: &'static str, max: usize) -> Result<Vec<u8>, WireError> {
        let n = self.u32(field)? as usize;
        if n > max {
            return Err(WireError::FieldTooLong { field, len: n, max });
        }
        Ok(self.take(n, field)?.to_vec())
    }
    /// An optional 32-byte key.
    pub fn opt32(&mut self, field: &'static str) -> Result<Option<[u8; 32]>, WireError> {
        match self.u8(field)? {
            0 => Ok(None),
            1 => Ok(Some(self.arr(field)?)),
            v => Err(WireError::InvalidValue { field, value: v }),
        }
    }
    /// A list count, capped by `max` and by what the remaining bytes could hold at
    /// `min_entry` bytes per entry (so the caller may allocate `count` entries safely).
    pub fn count(
        &mut self,
        field: &'static str,
        max: usize,
        min_entry: usize,
    ) -> Result<usize, WireError> {
        let n = self.u32(field)? as usize;
        if n > max {
            return Err(WireError::TooMany {
                field,
                count: n,
                max,
            });
        }
        let room = (self.buf.len() - self.pos) / min_entry.max(1);
        if n > room {
            return Err(WireError::Truncated { field });
        }
        Ok(n)
    }
    /// Fails if bytes remain.
    pub fn end(self) -> Result<(), WireError> {
        match self.buf.len() - self.pos {
            0 => Ok(()),
            n => Err(WireError::TrailingBytes(n)),
        }
    }
}

/// Checks the size and version of a message and returns its type byte.
pub fn peek_type(buf: &[u8]) -> Result<u8, WireError> {
    if buf.len() > MAX_MESSAGE_LEN {
        return Err(WireError::MessageTooLarge {
            len: buf.len(),
            max: MAX_MESSAGE_LEN,
        });
    }
    if buf.is_empty() {
        return Err(WireError::Truncated { field: "version" });
    }
    if buf[0] != WIRE_VERSION {
        return Err(WireError::UnsupportedVersion(buf[0]));
    }
    match buf.get(1) {
        Some(t) => Ok(*t),
        None => Err(WireError::Truncated { field: "type" }),
    }
}

/// Identifier rule shared by the encoder's callers and the decoder.
pub fn valid_id_bytes(b: &[u8]) -> bool {
    !b.is_empty() && b.len() <= MAX_ID_LEN && b.iter().all(|c| c.is_ascii_graphic())
}

/// A message with a wire encoding.
pub trait WireMessage: Sized {
    /// The type byte.
    const TYPE: u8;
    /// Writes the fields after the header.
    fn encode_fields(&self, w: &mut Writer);
    /// Reads the fields after the header.
    fn decode_fields(r: &mut Reader<'_>) -> Result<Self, WireError>;

    /// The full encoding.
    fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new(Self::TYPE);
        self.encode_fields(&mut w);
        w.finish()
    }
    /// Decodes exactly one message of this type.
    fn from_bytes(b: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(b, Self::TYPE)?;
        let m = Self::decode_fields(&mut r)?;
        r.end()?;
        Ok(m)
    }
}

/// Context prefix of everything signed in group authentication, so that a signature made
/// here can never be taken for one made by the same key elsewhere (audit, registry).
pub const SIGNING_CONTEXT: &[u8] = b"palisade/group-auth/v1\0";

/// The bytes a signed message's signature covers: the context, then its encoding without the
/// trailing 64-byte signature (signed messages end with their signature).
pub fn signed_part(encoded: &[u8]) -> Vec<u8> {
    let body = &encoded[..encoded.len().saturating_sub(64)];
    let mut v = Vec::with_capacity(SIGNING_CONTEXT.len() + body.len());
    v.extend_from_slice(SIGNING_CONTEXT);
    v.extend_from_slice(body);
    v
}
