//! Write-ahead, refusal and rotation tests (SER-016, issue 11): a decision refused instead
//! of dropped when storage cannot take it, the acknowledgement a caller awaits before
//! answering, and one chain across rotated files.

use super::tests::{config, decision, public, signer, GatedSigner, KEY_A};
use super::*;
use serde_json::json;
use std::time::Duration;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

#[test]
fn refuse_mode_refuses_decisions_on_a_full_queue_and_takes_them_once_there_is_space() {
    let dir = tempfile::tempdir().unwrap();
    let gated = GatedSigner::new();
    let cfg = AuditConfig {
        queue_capacity: 4,
        checkpoint_every: 1000,
        decision_overflow: DecisionOverflow::Refuse,
        ..config()
    };
    let log = AuditLog::open(dir.path(), cfg, gated.clone()).unwrap();
    log.checkpoint_now();
    gated.wait_entered();
    let results: Vec<_> = (0..6)
        .map(|i| log.append(Kind::Decision, decision(i)))
        .collect();
    assert!(results[..4].iter().all(Result::is_ok));
    assert!(
        results[4..]
            .iter()
            .all(|r| matches!(r, Err(AuditError::Backlogged(_)))),
        "{results:?}"
    );
    let stats = log.stats();
    assert_eq!(
        (stats.dropped, stats.refused),
        (0, 2),
        "refused, never dropped"
    );
    // Waiting for space (bounded) fails while the writer is stuck...
    let rt = runtime();
    let payload = CanonicalJson::from_value(&decision(9));
    let waited = rt.block_on(log.append_canonical_async(
        Kind::Decision,
        1,
        payload.clone(),
        Duration::from_millis(50),
    ));
    assert!(
        matches!(waited, Err(AuditError::Backlogged(_))),
        "{waited:?}"
    );
    // ... and succeeds, then acknowledges the write, once it moves.
    gated.release();
    let seq = rt
        .block_on(log.append_canonical_async(Kind::Decision, 1, payload, Duration::from_secs(5)))
        .unwrap();
    rt.block_on(log.wait_written(seq, Duration::from_secs(5)))
        .unwrap();
    assert!(log.stats().written_upto > seq);
    log.close().unwrap();
    let report = verify(&dir.path().join(DEFAULT_FILE_NAME), &public(KEY_A)).unwrap();
    assert_eq!(report.gaps, 0);
}

#[test]
fn wait_written_returns_only_after_the_entry_is_in_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let gated = GatedSigner::new();
    let cfg = AuditConfig {
        batch_delay: Duration::ZERO,
        ..config()
    };
    let log = AuditLog::open(dir.path(), cfg, gated.clone()).unwrap();
    log.checkpoint_now();
    gated.wait_entered();
    let seq = log.append(Kind::Decision, decision(1)).unwrap();
    let rt = runtime();
    let early = rt.block_on(log.wait_written(seq, Duration::from_millis(50)));
    assert!(matches!(early, Err(AuditError::Backlogged(_))), "{early:?}");
    let text = std::fs::read_to_string(dir.path().join(DEFAULT_FILE_NAME)).unwrap();
    assert!(!text.contains("d-1"), "not written yet");
    gated.release();
    rt.block_on(log.wait_written(seq, Duration::from_secs(5)))
        .unwrap();
    let text = std::fs::read_to_string(dir.path().join(DEFAULT_FILE_NAME)).unwrap();
    assert!(text.contains("\"d-1\""), "acknowledged means on file");
}

#[test]
fn rotation_keeps_one_chain_across_files_and_resumes_after_a_crash_mid_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = || AuditConfig {
        rotate_bytes: 4096,
        batch_delay: Duration::ZERO,
        ..config()
    };
    let log = AuditLog::open(dir.path(), cfg(), signer(KEY_A)).unwrap();
    for i in 0..60 {
        let seq = log.append(Kind::Decision, decision(i)).unwrap();
        log.flush(Duration::from_secs(5)).unwrap();
        assert!(log.stats().written_upto > seq);
    }
    log.close().unwrap();
    assert!(log.stats().rotations >= 3, "{:?}", log.stats());
    let files = log_files(dir.path(), DEFAULT_FILE_NAME).unwrap();
    assert!(files.len() >= 4, "{files:?}");
    let report = verify_set(dir.path(), DEFAULT_FILE_NAME, &public(KEY_A)).unwrap();
    assert_eq!(report.files.len(), files.len());
    let all = verify(dir.path(), &public(KEY_A)).unwrap();
    assert_eq!(all.last_seq, report.last_seq);

    // Reopen: the active file starts with `log_rotated`, and the chain goes on.
    let log = AuditLog::open(dir.path(), cfg(), signer(KEY_A)).unwrap();
    assert!(!log.recovery().created);
    log.append(Kind::Admin, json!({"action": "after reopen"}))
        .unwrap();
    log.close().unwrap();
    verify_set(dir.path(), DEFAULT_FILE_NAME, &public(KEY_A)).unwrap();

    // A crash right after renaming the full file away: no active file. The next open
    // continues from the last rotated file.
    std::fs::remove_file(dir.path().join(DEFAULT_FILE_NAME)).unwrap();
    let log = AuditLog::open(dir.path(), cfg(), signer(KEY_A)).unwrap();
    log.append(Kind::Decision, decision(100)).unwrap();
    log.close().unwrap();
    let first = std::fs::read_to_string(dir.path().join(DEFAULT_FILE_NAME)).unwrap();
    assert!(
        first.lines().next().unwrap().contains("\"resumed\":true"),
        "{first}"
    );
    verify_set(dir.path(), DEFAULT_FILE_NAME, &public(KEY_A)).unwrap();

    // A missing middle file is named.
    std::fs::remove_file(dir.path().join("audit.log.000002")).unwrap();
    let error = verify_set(dir.path(), DEFAULT_FILE_NAME, &public(KEY_A)).unwrap_err();
    assert!(
        error.to_string().contains("audit.log.000002 is missing"),
        "{error}"
    );
}

#[test]
fn a_torn_tail_is_reported_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path(), config(), signer(KEY_A)).unwrap();
    log.append(Kind::Decision, decision(1)).unwrap();
    log.close().unwrap();
    let file = dir.path().join(DEFAULT_FILE_NAME);
    let whole = std::fs::read(&file).unwrap();
    assert!(verify(&file, &public(KEY_A)).unwrap().torn_tail().is_none());
    for cut in [1, 10] {
        std::fs::write(&file, &whole[..whole.len() - cut]).unwrap();
        let report = verify(&file, &public(KEY_A)).unwrap();
        assert!(
            matches!(report.torn_tail(), Some(VerifyError::TornTail { .. })),
            "cut {cut}"
        );
    }
}
