//! Keys that are used (#16.6): the server keeps every association it established until it
//! expires, and carries sealed device↔server messages (SER-002/003) over
//! `POST /group/v1/sealed`; the gateway agent relays them (`POST /agent/v1/sealed`) as bytes
//! it cannot read (independent mode: keys only the device and the server hold, SER-028).
//!
//! The channel enforces its counters (a replayed, reordered or modified message is refused
//! and does not move the counter); the table enforces expiry and its own size (SER-001).

use palisade_group::{SealedMessage, SecureChannel};
use std::collections::HashMap;

/// Most associations the server keeps at once (about 200 bytes each). When full, expired
/// ones go first, then the one expiring soonest: its peer authenticates again (fail closed:
/// a message for a dropped association is refused as an unknown session).
pub const MAX_ASSOCIATIONS: usize = 65_536;

/// Who is at the other end of an association.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// The group it was authenticated in.
    pub group: String,
    /// The device (independent mode) or the gateway (represented mode).
    pub id: String,
    /// When the association ends, Unix seconds.
    pub expires_at: u64,
}

struct Entry {
    peer: Peer,
    channel: SecureChannel,
}

/// The server's associations by session id.
#[derive(Default)]
pub struct Associations {
    map: HashMap<[u8; 16], Entry>,
}

/// Why a sealed message was not opened.
#[derive(Debug, PartialEq, Eq)]
pub enum SealedRefusal {
    /// No association with this session id (never made, dropped, or expired and removed).
    Unknown,
    /// The association expired at this time; it is removed.
    Expired(u64),
}

impl Associations {
    /// Keeps the server's end of an association until `peer.expires_at`.
    pub fn insert(&mut self, session: [u8; 16], peer: Peer, channel: SecureChannel, now: u64) {
        if self.map.len() >= MAX_ASSOCIATIONS && !self.map.contains_key(&session) {
            self.map.retain(|_, e| e.peer.expires_at > now);
            if self.map.len() >= MAX_ASSOCIATIONS {
                if let Some(k) = self
                    .map
                    .iter()
                    .min_by_key(|(_, e)| e.peer.expires_at)
                    .map(|(k, _)| *k)
                {
                    tracing::warn!(
                        "group association table full: the soonest-expiring association is dropped"
                    );
                    self.map.remove(&k);
                }
            }
        }
        self.map.insert(session, Entry { peer, channel });
    }

    /// Associations held.
    pub(super) fn len(&self) -> usize {
        self.map.len()
    }

    /// The live association of a message's session, its peer and channel end.
    pub fn live(
        &mut self,
        m: &SealedMessage,
        now: u64,
    ) -> Result<(&Peer, &mut SecureChannel), SealedRefusal> {
        let expired = match self.map.get(&m.session) {
            None => return Err(SealedRefusal::Unknown),
            Some(e) => e.peer.expires_at,
        };
        if now >= expired {
            self.map.remove(&m.session);
            return Err(SealedRefusal::Expired(expired));
        }
        let e = self.map.get_mut(&m.session).expect("present");
        Ok((&e.peer, &mut e.channel))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_group::derive_session;
    use palisade_group::ChannelRole;

    fn pair(seed: u8) -> (SecureChannel, SecureChannel) {
        let keys = derive_session(&[seed; 32], &[2; 32], &[3; 32]);
        (
            SecureChannel::new(&keys, ChannelRole::Device),
            SecureChannel::new(&keys, ChannelRole::Server),
        )
    }

    fn peer(expires_at: u64) -> Peer {
        Peer {
            group: "g".into(),
            id: "d".into(),
            expires_at,
        }
    }

    #[test]
    fn an_association_serves_until_it_expires_and_is_then_removed() {
        let mut t = Associations::default();
        let (mut device, server) = pair(1);
        let session = server.session();
        t.insert(session, peer(100), server, 10);
        let m1 = device.seal(b"one").unwrap();
        let (p, ch) = t.live(&m1, 99).unwrap();
        assert_eq!(p.id, "d");
        assert_eq!(ch.open(&m1).unwrap(), b"one");
        // The counter is the channel's: the same message again is a replay.
        assert!(t.live(&m1, 99).unwrap().1.open(&m1).is_err());
        let m2 = device.seal(b"two").unwrap();
        assert_eq!(t.live(&m2, 100).err(), Some(SealedRefusal::Expired(100)));
        assert_eq!(t.live(&m2, 50).err(), Some(SealedRefusal::Unknown));
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn a_full_table_drops_expired_associations_first_and_stays_bounded() {
        let mut t = Associations::default();
        for i in 0..MAX_ASSOCIATIONS {
            let (_, server) = pair(1);
            let mut session = [0u8; 16];
            session[..8].copy_from_slice(&(i as u64).to_be_bytes());
            // Half of them expired by time 500.
            let expires = if i % 2 == 0 { 400 } else { 1_000 + i as u64 };
            t.insert(session, peer(expires), server, 0);
        }
        assert_eq!(t.len(), MAX_ASSOCIATIONS);
        let (mut device, server) = pair(7);
        t.insert(server.session(), peer(2_000_000), server, 500);
        assert_eq!(t.len(), MAX_ASSOCIATIONS / 2 + 1);
        let m = device.seal(b"x").unwrap();
        assert!(t.live(&m, 500).is_ok());
    }
}
