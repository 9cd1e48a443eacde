//! Group authentication over HTTP (SER-027, SER-028, SER-012): the server role and gateway
//! agents as real HTTP servers on 127.0.0.1, devices as in-process HTTP clients.
//!
//! Every wait is a bounded poll and every server lives on the test's own runtime, so
//! everything stops when the test ends; the binary test kills the processes it started.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use palisade_gateway::{
    agent_router, server_router, AgentState, Established, GroupHttpError as HttpError,
    ServerClient, ServerState, GROUP_CONTENT_TYPE as CONTENT_TYPE,
};
use palisade_group::{
    generate_identity_key, ChallengeRequest, Device, DeviceAnswer, GatewayAgent, GroupChallenge,
    GroupError, GroupSigner, KeyConfirmation, MemberChallenge, Mode, Rejection, SealedMessage,
    Server, ServerConfig, SigningKey, WireMessage,
};
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub(crate) mod support;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn independent_mode_fifty_devices_two_forged() {
    let w = world(50, &[7, 31]).await;
    let r = start(&w.http, &w.agent, GROUP, "mode=independent").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.json()["expected"], 50);
    // #16: a forged answer is refused on arrival and takes no member's slot.
    let (mut devices, _, refused) = answer_all(&w.http, &w.agent, GROUP, w.devices).await;
    assert_eq!(refused, w.forged);
    let v = finished(&w.http, &w.agent, GROUP).await;
    assert_eq!(v["state"], "done", "{v}");
    assert_eq!(v["authenticated"].as_array().unwrap().len(), 48);
    assert_eq!(names(&v["rejected"]), w.forged);
    assert!(v["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["reason"] == "bad_signature"));
    assert!(v["missing"].as_array().unwrap().is_empty());

    let mut channels = Vec::new();
    for d in &mut devices {
        let url = format!(
            "{}/agent/v1/groups/{GROUP}/confirmations/{}",
            w.agent,
            d.id()
        );
        let r = w.http.get(&url).await;
        if w.forged.iter().any(|f| f == d.id()) {
            assert_eq!(
                (r.status, r.code().as_str()),
                (StatusCode::FORBIDDEN, "device-rejected")
            );
            continue;
        }
        assert_eq!(r.status, StatusCode::OK);
        let c = KeyConfirmation::from_bytes(&r.body).unwrap();
        channels.push(d.confirm(&c, now()).unwrap());
        // SER-012: the same confirmation fetched again is refused by the device.
        let again = KeyConfirmation::from_bytes(&w.http.get(&url).await.body).unwrap();
        assert!(matches!(
            d.confirm(&again, now()),
            Err(GroupError::ConfirmationReplayed)
        ));
    }
    assert_eq!(channels.len(), 48);
    // The keys work end to end: the server application got the other end.
    let sealed = channels[0].seal(b"reading 21.5C").unwrap();
    let est = w.established.lock().unwrap();
    let Some(Established::Independent(out)) = est.first() else {
        panic!("no independent outcome")
    };
    assert_eq!(out.sessions.len(), 48);
    let mut server_end = out.channel(devices[0].id()).unwrap();
    assert_eq!(server_end.open(&sealed).unwrap(), b"reading 21.5C");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn represented_mode_fifty_devices_two_forged() {
    let w = world(50, &[0, 49]).await;
    let r = start(&w.http, &w.agent, GROUP, "mode=represented").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let (devices, answers, refused) = answer_all(&w.http, &w.agent, GROUP, w.devices).await;
    assert_eq!(refused, w.forged);
    let v = finished(&w.http, &w.agent, GROUP).await;
    assert_eq!(v["state"], "done", "{v}");
    assert_eq!(v["authenticated"].as_array().unwrap().len(), 48);
    assert_eq!(v["association"]["accepted"], 48);
    assert_eq!(names(&v["rejected"]), w.forged);
    let url = format!("{}/agent/v1/groups/{GROUP}/confirmations/dev-001", w.agent);
    assert_eq!(w.http.get(&url).await.code(), "wrong-mode");

    // The group key works between the gateway and the server.
    let mut gw_end = w.agent_state.group_channel(GROUP).unwrap();
    let sealed = gw_end.seal(b"group report").unwrap();
    let mut server_end = match w.established.lock().unwrap().first() {
        Some(Established::Represented(out)) => out.channel(),
        _ => panic!("no represented outcome"),
    };
    assert_eq!(server_end.open(&sealed).unwrap(), b"group report");

    // SER-012: an answer from the last round is refused in the next one.
    let r = start(&w.http, &w.agent, GROUP, "mode=represented").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["joined"], false);
    let base = format!("{}/agent/v1/groups/{GROUP}", w.agent);
    let r = w
        .http
        .post(&format!("{base}/answers"), answers[5].clone())
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::CONFLICT, "answer-for-other-challenge")
    );
    // #16: starting again joins the running round (nobody can lock devices out by starting
    // one), a round of the other mode runs beside it, and nobody sets the deadline but the
    // operator; the deadline closes the round with nobody in.
    let again = start(&w.http, &w.agent, GROUP, "mode=represented").await;
    assert_eq!(again.json()["joined"], true);
    let other = start(&w.http, &w.agent, GROUP, "mode=independent").await;
    assert_eq!(other.json()["joined"], false);
    let r = start(&w.http, &w.agent, GROUP, "mode=represented&deadline_ms=1").await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::BAD_REQUEST, "invalid-request")
    );
    let v = finished_query(&w.http, &w.agent, GROUP, "mode=represented").await;
    assert_eq!(v["association"]["accepted"], 0);
    assert_eq!(v["missing"].as_array().unwrap().len(), 50);
    drop(devices);
}

/// #16 (SER-001, SER-012): an attacker on the gateway's LAN, at another client address,
/// starts rounds of both modes and posts, for every member of both rounds, an answer of the
/// previous round (replay), an answer to the current challenge signed with its own key
/// (forgery), and garbage; then it floods forgeries. None of it takes a member's slot or
/// closes a round early: the real devices join the attacker's rounds and every one of them
/// authenticates in both modes, and only the attacker's address runs into its limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_of_forgeries_and_replays_for_every_device_does_not_jam_the_agent() {
    use palisade_gateway::Rate;
    let tune = |a: AgentState| {
        // Rounds close early when every member is in, so a long deadline costs nothing here
        // and keeps a slow machine from closing a round before the devices answered.
        a.with_round_deadline(Duration::from_secs(40))
            .with_source_rate(Rate {
                per_second: 1,
                burst: 150,
            })
    };
    let w = world_with(20, &[], tune).await;
    let attacker = Http::from("127.0.0.2".parse().unwrap());
    let base = format!("{}/agent/v1/groups/{GROUP}", w.agent);

    // A first, undisturbed round gives the attacker real answers to replay.
    start(&w.http, &w.agent, GROUP, "mode=independent").await;
    let (devices, old, _) = answer_all(&w.http, &w.agent, GROUP, w.devices).await;
    assert_eq!(finished(&w.http, &w.agent, GROUP).await["state"], "done");

    let mut sent = 0;
    for mode in ["independent", "represented"] {
        let r = start(&attacker, &w.agent, GROUP, &format!("mode={mode}")).await;
        assert_eq!(
            (r.status, r.json()["joined"].clone()),
            (StatusCode::OK, false.into())
        );
        let ch = attacker
            .get(&format!("{base}/challenge?mode={mode}"))
            .await
            .body;
        for (d, old) in devices.iter().zip(&old) {
            let r = attacker.post(&format!("{base}/answers"), old.clone()).await;
            assert_eq!(r.code(), "answer-for-other-challenge");
            let mut fake = Device::new(d.id(), generate_identity_key(), &w.server_pub).unwrap();
            fake.trust_gateway("gw-1", &w.gw1.public_key()).unwrap();
            let forged = match mode {
                "independent" => {
                    fake.answer_independent(&GroupChallenge::from_bytes(&ch).unwrap(), now())
                }
                _ => fake.answer_represented(&MemberChallenge::from_bytes(&ch).unwrap(), now()),
            };
            let r = attacker
                .post(&format!("{base}/answers"), forged.unwrap().to_bytes())
                .await;
            assert_eq!(
                (r.status, r.code().as_str()),
                (StatusCode::UNAUTHORIZED, "bad-signature")
            );
            let r = attacker
                .post(&format!("{base}/answers"), vec![0xa5; 200])
                .await;
            assert_eq!(r.code(), "malformed-message");
            sent += 3;
        }
        let v = attacker
            .get(&format!("{base}/result?mode={mode}"))
            .await
            .json();
        assert_eq!(
            v["state"], "collecting",
            "nothing of the attacker's closed the round"
        );
        assert_eq!(v["received"], 0);
        assert_eq!(v["refused"].as_array().unwrap().len(), 20);
    }
    // The flood goes on until the attacker's address is out of tokens (bounded).
    let ch = attacker
        .get(&format!("{base}/challenge?mode=independent"))
        .await
        .body;
    let mut fake = Device::new("dev-000", generate_identity_key(), &w.server_pub).unwrap();
    let forged = fake
        .answer_independent(&GroupChallenge::from_bytes(&ch).unwrap(), now())
        .unwrap()
        .to_bytes();
    let limited = loop {
        let r = attacker
            .post(&format!("{base}/answers"), forged.clone())
            .await;
        sent += 1;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            break r;
        }
        assert_eq!(r.code(), "bad-signature");
        assert!(sent < 400, "the attacker was never limited");
    };
    assert_eq!(limited.code(), "too-many-requests");
    let r = start(&attacker, &w.agent, GROUP, "mode=independent").await;
    assert_eq!(r.code(), "too-many-requests");

    // The devices, at their own address, join the attacker's rounds and all get in.
    let mut devices = devices;
    for mode in ["independent", "represented"] {
        let r = start(&w.http, &w.agent, GROUP, &format!("mode={mode}")).await;
        assert_eq!(r.json()["joined"], true);
        let q = format!("mode={mode}");
        let (back, _, refused) = answer_round(&w.http, &w.agent, GROUP, &q, devices).await;
        devices = back;
        assert!(refused.is_empty());
        let v = finished_query(&w.http, &w.agent, GROUP, &q).await;
        assert_eq!(v["state"], "done", "{v}");
        assert_eq!(v["authenticated"].as_array().unwrap().len(), 20, "{v}");
        assert!(v["rejected"].as_array().unwrap().is_empty(), "{v}");
        assert!(v["missing"].as_array().unwrap().is_empty(), "{v}");
    }
    // The keys of the independent round work: every device confirms its server.
    for d in &mut devices {
        let url = format!("{base}/confirmations/{}", d.id());
        let c = KeyConfirmation::from_bytes(&w.http.get(&url).await.body).unwrap();
        d.confirm(&c, now()).unwrap();
    }
}

/// The agent takes the identical answer twice (a device retrying after a lost reply); an
/// answer in the same member's name from another key neither replaces it nor is recorded
/// against it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retried_answer_is_taken_again_and_one_from_another_key_is_refused() {
    let mut w = world(1, &[]).await;
    start(&w.http, &w.agent, SMALL, "mode=independent").await;
    let base = format!("{}/agent/v1/groups/{SMALL}", w.agent);
    let ch =
        GroupChallenge::from_bytes(&w.http.get(&format!("{base}/challenge")).await.body).unwrap();
    let d = &mut w.small[0];
    let a = d.answer_independent(&ch, now()).unwrap().to_bytes();
    for _ in 0..2 {
        let r = w.http.post(&format!("{base}/answers"), a.clone()).await;
        assert_eq!(
            (r.status, r.json()["received"].clone()),
            (StatusCode::ACCEPTED, 1.into())
        );
    }
    // The library's device answers a challenge once; a second answer in its name comes from
    // another key and changes nothing.
    assert!(matches!(
        d.answer_independent(&ch, now()),
        Err(GroupError::ChallengeReplayed)
    ));
    let mut fake = Device::new(d.id(), generate_identity_key(), &w.server_pub).unwrap();
    let other = fake.answer_independent(&ch, now()).unwrap().to_bytes();
    let r = w.http.post(&format!("{base}/answers"), other).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::UNAUTHORIZED, "bad-signature")
    );
    let v = w.http.get(&format!("{base}/result")).await.json();
    assert_eq!(
        (v["received"].clone(), v["refused"].clone()),
        (1.into(), serde_json::json!([]))
    );
    // An answer of the other mode's form (no ephemeral key in an independent round) is
    // refused before its signature is even looked at.
    let wrong_form = DeviceAnswer {
        device: "small-1".into(),
        challenge: ch.digest(),
        ephemeral: None,
        signature: [0; 64],
    };
    let r = w
        .http
        .post(&format!("{base}/answers"), wrong_form.to_bytes())
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, "ephemeral-key-mismatch")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unauthorized_gateway_is_refused_in_represented_mode() {
    let w = world(4, &[]).await;
    // SER-027: gw-2 is a registered gateway without the right to represent grp-a.
    let r = start(&w.http, &w.agent2, GROUP, "mode=represented").await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::FORBIDDEN, "gateway-not-authorized")
    );
    // SER-028 needs no such right: the same gateway may relay an independent round.
    let r = start(&w.http, &w.agent2, GROUP, "mode=independent").await;
    assert_eq!(r.status, StatusCode::OK);

    let refused = |e: HttpError| (e.status(), e.code().to_owned());
    let as_gw2 = ServerClient::new(&w.server, "gw-2", Arc::new(w.gw2.clone())).unwrap();
    let e = as_gw2
        .challenge(SMALL, Mode::Represented, now())
        .await
        .unwrap_err();
    assert_eq!(
        refused(e),
        (StatusCode::FORBIDDEN, "gateway-not-authorized".into())
    );
    // An impostor signing as gw-1 with another key, and an unregistered gateway: both 401.
    let impostor = ServerClient::new(&w.server, "gw-1", Arc::new(w.gw2.clone())).unwrap();
    let e = impostor
        .challenge(GROUP, Mode::Represented, now())
        .await
        .unwrap_err();
    assert_eq!(
        refused(e),
        (StatusCode::UNAUTHORIZED, "bad-signature".into())
    );
    let stranger = ServerClient::new(&w.server, "gw-x", Arc::new(generate_identity_key())).unwrap();
    let e = stranger
        .challenge(GROUP, Mode::Independent, now())
        .await
        .unwrap_err();
    assert_eq!(
        refused(e),
        (StatusCode::UNAUTHORIZED, "unknown-gateway".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_server_refuses_replays_over_http() {
    let mut w = world(3, &[]).await;
    let client = ServerClient::new(&w.server, "gw-1", Arc::new(w.gw1.clone())).unwrap();
    let mut gw = GatewayAgent::new("gw-1", Box::new(w.gw1.clone()), &w.server_pub).unwrap();
    let code = |e: HttpError| e.code().to_owned();

    // SER-012: a signed challenge request is served once, and only near the server's time.
    let req = ChallengeRequest::signed(&w.gw1, "gw-1", GROUP, Mode::Independent, now()).unwrap();
    let ch = client.challenge_raw(req.to_bytes()).await.unwrap();
    assert_eq!(
        code(client.challenge_raw(req.to_bytes()).await.unwrap_err()),
        "request-replayed"
    );
    let old = ChallengeRequest::signed(&w.gw1, "gw-1", GROUP, Mode::Independent, now() - 600);
    let e = client
        .challenge_raw(old.unwrap().to_bytes())
        .await
        .unwrap_err();
    assert_eq!(code(e), "stale-request");

    gw.accept_challenge(&ch, now()).unwrap();
    let answers: Vec<_> = w
        .devices
        .iter_mut()
        .map(|d| d.answer_independent(&ch, now()).unwrap())
        .collect();
    let batch = gw.relay_answers(&ch.nonce, answers.clone(), now()).unwrap();
    let confs = client.independent(&batch).await.unwrap();
    assert_eq!(confs.confirmations.len(), 3);
    // The same batch again: the challenge is used up.
    let e = client.independent(&batch).await.unwrap_err();
    assert_eq!(
        (e.status(), code(e)),
        (StatusCode::CONFLICT, "challenge-already-used".into())
    );
    // Old answers in a new session are named as replays, inside a successful answer.
    let ch2 = client
        .challenge(GROUP, Mode::Independent, now())
        .await
        .unwrap();
    gw.accept_challenge(&ch2, now()).unwrap();
    let batch2 = gw.relay_answers(&ch2.nonce, answers, now()).unwrap();
    let confs2 = client.independent(&batch2).await.unwrap();
    assert!(confs2.confirmations.is_empty());
    assert!(confs2
        .rejected
        .iter()
        .all(|(_, r)| *r == Rejection::AnswerReplayed));
    assert_eq!(confs2.rejected.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn garbage_and_oversize_bodies_get_json_errors() {
    let w = world(2, &[]).await;
    let h = &w.http;
    let garbage: [&[u8]; 4] = [b"", b"\x01", b"\x09\x01garbage", &[0xff; 300]];
    for path in ["challenge", "represented", "independent"] {
        let url = format!("{}/group/v1/{path}", w.server);
        for g in garbage {
            let r = h.post(&url, g.to_vec()).await;
            assert_eq!(
                (r.status, r.code().as_str()),
                (StatusCode::BAD_REQUEST, "malformed-message")
            );
        }
        let r = h
            .send(Method::POST, &url, Some("application/json"), b"{}".to_vec())
            .await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type")
        );
        let r = h.get(&url).await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed")
        );
    }
    // A megabyte of garbage within the limit is decoded and refused, not a crash.
    let r = h
        .post(
            &format!("{}/group/v1/independent", w.server),
            vec![1u8; 1 << 20],
        )
        .await;
    assert_eq!(r.code(), "malformed-message");
    let r = h
        .post(
            &format!("{}/group/v1/challenge", w.server),
            vec![1u8; 64 << 10],
        )
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, "body-too-large")
    );
    assert_eq!(
        h.get(&format!("{}/nothing", w.server)).await.code(),
        "not-found"
    );

    let base = format!("{}/agent/v1/groups/{GROUP}", w.agent);
    let r = h.post(&format!("{base}/answers"), vec![0xff; 100]).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::BAD_REQUEST, "malformed-message")
    );
    let r = h.post(&format!("{base}/answers"), vec![1u8; 8 << 10]).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, "body-too-large")
    );
    assert_eq!(
        start(h, &w.agent, GROUP, "mode=sideways").await.code(),
        "invalid-request"
    );
    assert_eq!(
        start(h, &w.agent, "grp-zzz", "mode=independent")
            .await
            .code(),
        "unknown-group"
    );
    assert_eq!(h.get(&format!("{base}/challenge")).await.code(), "no-round");

    // Both still serve real requests afterwards.
    let r = start(h, &w.agent, GROUP, "mode=independent").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(finished(h, &w.agent, GROUP).await["state"], "done");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_round_forwards_at_the_deadline_without_the_missing_members() {
    let mut w = world(1, &[]).await;
    let r = start(&w.http, &w.agent, SMALL, "mode=independent").await;
    assert_eq!(r.json()["expected"], 5);
    let late = w.small.split_off(3);
    answer_all(&w.http, &w.agent, SMALL, std::mem::take(&mut w.small)).await;
    let v = finished(&w.http, &w.agent, SMALL).await;
    assert_eq!(v["authenticated"].as_array().unwrap().len(), 3);
    let missing: Vec<String> = late.iter().map(|d| d.id().to_owned()).collect();
    assert_eq!(names(&v["missing"]), missing);
    let url = format!("{}/agent/v1/groups/{SMALL}/confirmations/small-4", w.agent);
    assert_eq!(w.http.get(&url).await.code(), "no-confirmation");
    let url = format!("{}/agent/v1/groups/{SMALL}/answers", w.agent);
    assert_eq!(
        w.http.post(&url, vec![1, 3]).await.code(),
        "malformed-message"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_server_and_agent_authenticate_a_group() {
    use palisade_provision::{DeviceRecord, GroupRecord, ProvisionState};
    let (s, g) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (sd, gd) = (s.path().to_str().unwrap(), g.path().to_str().unwrap());
    let server_pub_file = s.path().join("server.pub");
    let server_pub = bin_out(&[
        "group",
        "init",
        "--data",
        sd,
        "--out",
        server_pub_file.to_str().unwrap(),
    ]);
    let gw_pub = bin_out(&["group", "init", "--data", gd]);
    assert_eq!(
        gw_pub,
        bin_out(&["group", "init", "--data", gd]),
        "the key is kept"
    );
    let server_key: [u8; 32] = hex::decode(&server_pub).unwrap().try_into().unwrap();
    let gw_key: [u8; 32] = hex::decode(&gw_pub).unwrap().try_into().unwrap();

    let mut state = ProvisionState::default();
    let mut devices = Vec::new();
    for i in 0..4 {
        let (name, k) = (format!("d{i}"), generate_identity_key());
        let key = hex::encode(k.verifying_key().to_bytes());
        state.devices.insert(
            name.clone(),
            DeviceRecord {
                key,
                provider: "sp".into(),
            },
        );
        let held = if i == 2 { generate_identity_key() } else { k };
        let mut d = Device::new(&name, held, &server_key).unwrap();
        d.trust_gateway("gw-1", &gw_key).unwrap();
        devices.push(d);
    }
    let members = state.devices.keys().cloned().collect();
    state.gateway_groups.insert(
        GROUP.into(),
        GroupRecord {
            provider: "sp".into(),
            members,
        },
    );
    let registry = serde_json::json!({
        "server_id": "srv-1",
        "devices": state.devices.iter().map(|(d, r)| (d.clone(), r.key.clone())).collect::<std::collections::BTreeMap<_, _>>(),
        "groups": {GROUP: state.devices.keys().collect::<Vec<_>>()},
        "gateways": {"gw-1": {"public_key": gw_pub, "represents": [GROUP]}},
    });
    std::fs::write(s.path().join("group-registry.json"), registry.to_string()).unwrap();
    std::fs::create_dir_all(g.path().join("provision")).unwrap();
    std::fs::write(
        g.path().join("provision/trust.json"),
        r#"{"gateway_id":"gw-1"}"#,
    )
    .unwrap();
    std::fs::write(
        g.path().join("provision/state.json"),
        serde_json::to_vec(&state).unwrap(),
    )
    .unwrap();

    let (_server, hello) = run_bin(&["group", "server", "--listen", "127.0.0.1:0", "--data", sd]);
    assert_eq!(hello["public_key"], server_pub.as_str());
    let url = format!("http://{}", hello["listening"].as_str().unwrap());
    let (_agent, hello) = run_bin(&[
        "group",
        "agent",
        "--listen",
        "127.0.0.1:0",
        "--data",
        gd,
        "--server",
        &url,
        "--server-key",
        server_pub_file.to_str().unwrap(),
        "--round-deadline",
        "5",
    ]);
    assert_eq!(
        (hello["id"].as_str(), hello["members"].as_u64()),
        (Some("gw-1"), Some(4))
    );
    let agent = format!("http://{}", hello["listening"].as_str().unwrap());

    let http = Http::new();
    for mode in ["independent", "represented"] {
        let r = start(&http, &agent, GROUP, &format!("mode={mode}")).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        let (back, _, refused) = answer_all(&http, &agent, GROUP, devices).await;
        devices = back;
        assert_eq!(refused, ["d2"]);
        let v = finished(&http, &agent, GROUP).await;
        assert_eq!(v["state"], "done", "{mode}: {v}");
        assert_eq!(names(&v["authenticated"]), ["d0", "d1", "d3"], "{v}");
        assert_eq!(names(&v["rejected"]), ["d2"]);
    }
}

/// #16.6: the keys are used. Each device of an independent round sends a sealed message
/// through the gateway agent; the server opens it under the association it kept, its
/// application answers knowing the authenticated device, and the answer comes back sealed.
/// A recording proxy between agent and server shows the agent relayed exactly the device's
/// bytes, in which the plaintext does not appear; a replay and an unknown session are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sealed_messages_flow_end_to_end_through_an_agent_that_cannot_read_them() {
    let mut w = world(1, &[]).await;
    let seen: Recorded = Arc::default();
    let proxy = spawn(recording_proxy(w.server.clone(), seen.clone())).await;
    let mut a = AgentState::new("gw-1", Arc::new(w.gw1.clone()), &w.server_pub, &proxy)
        .unwrap()
        .with_round_deadline(ROUND_DEADLINE);
    for d in &w.small {
        a.add_member(SMALL, d.id(), &d.public_key()).unwrap();
    }
    let agent = spawn(agent_router(a)).await;
    start(&w.http, &agent, SMALL, "mode=independent").await;
    let small = std::mem::take(&mut w.small);
    let (mut devices, _, _) = answer_all(&w.http, &agent, SMALL, small).await;
    assert_eq!(finished(&w.http, &agent, SMALL).await["state"], "done");
    let relay = format!("{agent}/agent/v1/sealed");
    for (i, d) in devices.iter_mut().enumerate() {
        let url = format!("{agent}/agent/v1/groups/{SMALL}/confirmations/{}", d.id());
        let c = KeyConfirmation::from_bytes(&w.http.get(&url).await.body).unwrap();
        let mut channel = d.confirm(&c, now()).unwrap();
        let secret = format!("reading {i}: 21.{i} C");
        let sealed = channel.seal(secret.as_bytes()).unwrap().to_bytes();
        let r = w.http.post(&relay, sealed.clone()).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        let reply = channel
            .open(&SealedMessage::from_bytes(&r.body).unwrap())
            .unwrap();
        assert_eq!(reply, format!("{}@{SMALL}: {secret}", d.id()).into_bytes());
        {
            let seen = seen.lock().unwrap();
            let (path, relayed, answered) = seen.last().unwrap();
            assert_eq!(path, "/group/v1/sealed");
            assert_eq!(relayed, &sealed, "relayed unchanged");
            assert_eq!(answered, &r.body.to_vec());
            let has = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
            assert!(!has(relayed, secret.as_bytes()) && !has(answered, &reply[..8]));
        }
        // SER-012: the same message again is refused by the server's channel.
        let r = w.http.post(&relay, sealed).await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, "channel-error")
        );
    }
    let first = seen
        .lock()
        .unwrap()
        .iter()
        .find(|(p, _, _)| p == "/group/v1/sealed")
        .map(|(_, b, _)| b.clone())
        .unwrap();
    let mut forged = SealedMessage::from_bytes(&first).unwrap();
    forged.session = [0x55; 16];
    let r = w.http.post(&relay, forged.to_bytes()).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::NOT_FOUND, "unknown-session")
    );
}

/// #16.6, §12 of docs/group-auth-protocol.md: devices authenticated by the real CLI server
/// and agent (`--associations`) send oneM2M requests through a real `palisade serve` with
/// request proofs. In the app that opts in (`group_authenticated = true`) a valid proof makes
/// the request authenticated (an ACP rule with `acaf` permits it, the audit says `group`);
/// a replayed counter, a changed request, another originator's proof and an unknown
/// association are refused 4106 before the plugins; the app that does not opt in ignores the
/// proof (4103 by the same rule). The CSE never sees the proof header.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn group_authenticated_devices_are_authenticated_originators_at_the_proxy() {
    use crate::support::server::{Answer, Gateway as Serve, StandInCse};
    use palisade_group::ProofRequest;
    use palisade_provision::{DeviceRecord, GroupRecord, ProvisionState};
    use sha2::{Digest, Sha256};

    let (s, g) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (sd, gd) = (s.path().to_str().unwrap(), g.path().to_str().unwrap());
    let server_pub_file = s.path().join("server.pub");
    let server_pub = bin_out(&[
        "group",
        "init",
        "--data",
        sd,
        "--out",
        server_pub_file.to_str().unwrap(),
    ]);
    let gw_pub = bin_out(&["group", "init", "--data", gd]);
    let server_key: [u8; 32] = hex::decode(&server_pub).unwrap().try_into().unwrap();
    let gw_key: [u8; 32] = hex::decode(&gw_pub).unwrap().try_into().unwrap();
    let mut state = ProvisionState::default();
    let (mut devices, mut keys) = (Vec::new(), Vec::new());
    for i in 0..2 {
        let (name, k) = (format!("CAE-d{i}"), generate_identity_key());
        state.devices.insert(
            name.clone(),
            DeviceRecord {
                key: hex::encode(k.verifying_key().to_bytes()),
                provider: "sp".into(),
            },
        );
        let mut d = Device::new(&name, k.clone(), &server_key).unwrap();
        d.trust_gateway("gw-1", &gw_key).unwrap();
        devices.push(d);
        keys.push(k);
    }
    state.gateway_groups.insert(
        GROUP.into(),
        GroupRecord {
            provider: "sp".into(),
            members: state.devices.keys().cloned().collect(),
        },
    );
    let registry = serde_json::json!({
        "server_id": "srv-1",
        "devices": state.devices.iter().map(|(d, r)| (d.clone(), r.key.clone())).collect::<std::collections::BTreeMap<_, _>>(),
        "groups": {GROUP: state.devices.keys().collect::<Vec<_>>()},
        "gateways": {"gw-1": {"public_key": gw_pub, "represents": [GROUP]}},
    });
    std::fs::write(s.path().join("group-registry.json"), registry.to_string()).unwrap();
    std::fs::create_dir_all(g.path().join("provision")).unwrap();
    std::fs::write(
        g.path().join("provision/trust.json"),
        r#"{"gateway_id":"gw-1"}"#,
    )
    .unwrap();
    std::fs::write(
        g.path().join("provision/state.json"),
        serde_json::to_vec(&state).unwrap(),
    )
    .unwrap();
    let associations = g.path().join("associations.json");

    // The proxy starts first: it accepts only associations made after it started.
    let cse = StandInCse::start(|_| Answer::json(200, 2000, r#"{"m2m:cin":{"con":"1"}}"#));
    let rule = r#"{ policies = [ { id = "p", pv = { acr = [ { acor = ["all"], acop = 63, acaf = true } ] } } ] }"#;
    let config = format!(
        r#"
group_associations = "{}"
[upstream]
url = "{}"
[[app]]
name = "meters"
paths = ["/cse-in/meters"]
group_authenticated = true
[[app.plugin]]
plugin = "acp"
config = {rule}
[[app]]
name = "others"
paths = ["/cse-in/others"]
[[app.plugin]]
plugin = "acp"
config = {rule}
"#,
        associations.display(),
        cse.url()
    );
    let proxy = tokio::task::spawn_blocking(move || Serve::start(&config, &[]))
        .await
        .unwrap();

    let (_server, hello) = run_bin(&["group", "server", "--listen", "127.0.0.1:0", "--data", sd]);
    let url = format!("http://{}", hello["listening"].as_str().unwrap());
    let (_agent, hello) = run_bin(&[
        "group",
        "agent",
        "--listen",
        "127.0.0.1:0",
        "--data",
        gd,
        "--server",
        &url,
        "--server-key",
        server_pub_file.to_str().unwrap(),
        "--round-deadline",
        "5",
        "--associations",
        associations.to_str().unwrap(),
    ]);
    let agent = format!("http://{}", hello["listening"].as_str().unwrap());
    let http = Http::new();
    let r = start(&http, &agent, GROUP, "mode=independent").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let challenge = http
        .get(&format!(
            "{agent}/agent/v1/groups/{GROUP}/challenge?mode=independent"
        ))
        .await;
    let association: [u8; 32] = Sha256::digest(&challenge.body).into();
    let (_, _, refused) = answer_round(&http, &agent, GROUP, "mode=independent", devices).await;
    assert!(refused.is_empty());
    let v = finished(&http, &agent, GROUP).await;
    assert_eq!(names(&v["authenticated"]), ["CAE-d0", "CAE-d1"], "{v}");

    let proof = move |key: &SigningKey,
                      device: &str,
                      originator: &str,
                      counter: u64,
                      target: &str,
                      ri: &str| {
        let req = ProofRequest {
            gateway: "gw-1",
            association,
            device,
            counter,
            method: "GET",
            target,
            originator,
            request_id: ri,
            body_digest: ProofRequest::body_digest(b""),
        };
        req.header(&req.sign(key).unwrap())
    };
    let (results, mut proxy) = tokio::task::spawn_blocking(move || {
        let get = |path: &str, origin: &str, ri: &str, proof: Option<&str>| {
            let mut headers = vec![("X-M2M-Origin", origin), ("X-M2M-RI", ri)];
            if let Some(p) = proof {
                headers.push(("X-Palisade-Group-Proof", p));
            }
            let r = proxy.request("GET", path, &headers, b"");
            (
                r.status,
                r.header("x-m2m-rsc").unwrap_or("").to_owned(),
                r.header("x-palisade-decision-id").unwrap_or("").to_owned(),
            )
        };
        let path = "/cse-in/meters/cnt";
        let good = proof(&keys[0], "CAE-d0", "CAE-d0", 0, path, "r1");
        let results = vec![
            ("valid", get(path, "CAE-d0", "r1", Some(&good))),
            ("replayed", get(path, "CAE-d0", "r1", Some(&good))),
            (
                "changed request",
                get(
                    "/cse-in/meters/other",
                    "CAE-d0",
                    "r1",
                    Some(&proof(&keys[0], "CAE-d0", "CAE-d0", 1, path, "r1")),
                ),
            ),
            (
                "other originator",
                get(
                    path,
                    "CAE-d0",
                    "r2",
                    Some(&proof(&keys[1], "CAE-d0", "CAE-d0", 2, path, "r2")),
                ),
            ),
            ("no proof", get(path, "CAE-d1", "r3", None)),
            (
                "not opted in",
                get(
                    "/cse-in/others/x",
                    "CAE-d1",
                    "r4",
                    Some(&proof(
                        &keys[1],
                        "CAE-d1",
                        "CAE-d1",
                        0,
                        "/cse-in/others/x",
                        "r4",
                    )),
                ),
            ),
            (
                "second device",
                get(
                    path,
                    "CAE-d1",
                    "r5",
                    Some(&proof(&keys[1], "CAE-d1", "CAE-d1", 0, path, "r5")),
                ),
            ),
        ];
        (results, proxy)
    })
    .await
    .unwrap();
    let outcome: Vec<(&str, u16, &str)> = results
        .iter()
        .map(|(what, (status, rsc, _))| (*what, *status, rsc.as_str()))
        .collect();
    assert_eq!(
        outcome,
        [
            ("valid", 200, "2000"),
            ("replayed", 403, "4106"),
            ("changed request", 403, "4106"),
            ("other originator", 403, "4106"),
            ("no proof", 403, "4103"),
            ("not opted in", 403, "4103"),
            ("second device", 200, "2000"),
        ]
    );
    let received = cse.received.lock().unwrap();
    assert_eq!(received.len(), 2);
    assert!(received
        .iter()
        .all(|r| !r.headers.contains_key("x-palisade-group-proof")));
    drop(received);
    let metrics = proxy.metrics();
    for reason in ["group-proof-replayed", "group-proof-bad-signature"] {
        assert!(
            metrics.contains(&format!("reason=\"{reason}\"")),
            "{reason}: {metrics}"
        );
    }
    let data = proxy.data_dir();
    assert!(proxy.terminate().success());
    let audit = std::fs::read_to_string(data.join("audit/audit.log")).unwrap();
    let record = |id: &str| -> Value {
        let line = audit.lines().find(|l| l.contains(id)).expect("audited");
        serde_json::from_str::<Value>(line).unwrap()["payload"].clone()
    };
    let valid = record(&results[0].1 .2);
    assert_eq!(valid["originator_auth"], "group", "{valid}");
    let replayed = record(&results[1].1 .2);
    assert_eq!(replayed["originator_auth"], "group");
    assert!(replayed["reason"]
        .as_str()
        .unwrap()
        .contains("used or is too old"));
    assert_eq!(record(&results[5].1 .2)["originator_auth"], "claimed");
}
