//! The gateway's own view of the upstream CSE (`[upstream.lookup]`, api/cse_lookup.rs)
//! through a real `palisade serve`: the target's resource type for a CREATE and the members
//! of an app's `cse_groups`, learned by RETRIEVEs made as the gateway, cached, asked once
//! for a burst, dropped after a DELETE or UPDATE through the proxy, and unknown (never
//! guessed) when the CSE does not answer usefully.
//!
//! First against a stand-in CSE (a real HTTP server on 127.0.0.1 whose every received
//! request the test reads), then against the real ACME CSE (`support/cse.rs`; skipped with
//! a message when it is not installed, failed when `CI` is set).

use crate::support::admin as admin_common;
use crate::support::cse;
use crate::support::server;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use server::{Answer, Gateway, Received, StandInCse};

fn onem2m<'a>(origin: &'a str, ri: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("X-M2M-Origin", origin),
        ("X-M2M-RI", ri),
        ("X-M2M-RVI", "3"),
    ]
}

fn create_headers<'a>(origin: &'a str, ri: &'a str, ty: &'a str) -> Vec<(&'a str, &'a str)> {
    let mut headers = onem2m(origin, ri);
    headers.push(("Content-Type", ty));
    headers
}

/// The gateway's look-ups among what the CSE received.
fn lookups(cse: &StandInCse) -> Vec<Received> {
    cse.received
        .lock()
        .unwrap()
        .iter()
        .filter(|r| {
            r.headers
                .get("x-m2m-ri")
                .is_some_and(|ri| ri.starts_with("palisade-lookup-"))
        })
        .cloned()
        .collect()
}

fn forwarded(cse: &StandInCse, method: &str) -> usize {
    cse.received
        .lock()
        .unwrap()
        .iter()
        .filter(|r| {
            r.method == method
                && !r
                    .headers
                    .get("x-m2m-ri")
                    .is_some_and(|ri| ri.starts_with("palisade-lookup-"))
        })
        .count()
}

/// The value of one `palisade_cse_lookups_total` series (0 when absent).
fn lookup_count(gateway: &Gateway, kind: &str, outcome: &str) -> u64 {
    let series = format!("palisade_cse_lookups_total{{kind=\"{kind}\",outcome=\"{outcome}\"}} ");
    gateway
        .metrics()
        .lines()
        .find_map(|line| line.strip_prefix(&series).map(|v| v.parse().unwrap()))
        .unwrap_or(0)
}

const ALLOW_ALL: &str = r#"{"policies":[{"id":"all","pv":{"acr":[{"acor":["all"],"acop":63}]}}]}"#;

fn gateway_with(cse: &StandInCse, lookup: &str, app: &str, files: &[(&str, &str)]) -> Gateway {
    let config = format!(
        r#"
[upstream]
url = "{}"
timeout_ms = 3000
connect_timeout_ms = 500
[upstream.lookup]
{lookup}

{app}
"#,
        cse.url()
    );
    Gateway::start(&config, files)
}

fn allow_all_app() -> &'static str {
    r#"
[[app]]
name = "lights"
paths = ["/cse-in/lights"]
consent_real_identities = true
[[app.plugin]]
plugin = "acp"
config_file = "policy.json"
"#
}

fn container_cse() -> StandInCse {
    StandInCse::start(|request| match request.method.as_str() {
        "GET" => Answer::json(
            200,
            2000,
            r#"{"m2m:cnt":{"ty":3,"ri":"cnt123","rn":"c1","pi":"cse-in"}}"#,
        ),
        "POST" => Answer::json(201, 2001, r#"{"m2m:cin":{"rn":"x"}}"#),
        _ => Answer::json(200, 2000, "{}"),
    })
}

#[test]
fn the_target_type_is_retrieved_as_the_gateway_with_nothing_of_the_client() {
    let cse = container_cse();
    let gateway = gateway_with(
        &cse,
        "originator = \"/id-gw\"",
        allow_all_app(),
        &[("policy.json", ALLOW_ALL)],
    );
    let mut headers = create_headers("CAE1", "client-ri-1", "application/json;ty=4");
    headers.push(("Authorization", "Bearer secret-of-the-client"));
    headers.push(("X-M2M-RTU", "http://client.example/notify"));
    let response = gateway.request(
        "POST",
        "/cse-in/lights/c%31?rcn=9&lbl=x",
        &headers,
        br#"{"m2m:cin":{"con":"on"}}"#,
    );
    assert_eq!(response.status, 201, "{}", response.text());
    let seen = lookups(&cse);
    assert_eq!(seen.len(), 1, "one look-up: {seen:?}");
    let lookup = &seen[0];
    // The normalised target path, the gateway's own query, originator and request id.
    assert_eq!(
        (lookup.method.as_str(), lookup.path.as_str()),
        ("GET", "/cse-in/lights/c1?rcn=1")
    );
    assert_eq!(lookup.headers["x-m2m-origin"], "/id-gw");
    assert_eq!(lookup.headers["x-m2m-rvi"], "3");
    assert!(lookup.body.is_empty());
    for client_header in ["authorization", "x-m2m-rtu", "content-type"] {
        assert!(
            !lookup.headers.contains_key(client_header),
            "{client_header} reached the look-up: {lookup:?}"
        );
    }
    // Retrievals and other operations need no type: no look-up for them.
    let got = gateway.request("GET", "/cse-in/lights/c1", &onem2m("CAE1", "r2"), b"");
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(lookups(&cse).len(), 1);
    assert_eq!(lookup_count(&gateway, "type", "ok"), 1);
}

#[test]
fn a_learned_type_is_cached_until_a_delete_through_the_proxy() {
    let cse = container_cse();
    let gateway = gateway_with(
        &cse,
        "originator = \"/id-gw\"",
        allow_all_app(),
        &[("policy.json", ALLOW_ALL)],
    );
    let create = |ri: &str| {
        let response = gateway.request(
            "POST",
            "/cse-in/lights/c1",
            &create_headers("CAE1", ri, "application/json;ty=4"),
            b"{}",
        );
        assert_eq!(response.status, 201, "{}", response.text());
    };
    for ri in ["a", "b", "c"] {
        create(ri);
    }
    assert_eq!(lookups(&cse).len(), 1, "cached after the first");
    assert_eq!(lookup_count(&gateway, "type", "cached"), 2);
    // An UPDATE cannot change a type: the cache stays.
    let update = gateway.request("PUT", "/cse-in/lights/c1", &onem2m("CAE1", "u"), b"{}");
    assert_eq!(update.status, 200, "{}", update.text());
    create("d");
    assert_eq!(lookups(&cse).len(), 1);
    // A DELETE of anything through the proxy: the path may come back as another type.
    let delete = gateway.request("DELETE", "/cse-in/lights/c9", &onem2m("CAE1", "x"), b"");
    assert_eq!(delete.status, 200, "{}", delete.text());
    create("e");
    assert_eq!(lookups(&cse).len(), 2, "asked again after the delete");
    assert_eq!(forwarded(&cse, "POST"), 5);
}

#[test]
fn a_burst_for_one_target_makes_one_lookup() {
    let cse = StandInCse::start(|request| match request.method.as_str() {
        "GET" => {
            let mut answer = Answer::json(200, 2000, r#"{"m2m:cnt":{"ty":3}}"#);
            // Slow enough that the whole burst arrives while it is running.
            answer.delay = Duration::from_millis(800);
            answer
        }
        _ => Answer::json(201, 2001, "{}"),
    });
    let gateway = gateway_with(
        &cse,
        "originator = \"/id-gw\"",
        allow_all_app(),
        &[("policy.json", ALLOW_ALL)],
    );
    let gateway = Arc::new(gateway);
    let threads: Vec<_> = (0..8)
        .map(|index| {
            let gateway = gateway.clone();
            std::thread::spawn(move || {
                let ri = format!("burst-{index}");
                gateway
                    .request(
                        "POST",
                        "/cse-in/lights/c1",
                        &create_headers("CAE1", &ri, "application/json;ty=4"),
                        b"{}",
                    )
                    .status
            })
        })
        .collect();
    for thread in threads {
        assert_eq!(thread.join().unwrap(), 201);
    }
    assert_eq!(lookups(&cse).len(), 1, "{:?}", lookups(&cse));
    assert_eq!(forwarded(&cse, "POST"), 8);
}

#[test]
fn what_the_cse_does_not_say_stays_unknown_and_is_counted() {
    // Each parent answers the look-up differently; every create still reaches the CSE (the
    // allow-all policy has no acod), with the type unknown.
    let cse = StandInCse::start(|request| {
        if request.method != "GET" {
            return Answer::json(201, 2001, "{}");
        }
        if request.path.starts_with("/cse-in/lights/missing") {
            Answer::json(404, 4004, r#"{"m2m:dbg":"not found"}"#)
        } else if request.path.starts_with("/cse-in/lights/forbidden") {
            Answer::json(403, 4103, r#"{"m2m:dbg":"no privilege"}"#)
        } else if request.path.starts_with("/cse-in/lights/odd") {
            Answer::json(200, 2000, r#"{"m2m:cnt":{"ty":"three"}}"#)
        } else if request.path.starts_with("/cse-in/lights/huge") {
            let big = "x".repeat(8 << 10);
            Answer::json(
                200,
                2000,
                &format!(r#"{{"m2m:cnt":{{"ty":3,"lbl":["{big}"]}}}}"#),
            )
        } else {
            let mut answer = Answer::json(200, 2000, r#"{"m2m:cnt":{"ty":3}}"#);
            answer.delay = Duration::from_secs(3);
            answer
        }
    });
    let gateway = gateway_with(
        &cse,
        "originator = \"/id-gw\"\ntimeout_ms = 300\nmax_response_bytes = 4096",
        allow_all_app(),
        &[("policy.json", ALLOW_ALL)],
    );
    for (parent, outcome) in [
        ("missing", "not-found"),
        ("forbidden", "refused"),
        ("odd", "unparseable"),
        ("huge", "too-large"),
        ("slow", "timeout"),
    ] {
        let response = gateway.request(
            "POST",
            &format!("/cse-in/lights/{parent}"),
            &create_headers("CAE1", parent, "application/json;ty=4"),
            b"{}",
        );
        assert_eq!(response.status, 201, "{parent}: {}", response.text());
        assert_eq!(lookup_count(&gateway, "type", outcome), 1, "{parent}");
    }
    // Failures are not cached: the next create asks again.
    let again = gateway.request(
        "POST",
        "/cse-in/lights/missing",
        &create_headers("CAE1", "again", "application/json;ty=4"),
        b"{}",
    );
    assert_eq!(again.status, 201);
    assert_eq!(lookup_count(&gateway, "type", "not-found"), 2);
    let log = gateway.stderr.lock().unwrap().clone() + &gateway.stdout.lock().unwrap().join("\n");
    assert!(
        log.contains("the target's resource type is unknown to this decision"),
        "{log}"
    );
}

/// A stand-in CSE holding `<group>` resources, changeable while the test runs.
fn group_cse(groups: Arc<Mutex<serde_json::Value>>) -> StandInCse {
    StandInCse::start(move |request| {
        let path = request.path.split('?').next().unwrap_or("");
        match request.method.as_str() {
            "GET" if request.headers.get("x-m2m-origin").map(String::as_str) == Some("CAdmin") => {
                let id = path
                    .strip_prefix("/~/id-in/")
                    .or_else(|| path.strip_prefix("/_/acme.example/id-in/"))
                    .or_else(|| path.strip_prefix('/'))
                    .unwrap_or(path);
                match groups.lock().unwrap().get(id) {
                    Some(group) => {
                        Answer::json(200, 2000, &json!({ "m2m:grp": group }).to_string())
                    }
                    None => Answer::json(404, 4004, "{}"),
                }
            }
            "PUT" => Answer::json(200, 2004, "{}"),
            _ => Answer::json(200, 2000, r#"{"m2m:cin":{"con":"on"}}"#),
        }
    })
}

fn group_gateway(cse: &StandInCse, extra: &str) -> Gateway {
    let policy = r#"{"policies":[{"id":"grp","pv":{"acr":[
      {"acor":["/id-in/grp1", "//acme.example/id-in/grp2"],"acop":2},
      {"acor":["originator:CAdmin"],"acop":63}
    ]}}]}"#;
    // Pseudonymous (the default): the members from the CSE are compared as pseudonyms.
    let app = r#"
[[app]]
name = "lights"
paths = ["/cse-in/lights", "/~/id-in"]
cse_groups = ["/id-in/grp1", "//acme.example/id-in/grp2"]
[[app.plugin]]
plugin = "acp"
config_file = "policy.json"
capabilities = ["groups"]
"#;
    gateway_with(
        cse,
        &format!(
            "originator = \"CAdmin\"\ncse_id = \"/id-in\"\nsp_id = \"//acme.example\"\n{extra}"
        ),
        app,
        &[("policy.json", policy)],
    )
}

#[test]
fn cse_group_members_are_granted_nested_groups_followed_and_updates_seen() {
    let groups = Arc::new(Mutex::new(json!({
        "grp1": {"ty": 9, "ri": "grp1", "rn": "grp1", "mt": 2, "mid": ["CAE1", "/id-in/CAE2"]},
        // grp2 holds groups: grp3 directly, grp4 through its fan-out point; grp3 loops back.
        "grp2": {"ty": 9, "ri": "grp2", "rn": "grp2", "mt": 9, "mid": ["grp3", "grp4/fopt"]},
        "grp3": {"ty": 9, "ri": "grp3", "rn": "grp3", "mt": 24, "mid": ["CAE5", "grp2"]},
        "grp4": {"ty": 9, "ri": "grp4", "rn": "grp4", "mt": 2, "mid": ["//acme.example/id-in/CAE6"]},
    })));
    let cse = group_cse(groups.clone());
    let gateway = group_gateway(&cse, "");
    let get = |origin: &str| {
        gateway
            .request("GET", "/cse-in/lights/lamp", &onem2m(origin, "r"), b"")
            .status
    };
    // Members in every spelling of this CSE's IDs.
    assert_eq!(get("CAE1"), 200);
    assert_eq!(get("/id-in/CAE1"), 200);
    assert_eq!(get("CAE2"), 200);
    // Nested (grp2 → grp3, grp2 → grp4/fopt), the cycle grp3 → grp2 visited once.
    assert_eq!(get("CAE5"), 200);
    assert_eq!(get("/id-in/CAE6"), 200);
    // Not a member, and a group's own ID is not a member of itself.
    assert_eq!(get("CAE9"), 403);
    assert_eq!(get("grp3"), 403);
    let reads = lookups(&cse).len();
    assert_eq!(reads, 5, "grp1, grp2, grp3, grp4, mixed member CAE5");
    // The gateway's admin changes grp1's members through the proxy: the group is read again.
    groups.lock().unwrap()["grp1"]["mid"] = json!(["CAE9"]);
    let update = gateway.request(
        "PUT",
        "/~/id-in/grp1",
        &create_headers("CAdmin", "u1", "application/json"),
        br#"{"m2m:grp":{"mid":["CAE9"]}}"#,
    );
    assert_eq!(update.status, 200, "{}", update.text());
    assert_eq!(get("CAE9"), 200);
    assert_eq!(get("CAE1"), 403);
    assert_eq!(lookups(&cse).len(), reads + 1, "only grp1 again");
}

#[test]
fn a_group_over_its_bounds_or_unreadable_grants_nobody() {
    let many: Vec<String> = (0..40).map(|i| format!("CAE{i}")).collect();
    let groups = Arc::new(Mutex::new(json!({
        "grp1": {"ty": 9, "ri": "grp1", "mt": 2, "mid": many},
        // grp2 is not there at all (404).
    })));
    let cse = group_cse(groups.clone());
    let gateway = group_gateway(&cse, "group_max_members = 16");
    let status = gateway
        .request("GET", "/cse-in/lights/lamp", &onem2m("CAE1", "r"), b"")
        .status;
    assert_eq!(status, 403);
    assert_eq!(lookup_count(&gateway, "group", "over-bound"), 1);
    assert_eq!(lookup_count(&gateway, "group", "not-found"), 1);
    assert_eq!(forwarded(&cse, "GET"), 0, "denied at the gateway");
    // Within the bound the same members are granted.
    groups.lock().unwrap()["grp1"]["mid"] = json!(["CAE1"]);
    let gateway = group_gateway(&cse, "group_max_members = 16");
    let status = gateway
        .request("GET", "/cse-in/lights/lamp", &onem2m("CAE1", "r"), b"")
        .status;
    assert_eq!(status, 200);
}

#[test]
fn lookup_settings_are_refused_with_their_place() {
    let cse = container_cse();
    // `palisade serve` must refuse the file before listening, naming the place.
    let start = |config: &str| {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("policy.json"), ALLOW_ALL).unwrap();
        let file = dir.path().join("gw.toml");
        std::fs::write(&file, config).unwrap();
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_palisade"))
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(&file)
            .arg("--data")
            .arg(dir.path().join("data"))
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{output:?}");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let base = format!("[upstream]\nurl = \"{}\"\n", cse.url());
    let app = "[[app]]\nname = \"a\"\npaths = [\"/cse-in/a\"]\n";
    let error = start(&format!(
        "{base}{app}cse_groups = [\"/id-in/grp1\"]\n[[app.plugin]]\nplugin = \"acp\"\nconfig_file = \"policy.json\"\n"
    ));
    assert!(
        error.contains("app[0].cse_groups[0]") && error.contains("[upstream.lookup]"),
        "{error}"
    );
    let error = start(&format!(
        "{base}[upstream.lookup]\noriginator = \"/id-gw\"\n{app}cse_groups = [\"/id-in/../x\"]\n[[app.plugin]]\nplugin = \"acp\"\nconfig_file = \"policy.json\"\n"
    ));
    assert!(error.contains("is not a group resource ID"), "{error}");
    let error = start(&format!(
        "{base}[upstream.lookup]\noriginator = \"has space\"\n"
    ));
    assert!(error.contains("upstream.lookup.originator"), "{error}");
    let error = start(&format!(
        "{base}[upstream.lookup]\noriginator = \"x\"\ncse_id = \"id-in\"\n"
    ));
    assert!(
        error.contains("upstream.lookup") && error.contains("cse_id"),
        "{error}"
    );
}

// ---------------------------------------------------------------- against the real ACME CSE

fn created(response: &server::Response) {
    assert_eq!(
        response.header("x-m2m-rsc"),
        Some("2001"),
        "{} {}",
        response.status,
        response.text()
    );
}

fn register(cse: &cse::AcmeCse, origin: &str, rn: &str) {
    created(&cse.create(
        &cse.base(),
        Some(origin),
        2,
        &json!({"m2m:ae": {"rn": rn, "api": format!("N{rn}"), "rr": false, "srv": ["3"]}}),
    ));
}

#[test]
fn real_cse_a_child_create_is_allowed_by_the_parents_type_and_a_delete_drops_it() {
    let Some(cse) = cse::AcmeCse::start("real_cse_acod_target_type") else {
        return;
    };
    let base = cse.base();
    register(&cse, "Cowner", "owner");
    let owner = format!("{base}/owner");
    let cnt = |rn: &str| json!({"m2m:cnt": {"rn": rn}});
    created(&cse.create(&owner, Some("Cowner"), 3, &cnt("box")));
    // Creating a contentInstance is allowed where the parent is a container (acod ty 3);
    // everything but create is allowed to everyone.
    let policy = r#"{"policies":[{"id":"box","pv":{"acr":[
      {"acor":["all"],"acop":1,"acod":[{"chty":[4],"ty":3}]},
      {"acor":["all"],"acop":62}
    ]}}]}"#;
    let app = format!(
        "[[app]]\nname = \"boxes\"\npaths = [\"{base}\"]\nconsent_real_identities = true\n[[app.plugin]]\nplugin = \"acp\"\nconfig_file = \"policy.json\"\n"
    );
    let gateway = gateway_for(&cse, "originator = \"CAdmin\"", &app, policy);
    let post = |parent: &str, ty: &str, body: serde_json::Value| {
        gateway.request(
            "POST",
            parent,
            &create_headers("Cowner", "c", ty),
            body.to_string().as_bytes(),
        )
    };
    let cin = |rn: &str| json!({"m2m:cin": {"rn": rn, "con": "on"}});
    let box_path = format!("{owner}/box");
    created(&post(&box_path, "application/json;ty=4", cin("c1")));
    assert!(cse.state(&format!("{box_path}/c1")).is_some());
    // Another child type, or the same child under another parent type: the gateway denies.
    let refused = post(&box_path, "application/json;ty=3", cnt("inner"));
    assert_eq!(
        refused.header("x-m2m-rsc"),
        Some("4103"),
        "{}",
        refused.text()
    );
    assert!(cse.state(&format!("{box_path}/inner")).is_none());
    let refused = post(&owner, "application/json;ty=4", cin("c2"));
    assert_eq!(
        refused.header("x-m2m-rsc"),
        Some("4103"),
        "{}",
        refused.text()
    );
    assert!(cse.state(&format!("{owner}/c2")).is_none());
    assert_eq!(
        lookup_count(&gateway, "type", "ok"),
        2,
        "box and owner, once each"
    );
    // The box is deleted through the gateway and comes back as a <group>: the type learned
    // before the delete is not used.
    let deleted = gateway.request("DELETE", &box_path, &onem2m("Cowner", "d"), b"");
    assert_eq!(
        deleted.header("x-m2m-rsc"),
        Some("2002"),
        "{}",
        deleted.text()
    );
    let ae_ri = cse.state(&owner).unwrap()["m2m:ae"]["ri"].clone();
    created(&cse.create(
        &owner,
        Some("Cowner"),
        9,
        &json!({"m2m:grp": {"rn": "box", "mt": 2, "mnm": 5, "mid": [ae_ri]}}),
    ));
    let refused = post(&box_path, "application/json;ty=4", cin("c3"));
    assert_eq!(
        refused.header("x-m2m-rsc"),
        Some("4103"),
        "{}",
        refused.text()
    );
    assert_eq!(
        lookup_count(&gateway, "type", "ok"),
        3,
        "asked again after the delete"
    );
}

fn gateway_for(cse: &cse::AcmeCse, lookup: &str, app: &str, policy: &str) -> Gateway {
    let config = format!(
        "[upstream]\nurl = \"{}\"\ntimeout_ms = 5000\n[upstream.lookup]\n{lookup}\ntimeout_ms = 3000\n\n{app}",
        cse.url()
    );
    Gateway::start(&config, &[("policy.json", policy)])
}

#[test]
fn real_cse_group_members_and_nested_group_members_are_granted() {
    let Some(cse) = cse::AcmeCse::start("real_cse_groups") else {
        return;
    };
    let base = cse.base();
    for (origin, rn) in [
        ("Cmember", "member"),
        ("Cnested", "nested"),
        ("Cother", "other"),
    ] {
        register(&cse, origin, rn);
    }
    let ri = |path: &str| {
        let state = cse.state(path).unwrap();
        let resource = state.as_object().unwrap().values().next().unwrap().clone();
        resource["ri"].clone()
    };
    let group = |rn: &str, mt: u32, mid: Vec<serde_json::Value>| {
        created(&cse.create(
            &base,
            Some("CAdmin"),
            9,
            &json!({"m2m:grp": {"rn": rn, "mt": mt, "mnm": 10, "mid": mid}}),
        ));
    };
    group("grp1", 2, vec![ri(&format!("{base}/member"))]);
    group("grp3", 2, vec![ri(&format!("{base}/nested"))]);
    group("grp2", 9, vec![ri(&format!("{base}/grp3"))]);
    created(&cse.create(
        &base,
        Some("CAdmin"),
        3,
        &json!({"m2m:cnt": {"rn": "data"}}),
    ));
    let (grp1, grp2) = (
        format!("{}{base}/grp1", cse.cse_id()),
        format!("{}{base}/grp2", cse.cse_id()),
    );
    let policy = format!(
        r#"{{"policies":[{{"id":"data","pv":{{"acr":[{{"acor":["{grp1}","{grp2}"],"acop":2}}]}}}}]}}"#
    );
    // Pseudonymous app (the default): the CSE's members are compared as pseudonyms.
    let app = format!(
        "[[app]]\nname = \"data\"\npaths = [\"{base}/data\"]\ncse_groups = [\"{grp1}\", \"{grp2}\"]\n[[app.plugin]]\nplugin = \"acp\"\nconfig_file = \"policy.json\"\ncapabilities = [\"groups\"]\n"
    );
    let gateway = gateway_for(
        &cse,
        &format!("originator = \"CAdmin\"\ncse_id = \"{}\"", cse.cse_id()),
        &app,
        &policy,
    );
    let get = |origin: &str| {
        let response = gateway.request("GET", &format!("{base}/data"), &onem2m(origin, "g"), b"");
        (
            response.header("x-m2m-rsc").map(str::to_string),
            response.text(),
        )
    };
    let (rsc, text) = get("Cmember");
    assert_eq!(rsc.as_deref(), Some("2000"), "{text}");
    let (rsc, text) = get("Cnested");
    assert_eq!(rsc.as_deref(), Some("2000"), "nested: {text}");
    let (rsc, text) = get("Cother");
    assert_eq!(rsc.as_deref(), Some("4103"), "{text}");
    assert_eq!(
        lookup_count(&gateway, "group", "ok"),
        2,
        "{}",
        gateway.metrics()
    );
}

// ---------------------------------------------------------------- the provisioned directory

/// Group members from provision bundles (SER-019..021) answer the `groups` capability, for
/// standard group IDs and the `<name>` alias, pseudonymized like the app's originators, and
/// survive a restart; a bundle's empty member list takes them away.
#[test]
fn provisioned_group_members_are_granted_and_withdrawn() {
    let keys = admin_common::Keys::new();
    let config = r#"
[admin]
trust_roots = ["root.pub"]
admin_keys = ["admin.pub"]

[[app]]
name = "lights"
paths = ["/cse-in/lights"]
[[app.plugin]]
name = "policy"
plugin = "acp"
capabilities = ["groups"]
config = { policies = [ { id = "p", pv = { acr = [ { acor = ["/id-in/grp-field", "<grp-ops>"], acop = 2 } ] } } ] }
"#;
    let gateway = admin_common::start_with(&keys, config);
    let dir = gateway.dir.path().to_path_buf();
    admin_common::prepare_provisioning(&gateway, &["lights"]);
    let gateway = gateway.restart();
    let bundle = |sequence: &str, groups: serde_json::Value| {
        std::fs::write(dir.join("groups.json"), groups.to_string()).unwrap();
        let out = format!("b{sequence}.bin");
        admin_common::palisade(
            &[
                "provision",
                "create",
                "--provider-key",
                "sp.key",
                "--provider-id",
                "sp-1",
                "--gateway-id",
                "gw-1",
                "--gateway-x25519",
                "gw.x25519.pub",
                "--groups",
                "groups.json",
                "--sequence",
                sequence,
                "--out",
                &out,
            ],
            &dir,
        );
        std::fs::read(dir.join(out)).unwrap()
    };
    let apply = |gateway: &Gateway, bundle: &[u8]| {
        let applied =
            admin_common::admin(gateway, &keys.admin, "POST", "/admin/v1/provision", bundle);
        assert_eq!(applied.status, 200, "{}", applied.text());
    };
    // Permitted requests find no upstream (5103); denied ones are 4103.
    let rsc = |gateway: &Gateway, origin: &str| {
        gateway
            .request("GET", "/cse-in/lights/lamp", &onem2m(origin, "p"), b"")
            .header("x-m2m-rsc")
            .map(str::to_string)
    };
    assert_eq!(rsc(&gateway, "Cfield").as_deref(), Some("4103"));
    apply(
        &gateway,
        &bundle(
            "1",
            json!({"apps": {"lights": {"/id-in/grp-field": ["Cfield"], "grp-ops": ["Cops"]}}}),
        ),
    );
    assert_eq!(rsc(&gateway, "Cfield").as_deref(), Some("5103"));
    assert_eq!(rsc(&gateway, "Cops").as_deref(), Some("5103"));
    assert_eq!(rsc(&gateway, "Cnobody").as_deref(), Some("4103"));
    let gateway = gateway.restart();
    assert_eq!(
        rsc(&gateway, "Cfield").as_deref(),
        Some("5103"),
        "kept across a restart"
    );
    apply(
        &gateway,
        &bundle("2", json!({"apps": {"lights": {"/id-in/grp-field": []}}})),
    );
    assert_eq!(rsc(&gateway, "Cfield").as_deref(), Some("4103"));
    assert_eq!(rsc(&gateway, "Cops").as_deref(), Some("5103"));
}

#[test]
fn nesting_is_followed_to_group_depth_and_within_group_max_lookups() {
    // grp1 → grpA → grpB → CAE3: CAE3 is two nesting levels below grp1.
    let groups = Arc::new(Mutex::new(json!({
        "grp1": {"ty": 9, "ri": "grp1", "mt": 9, "mid": ["grpA"]},
        "grpA": {"ty": 9, "ri": "grpA", "mt": 9, "mid": ["grpB"]},
        "grpB": {"ty": 9, "ri": "grpB", "mt": 2, "mid": ["CAE3"]},
    })));
    let cse = group_cse(groups);
    let status = |extra: &str| {
        let gateway = group_gateway(&cse, extra);
        let status = gateway
            .request("GET", "/cse-in/lights/lamp", &onem2m("CAE3", "n"), b"")
            .status;
        (status, lookup_count(&gateway, "group", "over-bound"))
    };
    // Not found answers for grp2 (the app's other group) change nothing below.
    assert_eq!(status(""), (200, 0), "depth 2 is within the default 3");
    assert_eq!(status("group_depth = 1"), (403, 0), "grpB is below depth 1");
    assert_eq!(
        status("group_max_lookups = 2"),
        (403, 1),
        "three retrievals needed"
    );
}
