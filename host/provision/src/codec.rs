//! The binary encoding of bundles, written by hand so that every size is checked before
//! anything is allocated (SER-001) and so that a bundle has exactly one encoding, the one the
//! provider signs (SER-020).
//!
//! ```text
//! bundle  = MAGIC "PLPB" | version u8 | header | payload (u32 len | bytes) | signature [64]
//! header  = bundle_id [16] | provider id | gateway id | issued_at u64 | expires_at u64
//!           | sequence u64 | 0 | 1 recipient [32] ephemeral [32]
//! payload = contents, or contents sealed with ChaCha20-Poly1305 (+16-byte tag)
//! contents= devices:         count | (device id | key [32])*
//!           gateway_groups:  count | (group id | count | member id*)*
//!           app_groups:      count | (app id | count | (group id | count | member id*)*)*
//!           app_secrets:     count | (app id | count | (name | u8 len | secret)*)*
//!           app_public_keys: count | (app id | count | (name | key [32])*)*
//!           [app_positions:  count >= 1 | (app id | count >= 1 | (originator id
//!                            | 0 (remove) | 1 lat i32 lon i32 (1e-7 degree)
//!                              (0 | 2 country [2]))*)*]
//! ```
//! The `app_positions` section is present only when it holds something, so bundles
//! without positions encode exactly as before it existed.
//! Identifiers are `u8 length | printable ASCII` (1..=128), names are `u8 length |
//! [A-Za-z0-9._:-]` (1..=64, the keystore's label rule, since they become labels), integers
//! big-endian, counts u32. Map keys and set members must be strictly ascending; trailing bytes
//! are an error.

use super::error::DecodeError;
use super::{
    BundleContents, BundleHeader, Encryption, Position, SecretBytes, FORMAT_VERSION,
    MAX_BUNDLE_LEN, MAX_DEVICES, MAX_ENTRIES, MAX_MEMBERS,
};
use palisade_keys::HMAC_SECRET_LEN;
use std::collections::{BTreeMap, BTreeSet};
use zeroize::Zeroizing;

/// The first bytes of every bundle.
pub(crate) const MAGIC: &[u8; 4] = b"PLPB";
const MAX_ID: usize = 128;
const MAX_NAME: usize = 64;

pub(crate) fn valid_id(b: &[u8]) -> bool {
    !b.is_empty() && b.len() <= MAX_ID && b.iter().all(u8::is_ascii_graphic)
}

pub(crate) fn valid_name(b: &[u8]) -> bool {
    !b.is_empty()
        && b.len() <= MAX_NAME
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b':' | b'-'))
}

/// Appends fields. Callers validate identifiers and names first (the builder does), so the
/// `u8` length prefixes cannot overflow (asserted).
pub(crate) struct Writer {
    pub buf: Zeroizing<Vec<u8>>,
}

impl Writer {
    pub fn new() -> Self {
        Writer {
            buf: Zeroizing::new(Vec::with_capacity(1024)),
        }
    }
    pub fn raw(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub fn u32(&mut self, v: usize) {
        let v = u32::try_from(v).expect("counts are bounded far below u32::MAX");
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub fn short(&mut self, s: &[u8]) {
        assert!(
            s.len() <= 255,
            "identifiers and names are validated before encoding"
        );
        self.buf.push(s.len() as u8);
        self.buf.extend_from_slice(s);
    }
}

/// Reads fields, never past the end.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }
    pub fn pos(&self) -> usize {
        self.pos
    }
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() - self.pos < n {
            return Err(DecodeError::Truncated { field });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    pub fn arr<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        Ok(self
            .take(N, field)?
            .try_into()
            .expect("take returned N bytes"))
    }
    pub fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(1, field)?[0])
    }
    fn u32(&mut self, field: &'static str) -> Result<usize, DecodeError> {
        Ok(u32::from_be_bytes(self.arr(field)?) as usize)
    }
    pub fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.arr(field)?))
    }
    fn short(&mut self, field: &'static str, max: usize) -> Result<&'a [u8], DecodeError> {
        let n = self.u8(field)? as usize;
        if n > max {
            return Err(DecodeError::FieldTooLong { field, len: n, max });
        }
        self.take(n, field)
    }
    pub fn id(&mut self, field: &'static str) -> Result<String, DecodeError> {
        let b = self.short(field, MAX_ID)?;
        if !valid_id(b) {
            return Err(DecodeError::InvalidIdentifier { field });
        }
        Ok(String::from_utf8(b.to_vec()).expect("ASCII is UTF-8"))
    }
    fn name(&mut self, field: &'static str) -> Result<String, DecodeError> {
        let b = self.short(field, MAX_NAME)?;
        if !valid_name(b) {
            return Err(DecodeError::InvalidName { field });
        }
        Ok(String::from_utf8(b.to_vec()).expect("ASCII is UTF-8"))
    }
    pub fn payload(&mut self, field: &'static str) -> Result<&'a [u8], DecodeError> {
        let n = self.u32(field)?;
        if n > MAX_BUNDLE_LEN {
            return Err(DecodeError::FieldTooLong {
                field,
                len: n,
                max: MAX_BUNDLE_LEN,
            });
        }
        self.take(n, field)
    }
    /// A count capped by `max` and by what the remaining bytes can hold at `min_entry` bytes
    /// per entry, so a caller may allocate `count` entries.
    fn count(
        &mut self,
        field: &'static str,
        max: usize,
        min_entry: usize,
    ) -> Result<usize, DecodeError> {
        let n = self.u32(field)?;
        if n > max {
            return Err(DecodeError::TooMany {
                field,
                count: n,
                max,
            });
        }
        if n > (self.buf.len() - self.pos) / min_entry.max(1) {
            return Err(DecodeError::Truncated { field });
        }
        Ok(n)
    }
    pub fn at_end(&self) -> bool {
        self.pos == self.buf.len()
    }
    pub fn end(&self) -> Result<(), DecodeError> {
        match self.buf.len() - self.pos {
            0 => Ok(()),
            n => Err(DecodeError::TrailingBytes(n)),
        }
    }
}

/// Writes the header (magic, version and header fields).
pub(crate) fn put_header(w: &mut Writer, h: &BundleHeader) {
    w.raw(MAGIC);
    w.u8(h.version);
    w.raw(&h.bundle_id);
    w.short(h.provider.as_bytes());
    w.short(h.gateway.as_bytes());
    w.u64(h.issued_at);
    w.u64(h.expires_at);
    w.u64(h.sequence);
    match &h.encryption {
        None => w.u8(0),
        Some(e) => {
            w.u8(1);
            w.raw(&e.recipient);
            w.raw(&e.ephemeral);
        }
    }
}

/// Reads the header; the reader is left at the payload.
pub(crate) fn get_header(r: &mut Reader<'_>) -> Result<BundleHeader, DecodeError> {
    if &r.arr::<4>("magic").map_err(|_| DecodeError::BadMagic)? != MAGIC {
        return Err(DecodeError::BadMagic);
    }
    let version = r.u8("version")?;
    if version != FORMAT_VERSION {
        return Err(DecodeError::UnsupportedVersion(version));
    }
    Ok(BundleHeader {
        version,
        bundle_id: r.arr("bundle_id")?,
        provider: r.id("provider")?,
        gateway: r.id("gateway")?,
        issued_at: r.u64("issued_at")?,
        expires_at: r.u64("expires_at")?,
        sequence: r.u64("sequence")?,
        encryption: match r.u8("encryption")? {
            0 => None,
            1 => Some(Encryption {
                recipient: r.arr("encryption.recipient")?,
                ephemeral: r.arr("encryption.ephemeral")?,
            }),
            v => {
                return Err(DecodeError::InvalidValue {
                    field: "encryption",
                    value: v,
                })
            }
        },
    })
}

fn put_set(w: &mut Writer, set: &BTreeSet<String>) {
    w.u32(set.len());
    for m in set {
        w.short(m.as_bytes());
    }
}

/// Reads a strictly ascending set of identifiers.
fn get_set(r: &mut Reader<'_>, field: &'static str) -> Result<BTreeSet<String>, DecodeError> {
    let n = r.count(field, MAX_MEMBERS, 2)?;
    let mut out = BTreeSet::new();
    for _ in 0..n {
        let m = r.id(field)?;
        if out.last().is_some_and(|last| *last >= m) {
            return Err(DecodeError::NotCanonical { field });
        }
        out.insert(m);
    }
    Ok(out)
}

/// One provisioned position, or `None` (remove).
fn get_position(r: &mut Reader<'_>) -> Result<Option<Position>, DecodeError> {
    match r.u8("app_positions.set")? {
        0 => Ok(None),
        1 => {
            let latitude_e7 = i32::from_be_bytes(r.arr("app_positions.latitude")?);
            let longitude_e7 = i32::from_be_bytes(r.arr("app_positions.longitude")?);
            let country = match r.u8("app_positions.country")? {
                0 => None,
                2 => Some(r.arr("app_positions.country")?),
                value => {
                    return Err(DecodeError::InvalidValue {
                        field: "app_positions.country",
                        value,
                    })
                }
            };
            Ok(Some(Position {
                latitude_e7,
                longitude_e7,
                country,
            }))
        }
        value => Err(DecodeError::InvalidValue {
            field: "app_positions.set",
            value,
        }),
    }
}

/// Reads a strictly ascending map: `key` reads a key, `val` a value.
fn get_map<K: Ord, V>(
    r: &mut Reader<'_>,
    field: &'static str,
    max: usize,
    min_entry: usize,
    mut entry: impl FnMut(&mut Reader<'_>) -> Result<(K, V), DecodeError>,
) -> Result<BTreeMap<K, V>, DecodeError> {
    let n = r.count(field, max, min_entry)?;
    let mut out = BTreeMap::new();
    for _ in 0..n {
        let (k, v) = entry(r)?;
        if out.last_key_value().is_some_and(|(last, _)| *last >= k) {
            return Err(DecodeError::NotCanonical { field });
        }
        out.insert(k, v);
    }
    Ok(out)
}

/// Encodes the contents (the plaintext of the payload); zeroized on drop since it may hold
/// secrets.
pub(crate) fn encode_contents(c: &BundleContents) -> Zeroizing<Vec<u8>> {
    let mut w = Writer::new();
    w.u32(c.devices.len());
    for (d, k) in &c.devices {
        w.short(d.as_bytes());
        w.raw(k);
    }
    w.u32(c.gateway_groups.len());
    for (g, members) in &c.gateway_groups {
        w.short(g.as_bytes());
        put_set(&mut w, members);
    }
    w.u32(c.app_groups.len());
    for (app, groups) in &c.app_groups {
        w.short(app.as_bytes());
        w.u32(groups.len());
        for (g, members) in groups {
            w.short(g.as_bytes());
            put_set(&mut w, members);
        }
    }
    w.u32(c.app_secrets.len());
    for (app, keys) in &c.app_secrets {
        w.short(app.as_bytes());
        w.u32(keys.len());
        for (name, secret) in keys {
            w.short(name.as_bytes());
            w.short(secret.expose());
        }
    }
    w.u32(c.app_public_keys.len());
    for (app, keys) in &c.app_public_keys {
        w.short(app.as_bytes());
        w.u32(keys.len());
        for (name, key) in keys {
            w.short(name.as_bytes());
            w.raw(key);
        }
    }
    if !c.app_positions.is_empty() {
        w.u32(c.app_positions.len());
        for (app, positions) in &c.app_positions {
            w.short(app.as_bytes());
            w.u32(positions.len());
            for (originator, position) in positions {
                w.short(originator.as_bytes());
                match position {
                    None => w.u8(0),
                    Some(p) => {
                        w.u8(1);
                        w.raw(&p.latitude_e7.to_be_bytes());
                        w.raw(&p.longitude_e7.to_be_bytes());
                        match p.country {
                            None => w.u8(0),
                            Some(code) => {
                                w.u8(2);
                                w.raw(&code);
                            }
                        }
                    }
                }
            }
        }
    }
    w.buf
}

/// Decodes the contents; exactly the bytes given, nothing left over.
pub(crate) fn decode_contents(b: &[u8]) -> Result<BundleContents, DecodeError> {
    let mut r = Reader::new(b);
    let devices = get_map(&mut r, "devices", MAX_DEVICES, 34, |r| {
        Ok((r.id("devices.id")?, r.arr("devices.key")?))
    })?;
    let gateway_groups = get_map(&mut r, "gateway_groups", MAX_ENTRIES, 6, |r| {
        Ok((
            r.id("gateway_groups.id")?,
            get_set(r, "gateway_groups.members")?,
        ))
    })?;
    let app_groups = get_map(&mut r, "app_groups", MAX_ENTRIES, 6, |r| {
        let app = r.id("app_groups.app")?;
        let groups = get_map(r, "app_groups.groups", MAX_ENTRIES, 6, |r| {
            Ok((r.id("app_groups.group")?, get_set(r, "app_groups.members")?))
        })?;
        Ok((app, groups))
    })?;
    let app_secrets = get_map(&mut r, "app_secrets", MAX_ENTRIES, 6, |r| {
        let app = r.id("app_secrets.app")?;
        let keys = get_map(r, "app_secrets.keys", MAX_ENTRIES, 3, |r| {
            let name = r.name("app_secrets.name")?;
            let secret = r.short("app_secrets.secret", *HMAC_SECRET_LEN.end())?;
            Ok((name, SecretBytes::new(secret.to_vec())))
        })?;
        Ok((app, keys))
    })?;
    let app_public_keys = get_map(&mut r, "app_public_keys", MAX_ENTRIES, 6, |r| {
        let app = r.id("app_public_keys.app")?;
        let keys = get_map(r, "app_public_keys.keys", MAX_ENTRIES, 34, |r| {
            Ok((
                r.name("app_public_keys.name")?,
                r.arr("app_public_keys.key")?,
            ))
        })?;
        Ok((app, keys))
    })?;
    let app_positions = if r.at_end() {
        BTreeMap::new()
    } else {
        let apps = get_map(&mut r, "app_positions", MAX_ENTRIES, 6, |r| {
            let app = r.id("app_positions.app")?;
            let positions = get_map(r, "app_positions.positions", MAX_DEVICES, 3, |r| {
                Ok((r.id("app_positions.originator")?, get_position(r)?))
            })?;
            if positions.is_empty() {
                return Err(DecodeError::NotCanonical {
                    field: "app_positions.positions",
                });
            }
            Ok((app, positions))
        })?;
        // Present only when it holds something: one encoding per bundle.
        if apps.is_empty() {
            return Err(DecodeError::NotCanonical {
                field: "app_positions",
            });
        }
        apps
    };
    r.end()?;
    Ok(BundleContents {
        devices,
        gateway_groups,
        app_groups,
        app_secrets,
        app_public_keys,
        app_positions,
    })
}
