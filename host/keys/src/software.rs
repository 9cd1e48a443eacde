//! The software keystore, the embedded default backend.
//!
//! Secrets live in memory as zeroize-on-drop types (ed25519-dalek and x25519-dalek zeroize
//! their secrets; HMAC secrets are `Zeroizing`), and at rest as sealed records (see `sealed`).

use super::sealed::{self, IndexEntry, Kek, Record};
use super::{
    check_batch, check_ed25519_public, validate_label, KeyError, KeyHandle, KeyInfo, KeyKind,
    KeyRequest, KeyScope, KeyStore, HMAC_SECRET_LEN,
};
use cap_std::fs::{Dir, OpenOptions, OpenOptionsExt};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use hmac::Mac;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};
use zeroize::Zeroizing;

enum Secret {
    Ed25519(SigningKey),
    Ed25519Public(VerifyingKey),
    X25519(x25519_dalek::StaticSecret),
    Hmac(Zeroizing<Vec<u8>>),
}

impl Secret {
    /// Builds the in-memory key from raw material, checking its form.
    fn from_material(kind: KeyKind, m: &[u8]) -> Result<Secret, KeyError> {
        let bad = |reason| KeyError::InvalidMaterial { kind, reason };
        let arr = |m: &[u8]| -> Result<Zeroizing<[u8; 32]>, KeyError> {
            Ok(Zeroizing::new(
                m.try_into().map_err(|_| bad("expected 32 bytes"))?,
            ))
        };
        Ok(match kind {
            KeyKind::Ed25519Signing => Secret::Ed25519(SigningKey::from_bytes(&*arr(m)?)),
            KeyKind::Ed25519Public => Secret::Ed25519Public(check_ed25519_public(&*arr(m)?)?),
            KeyKind::X25519 => Secret::X25519(x25519_dalek::StaticSecret::from(*arr(m)?)),
            KeyKind::HmacSecret => {
                if !HMAC_SECRET_LEN.contains(&m.len()) {
                    return Err(bad("HMAC secrets are 16 to 64 bytes"));
                }
                Secret::Hmac(Zeroizing::new(m.to_vec()))
            }
        })
    }

    fn generate(kind: KeyKind) -> Result<Secret, KeyError> {
        let mut rng = rand::rngs::OsRng;
        Ok(match kind {
            KeyKind::Ed25519Signing => Secret::Ed25519(SigningKey::generate(&mut rng)),
            KeyKind::X25519 => Secret::X25519(x25519_dalek::StaticSecret::random_from_rng(rng)),
            KeyKind::HmacSecret => {
                let mut k = Zeroizing::new(vec![0u8; 32]);
                rand::RngCore::fill_bytes(&mut rng, &mut k);
                Secret::Hmac(k)
            }
            KeyKind::Ed25519Public => {
                return Err(KeyError::Unsupported {
                    backend: "software",
                    what: "generating a public key without its private half (import it instead)",
                })
            }
        })
    }

    fn material(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(match self {
            Secret::Ed25519(k) => k.to_bytes().to_vec(),
            Secret::Ed25519Public(k) => k.to_bytes().to_vec(),
            Secret::X25519(k) => k.to_bytes().to_vec(),
            Secret::Hmac(k) => k.to_vec(),
        })
    }

    fn public(&self) -> Option<[u8; 32]> {
        match self {
            Secret::Ed25519(k) => Some(k.verifying_key().to_bytes()),
            Secret::Ed25519Public(k) => Some(k.to_bytes()),
            Secret::X25519(k) => Some(x25519_dalek::PublicKey::from(k).to_bytes()),
            Secret::Hmac(_) => None,
        }
    }
}

/// The most keys one software store holds. It bounds the index every start reads and every
/// key creation rewrites (at most ~330 bytes a key, so ≤ ~33 MB); a gateway uses one key per
/// application plus its `[[app.key]]`s, so this is ample for 10,000 applications.
pub const MAX_SOFTWARE_KEYS: usize = 100_000;

struct Entry {
    scope: KeyScope,
    kind: KeyKind,
    label: String,
    extractable: bool,
    secret: Secret,
}

impl Entry {
    fn from_index(e: &IndexEntry) -> Result<Entry, KeyError> {
        Ok(Entry {
            scope: e.scope.clone(),
            kind: e.kind,
            label: e.label.clone(),
            extractable: e.extractable,
            secret: Secret::from_material(e.kind, &e.material).map_err(|error| {
                KeyError::MalformedRecord {
                    file: sealed::INDEX_FILE.to_owned(),
                    reason: format!("key {}: {error}", e.handle),
                }
            })?,
        })
    }

    fn to_index(&self, handle: &KeyHandle) -> IndexEntry {
        IndexEntry {
            handle: handle.clone(),
            scope: self.scope.clone(),
            kind: self.kind,
            label: self.label.clone(),
            extractable: self.extractable,
            material: self.secret.material(),
        }
    }
}

/// The keys in memory, by handle and by scope: a gateway lists each application's keys at
/// start, which with 10,000 applications must not scan every key each time.
#[derive(Default)]
struct Keys {
    by_handle: HashMap<KeyHandle, Entry>,
    by_scope: HashMap<KeyScope, BTreeSet<KeyHandle>>,
}

impl Keys {
    fn insert(&mut self, handle: KeyHandle, entry: Entry) {
        self.remove(&handle);
        self.by_scope
            .entry(entry.scope.clone())
            .or_default()
            .insert(handle.clone());
        self.by_handle.insert(handle, entry);
    }

    fn remove(&mut self, handle: &KeyHandle) {
        if let Some(old) = self.by_handle.remove(handle) {
            if let Some(set) = self.by_scope.get_mut(&old.scope) {
                set.remove(handle);
                if set.is_empty() {
                    self.by_scope.remove(&old.scope);
                }
            }
        }
    }
}

struct Persist {
    dir: Dir,
    path: PathBuf,
    kek: Kek,
}

/// An exclusive lock on the key directory's lock file, released on drop.
struct DirLock(std::fs::File);

impl Drop for DirLock {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

impl Persist {
    fn lock(&self) -> Result<DirLock, KeyError> {
        let path = self.path.join(sealed::LOCK_FILE);
        let mut opts = OpenOptions::new();
        opts.read(true).write(true).create(true).mode(0o600);
        let file = self
            .dir
            .open_with(sealed::LOCK_FILE, &opts)
            .map_err(KeyError::io(&path))?
            .into_std();
        file.lock().map_err(KeyError::io(&path))?;
        Ok(DirLock(file))
    }

    /// The index's entries, or `None` when there is no index yet.
    fn read_index(&self) -> Result<Option<Vec<IndexEntry>>, KeyError> {
        let path = self.path.join(sealed::INDEX_FILE);
        let mut file = match self.dir.open(sealed::INDEX_FILE) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(KeyError::Io { path, source: e }),
        };
        let mut bytes = Vec::new();
        Read::by_ref(&mut file)
            .take(sealed::MAX_INDEX_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(KeyError::io(&path))?;
        sealed::open_index(&self.kek, &bytes).map(Some)
    }

    /// Replaces the index (temporary file, fsync, rename, fsync of the directory): a crash
    /// leaves either the old index or the new one, never a mix.
    fn write_index<'a>(
        &self,
        entries: impl ExactSizeIterator<Item = &'a IndexEntry>,
    ) -> Result<(), KeyError> {
        if entries.len() > MAX_SOFTWARE_KEYS {
            return Err(KeyError::TooManyKeys {
                held: entries.len(),
                limit: MAX_SOFTWARE_KEYS,
            });
        }
        let bytes = sealed::seal_index(&self.kek, entries);
        sealed::write_atomic(&self.dir, &self.path, sealed::INDEX_FILE, &bytes)?;
        sealed::sync_dir(&self.path)
    }
}

/// The software keystore: in memory only ([`SoftwareKeyStore::in_memory`]) or backed by a
/// directory holding one sealed index of every key ([`SoftwareKeyStore::open`]).
pub struct SoftwareKeyStore {
    persist: Option<Persist>,
    keys: RwLock<Keys>,
    /// Serialises this process's writers, so that the memory lock is held only to apply a
    /// write that is already durable (decisions reading keys never wait for an fsync).
    writer: Mutex<()>,
}

impl SoftwareKeyStore {
    /// A store whose keys vanish with it (tests, simulations).
    pub fn in_memory() -> Self {
        SoftwareKeyStore {
            persist: None,
            keys: RwLock::new(Keys::default()),
            writer: Mutex::new(()),
        }
    }

    /// Opens (creating if needed, mode 0700) a key directory: loads or creates `master.key`
    /// and opens the sealed index `keys.index`. Anything that fails authentication stops the
    /// open: a keystore that was tampered with is not used (SER-003).
    ///
    /// A store of the older layout (one sealed `<handle>.key` record per key) is migrated
    /// once: every record is opened and checked as before, merged into the index, and the
    /// index made durable before the old files are removed, so a crash at any point leaves
    /// every key readable (the next open finishes the job).
    pub fn open(path: &Path) -> Result<Self, KeyError> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .map_err(KeyError::io(path))?;
        let dir = Dir::open_ambient_dir(path, cap_std::ambient_authority())
            .map_err(KeyError::io(path))?;
        let kek = sealed::load_or_create_master(&dir, path)?;
        let persist = Persist {
            dir,
            path: path.to_owned(),
            kek,
        };
        let lock = persist.lock()?;
        let index = persist.read_index()?;
        let had_index = index.is_some();
        let mut entries: Vec<IndexEntry> = index.unwrap_or_default();
        let mut known: HashSet<KeyHandle> = entries.iter().map(|e| e.handle.clone()).collect();
        let mut legacy = Vec::new();
        let mut migrated = 0usize;
        for ent in persist.dir.entries().map_err(KeyError::io(path))? {
            let ent = ent.map_err(KeyError::io(path))?;
            let name = ent.file_name().to_string_lossy().into_owned();
            if name.starts_with(&format!(".{}.tmp-", sealed::INDEX_FILE)) {
                // A write that crashed before its rename (writers hold the lock we hold).
                let _ = persist.dir.remove_file(&name);
                continue;
            }
            if !name.ends_with(".key") || name == sealed::MASTER_FILE || name.starts_with('.') {
                continue;
            }
            let mut bytes = Vec::new();
            let p = sealed::path_of(path, &name);
            persist
                .dir
                .open(&name)
                .and_then(|f| f.take(1 << 16).read_to_end(&mut bytes))
                .map_err(KeyError::io(&p))?;
            let (rec, material) = Record::open(&persist.kek, &name, &bytes)?;
            Secret::from_material(rec.kind, &material)?;
            if known.insert(rec.handle.clone()) {
                migrated += 1;
                entries.push(IndexEntry {
                    handle: rec.handle,
                    scope: rec.scope,
                    kind: rec.kind,
                    label: rec.label,
                    extractable: rec.extractable,
                    material,
                });
            }
            legacy.push(name);
        }
        if !legacy.is_empty() {
            if migrated > 0 || !had_index {
                persist.write_index(entries.iter())?;
            }
            // The old files go only once the index holding their keys is durable.
            for name in &legacy {
                persist
                    .dir
                    .remove_file(name)
                    .map_err(KeyError::io(sealed::path_of(path, name)))?;
            }
            sealed::sync_dir(path)?;
            tracing::info!(
                records = legacy.len(),
                migrated,
                dir = %path.display(),
                "keystore: one file per key migrated into {}",
                sealed::INDEX_FILE
            );
        }
        drop(lock);
        let mut keys = Keys::default();
        for e in &entries {
            keys.insert(e.handle.clone(), Entry::from_index(e)?);
        }
        tracing::debug!(keys = keys.by_handle.len(), dir = %path.display(), "keystore opened");
        Ok(SoftwareKeyStore {
            persist: Some(persist),
            keys: RwLock::new(keys),
            writer: Mutex::new(()),
        })
    }

    /// Makes `add` and the removal of `remove` durable (for a persistent store) and then
    /// visible. The index on disk is re-read under the directory lock and changed, not
    /// rewritten from memory, so keys another process added meanwhile are kept (and become
    /// visible here too).
    fn commit(
        &self,
        add: Vec<(KeyHandle, Entry)>,
        remove: Option<&KeyHandle>,
    ) -> Result<(), KeyError> {
        let _writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let mut others = Vec::new();
        if let Some(p) = &self.persist {
            let _lock = p.lock()?;
            let mut entries = p.read_index()?.unwrap_or_default();
            if let Some(h) = remove {
                entries.retain(|e| &e.handle != h);
            }
            {
                let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
                for e in &entries {
                    if !keys.by_handle.contains_key(&e.handle) && Some(&e.handle) != remove {
                        others.push((e.handle.clone(), Entry::from_index(e)?));
                    }
                }
            }
            entries.extend(add.iter().map(|(h, e)| e.to_index(h)));
            p.write_index(entries.iter())?;
        } else {
            let held = self
                .keys
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .by_handle
                .len();
            if held + add.len() > MAX_SOFTWARE_KEYS {
                return Err(KeyError::TooManyKeys {
                    held: held + add.len(),
                    limit: MAX_SOFTWARE_KEYS,
                });
            }
        }
        let mut keys = self.keys.write().unwrap_or_else(|e| e.into_inner());
        if let Some(h) = remove {
            // Dropping the entry zeroizes its secret.
            keys.remove(h);
        }
        for (h, e) in others.into_iter().chain(add) {
            keys.insert(h, e);
        }
        Ok(())
    }

    fn insert(
        &self,
        scope: &KeyScope,
        kind: KeyKind,
        label: &str,
        extractable: bool,
        secret: Secret,
    ) -> Result<KeyHandle, KeyError> {
        let handle = KeyHandle::random();
        let entry = Entry {
            scope: scope.clone(),
            kind,
            label: label.to_owned(),
            extractable,
            secret,
        };
        self.commit(vec![(handle.clone(), entry)], None)?;
        Ok(handle)
    }

    /// Runs `f` on the entry of `handle` after checking that it belongs to `scope`.
    fn with<T>(
        &self,
        scope: &KeyScope,
        handle: &KeyHandle,
        f: impl FnOnce(&Entry) -> Result<T, KeyError>,
    ) -> Result<T, KeyError> {
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        let e = keys
            .by_handle
            .get(handle)
            .ok_or_else(|| KeyError::NotFound {
                handle: handle.clone(),
            })?;
        if &e.scope != scope {
            tracing::warn!(%handle, requested = %scope, "key used outside its scope");
            return Err(KeyError::OutOfScope {
                handle: handle.clone(),
                requested: scope.clone(),
            });
        }
        f(e)
    }
}

fn wrong(handle: &KeyHandle, expected: &'static str, actual: KeyKind) -> KeyError {
    KeyError::WrongKind {
        handle: handle.clone(),
        expected,
        actual,
    }
}

impl KeyStore for SoftwareKeyStore {
    fn generate(
        &self,
        scope: &KeyScope,
        kind: KeyKind,
        label: &str,
    ) -> Result<KeyHandle, KeyError> {
        scope.validate()?;
        validate_label(label)?;
        self.insert(scope, kind, label, false, Secret::generate(kind)?)
    }

    fn generate_many(&self, requests: &[KeyRequest]) -> Result<Vec<KeyHandle>, KeyError> {
        check_batch(requests)?;
        let mut add = Vec::with_capacity(requests.len());
        for r in requests {
            let entry = Entry {
                scope: r.scope.clone(),
                kind: r.kind,
                label: r.label.clone(),
                extractable: false,
                secret: Secret::generate(r.kind)?,
            };
            add.push((KeyHandle::random(), entry));
        }
        let handles = add.iter().map(|(h, _)| h.clone()).collect();
        if !add.is_empty() {
            self.commit(add, None)?;
        }
        Ok(handles)
    }

    fn import(
        &self,
        scope: &KeyScope,
        kind: KeyKind,
        label: &str,
        material: &[u8],
    ) -> Result<KeyHandle, KeyError> {
        scope.validate()?;
        validate_label(label)?;
        self.insert(
            scope,
            kind,
            label,
            true,
            Secret::from_material(kind, material)?,
        )
    }

    fn sign(&self, scope: &KeyScope, handle: &KeyHandle, msg: &[u8]) -> Result<[u8; 64], KeyError> {
        self.with(scope, handle, |e| match &e.secret {
            Secret::Ed25519(k) => Ok(k.sign(msg).to_bytes()),
            _ => Err(wrong(handle, "an Ed25519 signing key", e.kind)),
        })
    }

    fn verify(
        &self,
        scope: &KeyScope,
        handle: &KeyHandle,
        msg: &[u8],
        sig: &[u8; 64],
    ) -> Result<(), KeyError> {
        self.with(scope, handle, |e| {
            let vk = match &e.secret {
                Secret::Ed25519(k) => k.verifying_key(),
                Secret::Ed25519Public(k) => *k,
                _ => return Err(wrong(handle, "an Ed25519 key", e.kind)),
            };
            vk.verify_strict(msg, &ed25519_dalek::Signature::from_bytes(sig))
                .map_err(|_| KeyError::BadSignature {
                    handle: handle.clone(),
                })
        })
    }

    fn hmac(&self, scope: &KeyScope, handle: &KeyHandle, msg: &[u8]) -> Result<[u8; 32], KeyError> {
        self.with(scope, handle, |e| match &e.secret {
            Secret::Hmac(k) => {
                let mut m = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(k)
                    .expect("HMAC accepts any key length");
                m.update(msg);
                Ok(m.finalize().into_bytes().into())
            }
            _ => Err(wrong(handle, "an HMAC secret", e.kind)),
        })
    }

    fn public_key(&self, scope: &KeyScope, handle: &KeyHandle) -> Result<[u8; 32], KeyError> {
        self.with(scope, handle, |e| {
            e.secret
                .public()
                .ok_or_else(|| wrong(handle, "an asymmetric key", e.kind))
        })
    }

    fn agree(
        &self,
        scope: &KeyScope,
        handle: &KeyHandle,
        peer_public: &[u8; 32],
    ) -> Result<Zeroizing<[u8; 32]>, KeyError> {
        self.with(scope, handle, |e| match &e.secret {
            Secret::X25519(k) => {
                let shared = k.diffie_hellman(&x25519_dalek::PublicKey::from(*peer_public));
                if !shared.was_contributory() {
                    return Err(KeyError::InvalidMaterial {
                        kind: KeyKind::X25519,
                        reason: "peer public key is a low-order point",
                    });
                }
                Ok(Zeroizing::new(shared.to_bytes()))
            }
            _ => Err(wrong(handle, "an X25519 key", e.kind)),
        })
    }

    fn export_secret(
        &self,
        scope: &KeyScope,
        handle: &KeyHandle,
    ) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        self.with(scope, handle, |e| {
            if !e.extractable {
                return Err(KeyError::NotExtractable {
                    handle: handle.clone(),
                });
            }
            Ok(e.secret.material())
        })
    }

    fn list(&self, scope: &KeyScope) -> Result<Vec<KeyInfo>, KeyError> {
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<KeyInfo> = keys
            .by_scope
            .get(scope)
            .into_iter()
            .flatten()
            .filter_map(|h| keys.by_handle.get(h).map(|e| (h, e)))
            .map(|(h, e)| KeyInfo {
                handle: h.clone(),
                scope: e.scope.clone(),
                kind: e.kind,
                label: e.label.clone(),
                public_key: e.secret.public().map(hex::encode),
                extractable: e.extractable,
            })
            .collect();
        out.sort_by(|a, b| a.label.cmp(&b.label).then_with(|| a.handle.cmp(&b.handle)));
        Ok(out)
    }

    fn delete(&self, scope: &KeyScope, handle: &KeyHandle) -> Result<(), KeyError> {
        self.with(scope, handle, |_| Ok(()))?;
        self.commit(Vec::new(), Some(handle))
    }
}

#[cfg(test)]
#[path = "software_tests.rs"]
mod tests;
