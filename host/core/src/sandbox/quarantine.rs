//! Quarantine for plugins that keep failing (SER-001): a plugin whose calls keep failing is
//! taken out of service for a back-off period, during which its calls are denied without
//! running it. The policy has to hold against two opposite attackers:
//!
//! - a **hostile plugin**, which wants to burn as much gateway time as it can without being
//!   stopped (e.g. by burning its full deadline on every other call, so that a success always
//!   sits between two failures), and
//! - a **hostile client**, which wants a healthy application's plugin quarantined so that
//!   every other originator of the application is denied (issue #11 finding 4: five requests
//!   whose answer the plugin could not give used to do it).
//!
//! # The policy
//!
//! **Only failures the plugin caused count** ([`super::Failure::blames_plugin`]): an overlong
//! answer is truncated by the host and is no failure at all, and host-side trouble (an
//! exhausted instance pool, a host error raised before the plugin spent any real time) is not
//! held against it.
//!
//! **Failure rate over a window, not consecutive failures.** Every call updates counters that
//! decay with a half-life of [`HALF_LIFE`] (10 s), so "recent" means roughly the last
//! 15–30 s and a success no longer resets anything. A *scope* (one originator, or the whole
//! application, see below) is quarantined when, in its decayed counters,
//!
//! - its failures reach `quarantine_after` (default 5) **and** make up at least half of its
//!   calls ([`MIN_FAILURE_SHARE`]), so a plugin that fails for every second call is stopped
//!   after 5 failures however its successes are interleaved; **or**
//! - its failures together used [`BURN_SHARE`] of `quarantine_after` in full deadlines
//!   (3 × 50 ms by default), whatever the successes in between: time is what a hostile
//!   plugin steals, so a deadline-burning failure weighs like several quick ones, and at most
//!   three deadlines are burnt in a window before quarantine (not 150 as with a consecutive
//!   count). Deriving it from `quarantine_after` keeps that one knob: a huge value turns
//!   quarantine off altogether (the benchmarks do that to measure attacks unhindered).
//!
//! **Failures are attributed to the request's originator**, in a table of at most
//! [`MAX_ORIGINATORS`] originators per plugin (keyed by a keyed 64-bit hash, so long or
//! numerous originator strings cost no memory):
//!
//! - *Originator quarantine*: an originator whose own calls meet the rule above is quarantined
//!   for itself only: its calls to this plugin are denied without running it; nobody else
//!   notices. This is what stops one stream of failing requests, whoever is at fault.
//! - *Application quarantine*: one originator's failures count towards the application-wide
//!   counters only up to a third of each threshold ([`ORIGINATOR_SHARE`]), so **at least
//!   three originators** must fail before the plugin is quarantined for everyone, and the
//!   share condition compares them with the successes of *all* originators: on a busy
//!   application, the failing originators together must fail as often as everybody else
//!   succeeds.
//!
//! **Invented originators.** On an application without authentication an attacker can invent
//! originators at will, so three of them can meet the application rule on a quiet
//! application. What bounds that: (1) an application quarantine does not apply to originators
//! in *good standing* — whose last call through this plugin succeeded — so the established
//! clients of the application keep being served by the plugin (each such call is a probe: if
//! it fails, that originator loses its standing); only originators without a recent success
//! wait out the quarantine; (2) the share condition makes the attacker's failures compete
//! with every legitimate success; (3) the table keeps originators in good standing when it
//! has to evict (it evicts those without standing first), so flooding it with invented
//! originators costs one successful call per entry to push the legitimate ones out; the
//! edge's per-address and per-originator rate limits bound how fast that can go.
//! Residual risk: an attacker with many originators in good standing *and* a request that
//! makes the plugin fail can still quarantine it for new originators; applications that
//! authenticate their originators (token or certificate) close that.
//!
//! **Back-off.** A quarantine lasts `quarantine_base` (1 s), doubling each time the scope is
//! quarantined again without a success in between, up to `quarantine_max` (5 min). When the
//! period ends calls are let through again; the first result decides: a success clears the
//! strikes, a failure quarantines again at once with the doubled period.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::limits::SandboxLimits;

/// Half-life of the decaying failure and success counters: the "window" of the rate rule.
pub const HALF_LIFE: Duration = Duration::from_secs(10);

/// Failures must be at least this share of a scope's recent calls to meet the count rule.
pub const MIN_FAILURE_SHARE: f64 = 0.5;

/// Full deadlines recent failures may burn before their scope is quarantined, regardless of
/// the successes in between, as a share of `quarantine_after` (3 of the default 5).
pub const BURN_SHARE: f64 = 0.6;

/// The part of each application-wide threshold one originator can fill: a third, so no
/// fewer than three originators can quarantine a plugin for everyone.
pub const ORIGINATOR_SHARE: f64 = 1.0 / 3.0;

/// Originators tracked per plugin; beyond it the least useful entry is evicted.
pub const MAX_ORIGINATORS: usize = 1024;

/// Entries looked at to choose one to evict (a sample, so an eviction costs O(1)).
const EVICTION_SAMPLE: usize = 32;

/// Decayed counters may stay this far (in failures or deadlines, and at most a tenth of the
/// threshold) below a threshold and still meet it, so that the decay between failures a
/// second or so apart cannot hide the last one. It never lets fewer whole failures, nor
/// fewer than three originators' shares, meet a threshold.
const THRESHOLD_SLACK: f64 = 0.3;

/// What a scope's counters must reach for a `limit`: the limit less the slack.
fn reached(value: f64, limit: f64) -> bool {
    value >= limit - THRESHOLD_SLACK.min(limit * 0.1)
}

/// Who a quarantine applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuarantineScope {
    /// Only the originator of the refused request.
    Originator,
    /// Every originator of the application without good standing.
    Application,
}

/// The plugin's quarantine state. Created empty; touched only after the plugin's first
/// failure (see `Plugin::has_failed`).
#[derive(Debug, Default)]
pub(crate) struct Quarantine {
    state: Mutex<State>,
    /// Keys the originator hash, so nobody outside the process can aim collisions.
    hasher: RandomState,
}

#[derive(Debug, Default)]
struct State {
    /// Application-wide counters, each originator's contribution capped.
    app: Counters,
    app_hold: Hold,
    originators: HashMap<u64, Originator>,
    total_quarantines: u64,
    originator_quarantines: u64,
}

/// Decaying counters of one scope.
#[derive(Debug, Default, Clone, Copy)]
struct Counters {
    failures: f64,
    successes: f64,
    /// Deadlines' worth of time the failures used (a timeout adds 1).
    burned: f64,
    at: Option<Instant>,
}

impl Counters {
    fn decay(&mut self, now: Instant) {
        if let Some(at) = self.at {
            let elapsed = now.saturating_duration_since(at).as_secs_f64();
            let factor = 0.5f64.powf(elapsed / HALF_LIFE.as_secs_f64());
            self.failures *= factor;
            self.successes *= factor;
            self.burned *= factor;
        }
        self.at = Some(now);
    }

    /// Whether these counters meet the quarantine rule for `threshold` failures and
    /// `burn_limit` deadlines.
    fn meets(&self, threshold: f64, burn_limit: f64) -> bool {
        let by_rate = reached(self.failures, threshold)
            && self.failures >= MIN_FAILURE_SHARE * (self.failures + self.successes);
        by_rate || reached(self.burned, burn_limit)
    }
}

/// A quarantine period with its back-off.
#[derive(Debug, Default)]
struct Hold {
    until: Option<Instant>,
    /// Quarantines since the last success.
    strikes: u32,
}

impl Hold {
    fn remaining(&self, now: Instant) -> Option<Duration> {
        self.until
            .filter(|until| now < *until)
            .map(|until| until - now)
    }

    /// Whether a period ended and no result has decided about it yet.
    fn readmitted(&self, now: Instant) -> bool {
        self.until.is_some_and(|until| now >= until)
    }

    fn start(&mut self, now: Instant, limits: &SandboxLimits) -> Duration {
        let factor = 1u32.checked_shl(self.strikes.min(16)).unwrap_or(u32::MAX);
        let period = limits
            .quarantine_base
            .saturating_mul(factor)
            .min(limits.quarantine_max);
        self.strikes = self.strikes.saturating_add(1);
        self.until = Some(now + period);
        period
    }

    fn clear_if_over(&mut self, now: Instant) {
        if self.remaining(now).is_none() {
            self.until = None;
            self.strikes = 0;
        }
    }
}

#[derive(Debug, Default)]
struct Originator {
    counters: Counters,
    hold: Hold,
    /// Whether this originator's last call through the plugin succeeded.
    good_standing: bool,
    last_seen: Option<Instant>,
}

/// Why a call was refused without running the plugin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub scope: QuarantineScope,
    pub remaining: Duration,
}

/// What recording a failure did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Counted,
    Quarantined(QuarantineScope),
}

/// A plugin's health as reported to operators.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PluginHealth {
    /// Failures in the recent window (decayed, rounded down), all originators together.
    pub recent_failures: u64,
    /// Quarantined for the application (originators in good standing excepted).
    pub quarantined: bool,
    /// Milliseconds left in the application quarantine.
    pub quarantine_remaining_ms: u64,
    /// Application quarantines so far.
    pub total_quarantines: u64,
    /// Originators quarantined for themselves right now.
    pub quarantined_originators: u64,
    /// Originator quarantines so far.
    pub originator_quarantines: u64,
}

impl Quarantine {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The key an originator is tracked under.
    pub(crate) fn key(&self, originator: &str) -> u64 {
        self.hasher.hash_one(originator)
    }

    /// `Err` while the plugin is quarantined for this originator.
    pub(crate) fn admit(&self, originator: u64, now: Instant) -> Result<(), Refusal> {
        let state = self.lock();
        let entry = state.originators.get(&originator);
        if let Some(remaining) = entry.and_then(|entry| entry.hold.remaining(now)) {
            return Err(Refusal {
                scope: QuarantineScope::Originator,
                remaining,
            });
        }
        if let Some(remaining) = state.app_hold.remaining(now) {
            if !entry.is_some_and(|entry| entry.good_standing) {
                return Err(Refusal {
                    scope: QuarantineScope::Application,
                    remaining,
                });
            }
        }
        Ok(())
    }

    pub(crate) fn record_success(&self, originator: u64, now: Instant) {
        let mut state = self.lock();
        state.app.decay(now);
        state.app.successes += 1.0;
        state.app_hold.clear_if_over(now);
        let entry = entry(&mut state.originators, originator, now);
        entry.counters.decay(now);
        entry.counters.successes += 1.0;
        entry.good_standing = true;
        entry.hold.clear_if_over(now);
    }

    /// Records a failure the plugin caused, which used `burned` of its deadline (0 to 1).
    pub(crate) fn record_failure(
        &self,
        originator: u64,
        burned: f64,
        now: Instant,
        limits: &SandboxLimits,
    ) -> Outcome {
        let burned = burned.clamp(0.0, 1.0);
        let threshold = f64::from(limits.quarantine_after.max(1));
        let burn_limit = threshold * BURN_SHARE;
        let mut state = self.lock();
        let state = &mut *state;

        let entry = entry(&mut state.originators, originator, now);
        entry.counters.decay(now);
        let before = entry.counters;
        entry.counters.failures += 1.0;
        entry.counters.burned += burned;
        entry.good_standing = false;
        let after = entry.counters;
        let mut outcome = Outcome::Counted;
        if entry.hold.remaining(now).is_none()
            && (entry.hold.readmitted(now) || after.meets(threshold, burn_limit))
        {
            entry.hold.start(now, limits);
            state.originator_quarantines += 1;
            outcome = Outcome::Quarantined(QuarantineScope::Originator);
        }

        // Only the part of this originator's recent failures under its share reaches the
        // application's counters.
        let capped = |value: f64, limit: f64| value.min(limit * ORIGINATOR_SHARE);
        state.app.decay(now);
        state.app.failures +=
            (capped(after.failures, threshold) - capped(before.failures, threshold)).max(0.0);
        state.app.burned +=
            (capped(after.burned, burn_limit) - capped(before.burned, burn_limit)).max(0.0);
        if state.app_hold.remaining(now).is_none() && state.app.meets(threshold, burn_limit) {
            state.app_hold.start(now, limits);
            state.total_quarantines += 1;
            outcome = Outcome::Quarantined(QuarantineScope::Application);
        } else if state.app_hold.readmitted(now) {
            // The period is over and this failure does not meet the rule any more: the
            // application is re-admitted, its strikes kept until a success clears them.
            state.app_hold.until = None;
        }
        outcome
    }

    pub(crate) fn health(&self, now: Instant) -> PluginHealth {
        let state = self.lock();
        let mut app = state.app;
        app.decay(now);
        let remaining = state.app_hold.remaining(now).unwrap_or_default();
        PluginHealth {
            recent_failures: app.failures.floor() as u64,
            quarantined: !remaining.is_zero(),
            quarantine_remaining_ms: remaining.as_millis() as u64,
            total_quarantines: state.total_quarantines,
            quarantined_originators: state
                .originators
                .values()
                .filter(|entry| entry.hold.remaining(now).is_some())
                .count() as u64,
            originator_quarantines: state.originator_quarantines,
        }
    }
}

/// The originator's entry, made (evicting another if the table is full) when missing.
fn entry(originators: &mut HashMap<u64, Originator>, key: u64, now: Instant) -> &mut Originator {
    if !originators.contains_key(&key) && originators.len() >= MAX_ORIGINATORS {
        // Keep originators in good standing and those in quarantine (evicting a quarantined
        // one would re-admit it); among the rest, the one seen longest ago goes.
        let victim = originators
            .iter()
            .take(EVICTION_SAMPLE)
            .min_by_key(|(_, entry)| {
                (
                    entry.good_standing || entry.hold.remaining(now).is_some(),
                    entry.last_seen,
                )
            })
            .map(|(key, _)| *key);
        if let Some(victim) = victim {
            originators.remove(&victim);
        }
    }
    let entry = originators.entry(key).or_default();
    entry.last_seen = Some(now);
    entry
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> SandboxLimits {
        SandboxLimits {
            quarantine_after: 3,
            quarantine_base: Duration::from_secs(1),
            quarantine_max: Duration::from_secs(3),
            ..SandboxLimits::default()
        }
    }

    const QUICK: f64 = 0.0;
    const DEADLINE: f64 = 1.0;

    /// Fails once for each of `originators`, quickly.
    fn fail_each(quarantine: &Quarantine, originators: &[u64], now: Instant) -> Outcome {
        let mut outcome = Outcome::Counted;
        for originator in originators {
            outcome = quarantine.record_failure(*originator, QUICK, now, &limits());
        }
        outcome
    }

    #[test]
    fn quarantines_one_originator_after_repeated_failures_and_backs_off() {
        // The old consecutive rule's behaviour, now for the one originator that fails.
        let quarantine = Quarantine::default();
        let start = Instant::now();
        let (bad, good) = (1, 2);
        assert_eq!(fail_each(&quarantine, &[bad, bad], start), Outcome::Counted);
        assert_eq!(
            fail_each(&quarantine, &[bad], start),
            Outcome::Quarantined(QuarantineScope::Originator)
        );
        let refusal = quarantine.admit(bad, start).unwrap_err();
        assert_eq!(refusal.scope, QuarantineScope::Originator);
        assert!(quarantine.admit(good, start).is_ok(), "nobody else notices");
        // Re-admitted after the first period; a failure then doubles it.
        let later = start + Duration::from_millis(1001);
        assert!(quarantine.admit(bad, later).is_ok());
        assert_eq!(
            fail_each(&quarantine, &[bad], later),
            Outcome::Quarantined(QuarantineScope::Originator)
        );
        assert_eq!(
            quarantine.admit(bad, later).unwrap_err().remaining,
            Duration::from_secs(2)
        );
        // Capped at the maximum.
        let much_later = later + Duration::from_secs(3);
        fail_each(&quarantine, &[bad], much_later);
        assert_eq!(
            quarantine.admit(bad, much_later).unwrap_err().remaining,
            Duration::from_secs(3)
        );
        // A success after the period clears it.
        let after = much_later + Duration::from_secs(4);
        quarantine.record_success(bad, after);
        assert!(quarantine.admit(bad, after).is_ok());
        let health = quarantine.health(after);
        assert_eq!(health.originator_quarantines, 3);
        assert_eq!(
            health.total_quarantines, 0,
            "one originator never quarantines the app"
        );
    }

    #[test]
    fn interleaved_successes_no_longer_hide_failures() {
        // Success, failure, success, failure...: the old rule never quarantined this.
        let quarantine = Quarantine::default();
        let now = Instant::now();
        let mut quarantined_after = None;
        for call in 1..=20 {
            quarantine.record_success(7, now);
            if quarantine.record_failure(7, QUICK, now, &limits()) != Outcome::Counted {
                quarantined_after = Some(call);
                break;
            }
        }
        assert_eq!(
            quarantined_after,
            Some(3),
            "quarantine_after failures at a 50 % rate"
        );
    }

    #[test]
    fn a_lower_failure_rate_of_quick_failures_is_tolerated() {
        // One quick failure in three calls: a flaky plugin, not a hostile one.
        let quarantine = Quarantine::default();
        let now = Instant::now();
        for _ in 0..50 {
            quarantine.record_success(7, now);
            quarantine.record_success(7, now);
            assert_eq!(
                quarantine.record_failure(7, QUICK, now, &limits()),
                Outcome::Counted
            );
        }
    }

    #[test]
    fn deadline_burning_failures_are_stopped_early_whatever_the_successes() {
        let quarantine = Quarantine::default();
        let now = Instant::now();
        let mut burned = 0;
        for _ in 0..150 {
            for _ in 0..20 {
                quarantine.record_success(9, now);
            }
            burned += 1;
            if quarantine.record_failure(9, DEADLINE, now, &limits()) != Outcome::Counted {
                break;
            }
        }
        // quarantine_after = 3 here: 60 % of it is 1.8 deadlines, so the second burn.
        assert_eq!(burned, 2);
    }

    #[test]
    fn counters_decay_so_old_failures_are_forgotten() {
        let quarantine = Quarantine::default();
        let start = Instant::now();
        fail_each(&quarantine, &[5, 5], start);
        // Two half-lives later the two failures weigh a half; two more do not reach three.
        let later = start + HALF_LIFE * 2;
        assert_eq!(fail_each(&quarantine, &[5, 5], later), Outcome::Counted);
    }

    #[test]
    fn a_huge_quarantine_after_turns_quarantine_off() {
        let quarantine = Quarantine::default();
        let now = Instant::now();
        let off = SandboxLimits {
            quarantine_after: u32::MAX,
            ..SandboxLimits::default()
        };
        for originator in 0..10 {
            for _ in 0..100 {
                assert_eq!(
                    quarantine.record_failure(originator, DEADLINE, now, &off),
                    Outcome::Counted
                );
            }
        }
    }

    #[test]
    fn one_originator_cannot_quarantine_the_application() {
        let quarantine = Quarantine::default();
        let now = Instant::now();
        for _ in 0..100 {
            quarantine.record_failure(66, DEADLINE, now, &limits());
        }
        assert!(!quarantine.health(now).quarantined);
        assert!(quarantine.admit(1, now).is_ok());
        // Two are not enough either.
        for _ in 0..100 {
            quarantine.record_failure(67, DEADLINE, now, &limits());
        }
        assert!(!quarantine.health(now).quarantined);
    }

    #[test]
    fn three_failing_originators_quarantine_the_application_but_not_those_in_good_standing() {
        let quarantine = Quarantine::default();
        let now = Instant::now();
        let client = 100;
        quarantine.record_success(client, now);
        assert_eq!(
            fail_each(&quarantine, &[1, 2, 3], now),
            Outcome::Quarantined(QuarantineScope::Application)
        );
        let health = quarantine.health(now);
        assert!(health.quarantined);
        assert_eq!(health.total_quarantines, 1);
        assert_eq!(
            quarantine.admit(4, now).unwrap_err().scope,
            QuarantineScope::Application,
            "an originator without a recent success waits"
        );
        assert!(
            quarantine.admit(client, now).is_ok(),
            "an originator in good standing keeps being served"
        );
        // ...until the plugin fails it too.
        quarantine.record_failure(client, QUICK, now, &limits());
        assert!(quarantine.admit(client, now).is_err());
    }

    #[test]
    fn the_failures_of_many_originators_must_outweigh_everyone_elses_successes() {
        let quarantine = Quarantine::default();
        let now = Instant::now();
        for client in 0..300 {
            quarantine.record_success(client, now);
        }
        // 30 invented originators, each failing quickly until it is quarantined itself.
        for attacker in 1_000..1_030 {
            for _ in 0..3 {
                quarantine.record_failure(attacker, QUICK, now, &limits());
            }
        }
        let health = quarantine.health(now);
        assert!(!health.quarantined, "{health:?}");
        assert_eq!(health.quarantined_originators, 30);
    }

    #[test]
    fn the_table_is_bounded_and_keeps_originators_in_good_standing() {
        let quarantine = Quarantine::default();
        let now = Instant::now();
        let client = u64::MAX;
        quarantine.record_success(client, now);
        for invented in 0..(MAX_ORIGINATORS as u64 * 4) {
            quarantine.record_failure(invented, QUICK, now, &limits());
        }
        let state = quarantine.lock();
        assert!(state.originators.len() <= MAX_ORIGINATORS);
        assert!(state
            .originators
            .get(&client)
            .is_some_and(|entry| entry.good_standing));
    }
}
