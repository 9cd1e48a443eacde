//! Quarantine for plugins that keep failing (SER-001): after a number of consecutive
//! failures a plugin is taken out of service for a back-off period, during which its calls
//! are denied without running it. When the period ends one call is let through; success
//! re-admits the plugin, another failure doubles the period (up to a maximum).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::limits::SandboxLimits;

#[derive(Debug, Default)]
pub(crate) struct Quarantine {
    state: Mutex<QuarantineState>,
}

#[derive(Debug, Default)]
struct QuarantineState {
    consecutive_failures: u32,
    /// How many times the plugin has been quarantined without a success since.
    strikes: u32,
    until: Option<Instant>,
    /// Total quarantines, for health reports.
    total_quarantines: u64,
}

/// A plugin's health as reported to operators.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PluginHealth {
    pub consecutive_failures: u32,
    pub quarantined: bool,
    /// Milliseconds left in quarantine.
    pub quarantine_remaining_ms: u64,
    pub total_quarantines: u64,
}

impl Quarantine {
    fn lock(&self) -> std::sync::MutexGuard<'_, QuarantineState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `Err((failures, remaining))` while the plugin is quarantined.
    pub(crate) fn admit(&self, now: Instant) -> Result<(), (u32, Duration)> {
        let state = self.lock();
        match state.until {
            Some(until) if now < until => Err((state.consecutive_failures, until - now)),
            _ => Ok(()),
        }
    }

    pub(crate) fn record_success(&self) {
        let mut state = self.lock();
        state.consecutive_failures = 0;
        state.strikes = 0;
        state.until = None;
    }

    /// Records a failure; returns true when it put the plugin into quarantine.
    pub(crate) fn record_failure(&self, now: Instant, limits: &SandboxLimits) -> bool {
        let mut state = self.lock();
        state.consecutive_failures = state.consecutive_failures.saturating_add(1);
        let readmitted_and_failed = state.until.is_some_and(|until| now >= until);
        if state.consecutive_failures >= limits.quarantine_after.max(1) || readmitted_and_failed {
            let factor = 1u32.checked_shl(state.strikes.min(16)).unwrap_or(u32::MAX);
            let period = limits
                .quarantine_base
                .saturating_mul(factor)
                .min(limits.quarantine_max);
            state.strikes = state.strikes.saturating_add(1);
            state.until = Some(now + period);
            state.total_quarantines += 1;
            return true;
        }
        false
    }

    pub(crate) fn health(&self, now: Instant) -> PluginHealth {
        let state = self.lock();
        let remaining = state
            .until
            .map(|until| until.saturating_duration_since(now))
            .unwrap_or_default();
        PluginHealth {
            consecutive_failures: state.consecutive_failures,
            quarantined: !remaining.is_zero(),
            quarantine_remaining_ms: remaining.as_millis() as u64,
            total_quarantines: state.total_quarantines,
        }
    }
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

    #[test]
    fn quarantines_after_consecutive_failures_and_backs_off() {
        let quarantine = Quarantine::default();
        let start = Instant::now();
        assert!(!quarantine.record_failure(start, &limits()));
        assert!(!quarantine.record_failure(start, &limits()));
        assert!(quarantine.record_failure(start, &limits()));
        assert!(quarantine.admit(start).is_err());
        // Re-admitted after the first period; a failure then doubles it.
        let later = start + Duration::from_millis(1001);
        assert!(quarantine.admit(later).is_ok());
        assert!(quarantine.record_failure(later, &limits()));
        let (_, remaining) = quarantine.admit(later).unwrap_err();
        assert_eq!(remaining, Duration::from_secs(2));
        // Capped at the maximum.
        let much_later = later + Duration::from_secs(3);
        assert!(quarantine.record_failure(much_later, &limits()));
        let (_, remaining) = quarantine.admit(much_later).unwrap_err();
        assert_eq!(remaining, Duration::from_secs(3));
        // A success clears everything.
        quarantine.record_success();
        assert!(quarantine.admit(much_later).is_ok());
        assert_eq!(quarantine.health(much_later).consecutive_failures, 0);
    }

    #[test]
    fn a_success_between_failures_resets_the_count() {
        let quarantine = Quarantine::default();
        let now = Instant::now();
        quarantine.record_failure(now, &limits());
        quarantine.record_failure(now, &limits());
        quarantine.record_success();
        assert!(!quarantine.record_failure(now, &limits()));
        assert!(quarantine.admit(now).is_ok());
    }
}
