//! The enforcement proxy in front of a real oneM2M CSE (the ACME CSE, started by
//! `support/cse.rs`): through an app that allows everything, the CSE answers exactly as it
//! does without the gateway; through enforcement apps, every denial comes from the gateway
//! and never reaches the CSE, which the tests prove from the CSE's own state (SER-008).
//! AE registration (issue 13.6) with and without an originator, under each app's
//! `[app.registration]` policy.
//! Skipped with a message when the ACME CSE is not installed; failed when `CI` is set.

use crate::support::cse;
use crate::support::server;

use std::time::{Duration, Instant};

use cse::{onem2m_headers, AcmeCse};
use serde_json::{json, Value};
use server::{Answer, Gateway, Response, StandInCse};

/// Where a request goes: straight to a CSE, or through a gateway in front of one.
#[derive(Clone, Copy)]
enum Via<'a> {
    Direct(&'a AcmeCse),
    Gateway(&'a Gateway),
}

impl Via<'_> {
    /// One oneM2M request: `ty` makes it a create (`Content-Type: application/json;ty=N`),
    /// a body without `ty` is sent as plain JSON.
    fn send(
        &self,
        method: &str,
        path: &str,
        origin: Option<&str>,
        ty: Option<u32>,
        body: Option<&Value>,
    ) -> Response {
        let content_type = match (ty, body) {
            (Some(ty), _) => Some(format!("application/json;ty={ty}")),
            (None, Some(_)) => Some("application/json".to_string()),
            (None, None) => None,
        };
        let body = body.map(Value::to_string).unwrap_or_default();
        match self {
            Via::Direct(cse) => {
                let headers: Vec<(&str, &str)> = content_type
                    .iter()
                    .map(|value| ("Content-Type", value.as_str()))
                    .collect();
                cse.request(method, path, origin, &headers, body.as_bytes())
            }
            Via::Gateway(gateway) => {
                let mut headers = onem2m_headers(origin);
                if let Some(content_type) = content_type {
                    headers.push(("Content-Type".into(), content_type));
                }
                let headers: Vec<(&str, &str)> = headers
                    .iter()
                    .map(|(n, v)| (n.as_str(), v.as_str()))
                    .collect();
                gateway.request(method, path, &headers, body.as_bytes())
            }
        }
    }
}

/// Keys whose values differ between two CSEs given the same requests: resource IDs (and
/// the parent and member IDs that repeat them), times, request IDs.
const VOLATILE: [&str; 9] = ["ri", "pi", "ct", "lt", "et", "rqi", "ot", "mid", "sur"];

/// `value` without its volatile keys, and with each of `assigned` (IDs the CSE chose,
/// e.g. a CSE-assigned AE-ID) replaced by a placeholder.
fn normalise(value: &Value, assigned: &[String]) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(key, _)| !VOLATILE.contains(&key.as_str()))
                .map(|(key, value)| (key.clone(), normalise(value, assigned)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(|v| normalise(v, assigned)).collect()),
        Value::String(text) if assigned.contains(text) => json!("<assigned>"),
        other => other.clone(),
    }
}

/// What one step of a scenario answered: HTTP status, `X-M2M-RSC`, normalised body.
#[derive(Debug, PartialEq)]
struct Step {
    label: String,
    status: u16,
    rsc: Option<String>,
    body: Value,
}

/// Everything a scenario saw: its steps and the notifications its receiver got.
struct Outcome {
    steps: Vec<Step>,
    notifications: Vec<Value>,
}

/// A notification receiver: a real HTTP server on 127.0.0.1 that answers every request
/// 2000 (subscription verification included) and records it.
fn receiver() -> StandInCse {
    StandInCse::start(|_| Answer::json(200, 2000, ""))
}

/// Waits (bounded) until `receiver` has recorded `count` requests, and returns their
/// bodies as JSON.
fn notifications(receiver: &StandInCse, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let received = receiver.received.lock().unwrap().clone();
        if received.len() >= count || Instant::now() > deadline {
            return received
                .iter()
                .map(|request| {
                    assert_eq!(request.method, "POST");
                    serde_json::from_slice(&request.body).unwrap_or(Value::Null)
                })
                .collect();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The same requests, in order, as an AE would make them: registration with an originator,
/// with none and with an empty one; containers and contentInstances created, retrieved,
/// updated and deleted; discovery; a group and its fan-out; a subscription whose
/// notification goes to `receiver`; and answers the CSE refuses (conflict, not found).
fn scenario(via: Via<'_>, receiver: &StandInCse) -> Outcome {
    let mut steps = Vec::new();
    let mut assigned: Vec<String> = Vec::new();
    let mut step = |label: &str, response: Response, assigned: &[String]| -> Value {
        let body = if response.body.is_empty() {
            Value::Null
        } else {
            response.json()
        };
        steps.push(Step {
            label: label.to_string(),
            status: response.status,
            rsc: response.header("x-m2m-rsc").map(str::to_string),
            body: normalise(&body, assigned),
        });
        body
    };
    let ae = |rn: &str| json!({"m2m:ae": {"rn": rn, "api": "Nmeter", "rr": true, "srv": ["3"]}});

    step(
        "register with an originator",
        via.send(
            "POST",
            "/cse-in",
            Some("Cmeter"),
            Some(2),
            Some(&ae("meter")),
        ),
        &assigned,
    );
    for (label, origin, rn) in [
        ("register without an originator", None, "anon"),
        ("register with an empty originator", Some(""), "anon2"),
    ] {
        let response = via.send("POST", "/cse-in", origin, Some(2), Some(&ae(rn)));
        let aei = response.json()["m2m:ae"]["aei"]
            .as_str()
            .unwrap_or_else(|| panic!("{label}: no aei in {}", response.text()))
            .to_string();
        assert!(
            aei.starts_with('C'),
            "{label}: a CSE-assigned AE-ID, got {aei}"
        );
        assigned.push(aei);
        step(label, response, &assigned);
    }
    // The CSE-assigned AE-ID is an ordinary originator afterwards, behind the gateway too.
    let anon = assigned[0].clone();
    step(
        "the assigned AE-ID retrieves its AE",
        via.send("GET", "/cse-in/anon", Some(&anon), None, None),
        &assigned,
    );
    step(
        "the assigned AE-ID creates a container",
        via.send(
            "POST",
            "/cse-in/anon",
            Some(&anon),
            Some(3),
            Some(&json!({"m2m:cnt": {"rn": "data"}})),
        ),
        &assigned,
    );

    let meter = Some("Cmeter");
    for (rn, lbl) in [("cnt", "a"), ("cnt2", "z")] {
        step(
            &format!("create container {rn}"),
            via.send(
                "POST",
                "/cse-in/meter",
                meter,
                Some(3),
                Some(&json!({"m2m:cnt": {"rn": rn, "lbl": [lbl], "mni": 10}})),
            ),
            &assigned,
        );
    }
    step(
        "create a container that exists",
        via.send(
            "POST",
            "/cse-in/meter",
            meter,
            Some(3),
            Some(&json!({"m2m:cnt": {"rn": "cnt"}})),
        ),
        &assigned,
    );
    step(
        "create contentInstance c1",
        via.send(
            "POST",
            "/cse-in/meter/cnt",
            meter,
            Some(4),
            Some(&json!({"m2m:cin": {"rn": "c1", "cnf": "text/plain:0", "con": "21"}})),
        ),
        &assigned,
    );
    for path in [
        "/cse-in/meter/cnt",
        "/cse-in/meter/cnt/la",
        "/cse-in/meter/cnt/c1",
    ] {
        step(
            &format!("retrieve {path}"),
            via.send("GET", path, meter, None, None),
            &assigned,
        );
    }
    step(
        "update the container",
        via.send(
            "PUT",
            "/cse-in/meter/cnt",
            meter,
            None,
            Some(&json!({"m2m:cnt": {"lbl": ["b"]}})),
        ),
        &assigned,
    );
    for query in ["fu=1&ty=3", "fu=1&lbl=b", "fu=1&ty=4", "fu=1&ty=2"] {
        step(
            &format!("discovery {query}"),
            via.send("GET", &format!("/cse-in/meter?{query}"), meter, None, None),
            &assigned,
        );
    }
    step(
        "create a group of both containers",
        via.send(
            "POST",
            "/cse-in/meter",
            meter,
            Some(9),
            Some(&json!({"m2m:grp": {"rn": "grp", "mt": 3, "mnm": 10,
                "mid": ["cse-in/meter/cnt", "cse-in/meter/cnt2"]}})),
        ),
        &assigned,
    );
    step(
        "retrieve through the group's fan-out point",
        via.send("GET", "/cse-in/meter/grp/fopt", meter, None, None),
        &assigned,
    );
    step(
        "update through the group's fan-out point",
        via.send(
            "PUT",
            "/cse-in/meter/grp/fopt",
            meter,
            None,
            Some(&json!({"m2m:cnt": {"lbl": ["g"]}})),
        ),
        &assigned,
    );
    // Each run has its own receiver: its address is not part of the comparison.
    let nu = format!("{}/notify", receiver.url());
    assigned.push(nu.clone());
    step(
        "subscribe to the container",
        via.send(
            "POST",
            "/cse-in/meter/cnt",
            meter,
            Some(23),
            Some(&json!({"m2m:sub": {"rn": "sub", "nu": [nu], "enc": {"net": [3]}, "nct": 1}})),
        ),
        &assigned,
    );
    step(
        "create contentInstance c2 (notified)",
        via.send(
            "POST",
            "/cse-in/meter/cnt",
            meter,
            Some(4),
            Some(&json!({"m2m:cin": {"rn": "c2", "cnf": "text/plain:0", "con": "22"}})),
        ),
        &assigned,
    );
    // The verification request, then the notification of c2.
    let notifications = notifications(receiver, 2)
        .iter()
        .map(|body| normalise(body, &assigned))
        .collect();
    step(
        "delete contentInstance c1",
        via.send("DELETE", "/cse-in/meter/cnt/c1", meter, None, None),
        &assigned,
    );
    step(
        "retrieve the deleted contentInstance",
        via.send("GET", "/cse-in/meter/cnt/c1", meter, None, None),
        &assigned,
    );
    step(
        "the assigned AE-ID deletes its container",
        via.send("DELETE", "/cse-in/anon/data", Some(&anon), None, None),
        &assigned,
    );
    step(
        "deregister the anonymous AE",
        via.send("DELETE", "/cse-in/anon", Some(&anon), None, None),
        &assigned,
    );
    step(
        "retrieve the deregistered AE",
        via.send("GET", "/cse-in/anon", Some("Cmeter"), None, None),
        &assigned,
    );
    Outcome {
        steps,
        notifications,
    }
}

/// A gateway in front of `cse` whose one app covers the whole CSE and allows everything,
/// registrations with and without an originator included.
fn open_gateway(cse: &AcmeCse) -> Gateway {
    let config = format!(
        r#"
[upstream]
url = "{}"

[[app]]
name = "open"
paths = ["{}"]
[app.registration]
originators = ["C*", "S*", ""]
[[app.plugin]]
plugin = "acp"
config = {{ policies = [{{ id = "open", pv = {{ acr = [{{ acor = ["all"], acop = 63 }}] }} }}] }}
"#,
        cse.url(),
        cse.base()
    );
    Gateway::start(&config, &[])
}

#[test]
fn through_an_open_app_the_cse_answers_exactly_as_without_the_gateway() {
    let test = "through_an_open_app_the_cse_answers_exactly_as_without_the_gateway";
    let Some(direct_cse) = AcmeCse::start(test) else {
        return;
    };
    let Some(proxied_cse) = AcmeCse::start(test) else {
        return;
    };
    let gateway = open_gateway(&proxied_cse);
    let (direct_receiver, proxied_receiver) = (receiver(), receiver());

    let direct = scenario(Via::Direct(&direct_cse), &direct_receiver);
    let proxied = scenario(Via::Gateway(&gateway), &proxied_receiver);

    assert_eq!(direct.steps.len(), proxied.steps.len());
    for (direct, proxied) in direct.steps.iter().zip(&proxied.steps) {
        assert_eq!(
            direct, proxied,
            "{}: the CSE answered differently through the gateway",
            direct.label
        );
    }
    // The scenario did what it says, so equal answers mean something.
    let rsc = |label: &str| {
        let step = proxied.steps.iter().find(|s| s.label == label).unwrap();
        step.rsc.clone().unwrap_or_default()
    };
    for (label, expected) in [
        ("register with an originator", "2001"),
        ("register without an originator", "2001"),
        ("register with an empty originator", "2001"),
        ("the assigned AE-ID retrieves its AE", "2000"),
        ("the assigned AE-ID creates a container", "2001"),
        ("create a container that exists", "4105"),
        ("update the container", "2004"),
        ("discovery fu=1&ty=3", "2000"),
        ("create a group of both containers", "2001"),
        ("retrieve through the group's fan-out point", "2000"),
        ("update through the group's fan-out point", "2000"),
        ("subscribe to the container", "2001"),
        ("delete contentInstance c1", "2002"),
        ("retrieve the deleted contentInstance", "4004"),
        ("deregister the anonymous AE", "2002"),
        ("retrieve the deregistered AE", "4004"),
    ] {
        assert_eq!(rsc(label), expected, "{label}");
    }
    let step = |label: &str| {
        &proxied
            .steps
            .iter()
            .find(|s| s.label == label)
            .unwrap()
            .body
    };
    assert_eq!(
        step("discovery fu=1&ty=3")["m2m:uril"],
        json!(["cse-in/meter/cnt", "cse-in/meter/cnt2"])
    );
    assert_eq!(
        step("discovery fu=1&lbl=b")["m2m:uril"],
        json!(["cse-in/meter/cnt"])
    );
    let fanned = &step("retrieve through the group's fan-out point")["m2m:agr"]["m2m:rsp"];
    assert_eq!(fanned.as_array().map(Vec::len), Some(2), "{fanned}");

    // Notifications go from the CSE to the receiver: the same ones either way.
    assert_eq!(direct.notifications, proxied.notifications);
    assert_eq!(
        proxied.notifications.len(),
        2,
        "{:?}",
        proxied.notifications
    );
    assert_eq!(proxied.notifications[0]["m2m:sgn"]["vrq"], json!(true));
    assert_eq!(
        proxied.notifications[1]["m2m:sgn"]["nev"]["rep"]["m2m:cin"]["con"],
        json!("22")
    );
}

#[test]
fn the_harness_starts_a_cse_that_answers_and_keeps_state() {
    let Some(cse) = AcmeCse::start("the_harness_starts_a_cse_that_answers_and_keeps_state") else {
        return;
    };
    let base = cse.state(&cse.base()).expect("the CSEBase exists");
    assert_eq!(base["m2m:cb"]["csi"], json!(cse.cse_id()));
    let created = cse.create(
        &cse.base(),
        Some("Charness"),
        2,
        &json!({"m2m:ae": {"rn": "harness", "api": "Nharness", "rr": false, "srv": ["3"]}}),
    );
    assert_eq!(
        created.header("x-m2m-rsc"),
        Some("2001"),
        "{}",
        created.text()
    );
    let path = format!("{}/harness", cse.base());
    assert_eq!(
        cse.state(&path).unwrap()["m2m:ae"]["aei"],
        json!("Charness")
    );
    assert!(cse.state(&format!("{}/absent", cse.base())).is_none());
}

/// What an attacker's request left behind at the CSE: the resource at `path` as the admin
/// sees it (after the attempt), to compare with before.
fn snapshot(cse: &AcmeCse, paths: &[&str]) -> Vec<Option<Value>> {
    paths.iter().map(|path| cse.state(path)).collect()
}

/// Every AE registered at `cse`, by structured path (admin discovery).
fn registered_aes(cse: &AcmeCse) -> Vec<Value> {
    let found = cse.request("GET", "/cse-in?fu=1&ty=2", Some("CAdmin"), &[], b"");
    assert_eq!(found.header("x-m2m-rsc"), Some("2000"), "{}", found.text());
    found.json()["m2m:uril"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// A refusal made by the gateway: 403, `X-M2M-RSC: 4103`, the gateway's `m2m:dbg` body.
fn assert_refused_by_gateway(response: &Response, what: &str) {
    assert_eq!(
        (response.status, response.header("x-m2m-rsc")),
        (403, Some("4103")),
        "{what}: {}",
        response.text()
    );
    assert!(
        response.json()["m2m:dbg"].is_string(),
        "{what}: the gateway's own answer, not the CSE's: {}",
        response.text()
    );
}

#[test]
fn denials_come_from_the_gateway_and_never_reach_the_cse() {
    let Some(cse) = AcmeCse::start("denials_come_from_the_gateway_and_never_reach_the_cse") else {
        return;
    };
    // The CSE's own access control is off: whatever reaches it is carried out, so an
    // unchanged CSE proves the gateway stopped the request.
    let direct = Via::Direct(&cse);
    let ae = |rn: &str| json!({"m2m:ae": {"rn": rn, "api": "Nmeter", "rr": true, "srv": ["3"]}});
    let setup = [
        direct.send(
            "POST",
            "/cse-in",
            Some("Cmeter"),
            Some(2),
            Some(&ae("meter")),
        ),
        direct.send(
            "POST",
            "/cse-in/meter",
            Some("Cmeter"),
            Some(3),
            Some(&json!({"m2m:cnt": {"rn": "cnt", "lbl": ["a"]}})),
        ),
        direct.send(
            "POST",
            "/cse-in/meter/cnt",
            Some("Cmeter"),
            Some(4),
            Some(&json!({"m2m:cin": {"rn": "c1", "con": "21"}})),
        ),
    ];
    for response in &setup {
        assert_eq!(
            response.header("x-m2m-rsc"),
            Some("2001"),
            "{}",
            response.text()
        );
    }
    // Cmeter may do anything; Cgood-* may register but not touch the meter; anyone may
    // retrieve. Registration: Cmeter and Cgood-*, never without an originator.
    let config = format!(
        r#"
[upstream]
url = "{}"

[[app]]
name = "guarded"
paths = ["/cse-in"]
consent_real_identities = true
[app.registration]
originators = ["Cmeter", "Cgood-*"]
[[app.plugin]]
plugin = "acp"
config = {{ policies = [{{ id = "guarded", pv = {{ acr = [
  {{ acor = ["Cmeter"], acop = 63 }},
  {{ acor = ["Cgood-*"], acop = 1, acod = [{{ chty = [2] }}] }},
  {{ acor = ["all"], acop = 2 }},
] }} }}] }}
"#,
        cse.url()
    );
    let gateway = Gateway::start(&config, &[]);
    let via = Via::Gateway(&gateway);
    let watched = [
        "/cse-in/meter",
        "/cse-in/meter/cnt",
        "/cse-in/meter/cnt/c1",
        "/cse-in/meter/evil",
        "/cse-in/meter/cnt/c2",
        "/cse-in/evil",
        "/cse-in/anon",
    ];
    let before = snapshot(&cse, &watched);
    let aes_before = registered_aes(&cse);

    let attempts = [
        (
            "create a container under someone else's AE",
            via.send(
                "POST",
                "/cse-in/meter",
                Some("Cevil"),
                Some(3),
                Some(&json!({"m2m:cnt": {"rn": "evil"}})),
            ),
        ),
        (
            "add a contentInstance",
            via.send(
                "POST",
                "/cse-in/meter/cnt",
                Some("Cevil"),
                Some(4),
                Some(&json!({"m2m:cin": {"rn": "c2", "con": "99"}})),
            ),
        ),
        (
            "update the container",
            via.send(
                "PUT",
                "/cse-in/meter/cnt",
                Some("Cevil"),
                None,
                Some(&json!({"m2m:cnt": {"lbl": ["owned"]}})),
            ),
        ),
        (
            "delete the contentInstance",
            via.send("DELETE", "/cse-in/meter/cnt/c1", Some("Cevil"), None, None),
        ),
        (
            "delete the AE",
            via.send("DELETE", "/cse-in/meter", Some("Cevil"), None, None),
        ),
        (
            "a registered-to-be originator creates a container (not an AE)",
            via.send(
                "POST",
                "/cse-in/meter",
                Some("Cgood-1"),
                Some(3),
                Some(&json!({"m2m:cnt": {"rn": "evil"}})),
            ),
        ),
        (
            "register an originator the policy does not list",
            via.send("POST", "/cse-in", Some("Cevil"), Some(2), Some(&ae("evil"))),
        ),
        (
            "register without an originator",
            via.send("POST", "/cse-in", None, Some(2), Some(&ae("anon"))),
        ),
        (
            "register with an empty originator",
            via.send("POST", "/cse-in", Some(""), Some(2), Some(&ae("anon"))),
        ),
    ];
    for (what, response) in &attempts {
        assert_refused_by_gateway(response, what);
    }
    // The registration refusals name the policy (they are made before any plugin).
    assert!(attempts[6].1.text().contains("[app.registration]"));
    assert!(attempts[7].1.text().contains("without an originator"));

    // The CSE saw none of it.
    assert_eq!(snapshot(&cse, &watched), before, "the CSE's state changed");
    assert_eq!(registered_aes(&cse), aes_before);

    // The same gateway forwards what the policies allow, so the refusals were decisions.
    let read = via.send("GET", "/cse-in/meter/cnt", Some("Cevil"), None, None);
    assert_eq!(read.header("x-m2m-rsc"), Some("2000"), "{}", read.text());
    let registered = via.send(
        "POST",
        "/cse-in",
        Some("Cgood-1"),
        Some(2),
        Some(&ae("good")),
    );
    assert_eq!(
        registered.header("x-m2m-rsc"),
        Some("2001"),
        "{}",
        registered.text()
    );
    assert_eq!(
        cse.state("/cse-in/good").unwrap()["m2m:ae"]["aei"],
        json!("Cgood-1")
    );
    let created = via.send(
        "POST",
        "/cse-in/meter",
        Some("Cmeter"),
        Some(3),
        Some(&json!({"m2m:cnt": {"rn": "ok"}})),
    );
    assert_eq!(
        created.header("x-m2m-rsc"),
        Some("2001"),
        "{}",
        created.text()
    );
    assert!(cse.state("/cse-in/meter/ok").is_some());
}

#[test]
fn registration_without_an_originator_is_refused_by_default_and_never_authenticated() {
    let test = "registration_without_an_originator_is_refused_by_default_and_never_authenticated";
    let Some(cse) = AcmeCse::start(test) else {
        return;
    };
    let ae = |rn: &str| json!({"m2m:ae": {"rn": rn, "api": "Nmeter", "rr": true, "srv": ["3"]}});
    let gateway_with = |registration: &str, rule: &str| {
        let config = format!(
            r#"
[upstream]
url = "{}"

[[app]]
name = "edge"
paths = ["/cse-in"]
{registration}
[[app.plugin]]
plugin = "acp"
config = {{ policies = [{{ id = "edge", pv = {{ acr = [{rule}] }} }}] }}
"#,
            cse.url()
        );
        Gateway::start(&config, &[])
    };
    let aes_before = registered_aes(&cse);

    // No [app.registration]: any originator may register (the plugins decide), none
    // without one.
    let default = gateway_with("", r#"{ acor = ["all"], acop = 63 }"#);
    let via = Via::Gateway(&default);
    for origin in [None, Some("")] {
        let refused = via.send("POST", "/cse-in", origin, Some(2), Some(&ae("anon")));
        assert_refused_by_gateway(&refused, "anonymous registration under the default");
    }
    // Other requests still need an originator: 4000, as before.
    let missing = via.send("GET", "/cse-in", None, None, None);
    assert_eq!(
        (missing.status, missing.header("x-m2m-rsc")),
        (400, Some("4000")),
        "{}",
        missing.text()
    );
    assert_eq!(registered_aes(&cse), aes_before);
    let named = via.send(
        "POST",
        "/cse-in",
        Some("Cnamed"),
        Some(2),
        Some(&ae("named")),
    );
    assert_eq!(named.header("x-m2m-rsc"), Some("2001"), "{}", named.text());
    drop(default);

    // Allowed by the registration policy, but an `acaf` rule needs an authenticated
    // request: a registration with no originator is never one, so the plugin refuses it.
    let authenticated_only = gateway_with(
        "[app.registration]\noriginators = [\"\"]",
        r#"{ acor = ["all"], acop = 63, acaf = true }"#,
    );
    let refused =
        Via::Gateway(&authenticated_only).send("POST", "/cse-in", None, Some(2), Some(&ae("anon")));
    assert_refused_by_gateway(&refused, "anonymous registration under acaf");
    let decision = refused
        .header("x-palisade-decision-id")
        .expect("decided by the plugins")
        .to_string();
    assert!(cse.state("/cse-in/anon").is_none());
    // Audited as a registration without an originator: the empty originator, not a
    // pseudonym (this app has no consent, so any real originator would be one).
    let record = audit_record(&authenticated_only, &decision);
    assert_eq!(record["originator"], json!(""), "{record}");
    assert_eq!(record["operation"], json!("create"), "{record}");
    drop(authenticated_only);

    // Listed and not required to authenticate: it registers, and the CSE-assigned AE-ID
    // works for the requests that follow.
    let open = gateway_with(
        "[app.registration]\noriginators = [\"\"]",
        r#"{ acor = ["all"], acop = 63 }"#,
    );
    let via = Via::Gateway(&open);
    let registered = via.send("POST", "/cse-in", None, Some(2), Some(&ae("anon")));
    assert_eq!(
        registered.header("x-m2m-rsc"),
        Some("2001"),
        "{}",
        registered.text()
    );
    let aei = registered.json()["m2m:ae"]["aei"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        cse.state("/cse-in/anon").unwrap()["m2m:ae"]["aei"],
        json!(aei)
    );
    let container = via.send(
        "POST",
        "/cse-in/anon",
        Some(&aei),
        Some(3),
        Some(&json!({"m2m:cnt": {"rn": "data"}})),
    );
    assert_eq!(
        container.header("x-m2m-rsc"),
        Some("2001"),
        "{}",
        container.text()
    );
    // `[""]` lists the anonymous form only: a named originator may not register here.
    let named = via.send(
        "POST",
        "/cse-in",
        Some("Cother"),
        Some(2),
        Some(&ae("other")),
    );
    assert_refused_by_gateway(&named, "a named registration under [\"\"]");
    assert!(cse.state("/cse-in/other").is_none());
}

/// The audit record of `decision_id` in `gateway`'s log (written before the answer, SER-016).
fn audit_record(gateway: &Gateway, decision_id: &str) -> Value {
    let audit = gateway.data_dir().join("audit");
    for entry in std::fs::read_dir(&audit).expect("the audit folder") {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap_or_default();
        for line in text.lines().filter(|line| line.contains(decision_id)) {
            let value: Value = serde_json::from_str(line).expect("a JSON audit line");
            if let Some(record) = find_record(&value, decision_id) {
                return record;
            }
        }
    }
    panic!("decision {decision_id} is not in {}", audit.display());
}

/// The object holding `"decision_id": id`, wherever the log nests it.
fn find_record(value: &Value, id: &str) -> Option<Value> {
    match value {
        Value::Object(map) if map.get("decision_id") == Some(&json!(id)) => Some(value.clone()),
        Value::Object(map) => map.values().find_map(|v| find_record(v, id)),
        Value::Array(items) => items.iter().find_map(|v| find_record(v, id)),
        _ => None,
    }
}

/// In an app whose originators must be established by a token (`originators = "token"`),
/// requests without one are answered 4106 by the gateway before any plugin runs and never
/// reach the CSE; a registration without an originator is one of them, whatever
/// `[app.registration]` lists: the empty originator is no token's holder (docs/proxy.md).
#[test]
fn unauthenticated_originators_get_4106_and_never_reach_the_cse() {
    let test = "unauthenticated_originators_get_4106_and_never_reach_the_cse";
    let Some(cse) = AcmeCse::start(test) else {
        return;
    };
    let ae = |rn: &str| json!({"m2m:ae": {"rn": rn, "api": "Nmeter", "rr": true, "srv": ["3"]}});
    let created = Via::Direct(&cse).send(
        "POST",
        "/cse-in",
        Some("Cmeter"),
        Some(2),
        Some(&ae("meter")),
    );
    assert_eq!(
        created.header("x-m2m-rsc"),
        Some("2001"),
        "{}",
        created.text()
    );
    // Any Ed25519 issuer key: no request here carries a token.
    let issuer = hex::encode(
        ed25519_dalek::SigningKey::from_bytes(&[7; 32])
            .verifying_key()
            .to_bytes(),
    );
    let config = format!(
        r#"
[upstream]
url = "{}"

[[app]]
name = "tokens"
paths = ["/cse-in"]
originators = "token"
[app.registration]
originators = ["C*", ""]
[[app.key]]
handle = "issuer-1"
ed25519_public = "{issuer}"
[[app.plugin]]
plugin = "token-auth"
capabilities = ["crypto"]
config = {{ audience = "/id-in", trusted_issuers = {{ "/id-in/das" = ["issuer-1"] }} }}
[[app.plugin]]
plugin = "acp"
config = {{ policies = [{{ id = "all", pv = {{ acr = [{{ acor = ["all"], acop = 63 }}] }} }}] }}
"#,
        cse.url()
    );
    let gateway = Gateway::start(&config, &[]);
    let via = Via::Gateway(&gateway);
    let watched = [
        "/cse-in/meter",
        "/cse-in/meter/cnt",
        "/cse-in/anon",
        "/cse-in/claimed",
    ];
    let before = snapshot(&cse, &watched);
    let aes_before = registered_aes(&cse);
    let attempts = [
        (
            "register without an originator",
            via.send("POST", "/cse-in", None, Some(2), Some(&ae("anon"))),
        ),
        (
            "register with an empty originator",
            via.send("POST", "/cse-in", Some(""), Some(2), Some(&ae("anon"))),
        ),
        (
            "register a claimed originator without a token",
            via.send(
                "POST",
                "/cse-in",
                Some("Cclaimed"),
                Some(2),
                Some(&ae("claimed")),
            ),
        ),
        (
            "create a container as an existing AE without a token",
            via.send(
                "POST",
                "/cse-in/meter",
                Some("Cmeter"),
                Some(3),
                Some(&json!({"m2m:cnt": {"rn": "cnt"}})),
            ),
        ),
        (
            "delete an AE without a token",
            via.send("DELETE", "/cse-in/meter", Some("Cmeter"), None, None),
        ),
    ];
    for (what, response) in &attempts {
        assert_eq!(
            (response.status, response.header("x-m2m-rsc")),
            (403, Some("4106")),
            "{what}: {}",
            response.text()
        );
        assert!(
            response.json()["m2m:dbg"].is_string(),
            "{what}: the gateway's own answer: {}",
            response.text()
        );
    }
    assert_eq!(snapshot(&cse, &watched), before, "the CSE's state changed");
    assert_eq!(registered_aes(&cse), aes_before);
}
