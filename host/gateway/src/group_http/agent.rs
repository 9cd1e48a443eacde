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
//!
//! **Jamming (#16, SER-001).** Everything a device sends arrives over a LAN anyone can post
//! to, so nothing unauthenticated may take a member's place or hold a round:
//! - an answer is verified against the member's provisioned key (`verify_strict`) before it
//!   takes the member's slot, so garbage or an answer signed by anyone else never blocks the
//!   real one; the identical answer sent again is accepted again (a device retrying), any
//!   other second answer is refused;
//! - each client address has a token bucket for the requests that cost work (starting a
//!   round, posting an answer), in a fixed-size table ([`crate::protect::RateTable`]);
//! - rounds run per group *and mode*, and a start while a round of that group and mode is
//!   collecting joins it instead of being refused, so starting a round cannot lock devices
//!   out; the collection deadline is the operator's, never the caller's, so nobody can hold
//!   a round open longer or close it early; it closes early only when every member has a
//!   verified answer in.

use super::round::{self, Phase, Round, Rounds};
use super::{binary, binary_body, lock, Clock, HttpError, RegistryError, ServerClient};
use crate::config::Rate;
use crate::group_proof::{AssociationFileError, AssociationLog, AssociationRecord};
use crate::protect::{RateTable, TableKey};
use axum::extract::connect_info::ConnectInfo;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use ed25519_dalek::{Signature, VerifyingKey};
use palisade_group::{
    check_id, GatewayAgent, GroupError, GroupSigner, Mode, Rejection, SecureChannel, WireError,
};
use palisade_group::{signed_part, DeviceAnswer, SealedMessage, WireMessage};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Largest device answer body (an answer is under 300 bytes; SER-001).
const ANSWER_LIMIT: usize = 1024;
/// Largest sealed message relayed (the channel's payload limit and its framing).
const SEALED_LIMIT: usize = 64 * 1024 + 256;

/// Default per-client-address limit on the requests that cost the agent work (starting a
/// round, posting an answer): a device posts one answer per round, so 20/s with a burst of
/// 200 leaves room for a few hundred devices behind one address while a flooding address
/// gets at most that many signature checks (about 50 µs each).
pub const DEFAULT_SOURCE_RATE: Rate = Rate {
    per_second: 20,
    burst: 200,
};

/// How long an independent-mode association record lasts at the gateway by default: the
/// server's default association lifetime.
pub const DEFAULT_ASSOCIATION_TTL: u64 = 3600;

/// Client addresses the per-source table remembers (fixed memory, about 48 bytes each).
const SOURCE_TABLE: usize = 4096;

/// What the agent endpoints share.
pub struct AgentState {
    id: String,
    pub(super) agent: Mutex<GatewayAgent>,
    pub(super) client: ServerClient,
    /// group → member → provisioned key: who may answer, checked on arrival.
    members: BTreeMap<String, BTreeMap<String, VerifyingKey>>,
    pub(super) rounds: Mutex<Rounds>,
    pub(super) clock: Clock,
    round_deadline: Duration,
    sources: RateTable,
    /// Where the devices of completed rounds are recorded for the proxy's request proofs
    /// (#16.6, [`crate::group_proof`]), and for how long an independent-mode record lasts.
    associations: Option<Mutex<AssociationLog>>,
    association_ttl: u64,
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
            sources: RateTable::new(DEFAULT_SOURCE_RATE, SOURCE_TABLE),
            associations: None,
            association_ttl: DEFAULT_ASSOCIATION_TTL,
        })
    }

    /// Records the devices every completed round authenticated in the file `path`
    /// (docs/group-auth-protocol.md §12.7), for `palisade serve`'s `group_associations`.
    /// An independent-mode record lasts `ttl` seconds (the server's lifetime is not on the
    /// wire to the gateway); a represented-mode one until the server's `expires_at`.
    pub fn with_associations(
        mut self,
        path: &std::path::Path,
        ttl: u64,
    ) -> Result<Self, AssociationFileError> {
        self.associations = Some(Mutex::new(AssociationLog::open(path, &self.id)?));
        self.association_ttl = ttl;
        Ok(self)
    }

    /// Adds the devices a round authenticated to the association file, if there is one. A
    /// failure to write is logged: the round stands, its devices' proofs are refused.
    pub(super) fn record_associations(
        &self,
        group: &str,
        mode: Mode,
        digest: [u8; 32],
        outcome: &super::round::Outcome,
    ) {
        let Some(log) = &self.associations else {
            return;
        };
        let now = (self.clock)();
        let expires_at = match &outcome.association {
            Some(a) => a.expires_at,
            None => now.saturating_add(self.association_ttl),
        };
        let members = self.members.get(group);
        let records = outcome
            .authenticated
            .iter()
            .filter_map(|device| {
                let key = members?.get(device)?;
                Some(AssociationRecord {
                    group: group.to_owned(),
                    device: device.clone(),
                    mode,
                    association: hex::encode(digest),
                    public_key: hex::encode(key.to_bytes()),
                    established_at_ms: palisade_types::now_unix_ms(),
                    expires_at,
                })
            })
            .collect();
        if let Err(error) = lock(log).add(records, now) {
            tracing::error!(%error, %group, "the group association records cannot be written");
        }
    }

    /// Represented mode with evidence (#16.5): see [`GatewayAgent::set_evidence`].
    pub fn with_evidence(self, on: bool) -> Self {
        lock(&self.agent).set_evidence(on);
        self
    }

    /// Replaces the per-client-address limit ([`DEFAULT_SOURCE_RATE`]).
    pub fn with_source_rate(mut self, rate: Rate) -> Self {
        self.sources = RateTable::new(rate, SOURCE_TABLE);
        self
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
        // The library refused weak and malformed keys above.
        let key = VerifyingKey::from_bytes(key)
            .map_err(|_| GroupError::WeakMemberKey(device.to_owned()))?;
        self.members
            .entry(group.to_owned())
            .or_default()
            .insert(device.to_owned(), key);
        Ok(())
    }

    /// Adds the gateway's own groups as service providers provisioned them (SER-020): the
    /// `gateway_groups` of the provisioning state with the devices' keys. Returns how many
    /// memberships were added.
    pub fn add_provisioned(
        &mut self,
        state: &palisade_provision::ProvisionState,
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

    /// How long a round collects answers unless every member answered first (cut short by the
    /// challenge's expiry). Callers cannot change it.
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
        match &rounds
            .open
            .get(&(group.to_owned(), Mode::Represented))?
            .phase
        {
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
        .route(
            "/agent/v1/sealed",
            post(relay_sealed).layer(DefaultBodyLimit::max(SEALED_LIMIT)),
        )
        .fallback(super::not_found)
        .method_not_allowed_fallback(super::method_not_allowed)
        .with_state(state)
}

/// Query of `authenticate`. Unknown parameters are refused: the collection deadline used to
/// be a parameter, and a caller must not believe it still sets one.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthenticateQuery {
    mode: Mode,
}

/// Query of `challenge` and `result`: which of the group's rounds (by default the one
/// started last).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RoundQuery {
    mode: Option<Mode>,
}

/// The client's address, when the server was started with connect info
/// (`into_make_service_with_connect_info::<SocketAddr>`); without it every client shares one
/// bucket, which limits the whole agent rather than no one.
struct Source(IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for Source {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Source(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED), |c| c.0.ip()),
        ))
    }
}

/// Takes one token of the client's bucket (SER-001).
fn charge(st: &AgentState, source: &Source) -> Result<(), HttpError> {
    st.sources
        .check(&TableKey::of_ip(source.0))
        .map_err(|wait| HttpError::RateLimited {
            retry_after_secs: wait.as_secs().max(1),
        })
}

fn path<T>(p: Result<Path<T>, PathRejection>) -> Result<T, HttpError> {
    p.map(|Path(v)| v)
        .map_err(|e| HttpError::InvalidRequest(e.body_text()))
}

/// The expected members of a group the agent knows, with their keys.
fn expected<'a>(
    st: &'a AgentState,
    group: &str,
) -> Result<&'a BTreeMap<String, VerifyingKey>, HttpError> {
    check_id(group)?;
    st.members
        .get(group)
        .ok_or_else(|| GroupError::UnknownGroup(group.to_owned()).into())
}

/// Clears the "starting" mark of a group and mode however the start ends, a dropped request
/// included, so that a client hanging up cannot lock the group.
struct Starting<'a>(&'a AgentState, (String, Mode));

impl Drop for Starting<'_> {
    fn drop(&mut self) {
        lock(&self.0.rounds).starting.remove(&self.1);
    }
}

/// The JSON answer of `authenticate`.
fn started(group: &str, r: &Round, expected: usize, joined: bool) -> Response {
    let deadline = r
        .deadline
        .saturating_duration_since(tokio::time::Instant::now());
    let body = serde_json::json!({
        "group": group,
        "mode": r.mode,
        "expected": expected,
        "challenge_expires_at": r.expires_at,
        "deadline_ms": deadline.as_millis() as u64,
        "joined": joined,
    });
    Json(body).into_response()
}

async fn authenticate(
    State(st): State<Arc<AgentState>>,
    source: Source,
    group: Result<Path<String>, PathRejection>,
    query: Result<Query<AuthenticateQuery>, QueryRejection>,
) -> Result<Response, HttpError> {
    let group = path(group)?;
    let q = query
        .map_err(|e| HttpError::InvalidRequest(e.body_text()))?
        .0;
    let expected = expected(&st, &group)?.len();
    charge(&st, &source)?;
    let key = (group.clone(), q.mode);
    {
        let mut rounds = lock(&st.rounds);
        if let Some(r) = rounds.open.get(&key).filter(|r| r.collecting()) {
            return Ok(started(&group, r, expected, true));
        }
        // A round being started, or forwarding its answers: a moment's wait.
        if rounds.starting.contains(&key) || rounds.open.get(&key).is_some_and(Round::active) {
            return Err(HttpError::RoundInProgress(group));
        }
        rounds.starting.insert(key.clone());
    }
    let _starting = Starting(&st, key.clone());
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
    let wait = st.round_deadline.min(latest);
    let deadline = tokio::time::Instant::now() + wait;
    let notify = Arc::new(tokio::sync::Notify::new());
    let mut rounds = lock(&st.rounds);
    rounds.started += 1;
    let round = Round {
        mode: q.mode,
        nonce: ch.nonce,
        challenge: Bytes::from(challenge),
        digest,
        expires_at: ch.expires_at,
        deadline,
        sequence: rounds.started,
        answers: Vec::new(),
        answered: HashMap::new(),
        refused: BTreeMap::new(),
        phase: Phase::Collecting,
        notify: notify.clone(),
    };
    let reply = started(&group, &round, expected, false);
    rounds.open.insert(key, round);
    drop(rounds);
    tokio::spawn(round::run(
        st.clone(),
        group.clone(),
        q.mode,
        ch.nonce,
        notify,
        deadline,
    ));
    tracing::info!(%group, mode = ?q.mode, expected, wait_ms = wait.as_millis() as u64, "group round started");
    Ok(reply)
}

/// The group's round a `challenge` or `result` request means: the given mode's, or the one
/// started last.
fn chosen<'a>(rounds: &'a Rounds, group: &str, mode: Option<Mode>) -> Result<&'a Round, HttpError> {
    let found = match mode {
        Some(m) => rounds.open.get(&(group.to_owned(), m)),
        None => [Mode::Independent, Mode::Represented]
            .iter()
            .filter_map(|m| rounds.open.get(&(group.to_owned(), *m)))
            .max_by_key(|r| r.sequence),
    };
    found.ok_or_else(|| HttpError::NoRound(group.to_owned()))
}

async fn challenge(
    State(st): State<Arc<AgentState>>,
    group: Result<Path<String>, PathRejection>,
    query: Result<Query<RoundQuery>, QueryRejection>,
) -> Result<Response, HttpError> {
    let group = path(group)?;
    let q = query
        .map_err(|e| HttpError::InvalidRequest(e.body_text()))?
        .0;
    expected(&st, &group)?;
    let rounds = lock(&st.rounds);
    let r = chosen(&rounds, &group, q.mode)?;
    if !r.collecting() {
        return Err(HttpError::RoundClosed);
    }
    Ok(binary(r.challenge.to_vec()))
}

/// One device's answer (SER-027/028, SER-012, SER-001). It takes the member's slot in the
/// round whose challenge it names only once its signature verifies under the member's
/// provisioned key (`verify_strict`), so nobody else's bytes can stand in for it; an answer
/// of an earlier round is refused at once. The signatures are verified again where the
/// protocol needs them: by the server (independent) or in the gateway's batch (represented).
async fn answer(
    State(st): State<Arc<AgentState>>,
    source: Source,
    group: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, HttpError> {
    let group = path(group)?;
    let expected = expected(&st, &group)?;
    charge(&st, &source)?;
    let body = binary_body(&headers, body, ANSWER_LIMIT)?;
    let a = DeviceAnswer::from_bytes(&body).map_err(|e: WireError| GroupError::from(e))?;
    let Some(key) = expected.get(&a.device) else {
        return Err(HttpError::UnexpectedDevice {
            group,
            device: a.device,
        });
    };
    // The round this answer is for: the one whose challenge it names.
    let (mode, nonce) = {
        let rounds = lock(&st.rounds);
        let ours = [Mode::Independent, Mode::Represented]
            .iter()
            .filter_map(|m| rounds.open.get(&(group.clone(), *m)))
            .collect::<Vec<_>>();
        if ours.is_empty() {
            return Err(HttpError::NoRound(group));
        }
        match ours.iter().find(|r| r.digest == a.challenge) {
            Some(r) if r.collecting() => (r.mode, r.nonce),
            Some(_) => return Err(HttpError::RoundClosed),
            None if ours.iter().any(|r| r.collecting()) => {
                return Err(HttpError::AnswerForOtherChallenge)
            }
            None => return Err(HttpError::RoundClosed),
        }
    };
    let refusal = if a.ephemeral.is_some() != (mode == Mode::Independent) {
        Some(Rejection::EphemeralKeyMismatch)
    } else if key
        .verify_strict(&signed_part(&body), &Signature::from_bytes(&a.signature))
        .is_err()
    {
        Some(Rejection::BadSignature)
    } else {
        None
    };
    let mut rounds = lock(&st.rounds);
    let r = rounds
        .open
        .get_mut(&(group.clone(), mode))
        .filter(|r| r.nonce == nonce && r.collecting())
        .ok_or(HttpError::RoundClosed)?;
    if let Some(reason) = refusal {
        // Kept for the result (bounded: one entry per member) unless the real answer is in.
        if !r.answered.contains_key(&a.device) {
            r.refused.insert(a.device.clone(), reason);
        }
        return Err(HttpError::AnswerRefused {
            device: a.device,
            reason,
        });
    }
    if let Some(&i) = r.answered.get(&a.device) {
        // The same answer again is a device retrying; another one is not.
        if r.answers.get(i) != Some(&a) {
            return Err(HttpError::AlreadyAnswered(a.device));
        }
    } else {
        r.refused.remove(&a.device);
        r.answered.insert(a.device.clone(), r.answers.len());
        r.answers.push(a);
        if r.answered.len() == expected.len() {
            r.notify.notify_one();
        }
    }
    let body = serde_json::json!({"received": r.answered.len(), "expected": expected.len()});
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

/// #16.6: relays a device's sealed message to the server and the sealed answer back, as
/// bytes: the agent checks only that it is a well-formed sealed message of bounded size, and
/// charges the client address like any request that costs work (SER-001).
async fn relay_sealed(
    State(st): State<Arc<AgentState>>,
    source: Source,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, HttpError> {
    charge(&st, &source)?;
    let body = binary_body(&headers, body, SEALED_LIMIT)?;
    SealedMessage::from_bytes(&body).map_err(|e: WireError| GroupError::from(e))?;
    let answer = st.client.sealed(body.to_vec()).await?;
    Ok(binary(answer.to_vec()))
}

async fn confirmation(
    State(st): State<Arc<AgentState>>,
    p: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, HttpError> {
    let (group, device) = path(p)?;
    expected(&st, &group)?;
    check_id(&device)?;
    let rounds = lock(&st.rounds);
    let r = chosen(&rounds, &group, Some(Mode::Independent)).map_err(|e| {
        match rounds.open.get(&(group.clone(), Mode::Represented)) {
            Some(_) => HttpError::WrongMode(Mode::Represented),
            None => e,
        }
    })?;
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
            let refused = o
                .rejected
                .iter()
                .find(|(d, _)| *d == device)
                .map(|(_, why)| *why)
                .or_else(|| r.refused.get(&device).copied());
            match refused {
                Some(reason) => Err(HttpError::DeviceRejected { device, reason }),
                None => Err(HttpError::NoConfirmation(device)),
            }
        }
    }
}

async fn result(
    State(st): State<Arc<AgentState>>,
    group: Result<Path<String>, PathRejection>,
    query: Result<Query<RoundQuery>, QueryRejection>,
) -> Result<Response, HttpError> {
    let group = path(group)?;
    let q = query
        .map_err(|e| HttpError::InvalidRequest(e.body_text()))?
        .0;
    let expected = expected(&st, &group)?;
    let rounds = lock(&st.rounds);
    let r = chosen(&rounds, &group, q.mode)?;
    let names: BTreeSet<&String> = expected.keys().collect();
    Ok(Json(r.view(&group, &names)).into_response())
}
