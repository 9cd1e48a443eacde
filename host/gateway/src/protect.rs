//! Denial-of-service protection at the gateway's edge (SER-001).
//!
//! - Keyed rate limits, one token bucket per originator and one per client address
//!   ([`RateTable`]). A flooding originator empties only its own bucket: every other
//!   originator keeps its full rate. Refusals cost a hash look-up, no plugin call.
//! - A bound on requests in flight (decisions and proxied exchanges). Beyond it the gateway
//!   answers 503 at once instead of queueing: a queue would turn a flood into latency for
//!   everyone and into unbounded memory.
//! - A bound on open connections per client address ([`ConnectionTable`]), beside the
//!   global one, so that one address cannot take every connection slot.
//!
//! Every per-client table here has a fixed size whatever clients send: keys are at most 33
//! bytes (longer keys are replaced by their SHA-256), and a full rate table reuses a slot
//! instead of growing. A flood of made-up originator IDs costs no memory beyond the table
//! allocated at start.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::config::{Rate, RateLimitConfig};

/// Which limit refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The originator's bucket is empty; retry after this long.
    Originator(Duration),
    /// The client address's bucket is empty.
    SourceIp(Duration),
}

impl Refusal {
    /// Seconds to put in `Retry-After` (at least 1).
    pub fn retry_after_secs(self) -> u64 {
        let (Refusal::Originator(wait) | Refusal::SourceIp(wait)) = self;
        wait.as_secs().max(1)
    }

    /// The metrics label.
    pub fn key(self) -> &'static str {
        match self {
            Refusal::Originator(_) => "originator",
            Refusal::SourceIp(_) => "source_ip",
        }
    }
}

/// A table key of fixed size: keys of up to 32 bytes are kept as they are, longer ones as
/// their SHA-256 (collision-resistant, so two originators never share a bucket by accident or
/// by design). The first byte tells the forms apart.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TableKey([u8; 33]);

/// Tag of a hashed key; inline keys carry their length (0 to 32).
const DIGEST_TAG: u8 = 0xff;
/// Tag of a slot that was never used.
const EMPTY_TAG: u8 = 0xfe;
/// Tag of a client certificate's key.
const CERTIFICATE_TAG: u8 = 0xfd;

impl TableKey {
    /// The key of `bytes`.
    pub fn new(bytes: &[u8]) -> TableKey {
        let mut key = [0u8; 33];
        if bytes.len() <= 32 {
            key[0] = bytes.len() as u8;
            key[1..1 + bytes.len()].copy_from_slice(bytes);
        } else {
            key[0] = DIGEST_TAG;
            key[1..].copy_from_slice(&Sha256::digest(bytes));
        }
        TableKey(key)
    }

    /// The key of a client address. IPv4-mapped IPv6 addresses are the IPv4 address: a
    /// dual-stack listener must not give one client two buckets.
    pub fn of_ip(ip: IpAddr) -> TableKey {
        match ip.to_canonical() {
            IpAddr::V4(v4) => TableKey::new(&v4.octets()),
            IpAddr::V6(v6) => TableKey::new(&v6.octets()),
        }
    }

    /// The key of a client certificate (by its SHA-256). Its own tag: no originator's key is
    /// ever equal to it, whatever bytes the originator holds.
    pub fn of_certificate(digest: &[u8; 32]) -> TableKey {
        let mut key = [0u8; 33];
        key[0] = CERTIFICATE_TAG;
        key[1..].copy_from_slice(digest);
        TableKey(key)
    }

    const EMPTY: TableKey = {
        let mut key = [0u8; 33];
        key[0] = EMPTY_TAG;
        TableKey(key)
    };
}

/// Slots per set of a [`RateTable`]: a key can live in any slot of its set.
const WAYS: usize = 8;

#[derive(Clone, Copy)]
struct Slot {
    key: TableKey,
    /// GCRA's theoretical arrival time, in nanoseconds since the table's epoch. A bucket
    /// whose `tat` is not after now is full; an empty slot has 0.
    tat: u64,
}

/// Token buckets for any number of keys in a fixed amount of memory (SER-001).
///
/// Each bucket is GCRA (a token bucket kept as one timestamp per key): `rate`
/// requests per second, `burst` at once. The table is set-associative: a key's set is chosen
/// by a hash keyed with a per-process random secret (so that no client can aim its keys at
/// another client's set), and holds `WAYS` buckets.
///
/// **Eviction.** A key not in its set takes the slot whose bucket is nearest to full (a
/// never-used or idle slot first, which *is* full) and **inherits that bucket's state**
/// instead of starting full. So eviction never creates allowance: evicting an idle bucket
/// loses nothing (it would come back full anyway), and evicting a busy one hands its debt to
/// the newcomer. An attacker who pushes its own drained bucket out with a flood of new keys
/// comes back, at best, with the state of the fullest bucket of its set, and every key of the
/// flood only got the state of the slot it took: at any instant the table as a whole never
/// grants more than `capacity × burst` plus what refills at `rate` per slot — the same as
/// `capacity` distinct well-behaved clients. The price is paid only under a flood larger than
/// the table: a new key then starts with the least-drained state of its set rather than a
/// full bucket (it may have to wait up to `burst / rate` seconds). Keeping the whole table
/// busy takes `capacity × rate` requests per second, and the per-address limit applies first.
pub struct RateTable {
    sets: Box<[Mutex<[Slot; WAYS]>]>,
    hasher: RandomState,
    /// Nanoseconds between two requests at the steady rate.
    interval: u64,
    /// How far ahead of now a bucket's `tat` may run: `burst × interval`.
    tolerance: u64,
    epoch: Instant,
}

impl RateTable {
    /// A table for `rate` (a `per_second` of 0 is treated as 1; [`Protection`] does not build
    /// a table for a disabled limit) holding at least `capacity` keys.
    pub fn new(rate: Rate, capacity: usize) -> RateTable {
        let interval = 1_000_000_000 / u64::from(rate.per_second.max(1));
        let burst = u64::from(rate.burst.max(1));
        let sets = capacity.div_ceil(WAYS).max(1);
        let empty = Slot {
            key: TableKey::EMPTY,
            tat: 0,
        };
        RateTable {
            sets: (0..sets).map(|_| Mutex::new([empty; WAYS])).collect(),
            hasher: RandomState::new(),
            interval,
            tolerance: interval.saturating_mul(burst),
            epoch: Instant::now(),
        }
    }

    /// Buckets the table can hold (its memory is allocated at start).
    pub fn capacity(&self) -> usize {
        self.sets.len() * WAYS
    }

    /// Now, on the table's clock.
    pub fn now(&self) -> u64 {
        self.epoch
            .elapsed()
            .as_nanos()
            .try_into()
            .unwrap_or(u64::MAX)
    }

    /// Takes one token from `key`'s bucket at `now` (nanoseconds on the table's clock), or
    /// says how long until one is there.
    pub fn check_at(&self, key: &TableKey, now: u64) -> Result<(), Duration> {
        let index = (self.hasher.hash_one(key) % self.sets.len() as u64) as usize;
        let mut set = self.sets[index].lock().unwrap_or_else(|p| p.into_inner());
        let slot = match set.iter().position(|slot| slot.key == *key) {
            Some(found) => found,
            None => {
                // The slot nearest to full; the newcomer inherits its state (see above).
                let victim = set
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, slot)| slot.tat)
                    .map_or(0, |(index, _)| index);
                set[victim].key = *key;
                victim
            }
        };
        let tat = set[slot].tat.max(now).saturating_add(self.interval);
        let ahead = tat - now;
        if ahead > self.tolerance {
            return Err(Duration::from_nanos(ahead - self.tolerance));
        }
        set[slot].tat = tat;
        Ok(())
    }

    /// Takes one token from `key`'s bucket now.
    pub fn check(&self, key: &TableKey) -> Result<(), Duration> {
        self.check_at(key, self.now())
    }

    /// Slots holding a key (for the occupancy gauge and tests); at most [`Self::capacity`].
    pub fn occupied(&self) -> usize {
        self.sets
            .iter()
            .map(|set| {
                let set = set.lock().unwrap_or_else(|p| p.into_inner());
                set.iter()
                    .filter(|slot| slot.key != TableKey::EMPTY)
                    .count()
            })
            .sum()
    }
}

/// Open connections per client address (SER-001), beside the global `max_connections`.
///
/// An entry exists only while its address has a connection open, and a connection is only
/// counted after it got one of the global slots, so the table never holds more than
/// `max_connections` entries of at most 16 bytes of key each.
pub struct ConnectionTable {
    open: Mutex<HashMap<IpAddr, u32>>,
    per_address: u32,
}

/// One counted connection; dropping it frees the address's slot.
pub struct ConnectionSlot {
    table: Arc<ConnectionTable>,
    ip: IpAddr,
}

impl ConnectionTable {
    /// At most `per_address` (at least 1) open connections per address.
    pub fn new(per_address: usize) -> Arc<ConnectionTable> {
        Arc::new(ConnectionTable {
            open: Mutex::new(HashMap::new()),
            per_address: u32::try_from(per_address.max(1)).unwrap_or(u32::MAX),
        })
    }

    /// Counts a new connection from `ip`, or `None` when the address is at its cap (the
    /// caller closes the connection at once).
    pub fn open(self: &Arc<Self>, ip: IpAddr) -> Option<ConnectionSlot> {
        let ip = ip.to_canonical();
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let count = open.entry(ip).or_insert(0);
        if *count >= self.per_address {
            return None;
        }
        *count += 1;
        Some(ConnectionSlot {
            table: self.clone(),
            ip,
        })
    }

    /// Addresses with a connection open.
    #[cfg(test)]
    pub fn addresses(&self) -> usize {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut open = self.table.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// The gateway's limits.
pub struct Protection {
    per_originator: Option<RateTable>,
    per_ip: Option<RateTable>,
    in_flight: Arc<Semaphore>,
}

impl Protection {
    /// The rate tables of `rates` (allocated now, `rates.max_keys` each) and `max_in_flight`.
    pub fn new(rates: &RateLimitConfig, max_in_flight: usize) -> Protection {
        let table =
            |rate: Rate| (rate.per_second > 0).then(|| RateTable::new(rate, rates.max_keys));
        Protection {
            per_originator: table(rates.per_originator),
            per_ip: table(rates.per_source_ip),
            in_flight: Arc::new(Semaphore::new(max_in_flight.max(1))),
        }
    }

    /// Checks the client address's bucket (before reading a body).
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Refusal> {
        match &self.per_ip {
            Some(table) => table.check(&TableKey::of_ip(ip)).map_err(Refusal::SourceIp),
            None => Ok(()),
        }
    }

    /// Checks the originator's bucket. Keyed by the real ID: the table never leaves the
    /// gateway's memory, and pseudonyms would let one originator of two apps get two buckets.
    pub fn check_originator(&self, originator: &str) -> Result<(), Refusal> {
        match &self.per_originator {
            Some(table) => table
                .check(&TableKey::new(originator.as_bytes()))
                .map_err(Refusal::Originator),
            None => Ok(()),
        }
    }

    /// Checks the bucket of the client's authenticated identity where there is one: the
    /// verified TLS client certificate (its SHA-256) rather than the originator it claims,
    /// so a client cannot get a fresh bucket per made-up originator; without a certificate,
    /// the originator ([`Self::check_originator`]). Same table and limit (`per_originator`).
    pub fn check_client(
        &self,
        certificate: Option<&[u8; 32]>,
        originator: &str,
    ) -> Result<(), Refusal> {
        match (certificate, &self.per_originator) {
            (Some(digest), Some(table)) => table
                .check(&TableKey::of_certificate(digest))
                .map_err(Refusal::Originator),
            (None, _) => self.check_originator(originator),
            (_, None) => Ok(()),
        }
    }

    /// A slot for one request in flight, or `None` when the gateway is at its limit (the
    /// caller answers 503 at once: back-pressure, never an unbounded queue).
    pub fn admit(&self) -> Option<OwnedSemaphorePermit> {
        self.in_flight.clone().try_acquire_owned().ok()
    }

    /// The tables' Prometheus lines: keys held and capacity per limit, so an operator sees
    /// when a flood fills a table.
    pub fn metrics_text(&self) -> String {
        let mut out = String::from(
            "# HELP palisade_rate_limit_keys Keys held by a rate-limit table (fixed capacity, SER-001).\n\
             # TYPE palisade_rate_limit_keys gauge\n",
        );
        let mut capacity = String::from(
            "# HELP palisade_rate_limit_capacity Keys a rate-limit table can hold.\n\
             # TYPE palisade_rate_limit_capacity gauge\n",
        );
        for (name, table) in [
            ("originator", &self.per_originator),
            ("source_ip", &self.per_ip),
        ] {
            if let Some(table) = table {
                out.push_str(&format!(
                    "palisade_rate_limit_keys{{key=\"{name}\"}} {}\n",
                    table.occupied()
                ));
                capacity.push_str(&format!(
                    "palisade_rate_limit_capacity{{key=\"{name}\"}} {}\n",
                    table.capacity()
                ));
            }
        }
        out + &capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000_000;

    fn rate(per_second: u32, burst: u32) -> Rate {
        Rate { per_second, burst }
    }

    /// A client with a certificate has one bucket whatever originators it claims; without
    /// one, each originator has its own; a certificate's key never equals an originator's.
    #[test]
    fn a_certificate_has_one_bucket_whatever_it_claims() {
        let config = RateLimitConfig {
            per_originator: rate(1, 2),
            ..RateLimitConfig::default()
        };
        let protection = Protection::new(&config, 8);
        let digest = [3u8; 32];
        assert!(protection.check_client(Some(&digest), "CAE1").is_ok());
        assert!(protection.check_client(Some(&digest), "CAE2").is_ok());
        assert!(protection.check_client(Some(&digest), "CAE3").is_err());
        // The originators themselves, without the certificate, still have full buckets.
        for originator in ["CAE1", "CAE2", "CAE3"] {
            assert!(protection.check_client(None, originator).is_ok());
        }
        let mut as_bytes = vec![0xfd];
        as_bytes.extend_from_slice(&digest);
        assert!(TableKey::new(&as_bytes) != TableKey::of_certificate(&digest));
    }

    #[test]
    fn a_bucket_grants_its_burst_then_its_rate() {
        let table = RateTable::new(rate(10, 3), 64);
        let key = TableKey::new(b"CAE1");
        let t0 = 5 * SECOND;
        for _ in 0..3 {
            assert_eq!(table.check_at(&key, t0), Ok(()));
        }
        let wait = table.check_at(&key, t0).unwrap_err();
        assert_eq!(wait, Duration::from_millis(100));
        assert_eq!(table.check_at(&key, t0 + SECOND / 10), Ok(()));
        assert!(table.check_at(&key, t0 + SECOND / 10).is_err());
        // Another key is untouched.
        assert_eq!(table.check_at(&TableKey::new(b"CAE2"), t0), Ok(()));
    }

    #[test]
    fn long_keys_are_stored_as_fixed_size_digests_and_never_collide_with_short_ones() {
        let long = vec![b'x'; 30 << 10];
        let digest = TableKey::new(&long);
        assert_eq!(digest.0[0], DIGEST_TAG);
        assert_eq!(std::mem::size_of::<TableKey>(), 33);
        // The 32 digest bytes given as a short key are a different key.
        assert!(TableKey::new(&digest.0[1..]) != digest);
        let mut other = long.clone();
        other[12345] = b'y';
        assert!(TableKey::new(&other) != digest);
        // A mapped IPv4 address is the IPv4 address.
        let v4: IpAddr = "10.1.2.3".parse().unwrap();
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        assert!(TableKey::of_ip(v4) == TableKey::of_ip(mapped));
    }

    /// A million distinct keys, some of them 30 KB: the table holds at most its capacity, and
    /// its memory is the same before and after (allocated at start).
    #[test]
    fn a_million_distinct_keys_stay_within_the_capacity() {
        let table = RateTable::new(rate(50, 100), 4096);
        let capacity = table.capacity();
        assert_eq!(capacity, 4096);
        let long = vec![b'o'; 30 << 10];
        let mut now = SECOND;
        for i in 0..1_000_000u64 {
            let key = if i % 10_000 == 0 {
                let mut key = long.clone();
                key[..8].copy_from_slice(&i.to_be_bytes());
                TableKey::new(&key)
            } else {
                TableKey::new(format!("originator-{i}-with-a-name-longer-than-32").as_bytes())
            };
            // One new key a millisecond: every slot is idle again before it is reused, so
            // every newcomer gets a full bucket.
            now += 1_000_000;
            assert!(table.check_at(&key, now).is_ok(), "a new key at {i}");
        }
        assert_eq!(table.occupied(), capacity);
        assert!(std::mem::size_of::<Slot>() <= 48);
    }

    /// At one instant, no sequence of keys gets more than `capacity × burst` tokens out of
    /// the table: evictions hand the evicted bucket's state to the newcomer.
    #[test]
    fn evictions_create_no_allowance() {
        let burst = 2;
        let table = RateTable::new(rate(1, burst), 1024);
        let now = 10 * SECOND;
        let mut granted = 0u64;
        for i in 0..1_000_000u32 {
            let key = TableKey::new(&i.to_be_bytes());
            while table.check_at(&key, now).is_ok() {
                granted += 1;
            }
        }
        let bound = (table.capacity() as u64) * u64::from(burst);
        assert!(
            granted <= bound,
            "{granted} tokens granted at one instant, more than {bound}"
        );
        // A table that reset evicted keys would have granted 2,000,000.
    }

    /// An attacker drains its bucket, floods the table with a million new keys to push its
    /// bucket out, and comes back: still refused.
    #[test]
    fn a_flood_of_new_keys_does_not_reset_a_drained_bucket() {
        let table = RateTable::new(rate(10, 5), 512);
        let now = 3 * SECOND;
        let attacker = TableKey::new(b"attacker");
        while table.check_at(&attacker, now).is_ok() {}
        for i in 0..1_000_000u32 {
            let key = TableKey::new(&i.to_le_bytes());
            while table.check_at(&key, now).is_ok() {}
        }
        assert!(table.check_at(&attacker, now).is_err());
        // Time refills every bucket as usual.
        assert_eq!(table.check_at(&attacker, now + SECOND), Ok(()));
    }

    #[test]
    fn the_bucket_nearest_to_full_is_evicted_first() {
        // One set of 8 slots, 1,000 tokens a second. The busy key drains its whole burst (it
        // is full again only a second later); a thousand newcomers within that second, each
        // taking one token, come and go around it and never push it out.
        let table = RateTable::new(rate(1000, 1000), 8);
        let busy = TableKey::new(b"busy");
        let t0 = 100 * SECOND;
        while table.check_at(&busy, t0).is_ok() {}
        for i in 0..1000u64 {
            let key = TableKey::new(&i.to_be_bytes());
            table.check_at(&key, t0 + i * 500_000).unwrap();
        }
        let set = table.sets[0].lock().unwrap();
        assert!(set
            .iter()
            .any(|slot| slot.key == busy && slot.tat == t0 + SECOND));
    }

    #[test]
    fn connections_are_capped_per_address_and_released() {
        let table = ConnectionTable::new(3);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let held: Vec<_> = (0..3)
            .map(|_| table.open(a).expect("under the cap"))
            .collect();
        assert!(table.open(a).is_none(), "a fourth from the same address");
        assert!(table.open("::ffff:127.0.0.1".parse().unwrap()).is_none());
        let other = table.open(b).expect("another address is not affected");
        drop(held);
        assert!(table.open(a).is_some());
        drop(other);
        assert_eq!(table.addresses(), 0);
    }

    /// A million distinct addresses, each opening and closing: nothing stays behind; and a
    /// thousand held at once are a thousand entries.
    #[test]
    fn a_million_distinct_addresses_leave_no_entries() {
        let table = ConnectionTable::new(2);
        let mut held = Vec::new();
        for i in 0..1_000_000u128 {
            let ip = IpAddr::V6(std::net::Ipv6Addr::from((0x2001_0db8u128 << 96) | i));
            let slot = table.open(ip).unwrap();
            if i % 1000 == 0 {
                held.push(slot);
            }
        }
        assert_eq!(table.addresses(), 1000);
        drop(held);
        assert_eq!(table.addresses(), 0);
    }
}
