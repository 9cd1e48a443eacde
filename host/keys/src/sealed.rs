//! Keys at rest (SER-002/003): the master secret file and sealed key records.
//!
//! The master secret (32 random bytes, file mode 0600) never encrypts anything itself: a
//! key-encryption key is derived from it with HKDF-SHA256, and every key record is sealed with
//! ChaCha20-Poly1305 under that key. The record's metadata (handle, scope, kind, label, public
//! key) is the AEAD's associated data, so moving a key to another application's scope or
//! relabelling it by editing the file breaks authentication.

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
    /// Seals `secret` under the KEK with the metadata as associated data.
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

/// The file name of a handle's record.
pub(crate) fn record_file(handle: &KeyHandle) -> String {
    format!("{handle}.key")
}

/// Path used in error messages.
pub(crate) fn path_of(dir_path: &Path, name: &str) -> PathBuf {
    dir_path.join(name)
}
