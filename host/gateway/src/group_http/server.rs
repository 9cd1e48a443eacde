//! The M2M server role over HTTP (SER-027, SER-028, SER-012).
//!
//! - `POST /group/v1/challenge`: a signed [`ChallengeRequest`] → a [`GroupChallenge`];
//! - `POST /group/v1/represented`: a [`GroupAssertion`] → a [`GroupAssociation`] (the group
//!   key wrapped for the gateway, refused members listed inside);
//! - `POST /group/v1/independent`: a [`GroupAnswers`] batch → [`GroupConfirmations`] (one
//!   confirmation per authenticated device, refused devices listed inside).
//! - `POST /group/v1/sealed`: a device's (or, represented, the gateway's) [`SealedMessage`]
//!   under a kept association → the application's answer, sealed (#16.6).
//!
//! The library [`Server`] does the checks; this layer bounds and decodes bodies,
//! authenticates challenge requests, reads the clock, and maps refusals to JSON errors.

use super::sealed::{Associations, Peer, SealedRefusal};
use super::{binary, binary_body, blocking, lock, Clock, HttpError};
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use palisade_group::ChallengeRequest;
use palisade_group::{GroupAnswers, GroupAssertion, SealedMessage, WireMessage, MAX_MESSAGE_LEN};
use palisade_group::{GroupError, IndependentOutcome, RepresentedOutcome, Server, WireError};
use std::sync::{Arc, Mutex};

#[cfg(doc)]
use palisade_group::{GroupAssociation, GroupChallenge, GroupConfirmations};

/// How far a challenge request's time may be from the server's, in seconds. Requests are
/// remembered this long (twice: either side of now), so a replay inside the window is caught
/// by the cache and one outside it by this check (SER-012).
const REQUEST_SKEW: u64 = 60;

/// Body limits of the server role (SER-001).
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// `POST /group/v1/challenge` (a request is under 400 bytes).
    pub challenge_body: usize,
    /// `POST /group/v1/represented` and `/independent` (the wire's own limit by default).
    pub message_body: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            challenge_body: 1024,
            message_body: MAX_MESSAGE_LEN,
        }
    }
}

/// A completed round, handed to the server application (the keys of its end of each
/// channel); see [`ServerState::on_established`].
pub enum Established {
    /// SER-028: per-device session keys.
    Independent(IndependentOutcome),
    /// SER-027: the group association held with the gateway.
    Represented(RepresentedOutcome),
}

type Hook = Arc<dyn Fn(Established) + Send + Sync>;
type MessageHandler = Arc<dyn Fn(&Peer, &[u8]) -> Vec<u8> + Send + Sync>;

/// Largest sealed message body (the channel's payload limit and its framing).
const SEALED_BODY: usize = 64 * 1024 + 256;

/// What the server endpoints share. The protocol state (open challenges, replay records,
/// served requests, the registry) is the [`Server`]'s store: in memory by default, or shared
/// by several instances ([`Server::with_store`]); only the associations kept for sealed
/// messages are this instance's own.
pub struct ServerState {
    server: Server,
    clock: Clock,
    limits: ServerLimits,
    hook: Option<Hook>,
    associations: Mutex<Associations>,
    handler: Option<MessageHandler>,
}

impl ServerState {
    /// Wraps a library server. Register gateways with [`ServerState::add_gateway`] (not on the
    /// server's registry directly): their keys also authenticate challenge requests.
    pub fn new(server: Server) -> Self {
        ServerState {
            server,
            clock: super::system_clock(),
            limits: ServerLimits::default(),
            hook: None,
            associations: Mutex::new(Associations::default()),
            handler: None,
        }
    }

    /// Registers a gateway's identity key (it also authenticates the gateway's challenge
    /// requests).
    pub fn add_gateway(&mut self, gateway: &str, key: &[u8; 32]) -> Result<(), GroupError> {
        self.server.registry().add_gateway(gateway, key)
    }

    /// The library server, to register groups, members and representation rights.
    pub fn server_mut(&mut self) -> &mut Server {
        &mut self.server
    }

    /// The server's public key (devices and gateways are provisioned with it).
    pub fn public_key(&self) -> [u8; 32] {
        self.server.public_key()
    }

    /// Replaces the clock (tests); the system clock by default.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Replaces the body limits.
    pub fn with_limits(mut self, limits: ServerLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The server application's handler of sealed messages (`POST /group/v1/sealed`): given
    /// the authenticated peer and the opened plaintext, it returns the answer, which goes
    /// back sealed. Without one the answer is empty: a sealed acknowledgement.
    pub fn on_message(
        mut self,
        f: impl Fn(&Peer, &[u8]) -> Vec<u8> + Send + Sync + 'static,
    ) -> Self {
        self.handler = Some(Arc::new(f));
        self
    }

    /// Associations held (each kept until it expires).
    pub fn associations(&self) -> usize {
        lock(&self.associations).len()
    }

    /// Called with every completed round, after its answer is made: where the server
    /// application also gets the session keys. The server keeps its own end of every
    /// association for `POST /group/v1/sealed` in any case.
    pub fn on_established(mut self, f: impl Fn(Established) + Send + Sync + 'static) -> Self {
        self.hook = Some(Arc::new(f));
        self
    }
}

/// The server role's routes, ready to serve or to merge into a larger router (a
/// [`ServerState`] or an `Arc` of one).
pub fn server_router(state: impl Into<Arc<ServerState>>) -> Router {
    let state: Arc<ServerState> = state.into();
    let limits = state.limits;
    Router::new()
        .route(
            "/group/v1/challenge",
            post(challenge).layer(DefaultBodyLimit::max(limits.challenge_body)),
        )
        .route(
            "/group/v1/represented",
            post(represented).layer(DefaultBodyLimit::max(limits.message_body)),
        )
        .route(
            "/group/v1/independent",
            post(independent).layer(DefaultBodyLimit::max(limits.message_body)),
        )
        .route(
            "/group/v1/sealed",
            post(sealed).layer(DefaultBodyLimit::max(SEALED_BODY)),
        )
        .fallback(super::not_found)
        .method_not_allowed_fallback(super::method_not_allowed)
        .with_state(state)
}

fn decode<M: WireMessage>(b: &[u8]) -> Result<M, HttpError> {
    M::from_bytes(b).map_err(|e: WireError| HttpError::Group(e.into()))
}

/// Authenticates the gateway's request, then issues the challenge. An unknown gateway and a
/// bad signature are both 401; nothing about the group (unknown, not representable) is said
/// before the gateway is authenticated (SER-027). The store may be remote, so the work runs
/// off the async workers.
async fn challenge(
    State(st): State<Arc<ServerState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, HttpError> {
    let body = binary_body(&headers, body, st.limits.challenge_body)?;
    let req: ChallengeRequest = decode(&body)?;
    let now = (st.clock)();
    if req.issued_at.abs_diff(now) > REQUEST_SKEW {
        return Err(HttpError::StaleRequest {
            issued_at: req.issued_at,
            now,
        });
    }
    let s = st.clone();
    let (req, ch) = blocking(move || {
        let registry = s.server.registry();
        let key = registry
            .gateway_key(&req.gateway)?
            .ok_or_else(|| GroupError::UnknownGateway(req.gateway.clone()))?;
        req.verify(&key)?;
        // SER-012: each signed request is served once (by any instance sharing the store);
        // remembered until it could no longer pass the time check above.
        let fresh = s
            .server
            .record_request(req.nonce, req.issued_at + REQUEST_SKEW + 1, now)?;
        if !fresh {
            return Err(HttpError::RequestReplayed);
        }
        let ch = s
            .server
            .challenge(&req.group, &req.gateway, req.mode, now)?;
        Ok((req, ch))
    })
    .await?;
    tracing::info!(group = %req.group, gateway = %req.gateway, mode = ?req.mode, "group challenge issued");
    Ok(binary(ch.to_bytes()))
}

/// SER-027: the gateway's signed assertion → the association. Per-member refusals are inside
/// the answer; a refusal of the whole assertion is an error.
async fn represented(
    State(st): State<Arc<ServerState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, HttpError> {
    let body = binary_body(&headers, body, st.limits.message_body)?;
    let now = (st.clock)();
    let s = st.clone();
    let out = blocking(move || {
        let a: GroupAssertion = decode(&body)?;
        Ok(s.server.complete_represented(&a, now)?)
    })
    .await?;
    let bytes = out.association.to_bytes();
    tracing::info!(group = %out.association.group, accepted = out.members.len(), rejected = out.rejected.len(), "represented group authenticated");
    let channel = out.channel();
    lock(&st.associations).insert(
        channel.session(),
        Peer {
            group: out.association.group.clone(),
            id: out.association.gateway.clone(),
            expires_at: out.association.expires_at,
        },
        channel,
        now,
    );
    if let Some(h) = &st.hook {
        h(Established::Represented(out));
    }
    Ok(binary(bytes))
}

/// SER-028: all answers in one message → per-device confirmations (batch verification with
/// bisection runs off the async workers).
async fn independent(
    State(st): State<Arc<ServerState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, HttpError> {
    let body = binary_body(&headers, body, st.limits.message_body)?;
    let now = (st.clock)();
    let s = st.clone();
    let out = blocking(move || {
        let m: GroupAnswers = decode(&body)?;
        Ok(s.server.complete_independent(&m, now)?)
    })
    .await?;
    let bytes = out.confirmations.to_bytes();
    tracing::info!(group = %out.confirmations.group, authenticated = out.sessions.len(), rejected = out.rejected.len(), "independent group authenticated");
    {
        let expires_at = now.saturating_add(st.server.association_ttl());
        let mut table = lock(&st.associations);
        for (device, _) in &out.sessions {
            let channel = out.channel(device).expect("a session of this outcome");
            let peer = Peer {
                group: out.confirmations.group.clone(),
                id: device.clone(),
                expires_at,
            };
            table.insert(channel.session(), peer, channel, now);
        }
    }
    if let Some(h) = &st.hook {
        h(Established::Independent(out));
    }
    Ok(binary(bytes))
}

/// #16.6: a sealed message under a kept association → the application's answer, sealed. The
/// channel refuses replayed, reordered and modified messages (422 `channel-error`) without
/// moving its counter; an expired association is removed (410 `association-expired`).
async fn sealed(
    State(st): State<Arc<ServerState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, HttpError> {
    let body = binary_body(&headers, body, SEALED_BODY)?;
    let m: SealedMessage = decode(&body)?;
    let now = (st.clock)();
    let (peer, plaintext) = {
        let mut table = lock(&st.associations);
        let (peer, channel) = table.live(&m, now).map_err(|r| match r {
            SealedRefusal::Unknown => HttpError::Group(GroupError::UnknownSession),
            SealedRefusal::Expired(at) => HttpError::AssociationExpired(at),
        })?;
        (peer.clone(), channel.open(&m)?)
    };
    let answer = match &st.handler {
        Some(h) => h(&peer, &plaintext),
        None => Vec::new(),
    };
    let mut table = lock(&st.associations);
    let (_, channel) = table
        .live(&m, now)
        .map_err(|_| HttpError::Group(GroupError::UnknownSession))?;
    let reply = channel.seal(&answer)?;
    tracing::debug!(group = %peer.group, peer = %peer.id, "sealed message answered");
    Ok(binary(reply.to_bytes()))
}
