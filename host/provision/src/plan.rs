//! Validation and staging of a verified bundle: every check that can refuse it runs here,
//! before anything is changed, and the result is the complete next state plus the list of
//! keys to import (SER-020/021/022).

use super::bundle::check_contents;
use super::directory::{DirectoryUpdate, MemberDirectory};
use super::error::ProvisionError;
use super::state::{DeviceRecord, GroupRecord, ProviderProgress, ProvisionState};
use super::{BundleContents, BundleHeader, TrustedProvider};
use palisade_keys::KeyKind;
use std::collections::BTreeMap;
use std::sync::Arc;
use zeroize::Zeroizing;

/// One key to import into an application's scope.
pub(crate) struct KeyImport {
    pub app: String,
    pub name: String,
    pub kind: KeyKind,
    pub material: Zeroizing<Vec<u8>>,
}

/// Everything a bundle will change, computed without changing anything.
pub(crate) struct Plan {
    /// Keys to import; their handles are added to `next.app_keys` on commit.
    pub imports: Vec<KeyImport>,
    /// The state after the bundle, except for the key index.
    pub next: ProvisionState,
    /// What the member directories must learn.
    pub update: DirectoryUpdate,
}

/// Checks a bundle's contents against the provider's rights and the current state and stages
/// the changes. `header` has been authenticated, its window and sequence checked.
pub(crate) fn plan(
    state: &ProvisionState,
    header: &BundleHeader,
    provider: &TrustedProvider,
    contents: BundleContents,
    directories: &[Arc<dyn MemberDirectory>],
    now: u64,
) -> Result<Plan, ProvisionError> {
    let me = &header.provider;
    check_contents(&contents)?;

    // SER-022: a provider touches only its own applications...
    for app in contents.apps() {
        if !provider.apps.contains(app) {
            return Err(ProvisionError::AppNotAllowed {
                provider: me.clone(),
                app: app.to_owned(),
            });
        }
    }
    if !contents.gateway_groups.is_empty() && !provider.gateway_groups {
        return Err(ProvisionError::GatewayScopeNotAllowed {
            provider: me.clone(),
        });
    }
    // ...and only its own devices and gateway groups: another provider re-keying a device
    // could then authenticate as it (SER-020).
    let foreign = |item: String, owner: &str| ProvisionError::ForeignItem {
        item,
        owner: owner.to_owned(),
        provider: me.clone(),
    };
    for d in contents.devices.keys() {
        if let Some(rec) = state.devices.get(d).filter(|r| &r.provider != me) {
            return Err(foreign(format!("device {d:?}"), &rec.provider));
        }
    }
    for (g, members) in &contents.gateway_groups {
        if let Some(rec) = state.gateway_groups.get(g).filter(|r| &r.provider != me) {
            return Err(foreign(format!("gateway group {g:?}"), &rec.provider));
        }
        for m in members {
            if contents.devices.contains_key(m) {
                continue;
            }
            match state.devices.get(m) {
                Some(rec) if &rec.provider != me => {
                    return Err(foreign(
                        format!("device {m:?} (member of group {g:?})"),
                        &rec.provider,
                    ))
                }
                Some(_) => {}
                None => {
                    return Err(ProvisionError::invalid(
                        format!("member {m:?} of gateway group {g:?}"),
                        "it has no provisioned device key (group authentication needs one)",
                    ))
                }
            }
        }
    }

    // Stage the next state.
    let mut next = state.clone();
    let id = header.id_hex();
    next.providers.insert(
        me.clone(),
        ProviderProgress {
            last_sequence: header.sequence,
            last_bundle: id.clone(),
            applied_at: now,
        },
    );
    // Expired ids can be forgotten: an expired bundle is refused by its window anyway.
    next.seen.retain(|_, exp| *exp > now);
    next.seen.insert(id, header.expires_at);
    let mut rekeyed = Vec::new();
    for (d, k) in &contents.devices {
        let key = hex::encode(k);
        if state.devices.get(d).is_some_and(|r| r.key != key) {
            rekeyed.push(d.as_str());
        }
        next.devices.insert(
            d.clone(),
            DeviceRecord {
                key,
                provider: me.clone(),
            },
        );
    }
    for (g, members) in &contents.gateway_groups {
        if members.is_empty() {
            next.gateway_groups.remove(g);
        } else {
            let rec = GroupRecord {
                provider: me.clone(),
                members: members.clone(),
            };
            next.gateway_groups.insert(g.clone(), rec);
        }
    }
    for (app, groups) in &contents.app_groups {
        let entry = next.app_groups.entry(app.clone()).or_default();
        for (g, members) in groups {
            if members.is_empty() {
                entry.remove(g);
            } else {
                entry.insert(g.clone(), members.clone());
            }
        }
        if entry.is_empty() {
            next.app_groups.remove(app);
        }
    }

    for (app, positions) in &contents.app_positions {
        let entry = next.app_positions.entry(app.clone()).or_default();
        for (originator, position) in positions {
            match position {
                Some(position) => {
                    entry.insert(originator.clone(), *position);
                }
                None => {
                    entry.remove(originator);
                }
            }
        }
        // The directory stays bounded across bundles, not only within one (SER-001).
        if entry.len() > super::MAX_DEVICES {
            return Err(ProvisionError::invalid(
                format!("positions of app {app:?}"),
                format!(
                    "{} after this bundle, the limit is {}",
                    entry.len(),
                    super::MAX_DEVICES
                ),
            ));
        }
        if entry.is_empty() {
            next.app_positions.remove(app);
        }
    }

    // What the directories learn: the bundle's groups, and every group whose member was
    // re-keyed (its members' keys changed).
    let keys_of = |g: &str| -> BTreeMap<String, [u8; 32]> {
        next.gateway_groups
            .get(g)
            .map_or_else(BTreeMap::new, |rec| {
                rec.members
                    .iter()
                    .filter_map(|m| Some((m.clone(), next.device_key(m)?)))
                    .collect()
            })
    };
    let mut gateway_groups: BTreeMap<String, BTreeMap<String, [u8; 32]>> = contents
        .gateway_groups
        .keys()
        .map(|g| (g.clone(), keys_of(g)))
        .collect();
    for (g, rec) in &next.gateway_groups {
        if rekeyed.iter().any(|d| rec.members.contains(*d)) {
            gateway_groups.insert(g.clone(), keys_of(g));
        }
    }
    let update = DirectoryUpdate {
        devices: contents.devices.clone(),
        gateway_groups,
        app_groups: contents.app_groups.clone(),
        app_positions: contents.app_positions.clone(),
    };
    for d in directories {
        d.check(&update).map_err(ProvisionError::Directory)?;
    }

    let mut imports = Vec::new();
    for (app, keys) in contents.app_secrets {
        for (name, secret) in keys {
            let material = Zeroizing::new(secret.expose().to_vec());
            imports.push(KeyImport {
                app: app.clone(),
                name,
                kind: KeyKind::HmacSecret,
                material,
            });
        }
    }
    for (app, keys) in contents.app_public_keys {
        for (name, key) in keys {
            let material = Zeroizing::new(key.to_vec());
            imports.push(KeyImport {
                app: app.clone(),
                name,
                kind: KeyKind::Ed25519Public,
                material,
            });
        }
    }
    Ok(Plan {
        imports,
        next,
        update,
    })
}
