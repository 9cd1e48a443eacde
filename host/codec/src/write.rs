//! The deterministic-CBOR writer.

use minicbor::data::Tag;
use minicbor::Encoder;
use std::cmp::Ordering;
use std::convert::Infallible;
use zeroize::Zeroizing;

/// The order of text map keys in deterministic CBOR (RFC 8949 §4.2.1: bytewise order of the
/// encoded keys): shorter first, then bytewise. The encoded length header grows with the
/// length, so this is the encoded order without encoding anything.
pub fn canonical_order(a: &str, b: &str) -> Ordering {
    a.len()
        .cmp(&b.len())
        .then_with(|| a.as_bytes().cmp(b.as_bytes()))
}

/// The writer's buffer: wiped when it grows (the old allocation is zeroized before it is
/// freed, which `Vec`'s own growth would not do) and when it is dropped.
struct Buf(Zeroizing<Vec<u8>>);

impl minicbor::encode::Write for Buf {
    type Error = Infallible;
    fn write_all(&mut self, b: &[u8]) -> Result<(), Infallible> {
        let needed = self.0.len() + b.len();
        if needed > self.0.capacity() {
            let mut grown = Zeroizing::new(Vec::with_capacity(needed.max(2 * self.0.capacity())));
            grown.extend_from_slice(&self.0);
            // The old buffer is zeroized as it is dropped here.
            self.0 = grown;
        }
        self.0.extend_from_slice(b);
        Ok(())
    }
}

/// Writes to memory cannot fail (its error is `Infallible`), nor can the encoder's own checks,
/// which concern only values this writer never passes on.
fn ok<T>(r: Result<T, minicbor::encode::Error<Infallible>>) {
    r.expect("encoding into memory cannot fail");
}

/// Appends CBOR items in their deterministic encoding: shortest headers, definite lengths.
/// The caller writes the item counts its layout announces.
pub struct Writer {
    e: Encoder<Buf>,
}

impl Default for Writer {
    fn default() -> Self {
        Writer::with_capacity(128)
    }
}

impl Writer {
    /// An empty writer.
    pub fn new() -> Self {
        Writer::default()
    }
    /// An empty writer with room for `n` bytes.
    pub fn with_capacity(n: usize) -> Self {
        Writer {
            e: Encoder::new(Buf(Zeroizing::new(Vec::with_capacity(n)))),
        }
    }
    /// The header of an array of `n` items.
    pub fn array(&mut self, n: usize) {
        ok(self.e.array(n as u64));
    }
    /// The header of a map of `n` entries (each a key then a value).
    pub fn map(&mut self, n: usize) {
        ok(self.e.map(n as u64));
    }
    /// An unsigned integer.
    pub fn u8(&mut self, v: u8) {
        ok(self.e.u8(v));
    }
    /// An unsigned integer.
    pub fn u32(&mut self, v: u32) {
        ok(self.e.u32(v));
    }
    /// An unsigned integer.
    pub fn u64(&mut self, v: u64) {
        ok(self.e.u64(v));
    }
    /// A signed integer (major type 0 or 1).
    pub fn i32(&mut self, v: i32) {
        ok(self.e.i32(v));
    }
    /// A byte string.
    pub fn bytes(&mut self, b: &[u8]) {
        ok(self.e.bytes(b));
    }
    /// A text string.
    pub fn str(&mut self, s: &str) {
        ok(self.e.str(s));
    }
    /// `null`.
    pub fn null(&mut self) {
        ok(self.e.null());
    }
    /// A tag (the tagged item follows).
    pub fn tag(&mut self, tag: u64) {
        ok(self.e.tag(Tag::new(tag)));
    }
    /// A map with text keys, its entries in the canonical order whatever order `entries`
    /// comes in; `value` writes one entry's value.
    pub fn text_map<'k, V>(
        &mut self,
        entries: impl IntoIterator<Item = (&'k str, V)>,
        mut value: impl FnMut(&mut Self, V),
    ) {
        let mut entries: Vec<(&str, V)> = entries.into_iter().collect();
        entries.sort_by(|a, b| canonical_order(a.0, b.0));
        self.map(entries.len());
        for (k, v) in entries {
            self.str(k);
            value(self, v);
        }
    }
    /// An array of text strings in the canonical order (a set).
    pub fn text_set<'k>(&mut self, items: impl IntoIterator<Item = &'k str>) {
        let mut items: Vec<&str> = items.into_iter().collect();
        items.sort_by(|a, b| canonical_order(a, b));
        self.array(items.len());
        for s in items {
            self.str(s);
        }
    }
    /// How many bytes are written so far.
    pub fn len(&self) -> usize {
        self.e.writer().0.len()
    }
    /// Whether nothing is written yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The bytes written so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.e.writer().0
    }
    /// The encoding, still wiped on drop: for anything that may hold a secret.
    pub fn finish(self) -> Zeroizing<Vec<u8>> {
        self.e.into_writer().0
    }
    /// The encoding as a plain `Vec`, for public bytes (a signed message, a sealed bundle).
    pub fn into_vec(self) -> Vec<u8> {
        std::mem::take(&mut *self.finish())
    }
}
