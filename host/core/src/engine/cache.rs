//! The precompiled-artifact cache.
//!
//! Compiling a plugin takes tens of milliseconds; loading its precompiled artifact takes well
//! under one. But deserializing an artifact runs native code that was produced elsewhere, so a
//! changed byte on disk must never reach [`Component::deserialize`] (SER-013). Each artifact
//! is stored with an HMAC-SHA-256 under a per-cache secret key over the module's hash and
//! the artifact bytes; it is checked before every load. Artifacts live in a folder per engine
//! compatibility hash (wasmtime version and settings), so an upgraded gateway never loads an
//! artifact made by another engine.
//!
//! All file access goes through a cap-std directory handle: nothing here can touch a path
//! outside the cache folder.

use std::hash::{Hash, Hasher};
use std::io::{self, Read};
use std::path::Path;

use cap_std::ambient_authority;
use cap_std::fs::{Dir, OpenOptions};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use wasmtime::component::Component;

type HmacSha256 = Hmac<Sha256>;

const KEY_FILE: &str = "cache.key";
const MAC_LEN: usize = 32;

/// What went wrong with the cache itself. A plugin whose artifact cannot be used is compiled
/// from its (verified) module bytes instead.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError {
    /// The cache folder cannot be opened or created.
    #[error("cannot open the artifact cache folder {path}")]
    Open {
        /** The folder. */
        path: String,
        /** The underlying error. */
        source: io::Error,
    },
    /// The key that authenticates artifacts cannot be read or created.
    #[error("cannot read or create the cache key {KEY_FILE}: {0}")]
    Key(io::Error),
    /// An artifact cannot be read or written.
    #[error("cannot read or write artifact {name}")]
    Io {
        /** The name. */
        name: String,
        /** The underlying error. */
        source: io::Error,
    },
    /// An artifact changed on disk (failed its integrity check).
    #[error("artifact {name} failed its integrity check (changed on disk); it was discarded")]
    Tampered {
        /** The name. */
        name: String,
    },
    /// wasmtime could not serialize or deserialize an artifact.
    #[error("artifact {name} could not be serialized or deserialized: {reason}")]
    Format {
        /** The name. */
        name: String,
        /** Why, in words. */
        reason: String,
    },
}

/// A folder of precompiled artifacts for one engine configuration.
pub struct ArtifactCache {
    dir: Dir,
    key: [u8; 32],
}

impl ArtifactCache {
    /// Opens (creating if needed) the cache under `root` for this engine's compatibility hash.
    pub fn open(root: &Path, engine: &wasmtime::Engine) -> Result<ArtifactCache, CacheError> {
        let open_error = |source| CacheError::Open {
            path: root.display().to_string(),
            source,
        };
        std::fs::create_dir_all(root).map_err(open_error)?;
        let root_dir = Dir::open_ambient_dir(root, ambient_authority()).map_err(open_error)?;
        let key = load_or_create_key(&root_dir)?;
        let folder = compatibility_folder(engine);
        root_dir.create_dir_all(&folder).map_err(open_error)?;
        let dir = root_dir.open_dir(&folder).map_err(open_error)?;
        Ok(ArtifactCache { dir, key })
    }

    /// The artifact for the module with this SHA-256, if present and intact.
    pub fn load(
        &self,
        engine: &wasmtime::Engine,
        module_sha256: &[u8; 32],
    ) -> Result<Option<Component>, CacheError> {
        let name = artifact_name(module_sha256);
        let mut file = match self.dir.open(&name) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(CacheError::Io { name, source }),
        };
        let mut stored = Vec::new();
        file.read_to_end(&mut stored)
            .map_err(|source| CacheError::Io {
                name: name.clone(),
                source,
            })?;
        if stored.len() < MAC_LEN || !self.mac_matches(module_sha256, &stored) {
            let _ = self.dir.remove_file(&name);
            return Err(CacheError::Tampered { name });
        }
        // SAFETY: the bytes carry a valid MAC under this cache's secret key, so they are
        // exactly what `store` wrote from `Component::serialize` of this engine
        // configuration (the folder is per compatibility hash, and wasmtime re-checks it).
        let component =
            unsafe { Component::deserialize(engine, &stored[MAC_LEN..]) }.map_err(|error| {
                CacheError::Format {
                    name: name.clone(),
                    reason: format!("{error:#}"),
                }
            })?;
        Ok(Some(component))
    }

    /// Stores the artifact of a freshly compiled component (temporary file, then rename, so
    /// a crash never leaves a half-written artifact under the real name).
    pub fn store(&self, component: &Component, module_sha256: &[u8; 32]) -> Result<(), CacheError> {
        let artifact = component.serialize().map_err(|error| CacheError::Format {
            name: artifact_name(module_sha256),
            reason: format!("{error:#}"),
        })?;
        self.store_artifact(&artifact, module_sha256)
    }

    /// Stores an already serialized artifact (one the compile helper made).
    pub fn store_artifact(
        &self,
        artifact: &[u8],
        module_sha256: &[u8; 32],
    ) -> Result<(), CacheError> {
        let name = artifact_name(module_sha256);
        let mut bytes = Vec::with_capacity(MAC_LEN + artifact.len());
        bytes.extend_from_slice(&self.mac(module_sha256, artifact));
        bytes.extend_from_slice(artifact);
        let temporary = format!("{name}.tmp-{}", std::process::id());
        let io_error = |source| CacheError::Io {
            name: name.clone(),
            source,
        };
        self.dir.write(&temporary, &bytes).map_err(io_error)?;
        self.dir
            .rename(&temporary, &self.dir, &name)
            .map_err(io_error)?;
        Ok(())
    }

    fn mac(&self, module_sha256: &[u8; 32], artifact: &[u8]) -> [u8; 32] {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(module_sha256);
        mac.update(artifact);
        mac.finalize().into_bytes().into()
    }

    fn mac_matches(&self, module_sha256: &[u8; 32], stored: &[u8]) -> bool {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(module_sha256);
        mac.update(&stored[MAC_LEN..]);
        mac.verify_slice(&stored[..MAC_LEN]).is_ok()
    }
}

fn artifact_name(module_sha256: &[u8; 32]) -> String {
    format!("{}.cwasm", hex::encode(module_sha256))
}

/// A folder name that changes whenever wasmtime's version or any setting affecting compiled
/// code changes.
fn compatibility_folder(engine: &wasmtime::Engine) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    format!("engine-{:016x}", hasher.finish())
}

fn load_or_create_key(dir: &Dir) -> Result<[u8; 32], CacheError> {
    match dir.read(KEY_FILE) {
        Ok(bytes) if bytes.len() == 32 => {
            let mut key = [0u8; 32];
            key.copy_from_slice(&bytes);
            return Ok(key);
        }
        Ok(_) => {
            // A key of the wrong length is as good as no key: start over, which only
            // invalidates the artifacts (they are recompiled).
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(CacheError::Key(error)),
    }
    let mut key = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut key);
    let temporary = format!("{KEY_FILE}.tmp-{}", std::process::id());
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use cap_std::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = dir
        .open_with(&temporary, &options)
        .map_err(CacheError::Key)?;
    io::Write::write_all(&mut file, &key).map_err(CacheError::Key)?;
    file.sync_all().map_err(CacheError::Key)?;
    dir.rename(&temporary, dir, KEY_FILE)
        .map_err(CacheError::Key)?;
    Ok(key)
}
