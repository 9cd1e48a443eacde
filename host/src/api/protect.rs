//! Denial-of-service protection at the gateway's edge (SER-001).
//!
//! - Keyed rate limits (token buckets from `governor`), one bucket per originator and one per
//!   client address. A flooding originator empties only its own bucket: every other
//!   originator keeps its full rate. Refusals cost a hash look-up, no plugin call.
//! - A bound on requests in flight (decisions and proxied exchanges). Beyond it the gateway
//!   answers 503 at once instead of queueing: a queue would turn a flood into latency for
//!   everyone and into unbounded memory.
//! - The buckets of idle keys are dropped periodically, so a flood of made-up originator IDs
//!   costs bounded memory ([`Protection::housekeeping`]).

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
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

/// The gateway's limits.
pub struct Protection {
    per_originator: Option<DefaultKeyedRateLimiter<String>>,
    per_ip: Option<DefaultKeyedRateLimiter<IpAddr>>,
    in_flight: Arc<Semaphore>,
    clock: governor::clock::DefaultClock,
}

fn quota(rate: Rate) -> Option<Quota> {
    let per_second = NonZeroU32::new(rate.per_second)?;
    let burst = NonZeroU32::new(rate.burst.max(1)).unwrap_or(per_second);
    Some(Quota::per_second(per_second).allow_burst(burst))
}

impl Protection {
    pub fn new(rates: &RateLimitConfig, max_in_flight: usize) -> Protection {
        Protection {
            per_originator: quota(rates.per_originator).map(RateLimiter::keyed),
            per_ip: quota(rates.per_source_ip).map(RateLimiter::keyed),
            in_flight: Arc::new(Semaphore::new(max_in_flight.max(1))),
            clock: governor::clock::DefaultClock::default(),
        }
    }

    /// Checks the client address's bucket (before reading a body).
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Refusal> {
        use governor::clock::Clock;
        match &self.per_ip {
            Some(limiter) => limiter
                .check_key(&ip)
                .map_err(|not_until| Refusal::SourceIp(not_until.wait_time_from(self.clock.now()))),
            None => Ok(()),
        }
    }

    /// Checks the originator's bucket. Keyed by the real ID: the limiter never leaves the
    /// gateway's memory, and pseudonyms would let one originator of two apps get two buckets.
    pub fn check_originator(&self, originator: &str) -> Result<(), Refusal> {
        use governor::clock::Clock;
        match &self.per_originator {
            Some(limiter) => limiter
                .check_key(&originator.to_string())
                .map_err(|not_until| {
                    Refusal::Originator(not_until.wait_time_from(self.clock.now()))
                }),
            None => Ok(()),
        }
    }

    /// A slot for one request in flight, or `None` when the gateway is at its limit (the
    /// caller answers 503 at once: back-pressure, never an unbounded queue).
    pub fn admit(&self) -> Option<OwnedSemaphorePermit> {
        self.in_flight.clone().try_acquire_owned().ok()
    }

    /// Drops the buckets of keys that are full again (idle), bounding memory.
    pub fn housekeeping(&self) {
        if let Some(limiter) = &self.per_originator {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        if let Some(limiter) = &self.per_ip {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}
