//! Batching tests (SER-016): decisions are held for the batch delay without a writer wake-up
//! each, everything that must not wait is written at once, and canonical payloads appended
//! directly are checked and chained like any other.

use super::tests::{config, decision, public, read_lines, signer, written_upto, KEY_A};
use super::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Long enough that nothing in a test is written because the delay ran out.
const FOREVER: Duration = Duration::from_secs(3600);

fn held(delay: Duration) -> AuditConfig {
    AuditConfig {
        batch_delay: delay,
        checkpoint_every: 1000,
        ..config()
    }
}

#[test]
fn decisions_are_held_for_one_batch_without_a_wakeup_each() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path(), held(FOREVER), signer(KEY_A)).unwrap();
    for i in 0..200 {
        log.append(Kind::Decision, decision(i)).unwrap();
    }
    let stats = log.stats();
    assert!(
        stats.writer_wakeups <= 1,
        "only an idle writer is signalled: {stats:?}"
    );
    assert_eq!(stats.written_upto, 1, "decisions wait for the batch delay");
    let start = Instant::now();
    log.flush(Duration::from_secs(10)).unwrap();
    assert!(start.elapsed() < Duration::from_secs(10));
    assert_eq!(log.stats().written_upto, 201);
    assert!(log.stats().writer_wakeups <= 2, "{:?}", log.stats());
    log.close().unwrap();
    verify(dir.path(), &public(KEY_A)).unwrap();
}

#[test]
fn a_decision_reaches_the_file_after_the_batch_delay() {
    let dir = tempfile::tempdir().unwrap();
    let delay = Duration::from_millis(50);
    let log = AuditLog::open(dir.path(), held(delay), signer(KEY_A)).unwrap();
    let start = Instant::now();
    log.append(Kind::Decision, decision(0)).unwrap();
    written_upto(&log, 2);
    assert!(start.elapsed() >= delay, "written before the delay");
    // The writer goes back to sleep; the next decision is held again, not written at once.
    let start = Instant::now();
    log.append(Kind::Decision, decision(1)).unwrap();
    written_upto(&log, 3);
    assert!(start.elapsed() >= delay, "written before the delay");
    log.close().unwrap();
}

#[test]
fn prompt_work_does_not_wait_for_the_batch_delay() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path(), held(FOREVER), signer(KEY_A)).unwrap();
    // An admin entry takes the decisions held before it along.
    log.append(Kind::Decision, decision(0)).unwrap();
    log.append(Kind::Admin, json!({"action": "module_upload"}))
        .unwrap();
    written_upto(&log, 3);
    for kind in [Kind::Integrity, Kind::System] {
        log.append(Kind::Decision, decision(1)).unwrap();
        let seq = log.append(kind, json!({"event": "x"})).unwrap();
        written_upto(&log, seq + 1);
    }
    // So does a checkpoint.
    log.append(Kind::Decision, decision(2)).unwrap();
    log.checkpoint_now();
    let next = log.stats().next_seq;
    written_upto(&log, next);
    assert_eq!(log.stats().checkpoints, 1);
    log.close().unwrap();
    verify(dir.path(), &public(KEY_A)).unwrap();

    // A checkpoint due by count.
    let dir = tempfile::tempdir().unwrap();
    let cfg = AuditConfig {
        checkpoint_every: 5,
        ..held(FOREVER)
    };
    let log = AuditLog::open(dir.path(), cfg, signer(KEY_A)).unwrap();
    for i in 0..4 {
        log.append(Kind::Decision, decision(i)).unwrap();
    }
    written_upto(&log, 6);
    log.close().unwrap();

    // A queue half full: waiting longer would start dropping decisions.
    let dir = tempfile::tempdir().unwrap();
    let cfg = AuditConfig {
        queue_capacity: 8,
        ..held(FOREVER)
    };
    let log = AuditLog::open(dir.path(), cfg, signer(KEY_A)).unwrap();
    for i in 0..3 {
        log.append(Kind::Decision, decision(i)).unwrap();
    }
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(log.stats().written_upto, 1, "below half: held");
    log.append(Kind::Decision, decision(3)).unwrap();
    written_upto(&log, 5);
    assert_eq!(log.stats().dropped, 0);
    // Close writes what is held and the final checkpoint at once.
    log.append(Kind::Decision, decision(4)).unwrap();
    let start = Instant::now();
    log.close().unwrap();
    assert!(start.elapsed() < Duration::from_secs(10));
    let report = verify(dir.path(), &public(KEY_A)).unwrap();
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    assert_eq!(report.entries, 7, "log_created, 5 decisions, checkpoint");
}

#[test]
fn time_based_checkpoints_come_under_steady_traffic() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = AuditConfig {
        checkpoint_interval: Duration::from_millis(20),
        batch_delay: Duration::from_millis(5),
        ..held(FOREVER)
    };
    let log = AuditLog::open(dir.path(), cfg, signer(KEY_A)).unwrap();
    let start = Instant::now();
    let mut i = 0;
    while log.stats().checkpoints == 0 {
        assert!(start.elapsed() < Duration::from_secs(10), "no checkpoint");
        log.append(Kind::Decision, decision(i)).unwrap();
        i += 1;
        std::thread::sleep(Duration::from_millis(1));
    }
    log.close().unwrap();
    verify(dir.path(), &public(KEY_A)).unwrap();
}

#[test]
fn canonical_payloads_are_checked_and_chained_like_values() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = AuditConfig {
        max_payload_bytes: 64,
        ..config()
    };
    let log = AuditLog::open(dir.path(), cfg, signer(KEY_A)).unwrap();
    let payload = json!({"z": "é\"\n", "a": [1, {"y": null, "b": true}]});
    let canonical = CanonicalJson::from_value(&payload);
    let seq = log
        .append_canonical(Kind::Decision, 7, canonical.clone())
        .unwrap();
    assert_eq!(seq, 1);
    assert_eq!(log.append_at(Kind::Decision, 7, payload).unwrap(), 2);
    for kind in [Kind::Gap, Kind::Checkpoint] {
        assert!(matches!(
            log.append_canonical(kind, 7, canonical.clone()),
            Err(AuditError::ReservedKind(k)) if k == kind
        ));
    }
    let big = CanonicalJson::from_value(&json!({"x": "a".repeat(100)}));
    assert!(matches!(
        log.append_canonical(Kind::Decision, 7, big),
        Err(AuditError::PayloadTooLarge { limit: 64, .. })
    ));
    log.close().unwrap();
    assert!(matches!(
        log.append_canonical(Kind::Decision, 7, canonical.clone()),
        Err(AuditError::Closed)
    ));
    verify(dir.path(), &public(KEY_A)).unwrap();
    let lines = read_lines(&dir.path().join(DEFAULT_FILE_NAME));
    let payloads: Vec<Value> = lines[1..3]
        .iter()
        .map(|line| serde_json::from_str::<Value>(line).unwrap()["payload"].clone())
        .collect();
    assert_eq!(payloads[0], payloads[1]);
    let text = format!(r#","payload":{canonical},"#);
    assert!(lines[1].contains(&text), "{}", lines[1]);
    assert!(lines[2].contains(&text), "{}", lines[2]);
}
