//! The gateway agent over HTTP: devices talk to it, it talks to the server (SER-027/028).
//!
//! - `POST /agent/v1/groups/{group}/authenticate?mode=independent|represented[&deadline_ms=N]`
//!   starts a round: fetches the server's challenge (signed request), and in represented mode
//!   makes the gateway's own member challenge. JSON answer: expected members, deadline.
//! - `GET /agent/v1/groups/{group}/challenge`: what devices answer (binary): the server's
//!   challenge relayed unchanged (independent) or the gateway's member challenge
//!   (represented).
//! - `POST /agent/v1/groups/{group}/answers`: one device's answer (binary) → 202.
//! - When every expected member answered, or at the deadline, the agent forwards all answers
//!   in one message (independent) or its signed assertion (represented).
//! - `GET /agent/v1/groups/{group}/confirmations/{device}`: independent mode, the device's key
//!   confirmation (binary, 200), 202 while the round runs, 403 if the server refused it.
//! - `GET /agent/v1/groups/{group}/result`: the round as JSON (authenticated, rejected with
//!   why, missing).
//!
//! In independent mode the agent relays bytes it cannot use: the confirmations are MACs under
//! keys only the device and the server hold (SER-028).

use super::super::messages::DeviceAnswer;
use super::super::wire::WireMessage;
use super::super::{
    check_id, GatewayAgent, GroupError, GroupSigner, Mode, SecureChannel, WireError,
};
use super::round::{self, Phase, Round, Rounds};
use super::{binary, binary_body, lock, Clock, HttpError, RegistryError, ServerClient};
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Largest device answer body (an answer is under 300 bytes; SER-001).
const ANSWER_LIMIT: usize = 1024;

/// What the agent endpoints share.
pub struct AgentState {
    id: String,
    pub(super) agent: Mutex<GatewayAgent>,
    pub(super) client: ServerClient,
    members: BTreeMap<String, BTreeSet<String>>,
    pub(super) rounds: Mutex<Rounds>,
    pub(super) clock: Clock,
    round_deadline: Duration,
}

impl AgentState {
    /// The agent of gateway `gateway`, with its identity signer (a keystore handle in a
    /// deployment), the server's public key and the server role's base URL.
    pub fn new(
        gateway: &str,
        signer: Arc<dyn GroupSigner>,
        server_key: &[u8; 32],
        server_url: &str,
    ) -> Result<Self, HttpError> {
        Self::with_tls(gateway, signer, server_key, server_url, None)
    }

    /// Like [`AgentState::new`], reaching an `https://` server with `tls`
    /// ([`crate::tls_client::client_config`]).
    pub fn with_tls(
        gateway: &str,
        signer: Arc<dyn GroupSigner>,
        server_key: &[u8; 32],
        server_url: &str,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Result<Self, HttpError> {
        let agent = GatewayAgent::new(
            gateway,
            Box::new(super::SharedSigner(signer.clone())),
            server_key,
        )?;
        Ok(AgentState {
            id: gateway.to_owned(),
            agent: Mutex::new(agent),
            client: ServerClient::with_tls(server_url, gateway, signer, tls)?,
            members: BTreeMap::new(),
            rounds: Mutex::new(Rounds::default()),
            clock: super::system_clock(),
            round_deadline: Duration::from_secs(20),
        })
    }

    /// The gateway id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Adds a member with its public key: the agent expects its answer, and authenticates it
    /// itself in represented mode (SER-027). Weak keys are refused.
    pub fn add_member(
        &mut self,
        group: &str,
        device: &str,
        key: &[u8; 32],
    ) -> Result<(), GroupError> {
        lock(&self.agent).add_member(group, device, key)?;
        self.members
            .entry(group.to_owned())
            .or_default()
            .insert(device.to_owned());
        Ok(())
    }

    /// Adds the gateway's own groups as service providers provisioned them (SER-020): the
    /// `gateway_groups` of the provisioning state with the devices' keys. Returns how many
    /// memberships were added.
    pub fn add_provisioned(
        &mut self,
        state: &crate::provision::ProvisionState,
    ) -> Result<usize, RegistryError> {
        let mut n = 0;
        for (group, rec) in &state.gateway_groups {
            for device in &rec.members {
                let key = state
                    .device_key(device)
                    .ok_or_else(|| RegistryError::UnknownDevice {
                        group: group.clone(),
                        device: device.clone(),
                    })?;
                self.add_member(group, device, &key)
                    .map_err(|source| RegistryError::Invalid {
                        what: format!("device {device} of group {group}"),
                        source,
                    })?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// How long a round collects answers by default (cut short by the challenge's expiry).
    pub fn with_round_deadline(mut self, d: Duration) -> Self {
        self.round_deadline = d;
        self
    }

    /// Replaces the clock (tests); the system clock by default.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The gateway's end of the channel under the group key of the last represented round of
    /// `group`, if it succeeded (SER-027).
    pub fn group_channel(&self, group: &str) -> Option<SecureChannel> {
        let rounds = lock(&self.rounds);
        match &rounds.open.get(group)?.phase {
            Phase::Done(o) => o.association.as_ref().map(|a| a.channel()),
            _ => None,
        }
    }
}

/// The gateway agent's routes, ready to serve or to merge into a larger router. Pass an
/// `Arc` to keep a handle on the state (e.g. for [`AgentState::group_channel`]).
pub fn agent_router(state: impl Into<Arc<AgentState>>) -> Router {
    let state: Arc<AgentState> = state.into();
    Router::new()
        .route("/agent/v1/groups/{group}/authenticate", post(authenticate))
        .route("/agent/v1/groups/{group}/challenge", get(challenge))
        .route(
            "/agent/v1/groups/{group}/answers",
            post(answer).layer(DefaultBodyLimit::max(ANSWER_LIMIT)),
        )
        .route(
            "/agent/v1/groups/{group}/confirmations/{device}",
            get(confirmation),
        )
        .route("/agent/v1/groups/{group}/result", get(result))
        .fallback(super::not_found)
        .method_not_allowed_fallback(super::method_not_allowed)
        .with_state(state)
}

/// Query of `authenticate`.
#[derive(Debug, Deserialize)]
struct AuthenticateQuery {
    mode: Mode,
    deadline_ms: Option<u64>,
}

fn path<T>(p: Result<Path<T>, PathRejection>) -> Result<T, HttpError> {
    p.map(|Path(v)| v)
        .map_err(|e| HttpError::InvalidRequest(e.body_text()))
}

/// The expected members of a group the agent knows.
fn expected<'a>(st: &'a AgentState, group: &str) -> Result<&'a BTreeSet<String>, HttpError> {
    check_id(group)?;
    st.members
        .get(group)
        .ok_or_else(|| GroupError::UnknownGroup(group.to_owned()).into())
}

/// Clears the "starting" mark of a group however the start ends, a dropped request included,
/// so that a client hanging up cannot lock the group.
struct Starting<'a>(&'a AgentState, &'a str);

impl Drop for Starting<'_> {
    fn drop(&mut self) {
        lock(&self.0.rounds).starting.remove(self.1);
    }
}

async fn authenticate(
    State(st): State<Arc<AgentState>>,
    group: Result<Path<String>, PathRejection>,
    query: Result<Query<AuthenticateQuery>, QueryRejection>,
) -> Result<Response, HttpError> {
    let group = path(group)?;
    let q = query
        .map_err(|e| HttpError::InvalidRequest(e.body_text()))?
        .0;
    let expected = expected(&st, &group)?.len();
    {
        let mut rounds = lock(&st.rounds);
        if rounds.starting.contains(&group) || rounds.open.get(&group).is_some_and(Round::active) {
            return Err(HttpError::RoundInProgress(group));
        }
        rounds.starting.insert(group.clone());
    }
    let _starting = Starting(&st, &group);
    let ch = st.client.challenge(&group, q.mode, (st.clock)()).await?;
    if ch.group != group || ch.mode != q.mode {
        return Err(HttpError::ServerUnavailable(
            "the server's challenge is for another group or mode".into(),
        ));
    }
    let now = (st.clock)();
    let (challenge, digest) = {
        let mut agent = lock(&st.agent);
        agent.accept_challenge(&ch, now)?;
        match q.mode {
            Mode::Independent => (ch.to_bytes(), ch.digest()),
            Mode::Represented => {
                let mc = agent.member_challenge(&ch.nonce, now)?;
                (mc.to_bytes(), mc.digest())
            }
        }
    };
    // Forward before the challenge expires: leave a quarter of what remains (at most 5 s)
    // for the server call.
    let remaining = ch.expires_at.saturating_sub(now);
    let latest = Duration::from_secs(remaining.saturating_sub((remaining / 4).min(5)));
    let wait = q
        .deadline_ms
        .map(Duration::from_millis)
        .unwrap_or(st.round_deadline)
        .min(latest);
    let notify = Arc::new(tokio::sync::Notify::new());
    let round = Round {
        mode: q.mode,
        nonce: ch.nonce,
        challenge: Bytes::from(challenge),
        digest,
        expires_at: ch.expires_at,
        answers: Vec::new(),
        answered: HashSet::new(),
        phase: Phase::Collecting,
        notify: notify.clone(),
    };
    lock(&st.rounds).open.insert(group.clone(), round);
    tokio::spawn(round::run(
        st.clone(),
        group.clone(),
        ch.nonce,
        notify,
        tokio::time::Instant::now() + wait,
    ));
    tracing::info!(%group, mode = ?q.mode, expected, wait_ms = wait.as_millis() as u64, "group round started");
    let body = serde_json::json!({
        "group": group,
        "mode": q.mode,
        "expected": expected,
        "challenge_expires_at": ch.expires_at,
        "deadline_ms": wait.as_millis() as u64,
    });
    Ok(Json(body).into_response())
}

async fn challenge(
    State(st): State<Arc<AgentState>>,
    group: Result<Path<String>, PathRejection>,
) -> Result<Response, HttpError> {
    let group = path(group)?;
    expected(&st, &group)?;
    let rounds = lock(&st.rounds);
    let r = rounds
        .open
        .get(&group)
        .ok_or_else(|| HttpError::NoRound(group.clone()))?;
    if !matches!(r.phase, Phase::Collecting) {
        return Err(HttpError::RoundClosed);
    }
    Ok(binary(r.challenge.to_vec()))
}

/// One device's answer. Checked here only as far as the agent can without the device keys
/// of independent mode: an expected member, once, for this round's challenge (an answer
/// replayed from another round is refused at once so it cannot take the device's place,
/// SER-012); the signatures are verified by the server (independent) or by the gateway in
/// one batch at the end (represented).
async fn answer(
    State(st): State<Arc<AgentState>>,
    group: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, HttpError> {
    let group = path(group)?;
    let expected = expected(&st, &group)?;
    let body = binary_body(&headers, body, ANSWER_LIMIT)?;
    let a = DeviceAnswer::from_bytes(&body).map_err(|e: WireError| GroupError::from(e))?;
    let mut rounds = lock(&st.rounds);
    let r = rounds
        .open
        .get_mut(&group)
        .ok_or_else(|| HttpError::NoRound(group.clone()))?;
    if !matches!(r.phase, Phase::Collecting) {
        return Err(HttpError::RoundClosed);
    }
    if !expected.contains(&a.device) {
        return Err(HttpError::UnexpectedDevice {
            group,
            device: a.device,
        });
    }
    if a.challenge != r.digest {
        return Err(HttpError::AnswerForOtherChallenge);
    }
    if !r.answered.insert(a.device.clone()) {
        return Err(HttpError::AlreadyAnswered(a.device));
    }
    r.answers.push(a);
    if r.answered.len() == expected.len() {
        r.notify.notify_one();
    }
    let body = serde_json::json!({"received": r.answered.len(), "expected": expected.len()});
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

async fn confirmation(
    State(st): State<Arc<AgentState>>,
    p: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, HttpError> {
    let (group, device) = path(p)?;
    expected(&st, &group)?;
    check_id(&device)?;
    let rounds = lock(&st.rounds);
    let r = rounds
        .open
        .get(&group)
        .ok_or_else(|| HttpError::NoRound(group.clone()))?;
    if r.mode != Mode::Independent {
        return Err(HttpError::WrongMode(r.mode));
    }
    match &r.phase {
        Phase::Collecting | Phase::Forwarding => {
            let body = serde_json::json!({"state": "pending"});
            Ok((StatusCode::ACCEPTED, Json(body)).into_response())
        }
        Phase::Failed(e) => Err(e.recorded()),
        Phase::Done(o) => {
            if let Some(c) = o.confirmations.get(&device) {
                return Ok(binary(c.to_bytes()));
            }
            match o.rejected.iter().find(|(d, _)| *d == device) {
                Some((_, why)) => Err(HttpError::DeviceRejected {
                    device,
                    reason: *why,
                }),
                None => Err(HttpError::NoConfirmation(device)),
            }
        }
    }
}

async fn result(
    State(st): State<Arc<AgentState>>,
    group: Result<Path<String>, PathRejection>,
) -> Result<Response, HttpError> {
    let group = path(group)?;
    let expected = expected(&st, &group)?;
    let rounds = lock(&st.rounds);
    let r = rounds
        .open
        .get(&group)
        .ok_or_else(|| HttpError::NoRound(group.clone()))?;
    Ok(Json(r.view(&group, expected)).into_response())
}
