//! The payload layouts of the messages in `messages` (encoding rules in `wire`; the
//! normative description is `docs/group-auth-protocol.md`, which lists the same fields in
//! the same order).

use super::error::{Rejection, WireError};
use super::messages::*;
use super::wire::{Reader, WireMessage, Writer, MAX_MEMBERS, MAX_PAYLOAD};
use super::Mode;

/// The largest encoded answer or confirmation (an answer with a 128-byte id is under 300).
const ANSWER_MAX: usize = 1024;

/// `[[device, reason], ...]`
fn put_rejected(w: &mut Writer, list: &[(String, Rejection)]) {
    w.list(list.len());
    for (d, r) in list {
        w.tuple(2);
        w.id(d);
        w.u8(*r as u8);
    }
}

fn get_rejected(r: &mut Reader<'_>) -> Result<Vec<(String, Rejection)>, WireError> {
    let n = r.list("rejected", MAX_MEMBERS, 4)?;
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        r.tuple("rejected", 2)?;
        let d = r.id("rejected.device")?;
        let c = r.u8("rejected.reason")?;
        let why = Rejection::from_code(c).ok_or(WireError::InvalidValue {
            field: "rejected.reason",
            value: c,
        })?;
        v.push((d, why));
    }
    Ok(v)
}

impl WireMessage for GroupChallenge {
    const TYPE: u8 = 1;
    const FIELDS: u64 = 8;
    fn encode_fields(&self, w: &mut Writer) {
        w.u8(self.mode as u8);
        w.id(&self.group);
        w.id(&self.server);
        w.id(&self.gateway);
        w.raw(&self.nonce);
        w.u64(self.issued_at);
        w.u64(self.expires_at);
        w.opt32(&self.server_ephemeral);
        w.signature(&self.signature);
    }
    fn decode_fields(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let m = r.u8("mode")?;
        Ok(GroupChallenge {
            mode: Mode::from_code(m).ok_or(WireError::InvalidValue {
                field: "mode",
                value: m,
            })?,
            group: r.id("group")?,
            server: r.id("server")?,
            gateway: r.id("gateway")?,
            nonce: r.arr("nonce")?,
            issued_at: r.u64("issued_at")?,
            expires_at: r.u64("expires_at")?,
            server_ephemeral: r.opt32("server_ephemeral")?,
            signature: r.signature()?,
        })
    }
}

impl WireMessage for MemberChallenge {
    const TYPE: u8 = 2;
    const FIELDS: u64 = 5;
    fn encode_fields(&self, w: &mut Writer) {
        w.id(&self.group);
        w.id(&self.gateway);
        w.raw(&self.session);
        w.raw(&self.nonce);
        w.u64(self.expires_at);
        w.signature(&self.signature);
    }
    fn decode_fields(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(MemberChallenge {
            group: r.id("group")?,
            gateway: r.id("gateway")?,
            session: r.arr("session")?,
            nonce: r.arr("nonce")?,
            expires_at: r.u64("expires_at")?,
            signature: r.signature()?,
        })
    }
}

impl WireMessage for DeviceAnswer {
    const TYPE: u8 = 3;
    const FIELDS: u64 = 3;
    fn encode_fields(&self, w: &mut Writer) {
        w.id(&self.device);
        w.raw(&self.challenge);
        w.opt32(&self.ephemeral);
        w.signature(&self.signature);
    }
    fn decode_fields(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(DeviceAnswer {
            device: r.id("device")?,
            challenge: r.arr("challenge")?,
            ephemeral: r.opt32("ephemeral")?,
            signature: r.signature()?,
        })
    }
}

impl WireMessage for GroupAnswers {
    const TYPE: u8 = 4;
    const FIELDS: u64 = 4;
    fn encode_fields(&self, w: &mut Writer) {
        w.id(&self.group);
        w.id(&self.gateway);
        w.raw(&self.nonce);
        // Each answer exactly as the device signed it.
        w.list(self.answers.len());
        for a in &self.answers {
            w.bytes(&a.to_bytes());
        }
        w.signature(&self.signature);
    }
    fn decode_fields(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let group = r.id("group")?;
        let gateway = r.id("gateway")?;
        let nonce = r.arr("nonce")?;
        // The smallest answer encodes in more than 100 bytes.
        let n = r.list("answers", MAX_MEMBERS, 100)?;
        let mut answers = Vec::with_capacity(n);
        for _ in 0..n {
            let b = r.bytes("answers", ANSWER_MAX)?;
            answers.push(DeviceAnswer::from_bytes(&b)?);
        }
        Ok(GroupAnswers {
            group,
            gateway,
            nonce,
            answers,
            signature: r.signature()?,
        })
    }
}

impl WireMessage for GroupAssertion {
    const TYPE: u8 = 5;
    const FIELDS: u64 = 9;
    fn encode_fields(&self, w: &mut Writer) {
        w.id(&self.group);
        w.id(&self.gateway);
        w.raw(&self.nonce);
        w.raw(&self.challenge);
        w.list(self.authenticated.len());
        for d in &self.authenticated {
            w.id(d);
        }
        put_rejected(w, &self.rejected);
        w.raw(&self.gateway_ephemeral);
        match &self.member_challenge {
            Some(mc) => w.bytes(mc),
            None => w.null(),
        }
        w.list(self.evidence.len());
        for a in &self.evidence {
            w.bytes(&a.to_bytes());
        }
        w.signature(&self.signature);
    }
    fn decode_fields(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let group = r.id("group")?;
        let gateway = r.id("gateway")?;
        let nonce = r.arr("nonce")?;
        let challenge = r.arr("challenge")?;
        let n = r.list("authenticated", MAX_MEMBERS, 2)?;
        let mut authenticated = Vec::with_capacity(n);
        for _ in 0..n {
            authenticated.push(r.id("authenticated.device")?);
        }
        Ok(GroupAssertion {
            group,
            gateway,
            nonce,
            challenge,
            authenticated,
            rejected: get_rejected(r)?,
            gateway_ephemeral: r.arr("gateway_ephemeral")?,
            member_challenge: r.opt_bytes("member_challenge", ANSWER_MAX)?,
            evidence: {
                let n = r.list("evidence", MAX_MEMBERS, 100)?;
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(DeviceAnswer::from_bytes(&r.bytes("evidence", ANSWER_MAX)?)?);
                }
                v
            },
            signature: r.signature()?,
        })
    }
}

impl WireMessage for GroupAssociation {
    const TYPE: u8 = 6;
    const FIELDS: u64 = 9;
    fn encode_fields(&self, w: &mut Writer) {
        w.id(&self.group);
        w.id(&self.gateway);
        w.raw(&self.nonce);
        w.raw(&self.association);
        w.u32(self.accepted);
        put_rejected(w, &self.rejected);
        w.raw(&self.server_ephemeral);
        w.raw(&self.wrapped_key);
        w.u64(self.expires_at);
        w.signature(&self.signature);
    }
    fn decode_fields(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(GroupAssociation {
            group: r.id("group")?,
            gateway: r.id("gateway")?,
            nonce: r.arr("nonce")?,
            association: r.arr("association")?,
            accepted: r.u32("accepted")?,
            rejected: get_rejected(r)?,
            server_ephemeral: r.arr("server_ephemeral")?,
            wrapped_key: r.arr("wrapped_key")?,
            expires_at: r.u64("expires_at")?,
            signature: r.signature()?,
        })
    }
}

impl WireMessage for KeyConfirmation {
    const TYPE: u8 = 8;
    const FIELDS: u64 = 3;
    fn encode_fields(&self, w: &mut Writer) {
        w.id(&self.device);
        w.raw(&self.challenge);
        w.raw(&self.mac);
    }
    fn decode_fields(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(KeyConfirmation {
            device: r.id("device")?,
            challenge: r.arr("challenge")?,
            mac: r.arr("mac")?,
        })
    }
}

impl WireMessage for GroupConfirmations {
    const TYPE: u8 = 7;
    const FIELDS: u64 = 5;
    fn encode_fields(&self, w: &mut Writer) {
        w.id(&self.group);
        w.id(&self.gateway);
        w.raw(&self.nonce);
        // Each confirmation as the device receives it.
        w.list(self.confirmations.len());
        for c in &self.confirmations {
            w.bytes(&c.to_bytes());
        }
        put_rejected(w, &self.rejected);
        w.signature(&self.signature);
    }
    fn decode_fields(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let group = r.id("group")?;
        let gateway = r.id("gateway")?;
        let nonce = r.arr("nonce")?;
        // The smallest confirmation encodes in more than 70 bytes.
        let n = r.list("confirmations", MAX_MEMBERS, 70)?;
        let mut confirmations = Vec::with_capacity(n);
        for _ in 0..n {
            let b = r.bytes("confirmations", ANSWER_MAX)?;
            confirmations.push(KeyConfirmation::from_bytes(&b)?);
        }
        Ok(GroupConfirmations {
            group,
            gateway,
            nonce,
            confirmations,
            rejected: get_rejected(r)?,
            signature: r.signature()?,
        })
    }
}

impl WireMessage for SealedMessage {
    const TYPE: u8 = 9;
    const FIELDS: u64 = 4;
    fn encode_fields(&self, w: &mut Writer) {
        w.raw(&self.session);
        w.u8(self.direction as u8);
        w.u64(self.counter);
        w.bytes(&self.ciphertext);
    }
    fn decode_fields(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let session = r.arr("session")?;
        let d = r.u8("direction")?;
        let direction = match d {
            1 => Direction::ToServer,
            2 => Direction::ToDevice,
            v => {
                return Err(WireError::InvalidValue {
                    field: "direction",
                    value: v,
                })
            }
        };
        Ok(SealedMessage {
            session,
            direction,
            counter: r.u64("counter")?,
            ciphertext: r.bytes("ciphertext", MAX_PAYLOAD + 16)?,
        })
    }
}
