//! `POST /admin/v1/provision` on a real `palisade serve` (SER-019..021): a provider's signed,
//! encrypted bundle is applied through a signed admin request; a replay, a bundle for another
//! gateway and an unsigned admin request are refused with their codes.

use crate::support::admin as admin_common;

use admin_common::{admin, palisade, Keys};
use ed25519_dalek::SigningKey;

#[test]
fn bundles_are_applied_through_the_admin_api_and_refused_when_replayed() {
    let keys = Keys::new();
    let gateway = admin_common::start(&keys, 3600, 4 << 20);
    let dir = gateway.dir.path().to_path_buf();

    // Before the data folder is prepared there is no provisioning endpoint.
    let absent = admin(
        &gateway,
        &keys.admin,
        "POST",
        "/admin/v1/provision",
        b"bundle",
    );
    assert_eq!(absent.status, 404, "{}", absent.text());

    // The operator prepares provisioning (gateway X25519 key, trusted provider), then restarts.
    admin_common::prepare_provisioning(&gateway, &["lights"]);
    let gateway = gateway.restart();

    let device = SigningKey::from_bytes(&[9; 32]);
    std::fs::write(
        dir.join("devices.json"),
        format!(
            "{{\"dev-1\": \"{}\"}}",
            hex::encode(device.verifying_key().to_bytes())
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("secrets.json"),
        "{\"lights\": {\"mac-1\": \"000102030405060708090a0b0c0d0e0f\"}}",
    )
    .unwrap();
    for (sequence, gateway_id, out) in [("1", "gw-1", "b1.bin"), ("2", "gw-other", "b2.bin")] {
        palisade(
            &[
                "provision",
                "create",
                "--provider-key",
                "sp.key",
                "--provider-id",
                "sp-1",
                "--gateway-id",
                gateway_id,
                "--gateway-x25519",
                "gw.x25519.pub",
                "--devices",
                "devices.json",
                "--secrets",
                "secrets.json",
                "--sequence",
                sequence,
                "--out",
                out,
            ],
            &dir,
        );
    }
    let bundle = std::fs::read(dir.join("b1.bin")).unwrap();

    let applied = admin(
        &gateway,
        &keys.admin,
        "POST",
        "/admin/v1/provision",
        &bundle,
    );
    assert_eq!(applied.status, 200, "{}", applied.text());
    assert_eq!(applied.json()["applied"], true);

    let replayed = admin(
        &gateway,
        &keys.admin,
        "POST",
        "/admin/v1/provision",
        &bundle,
    );
    assert_eq!(replayed.status, 422, "{}", replayed.text());
    assert!(
        replayed.text().contains("replay") || replayed.text().contains("sequence"),
        "{}",
        replayed.text()
    );

    let elsewhere = std::fs::read(dir.join("b2.bin")).unwrap();
    let misaddressed = admin(
        &gateway,
        &keys.admin,
        "POST",
        "/admin/v1/provision",
        &elsewhere,
    );
    assert_eq!(misaddressed.status, 422, "{}", misaddressed.text());

    let unsigned = gateway.request("POST", "/admin/v1/provision", &[], &bundle);
    assert_eq!(unsigned.status, 401, "{}", unsigned.text());
}
