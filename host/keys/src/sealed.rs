//! Keys at rest (SER-002/003): the master secret file and sealed key records.
//!
//! The master secret (32 random bytes, file mode 0600) never encrypts anything itself: a
//! key-encryption key is derived from it with HKDF-SHA256, and every key record is sealed with
//! ChaCha20-Poly1305 under that key. The record's metadata (handle, scope, kind, label, public
//! key) is the AEAD's associated data, so moving a key to another application's scope or
//! relabelling it by editing the file breaks authentication.
//!
//! Since session 5 the software store keeps every key in one sealed index file
//! ([`INDEX_FILE`]) instead of one `<handle>.key` record per key: a 10,000-app gateway's first
//! start wrote (and fsynced) 10,000 files, a few a second under load. The index is one
//! ChaCha20-Poly1305 box under the same KEK: all metadata and secrets are inside it, so any
//! edit, truncation, or removal of one key from it fails authentication as a whole. The
//! per-key records are still read, once, to migrate an older store (see `software`).

use super::{KeyError, KeyHandle, KeyKind, KeyScope};
use cap_std::fs::{Dir, OpenOptions, OpenOptionsExt, PermissionsExt};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// The name of the master secret file inside the key directory.
pub(crate) const MASTER_FILE: &str = "master.key";
const RECORD_VERSION: u8 = 1;

/// The key-encryption key, derived from the master secret; zeroized on drop.
pub(crate) struct Kek(Zeroizing<[u8; 32]>);

impl Kek {
    /// Derives the KEK from master secret bytes.
    pub(crate) fn derive(master: &[u8; 32]) -> Self {
        let hk = hkdf::Hkdf::<sha2::Sha256>::new(Some(b"palisade/keystore/v1"), master);
        let mut k = Zeroizing::new([0u8; 32]);
        hk.expand(b"key-encryption-key", &mut *k)
            .expect("32 bytes is a valid HKDF length");
        Kek(k)
    }

    fn cipher(&self) -> ChaCha20Poly1305 {
        ChaCha20Poly1305::new(Key::from_slice(&*self.0))
    }
}

/// Reads the master secret, or creates it if absent. Refuses a file readable by group or
/// others. Creation writes a temporary 0600 file and links it into place without replacing an
/// existing one, so two processes starting at once cannot end up with different masters.
pub(crate) fn load_or_create_master(dir: &Dir, dir_path: &Path) -> Result<Kek, KeyError> {
    let path = dir_path.join(MASTER_FILE);
    match dir.open(MASTER_FILE) {
        Ok(mut f) => {
            let mode = f
                .metadata()
                .map_err(KeyError::io(&path))?
                .permissions()
                .mode()
                & 0o777;
            if mode & 0o077 != 0 {
                return Err(KeyError::InsecurePermissions { path, mode });
            }
            let mut buf = Zeroizing::new(Vec::with_capacity(33));
            std::io::Read::by_ref(&mut f)
                .take(33)
                .read_to_end(&mut buf)
                .map_err(KeyError::io(&path))?;
            let master: Zeroizing<[u8; 32]> = Zeroizing::new(
                buf.as_slice()
                    .try_into()
                    .map_err(|_| KeyError::CorruptMaster { path })?,
            );
            Ok(Kek::derive(&master))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut master = Zeroizing::new([0u8; 32]);
            rand::rngs::OsRng.fill_bytes(&mut *master);
            let tmp = write_temp(dir, dir_path, MASTER_FILE, &*master)?;
            let linked = dir.hard_link(&tmp, dir, MASTER_FILE);
            let _ = dir.remove_file(&tmp);
            match linked {
                Ok(()) => Ok(Kek::derive(&master)),
                // Another process won the race: use its master.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    load_or_create_master(dir, dir_path)
                }
                Err(e) => Err(KeyError::Io { path, source: e }),
            }
        }
        Err(e) => Err(KeyError::Io { path, source: e }),
    }
}

/// Writes `bytes` to a fresh 0600 temporary file in `dir` and syncs it; returns its name.
fn write_temp(dir: &Dir, dir_path: &Path, name: &str, bytes: &[u8]) -> Result<String, KeyError> {
    let tmp = format!(".{name}.tmp-{:016x}", rand::rngs::OsRng.next_u64());
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true).mode(0o600);
    let mut f = dir
        .open_with(&tmp, &opts)
        .map_err(KeyError::io(dir_path.join(&tmp)))?;
    f.write_all(bytes)
        .map_err(KeyError::io(dir_path.join(&tmp)))?;
    f.sync_all().map_err(KeyError::io(dir_path.join(&tmp)))?;
    Ok(tmp)
}

/// Atomically replaces `name` with `bytes` (temporary file, then rename).
pub(crate) fn write_atomic(
    dir: &Dir,
    dir_path: &Path,
    name: &str,
    bytes: &[u8],
) -> Result<(), KeyError> {
    let tmp = write_temp(dir, dir_path, name, bytes)?;
    dir.rename(&tmp, dir, name).map_err(|e| {
        let _ = dir.remove_file(&tmp);
        KeyError::Io {
            path: dir_path.join(name),
            source: e,
        }
    })
}

/// The file holding every key of a software store.
pub(crate) const INDEX_FILE: &str = "keys.index";
/// The lock file that serialises the store's writers across processes (a gateway and a CLI
/// command on the same data folder): every write re-reads the index under it, so that one
/// process's keys are never dropped by another's rewrite.
pub(crate) const LOCK_FILE: &str = ".keys.lock";
/// The index file starts with these bytes (format version in the last one).
const INDEX_MAGIC: &[u8; 8] = b"PKSINDX1";
/// The largest index read: a key entry is at most ~330 bytes (64-byte handle, 128-byte
/// application name, 64-byte label, 64-byte secret and their lengths), so this holds
/// [`crate::MAX_SOFTWARE_KEYS`] of the largest keys. A bigger file is refused unread.
pub(crate) const MAX_INDEX_BYTES: usize = 40 << 20;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// One key as the index holds it; the secret is zeroized on drop.
pub(crate) struct IndexEntry {
    pub handle: KeyHandle,
    pub scope: KeyScope,
    pub kind: KeyKind,
    pub label: String,
    pub extractable: bool,
    pub material: Zeroizing<Vec<u8>>,
}

fn index_aad() -> Vec<u8> {
    let mut a = b"palisade-keystore-index".to_vec();
    a.extend_from_slice(INDEX_MAGIC);
    a
}

fn put_short(out: &mut Vec<u8>, field: &[u8]) {
    // Every field is bounded below 256 bytes by the checks at creation (handle 64, application
    // name 128, label 64, secret 64).
    debug_assert!(field.len() <= u8::MAX as usize);
    out.push(field.len() as u8);
    out.extend_from_slice(field);
}

/// Seals every entry into the bytes of an index file.
pub(crate) fn seal_index<'a>(
    kek: &Kek,
    entries: impl ExactSizeIterator<Item = &'a IndexEntry>,
) -> Vec<u8> {
    let mut plain = Zeroizing::new(Vec::with_capacity(4 + entries.len() * 160));
    plain.extend_from_slice(&(entries.len() as u32).to_be_bytes());
    for e in entries {
        put_short(&mut plain, e.handle.as_str().as_bytes());
        match &e.scope {
            KeyScope::Gateway => plain.push(0),
            KeyScope::App(name) => {
                plain.push(1);
                put_short(&mut plain, name.as_bytes());
            }
        }
        plain.push(e.kind.code());
        plain.push(e.extractable as u8);
        put_short(&mut plain, e.label.as_bytes());
        put_short(&mut plain, &e.material);
    }
    let mut nonce = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let ct = kek
        .cipher()
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: &plain,
                aad: &index_aad(),
            },
        )
        .expect("ChaCha20-Poly1305 encryption of a bounded buffer cannot fail");
    let mut out = Vec::with_capacity(INDEX_MAGIC.len() + NONCE_LEN + ct.len());
    out.extend_from_slice(INDEX_MAGIC);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    out
}

/// A reader over the index's plaintext that never reads past its end.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn byte(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn short(&mut self) -> Option<&'a [u8]> {
        let n = self.byte()? as usize;
        self.take(n)
    }
    fn text(&mut self) -> Option<&'a str> {
        std::str::from_utf8(self.short()?).ok()
    }
}

/// Opens an index file: its size, header and authentication first, then each entry's fields
/// (handle, scope, label as at creation), refusing a handle listed twice or bytes left over.
pub(crate) fn open_index(kek: &Kek, bytes: &[u8]) -> Result<Vec<IndexEntry>, KeyError> {
    let malformed = |reason: String| KeyError::MalformedRecord {
        file: INDEX_FILE.to_owned(),
        reason,
    };
    if bytes.len() > MAX_INDEX_BYTES {
        return Err(malformed(format!(
            "larger than the {MAX_INDEX_BYTES}-byte bound"
        )));
    }
    if bytes.len() < INDEX_MAGIC.len() + NONCE_LEN + TAG_LEN {
        return Err(malformed("truncated (shorter than its header)".into()));
    }
    let (magic, rest) = bytes.split_at(INDEX_MAGIC.len());
    if magic != INDEX_MAGIC {
        return Err(malformed("not a keystore index (unknown header)".into()));
    }
    let (nonce, ct) = rest.split_at(NONCE_LEN);
    let plain = Zeroizing::new(
        kek.cipher()
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: &index_aad(),
                },
            )
            .map_err(|_| KeyError::TamperedRecord {
                file: INDEX_FILE.to_owned(),
            })?,
    );
    let mut cur = Cursor(&plain);
    let count = cur
        .take(4)
        .map(|b| u32::from_be_bytes(b.try_into().expect("4 bytes")) as usize)
        .ok_or_else(|| malformed("truncated key count".into()))?;
    if count > crate::MAX_SOFTWARE_KEYS {
        return Err(malformed(format!(
            "{count} keys, more than the bound of {}",
            crate::MAX_SOFTWARE_KEYS
        )));
    }
    let mut entries = Vec::with_capacity(count);
    let mut seen = std::collections::HashSet::with_capacity(count);
    for n in 0..count {
        let bad = |what: &str| malformed(format!("entry {n}: {what}"));
        let handle = cur
            .text()
            .and_then(KeyHandle::parse)
            .ok_or_else(|| bad("bad handle"))?;
        let scope = match cur.byte() {
            Some(0) => KeyScope::Gateway,
            Some(1) => KeyScope::App(cur.text().ok_or_else(|| bad("bad scope"))?.to_owned()),
            _ => return Err(bad("bad scope")),
        };
        scope.validate().map_err(|_| bad("bad scope"))?;
        let kind = cur
            .byte()
            .and_then(KeyKind::from_code)
            .ok_or_else(|| bad("unknown key kind"))?;
        let extractable = match cur.byte() {
            Some(0) => false,
            Some(1) => true,
            _ => return Err(bad("bad extractable flag")),
        };
        let label = cur.text().ok_or_else(|| bad("bad label"))?.to_owned();
        crate::validate_label(&label).map_err(|_| bad("bad label"))?;
        let material = Zeroizing::new(cur.short().ok_or_else(|| bad("truncated secret"))?.to_vec());
        if !seen.insert(handle.clone()) {
            return Err(malformed(format!("key {handle} is listed twice")));
        }
        entries.push(IndexEntry {
            handle,
            scope,
            kind,
            label,
            extractable,
            material,
        });
    }
    if !cur.0.is_empty() {
        return Err(malformed(format!(
            "{} bytes after the last key",
            cur.0.len()
        )));
    }
    Ok(entries)
}

/// Syncs the directory itself, so that a rename or removal in it is durable.
pub(crate) fn sync_dir(dir_path: &Path) -> Result<(), KeyError> {
    std::fs::File::open(dir_path)
        .and_then(|d| d.sync_all())
        .map_err(KeyError::io(dir_path))
}

/// A key record as stored in `<handle>.key` (JSON; the secret is in `sealed`).
#[derive(Serialize, Deserialize)]
pub(crate) struct Record {
    pub v: u8,
    pub handle: KeyHandle,
    pub scope: KeyScope,
    pub kind: KeyKind,
    pub label: String,
    pub public_key: Option<String>,
    pub extractable: bool,
    nonce: String,
    sealed: String,
}

/// A record's metadata, the part that is authenticated but not encrypted.
pub(crate) struct Meta<'a> {
    pub handle: &'a KeyHandle,
    pub scope: &'a KeyScope,
    pub kind: KeyKind,
    pub label: &'a str,
    pub public_key: Option<&'a [u8; 32]>,
    pub extractable: bool,
}

impl Meta<'_> {
    /// The associated data: every metadata field, length-prefixed so fields cannot run together.
    fn aad(&self) -> Vec<u8> {
        let mut a = b"palisade-keystore-record".to_vec();
        a.push(RECORD_VERSION);
        let scope = self.scope.to_string();
        for field in [
            self.handle.as_str().as_bytes(),
            scope.as_bytes(),
            self.label.as_bytes(),
        ] {
            a.extend_from_slice(&(field.len() as u32).to_be_bytes());
            a.extend_from_slice(field);
        }
        a.push(self.kind.code());
        a.push(self.extractable as u8);
        match self.public_key {
            Some(p) => {
                a.push(1);
                a.extend_from_slice(p);
            }
            None => a.push(0),
        }
        a
    }
}

impl Record {
    /// Seals `secret` under the KEK with the metadata as associated data (the older layout,
    /// one file per key: written now only by tests of its migration).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn seal(kek: &Kek, meta: &Meta<'_>, secret: &[u8]) -> Record {
        let mut nonce = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ct = kek
            .cipher()
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: secret,
                    aad: &meta.aad(),
                },
            )
            .expect("ChaCha20-Poly1305 encryption of a short buffer cannot fail");
        Record {
            v: RECORD_VERSION,
            handle: meta.handle.clone(),
            scope: meta.scope.clone(),
            kind: meta.kind,
            label: meta.label.to_owned(),
            public_key: meta.public_key.map(hex::encode),
            extractable: meta.extractable,
            nonce: hex::encode(nonce),
            sealed: hex::encode(ct),
        }
    }

    /// Parses a record file and opens its secret; any edit to metadata or ciphertext fails.
    pub(crate) fn open(
        kek: &Kek,
        file: &str,
        bytes: &[u8],
    ) -> Result<(Record, Zeroizing<Vec<u8>>), KeyError> {
        let malformed = |reason: String| KeyError::MalformedRecord {
            file: file.to_owned(),
            reason,
        };
        let rec: Record = serde_json::from_slice(bytes).map_err(|e| malformed(e.to_string()))?;
        if rec.v != RECORD_VERSION {
            return Err(malformed(format!("unsupported record version {}", rec.v)));
        }
        if KeyHandle::parse(rec.handle.as_str()).is_none() || format!("{}.key", rec.handle) != file
        {
            return Err(malformed("handle does not match the file name".into()));
        }
        let public: Option<[u8; 32]> = match &rec.public_key {
            None => None,
            Some(h) => Some(
                hex::decode(h)
                    .ok()
                    .and_then(|v| v.try_into().ok())
                    .ok_or_else(|| malformed("public_key is not 32 hex bytes".into()))?,
            ),
        };
        let nonce: [u8; 12] = hex::decode(&rec.nonce)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| malformed("nonce is not 12 hex bytes".into()))?;
        let ct = hex::decode(&rec.sealed).map_err(|_| malformed("sealed is not hex".into()))?;
        let meta = Meta {
            handle: &rec.handle,
            scope: &rec.scope,
            kind: rec.kind,
            label: &rec.label,
            public_key: public.as_ref(),
            extractable: rec.extractable,
        };
        let pt = kek
            .cipher()
            .decrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &ct,
                    aad: &meta.aad(),
                },
            )
            .map_err(|_| KeyError::TamperedRecord {
                file: file.to_owned(),
            })?;
        Ok((rec, Zeroizing::new(pt)))
    }
}

/// The file name of a handle's record (the older layout; tests write it).
#[cfg(test)]
pub(crate) fn record_file(handle: &KeyHandle) -> String {
    format!("{handle}.key")
}

/// Path used in error messages.
pub(crate) fn path_of(dir_path: &Path, name: &str) -> PathBuf {
    dir_path.join(name)
}
