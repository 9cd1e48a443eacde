//! Helpers of `group_http.rs`: an HTTP client, the servers on free ports of 127.0.0.1, a
//! world of server, gateways and devices, bounded polls, and child processes that are
//! killed when dropped.

use super::*;

pub const GROUP: &str = "grp-a";
pub const SMALL: &str = "grp-b";

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A minimal HTTP client: status, content type, body.
#[derive(Clone)]
pub struct Http(Client<HttpConnector, Full<Bytes>>);

pub struct Reply {
    pub status: StatusCode,
    pub content_type: String,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        assert!(
            self.content_type.starts_with("application/json"),
            "{}",
            self.content_type
        );
        serde_json::from_slice(&self.body).unwrap()
    }
    /// The stable code of a JSON error, checking the error's shape.
    pub fn code(&self) -> String {
        let v = self.json();
        assert!(v["error"]["message"].is_string(), "{v}");
        v["error"]["code"].as_str().unwrap().to_owned()
    }
}

impl Http {
    pub fn new() -> Self {
        Http(Client::builder(TokioExecutor::new()).build_http())
    }
    /// A client whose connections come from `ip` (any of 127.0.0.0/8 on loopback): another
    /// client address as the agent's per-source limit sees it.
    pub fn from(ip: std::net::IpAddr) -> Self {
        let mut c = HttpConnector::new();
        c.set_local_address(Some(ip));
        Http(Client::builder(TokioExecutor::new()).build(c))
    }
    pub async fn send(&self, method: Method, url: &str, ct: Option<&str>, body: Vec<u8>) -> Reply {
        let mut req = Request::builder().method(method).uri(url);
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        let resp = self.0.request(req.body(Full::new(body.into())).unwrap());
        let resp = tokio::time::timeout(Duration::from_secs(30), resp)
            .await
            .expect("answer in time")
            .unwrap();
        let status = resp.status();
        let content_type = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        Reply {
            status,
            content_type,
            body,
        }
    }
    pub async fn get(&self, url: &str) -> Reply {
        self.send(Method::GET, url, None, vec![]).await
    }
    pub async fn post(&self, url: &str, body: Vec<u8>) -> Reply {
        self.send(Method::POST, url, Some(CONTENT_TYPE), body).await
    }
}

/// Serves `router` on a free port of 127.0.0.1 until the test's runtime ends, with each
/// client's address (as the CLI serves it).
pub async fn spawn(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let app = router.into_make_service_with_connect_info::<std::net::SocketAddr>();
        axum::serve(listener, app).await.unwrap()
    });
    format!("http://{addr}")
}

/// A proxy in front of the server that records every exchange (path, request body, answer
/// body): what an agent pointed at it relays.
pub type Recorded = Arc<Mutex<Vec<(String, Vec<u8>, Vec<u8>)>>>;

pub fn recording_proxy(server: String, seen: Recorded) -> axum::Router {
    let http = Http::new();
    axum::Router::new().fallback(
        move |method: Method, uri: axum::http::Uri, headers: axum::http::HeaderMap, body: Bytes| {
            let (http, server, seen) = (http.clone(), server.clone(), seen.clone());
            async move {
                let ct = headers
                    .get("content-type")
                    .map(|v| v.to_str().unwrap().to_owned());
                let url = format!("{server}{}", uri.path());
                let r = http.send(method, &url, ct.as_deref(), body.to_vec()).await;
                seen.lock()
                    .unwrap()
                    .push((uri.path().to_owned(), body.to_vec(), r.body.to_vec()));
                (
                    r.status,
                    [("content-type", r.content_type.clone())],
                    r.body.to_vec(),
                )
            }
        },
    )
}

/// How long the world's agents collect answers: long enough for every device of a test to
/// answer on a loaded machine; rounds with members that never get a verified answer in
/// (forged, absent) last this long.
pub const ROUND_DEADLINE: Duration = Duration::from_secs(6);

/// The server, gateway `gw-1` (may represent both groups) and `gw-2` (registered, may
/// represent nothing) with their agents; devices `dev-NNN` in grp-a, the `forged` ones
/// holding a key of their own, and `small-N` in grp-b.
pub struct World {
    pub http: Http,
    pub server: String,
    pub agent: String,
    pub agent2: String,
    pub agent_state: Arc<AgentState>,
    pub server_pub: [u8; 32],
    pub gw1: SigningKey,
    pub gw2: SigningKey,
    pub devices: Vec<Device>,
    pub small: Vec<Device>,
    pub forged: Vec<String>,
    pub established: Arc<Mutex<Vec<Established>>>,
}

pub async fn world(n: usize, forged: &[usize]) -> World {
    world_with(n, forged, |a| a).await
}

/// A world whose agents are adjusted by `tune` (limits) before they serve.
pub async fn world_with(
    n: usize,
    forged: &[usize],
    tune: impl Fn(AgentState) -> AgentState,
) -> World {
    let server_key = generate_identity_key();
    let server_pub = server_key.verifying_key().to_bytes();
    let (gw1, gw2) = (generate_identity_key(), generate_identity_key());
    let server = Server::new("srv-1", Box::new(server_key), ServerConfig::default()).unwrap();
    let established = Arc::new(Mutex::new(Vec::new()));
    let sink = established.clone();
    // The server application answers a sealed message with who sent what, as it knows them.
    let mut st = ServerState::new(server)
        .on_established(move |e| sink.lock().unwrap().push(e))
        .on_message(|peer, plaintext| {
            format!(
                "{}@{}: {}",
                peer.id,
                peer.group,
                String::from_utf8_lossy(plaintext)
            )
            .into_bytes()
        });
    st.add_gateway("gw-1", &gw1.public_key()).unwrap();
    st.add_gateway("gw-2", &gw2.public_key()).unwrap();
    let names = (0..n)
        .map(|i| (GROUP, format!("dev-{i:03}"), forged.contains(&i)))
        .chain((0..5).map(|i| (SMALL, format!("small-{i}"), false)));
    let (mut members, mut devices, mut small) = (Vec::new(), Vec::new(), Vec::new());
    for (group, name, is_forged) in names {
        let k = generate_identity_key();
        let public = k.verifying_key().to_bytes();
        let reg = st.server_mut().registry_mut();
        reg.add_member(group, &name, &public).unwrap();
        // A forged member claims the id but holds another key.
        let held = if is_forged {
            generate_identity_key()
        } else {
            k
        };
        let mut d = Device::new(&name, held, &server_pub).unwrap();
        d.trust_gateway("gw-1", &gw1.public_key()).unwrap();
        members.push((group, name, public));
        if group == GROUP {
            &mut devices
        } else {
            &mut small
        }
        .push(d);
    }
    for g in [GROUP, SMALL] {
        let reg = st.server_mut().registry_mut();
        reg.allow_representation(g, "gw-1").unwrap();
    }
    let server = spawn(server_router(st)).await;
    let agent_for = |key: &SigningKey, id: &str| {
        let mut a = AgentState::new(id, Arc::new(key.clone()), &server_pub, &server)
            .unwrap()
            .with_round_deadline(ROUND_DEADLINE);
        for (g, d, k) in &members {
            a.add_member(g, d, k).unwrap();
        }
        tune(a)
    };
    let agent_state = Arc::new(agent_for(&gw1, "gw-1"));
    let agent2 = spawn(agent_router(agent_for(&gw2, "gw-2"))).await;
    World {
        http: Http::new(),
        agent: spawn(agent_router(agent_state.clone())).await,
        agent2,
        server,
        agent_state,
        server_pub,
        gw1,
        gw2,
        forged: forged.iter().map(|i| format!("dev-{i:03}")).collect(),
        devices,
        small,
        established,
    }
}

/// Starts a round at an agent.
pub async fn start(http: &Http, agent: &str, group: &str, query: &str) -> Reply {
    let url = format!("{agent}/agent/v1/groups/{group}/authenticate?{query}");
    http.send(Method::POST, &url, None, vec![]).await
}

/// Each device fetches the challenge and answers, concurrently; returns the devices, their
/// answers' encodings, and the devices whose answer the agent refused (`401 bad-signature`:
/// not signed by the member's provisioned key). Every other answer must be taken (202).
pub async fn answer_all(
    http: &Http,
    agent: &str,
    group: &str,
    devices: Vec<Device>,
) -> (Vec<Device>, Vec<Vec<u8>>, Vec<String>) {
    answer_round(http, agent, group, "", devices).await
}

/// [`answer_all`] for the round that `challenge?{query}` names (e.g. `mode=represented`).
pub async fn answer_round(
    http: &Http,
    agent: &str,
    group: &str,
    query: &str,
    devices: Vec<Device>,
) -> (Vec<Device>, Vec<Vec<u8>>, Vec<String>) {
    let tasks: Vec<_> = devices
        .into_iter()
        .map(|mut d| {
            let (http, base) = (http.clone(), format!("{agent}/agent/v1/groups/{group}"));
            let query = query.to_owned();
            tokio::spawn(async move {
                let ch = http.get(&format!("{base}/challenge?{query}")).await;
                assert_eq!(ch.status, StatusCode::OK);
                assert_eq!(ch.content_type, CONTENT_TYPE);
                let a = match GroupChallenge::from_bytes(&ch.body) {
                    Ok(c) => d.answer_independent(&c, now()).unwrap(),
                    Err(_) => {
                        let mc = MemberChallenge::from_bytes(&ch.body).unwrap();
                        d.answer_represented(&mc, now()).unwrap()
                    }
                };
                let r = http.post(&format!("{base}/answers"), a.to_bytes()).await;
                let refused = r.status == StatusCode::UNAUTHORIZED;
                if refused {
                    assert_eq!(r.code(), "bad-signature");
                } else {
                    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
                }
                (d, a.to_bytes(), refused)
            })
        })
        .collect();
    let mut out = (Vec::new(), Vec::new(), Vec::new());
    for t in tasks {
        let (d, a, refused) = t.await.unwrap();
        if refused {
            out.2.push(d.id().to_owned());
        }
        out.0.push(d);
        out.1.push(a);
    }
    out.2.sort();
    out
}

/// Polls the group's latest round's result until it is done or failed (bounded: 30 s).
pub async fn finished(http: &Http, agent: &str, group: &str) -> Value {
    finished_query(http, agent, group, "").await
}

/// Polls `result?{query}` until the round is done or failed (bounded: 30 s).
pub async fn finished_query(http: &Http, agent: &str, group: &str, query: &str) -> Value {
    for _ in 0..600 {
        let r = http
            .get(&format!("{agent}/agent/v1/groups/{group}/result?{query}"))
            .await;
        let v = r.json();
        if v["state"] == "done" || v["state"] == "failed" {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the round did not finish");
}

pub fn names(v: &Value) -> Vec<String> {
    let mut n: Vec<String> = v
        .as_array()
        .unwrap_or_else(|| panic!("not a list of devices: {v}"))
        .iter()
        .map(|x| x.as_str().or(x["device"].as_str()).unwrap().to_owned())
        .collect();
    n.sort();
    n
}

/// A child process killed when the test ends, however it ends.
pub struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `palisade args` and returns the process and the JSON line it prints once listening.
pub fn run_bin(args: &[&str]) -> (Running, Value) {
    use std::io::BufRead as _;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let running = Running(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("listening line");
    (running, serde_json::from_str(&line).expect(&line))
}

pub fn bin_out(args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}
