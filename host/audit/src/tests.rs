//! Writer tests (SER-016): resume after a crash, the overflow policy (gaps for decisions,
//! back-pressure for admin entries), checkpoints by count, by time and on signer failure.

use super::*;
use serde_json::{json, Value};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

pub(super) const KEY_A: [u8; 32] = [7; 32];
pub(super) const KEY_B: [u8; 32] = [9; 32];

pub(super) fn signer(seed: [u8; 32]) -> Arc<dyn CheckpointSigner> {
    Arc::new(MemorySigner::from_seed(seed))
}

/// Checkpoint every 5 entries, no time-based ones, a counting clock, no fsync.
pub(super) fn config() -> AuditConfig {
    let t = Arc::new(AtomicU64::new(1_700_000_000_000));
    AuditConfig {
        checkpoint_every: 5,
        checkpoint_interval: Duration::from_secs(3600),
        fsync: FsyncPolicy::Never,
        clock: Clock::from_fn(move || t.fetch_add(1, Ordering::Relaxed)),
        ..AuditConfig::default()
    }
}

/// Waits (a bounded time) until every seq below `seq` is written; returns how long it took.
pub(super) fn written_upto(log: &AuditLog, seq: u64) -> Duration {
    let start = std::time::Instant::now();
    while log.stats().written_upto < seq {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "seq {} not written: {:?}",
            seq - 1,
            log.stats()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    start.elapsed()
}

pub(super) fn decision(i: u64) -> Value {
    json!({"app": "lights", "originator": format!("p-{i:04}"), "operation": "retrieve",
           "target": format!("/cse-in/lights/{i}"), "effect": "deny", "reason": "no privilege",
           "decision_id": format!("d-{i}"), "module": "acp", "version": "1.0.0"})
}

pub(super) fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

pub(super) fn write_lines(path: &Path, lines: &[String]) {
    std::fs::write(
        path,
        lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )
    .unwrap();
}

/// The public key of the memory signer made from `seed`.
pub(super) fn public(seed: [u8; 32]) -> [u8; 32] {
    MemorySigner::from_seed(seed).public_key()
}

fn entries(path: &Path) -> Vec<Value> {
    read_lines(path)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A signer that blocks inside `sign` until released, to stall the writer on purpose.
pub(super) struct GatedSigner {
    inner: MemorySigner,
    gate: Mutex<(bool, bool)>, // (entered, released)
    cv: Condvar,
}

impl GatedSigner {
    pub(super) fn new() -> Arc<Self> {
        Arc::new(GatedSigner {
            inner: MemorySigner::from_seed(KEY_A),
            gate: Mutex::new((false, false)),
            cv: Condvar::new(),
        })
    }
    pub(super) fn wait_entered(&self) {
        let mut g = self.gate.lock().unwrap();
        while !g.0 {
            g = self.cv.wait(g).unwrap();
        }
    }
    pub(super) fn release(&self) {
        self.gate.lock().unwrap().1 = true;
        self.cv.notify_all();
    }
}

impl CheckpointSigner for GatedSigner {
    fn sign(&self, msg: &[u8]) -> Result<[u8; 64], SignerError> {
        let mut g = self.gate.lock().unwrap();
        g.0 = true;
        self.cv.notify_all();
        while !g.1 {
            g = self.cv.wait(g).unwrap();
        }
        self.inner.sign(msg)
    }
    fn public_key(&self) -> [u8; 32] {
        self.inner.public_key()
    }
}

#[test]
fn appends_return_consecutive_seqs_and_resume_continues_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path(), config(), signer(KEY_A)).unwrap();
    assert!(log.recovery().created);
    let second = AuditLog::open(dir.path(), config(), signer(KEY_A)).unwrap_err();
    assert!(
        matches!(second, AuditError::InUse(_)),
        "one writer per log: {second}"
    );
    assert_eq!(log.append(Kind::Decision, decision(0)).unwrap(), 1);
    assert_eq!(
        log.append_at(Kind::Integrity, 42, json!({"module": "acp"}))
            .unwrap(),
        2
    );
    log.flush(Duration::from_secs(5)).unwrap();
    assert_eq!(log.stats().written_upto, 3);
    let id = log.recovery().log_id.clone();
    drop(log);
    let log = AuditLog::open(dir.path(), config(), signer(KEY_A)).unwrap();
    let r = log.recovery().clone();
    assert!(!r.created && r.torn_bytes == 0 && r.unsigned_entries == 0);
    assert_eq!(r.log_id, id);
    log.append(Kind::Admin, json!({"action": "key_rotate"}))
        .unwrap();
    log.close().unwrap();
    let report = verify(dir.path(), &public(KEY_A)).unwrap();
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    let e = entries(&dir.path().join(DEFAULT_FILE_NAME));
    assert_eq!(e[2]["time"], 42);
    assert!(e.iter().any(|e| e["payload"]["event"] == "log_opened"));
}

#[test]
fn torn_last_line_is_reported_and_truncated_on_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(DEFAULT_FILE_NAME);
    let log = AuditLog::open(dir.path(), config(), signer(KEY_A)).unwrap();
    for i in 0..3 {
        log.append(Kind::Decision, decision(i)).unwrap();
    }
    log.close().unwrap();
    let good = std::fs::read(&path).unwrap();
    // A crash mid-write: half a line, no newline.
    let mut torn = good.clone();
    torn.extend_from_slice(br#"{"seq":6,"time":17000000"#);
    std::fs::write(&path, &torn).unwrap();
    let log = AuditLog::open(dir.path(), config(), signer(KEY_A)).unwrap();
    assert_eq!(log.recovery().torn_bytes, 24);
    log.append(Kind::Decision, decision(9)).unwrap();
    log.close().unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert!(
        bytes.starts_with(&good),
        "the good part is kept byte for byte"
    );
    let report = verify(&path, &public(KEY_A)).unwrap();
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    let opened = entries(&path)
        .into_iter()
        .find(|e| e["payload"]["event"] == "log_opened")
        .unwrap();
    assert_eq!(opened["payload"]["torn_bytes_truncated"], 24);
}

#[test]
fn a_complete_last_line_without_newline_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(DEFAULT_FILE_NAME);
    AuditLog::open(dir.path(), config(), signer(KEY_A))
        .unwrap()
        .close()
        .unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.pop();
    std::fs::write(&path, &bytes).unwrap();
    let log = AuditLog::open(dir.path(), config(), signer(KEY_A)).unwrap();
    assert_eq!(log.recovery().torn_bytes, 0);
    log.close().unwrap();
    verify(&path, &public(KEY_A)).unwrap();
}

#[test]
fn damage_before_the_last_line_refuses_to_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(DEFAULT_FILE_NAME);
    let log = AuditLog::open(dir.path(), config(), signer(KEY_A)).unwrap();
    log.append(Kind::Decision, decision(0)).unwrap();
    log.close().unwrap();
    let mut lines = read_lines(&path);
    lines[1] = lines[1].replace("deny", "permit");
    write_lines(&path, &lines);
    let err = AuditLog::open(dir.path(), config(), signer(KEY_A)).unwrap_err();
    assert!(
        matches!(
            err,
            AuditError::Corrupt {
                source: VerifyError::BadEntry { line: 2, .. },
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn a_crash_leaves_an_unsigned_tail_that_is_signed_on_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(DEFAULT_FILE_NAME);
    let log = AuditLog::open(dir.path(), config(), signer(KEY_A)).unwrap();
    for i in 0..7 {
        log.append(Kind::Decision, decision(i)).unwrap();
    }
    log.close().unwrap();
    // Simulate a crash before the final checkpoint by cutting it off.
    let mut lines = read_lines(&path);
    lines.pop();
    write_lines(&path, &lines);
    let report = verify(&path, &public(KEY_A)).unwrap();
    assert!(matches!(
        report.warnings[0],
        VerifyWarning::UnsignedTail { count: 3, .. }
    ));
    let log = AuditLog::open(dir.path(), config(), signer(KEY_A)).unwrap();
    assert_eq!(log.recovery().unsigned_entries, 3);
    log.flush(Duration::from_secs(5)).unwrap();
    let report = verify(&path, &public(KEY_A)).unwrap();
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
}

#[test]
fn overflow_drops_decisions_into_a_gap_and_never_drops_admin_entries() {
    let dir = tempfile::tempdir().unwrap();
    let gated = GatedSigner::new();
    let cfg = AuditConfig {
        queue_capacity: 4,
        checkpoint_every: 1000,
        ..config()
    };
    let log = Arc::new(AuditLog::open(dir.path(), cfg, gated.clone()).unwrap());
    // Stall the writer inside a checkpoint signature.
    log.checkpoint_now();
    gated.wait_entered();
    let seqs: Vec<u64> = (0..10)
        .map(|i| log.append(Kind::Decision, decision(i)).unwrap())
        .collect();
    assert_eq!(
        seqs,
        (2..12).collect::<Vec<_>>(),
        "dropped entries keep their seqs"
    );
    assert_eq!(log.stats().dropped, 6);
    // The admin entry waits for space instead of being dropped.
    let waiting = {
        let log = log.clone();
        std::thread::spawn(move || log.append(Kind::Admin, json!({"action": "module_upload"})))
    };
    std::thread::sleep(Duration::from_millis(100));
    assert!(!waiting.is_finished(), "admin entries apply back-pressure");
    gated.release();
    let admin_seq = waiting.join().unwrap().unwrap();
    assert_eq!(admin_seq, 12);
    log.append(Kind::Decision, decision(99)).unwrap();
    log.close().unwrap();

    let path = dir.path().join(DEFAULT_FILE_NAME);
    let report = verify(&path, &public(KEY_A)).unwrap();
    assert_eq!((report.gaps, report.dropped), (1, 6));
    assert_eq!(
        report.warnings,
        vec![VerifyWarning::Dropped {
            gaps: 1,
            entries: 6
        }]
    );
    let e = entries(&path);
    let gap = e.iter().find(|e| e["kind"] == "gap").unwrap();
    assert_eq!(gap["seq"], 6);
    assert_eq!(gap["payload"]["first_seq"], 6);
    assert_eq!(gap["payload"]["last_seq"], 11);
    assert_eq!(gap["payload"]["dropped"], 6);
    assert!(gap["payload"]["first_time"].as_u64() <= gap["payload"]["last_time"].as_u64());
    let admin = e.iter().find(|e| e["kind"] == "admin").unwrap();
    assert_eq!(admin["seq"], 12);
}

#[test]
fn admin_entries_fail_closed_when_storage_stays_stuck() {
    let dir = tempfile::tempdir().unwrap();
    let gated = GatedSigner::new();
    let cfg = AuditConfig {
        queue_capacity: 1,
        admin_wait: Duration::from_millis(50),
        ..config()
    };
    let log = AuditLog::open(dir.path(), cfg, gated.clone()).unwrap();
    log.checkpoint_now();
    gated.wait_entered();
    log.append(Kind::Decision, decision(0)).unwrap();
    let err = log
        .append(Kind::Admin, json!({"action": "delete_app"}))
        .unwrap_err();
    assert!(matches!(err, AuditError::Backlogged(_)), "{err}");
    // Async callers get the same answer without blocking their runtime thread.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let err = rt
        .block_on(log.append_async(Kind::Admin, 1, json!({"action": "x"})))
        .unwrap_err();
    assert!(matches!(err, AuditError::Backlogged(_)), "{err}");
    gated.release();
    // Once the storage moves again, admin entries are taken again. The writer first has to
    // drain what waited, which on a loaded machine can take longer than the 50 ms an admin
    // entry waits; so ask again (bounded) rather than time the writer.
    let mut attempts = 0;
    loop {
        match rt.block_on(log.append_async(Kind::Admin, 2, json!({"action": "y"}))) {
            Ok(_) => break,
            Err(AuditError::Backlogged(_)) if attempts < 400 => {
                attempts += 1;
                std::thread::sleep(Duration::from_millis(25));
            }
            Err(error) => {
                panic!("the admin entry is still refused after the storage recovered: {error}")
            }
        }
    }
    log.close().unwrap();
    verify(dir.path(), &public(KEY_A)).unwrap();
}

#[test]
fn reserved_kinds_and_oversize_payloads_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = AuditConfig {
        max_payload_bytes: 64,
        ..config()
    };
    let log = AuditLog::open(dir.path(), cfg, signer(KEY_A)).unwrap();
    assert!(matches!(
        log.append(Kind::Checkpoint, json!({})),
        Err(AuditError::ReservedKind(Kind::Checkpoint))
    ));
    assert!(matches!(
        log.append(Kind::Gap, json!({})),
        Err(AuditError::ReservedKind(Kind::Gap))
    ));
    let big = json!({"x": "a".repeat(100)});
    assert!(matches!(
        log.append(Kind::Admin, big),
        Err(AuditError::PayloadTooLarge { .. })
    ));
    log.close().unwrap();
    assert!(matches!(
        log.append(Kind::Admin, json!({})),
        Err(AuditError::Closed)
    ));
    let bad = AuditConfig {
        queue_capacity: 0,
        ..config()
    };
    assert!(matches!(
        AuditLog::open(dir.path(), bad, signer(KEY_A)),
        Err(AuditError::InvalidConfig(_))
    ));
}

#[test]
fn time_based_checkpoints_and_signer_failures() {
    struct Broken;
    impl CheckpointSigner for Broken {
        fn sign(&self, _: &[u8]) -> Result<[u8; 64], SignerError> {
            Err(SignerError::new("HSM unreachable"))
        }
        fn public_key(&self) -> [u8; 32] {
            public(KEY_A)
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = AuditConfig {
        checkpoint_every: 1000,
        checkpoint_interval: Duration::from_millis(30),
        fsync: FsyncPolicy::EveryEntry,
        ..config()
    };
    let log = AuditLog::open(dir.path(), cfg.clone(), signer(KEY_A)).unwrap();
    log.append(Kind::Decision, decision(0)).unwrap();
    let start = std::time::Instant::now();
    while log.stats().checkpoints == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "no time-based checkpoint"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(log);
    let log = AuditLog::open(dir.path(), cfg, Arc::new(Broken)).unwrap();
    log.append(Kind::Decision, decision(1)).unwrap();
    log.close().unwrap();
    assert!(log.stats().checkpoint_failures >= 1);
    let report = verify(dir.path(), &public(KEY_A)).unwrap();
    assert!(report
        .warnings
        .iter()
        .any(|w| matches!(w, VerifyWarning::CheckpointFailed { .. })));
    assert!(report
        .warnings
        .iter()
        .any(|w| matches!(w, VerifyWarning::UnsignedTail { .. })));
}

#[test]
fn concurrent_appenders_produce_one_valid_chain() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = AuditConfig {
        queue_capacity: 64,
        ..config()
    };
    let log = Arc::new(AuditLog::open(dir.path(), cfg, signer(KEY_A)).unwrap());
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                for i in 0..500 {
                    let kind = if i % 50 == 0 {
                        Kind::Admin
                    } else {
                        Kind::Decision
                    };
                    log.append(kind, decision(t * 1000 + i)).unwrap();
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    log.close().unwrap();
    let stats = log.stats();
    let report = verify(dir.path(), &public(KEY_A)).unwrap();
    assert_eq!(report.dropped, stats.dropped);
    assert_eq!(stats.entries_written + stats.dropped, 2000 + 1);
    let admins = entries(&dir.path().join(DEFAULT_FILE_NAME))
        .iter()
        .filter(|e| e["kind"] == "admin")
        .count();
    assert_eq!(admins, 40, "admin entries are never dropped");
}
