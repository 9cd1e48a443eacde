//! The PKCS#11 keystore backend (SER-023, SER-010): keys generated and used inside a hardware
//! security module. Private and secret keys are created `CKA_SENSITIVE` and not
//! `CKA_EXTRACTABLE`, so the token itself refuses to hand them out; signing and MACs happen
//! in the token. Tested against SoftHSM2.
//!
//! Mapping: the handle is the object's `CKA_ID`; the scope and label are kept in `CKA_LABEL`
//! as `<scope>/<label>` (labels never contain `/`). A key pair shares one `CKA_ID`.
//! Supported: Ed25519 signing keys (generated in the token), Ed25519 public keys (imported),
//! HMAC secrets (generated or imported). X25519 agreement is not offered by this backend.

use super::{
    check_ed25519_public, validate_label, KeyError, KeyHandle, KeyInfo, KeyKind, KeyScope,
    KeyStore, HMAC_SECRET_LEN,
};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{
    Attribute, AttributeInfo, AttributeType, KeyType, ObjectClass, ObjectHandle,
};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use std::path::PathBuf;
use std::sync::Mutex;
use zeroize::Zeroizing;

/// `CKA_EC_PARAMS` for Ed25519: the printable string "edwards25519" (what SoftHSM2 and
/// PKCS#11 3.0 tokens accept).
const ED25519_PARAMS: &[u8] = b"\x13\x0cedwards25519";

/// Where the token is.
#[derive(Debug, Clone)]
pub struct Pkcs11Config {
    /// The PKCS#11 module, e.g. `/usr/lib/softhsm/libsofthsm2.so`.
    pub module: PathBuf,
    /// The label of the token to use.
    pub token_label: String,
    /// The user PIN.
    pub user_pin: String,
}

/// A keystore in a PKCS#11 token.
pub struct Pkcs11KeyStore {
    // The context must outlive the session; the session is not Sync, hence the mutex.
    session: Mutex<Session>,
    _ctx: Pkcs11,
}

fn hsm(operation: &'static str) -> impl FnOnce(cryptoki::error::Error) -> KeyError {
    move |e| KeyError::Hsm {
        operation,
        detail: e.to_string(),
    }
}

fn token_label(scope: &KeyScope, label: &str) -> Vec<u8> {
    format!("{scope}/{label}").into_bytes()
}

fn parse_label(raw: &[u8]) -> Option<(KeyScope, String)> {
    let s = std::str::from_utf8(raw).ok()?;
    let (scope, label) = s.rsplit_once('/')?;
    let scope = match scope {
        "gateway" => KeyScope::Gateway,
        other => KeyScope::App(other.strip_prefix("app:")?.to_owned()),
    };
    Some((scope, label.to_owned()))
}

/// The 32-byte key inside a `CKA_EC_POINT` (a DER OCTET STRING, or raw on some tokens).
fn ec_point(v: &[u8]) -> Option<[u8; 32]> {
    match v {
        [0x04, 0x20, rest @ ..] if rest.len() == 32 => rest.try_into().ok(),
        _ if v.len() == 32 => v.try_into().ok(),
        _ => None,
    }
}

impl Pkcs11KeyStore {
    /// Loads the module, finds the token by label and logs in as its user.
    pub fn open(cfg: &Pkcs11Config) -> Result<Self, KeyError> {
        let ctx = Pkcs11::new(&cfg.module).map_err(hsm("load module"))?;
        match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(())
            | Err(cryptoki::error::Error::Pkcs11(
                cryptoki::error::RvError::CryptokiAlreadyInitialized,
                _,
            )) => {}
            Err(e) => return Err(hsm("C_Initialize")(e)),
        }
        let slot = ctx
            .get_slots_with_initialized_token()
            .map_err(hsm("C_GetSlotList"))?
            .into_iter()
            .find(|s| {
                ctx.get_token_info(*s)
                    .is_ok_and(|t| t.label() == cfg.token_label)
            })
            .ok_or_else(|| KeyError::Hsm {
                operation: "find token",
                detail: format!("no token labelled {:?}", cfg.token_label),
            })?;
        let session = ctx.open_rw_session(slot).map_err(hsm("C_OpenSession"))?;
        session
            .login(UserType::User, Some(&AuthPin::from(cfg.user_pin.as_str())))
            .map_err(hsm("C_Login"))?;
        Ok(Pkcs11KeyStore {
            session: Mutex::new(session),
            _ctx: ctx,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Session> {
        self.session.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The objects with this handle, after checking the scope in their label.
    fn objects(
        &self,
        s: &Session,
        scope: &KeyScope,
        handle: &KeyHandle,
    ) -> Result<Vec<(ObjectClass, ObjectHandle)>, KeyError> {
        let found = s
            .find_objects(&[Attribute::Id(handle.as_str().as_bytes().to_vec())])
            .map_err(hsm("C_FindObjects"))?;
        let mut out = Vec::new();
        for o in found {
            let attrs = s
                .get_attributes(o, &[AttributeType::Class, AttributeType::Label])
                .map_err(hsm("C_GetAttributeValue"))?;
            let (mut class, mut owner) = (None, None);
            for a in attrs {
                match a {
                    Attribute::Class(c) => class = Some(c),
                    Attribute::Label(l) => owner = parse_label(&l).map(|(s, _)| s),
                    _ => {}
                }
            }
            if owner.as_ref() != Some(scope) {
                return Err(KeyError::OutOfScope {
                    handle: handle.clone(),
                    requested: scope.clone(),
                });
            }
            if let Some(c) = class {
                out.push((c, o));
            }
        }
        if out.is_empty() {
            return Err(KeyError::NotFound {
                handle: handle.clone(),
            });
        }
        Ok(out)
    }

    fn kind_of(objs: &[(ObjectClass, ObjectHandle)]) -> KeyKind {
        if objs.iter().any(|(c, _)| *c == ObjectClass::PRIVATE_KEY) {
            KeyKind::Ed25519Signing
        } else if objs.iter().any(|(c, _)| *c == ObjectClass::SECRET_KEY) {
            KeyKind::HmacSecret
        } else {
            KeyKind::Ed25519Public
        }
    }

    fn find(objs: &[(ObjectClass, ObjectHandle)], class: ObjectClass) -> Option<ObjectHandle> {
        objs.iter().find(|(c, _)| *c == class).map(|(_, o)| *o)
    }

    fn read_public(s: &Session, o: ObjectHandle) -> Result<[u8; 32], KeyError> {
        let attrs = s
            .get_attributes(o, &[AttributeType::EcPoint])
            .map_err(hsm("C_GetAttributeValue"))?;
        attrs
            .into_iter()
            .find_map(|a| {
                if let Attribute::EcPoint(p) = a {
                    ec_point(&p)
                } else {
                    None
                }
            })
            .ok_or(KeyError::Hsm {
                operation: "read CKA_EC_POINT",
                detail: "not an Ed25519 point".into(),
            })
    }
}

impl KeyStore for Pkcs11KeyStore {
    fn generate(
        &self,
        scope: &KeyScope,
        kind: KeyKind,
        label: &str,
    ) -> Result<KeyHandle, KeyError> {
        scope.validate()?;
        validate_label(label)?;
        let handle = KeyHandle::random();
        let id = Attribute::Id(handle.as_str().as_bytes().to_vec());
        let lab = Attribute::Label(token_label(scope, label));
        let s = self.lock();
        match kind {
            KeyKind::Ed25519Signing => {
                let public = [
                    Attribute::Token(true),
                    Attribute::Private(false),
                    Attribute::Verify(true),
                    Attribute::EcParams(ED25519_PARAMS.to_vec()),
                    id.clone(),
                    lab.clone(),
                ];
                let private = [
                    Attribute::Token(true),
                    Attribute::Private(true),
                    Attribute::Sign(true),
                    Attribute::Sensitive(true),
                    Attribute::Extractable(false),
                    id,
                    lab,
                ];
                s.generate_key_pair(&Mechanism::EccEdwardsKeyPairGen, &public, &private)
                    .map_err(hsm("C_GenerateKeyPair"))?;
            }
            KeyKind::HmacSecret => {
                let t = [
                    Attribute::Token(true),
                    Attribute::Private(true),
                    Attribute::Sign(true),
                    Attribute::Verify(true),
                    Attribute::Sensitive(true),
                    Attribute::Extractable(false),
                    Attribute::ValueLen(32u64.into()),
                    id,
                    lab,
                ];
                s.generate_key(&Mechanism::GenericSecretKeyGen, &t)
                    .map_err(hsm("C_GenerateKey"))?;
            }
            KeyKind::Ed25519Public | KeyKind::X25519 => {
                return Err(KeyError::Unsupported {
                    backend: "pkcs11",
                    what: "generating this key kind",
                })
            }
        }
        Ok(handle)
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
        let handle = KeyHandle::random();
        let id = Attribute::Id(handle.as_str().as_bytes().to_vec());
        let lab = Attribute::Label(token_label(scope, label));
        let t = match kind {
            KeyKind::Ed25519Public => {
                let pk: [u8; 32] = material.try_into().map_err(|_| KeyError::InvalidMaterial {
                    kind,
                    reason: "expected 32 bytes",
                })?;
                check_ed25519_public(&pk)?;
                let mut point = vec![0x04, 0x20];
                point.extend_from_slice(&pk);
                vec![
                    Attribute::Class(ObjectClass::PUBLIC_KEY),
                    Attribute::KeyType(KeyType::EC_EDWARDS),
                    Attribute::Token(true),
                    Attribute::Verify(true),
                    Attribute::EcParams(ED25519_PARAMS.to_vec()),
                    Attribute::EcPoint(point),
                    id,
                    lab,
                ]
            }
            KeyKind::HmacSecret => {
                if !HMAC_SECRET_LEN.contains(&material.len()) {
                    return Err(KeyError::InvalidMaterial {
                        kind,
                        reason: "HMAC secrets are 16 to 64 bytes",
                    });
                }
                vec![
                    Attribute::Class(ObjectClass::SECRET_KEY),
                    Attribute::KeyType(KeyType::GENERIC_SECRET),
                    Attribute::Token(true),
                    Attribute::Private(true),
                    Attribute::Sign(true),
                    Attribute::Verify(true),
                    Attribute::Sensitive(true),
                    Attribute::Extractable(false),
                    Attribute::Value(material.to_vec()),
                    id,
                    lab,
                ]
            }
            KeyKind::Ed25519Signing | KeyKind::X25519 => {
                return Err(KeyError::Unsupported {
                    backend: "pkcs11",
                    what: "importing private keys (generate them in the token)",
                })
            }
        };
        self.lock()
            .create_object(&t)
            .map_err(hsm("C_CreateObject"))?;
        Ok(handle)
    }

    fn sign(&self, scope: &KeyScope, handle: &KeyHandle, msg: &[u8]) -> Result<[u8; 64], KeyError> {
        let s = self.lock();
        let objs = self.objects(&s, scope, handle)?;
        let key =
            Self::find(&objs, ObjectClass::PRIVATE_KEY).ok_or_else(|| KeyError::WrongKind {
                handle: handle.clone(),
                expected: "an Ed25519 signing key",
                actual: Self::kind_of(&objs),
            })?;
        let sig = s
            .sign(
                &Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure)),
                key,
                msg,
            )
            .map_err(hsm("C_Sign"))?;
        sig.try_into().map_err(|_| KeyError::Hsm {
            operation: "C_Sign",
            detail: "signature is not 64 bytes".into(),
        })
    }

    fn verify(
        &self,
        scope: &KeyScope,
        handle: &KeyHandle,
        msg: &[u8],
        sig: &[u8; 64],
    ) -> Result<(), KeyError> {
        // Verification needs no secret: done in software with the token's public key, with the
        // same strict rules as the software backend.
        let pk = self.public_key(scope, handle)?;
        let vk = check_ed25519_public(&pk)?;
        vk.verify_strict(msg, &ed25519_dalek::Signature::from_bytes(sig))
            .map_err(|_| KeyError::BadSignature {
                handle: handle.clone(),
            })
    }

    fn hmac(&self, scope: &KeyScope, handle: &KeyHandle, msg: &[u8]) -> Result<[u8; 32], KeyError> {
        let s = self.lock();
        let objs = self.objects(&s, scope, handle)?;
        let key =
            Self::find(&objs, ObjectClass::SECRET_KEY).ok_or_else(|| KeyError::WrongKind {
                handle: handle.clone(),
                expected: "an HMAC secret",
                actual: Self::kind_of(&objs),
            })?;
        let mac = s
            .sign(&Mechanism::Sha256Hmac, key, msg)
            .map_err(hsm("C_Sign"))?;
        mac.try_into().map_err(|_| KeyError::Hsm {
            operation: "C_Sign",
            detail: "HMAC is not 32 bytes".into(),
        })
    }

    fn public_key(&self, scope: &KeyScope, handle: &KeyHandle) -> Result<[u8; 32], KeyError> {
        let s = self.lock();
        let objs = self.objects(&s, scope, handle)?;
        let o = Self::find(&objs, ObjectClass::PUBLIC_KEY).ok_or_else(|| KeyError::WrongKind {
            handle: handle.clone(),
            expected: "an asymmetric key",
            actual: Self::kind_of(&objs),
        })?;
        Self::read_public(&s, o)
    }

    fn agree(
        &self,
        _: &KeyScope,
        _: &KeyHandle,
        _: &[u8; 32],
    ) -> Result<Zeroizing<[u8; 32]>, KeyError> {
        Err(KeyError::Unsupported {
            backend: "pkcs11",
            what: "X25519 agreement",
        })
    }

    fn export_secret(
        &self,
        scope: &KeyScope,
        handle: &KeyHandle,
    ) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        // Ask the token for the value: a sensitive key's value is refused by the token itself.
        let s = self.lock();
        let objs = self.objects(&s, scope, handle)?;
        let Some(o) = Self::find(&objs, ObjectClass::PRIVATE_KEY)
            .or_else(|| Self::find(&objs, ObjectClass::SECRET_KEY))
        else {
            return Err(KeyError::WrongKind {
                handle: handle.clone(),
                expected: "a secret key",
                actual: Self::kind_of(&objs),
            });
        };
        match s
            .get_attribute_info(o, &[AttributeType::Value])
            .map_err(hsm("C_GetAttributeValue"))?
            .first()
        {
            Some(AttributeInfo::Available(_)) => {
                let v = s
                    .get_attributes(o, &[AttributeType::Value])
                    .map_err(hsm("C_GetAttributeValue"))?;
                match v.into_iter().next() {
                    Some(Attribute::Value(v)) => Ok(Zeroizing::new(v)),
                    _ => Err(KeyError::NotExtractable {
                        handle: handle.clone(),
                    }),
                }
            }
            _ => Err(KeyError::NotExtractable {
                handle: handle.clone(),
            }),
        }
    }

    fn list(&self, scope: &KeyScope) -> Result<Vec<KeyInfo>, KeyError> {
        let s = self.lock();
        // CKA_ID → (label, the objects sharing it, whether any is extractable).
        type Entry = (String, Vec<(ObjectClass, ObjectHandle)>, bool);
        let mut by_id: std::collections::BTreeMap<Vec<u8>, Entry> = Default::default();
        for o in s.find_objects(&[]).map_err(hsm("C_FindObjects"))? {
            let attrs = s
                .get_attributes(
                    o,
                    &[
                        AttributeType::Class,
                        AttributeType::Id,
                        AttributeType::Label,
                    ],
                )
                .map_err(hsm("C_GetAttributeValue"))?;
            let (mut class, mut id, mut lab) = (None, None, None);
            for a in attrs {
                match a {
                    Attribute::Class(c) => class = Some(c),
                    Attribute::Id(i) => id = Some(i),
                    Attribute::Label(l) => lab = parse_label(&l),
                    _ => {}
                }
            }
            let (Some(class), Some(id), Some((sc, label))) = (class, id, lab) else {
                continue;
            };
            if &sc != scope {
                continue;
            }
            let extractable = if class == ObjectClass::PUBLIC_KEY {
                false
            } else {
                s.get_attributes(o, &[AttributeType::Extractable])
                    .map_err(hsm("C_GetAttributeValue"))?
                    .into_iter()
                    .any(|a| matches!(a, Attribute::Extractable(true)))
            };
            let e = by_id.entry(id).or_insert((label, Vec::new(), false));
            e.1.push((class, o));
            e.2 |= extractable;
        }
        let mut out = Vec::new();
        for (id, (label, objs, extractable)) in by_id {
            let Some(handle) = std::str::from_utf8(&id).ok().and_then(KeyHandle::parse) else {
                continue;
            };
            let public_key = match Self::find(&objs, ObjectClass::PUBLIC_KEY) {
                Some(o) => Some(hex::encode(Self::read_public(&s, o)?)),
                None => None,
            };
            out.push(KeyInfo {
                handle,
                scope: scope.clone(),
                kind: Self::kind_of(&objs),
                label,
                public_key,
                extractable,
            });
        }
        out.sort_by(|a, b| a.label.cmp(&b.label).then_with(|| a.handle.cmp(&b.handle)));
        Ok(out)
    }

    fn delete(&self, scope: &KeyScope, handle: &KeyHandle) -> Result<(), KeyError> {
        let s = self.lock();
        for (_, o) in self.objects(&s, scope, handle)? {
            s.destroy_object(o).map_err(hsm("C_DestroyObject"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "pkcs11_tests.rs"]
mod tests;
