//! The end-to-end channel after group authentication (SER-002/003/012).
//!
//! ChaCha20-Poly1305 with one key per direction (so the two sides never use the same key and
//! nonce), a per-direction counter in the nonce, and the session, direction and counter in the
//! associated data. The receiver accepts exactly the next counter: a replayed message, a
//! reordered one and a modified one are each refused with their own error.

use super::crypto::SessionKeys;
use super::error::{GroupError, WireError};
use super::messages::{Direction, SealedMessage};
use super::wire::MAX_PAYLOAD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use zeroize::Zeroizing;

/// Which end of the channel this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelRole {
    /// The device (independent mode) or the gateway agent (represented mode).
    Device,
    /// The M2M server.
    Server,
}

/// One end of a protected channel.
pub struct SecureChannel {
    session: [u8; 16],
    send_dir: Direction,
    send_key: Zeroizing<[u8; 32]>,
    recv_key: Zeroizing<[u8; 32]>,
    send_next: u64,
    recv_next: u64,
}

fn nonce(dir: Direction, counter: u64) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[0] = dir as u8;
    n[4..].copy_from_slice(&counter.to_be_bytes());
    n
}

fn aad(session: &[u8; 16], dir: Direction, counter: u64) -> Vec<u8> {
    let mut a = b"palisade/group/v1 channel".to_vec();
    a.extend_from_slice(session);
    a.push(dir as u8);
    a.extend_from_slice(&counter.to_be_bytes());
    a
}

impl SecureChannel {
    /// Opens this end of the channel from the session keys.
    pub fn new(keys: &SessionKeys, role: ChannelRole) -> Self {
        let (send_dir, send_key, recv_key) = match role {
            ChannelRole::Device => (Direction::ToServer, &keys.to_server, &keys.to_device),
            ChannelRole::Server => (Direction::ToDevice, &keys.to_device, &keys.to_server),
        };
        SecureChannel {
            session: keys.session,
            send_dir,
            send_key: send_key.clone(),
            recv_key: recv_key.clone(),
            send_next: 0,
            recv_next: 0,
        }
    }

    /// The session id carried on every message.
    pub fn session(&self) -> [u8; 16] {
        self.session
    }

    /// Encrypts the next outgoing message.
    pub fn seal(&mut self, plaintext: &[u8]) -> Result<SealedMessage, GroupError> {
        if plaintext.len() > MAX_PAYLOAD {
            return Err(WireError::FieldTooLong {
                field: "plaintext",
                len: plaintext.len(),
                max: MAX_PAYLOAD,
            }
            .into());
        }
        let counter = self.send_next;
        self.send_next = counter.checked_add(1).ok_or(GroupError::ChannelExhausted)?;
        let ciphertext = ChaCha20Poly1305::new(Key::from_slice(&*self.send_key))
            .encrypt(
                Nonce::from_slice(&nonce(self.send_dir, counter)),
                Payload {
                    msg: plaintext,
                    aad: &aad(&self.session, self.send_dir, counter),
                },
            )
            .expect("encryption of a bounded payload cannot fail");
        Ok(SealedMessage {
            session: self.session,
            direction: self.send_dir,
            counter,
            ciphertext,
        })
    }

    /// Decrypts the next incoming message. Authentication comes first, so a modified counter
    /// is reported as tampering, and only an authentic old message as a replay.
    pub fn open(&mut self, m: &SealedMessage) -> Result<Vec<u8>, GroupError> {
        let recv_dir = match self.send_dir {
            Direction::ToServer => Direction::ToDevice,
            Direction::ToDevice => Direction::ToServer,
        };
        if m.session != self.session || m.direction != recv_dir {
            return Err(GroupError::ChannelMisrouted);
        }
        let pt = ChaCha20Poly1305::new(Key::from_slice(&*self.recv_key))
            .decrypt(
                Nonce::from_slice(&nonce(recv_dir, m.counter)),
                Payload {
                    msg: &m.ciphertext,
                    aad: &aad(&self.session, recv_dir, m.counter),
                },
            )
            .map_err(|_| GroupError::ChannelTampered)?;
        if m.counter < self.recv_next {
            return Err(GroupError::ChannelReplay {
                counter: m.counter,
                expected: self.recv_next,
            });
        }
        if m.counter > self.recv_next {
            return Err(GroupError::ChannelOutOfOrder {
                counter: m.counter,
                expected: self.recv_next,
            });
        }
        self.recv_next = self
            .recv_next
            .checked_add(1)
            .ok_or(GroupError::ChannelExhausted)?;
        Ok(pt)
    }
}
