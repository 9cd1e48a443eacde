//! A gateway's subscription of one plugin to an OCI reference, with staged rollout.
//!
//! Three ways to follow (issue #17.2): a reference with a digest is *pinned* and installs that
//! digest only; a tag is *followed*, and each new digest it names is pulled, handed to the
//! gateway's [`Installer`] (trust chain and version rule, before anything is stored) and
//! installed; a tag with `after_canary` is followed only once a canary gateway has attested
//! (see [`crate::canary`]) that it ran the digest for the soak time without failures.
//!
//! Whatever goes wrong (registry down, a tampered or oversized blob, a module the installer
//! refuses) the running version stays: a subscription only ever replaces a version with one
//! the installer accepted. Transport and content failures are retried with exponential
//! back-off; a digest the installer refused is not pulled again until the reference names
//! another one (its bytes cannot change under the same digest).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use oci_client::{Client, Reference};
use rand::Rng;
use serde::Serialize;

use crate::artifact::{self, PulledModule};
use crate::canary::{self, Attestation};
use crate::{OciError, RegistryConfig};

/// The shortest poll interval accepted: a fleet polling faster would load the registry for
/// no gain.
pub const MIN_POLL_INTERVAL: Duration = Duration::from_secs(1);
/// The longest poll interval or back-off accepted.
pub const MAX_POLL_INTERVAL: Duration = Duration::from_secs(24 * 3600);
/// Default poll interval.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(60);
/// Default back-off ceiling.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(15 * 60);

/// Seconds since the epoch; injectable so that soak times can be tested without waiting.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(palisade_types::now_unix)
}

/// What one subscription follows and how often.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SubscriptionConfig {
    /// `registry/repository:tag` (follow) or `registry/repository@sha256:...` (pinned).
    pub reference: String,
    /// Follow the tag only after a canary attested this long without failures. Needs a tag.
    pub after_canary: Option<Duration>,
    /// This gateway is a canary under this name: it attests each digest it runs.
    pub canary_name: Option<String>,
    /// Time between polls, [`MIN_POLL_INTERVAL`]..=[`MAX_POLL_INTERVAL`].
    pub poll_interval: Duration,
    /// Ceiling of the back-off after failures, at least `poll_interval`.
    pub max_backoff: Duration,
}

impl SubscriptionConfig {
    /// A subscription to `reference` with the default intervals.
    pub fn new(reference: impl Into<String>) -> SubscriptionConfig {
        SubscriptionConfig {
            reference: reference.into(),
            after_canary: None,
            canary_name: None,
            poll_interval: DEFAULT_POLL_INTERVAL,
            max_backoff: DEFAULT_MAX_BACKOFF,
        }
    }

    /// Checks the settings and parses the reference.
    pub fn validate(&self) -> Result<Reference, OciError> {
        let reference = artifact::parse_reference(&self.reference)?;
        let config = |reason: String| Err(OciError::Config(reason));
        if !(MIN_POLL_INTERVAL..=MAX_POLL_INTERVAL).contains(&self.poll_interval) {
            return config(format!(
                "poll_interval must be between {} s and {} s",
                MIN_POLL_INTERVAL.as_secs(),
                MAX_POLL_INTERVAL.as_secs()
            ));
        }
        if self.max_backoff < self.poll_interval || self.max_backoff > MAX_POLL_INTERVAL {
            return config(format!(
                "max_backoff must be between poll_interval and {} s",
                MAX_POLL_INTERVAL.as_secs()
            ));
        }
        if self.after_canary.is_some() && reference.digest().is_some() {
            return config("after_canary needs a tag, not a pinned digest".into());
        }
        if self.after_canary.is_some() && self.canary_name.is_some() {
            return config("a canary does not wait for a canary".into());
        }
        if let Some(name) = &self.canary_name {
            let ok = !name.is_empty()
                && name.len() <= 128
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
            if !ok {
                return config(format!(
                    "canary name {name:?}: 1 to 128 of A-Z a-z 0-9 - _ ."
                ));
            }
        }
        Ok(reference)
    }
}

/// Why the installer refused a module.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
#[non_exhaustive]
pub struct InstallError {
    /// A short stable code (the gateway's verify or store error code).
    pub code: String,
    /// The full reason.
    pub message: String,
}

impl InstallError {
    /// A refusal with a stable `code` and the full reason.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> InstallError {
        InstallError {
            code: code.into(),
            message: message.into(),
        }
    }
}

/// The gateway's side of a subscription: it verifies, stores and swaps.
pub trait Installer: Send + Sync + 'static {
    /// Verifies the module (trust chain, application, kind, version rule) before anything is
    /// stored, then stores and activates it. An error leaves the running version in place.
    /// Returns a label of what now runs (`app/name@version`). Called off the async runtime.
    fn install(&self, module: &PulledModule) -> Result<String, InstallError>;

    /// Failed decisions of the version this subscription installed last, since it was
    /// installed: the canary's health signal. Default: none are counted.
    fn failures_since_install(&self) -> u64 {
        0
    }

    /// Told after every poll (for /health, metrics and the audit).
    fn report(&self, _status: &SubscriptionStatus) {}
}

/// What one poll did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum Outcome {
    /// The reference names the running digest.
    Unchanged,
    /// A new digest was installed.
    Installed {
        /// The digest that ran before, if any.
        previous: Option<String>,
        /// What runs now.
        label: String,
    },
    /// The installer refused the digest; the running version stays.
    Refused {
        /// The installer's code.
        code: String,
        /// Its reason.
        message: String,
    },
    /// The digest was refused before and is not pulled again.
    StillRefused,
    /// The tag names a digest the canary has not cleared yet.
    WaitingForCanary {
        /// What is missing.
        reason: String,
    },
    /// The registry could not be reached, or what it sent failed a check; retried with
    /// back-off.
    Failed {
        /// [`OciError::code`].
        code: String,
        /// The error.
        message: String,
    },
}

/// A subscription's state, for /health and metrics.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SubscriptionStatus {
    /// The reference followed.
    pub reference: String,
    /// The digest this subscription installed and that runs now.
    pub running: Option<String>,
    /// What runs (`app/name@version`).
    pub running_label: Option<String>,
    /// The digest the reference named at the last successful resolution.
    pub candidate: Option<String>,
    /// The last poll's outcome.
    pub last_outcome: Option<Outcome>,
    /// When the last poll ended (seconds since the epoch).
    pub last_checked: Option<u64>,
    /// Failed polls in a row.
    pub consecutive_failures: u32,
    /// The last error writing this canary's attestation, cleared by a success.
    pub attestation_error: Option<String>,
    /// Polls, installs, refusals and failures since start.
    pub counts: Counts,
}

/// Counters since start.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Counts {
    /// Polls.
    pub polls: u64,
    /// Installs.
    pub installed: u64,
    /// Refusals by the installer.
    pub refused: u64,
    /// Failed polls.
    pub failed: u64,
}

/// One subscription: poll with [`Subscriber::poll_once`], or let [`Subscriber::run`] loop.
pub struct Subscriber {
    config: SubscriptionConfig,
    reference: Reference,
    registry: RegistryConfig,
    client: Client,
    installer: Arc<dyn Installer>,
    clock: Clock,
    status: Arc<Mutex<SubscriptionStatus>>,
    running_since: Option<u64>,
    refused: Option<String>,
}

impl Subscriber {
    /// A subscriber; nothing is fetched before the first poll.
    pub fn new(
        config: SubscriptionConfig,
        registry: RegistryConfig,
        installer: Arc<dyn Installer>,
        clock: Clock,
    ) -> Result<Subscriber, OciError> {
        let reference = config.validate()?;
        let client = registry.client()?;
        let status = SubscriptionStatus {
            reference: reference.whole(),
            ..SubscriptionStatus::default()
        };
        Ok(Subscriber {
            config,
            reference,
            registry,
            client,
            installer,
            clock,
            status: Arc::new(Mutex::new(status)),
            running_since: None,
            refused: None,
        })
    }

    /// The status, shared: the gateway reads it for /health.
    pub fn status_handle(&self) -> Arc<Mutex<SubscriptionStatus>> {
        self.status.clone()
    }

    /// A copy of the status now.
    pub fn status(&self) -> SubscriptionStatus {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Polls once: resolve, (wait for the canary), pull, install. Never panics on what a
    /// registry sends; every result is an [`Outcome`].
    pub async fn poll_once(&mut self) -> Outcome {
        let outcome = self.poll_inner().await;
        let now = (self.clock)();
        let snapshot = {
            let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
            status.counts.polls += 1;
            match &outcome {
                Outcome::Failed { .. } => {
                    status.consecutive_failures = status.consecutive_failures.saturating_add(1);
                    status.counts.failed += 1;
                }
                Outcome::Refused { .. } => {
                    status.consecutive_failures = 0;
                    status.counts.refused += 1;
                }
                Outcome::Installed { .. } => {
                    status.consecutive_failures = 0;
                    status.counts.installed += 1;
                }
                _ => status.consecutive_failures = 0,
            }
            status.last_outcome = Some(outcome.clone());
            status.last_checked = Some(now);
            status.clone()
        };
        match &outcome {
            Outcome::Failed { code, message } => {
                tracing::warn!(reference = %snapshot.reference, code, message, "subscription poll failed; keeping the running version")
            }
            Outcome::Refused { code, message } => {
                tracing::warn!(reference = %snapshot.reference, code, message, "subscription refused a module; keeping the running version")
            }
            Outcome::Installed { label, .. } => {
                tracing::info!(reference = %snapshot.reference, label, "subscription installed a new version")
            }
            _ => {}
        }
        self.installer.report(&snapshot);
        outcome
    }

    async fn poll_inner(&mut self) -> Outcome {
        let failed = |error: OciError| Outcome::Failed {
            code: error.code().to_string(),
            message: palisade_types::Chain(&error).to_string(),
        };
        let digest = match artifact::resolve(&self.client, &self.registry, &self.reference).await {
            Ok(digest) => digest,
            Err(error) => return failed(error),
        };
        self.set(|s| s.candidate = Some(digest.clone()));
        let running = self.status().running;
        if running.as_deref() == Some(digest.as_str()) {
            self.attest(&digest).await;
            return Outcome::Unchanged;
        }
        if self.refused.as_deref() == Some(digest.as_str()) {
            return Outcome::StillRefused;
        }
        if let Some(soak) = self.config.after_canary {
            match canary::fetch_attestation(&self.client, &self.registry, &self.reference, &digest)
                .await
            {
                Ok(None) => {
                    return Outcome::WaitingForCanary {
                        reason: format!("no canary attestation for {digest} yet"),
                    }
                }
                Ok(Some(attestation)) if attestation.failures > 0 => {
                    return Outcome::WaitingForCanary {
                        reason: format!(
                            "canary {} reported {} failures with {digest}",
                            attestation.gateway, attestation.failures
                        ),
                    }
                }
                Ok(Some(attestation)) if attestation.soaked_seconds() < soak.as_secs() => {
                    return Outcome::WaitingForCanary {
                        reason: format!(
                            "canary {} has run {digest} for {} s of {} s",
                            attestation.gateway,
                            attestation.soaked_seconds(),
                            soak.as_secs()
                        ),
                    }
                }
                Ok(Some(_)) => {}
                Err(error) => return failed(error),
            }
        }
        let pinned = artifact::pin(&self.reference, &digest);
        let module = match artifact::pull(&self.client, &self.registry, &pinned).await {
            Ok(module) => module,
            Err(error) => return failed(error),
        };
        let installer = self.installer.clone();
        let result = tokio::task::spawn_blocking(move || installer.install(&module))
            .await
            .unwrap_or_else(|e| Err(InstallError::new("installer-panicked", e.to_string())));
        match result {
            Ok(label) => {
                self.running_since = Some((self.clock)());
                self.refused = None;
                self.set(|s| {
                    s.running = Some(digest.clone());
                    s.running_label = Some(label.clone());
                });
                self.attest(&digest).await;
                Outcome::Installed {
                    previous: running,
                    label,
                }
            }
            Err(error) => {
                self.refused = Some(digest);
                Outcome::Refused {
                    code: error.code,
                    message: error.message,
                }
            }
        }
    }

    /// A canary writes its attestation for the digest it runs; an error is reported in the
    /// status and retried at the next poll (it never changes what runs).
    async fn attest(&mut self, digest: &str) {
        let Some(gateway) = self.config.canary_name.clone() else {
            return;
        };
        let now = (self.clock)();
        let attestation = Attestation {
            digest: digest.to_string(),
            gateway,
            first_run: self.running_since.unwrap_or(now),
            last_ok: now,
            failures: self.installer.failures_since_install(),
        };
        let result = canary::publish_attestation(
            &self.client,
            &self.registry,
            &self.reference,
            &attestation,
        )
        .await;
        self.set(|s| {
            s.attestation_error = result.err().map(|e| palisade_types::Chain(&e).to_string())
        });
    }

    fn set(&self, change: impl FnOnce(&mut SubscriptionStatus)) {
        change(&mut self.status.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// The wait before the next poll: the interval, or after `n` failures in a row
    /// `interval * 2^n` up to `max_backoff`; then scaled by a random factor in [0.5, 1] so a
    /// fleet that lost its registry together does not come back in step.
    pub fn next_delay(&self) -> Duration {
        let failures = self.status().consecutive_failures;
        backoff(
            self.config.poll_interval,
            self.config.max_backoff,
            failures,
            rand::thread_rng().gen_range(0.5..=1.0),
        )
    }

    /// Polls until `shutdown` turns true (or its sender is gone).
    pub async fn run(mut self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        loop {
            if *shutdown.borrow() {
                return;
            }
            self.poll_once().await;
            let delay = self.next_delay();
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                changed = shutdown.changed() => if changed.is_err() || *shutdown.borrow() { return },
            }
        }
    }
}

/// The back-off rule of [`Subscriber::next_delay`] with the random factor given.
pub fn backoff(interval: Duration, ceiling: Duration, failures: u32, factor: f64) -> Duration {
    let doubled = interval.saturating_mul(1u32 << failures.min(20));
    doubled.min(ceiling).mul_f64(factor.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_ceiling_and_jitter_only_shortens() {
        let (i, c) = (Duration::from_secs(10), Duration::from_secs(300));
        assert_eq!(backoff(i, c, 0, 1.0), i);
        assert_eq!(backoff(i, c, 1, 1.0), Duration::from_secs(20));
        assert_eq!(backoff(i, c, 3, 1.0), Duration::from_secs(80));
        assert_eq!(backoff(i, c, 5, 1.0), c);
        assert_eq!(backoff(i, c, u32::MAX, 1.0), c);
        assert_eq!(backoff(i, c, 5, 0.5), Duration::from_secs(150));
    }

    #[test]
    fn config_bounds_are_enforced() {
        let mut config = SubscriptionConfig::new("127.0.0.1:5000/p/acp:1");
        assert!(config.validate().is_ok());
        config.poll_interval = Duration::from_millis(10);
        assert!(config.validate().is_err());
        config.poll_interval = Duration::from_secs(60);
        config.max_backoff = Duration::from_secs(30);
        assert!(config.validate().is_err());
        config.max_backoff = Duration::from_secs(600);
        config.after_canary = Some(Duration::from_secs(600));
        config.canary_name = Some("canary-1".into());
        assert!(
            config.validate().is_err(),
            "a canary that waits for a canary"
        );
        config.canary_name = None;
        assert!(config.validate().is_ok());
        config.reference = format!("127.0.0.1:5000/p/acp@sha256:{}", "a".repeat(64));
        assert!(
            config.validate().is_err(),
            "after_canary on a pinned digest"
        );
        config.after_canary = None;
        assert!(config.validate().is_ok());
        config.canary_name = Some("bad name/".into());
        assert!(config.validate().is_err());
        // The registry must be named, and digests must be canonical sha256.
        assert!(SubscriptionConfig::new("acp:1").validate().is_err());
        assert!(SubscriptionConfig::new("127.0.0.1:5000/p/acp@sha256:ABC")
            .validate()
            .is_err());
    }
}
