//! A log checked in pieces, as a collector receives it (issue #17): each piece verifies as
//! the continuation of the chain point the one before left, and a piece that does not
//! continue it, or carries a forged checkpoint, is refused.

use super::tests::{config, decision, read_lines, signer, KEY_A, KEY_B};
use super::*;

fn bytes(lines: &[String]) -> Vec<u8> {
    lines
        .iter()
        .flat_map(|l| format!("{l}\n").into_bytes())
        .collect()
}

fn point(report: &VerifyReport) -> ChainPoint {
    let mut head = [0u8; 32];
    hex::decode_to_slice(&report.head_hash, &mut head).unwrap();
    ChainPoint {
        log_id: report.log_id.clone(),
        next_seq: report.last_seq + 1,
        head,
    }
}

#[test]
fn a_log_verifies_in_pieces_from_each_chain_point() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path(), config(), signer(KEY_A)).unwrap();
    for i in 0..20 {
        log.append(Kind::Decision, decision(i)).unwrap();
    }
    log.close().unwrap();
    let lines = read_lines(&dir.path().join(DEFAULT_FILE_NAME));
    let key = MemorySigner::from_seed(KEY_A).public_key();
    let other = MemorySigner::from_seed(KEY_B).public_key();

    let first = verify_continuation(&bytes(&lines[..8]), &key, None).unwrap();
    let at = point(&first);
    let second = verify_continuation(&bytes(&lines[8..]), &key, Some(&at)).unwrap();
    assert_eq!(second.last_seq as usize, lines.len() - 1);
    assert!(
        second.checkpoints > 0,
        "checkpoints in the second piece verify"
    );

    // Not a continuation: a piece that starts elsewhere, or from another head.
    assert!(verify_continuation(&bytes(&lines[9..]), &key, Some(&at)).is_err());
    let mut wrong = at.clone();
    wrong.head[0] ^= 1;
    assert!(verify_continuation(&bytes(&lines[8..]), &key, Some(&wrong)).is_err());
    let mut foreign = at.clone();
    foreign.log_id = "another-log".into();
    assert!(
        verify_continuation(&bytes(&lines[8..]), &key, Some(&foreign)).is_err(),
        "checkpoints name the log"
    );
    // A piece without the start must be given a chain point; another key fails.
    assert!(verify_continuation(&bytes(&lines[8..]), &key, None).is_err());
    assert!(verify_continuation(&bytes(&lines[8..]), &other, Some(&at)).is_err());
    // A last line without its newline is refused, not taken as a torn write.
    let mut cut = bytes(&lines[8..]);
    cut.pop();
    assert!(matches!(
        verify_continuation(&cut, &key, Some(&at)),
        Err(VerifyError::BadEntry { .. })
    ));
}
