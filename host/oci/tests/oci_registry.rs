//! Signed modules over a real OCI registry (Debian's `docker-registry`, the CNCF distribution
//! server, on loopback): publish and pull in the Wasm layout, subscriptions that follow a tag,
//! and every way a registry can let a gateway down. The installer is the real thing: the
//! registry store's verification (trust chain) and version rule, in an `EmbeddedStore`.

use palisade_test_support::{pki, registry};

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use palisade_oci::{ComponentInfo, PulledModule};
use palisade_oci::{InstallError, Installer, Outcome, Subscriber, SubscriptionConfig};
use palisade_oci::{OciError, RegistryConfig};
use palisade_registry::{
    sign, Delegation, EmbeddedStore, Manifest, ModuleCapability, ModuleKind, ModuleStore,
    StoreConfig, TrustAnchors, Upload,
};
use registry::Registry;

const APP: &str = "fleet";

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A minimal component: the header and one custom section carrying `payload`.
fn component(payload: &[u8]) -> Vec<u8> {
    let mut section = vec![b"payload".len() as u8];
    section.extend_from_slice(b"payload");
    section.extend_from_slice(payload);
    assert!(section.len() < 128, "one-byte LEB128 length");
    let mut out = b"\0asm\x0d\x00\x01\x00".to_vec();
    out.push(0);
    out.push(section.len() as u8);
    out.extend_from_slice(&section);
    out
}

/// An operator root, a publisher delegated for [`APP`] authorizers, and the anchors.
struct Chain {
    root: SigningKey,
    publisher: SigningKey,
}

impl Chain {
    fn new() -> Chain {
        Chain {
            root: SigningKey::from_bytes(&[7; 32]),
            publisher: SigningKey::from_bytes(&[8; 32]),
        }
    }

    fn anchors(&self) -> TrustAnchors {
        TrustAnchors::from_keys([self.root.verifying_key()])
    }

    fn signed(&self, version: &str) -> Vec<u8> {
        let now = now();
        let delegation = Delegation::issue(
            &self.root,
            self.publisher.verifying_key(),
            APP,
            &[ModuleKind::Authorizer],
            now - 3600,
            now + 3600,
        )
        .unwrap();
        let manifest = Manifest::new(
            APP,
            ModuleKind::Authorizer,
            "acp",
            version.parse().unwrap(),
            &[ModuleCapability::Kv],
        );
        sign(
            &component(version.as_bytes()),
            &manifest,
            &self.publisher,
            &delegation,
        )
        .unwrap()
    }
}

/// The gateway's side, for real: the store verifies the chain and applies the version rule
/// before it stores and activates.
struct StoreInstaller {
    store: EmbeddedStore,
    failures: AtomicU64,
    _dir: tempfile::TempDir,
}

impl StoreInstaller {
    fn new(chain: &Chain) -> Arc<StoreInstaller> {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path(), StoreConfig::new(chain.anchors())).unwrap();
        Arc::new(StoreInstaller {
            store,
            failures: AtomicU64::new(0),
            _dir: dir,
        })
    }

    fn active(&self) -> Option<String> {
        let active = self.store.active_modules().unwrap();
        active.first().map(|record| record.version.to_string())
    }
}

impl Installer for StoreInstaller {
    fn install(&self, module: &PulledModule) -> Result<String, InstallError> {
        let upload = Upload {
            bytes: &module.bytes,
            expected_app: Some(APP),
            expected_kind: Some(ModuleKind::Authorizer),
            activate: true,
            now: now(),
        };
        let outcome = self.store.put(&upload).map_err(|error| {
            InstallError::new(error.code(), palisade_types::Chain(&error).to_string())
        })?;
        self.failures.store(0, Ordering::SeqCst);
        Ok(outcome.record.label())
    }

    fn failures_since_install(&self) -> u64 {
        self.failures.load(Ordering::SeqCst)
    }
}

struct Setup {
    registry: Registry,
    config: RegistryConfig,
    client: oci_client::Client,
    chain: Chain,
}

fn setup(test: &str) -> Option<Setup> {
    let registry = Registry::start(test)?;
    let mut config = RegistryConfig::default();
    config.insecure_registries = vec![registry.host()];
    let client = config.client().unwrap();
    Some(Setup {
        registry,
        config,
        client,
        chain: Chain::new(),
    })
}

impl Setup {
    fn reference(&self, tag: &str) -> String {
        format!("{}/palisade/{APP}-acp:{tag}", self.registry.host())
    }

    async fn publish(&self, tag: &str, module: &[u8]) -> palisade_oci::Published {
        let reference = palisade_oci::parse_reference(&self.reference(tag)).unwrap();
        palisade_oci::publish(
            &self.client,
            &self.config,
            &reference,
            module,
            Some(ComponentInfo {
                exports: vec!["palisade:plugin/authorizer@0.1.0".into()],
                imports: vec![],
                target: None,
            }),
            "2026-12-06T09:00:00Z",
            Some("fleet/acp"),
        )
        .await
        .unwrap()
    }

    fn subscriber(
        &self,
        config: SubscriptionConfig,
        installer: Arc<StoreInstaller>,
        clock: Arc<AtomicU64>,
    ) -> Subscriber {
        Subscriber::new(
            config,
            self.config.clone(),
            installer,
            Arc::new(move || clock.load(Ordering::SeqCst)),
        )
        .unwrap()
    }

    fn follow(&self, tag: &str, installer: Arc<StoreInstaller>) -> Subscriber {
        let config = SubscriptionConfig::new(self.reference(tag));
        self.subscriber(config, installer, Arc::new(AtomicU64::new(now())))
    }
}

fn assert_installed(outcome: &Outcome, label: &str) {
    match outcome {
        Outcome::Installed { label: got, .. } => assert_eq!(got, label),
        other => panic!("expected {label} installed, got {other:?}"),
    }
}

fn assert_failed(outcome: &Outcome, code: &str) {
    match outcome {
        Outcome::Failed { code: got, message } => assert_eq!(got, code, "{message}"),
        other => panic!("expected a failure {code}, got {other:?}"),
    }
}

#[tokio::test]
async fn publish_and_pull_round_trip_in_the_wasm_layout() {
    let Some(s) = setup("publish_and_pull_round_trip_in_the_wasm_layout") else {
        return;
    };
    let module = s.chain.signed("1.0.0");
    let published = s.publish("1.0.0", &module).await;
    assert_eq!(published.layer_digest, palisade_oci::sha256_digest(&module));

    // The tag resolves to the manifest digest, and the pull by digest gives the same bytes.
    let tagged = palisade_oci::parse_reference(&s.reference("1.0.0")).unwrap();
    let digest = palisade_oci::resolve(&s.client, &s.config, &tagged)
        .await
        .unwrap();
    assert_eq!(digest, published.manifest_digest);
    let pinned = palisade_oci::parse_reference(&published.pinned).unwrap();
    let pulled = palisade_oci::pull(&s.client, &s.config, &pinned)
        .await
        .unwrap();
    assert_eq!(pulled.bytes, module);
    assert_eq!(pulled.manifest_digest, published.manifest_digest);
    assert_eq!(pulled.annotations["dev.palisade.module"], "fleet/acp");

    // The layout other Wasm OCI tools read: an OCI image manifest, the v0 wasm config with
    // the layer's digest, exactly one `application/wasm` layer.
    let (raw, _) = s
        .client
        .pull_manifest_raw(
            &pinned,
            &oci_client::secrets::RegistryAuth::Anonymous,
            &[oci_client::manifest::OCI_IMAGE_MEDIA_TYPE],
        )
        .await
        .unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.wasm.config.v0+json"
    );
    assert_eq!(manifest["layers"][0]["mediaType"], "application/wasm");
    assert_eq!(manifest["layers"].as_array().unwrap().len(), 1);
    let config_blob = std::fs::read(
        s.registry
            .blob_path(manifest["config"]["digest"].as_str().unwrap()),
    )
    .unwrap();
    let config: serde_json::Value = serde_json::from_slice(&config_blob).unwrap();
    assert_eq!(config["architecture"], "wasm");
    assert_eq!(config["os"], "wasip2");
    assert_eq!(config["layerDigests"][0], published.layer_digest.as_str());

    // A subscription pinned to the digest installs exactly that, verified by the store.
    let installer = StoreInstaller::new(&s.chain);
    let mut pinned_sub = s.subscriber(
        SubscriptionConfig::new(published.pinned.clone()),
        installer.clone(),
        Arc::new(AtomicU64::new(now())),
    );
    assert_installed(&pinned_sub.poll_once().await, "fleet/acp@1.0.0");
    assert_eq!(pinned_sub.poll_once().await, Outcome::Unchanged);
    assert_eq!(installer.active().as_deref(), Some("1.0.0"));
    let status = pinned_sub.status();
    assert_eq!(
        status.running.as_deref(),
        Some(published.manifest_digest.as_str())
    );
    assert_eq!(status.counts.installed, 1);

    // Plain HTTP is never chosen by itself: without the insecure entry, the same registry is
    // spoken to over HTTPS, which it does not answer.
    let strict = RegistryConfig::default();
    let error = palisade_oci::pull(&strict.client().unwrap(), &strict, &pinned)
        .await
        .unwrap_err();
    assert_eq!(error.code(), "registry-unavailable", "{error}");
}

#[tokio::test]
async fn a_moved_tag_installs_the_new_version_and_an_unmoved_one_nothing() {
    let Some(s) = setup("a_moved_tag_installs_the_new_version_and_an_unmoved_one_nothing") else {
        return;
    };
    let installer = StoreInstaller::new(&s.chain);
    let mut sub = s.follow("stable", installer.clone());
    // Nothing published yet: a failure, nothing installed.
    assert_failed(&sub.poll_once().await, "registry-unavailable");
    assert_eq!(installer.active(), None);

    let first = s.publish("stable", &s.chain.signed("1.0.0")).await;
    assert_installed(&sub.poll_once().await, "fleet/acp@1.0.0");
    assert_eq!(sub.poll_once().await, Outcome::Unchanged);

    let second = s.publish("stable", &s.chain.signed("1.1.0")).await;
    match sub.poll_once().await {
        Outcome::Installed { previous, label } => {
            assert_eq!(previous.as_deref(), Some(first.manifest_digest.as_str()));
            assert_eq!(label, "fleet/acp@1.1.0");
        }
        other => panic!("expected the moved tag installed, got {other:?}"),
    }
    assert_eq!(installer.active().as_deref(), Some("1.1.0"));
    assert_eq!(
        sub.status().running.as_deref(),
        Some(second.manifest_digest.as_str())
    );
}

#[tokio::test]
async fn a_tampered_blob_is_refused_and_the_running_version_stays() {
    let Some(s) = setup("a_tampered_blob_is_refused_and_the_running_version_stays") else {
        return;
    };
    let installer = StoreInstaller::new(&s.chain);
    let mut sub = s.follow("stable", installer.clone());
    let good = s.publish("stable", &s.chain.signed("1.0.0")).await;
    assert_installed(&sub.poll_once().await, "fleet/acp@1.0.0");

    // The registry's copy of the next layer is altered in place (same length).
    let next = s.publish("stable", &s.chain.signed("1.1.0")).await;
    let path = s.registry.blob_path(&next.layer_digest);
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();

    assert_failed(&sub.poll_once().await, "digest-mismatch");
    assert_eq!(installer.active().as_deref(), Some("1.0.0"));
    assert_eq!(
        sub.status().running.as_deref(),
        Some(good.manifest_digest.as_str())
    );
    // Still refused at the next poll (content failures are retried, never installed).
    assert_failed(&sub.poll_once().await, "digest-mismatch");
    assert_eq!(sub.status().consecutive_failures, 2);

    // A layer cut short is a size mismatch, not a shorter module.
    bytes.truncate(bytes.len() / 2);
    std::fs::write(&path, &bytes).unwrap();
    assert_failed(&sub.poll_once().await, "size-mismatch");
    assert_eq!(installer.active().as_deref(), Some("1.0.0"));
}

#[tokio::test]
async fn a_manifest_that_does_not_match_its_digest_or_lies_about_sizes_is_refused() {
    let Some(s) = setup("a_manifest_that_does_not_match_its_digest_or_lies_about_sizes_is_refused")
    else {
        return;
    };
    let installer = StoreInstaller::new(&s.chain);
    let mut sub = s.follow("stable", installer.clone());
    s.publish("stable", &s.chain.signed("1.0.0")).await;
    assert_installed(&sub.poll_once().await, "fleet/acp@1.0.0");

    // The stored manifest of the next version is edited: still valid JSON, another digest.
    let next = s.publish("stable", &s.chain.signed("1.1.0")).await;
    let path = s.registry.blob_path(&next.manifest_digest);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("fleet/acp"));
    std::fs::write(&path, text.replace("fleet/acp", "fleet/acq")).unwrap();
    assert_failed(&sub.poll_once().await, "digest-mismatch");
    assert_eq!(installer.active().as_deref(), Some("1.0.0"));

    // A pinned digest the registry does not have.
    let missing = format!(
        "{}/palisade/{APP}-acp@sha256:{}",
        s.registry.host(),
        "0".repeat(64)
    );
    let pinned = palisade_oci::parse_reference(&missing).unwrap();
    let error = palisade_oci::pull(&s.client, &s.config, &pinned)
        .await
        .unwrap_err();
    assert_eq!(error.code(), "registry-unavailable", "{error}");

    // A manifest whose layer declares more than the module bound is refused before the layer
    // is requested.
    let mut small = s.config.clone();
    small.max_module_bytes = 16;
    let good = s.publish("other", &s.chain.signed("1.2.0")).await;
    let pinned = palisade_oci::parse_reference(&good.pinned).unwrap();
    match palisade_oci::pull(&s.client, &small, &pinned).await {
        Err(OciError::TooLarge {
            what: "module",
            limit: 16,
            ..
        }) => {}
        other => panic!("expected the layer refused as too large, got {other:?}"),
    }
}

#[tokio::test]
async fn an_unsigned_module_is_refused_once_and_not_pulled_again() {
    let Some(s) = setup("an_unsigned_module_is_refused_once_and_not_pulled_again") else {
        return;
    };
    let installer = StoreInstaller::new(&s.chain);
    let mut sub = s.follow("stable", installer.clone());
    s.publish("stable", &s.chain.signed("1.0.0")).await;
    assert_installed(&sub.poll_once().await, "fleet/acp@1.0.0");

    s.publish("stable", &component(b"no signature")).await;
    match sub.poll_once().await {
        Outcome::Refused { code, message } => {
            assert!(message.contains("signature"), "{code}: {message}")
        }
        other => panic!("expected the unsigned module refused, got {other:?}"),
    }
    assert_eq!(sub.poll_once().await, Outcome::StillRefused);
    assert_eq!(installer.active().as_deref(), Some("1.0.0"));
    assert_eq!(sub.status().counts.refused, 1);

    // Signed by a key the gateway does not trust: refused the same way.
    let stranger = Chain {
        root: SigningKey::from_bytes(&[9; 32]),
        publisher: SigningKey::from_bytes(&[10; 32]),
    };
    s.publish("stable", &stranger.signed("2.0.0")).await;
    assert!(matches!(sub.poll_once().await, Outcome::Refused { .. }));
    assert_eq!(installer.active().as_deref(), Some("1.0.0"));
}

#[tokio::test]
async fn a_downgrade_through_the_tag_is_refused_by_the_version_rule() {
    let Some(s) = setup("a_downgrade_through_the_tag_is_refused_by_the_version_rule") else {
        return;
    };
    let installer = StoreInstaller::new(&s.chain);
    let mut sub = s.follow("stable", installer.clone());
    s.publish("stable", &s.chain.signed("1.1.0")).await;
    assert_installed(&sub.poll_once().await, "fleet/acp@1.1.0");

    // An authentic, correctly signed older version: the tag moved back.
    s.publish("stable", &s.chain.signed("1.0.0")).await;
    match sub.poll_once().await {
        Outcome::Refused { message, .. } => {
            assert!(message.contains("not greater"), "{message}")
        }
        other => panic!("expected the downgrade refused, got {other:?}"),
    }
    assert_eq!(installer.active().as_deref(), Some("1.1.0"));
}

#[tokio::test]
async fn registry_down_keeps_the_version_backs_off_and_recovers() {
    let Some(mut s) = setup("registry_down_keeps_the_version_backs_off_and_recovers") else {
        return;
    };
    let installer = StoreInstaller::new(&s.chain);
    let mut config = SubscriptionConfig::new(s.reference("stable"));
    config.poll_interval = Duration::from_secs(10);
    config.max_backoff = Duration::from_secs(300);
    let mut sub = s.subscriber(config, installer.clone(), Arc::new(AtomicU64::new(now())));
    s.publish("stable", &s.chain.signed("1.0.0")).await;
    assert_installed(&sub.poll_once().await, "fleet/acp@1.0.0");
    // Healthy: the interval, shortened by at most half by the jitter.
    let delay = sub.next_delay();
    assert!(delay >= Duration::from_secs(5) && delay <= Duration::from_secs(10));

    s.registry.stop();
    for failures in 1..=3u32 {
        assert_failed(&sub.poll_once().await, "registry-unavailable");
        assert_eq!(sub.status().consecutive_failures, failures);
        let delay = sub.next_delay();
        let full = Duration::from_secs(10 * (1 << failures));
        assert!(
            delay >= full / 2 && delay <= full,
            "{delay:?} for {failures}"
        );
    }
    assert_eq!(installer.active().as_deref(), Some("1.0.0"));

    s.registry.restart();
    assert_eq!(sub.poll_once().await, Outcome::Unchanged);
    assert_eq!(sub.status().consecutive_failures, 0);
}

#[tokio::test]
async fn a_canary_gated_subscription_waits_for_a_clean_soak() {
    let Some(s) = setup("a_canary_gated_subscription_waits_for_a_clean_soak") else {
        return;
    };
    let clock = Arc::new(AtomicU64::new(1_900_000_000));
    let canary = StoreInstaller::new(&s.chain);
    let mut canary_config = SubscriptionConfig::new(s.reference("stable"));
    canary_config.canary_name = Some("canary-1".into());
    let mut canary_sub = s.subscriber(canary_config, canary.clone(), clock.clone());
    let follower = StoreInstaller::new(&s.chain);
    let mut follower_config = SubscriptionConfig::new(s.reference("stable"));
    follower_config.after_canary = Some(Duration::from_secs(600));
    let mut follower_sub = s.subscriber(follower_config, follower.clone(), clock.clone());

    let first = s.publish("stable", &s.chain.signed("1.0.0")).await;
    let waiting = |outcome: Outcome, expected: &str| match outcome {
        Outcome::WaitingForCanary { reason } => assert!(reason.contains(expected), "{reason}"),
        other => panic!("expected to wait ({expected}), got {other:?}"),
    };
    waiting(follower_sub.poll_once().await, "no canary attestation");
    assert_installed(&canary_sub.poll_once().await, "fleet/acp@1.0.0");
    assert_eq!(canary_sub.status().attestation_error, None);
    waiting(follower_sub.poll_once().await, "for 0 s of 600 s");
    assert_eq!(follower.active(), None);

    // Ten minutes of clean running, attested at the canary's next poll.
    clock.fetch_add(700, Ordering::SeqCst);
    assert_eq!(canary_sub.poll_once().await, Outcome::Unchanged);
    let tagged = palisade_oci::parse_reference(&s.reference("stable")).unwrap();
    let attestation =
        palisade_oci::fetch_attestation(&s.client, &s.config, &tagged, &first.manifest_digest)
            .await
            .unwrap()
            .unwrap();
    assert_eq!(attestation.gateway, "canary-1");
    assert_eq!(attestation.soaked_seconds(), 700);
    assert_installed(&follower_sub.poll_once().await, "fleet/acp@1.0.0");

    // The next version fails on the canary: the fleet stays on 1.0.0 however long it waits.
    s.publish("stable", &s.chain.signed("1.1.0")).await;
    assert_installed(&canary_sub.poll_once().await, "fleet/acp@1.1.0");
    canary.failures.store(3, Ordering::SeqCst);
    clock.fetch_add(7_000, Ordering::SeqCst);
    assert_eq!(canary_sub.poll_once().await, Outcome::Unchanged);
    waiting(follower_sub.poll_once().await, "reported 3 failures");
    assert_eq!(follower.active().as_deref(), Some("1.0.0"));
    assert_eq!(
        follower_sub.status().running.as_deref(),
        Some(first.manifest_digest.as_str())
    );
}

#[tokio::test]
async fn an_https_registry_is_verified_against_the_configured_ca_only() {
    let pki = pki::Pki::new("registry CA");
    let (cert, key) = pki.leaf(&["127.0.0.1"], false);
    let Some(registry) = Registry::start_tls(
        "an_https_registry_is_verified_against_the_configured_ca_only",
        &cert.pem(),
        &key.serialize_pem(),
    ) else {
        return;
    };
    let chain = Chain::new();
    let module = chain.signed("1.0.0");
    let reference =
        palisade_oci::parse_reference(&format!("{}/palisade/tls:1.0.0", registry.host())).unwrap();
    let mut trusting = RegistryConfig::default();
    trusting.ca_pem = Some(pki.ca.pem().into_bytes());
    let client = trusting.client().unwrap();
    let published = palisade_oci::publish(
        &client,
        &trusting,
        &reference,
        &module,
        None,
        "2026-12-06T09:00:00Z",
        None,
    )
    .await
    .unwrap();
    let pinned = palisade_oci::parse_reference(&published.pinned).unwrap();
    let pulled = palisade_oci::pull(&client, &trusting, &pinned)
        .await
        .unwrap();
    assert_eq!(pulled.bytes, module);

    // The system's roots do not know this CA, and another CA is not this one.
    let system = RegistryConfig::default();
    let error = palisade_oci::pull(&system.client().unwrap(), &system, &pinned)
        .await
        .unwrap_err();
    assert_eq!(error.code(), "registry-unavailable", "{error}");
    let mut other = RegistryConfig::default();
    other.ca_pem = Some(pki::Pki::new("another CA").ca.pem().into_bytes());
    let error = palisade_oci::pull(&other.client().unwrap(), &other, &pinned)
        .await
        .unwrap_err();
    assert_eq!(error.code(), "registry-unavailable", "{error}");
    // A CA file without a certificate is a configuration error, not "no CA".
    let mut empty = RegistryConfig::default();
    empty.ca_pem = Some(b"not a certificate".to_vec());
    match empty.client() {
        Err(error) => assert_eq!(error.code(), "config", "{error}"),
        Ok(_) => panic!("a CA file without a certificate was accepted"),
    }
}
