//! The software keystore, the embedded default backend.
//!
//! Secrets live in memory as zeroize-on-drop types (ed25519-dalek and x25519-dalek zeroize
//! their secrets; HMAC secrets are `Zeroizing`), and at rest as sealed records (see `sealed`).

use super::sealed::{self, Kek, Meta, Record};
use super::{
    check_ed25519_public, validate_label, KeyError, KeyHandle, KeyInfo, KeyKind, KeyScope,
    KeyStore, HMAC_SECRET_LEN,
};
use cap_std::fs::Dir;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use hmac::Mac;
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::RwLock;
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

struct Entry {
    scope: KeyScope,
    kind: KeyKind,
    label: String,
    extractable: bool,
    secret: Secret,
}

struct Persist {
    dir: Dir,
    path: PathBuf,
    kek: Kek,
}

/// The software keystore: in memory only ([`SoftwareKeyStore::in_memory`]) or backed by a
/// directory of sealed records ([`SoftwareKeyStore::open`]).
pub struct SoftwareKeyStore {
    persist: Option<Persist>,
    keys: RwLock<HashMap<KeyHandle, Entry>>,
}

impl SoftwareKeyStore {
    /// A store whose keys vanish with it (tests, simulations).
    pub fn in_memory() -> Self {
        SoftwareKeyStore {
            persist: None,
            keys: RwLock::new(HashMap::new()),
        }
    }

    /// Opens (creating if needed, mode 0700) a key directory: loads or creates `master.key`
    /// and opens every `*.key` record. A record that fails authentication stops the open:
    /// a keystore that was tampered with is not used (SER-003).
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
        let mut keys = HashMap::new();
        for ent in dir.entries().map_err(KeyError::io(path))? {
            let ent = ent.map_err(KeyError::io(path))?;
            let name = ent.file_name().to_string_lossy().into_owned();
            if !name.ends_with(".key") || name == sealed::MASTER_FILE || name.starts_with('.') {
                continue;
            }
            let mut bytes = Vec::new();
            let p = sealed::path_of(path, &name);
            dir.open(&name)
                .and_then(|f| f.take(1 << 16).read_to_end(&mut bytes))
                .map_err(KeyError::io(&p))?;
            let (rec, material) = Record::open(&kek, &name, &bytes)?;
            let secret = Secret::from_material(rec.kind, &material)?;
            keys.insert(
                rec.handle,
                Entry {
                    scope: rec.scope,
                    kind: rec.kind,
                    label: rec.label,
                    extractable: rec.extractable,
                    secret,
                },
            );
        }
        tracing::debug!(keys = keys.len(), dir = %path.display(), "keystore opened");
        Ok(SoftwareKeyStore {
            persist: Some(Persist {
                dir,
                path: path.to_owned(),
                kek,
            }),
            keys: RwLock::new(keys),
        })
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
        if let Some(p) = &self.persist {
            let public = secret.public();
            let meta = Meta {
                handle: &handle,
                scope,
                kind,
                label,
                public_key: public.as_ref(),
                extractable,
            };
            let rec = Record::seal(&p.kek, &meta, &secret.material());
            let json = serde_json::to_vec_pretty(&rec).expect("a record always serializes");
            sealed::write_atomic(&p.dir, &p.path, &sealed::record_file(&handle), &json)?;
        }
        let entry = Entry {
            scope: scope.clone(),
            kind,
            label: label.to_owned(),
            extractable,
            secret,
        };
        self.keys
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(handle.clone(), entry);
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
        let e = keys.get(handle).ok_or_else(|| KeyError::NotFound {
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
            .iter()
            .filter(|(_, e)| &e.scope == scope)
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
        if let Some(p) = &self.persist {
            let name = sealed::record_file(handle);
            p.dir
                .remove_file(&name)
                .map_err(KeyError::io(sealed::path_of(&p.path, &name)))?;
        }
        // Dropping the entry zeroizes its secret.
        self.keys
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(handle);
        Ok(())
    }
}

#[cfg(test)]
#[path = "software_tests.rs"]
mod tests;
