//! `palisade provision` end to end on a temporary gateway data folder.

use super::*;
use clap::Parser;

#[derive(Parser)]
struct T {
    #[command(flatten)]
    args: ProvisionArgs,
}

fn run_args(args: &[&str]) -> anyhow::Result<bool> {
    run(T::try_parse_from(std::iter::once("provision").chain(args.iter().copied()))?.args)
}

#[test]
fn durations() {
    assert_eq!(parse_duration("3600").unwrap(), 3600);
    assert_eq!(parse_duration("90s").unwrap(), 90);
    assert_eq!(parse_duration("30m").unwrap(), 1800);
    assert_eq!(parse_duration("1d").unwrap(), 86_400);
    assert_eq!(parse_duration("2w").unwrap(), 14 * 86_400);
    assert!(parse_duration("1y").is_err());
    assert!(parse_duration("d").is_err());
}

#[test]
fn key_files() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("k");
    std::fs::write(&p, format!("{}\n", "ab".repeat(32))).unwrap();
    assert_eq!(read_key32(&p, "key").unwrap(), [0xab; 32]);
    std::fs::write(&p, [7u8; 32]).unwrap();
    assert_eq!(read_key32(&p, "key").unwrap(), [7; 32]);
    std::fs::write(&p, "abcd").unwrap();
    assert!(read_key32(&p, "key").is_err());
}

#[test]
fn create_trust_apply_and_replay() {
    let tmp = tempfile::tempdir().unwrap();
    let path = |n: &str| tmp.path().join(n).to_str().unwrap().to_owned();
    let sp = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    std::fs::write(path("sp.key"), hex::encode(sp.to_bytes())).unwrap();
    std::fs::write(path("sp.pub"), hex::encode(sp.verifying_key().to_bytes())).unwrap();
    let dev = ed25519_dalek::SigningKey::from_bytes(&[11; 32]).verifying_key();
    let devices = format!(r#"{{"dev-1": "{}"}}"#, hex::encode(dev.to_bytes()));
    std::fs::write(path("devices.json"), devices).unwrap();
    let groups = r#"{"gateway": {"grp-a": ["dev-1"]}, "apps": {"lights": {"admins": ["CAE1"]}}}"#;
    std::fs::write(path("groups.json"), groups).unwrap();
    let secrets = format!(r#"{{"lights": {{"token_key": "{}"}}}}"#, "42".repeat(32));
    std::fs::write(path("secrets.json"), secrets).unwrap();
    let data = path("gw");

    assert!(run_args(&[
        "init",
        "--data",
        &data,
        "--gateway-id",
        "gw-1",
        "--out",
        &path("gw.pub")
    ])
    .unwrap());
    assert!(run_args(&[
        "trust",
        "--data",
        &data,
        "--provider-id",
        "sp-acme",
        "--provider-pub",
        &path("sp.pub"),
        "--app",
        "lights",
        "--gateway-groups"
    ])
    .unwrap());
    let create = |gateway: &str, seq: &str, out: &str, encrypt: bool| {
        let (sk, dj, gj, sj, o) = (
            path("sp.key"),
            path("devices.json"),
            path("groups.json"),
            path("secrets.json"),
            path(out),
        );
        let mut a = vec![
            "create",
            "--provider-key",
            &sk,
            "--provider-id",
            "sp-acme",
            "--gateway-id",
            gateway,
            "--devices",
            &dj,
            "--groups",
            &gj,
            "--secrets",
            &sj,
            "--valid-for",
            "1h",
            "--sequence",
            seq,
            "--out",
            &o,
        ];
        let gp = path("gw.pub");
        if encrypt {
            a.extend(["--gateway-x25519", gp.as_str()]);
        }
        run_args(&a)
    };
    // Secrets refuse to travel in clear (SER-021).
    assert!(create("gw-1", "1", "clear.bin", false).is_err());
    assert!(create("gw-1", "1", "b1.bin", true).unwrap());
    assert!(run_args(&[
        "inspect",
        &path("b1.bin"),
        "--provider-pub",
        &path("sp.pub"),
        "--json"
    ])
    .unwrap());
    assert!(run_args(&["apply", "--data", &data, &path("b1.bin")]).unwrap());
    // The key is in the keystore under the app's scope, with the name as its label.
    let store = SoftwareKeyStore::open(&tmp.path().join("gw/keys")).unwrap();
    let keys = store.list(&KeyScope::App("lights".into())).unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].label, "token_key");
    // A replay and a bundle for another gateway are refused: exit code 1, not an error.
    assert!(!run_args(&["apply", "--data", &data, &path("b1.bin"), "--json"]).unwrap());
    assert!(create("gw-2", "2", "other.bin", true).unwrap());
    assert!(!run_args(&["apply", "--data", &data, &path("other.bin")]).unwrap());
    assert!(create("gw-1", "2", "b2.bin", true).unwrap());
    assert!(run_args(&["apply", "--data", &data, &path("b2.bin"), "--json"]).unwrap());
    // init again with another id refuses to take over the folder.
    assert!(run_args(&["init", "--data", &data, "--gateway-id", "gw-9"]).is_err());
}
