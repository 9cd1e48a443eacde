//! The inline (leader) path: an appender whose decision finds the writer thread idle writes
//! it itself, so it is on file when the append returns and no thread is woken; everything
//! else stays the writer thread's, and the chain stays one chain (SER-016).

use super::tests::{config, decision, public, signer, written_upto, KEY_A};
use super::writer::Fault;
use super::*;
use serde_json::json;
use std::time::{Duration, Instant};

fn immediate() -> AuditConfig {
    AuditConfig {
        batch_delay: Duration::ZERO,
        checkpoint_every: 1000,
        ..config()
    }
}

/// Waits (a bounded time) until the writer thread waits idle.
fn until_idle(log: &AuditLog) {
    let start = Instant::now();
    while !log.writer_is_idle() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the writer never went idle: {:?}",
            log.stats()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn a_decision_finding_the_writer_idle_is_on_file_when_its_append_returns() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path(), immediate(), signer(KEY_A)).unwrap();
    until_idle(&log);
    let wakeups = log.stats().writer_wakeups;
    for i in 0..50 {
        until_idle(&log);
        let seq = log.append(Kind::Decision, decision(i)).unwrap();
        let stats = log.stats();
        assert!(
            stats.written_upto > seq,
            "decision {i} (seq {seq}) not written by its appender: {stats:?}"
        );
        assert_eq!(stats.inline_batches, i + 1, "{stats:?}");
    }
    assert_eq!(
        log.stats().writer_wakeups,
        wakeups,
        "no decision woke the writer thread"
    );
    // What is not a decision is still the writer thread's.
    until_idle(&log);
    let seq = log.append(Kind::Admin, json!({"action": "x"})).unwrap();
    written_upto(&log, seq + 1);
    assert_eq!(log.stats().inline_batches, 50);
    assert!(log.stats().writer_wakeups > wakeups);
    log.close().unwrap();
    let report = verify(&dir.path().join(DEFAULT_FILE_NAME), &public(KEY_A)).unwrap();
    assert_eq!(report.gaps, 0);
}

#[test]
fn concurrent_appenders_checkpoints_and_rotation_keep_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = AuditConfig {
        checkpoint_every: 7,
        rotate_bytes: 64 << 10,
        ..immediate()
    };
    let log = std::sync::Arc::new(AuditLog::open(dir.path(), cfg, signer(KEY_A)).unwrap());
    const THREADS: u64 = 6;
    const EACH: u64 = 1500;
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                for i in 0..EACH {
                    log.append(Kind::Decision, decision(t * EACH + i)).unwrap();
                    if t == 0 && i % 100 == 0 {
                        log.append(Kind::Admin, json!({"action": "x", "i": i}))
                            .unwrap();
                    }
                    if t == 1 && i % 500 == 0 {
                        log.flush(Duration::from_secs(10)).unwrap();
                    }
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    log.close().unwrap();
    let stats = log.stats();
    assert_eq!(stats.write_errors, 0, "{stats:?}");
    let report = verify_set(dir.path(), DEFAULT_FILE_NAME, &public(KEY_A)).unwrap();
    assert!(report.files.len() > 1, "rotated: {:?}", report.files);
    assert_eq!(report.dropped, stats.dropped);
    // Every decision and admin entry is on file once (or counted in a gap): entries are
    // numbered without holes across files, so a lost or doubled batch fails the chain.
    let decisions_and_admin = stats.entries_written + stats.dropped;
    assert!(
        decisions_and_admin >= THREADS * EACH + EACH / 100,
        "{stats:?}"
    );
}

#[test]
fn a_failed_inline_write_goes_back_to_the_writer_thread_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path(), immediate(), signer(KEY_A)).unwrap();
    let flag = dir.path().join("disk-fails");
    std::fs::write(&flag, b"").unwrap();
    log.inject_fault(Fault::eio_while(flag.clone()));
    until_idle(&log);
    let seq = log.append(Kind::Decision, decision(0)).unwrap();
    let stats = log.stats();
    assert!(
        stats.written_upto <= seq,
        "written despite the failing disk: {stats:?}"
    );
    assert_eq!(stats.inline_batches, 0);
    // The writer thread retries it, and says storage is failing meanwhile.
    let start = Instant::now();
    while !log.stats().failing {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{:?}",
            log.stats()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    std::fs::remove_file(&flag).unwrap();
    written_upto(&log, seq + 1);
    let stats = log.stats();
    assert!(stats.write_errors >= 1 && !stats.failing, "{stats:?}");
    log.close().unwrap();
    let report = verify(&dir.path().join(DEFAULT_FILE_NAME), &public(KEY_A)).unwrap();
    assert_eq!((report.gaps, report.dropped), (0, 0));
    let text = std::fs::read_to_string(dir.path().join(DEFAULT_FILE_NAME)).unwrap();
    assert_eq!(text.matches("\"d-0\"").count(), 1, "written once:\n{text}");
}
