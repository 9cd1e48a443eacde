//! The wire encodings of the messages in `messages` (layout rules in `wire`).

use super::error::{Rejection, WireError};
use super::messages::*;
use super::wire::{Reader, WireMessage, Writer, MAX_MEMBERS, MAX_PAYLOAD};
use super::Mode;

fn put_rejected(w: &mut Writer, list: &[(String, Rejection)]) {
    w.count(list.len());
    for (d, r) in list {
        w.id(d);
        w.u8(*r as u8);
    }
}

fn get_rejected(r: &mut Reader<'_>) -> Result<Vec<(String, Rejection)>, WireError> {
    let n = r.count("rejected", MAX_MEMBERS, 3)?;
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
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
    fn encode_fields(&self, w: &mut Writer) {
        w.u8(self.mode as u8);
        w.id(&self.group);
        w.id(&self.server);
        w.id(&self.gateway);
        w.raw(&self.nonce);
        w.u64(self.issued_at);
        w.u64(self.expires_at);
        w.opt32(&self.server_ephemeral);
        w.raw(&self.signature);
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
            signature: r.arr("signature")?,
        })
    }
}

impl WireMessage for MemberChallenge {
    const TYPE: u8 = 2;
    fn encode_fields(&self, w: &mut Writer) {
        w.id(&self.group);
        w.id(&self.gateway);
        w.raw(&self.session);
        w.raw(&self.nonce);
        w.u64(self.expires_at);
        w.raw(&self.signature);
    }
    fn decode_fields(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(MemberChallenge {
            group: r.id("group")?,
            gateway: r.id("gateway")?,
            session: r.arr("session")?,
            nonce: r.arr("nonce")?,
            expires_at: r.u64("expires_at")?,
            signature: r.arr("signature")?,
        })
    }
}

impl WireMessage for DeviceAnswer {
    const TYPE: u8 = 3;
    fn encode_fields(&self, w: &mut Writer) {
        w.id(&self.device);
        w.raw(&self.challenge);
        w.opt32(&self.ephemeral);
        w.raw(&self.signature);
    }
    fn decode_fields(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(DeviceAnswer {
            device: r.id("device")?,
            challenge: r.arr("challenge")?,
            ephemeral: r.opt32("ephemeral")?,
            signature: r.arr("signature")?,
        })
    }
}

impl WireMessage for GroupAnswers {
    const TYPE: u8 = 4;
    fn encode_fields(&self, w: &mut Writer) {
        w.id(&self.group);
        w.id(&self.gateway);
        w.raw(&self.nonce);
        w.count(self.answers.len());
        for a in &self.answers {
            a.encode_fields(w);
        }
        w.raw(&self.signature);
    }
    fn decode_fields(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let group = r.id("group")?;
        let gateway = r.id("gateway")?;
        let nonce = r.arr("nonce")?;
        // Smallest answer: 1-byte id + 1 + 32 + 1 + 64.
        let n = r.count("answers", MAX_MEMBERS, 99)?;
        let mut answers = Vec::with_capacity(n);
        for _ in 0..n {
            answers.push(DeviceAnswer::decode_fields(r)?);
        }
        Ok(GroupAnswers {
            group,
            gateway,
            nonce,
            answers,
            signature: r.arr("signature")?,
        })
    }
}

impl WireMessage for GroupAssertion {
    const TYPE: u8 = 5;
    fn encode_fields(&self, w: &mut Writer) {
        w.id(&self.group);
        w.id(&self.gateway);
        w.raw(&self.nonce);
        w.raw(&self.challenge);
        w.count(self.authenticated.len());
        for d in &self.authenticated {
            w.id(d);
        }
        put_rejected(w, &self.rejected);
        w.raw(&self.gateway_ephemeral);
        w.raw(&self.signature);
    }
    fn decode_fields(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let group = r.id("group")?;
        let gateway = r.id("gateway")?;
        let nonce = r.arr("nonce")?;
        let challenge = r.arr("challenge")?;
        let n = r.count("authenticated", MAX_MEMBERS, 2)?;
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
            signature: r.arr("signature")?,
        })
    }
}

impl WireMessage for GroupAssociation {
    const TYPE: u8 = 6;
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
        w.raw(&self.signature);
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
            signature: r.arr("signature")?,
        })
    }
}

impl WireMessage for KeyConfirmation {
    const TYPE: u8 = 8;
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
    fn encode_fields(&self, w: &mut Writer) {
        w.id(&self.group);
        w.id(&self.gateway);
        w.raw(&self.nonce);
        w.count(self.confirmations.len());
        for c in &self.confirmations {
            c.encode_fields(w);
        }
        put_rejected(w, &self.rejected);
        w.raw(&self.signature);
    }
    fn decode_fields(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let group = r.id("group")?;
        let gateway = r.id("gateway")?;
        let nonce = r.arr("nonce")?;
        let n = r.count("confirmations", MAX_MEMBERS, 66)?;
        let mut confirmations = Vec::with_capacity(n);
        for _ in 0..n {
            confirmations.push(KeyConfirmation::decode_fields(r)?);
        }
        Ok(GroupConfirmations {
            group,
            gateway,
            nonce,
            confirmations,
            rejected: get_rejected(r)?,
            signature: r.arr("signature")?,
        })
    }
}

impl WireMessage for SealedMessage {
    const TYPE: u8 = 9;
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
