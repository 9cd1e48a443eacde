//! Issue #17.4: `palisade group server` instances sharing their state in PostgreSQL. Two real
//! server processes (`--state` on one real database, `palisade_test_support::pg`), a gateway
//! and devices in this process: a challenge issued by one is answered at the other, a replay
//! made to either after the other accepted it is refused (SER-012), a registry change loaded
//! by one is seen by the other, and with the database down both refuse (503) instead of
//! deciding on local state.

use super::group_http::support::{bin_out, now, run_bin, Http, Running, GROUP, SMALL};
use hyper::StatusCode;
use palisade_gateway::{GroupHttpError as HttpError, ServerClient};
use palisade_group::{
    generate_identity_key, ChallengeRequest, Device, GatewayAgent, GroupSigner, Mode, SigningKey,
    WireMessage,
};
use palisade_test_support::pg::Postgres;
use serde_json::{json, Value};
use std::path::Path;
use std::sync::Arc;

/// The server's identity, one gateway and the devices of two groups, and the registry file
/// that names them.
struct Fleet {
    server_pub: [u8; 32],
    gw: SigningKey,
    devices: Vec<Device>,
    small: Vec<Device>,
    registry: Value,
}

fn fleet(server_pub: [u8; 32]) -> Fleet {
    let gw = generate_identity_key();
    let gw_pub = gw.verifying_key().to_bytes();
    let mut keys = serde_json::Map::new();
    let mut device = |name: String| {
        let k = generate_identity_key();
        keys.insert(
            name.clone(),
            hex::encode(k.verifying_key().to_bytes()).into(),
        );
        let mut d = Device::new(&name, k, &server_pub).unwrap();
        d.trust_gateway("gw-1", &gw_pub).unwrap();
        d
    };
    let devices: Vec<Device> = (0..3).map(|i| device(format!("dev-{i}"))).collect();
    let small: Vec<Device> = (0..2).map(|i| device(format!("small-{i}"))).collect();
    let ids = |ds: &[Device]| ds.iter().map(|d| d.id().to_owned()).collect::<Vec<_>>();
    let registry = json!({
        "server_id": "srv-1",
        "devices": keys,
        "groups": {GROUP: ids(&devices), SMALL: ids(&small)},
        "gateways": {"gw-1": {"public_key": hex::encode(gw_pub), "represents": [GROUP]}},
    });
    Fleet {
        server_pub,
        gw,
        devices,
        small,
        registry,
    }
}

/// A gateway agent (library) holding `devices` as members of `group`.
fn agent(f: &Fleet, groups: &[(&str, &[Device])]) -> GatewayAgent {
    let mut gw = GatewayAgent::new("gw-1", Box::new(f.gw.clone()), &f.server_pub).unwrap();
    for (group, devices) in groups {
        for d in *devices {
            gw.add_member(group, d.id(), &d.public_key()).unwrap();
        }
    }
    gw
}

/// `palisade group server` on a free port with its state in `db`.
fn server(data: &Path, registry: &Path, db: &str) -> (Running, String) {
    let (p, hello) = run_bin(&[
        "group",
        "server",
        "--listen",
        "127.0.0.1:0",
        "--data",
        data.to_str().unwrap(),
        "--registry",
        registry.to_str().unwrap(),
        "--state",
        db,
        "--state-timeout-ms",
        "1000",
    ]);
    assert_eq!(hello["state"], "postgres", "{hello}");
    (
        p,
        format!("http://{}", hello["listening"].as_str().unwrap()),
    )
}

/// Two server data folders with the same identity (as a fleet deploys one server identity to
/// every instance), and its public key.
fn identities(root: &Path) -> (std::path::PathBuf, std::path::PathBuf, [u8; 32]) {
    let (a, b) = (root.join("a"), root.join("b"));
    let public = bin_out(&["group", "init", "--data", a.to_str().unwrap()]);
    let copy = std::process::Command::new("cp")
        .args(["-a", a.to_str().unwrap(), b.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(copy.success());
    assert_eq!(
        bin_out(&["group", "init", "--data", b.to_str().unwrap()]),
        public
    );
    (a, b, hex::decode(public).unwrap().try_into().unwrap())
}

fn refused(e: HttpError) -> (StatusCode, String) {
    (e.status(), e.code().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_challenges_replays_and_the_registry() {
    let Some(pg) = Postgres::start() else { return };
    let db = pg.database("group_state").await;
    let dir = tempfile::tempdir().unwrap();
    let (data_a, data_b, server_pub) = identities(dir.path());
    let mut f = fleet(server_pub);
    let registry = dir.path().join("registry.json");
    std::fs::write(&registry, f.registry.to_string()).unwrap();
    let (mut proc_a, a) = server(&data_a, &registry, &db);
    let (_proc_b, b) = server(&data_b, &registry, &db);
    let signer: Arc<dyn GroupSigner> = Arc::new(f.gw.clone());
    let at_a = ServerClient::new(&a, "gw-1", signer.clone()).unwrap();
    let at_b = ServerClient::new(&b, "gw-1", signer.clone()).unwrap();

    // SER-012: a signed challenge request served by A is a replay at B.
    let req = ChallengeRequest::signed(&f.gw, "gw-1", GROUP, Mode::Independent, now()).unwrap();
    let ch = at_a.challenge_raw(req.to_bytes()).await.unwrap();
    assert_eq!(
        refused(at_b.challenge_raw(req.to_bytes()).await.unwrap_err()),
        (StatusCode::CONFLICT, "request-replayed".into())
    );

    // Independent mode (SER-028): issued by A, answered at B; the devices' keys confirm, so
    // B derived them with the ephemeral secret A made.
    let mut gw = agent(&f, &[(GROUP, &f.devices)]);
    gw.accept_challenge(&ch, now()).unwrap();
    let answers: Vec<_> = f
        .devices
        .iter_mut()
        .map(|d| d.answer_independent(&ch, now()).unwrap())
        .collect();
    let batch = gw.relay_answers(&ch.nonce, answers, now()).unwrap();
    let confs = at_b.independent(&batch).await.unwrap();
    assert_eq!(confs.confirmations.len(), 3, "{:?}", confs.rejected);
    for (d, c) in f.devices.iter_mut().zip(&confs.confirmations) {
        assert_eq!(d.id(), c.device);
        d.confirm(c, now()).unwrap();
    }
    // The completed exchange replayed to either instance is refused.
    for at in [&at_a, &at_b] {
        assert_eq!(
            refused(at.independent(&batch).await.unwrap_err()),
            (StatusCode::CONFLICT, "challenge-already-used".into())
        );
    }

    // Represented mode (SER-027): issued by B, accepted by A, then replayed to B.
    let ch = at_b
        .challenge(GROUP, Mode::Represented, now())
        .await
        .unwrap();
    let mut gw = agent(&f, &[(GROUP, &f.devices)]);
    gw.accept_challenge(&ch, now()).unwrap();
    let mc = gw.member_challenge(&ch.nonce, now()).unwrap();
    let answers: Vec<_> = f
        .devices
        .iter_mut()
        .map(|d| d.answer_represented(&mc, now()).unwrap())
        .collect();
    let assertion = gw.assert_members(&ch.nonce, &answers, now()).unwrap();
    let association = at_a.represented(&assertion).await.unwrap();
    assert_eq!(association.accepted, 3);
    gw.accept_association(&association, now()).unwrap();
    assert_eq!(
        refused(at_b.represented(&assertion).await.unwrap_err()),
        (StatusCode::CONFLICT, "challenge-already-used".into())
    );

    // The same exchange sent to both at once, again and again: exactly one instance takes it.
    for round in 0..8 {
        let ch = at_a
            .challenge(GROUP, Mode::Independent, now())
            .await
            .unwrap();
        let mut gw = agent(&f, &[(GROUP, &f.devices)]);
        gw.accept_challenge(&ch, now()).unwrap();
        let answers: Vec<_> = f
            .devices
            .iter_mut()
            .map(|d| d.answer_independent(&ch, now()).unwrap())
            .collect();
        let batch = gw.relay_answers(&ch.nonce, answers, now()).unwrap();
        let (x, y) = tokio::join!(at_a.independent(&batch), at_b.independent(&batch));
        let won = [&x, &y].iter().filter(|r| r.is_ok()).count();
        assert_eq!(won, 1, "round {round}: {x:?} / {y:?}");
        let lost = if x.is_ok() { y } else { x };
        assert_eq!(
            refused(lost.unwrap_err()),
            (StatusCode::CONFLICT, "challenge-already-used".into()),
            "round {round}"
        );
    }

    // A registry change made through A (restarted with a new file: gw-1 loses the right to
    // represent grp-a and gains grp-b) is seen by B, which was not restarted.
    assert!(at_b
        .challenge(SMALL, Mode::Represented, now())
        .await
        .is_err());
    let mut changed = f.registry.clone();
    changed["gateways"]["gw-1"]["represents"] = json!([SMALL]);
    std::fs::write(&registry, changed.to_string()).unwrap();
    drop(std::mem::replace(
        &mut proc_a,
        server(&data_a, &registry, &db).0,
    ));
    assert_eq!(
        refused(
            at_b.challenge(GROUP, Mode::Represented, now())
                .await
                .unwrap_err()
        ),
        (StatusCode::FORBIDDEN, "gateway-not-authorized".into())
    );
    let ch = at_b
        .challenge(SMALL, Mode::Represented, now())
        .await
        .unwrap();
    let mut gw = agent(&f, &[(SMALL, &f.small)]);
    gw.accept_challenge(&ch, now()).unwrap();
    let mc = gw.member_challenge(&ch.nonce, now()).unwrap();
    let answers: Vec<_> = f
        .small
        .iter_mut()
        .map(|d| d.answer_represented(&mc, now()).unwrap())
        .collect();
    let assertion = gw.assert_members(&ch.nonce, &answers, now()).unwrap();
    assert_eq!(at_b.represented(&assertion).await.unwrap().accepted, 2);
    drop(pg);
}

/// The database goes away: both instances refuse with 503 `state-unavailable` naming the
/// database (they never fall back to state of their own), a challenge issued before cannot be
/// completed, and a server does not start without its database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_its_database_the_server_refuses_and_does_not_start() {
    let Some(pg) = Postgres::start() else { return };
    let db = pg.database("group_state").await;
    let dir = tempfile::tempdir().unwrap();
    let (data_a, data_b, server_pub) = identities(dir.path());
    let mut f = fleet(server_pub);
    let registry = dir.path().join("registry.json");
    std::fs::write(&registry, f.registry.to_string()).unwrap();
    let (_a, a) = server(&data_a, &registry, &db);
    let (_b, b) = server(&data_b, &registry, &db);
    let signer: Arc<dyn GroupSigner> = Arc::new(f.gw.clone());
    let at_a = ServerClient::new(&a, "gw-1", signer).unwrap();
    let ch = at_a
        .challenge(GROUP, Mode::Independent, now())
        .await
        .unwrap();
    let mut gw = agent(&f, &[(GROUP, &f.devices)]);
    gw.accept_challenge(&ch, now()).unwrap();
    let answers: Vec<_> = f
        .devices
        .iter_mut()
        .map(|d| d.answer_independent(&ch, now()).unwrap())
        .collect();
    let batch = gw.relay_answers(&ch.nonce, answers, now()).unwrap();

    drop(pg);
    let http = Http::new();
    for base in [&a, &b] {
        let req = ChallengeRequest::signed(&f.gw, "gw-1", GROUP, Mode::Independent, now());
        let r = http
            .post(
                &format!("{base}/group/v1/challenge"),
                req.unwrap().to_bytes(),
            )
            .await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.code(), "state-unavailable");
        let message = r.json()["error"]["message"].as_str().unwrap().to_owned();
        assert!(message.contains("state database 127.0.0.1:"), "{message}");
        let r = http
            .post(&format!("{base}/group/v1/independent"), batch.to_bytes())
            .await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, "state-unavailable")
        );
    }

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(["group", "server", "--listen", "127.0.0.1:0", "--data"])
        .arg(&data_a)
        .arg("--registry")
        .arg(&registry)
        .args(["--state", &db, "--state-timeout-ms", "1000"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot reach the state database 127.0.0.1:"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "it never listened");
}

/// The state flags are bounded: a pool of 0 or more than 256 connections, and a timeout under
/// 100 ms or over 60 s, are refused before anything starts.
#[test]
fn state_pool_and_timeout_out_of_range_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let run = |flag: &str, value: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_palisade"))
            .args(["group", "server", "--listen", "127.0.0.1:0", "--data", data])
            .args(["--state", "host=127.0.0.1 port=1 dbname=x", flag, value])
            .output()
            .unwrap()
    };
    for (flag, value) in [
        ("--state-pool", "0"),
        ("--state-pool", "257"),
        ("--state-timeout-ms", "99"),
        ("--state-timeout-ms", "60001"),
    ] {
        let out = run(flag, value);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("invalid value") && stderr.contains(flag),
            "{stderr}"
        );
    }
    // In range, the flags are taken and the server goes on to its registry (absent here).
    let out = run("--state-pool", "256");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("group-registry.json") && !stderr.contains("invalid value"),
        "{stderr}"
    );
}
