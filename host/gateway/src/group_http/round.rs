//! One round of group authentication as the gateway agent runs it over HTTP: collect the
//! devices' answers until every expected member answered or the deadline passes, forward them
//! in one message, keep the outcome for the devices to fetch.

use super::agent::AgentState;
use super::{blocking, lock, HttpError};
use bytes::Bytes;
use palisade_group::{DeviceAnswer, KeyConfirmation};
use palisade_group::{GroupSecurityAssociation, Mode, Rejection};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use tokio::sync::Notify;

/// The rounds of all groups: at most one per group and mode the agent knows, so memory is
/// bounded by the provisioned groups (SER-001).
#[derive(Default)]
pub(super) struct Rounds {
    pub open: HashMap<(String, Mode), Round>,
    /// Groups and modes whose round is being started (the server call is in flight).
    pub starting: HashSet<(String, Mode)>,
    /// Rounds started so far: orders a group's rounds of the two modes.
    pub started: u64,
}

/// Where a round is.
pub(super) enum Phase {
    /// Devices fetch the challenge and post answers.
    Collecting,
    /// The answers went to the server; waiting for its answer.
    Forwarding,
    /// The server answered.
    Done(Outcome),
    /// The round failed as a whole (recorded with [`HttpError::recorded`]).
    Failed(HttpError),
}

/// The result of a finished round.
pub(super) struct Outcome {
    pub authenticated: Vec<String>,
    pub rejected: Vec<(String, Rejection)>,
    /// Independent mode: each authenticated device's confirmation, relayed unread (SER-028).
    pub confirmations: HashMap<String, KeyConfirmation>,
    /// Represented mode: the group's association, held by the gateway (SER-027).
    pub association: Option<GroupSecurityAssociation>,
}

/// One round.
pub(super) struct Round {
    pub mode: Mode,
    /// The server's nonce: names the session in the library.
    pub nonce: [u8; 32],
    /// What devices fetch: the server's challenge (independent) or the gateway's member
    /// challenge (represented).
    pub challenge: Bytes,
    /// The digest a device's answer must name.
    pub digest: [u8; 32],
    pub expires_at: u64,
    /// When the round forwards whatever it has (the operator's deadline).
    pub deadline: tokio::time::Instant,
    /// Its place among the rounds started (the latest is a group's default round).
    pub sequence: u64,
    /// Verified answers, in arrival order.
    pub answers: Vec<DeviceAnswer>,
    /// Member → index of its answer in `answers`.
    pub answered: HashMap<String, usize>,
    /// Members for whom only refused answers arrived, with the last refusal: shown in the
    /// result, never forwarded; at most one entry per member.
    pub refused: BTreeMap<String, Rejection>,
    pub phase: Phase,
    /// Wakes the round's task when every expected member has answered.
    pub notify: Arc<Notify>,
}

impl Round {
    /// Collecting or forwarding: a new round for the group must wait.
    pub fn active(&self) -> bool {
        matches!(self.phase, Phase::Collecting | Phase::Forwarding)
    }

    /// Still taking answers.
    pub fn collecting(&self) -> bool {
        matches!(self.phase, Phase::Collecting)
    }

    /// The round as JSON, for `GET .../result`.
    pub fn view(&self, group: &str, expected: &BTreeSet<&String>) -> serde_json::Value {
        let state = match &self.phase {
            Phase::Collecting => "collecting",
            Phase::Forwarding => "forwarding",
            Phase::Done(_) => "done",
            Phase::Failed(_) => "failed",
        };
        let missing: Vec<&String> = expected
            .iter()
            .copied()
            .filter(|d| !self.answered.contains_key(*d) && !self.refused.contains_key(*d))
            .collect();
        // Refused at the agent: listed with the outcome's refusals once the round is done.
        let refused = self
            .refused
            .iter()
            .map(|(d, r)| serde_json::json!({"device": d, "reason": r, "message": r.to_string()}));
        let mut v = serde_json::json!({
            "group": group,
            "mode": self.mode,
            "state": state,
            "challenge_expires_at": self.expires_at,
            "expected": expected.len(),
            "received": self.answered.len(),
            "missing": missing,
        });
        match &self.phase {
            Phase::Done(o) => {
                v["authenticated"] = serde_json::json!(o.authenticated);
                v["rejected"] = o
                    .rejected
                    .iter()
                    .map(|(d, r)| serde_json::json!({"device": d, "reason": r, "message": r.to_string()}))
                    .chain(refused)
                    .collect();
                if let Some(a) = &o.association {
                    v["association"] = serde_json::json!({
                        "id": hex::encode(a.association),
                        "accepted": a.accepted,
                        "expires_at": a.expires_at,
                    });
                }
            }
            Phase::Failed(e) => {
                v["error"] = crate::error::ErrorBody::for_error(e.code(), e).to_value();
                v["rejected"] = refused.collect();
            }
            _ => v["refused"] = refused.collect(),
        }
        v
    }
}

/// The task of one round: waits for every expected answer or the deadline, forwards, records
/// the outcome. It ends by itself: the deadline is before the challenge's expiry.
pub(super) async fn run(
    st: Arc<AgentState>,
    group: String,
    mode: Mode,
    nonce: [u8; 32],
    notify: Arc<Notify>,
    deadline: tokio::time::Instant,
) {
    tokio::select! {
        _ = tokio::time::sleep_until(deadline) => {}
        _ = notify.notified() => {}
    }
    let taken = {
        let mut rounds = lock(&st.rounds);
        match rounds.open.get_mut(&(group.clone(), mode)) {
            Some(r) if r.nonce == nonce && r.collecting() => {
                r.phase = Phase::Forwarding;
                Some((std::mem::take(&mut r.answers), r.digest))
            }
            _ => None,
        }
    };
    let Some((answers, digest)) = taken else {
        return;
    };
    let count = answers.len();
    let result = match mode {
        Mode::Independent => independent(&st, nonce, answers).await,
        Mode::Represented => represented(&st, nonce, answers).await,
    };
    if let Ok(o) = &result {
        st.record_associations(&group, mode, digest, o);
    }
    match &result {
        Ok(o) => {
            tracing::info!(%group, ?mode, answers = count, authenticated = o.authenticated.len(), rejected = o.rejected.len(), "group round done")
        }
        Err(e) => {
            tracing::warn!(%group, ?mode, code = e.code(), error = %palisade_types::Chain(e), "group round failed")
        }
    }
    let mut rounds = lock(&st.rounds);
    if let Some(r) = rounds
        .open
        .get_mut(&(group.clone(), mode))
        .filter(|r| r.nonce == nonce)
    {
        r.phase = match result {
            Ok(o) => Phase::Done(o),
            Err(e) => Phase::Failed(e.recorded()),
        };
    }
}

/// SER-028: all answers in one signed message; the confirmations come back checked (server
/// signature, single use) and are kept per device, unread.
async fn independent(
    st: &Arc<AgentState>,
    nonce: [u8; 32],
    answers: Vec<DeviceAnswer>,
) -> Result<Outcome, HttpError> {
    let batch = lock(&st.agent).relay_answers(&nonce, answers, (st.clock)())?;
    let confs = st.client.independent(&batch).await?;
    let relayed = lock(&st.agent).relay_confirmations(&confs, (st.clock)())?;
    Ok(Outcome {
        authenticated: relayed.iter().map(|c| c.device.clone()).collect(),
        rejected: confs.rejected,
        confirmations: relayed.into_iter().map(|c| (c.device.clone(), c)).collect(),
        association: None,
    })
}

/// SER-027: the gateway verifies the members itself (batch, off the async workers), asserts
/// them to the server and unwraps the group key from the association.
async fn represented(
    st: &Arc<AgentState>,
    nonce: [u8; 32],
    answers: Vec<DeviceAnswer>,
) -> Result<Outcome, HttpError> {
    let s = st.clone();
    let now = (st.clock)();
    let assertion =
        blocking(move || Ok(lock(&s.agent).assert_members(&nonce, &answers, now)?)).await?;
    let assoc = st.client.represented(&assertion).await?;
    let sa = lock(&st.agent).accept_association(&assoc, (st.clock)())?;
    let refused: HashSet<&str> = assoc.rejected.iter().map(|(d, _)| d.as_str()).collect();
    let authenticated = assertion
        .authenticated
        .iter()
        .filter(|d| !refused.contains(d.as_str()))
        .cloned()
        .collect();
    Ok(Outcome {
        authenticated,
        rejected: assoc.rejected,
        confirmations: HashMap::new(),
        association: Some(sa),
    })
}
