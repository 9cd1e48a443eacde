//! Tamper tests (SER-016): every edit, deletion, insertion, reorder and forged checkpoint is
//! detected and the first bad entry is named; a clean log verifies.

use super::entry::{canonical_json, entry_hash, Kind};
use super::tests::{config, decision, public, read_lines, signer, write_lines, KEY_A, KEY_B};
use super::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// A closed log: entry 0 (log_created), 11 decisions with a checkpoint after every 5 entries,
/// one admin entry, the final checkpoint.
fn sample(dir: &Path) -> PathBuf {
    let log = AuditLog::open(dir, config(), signer(KEY_A)).unwrap();
    for i in 0..11 {
        log.append(Kind::Decision, decision(i)).unwrap();
    }
    log.append(
        Kind::Admin,
        json!({"action": "module_upload", "app": "lights"}),
    )
    .unwrap();
    log.close().unwrap();
    dir.join(DEFAULT_FILE_NAME)
}

fn bad_entry(path: &Path) -> (usize, Option<u64>, Problem) {
    match verify(path, &public(KEY_A)) {
        Err(VerifyError::BadEntry { line, seq, problem }) => (line, seq, problem),
        other => panic!("expected a bad entry, got {other:?}"),
    }
}

/// Re-hashes line `from` (1-based) and every line after it, as a forger who knows the
/// format (but not the gateway key) would.
fn rehash_from(lines: &mut [String], from: usize) {
    let mut prev: Option<String> = None;
    for (i, line) in lines.iter_mut().enumerate() {
        let mut v: Value = serde_json::from_str(line).unwrap();
        if i + 1 >= from {
            if let Some(p) = &prev {
                v["prev_hash"] = json!(p);
            }
            let mut prev_hash = [0u8; 32];
            hex::decode_to_slice(v["prev_hash"].as_str().unwrap(), &mut prev_hash).unwrap();
            let kind: Kind = serde_json::from_value(v["kind"].clone()).unwrap();
            let h = entry_hash(
                v["seq"].as_u64().unwrap(),
                v["time"].as_u64().unwrap(),
                kind,
                &canonical_json(&v["payload"]),
                &prev_hash,
            );
            v["hash"] = json!(hex::encode(h));
            *line = v.to_string();
        }
        prev = Some(v["hash"].as_str().unwrap().to_owned());
    }
}

fn kinds(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["kind"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

#[test]
fn clean_log_verifies_with_every_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let path = sample(dir.path());
    let k = kinds(&read_lines(&path));
    assert_eq!(k[0], "system");
    assert_eq!(k.iter().filter(|k| *k == "checkpoint").count(), 3, "{k:?}");
    assert_eq!(k.last().unwrap(), "checkpoint");
    // A directory resolves to its audit.log.
    let report = verify(dir.path(), &public(KEY_A)).unwrap();
    assert_eq!(report.entries, k.len() as u64);
    assert_eq!(report.checkpoints, 3);
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    let last = report.last_checkpoint.unwrap();
    assert_eq!(last.seq, report.last_seq);
    assert_eq!(last.line, k.len());
}

#[test]
fn edited_entry_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = sample(dir.path());
    let mut lines = read_lines(&path);
    assert!(lines[3].contains("\"effect\":\"deny\""));
    lines[3] = lines[3].replace("\"effect\":\"deny\"", "\"effect\":\"permit\"");
    write_lines(&path, &lines);
    assert_eq!(bad_entry(&path), (4, Some(3), Problem::Edited));
}

#[test]
fn edited_and_rehashed_entry_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = sample(dir.path());
    let mut lines = read_lines(&path);
    lines[3] = lines[3].replace("\"effect\":\"deny\"", "\"effect\":\"permit\"");
    let mut one = vec![lines[3].clone()];
    rehash_from(&mut one, 1);
    lines[3] = one.remove(0);
    write_lines(&path, &lines);
    assert_eq!(
        bad_entry(&path),
        (4, Some(3), Problem::Rewritten { next_line: 5 })
    );
}

#[test]
fn rewriting_the_whole_chain_fails_at_the_next_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let path = sample(dir.path());
    let mut lines = read_lines(&path);
    lines[3] = lines[3].replace("\"effect\":\"deny\"", "\"effect\":\"permit\"");
    rehash_from(&mut lines, 4);
    write_lines(&path, &lines);
    let (line, seq, problem) = bad_entry(&path);
    assert_eq!((line, seq), (6, Some(5)), "the checkpoint after the edit");
    assert!(
        matches!(problem, Problem::BadCheckpoint { .. }),
        "{problem}"
    );
}

#[test]
fn deleted_entry_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = sample(dir.path());
    let mut lines = read_lines(&path);
    lines.remove(3);
    write_lines(&path, &lines);
    assert_eq!(
        bad_entry(&path),
        (
            4,
            Some(4),
            Problem::Missing {
                expected: 3,
                found: 4
            }
        )
    );
    // Deleting entry 0 is caught too.
    let mut lines = read_lines(&path);
    lines.remove(0);
    write_lines(&path, &lines);
    assert_eq!(
        bad_entry(&path).2,
        Problem::Missing {
            expected: 0,
            found: 1
        }
    );
}

#[test]
fn inserted_entry_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = sample(dir.path());
    let original = read_lines(&path);
    // A forged entry claiming seq 3, correctly chained to entry 2, before the genuine 3.
    let mut lines = original.clone();
    let mut forged: Value = serde_json::from_str(&lines[3]).unwrap();
    forged["payload"]["effect"] = json!("permit");
    lines.insert(3, forged.to_string());
    rehash_from(&mut lines[..4], 4);
    write_lines(&path, &lines);
    assert_eq!(
        bad_entry(&path),
        (
            4,
            Some(3),
            Problem::Inserted {
                conflicts_with_line: Some(5)
            }
        )
    );
    // A forged entry with a fresh seq.
    let mut lines = original.clone();
    let mut forged: Value = serde_json::from_str(&lines[3]).unwrap();
    forged["seq"] = json!(999);
    lines.insert(3, forged.to_string());
    rehash_from(&mut lines[..4], 4);
    write_lines(&path, &lines);
    assert_eq!(
        bad_entry(&path),
        (
            4,
            Some(999),
            Problem::Inserted {
                conflicts_with_line: None
            }
        )
    );
    // A replayed copy of a genuine line.
    let mut lines = original;
    lines.insert(4, lines[3].clone());
    write_lines(&path, &lines);
    assert_eq!(
        bad_entry(&path),
        (5, Some(3), Problem::Duplicated { original_line: 4 })
    );
}

#[test]
fn reordered_entries_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = sample(dir.path());
    let mut lines = read_lines(&path);
    lines.swap(3, 4);
    write_lines(&path, &lines);
    let expected = Problem::Reordered {
        expected: 3,
        expected_at_line: 5,
    };
    assert_eq!(bad_entry(&path), (4, Some(4), expected));
}

#[test]
fn forged_checkpoints_are_detected() {
    let dir = tempfile::tempdir().unwrap();
    let path = sample(dir.path());
    // Signed by another key: the whole log verifies under B's key, not the trusted A.
    let err = verify(&path, &public(KEY_B)).unwrap_err();
    let VerifyError::BadEntry {
        line: 6,
        problem: Problem::BadCheckpoint { reason },
        ..
    } = err
    else {
        panic!("{err}")
    };
    assert!(reason.contains("not signed by the trusted key"), "{reason}");
    // A signature byte changed (and the chain re-hashed around it).
    let mut lines = read_lines(&path);
    let mut cp: Value = serde_json::from_str(&lines[5]).unwrap();
    let sig = cp["payload"]["signature"].as_str().unwrap().to_owned();
    let flipped = if sig.starts_with('0') { "1" } else { "0" };
    cp["payload"]["signature"] = json!(format!("{flipped}{}", &sig[1..]));
    lines[5] = cp.to_string();
    rehash_from(&mut lines, 6);
    write_lines(&path, &lines);
    assert!(matches!(
        bad_entry(&path),
        (6, Some(5), Problem::BadCheckpoint { .. })
    ));
}

#[test]
fn truncation_after_the_last_checkpoint_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = sample(dir.path());
    let mut lines = read_lines(&path);
    let total = lines.len();
    // Drop the final checkpoint and the admin entry: what is left has an unsigned tail.
    lines.truncate(total - 2);
    write_lines(&path, &lines);
    let report = verify(&path, &public(KEY_A)).unwrap();
    let first = report.last_checkpoint.as_ref().unwrap().seq + 1;
    let tail = VerifyWarning::UnsignedTail {
        first_seq: first,
        last_seq: report.last_seq,
        count: report.last_seq + 1 - first,
    };
    assert_eq!(report.warnings, vec![tail]);
    assert!(report.last_checkpoint.unwrap().seq < total as u64 - 1);
    // A torn final line (cut mid-entry) is reported, not an error.
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(b"{\"seq\":12,\"ti");
    std::fs::write(&path, &bytes).unwrap();
    let report = verify(&path, &public(KEY_A)).unwrap();
    assert!(report.warnings.contains(&VerifyWarning::TornFinalLine {
        line: total - 1,
        bytes: 13
    }));
}

#[test]
fn garbage_mid_file_and_bad_keys_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = sample(dir.path());
    let mut lines = read_lines(&path);
    lines[2] = "not json".into();
    write_lines(&path, &lines);
    assert!(matches!(
        bad_entry(&path),
        (3, None, Problem::Malformed { .. })
    ));
    // An added field is an edit even though the hash does not cover field names.
    let mut lines = read_lines(&path);
    lines[2] = lines[1].replacen('{', "{\"extra\":1,", 1);
    write_lines(&path, &lines);
    assert!(matches!(
        bad_entry(&path),
        (3, None, Problem::Malformed { .. })
    ));
    // A small-order key is refused rather than trusted.
    let mut weak = [0u8; 32];
    weak[0] = 1;
    assert!(matches!(verify(&path, &weak), Err(VerifyError::BadKey)));
    std::fs::write(&path, b"").unwrap();
    assert!(matches!(
        verify(&path, &public(KEY_A)),
        Err(VerifyError::Empty)
    ));
}

#[test]
fn canonical_hash_ignores_key_order_and_spacing() {
    let a: Value = serde_json::from_str(r#"{"b":1,"a":{"y":[1,2],"x":"é\n"}}"#).unwrap();
    let b: Value =
        serde_json::from_str(r#"{ "a" : { "x" : "é\n", "y" : [1, 2] }, "b" : 1 }"#).unwrap();
    assert_eq!(canonical_json(&a), r#"{"a":{"x":"é\n","y":[1,2]},"b":1}"#);
    assert_eq!(
        entry_hash(1, 2, Kind::Admin, &canonical_json(&a), &[0; 32]),
        entry_hash(1, 2, Kind::Admin, &canonical_json(&b), &[0; 32])
    );
    assert_ne!(
        entry_hash(1, 2, Kind::Admin, &canonical_json(&a), &[0; 32]),
        entry_hash(1, 2, Kind::Decision, &canonical_json(&a), &[0; 32])
    );
}
