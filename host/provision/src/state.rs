//! The gateway's provisioning state: replay protection (last sequence per provider, bundle ids
//! seen, SER-012), what has been provisioned and by whom (devices, groups, the key names of
//! each application and the keystore handles behind them), and crash-recovery notes.
//!
//! The state is one JSON file replaced atomically (temporary file, fsync, rename): the rename
//! is the commit point of every bundle, so a crash leaves either the old state or the new one.

use super::error::ProvisionError;
use cap_std::fs::{Dir, OpenOptions, OpenOptionsExt};
use palisade_keys::{KeyHandle, KeyKind};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

const STATE_FILE: &str = "state.json";
const LOCK_FILE: &str = "state.lock";
const STATE_VERSION: u8 = 1;
/// A state file larger than this is refused as corrupt (SER-001).
const MAX_STATE_LEN: u64 = 256 << 20;

/// Replay protection for one provider (SER-012).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderProgress {
    /// The highest sequence applied; the next bundle must be above it.
    pub last_sequence: u64,
    /// The id (hex) of that bundle.
    pub last_bundle: String,
    /// When it was applied (gateway clock, Unix seconds).
    pub applied_at: u64,
}

/// A provisioned device key and its owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRecord {
    /// Ed25519 public key, hex.
    pub key: String,
    /// The provider that owns the device: no other provider may re-key it.
    pub provider: String,
}

/// A gateway-scoped group and its owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRecord {
    /// The provider that owns the group.
    pub provider: String,
    /// Its member device ids.
    pub members: BTreeSet<String>,
}

/// Which keystore key stands behind an application's key name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppKeyRecord {
    /// The keystore handle (scope: the application).
    pub handle: KeyHandle,
    /// HMAC secret or Ed25519 public key.
    pub kind: KeyKind,
}

/// A keystore key to delete: superseded by a newer one (after commit) or imported by an apply
/// that did not commit (crash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StrayKey {
    /// Its application.
    pub app: String,
    /// Its handle, if known; `None` means "every key of `app` labelled `name` that the index
    /// does not point to" (imports in flight when the gateway stopped).
    pub handle: Option<KeyHandle>,
    /// Its label (the key name).
    pub name: String,
}

/// Everything provisioning remembers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvisionState {
    /// Format version of this file.
    pub v: u8,
    /// Provider id → replay protection.
    pub providers: BTreeMap<String, ProviderProgress>,
    /// Bundle ids (hex) applied and not yet expired → their expiry.
    pub seen: BTreeMap<String, u64>,
    /// Device id → key and owner.
    pub devices: BTreeMap<String, DeviceRecord>,
    /// The gateway's own groups.
    pub gateway_groups: BTreeMap<String, GroupRecord>,
    /// App → group → members.
    pub app_groups: BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
    /// App → originator → position (issue 13.7). Absent in states written before it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub app_positions: BTreeMap<String, BTreeMap<String, super::Position>>,
    /// App → key name → keystore key. Plugins' key names resolve through this index.
    pub app_keys: BTreeMap<String, BTreeMap<String, AppKeyRecord>>,
    /// Keystore keys to delete (see [`StrayKey`]).
    #[serde(default)]
    pub strays: Vec<StrayKey>,
}

impl Default for ProvisionState {
    fn default() -> Self {
        ProvisionState {
            v: STATE_VERSION,
            providers: BTreeMap::new(),
            seen: BTreeMap::new(),
            devices: BTreeMap::new(),
            gateway_groups: BTreeMap::new(),
            app_groups: BTreeMap::new(),
            app_positions: BTreeMap::new(),
            app_keys: BTreeMap::new(),
            strays: Vec::new(),
        }
    }
}

impl ProvisionState {
    /// The device's public key, if provisioned.
    pub fn device_key(&self, device: &str) -> Option<[u8; 32]> {
        let rec = self.devices.get(device)?;
        hex::decode(&rec.key).ok()?.try_into().ok()
    }

    /// The keystore handle of an application's key name.
    pub fn app_key(&self, app: &str, name: &str) -> Option<&KeyHandle> {
        Some(&self.app_keys.get(app)?.get(name)?.handle)
    }
}

/// Where the state lives: a directory (one `state.json`) or memory only.
pub struct StateFile {
    persist: Option<(Dir, PathBuf)>,
    /// Held (exclusively locked) for as long as the state is open.
    _lock: Option<std::fs::File>,
    /// Test hook: how many more saves succeed (`usize::MAX`: all).
    #[cfg(test)]
    pub(crate) saves_left: std::sync::atomic::AtomicUsize,
}

impl StateFile {
    /// State that vanishes with the process (tests, simulations).
    pub fn in_memory() -> Self {
        StateFile {
            persist: None,
            _lock: None,
            #[cfg(test)]
            saves_left: std::sync::atomic::AtomicUsize::new(usize::MAX),
        }
    }

    /// Opens (creating, mode 0700) the directory that holds `state.json`, and locks it for
    /// this process ([`ProvisionError::StateLocked`] if another one holds it).
    pub fn open(path: &Path) -> Result<Self, ProvisionError> {
        use std::os::unix::fs::DirBuilderExt;
        let io = |source| ProvisionError::StateIo {
            path: path.to_owned(),
            source,
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .map_err(io)?;
        let dir = Dir::open_ambient_dir(path, cap_std::ambient_authority()).map_err(io)?;
        // One writer at a time: two processes applying bundles to the same state would each
        // commit on top of what they read, and one's replay protection would be lost (SER-012).
        let mut opts = OpenOptions::new();
        opts.read(true).write(true).create(true).mode(0o600);
        let lock = dir.open_with(LOCK_FILE, &opts).map_err(io)?.into_std();
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(ProvisionError::StateLocked {
                    path: path.to_owned(),
                })
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        Ok(StateFile {
            persist: Some((dir, path.to_owned())),
            _lock: Some(lock),
            #[cfg(test)]
            saves_left: std::sync::atomic::AtomicUsize::new(usize::MAX),
        })
    }

    fn file_path(&self) -> PathBuf {
        match &self.persist {
            Some((_, p)) => p.join(STATE_FILE),
            None => PathBuf::from("<memory>"),
        }
    }

    /// Reads the state; a missing file is the empty state.
    pub fn load(&self) -> Result<ProvisionState, ProvisionError> {
        let Some((dir, _)) = &self.persist else {
            return Ok(ProvisionState::default());
        };
        let path = self.file_path();
        let mut bytes = Vec::new();
        match dir.open(STATE_FILE) {
            Ok(f) => f
                .take(MAX_STATE_LEN + 1)
                .read_to_end(&mut bytes)
                .map_err(|source| ProvisionError::StateIo {
                    path: path.clone(),
                    source,
                })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(ProvisionState::default())
            }
            Err(source) => return Err(ProvisionError::StateIo { path, source }),
        };
        let corrupt = |reason: String| ProvisionError::CorruptState {
            path: path.clone(),
            reason,
        };
        if bytes.len() as u64 > MAX_STATE_LEN {
            return Err(corrupt(format!("larger than {MAX_STATE_LEN} bytes")));
        }
        let state: ProvisionState =
            serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        if state.v != STATE_VERSION {
            return Err(corrupt(format!("unsupported version {}", state.v)));
        }
        Ok(state)
    }

    /// Replaces the state atomically: a synced temporary file renamed over `state.json`.
    pub fn save(&self, state: &ProvisionState) -> Result<(), ProvisionError> {
        #[cfg(test)]
        {
            use std::sync::atomic::Ordering::SeqCst;
            let left = self.saves_left.load(SeqCst);
            if left == 0 {
                return Err(ProvisionError::StateIo {
                    path: self.file_path(),
                    source: std::io::Error::other("injected failure"),
                });
            }
            if left != usize::MAX {
                self.saves_left.store(left - 1, SeqCst);
            }
        }
        let Some((dir, dir_path)) = &self.persist else {
            return Ok(());
        };
        let json = serde_json::to_vec_pretty(state).expect("the state always serializes");
        let tmp = format!(".{STATE_FILE}.tmp-{:016x}", rand::rngs::OsRng.next_u64());
        let io = |source| ProvisionError::StateIo {
            path: dir_path.join(&tmp),
            source,
        };
        let mut opts = OpenOptions::new();
        opts.write(true).create_new(true).mode(0o600);
        let written = dir.open_with(&tmp, &opts).and_then(|mut f| {
            f.write_all(&json)?;
            f.sync_all()
        });
        let renamed = written.and_then(|()| dir.rename(&tmp, dir, STATE_FILE));
        if let Err(e) = renamed {
            let _ = dir.remove_file(&tmp);
            return Err(io(e));
        }
        // Make the rename itself durable where the platform allows syncing a directory.
        if let Ok(d) = dir.open(".") {
            let _ = d.sync_all();
        }
        Ok(())
    }
}
