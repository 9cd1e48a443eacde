//! The encoding of bundles (format 2): deterministic CBOR through palisade-codec, the one
//! bounded codec also under the group protocol, so every size is checked before anything is
//! allocated (SER-001) and a bundle has exactly one encoding, the one the provider signs
//! (SER-020).
//!
//! ```text
//! bundle     = "PLPB" 0x02 || [header, payload, signature]      (one CBOR array)
//! header     = [bundle_id: bstr .size 16, provider: id, gateway: id,
//!               issued_at: uint, expires_at: uint, sequence: uint, encryption]
//! encryption = null / [recipient: bstr .size 32, ephemeral: bstr .size 32]
//! payload    = bstr: contents, or contents sealed with ChaCha20-Poly1305 (+16-byte tag)
//! signature  = bstr .size 64: Ed25519 of the provider over the signing context followed by
//!              every byte before this item (prefix, array header, header, payload)
//! contents   = [devices, gateway_groups, app_groups, app_secrets, app_public_keys,
//!               ? app_positions]
//! devices         = { * id => bstr .size 32 }             device → Ed25519 public key
//! gateway_groups  = { * id => members }                   group → members
//! app_groups      = { * id => { * id => members } }       app → group → members
//! app_secrets     = { * id => { * name => bstr } }        app → key name → HMAC secret
//! app_public_keys = { * id => { * name => bstr .size 32 } }
//! app_positions   = { + id => { + id => position } }      app → originator → position
//! members    = [* id]
//! position   = null (remove) / [latitude: int, longitude: int (1e-7 degree),
//!                               country: null / tstr .size 2]
//! ```
//! The 5-byte prefix recognises a bundle and its format before anything is decoded; format 1
//! (`PLPB` 0x01, hand-written length prefixes) is refused by name. The `app_positions`
//! section is present only when it holds something. Identifiers are text of 1..=128
//! printable ASCII bytes (the group protocol's rule, `palisade_group::check_id`), names
//! 1..=64 bytes of `[A-Za-z0-9._:-]` (the keystore's label rule, since they become labels).
//! Deterministic CBOR (RFC 8949 §4.2) fixes the rest: shortest headers, definite lengths,
//! map keys and set members strictly ascending in the canonical order (shorter first, then
//! bytewise), nothing after the last item.

use super::error::DecodeError;
use super::{
    BundleContents, BundleHeader, Encryption, Position, SecretBytes, FORMAT_VERSION, MAX_DEVICES,
    MAX_ENTRIES, MAX_MEMBERS,
};
use palisade_codec::{CodecError, KeyOrder, Reader, Writer};
use palisade_keys::HMAC_SECRET_LEN;
use std::collections::{BTreeMap, BTreeSet};
use zeroize::Zeroizing;

/// The first bytes of every bundle.
pub(crate) const MAGIC: &[u8; 4] = b"PLPB";
/// The prefix of every bundle of this format.
pub(crate) const PREFIX: [u8; 5] = [b'P', b'L', b'P', b'B', FORMAT_VERSION];
const MAX_ID: usize = 128;
const MAX_NAME: usize = palisade_keys::MAX_LABEL_LEN;

/// An identifier (provider, gateway, device, group, app, originator).
pub(crate) fn valid_id(s: &str) -> bool {
    palisade_group::check_id(s).is_ok()
}

/// A key name: it becomes a keystore label, so it follows the keystore's label rule.
pub(crate) fn valid_name(s: &str) -> bool {
    palisade_keys::validate_label(s).is_ok()
}

/// Checks the prefix: a bundle, of this format. Returns the CBOR after it.
pub(crate) fn strip_prefix(bytes: &[u8]) -> Result<&[u8], DecodeError> {
    let Some(rest) = bytes.strip_prefix(MAGIC) else {
        return Err(DecodeError::BadMagic);
    };
    match rest.first() {
        None => Err(CodecError::Truncated { field: "version" }.into()),
        Some(&FORMAT_VERSION) => Ok(&rest[1..]),
        Some(&1) => Err(DecodeError::RetiredFormat { version: 1 }),
        Some(&v) => Err(DecodeError::UnsupportedVersion(v)),
    }
}

fn id(r: &mut Reader<'_>, field: &'static str) -> Result<String, DecodeError> {
    let s = r.str(field, MAX_ID)?;
    if !valid_id(s) {
        return Err(DecodeError::InvalidIdentifier { field });
    }
    Ok(s.to_owned())
}

/// A map key that is an identifier, in canonical order.
fn id_key<'a>(
    r: &mut Reader<'a>,
    order: &mut KeyOrder<'a>,
    field: &'static str,
) -> Result<String, DecodeError> {
    let s = r.ordered_str(order, MAX_ID)?;
    if !valid_id(s) {
        return Err(DecodeError::InvalidIdentifier { field });
    }
    Ok(s.to_owned())
}

/// A map key that is a key name, in canonical order.
fn name_key<'a>(
    r: &mut Reader<'a>,
    order: &mut KeyOrder<'a>,
    field: &'static str,
) -> Result<String, DecodeError> {
    let s = r.ordered_str(order, MAX_NAME)?;
    if !valid_name(s) {
        return Err(DecodeError::InvalidName { field });
    }
    Ok(s.to_owned())
}

/// Writes the header.
pub(crate) fn put_header(w: &mut Writer, h: &BundleHeader) {
    w.array(7);
    w.bytes(&h.bundle_id);
    w.str(&h.provider);
    w.str(&h.gateway);
    w.u64(h.issued_at);
    w.u64(h.expires_at);
    w.u64(h.sequence);
    match &h.encryption {
        None => w.null(),
        Some(e) => {
            w.array(2);
            w.bytes(&e.recipient);
            w.bytes(&e.ephemeral);
        }
    }
}

/// Reads the header (the prefix was checked by [`strip_prefix`]).
pub(crate) fn get_header(r: &mut Reader<'_>) -> Result<BundleHeader, DecodeError> {
    r.tuple("header", 7)?;
    Ok(BundleHeader {
        version: FORMAT_VERSION,
        bundle_id: r.arr("bundle_id")?,
        provider: id(r, "provider")?,
        gateway: id(r, "gateway")?,
        issued_at: r.u64("issued_at")?,
        expires_at: r.u64("expires_at")?,
        sequence: r.u64("sequence")?,
        encryption: if r.is_null() {
            r.null("encryption")?;
            None
        } else {
            r.tuple("encryption", 2)?;
            Some(Encryption {
                recipient: r.arr("encryption.recipient")?,
                ephemeral: r.arr("encryption.ephemeral")?,
            })
        },
    })
}

fn put_members(w: &mut Writer, set: &BTreeSet<String>) {
    w.text_set(set.iter().map(String::as_str));
}

/// Reads a set of identifiers, strictly ascending in the canonical order.
fn get_members(r: &mut Reader<'_>, field: &'static str) -> Result<BTreeSet<String>, DecodeError> {
    let n = r.array(field, MAX_MEMBERS, 2)?;
    let mut order = KeyOrder::new(field);
    let mut out = BTreeSet::new();
    for _ in 0..n {
        out.insert(id_key(r, &mut order, field)?);
    }
    Ok(out)
}

fn put_position(w: &mut Writer, position: &Option<Position>) {
    let Some(p) = position else {
        return w.null();
    };
    w.array(3);
    w.i32(p.latitude_e7);
    w.i32(p.longitude_e7);
    match &p.country {
        // Two upper-case letters (checked by the builder): valid UTF-8.
        Some(code) => w.str(std::str::from_utf8(code).unwrap_or("??")),
        None => w.null(),
    }
}

/// One provisioned position, or `None` (remove).
fn get_position(r: &mut Reader<'_>) -> Result<Option<Position>, DecodeError> {
    if r.is_null() {
        r.null("app_positions.position")?;
        return Ok(None);
    }
    r.tuple("app_positions.position", 3)?;
    let latitude_e7 = r.i32("app_positions.latitude")?;
    let longitude_e7 = r.i32("app_positions.longitude")?;
    let country = if r.is_null() {
        r.null("app_positions.country")?;
        None
    } else {
        let field = "app_positions.country";
        let code = r.str(field, 2)?;
        Some(
            code.as_bytes()
                .try_into()
                .map_err(|_| CodecError::Unexpected {
                    field,
                    expected: "a two-letter country code",
                })?,
        )
    };
    Ok(Some(Position {
        latitude_e7,
        longitude_e7,
        country,
    }))
}

/// Reads a map with identifier keys: `val` reads one value.
fn get_map<'a, V>(
    r: &mut Reader<'a>,
    field: &'static str,
    max: usize,
    min_entry: usize,
    mut val: impl FnMut(&mut Reader<'a>) -> Result<V, DecodeError>,
) -> Result<BTreeMap<String, V>, DecodeError> {
    let n = r.map(field, max, min_entry)?;
    let mut order = KeyOrder::new(field);
    let mut out = BTreeMap::new();
    for _ in 0..n {
        let k = id_key(r, &mut order, field)?;
        out.insert(k, val(r)?);
    }
    Ok(out)
}

/// Reads a map with key-name keys: `val` reads one value.
fn get_named<'a, V>(
    r: &mut Reader<'a>,
    field: &'static str,
    min_entry: usize,
    mut val: impl FnMut(&mut Reader<'a>) -> Result<V, DecodeError>,
) -> Result<BTreeMap<String, V>, DecodeError> {
    let n = r.map(field, MAX_ENTRIES, min_entry)?;
    let mut order = KeyOrder::new(field);
    let mut out = BTreeMap::new();
    for _ in 0..n {
        let k = name_key(r, &mut order, field)?;
        out.insert(k, val(r)?);
    }
    Ok(out)
}

fn keys<V>(m: &BTreeMap<String, V>) -> impl Iterator<Item = (&str, &V)> {
    m.iter().map(|(k, v)| (k.as_str(), v))
}

/// Encodes the contents (the plaintext of the payload); wiped on drop, and so is every
/// buffer the encoder grew through, since it holds the application secrets.
pub(crate) fn encode_contents(c: &BundleContents) -> Zeroizing<Vec<u8>> {
    let mut w = Writer::with_capacity(1024);
    w.array(if c.app_positions.is_empty() { 5 } else { 6 });
    w.text_map(keys(&c.devices), |w, k| w.bytes(k));
    w.text_map(keys(&c.gateway_groups), put_members);
    w.text_map(keys(&c.app_groups), |w, groups| {
        w.text_map(keys(groups), put_members)
    });
    w.text_map(keys(&c.app_secrets), |w, secrets| {
        w.text_map(keys(secrets), |w, s| w.bytes(s.expose()))
    });
    w.text_map(keys(&c.app_public_keys), |w, public| {
        w.text_map(keys(public), |w, k| w.bytes(k))
    });
    if !c.app_positions.is_empty() {
        w.text_map(keys(&c.app_positions), |w, positions| {
            w.text_map(keys(positions), put_position)
        });
    }
    w.finish()
}

/// Decodes the contents; exactly the bytes given, nothing left over.
pub(crate) fn decode_contents(b: &[u8]) -> Result<BundleContents, DecodeError> {
    let mut r = Reader::new(b);
    // The smallest entries: a one-letter key (2 bytes) and its smallest value.
    let sections = r.array("contents", 6, 1)?;
    if !(5..=6).contains(&sections) {
        return Err(CodecError::WrongCount {
            field: "contents",
            expected: 5,
            got: sections as u64,
        }
        .into());
    }
    let devices = get_map(&mut r, "devices", MAX_DEVICES, 36, |r| {
        Ok(r.arr("devices.key")?)
    })?;
    let gateway_groups = get_map(&mut r, "gateway_groups", MAX_ENTRIES, 3, |r| {
        get_members(r, "gateway_groups.members")
    })?;
    let app_groups = get_map(&mut r, "app_groups", MAX_ENTRIES, 3, |r| {
        get_map(r, "app_groups.groups", MAX_ENTRIES, 3, |r| {
            get_members(r, "app_groups.members")
        })
    })?;
    let app_secrets = get_map(&mut r, "app_secrets", MAX_ENTRIES, 3, |r| {
        get_named(r, "app_secrets.keys", 3, |r| {
            let secret = r.bytes("app_secrets.secret", *HMAC_SECRET_LEN.end())?;
            Ok(SecretBytes::new(secret.to_vec()))
        })
    })?;
    let app_public_keys = get_map(&mut r, "app_public_keys", MAX_ENTRIES, 3, |r| {
        get_named(r, "app_public_keys.keys", 36, |r| {
            Ok(r.arr("app_public_keys.key")?)
        })
    })?;
    let app_positions = if sections == 5 {
        BTreeMap::new()
    } else {
        let apps = get_map(&mut r, "app_positions", MAX_ENTRIES, 3, |r| {
            let positions = get_map(r, "app_positions.positions", MAX_DEVICES, 3, get_position)?;
            if positions.is_empty() {
                return Err(empty_section("app_positions.positions"));
            }
            Ok(positions)
        })?;
        // Present only when it holds something: one encoding per bundle.
        if apps.is_empty() {
            return Err(empty_section("app_positions"));
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

fn empty_section(field: &'static str) -> DecodeError {
    CodecError::NotCanonical {
        field,
        reason: "an empty positions section is left out",
    }
    .into()
}
