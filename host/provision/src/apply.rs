//! The gateway side: [`Provisioner::apply`] checks a bundle and applies it, all or nothing
//! (SER-020/021/022, replay protection SER-012).
//!
//! Why nothing is ever half-applied:
//! 1. Every check that can refuse the bundle runs first, with no side effect: structure and
//!    size, trusted provider, signature, addressee, validity window, replay, decryption, the
//!    provider's rights, every item, and each directory's `check`.
//! 2. Keys are imported into the keystore under fresh random handles. Nothing refers to them
//!    yet (plugins resolve key names through the state's index), so they are inert. Before
//!    importing, the names in flight are noted in the state file; if an import fails, the
//!    keys imported so far are deleted, and if the gateway dies here the note makes the next
//!    start delete them.
//! 3. The new state — replay protection, devices, groups and the key index pointing at the new
//!    handles — is written with one atomic rename. That rename is the commit point; if it
//!    fails, the new keys are deleted and the old state stays.
//! 4. After the commit nothing can fail: the member directories (views of the state, see
//!    [`MemberDirectory`]) are updated by an infallible `apply`, and superseded keys are
//!    deleted best-effort (a failure is remembered and retried; they are unreferenced).

use super::bundle::{check_window, SignedBundle};
use super::codec;
use super::directory::{DirectoryUpdate, MemberDirectory};
use super::error::ProvisionError;
use super::plan::{plan, KeyImport};
use super::seal::GatewayKey;
use super::state::{AppKeyRecord, ProvisionState, StateFile, StrayKey};
use super::{TrustedProvider, CLOCK_SKEW};
use palisade_keys::{KeyError, KeyHandle, KeyKind, KeyScope, KeyStore};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// One key a bundle provisioned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProvisionedKey {
    /// Its application.
    pub app: String,
    /// Its name (what plugins call it; also its keystore label).
    pub name: String,
    /// HMAC secret or Ed25519 public key.
    pub kind: KeyKind,
    /// The keystore handle it got.
    pub handle: KeyHandle,
}

/// What an applied bundle changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProvisionReport {
    /// The bundle id (hex).
    pub bundle_id: String,
    /// Its provider.
    pub provider: String,
    /// Its sequence number.
    pub sequence: u64,
    /// Whether it was encrypted.
    pub encrypted: bool,
    /// Devices whose key was set.
    pub devices: Vec<String>,
    /// Gateway groups set, removed, or refreshed because a member was re-keyed.
    pub gateway_groups: Vec<String>,
    /// Application groups set or removed, as `app/group`.
    pub app_groups: Vec<String>,
    /// Originator positions set or removed (issue 13.7), all applications together.
    pub positions: usize,
    /// Keys imported.
    pub keys: Vec<ProvisionedKey>,
    /// Older keys these replaced (deleted from the keystore).
    pub superseded_keys: usize,
    /// Keystore keys that still wait for deletion (retried later; unreferenced).
    pub cleanup_pending: usize,
}

/// Applies provisioning bundles on a gateway.
pub struct Provisioner {
    gateway_id: String,
    gateway_key: GatewayKey,
    providers: BTreeMap<String, TrustedProvider>,
    store: Arc<dyn KeyStore>,
    file: StateFile,
    state: ProvisionState,
    directories: Vec<Arc<dyn MemberDirectory>>,
}

impl Provisioner {
    /// A provisioner for gateway `gateway_id`, opening bundles with `gateway_key`, importing
    /// keys into `store`, with its state in `file`. Keys left over by an interrupted apply are
    /// deleted now.
    pub fn new(
        gateway_id: impl Into<String>,
        gateway_key: GatewayKey,
        store: Arc<dyn KeyStore>,
        file: StateFile,
    ) -> Result<Self, ProvisionError> {
        let gateway_id = gateway_id.into();
        if !codec::valid_id(&gateway_id) {
            return Err(ProvisionError::invalid(
                format!("gateway id {gateway_id:?}"),
                "not a valid identifier",
            ));
        }
        let state = file.load()?;
        let mut p = Provisioner {
            gateway_id,
            gateway_key,
            providers: BTreeMap::new(),
            store,
            file,
            state,
            directories: Vec::new(),
        };
        if !p.state.strays.is_empty() {
            p.sweep();
            // Best effort: what was not deleted stays noted and is retried.
            let _ = p.file.save(&p.state);
        }
        Ok(p)
    }

    /// Trusts a provider (replacing an earlier entry with the same id).
    pub fn trust(&mut self, provider_id: impl Into<String>, provider: TrustedProvider) {
        self.providers.insert(provider_id.into(), provider);
    }

    /// Stops trusting a provider. What it provisioned stays.
    pub fn distrust(&mut self, provider_id: &str) {
        self.providers.remove(provider_id);
    }

    /// Adds a directory to keep updated, and loads everything provisioned so far into it.
    pub fn add_directory(&mut self, directory: Arc<dyn MemberDirectory>) {
        directory.apply(&self.snapshot());
        self.directories.push(directory);
    }

    /// The gateway's X25519 public key (what providers encrypt to).
    pub fn gateway_public_key(&self) -> [u8; 32] {
        self.gateway_key.public()
    }

    /// This gateway's id.
    pub fn gateway_id(&self) -> &str {
        &self.gateway_id
    }

    /// The committed state (devices, groups, key index, replay protection).
    pub fn state(&self) -> &ProvisionState {
        &self.state
    }

    /// Everything provisioned, as one directory update.
    pub fn snapshot(&self) -> DirectoryUpdate {
        let s = &self.state;
        let devices: BTreeMap<String, [u8; 32]> = s
            .devices
            .keys()
            .filter_map(|d| Some((d.clone(), s.device_key(d)?)))
            .collect();
        let gateway_groups = s
            .gateway_groups
            .iter()
            .map(|(g, rec)| {
                let members = rec
                    .members
                    .iter()
                    .filter_map(|m| Some((m.clone(), *devices.get(m)?)));
                (g.clone(), members.collect())
            })
            .collect();
        DirectoryUpdate {
            devices,
            gateway_groups,
            app_groups: s.app_groups.clone(),
            app_positions: s
                .app_positions
                .iter()
                .map(|(app, positions)| {
                    let positions = positions.iter().map(|(o, p)| (o.clone(), Some(*p)));
                    (app.clone(), positions.collect())
                })
                .collect(),
        }
    }

    /// Checks `bytes` as a bundle addressed to this gateway and applies it, all or nothing.
    /// `now` is the gateway's clock (Unix seconds).
    pub fn apply(&mut self, bytes: &[u8], now: u64) -> Result<ProvisionReport, ProvisionError> {
        let bundle = SignedBundle::parse(bytes)?;
        let h = bundle.header().clone();
        let provider = self
            .providers
            .get(&h.provider)
            .ok_or_else(|| ProvisionError::UntrustedProvider(h.provider.clone()))?
            .clone();
        bundle.verify(&provider.key)?;
        // From here on the header is the provider's word.
        if h.gateway != self.gateway_id {
            return Err(ProvisionError::MisAddressed {
                addressed_to: h.gateway.clone(),
                this_gateway: self.gateway_id.clone(),
            });
        }
        check_window(h.issued_at, h.expires_at)?;
        if h.issued_at > now.saturating_add(CLOCK_SKEW) {
            return Err(ProvisionError::NotYetValid {
                issued_at: h.issued_at,
                now,
            });
        }
        if now >= h.expires_at {
            return Err(ProvisionError::Expired {
                expired_at: h.expires_at,
                now,
            });
        }
        let id = h.id_hex();
        let last = self.state.providers.get(&h.provider);
        if self.state.seen.contains_key(&id) || last.is_some_and(|p| p.last_bundle == id) {
            return Err(ProvisionError::Replayed { bundle_id: id });
        }
        if let Some(last) = last.filter(|p| h.sequence <= p.last_sequence) {
            return Err(ProvisionError::StaleSequence {
                provider: h.provider.clone(),
                sequence: h.sequence,
                last: last.last_sequence,
            });
        }
        let contents = bundle.contents(Some(&self.gateway_key))?;
        let staged = plan(&self.state, &h, &provider, contents, &self.directories, now)?;

        let mut report = ProvisionReport {
            bundle_id: id,
            provider: h.provider.clone(),
            sequence: h.sequence,
            encrypted: h.encryption.is_some(),
            devices: staged.update.devices.keys().cloned().collect(),
            gateway_groups: staged.update.gateway_groups.keys().cloned().collect(),
            app_groups: staged
                .update
                .app_groups
                .iter()
                .flat_map(|(a, gs)| gs.keys().map(move |g| format!("{a}/{g}")))
                .collect(),
            positions: staged
                .update
                .app_positions
                .values()
                .map(BTreeMap::len)
                .sum(),
            keys: Vec::new(),
            superseded_keys: 0,
            cleanup_pending: 0,
        };

        // Stage the keys (inert until the commit references them).
        let imported = self.import_all(&staged.imports)?;
        let mut next = staged.next;
        for (imp, handle) in staged.imports.iter().zip(&imported) {
            let rec = AppKeyRecord {
                handle: handle.clone(),
                kind: imp.kind,
            };
            let old = next
                .app_keys
                .entry(imp.app.clone())
                .or_default()
                .insert(imp.name.clone(), rec);
            if let Some(old) = old {
                report.superseded_keys += 1;
                next.strays.push(StrayKey {
                    app: imp.app.clone(),
                    handle: Some(old.handle),
                    name: imp.name.clone(),
                });
            }
            report.keys.push(ProvisionedKey {
                app: imp.app.clone(),
                name: imp.name.clone(),
                kind: imp.kind,
                handle: handle.clone(),
            });
        }

        // Commit point.
        if let Err(e) = self.file.save(&next) {
            self.roll_back(&staged.imports, &imported);
            return Err(e);
        }
        self.state = next;

        // After the commit: nothing below can fail the bundle.
        for d in &self.directories {
            d.apply(&staged.update);
        }
        self.sweep();
        report.cleanup_pending = self.state.strays.len();
        tracing::info!(
            bundle = %report.bundle_id, provider = %report.provider, sequence = report.sequence,
            devices = report.devices.len(), keys = report.keys.len(), "provisioning bundle applied"
        );
        Ok(report)
    }

    /// Imports every key; on a failure deletes those imported so far and returns the error.
    fn import_all(&mut self, imports: &[KeyImport]) -> Result<Vec<KeyHandle>, ProvisionError> {
        if imports.is_empty() {
            return Ok(Vec::new());
        }
        // Note the names in flight, so that a crash before the commit is cleaned up at start.
        let mut noted = self.state.clone();
        noted.strays.extend(imports.iter().map(|i| StrayKey {
            app: i.app.clone(),
            handle: None,
            name: i.name.clone(),
        }));
        self.file.save(&noted)?;
        self.state.strays = noted.strays;
        let mut done = Vec::with_capacity(imports.len());
        for imp in imports {
            let scope = KeyScope::App(imp.app.clone());
            match self
                .store
                .import(&scope, imp.kind, &imp.name, &imp.material)
            {
                Ok(h) => done.push(h),
                Err(e) => {
                    self.roll_back(imports, &done);
                    return Err(e.into());
                }
            }
        }
        Ok(done)
    }

    /// Deletes keys imported by an apply that will not commit.
    fn roll_back(&mut self, imports: &[KeyImport], imported: &[KeyHandle]) {
        for (imp, handle) in imports.iter().zip(imported) {
            if let Err(e) = self.store.delete(&KeyScope::App(imp.app.clone()), handle) {
                tracing::warn!(%handle, error = %palisade_types::Chain(&e), "could not delete a rolled-back key; retried later");
                let stray = StrayKey {
                    app: imp.app.clone(),
                    handle: Some(handle.clone()),
                    name: imp.name.clone(),
                };
                self.state.strays.push(stray);
            }
        }
        tracing::warn!(keys = imported.len(), "provisioning rolled back");
        self.sweep();
        let _ = self.file.save(&self.state);
    }

    /// Deletes noted stray keys; keeps the ones that could not be deleted.
    fn sweep(&mut self) {
        let strays = std::mem::take(&mut self.state.strays);
        let mut left = Vec::new();
        for s in strays {
            let scope = KeyScope::App(s.app.clone());
            let done = match &s.handle {
                Some(h) => match self.store.delete(&scope, h) {
                    Ok(()) | Err(KeyError::NotFound { .. }) => Ok(()),
                    Err(e) => Err(e),
                },
                // Keys of this name that the index does not point to were imported by an
                // apply that never committed.
                None => self.store.list(&scope).and_then(|keys| {
                    let indexed = self.state.app_key(&s.app, &s.name);
                    keys.iter()
                        .filter(|k| k.label == s.name && Some(&k.handle) != indexed)
                        .try_for_each(|k| self.store.delete(&scope, &k.handle))
                }),
            };
            if let Err(e) = done {
                tracing::warn!(app = %s.app, name = %s.name, error = %palisade_types::Chain(&e), "stray key not deleted yet");
                left.push(s);
            }
        }
        self.state.strays = left;
    }
}
