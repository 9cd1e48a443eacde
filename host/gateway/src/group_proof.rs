//! Group-authenticated originators at the proxy (#16.6; docs/group-auth-protocol.md §12):
//! a device that a group round authenticated (SER-027/028) signs each later request with its
//! identity key; apps with `group_authenticated = true` then establish its originator by
//! `group` and count the request as authenticated ([`super::originator`]).
//!
//! Two halves share the record file of §12.7: the gateway agent writes it
//! ([`AssociationLog`], temp file and rename, after every round), the proxy reads it when it
//! changed and verifies proofs against it ([`GroupProofs`]). Counter windows live only in the
//! proxy's memory, so records established before the proxy started are not accepted (their
//! windows are lost; SER-012): such a device authenticates again.
//!
//! Bounded state (SER-001): at most [`MAX_RECORDS`] records on either side; expired records
//! are dropped by the agent when it writes the file and by the proxy when one is used; a file over the bound, or larger than
//! [`MAX_FILE`], is refused whole and the previous table stays.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use ed25519_dalek::VerifyingKey;
use palisade_group::{CounterWindow, Mode, ProofHeader, ProofRequest};
use serde::{Deserialize, Serialize};

use super::originator::Refusal;

/// Most association records kept (about 300 bytes each in the file).
pub const MAX_RECORDS: usize = 65_536;
/// Largest record file read (MAX_RECORDS records of the longest identifiers).
pub const MAX_FILE: u64 = 48 << 20;
/// Format version of the record file.
pub const FILE_VERSION: u32 = 1;

/// One device a round authenticated (§12.2).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AssociationRecord {
    pub group: String,
    pub device: String,
    pub mode: Mode,
    /// The association reference `A` (hex): the digest the device's answer named.
    pub association: String,
    /// The device's Ed25519 public key (hex).
    pub public_key: String,
    pub established_at_ms: u64,
    /// Unix seconds.
    pub expires_at: u64,
}

/// The record file (§12.7).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssociationFile {
    pub version: u32,
    pub gateway: String,
    pub associations: Vec<AssociationRecord>,
}

/// Why the record file cannot be written or read.
#[derive(Debug, thiserror::Error)]
pub enum AssociationFileError {
    #[error("cannot read or write {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not an association record file")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: {problem}")]
    Invalid { path: PathBuf, problem: String },
}

/// The agent's side: the records of its completed rounds, written to the file after each.
pub struct AssociationLog {
    path: PathBuf,
    gateway: String,
    records: HashMap<(String, String), AssociationRecord>,
}

impl AssociationLog {
    /// A log of gateway `gateway` written to `path`; records already in the file are kept.
    pub fn open(path: &Path, gateway: &str) -> Result<AssociationLog, AssociationFileError> {
        let mut log = AssociationLog {
            path: path.to_path_buf(),
            gateway: gateway.to_owned(),
            records: HashMap::new(),
        };
        if path.exists() {
            let file = read_file(path)?;
            for r in file.associations {
                log.records
                    .insert((r.association.clone(), r.device.clone()), r);
            }
        }
        Ok(log)
    }

    /// Adds the devices of a completed round and rewrites the file (expired records dropped;
    /// when full, the soonest-expiring records go: their devices authenticate again).
    pub fn add(
        &mut self,
        records: Vec<AssociationRecord>,
        now: u64,
    ) -> Result<(), AssociationFileError> {
        self.records.retain(|_, r| r.expires_at > now);
        for r in records {
            self.records
                .insert((r.association.clone(), r.device.clone()), r);
        }
        if self.records.len() > MAX_RECORDS {
            let mut by_expiry: Vec<_> = self
                .records
                .iter()
                .map(|(k, r)| (r.expires_at, k.clone()))
                .collect();
            by_expiry.sort();
            let excess = self.records.len() - MAX_RECORDS;
            tracing::warn!(
                dropped = excess,
                "group association records full: the soonest-expiring are dropped"
            );
            for (_, k) in by_expiry.into_iter().take(excess) {
                self.records.remove(&k);
            }
        }
        let mut associations: Vec<_> = self.records.values().cloned().collect();
        associations.sort_by(|a, b| (&a.association, &a.device).cmp(&(&b.association, &b.device)));
        let file = AssociationFile {
            version: FILE_VERSION,
            gateway: self.gateway.clone(),
            associations,
        };
        let io = |source| AssociationFileError::Io {
            path: self.path.clone(),
            source,
        };
        let text = serde_json::to_vec(&file).expect("records serialize");
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, text).map_err(io)?;
        std::fs::rename(&tmp, &self.path).map_err(io)
    }
}

fn read_file(path: &Path) -> Result<AssociationFile, AssociationFileError> {
    let io = |source| AssociationFileError::Io {
        path: path.to_path_buf(),
        source,
    };
    let len = std::fs::metadata(path).map_err(io)?.len();
    if len > MAX_FILE {
        return Err(AssociationFileError::Invalid {
            path: path.to_path_buf(),
            problem: format!("{len} bytes, more than {MAX_FILE}"),
        });
    }
    let text = std::fs::read(path).map_err(io)?;
    let file: AssociationFile =
        serde_json::from_slice(&text).map_err(|source| AssociationFileError::Json {
            path: path.to_path_buf(),
            source,
        })?;
    let invalid = |problem: String| AssociationFileError::Invalid {
        path: path.to_path_buf(),
        problem,
    };
    if file.version != FILE_VERSION {
        return Err(invalid(format!(
            "version {}, expected {FILE_VERSION}",
            file.version
        )));
    }
    if file.associations.len() > MAX_RECORDS {
        return Err(invalid(format!(
            "{} records, more than {MAX_RECORDS}",
            file.associations.len()
        )));
    }
    Ok(file)
}

/// A record as the proxy keeps it.
struct Live {
    key: VerifyingKey,
    expires_at: u64,
    established_at_ms: u64,
    window: CounterWindow,
}

#[derive(Default)]
struct Table {
    /// The file's size and modification time when it was read.
    seen: Option<(u64, Option<SystemTime>)>,
    gateway: String,
    records: HashMap<([u8; 32], String), Live>,
}

/// The request facts a proof is checked against, as received (§12.3).
#[derive(Clone, Copy, Debug)]
pub struct ProofClaim<'a> {
    /// Every `X-Palisade-Group-Proof` value of the request (more than one is refused).
    pub headers: &'a [&'a [u8]],
    pub method: &'a str,
    pub target: &'a str,
    pub request_id: &'a str,
    pub body_digest: [u8; 32],
}

/// The proxy's side: the records read from the file, with their counter windows.
pub struct GroupProofs {
    path: PathBuf,
    started_ms: u64,
    table: Mutex<Table>,
}

fn refuse(reason: &'static str, detail: impl Into<String>) -> Refusal {
    Refusal::NotAuthenticated {
        reason,
        detail: detail.into(),
    }
}

impl GroupProofs {
    /// Proofs checked against the record file at `path`; only records established from
    /// `started_ms` on are accepted.
    pub fn new(path: PathBuf, started_ms: u64) -> GroupProofs {
        GroupProofs {
            path,
            started_ms,
            table: Mutex::new(Table::default()),
        }
    }

    /// Re-reads the file if it changed. A file that cannot be read leaves the table as it
    /// was (logged), except a missing file, which means no records.
    fn refresh(&self, table: &mut Table) {
        let meta = std::fs::metadata(&self.path);
        let stamp = match &meta {
            Ok(m) => Some((m.len(), m.modified().ok())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "the group associations file cannot be read; keeping the records read before");
                return;
            }
        };
        if stamp == table.seen && table.seen.is_some() {
            return;
        }
        let Some(stamp) = stamp else {
            table.records.clear();
            table.seen = None;
            return;
        };
        let file = match read_file(&self.path) {
            Ok(file) => file,
            Err(error) => {
                tracing::warn!(%error, "the group associations file is refused; keeping the records read before");
                table.seen = Some(stamp);
                return;
            }
        };
        // Expired records are kept (the file is bounded): a proof under one is refused as
        // expired, which tells the device to authenticate again, and the record is dropped.
        let mut records = HashMap::with_capacity(file.associations.len());
        for r in file.associations {
            let (Some(a), Some(key)) = (
                hex32(&r.association),
                hex32(&r.public_key).and_then(|k| palisade_keys::check_ed25519_public(&k).ok()),
            ) else {
                tracing::warn!(device = %r.device, "a group association record is malformed and skipped");
                continue;
            };
            let key_id = (a, r.device);
            // A record read again keeps its window (same key: the same association).
            let window = table
                .records
                .remove(&key_id)
                .filter(|old| old.key == key)
                .map(|old| old.window)
                .unwrap_or_default();
            records.insert(
                key_id,
                Live {
                    key,
                    expires_at: r.expires_at,
                    established_at_ms: r.established_at_ms,
                    window,
                },
            );
        }
        table.gateway = file.gateway;
        table.records = records;
        table.seen = Some(stamp);
    }

    /// Checks a request's proof for `originator` (§12.5): `Ok` establishes it by `group`.
    pub fn verify(
        &self,
        originator: &str,
        claim: &ProofClaim<'_>,
        now: u64,
    ) -> Result<(), Refusal> {
        let [value] = claim.headers else {
            return Err(refuse(
                "group-proof-malformed",
                format!("{} group proof headers, expected one", claim.headers.len()),
            ));
        };
        let header = std::str::from_utf8(value)
            .map_err(|_| refuse("group-proof-malformed", "the group proof is not text"))
            .and_then(|text| {
                ProofHeader::parse(text)
                    .map_err(|e| refuse("group-proof-malformed", format!("group proof: {e}")))
            })?;
        let mut guard = self.table.lock().unwrap_or_else(|p| p.into_inner());
        self.refresh(&mut guard);
        let table = &mut *guard;
        let key_id = (header.association, originator.to_owned());
        let unknown = || {
            refuse(
                "group-proof-unknown",
                format!(
                    "no group association {} for {originator:?} (never made, dropped, or made before this gateway started: authenticate again)",
                    hex::encode(header.association)
                ),
            )
        };
        let Some(live) = table.records.get_mut(&key_id) else {
            return Err(unknown());
        };
        if live.established_at_ms < self.started_ms {
            return Err(unknown());
        }
        if now >= live.expires_at {
            let at = live.expires_at;
            table.records.remove(&key_id);
            return Err(refuse(
                "group-proof-expired",
                format!("the group association expired at {at}"),
            ));
        }
        // The signature (the expensive part) is checked without the table: other proofs go
        // on meanwhile. Only a proof that verifies comes back to move its record's window.
        let (key, gateway) = (live.key, table.gateway.clone());
        drop(guard);
        let request = ProofRequest {
            gateway: &gateway,
            association: header.association,
            device: originator,
            counter: header.counter,
            method: claim.method,
            target: claim.target,
            originator,
            request_id: claim.request_id,
            body_digest: claim.body_digest,
        };
        if !request.verify(&key, &header.signature) {
            return Err(refuse(
                "group-proof-bad-signature",
                "the group proof's signature does not verify for this request and device",
            ));
        }
        let mut guard = self.table.lock().unwrap_or_else(|p| p.into_inner());
        // Re-read meanwhile, the record may be gone or hold another key: then it is unknown.
        let Some(live) = guard
            .records
            .get_mut(&key_id)
            .filter(|live| live.key == key)
        else {
            return Err(unknown());
        };
        if !live.window.accept(header.counter) {
            return Err(refuse(
                "group-proof-replayed",
                format!(
                    "group proof counter {} was used or is too old",
                    header.counter
                ),
            ));
        }
        Ok(())
    }

    /// Records the table holds (for tests and status).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.table
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .records
            .len()
    }
}

fn hex32(text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).ok().map(|()| out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;

    /// Far ahead of the real clock.
    const NOW: u64 = 4_000_000_000;

    fn record(device: &str, key: &SigningKey, a: [u8; 32], expires_at: u64) -> AssociationRecord {
        AssociationRecord {
            group: "g".into(),
            device: device.into(),
            mode: Mode::Independent,
            association: hex::encode(a),
            public_key: hex::encode(key.verifying_key().to_bytes()),
            established_at_ms: 2_000,
            expires_at,
        }
    }

    fn proof(key: &SigningKey, device: &str, a: [u8; 32], counter: u64, target: &str) -> String {
        let req = ProofRequest {
            gateway: "gw-1",
            association: a,
            device,
            counter,
            method: "GET",
            target,
            originator: device,
            request_id: "r1",
            body_digest: ProofRequest::body_digest(b""),
        };
        req.header(&req.sign(key).unwrap())
    }

    fn check(
        p: &GroupProofs,
        originator: &str,
        header: &str,
        target: &str,
        now: u64,
    ) -> Result<(), &'static str> {
        let headers = [header.as_bytes()];
        let claim = ProofClaim {
            headers: &headers,
            method: "GET",
            target,
            request_id: "r1",
            body_digest: ProofRequest::body_digest(b""),
        };
        p.verify(originator, &claim, now).map_err(|r| match r {
            Refusal::NotAuthenticated { reason, .. } => reason,
            Refusal::ReplayUnavailable(_) => "replay-unavailable",
        })
    }

    /// Both sides of every check of §12.5, through the file the agent writes.
    #[test]
    fn proofs_are_checked_in_order_against_the_agents_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("assoc.json");
        let (dev, other) = (
            SigningKey::from_bytes(&[1; 32]),
            SigningKey::from_bytes(&[2; 32]),
        );
        let mut log = AssociationLog::open(&path, "gw-1").unwrap();
        log.add(
            vec![
                record("CAE-1", &dev, [9; 32], NOW + 100),
                record("CAE-2", &other, [9; 32], NOW + 100),
                record("CAE-old", &dev, [7; 32], NOW + 100),
            ],
            NOW,
        )
        .unwrap();
        let p = GroupProofs::new(path.clone(), 1_000);
        let good = proof(&dev, "CAE-1", [9; 32], 0, "/cse-in/a");
        assert_eq!(check(&p, "CAE-1", &good, "/cse-in/a", NOW), Ok(()));
        assert_eq!(
            check(&p, "CAE-1", &good, "/cse-in/a", NOW),
            Err("group-proof-replayed")
        );
        // Another request, or another originator, under the same proof.
        let next = proof(&dev, "CAE-1", [9; 32], 1, "/cse-in/a");
        assert_eq!(
            check(&p, "CAE-1", &next, "/cse-in/b", NOW),
            Err("group-proof-bad-signature")
        );
        assert_eq!(
            check(&p, "CAE-2", &next, "/cse-in/a", NOW),
            Err("group-proof-bad-signature")
        );
        // The refused attempts did not use counter 1 up.
        assert_eq!(check(&p, "CAE-1", &next, "/cse-in/a", NOW), Ok(()));
        assert_eq!(
            check(
                &p,
                "CAE-1",
                &proof(&dev, "CAE-1", [8; 32], 0, "/x"),
                "/x",
                NOW
            ),
            Err("group-proof-unknown")
        );
        assert_eq!(
            check(&p, "CAE-1", "v1.x.0.y", "/x", NOW),
            Err("group-proof-malformed")
        );
        let expired = proof(&dev, "CAE-1", [9; 32], 5, "/x");
        assert_eq!(
            check(&p, "CAE-1", &expired, "/x", NOW + 100),
            Err("group-proof-expired")
        );
        assert_eq!(p.len(), 2, "the expired record is dropped");
        // Established before this proxy started: its window is unknown.
        let late = GroupProofs::new(path.clone(), 3_000);
        assert_eq!(
            check(
                &late,
                "CAE-old",
                &proof(&dev, "CAE-old", [7; 32], 0, "/x"),
                "/x",
                NOW
            ),
            Err("group-proof-unknown")
        );
        // Two headers are refused.
        let headers = [good.as_bytes(), good.as_bytes()];
        let claim = ProofClaim {
            headers: &headers,
            method: "GET",
            target: "/x",
            request_id: "r1",
            body_digest: [0; 32],
        };
        assert!(p.verify("CAE-1", &claim, NOW).is_err());
    }

    /// A rewritten file keeps the windows of the records it still holds; a refused file
    /// leaves the table as it was.
    #[test]
    fn a_reread_keeps_windows_and_a_bad_file_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("assoc.json");
        let dev = SigningKey::from_bytes(&[1; 32]);
        let mut log = AssociationLog::open(&path, "gw-1").unwrap();
        log.add(vec![record("CAE-1", &dev, [9; 32], NOW + 100)], NOW)
            .unwrap();
        let p = GroupProofs::new(path.clone(), 0);
        let first = proof(&dev, "CAE-1", [9; 32], 0, "/x");
        assert_eq!(check(&p, "CAE-1", &first, "/x", NOW), Ok(()));
        log.add(vec![record("CAE-3", &dev, [3; 32], NOW + 100)], NOW)
            .unwrap();
        assert_eq!(
            check(&p, "CAE-1", &first, "/x", NOW),
            Err("group-proof-replayed")
        );
        assert_eq!(p.len(), 2);
        std::fs::write(
            &path,
            b"{\"version\": 2, \"gateway\": \"g\", \"associations\": []}",
        )
        .unwrap();
        let again = proof(&dev, "CAE-1", [9; 32], 1, "/x");
        assert_eq!(check(&p, "CAE-1", &again, "/x", NOW), Ok(()));
        assert_eq!(p.len(), 2);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            check(
                &p,
                "CAE-1",
                &proof(&dev, "CAE-1", [9; 32], 2, "/x"),
                "/x",
                NOW
            ),
            Err("group-proof-unknown")
        );
    }

    /// The agent's table stays within MAX_RECORDS, dropping the soonest-expiring.
    #[test]
    fn the_agents_log_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("assoc.json");
        let dev = SigningKey::from_bytes(&[1; 32]);
        let mut log = AssociationLog::open(&path, "gw-1").unwrap();
        let many: Vec<_> = (0..MAX_RECORDS + 10)
            .map(|i| record(&format!("d{i}"), &dev, [1; 32], NOW + 1 + i as u64))
            .collect();
        log.add(many, NOW).unwrap();
        let file = read_file(&path).unwrap();
        assert_eq!(file.associations.len(), MAX_RECORDS);
        assert!(file.associations.iter().all(|r| r.expires_at > NOW + 10));
        // An oversized file is refused on reading.
        let mut big = file.clone();
        big.associations
            .extend(file.associations.iter().take(1).cloned());
        std::fs::write(&path, serde_json::to_vec(&big).unwrap()).unwrap();
        assert!(matches!(
            read_file(&path),
            Err(AssociationFileError::Invalid { .. })
        ));
    }

    /// An app that accepts group proofs needs the records file; with it the gateway starts.
    #[test]
    fn an_app_that_opts_in_needs_the_records_file() {
        use crate::config::GatewayConfig;
        use crate::originator::Originators;
        let dir = tempfile::tempdir().unwrap();
        let app = r#"
[[app]]
name = "meters"
paths = ["/cse-in/meters"]
group_authenticated = true
plugin = [{ plugin = "acp" }]
"#;
        let without = GatewayConfig::parse(&dir.path().join("gw.toml"), app.to_string()).unwrap();
        let error = Originators::new(&without, dir.path())
            .err()
            .expect("refused");
        assert!(error.to_string().contains("group_associations"), "{error}");
        let with = format!("group_associations = \"assoc.json\"\n{app}");
        let with = GatewayConfig::parse(&dir.path().join("gw.toml"), with).unwrap();
        assert!(Originators::new(&with, dir.path()).is_ok());
    }
}
