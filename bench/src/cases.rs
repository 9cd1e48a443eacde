//! The request table: for every acp10 rule, a request it grants and requests where one part of
//! it fails, plus unknown originators and wrong operations. `tests/equivalence.rs` checks that
//! Palisade, native acp and Cedar give each row its expected permit or deny, so the three
//! benchmark rows provably implement the same policy.

use palisade_core::{AccessRequest, Location, Operation};

use crate::{bench_request, APP, REQUEST_TIME, TARGET};

/// One row: a request and whether acp10 permits it.
pub struct Case {
    /// What the row checks, for assertion messages.
    pub name: &'static str,
    pub request: AccessRequest,
    pub permit: bool,
}

/// Midnight UTC of [`REQUEST_TIME`]'s day, for the time-window rows.
const MIDNIGHT: u64 = REQUEST_TIME - REQUEST_TIME % 86_400;

/// A request from `originator` at [`REQUEST_TIME`], with nothing else known.
fn from(originator: &str, operation: Operation) -> AccessRequest {
    let mut request = AccessRequest::new(APP, originator, operation, TARGET);
    request.request_time = Some(REQUEST_TIME);
    request
}

fn with_ip(mut request: AccessRequest, address: &str) -> AccessRequest {
    request.source_ip = Some(address.into());
    request
}

fn at(mut request: AccessRequest, time: u64) -> AccessRequest {
    request.request_time = Some(time);
    request
}

fn with_roles(mut request: AccessRequest, roles: &[&str]) -> AccessRequest {
    request.roles = roles.iter().map(|role| role.to_string()).collect();
    request
}

/// Located in Paris, with `country` as the gateway's ISO code for it (if it knows one).
fn located(mut request: AccessRequest, country: Option<&str>) -> AccessRequest {
    request.location = Some(Location {
        latitude: 48.8566,
        longitude: 2.3522,
        country: country.map(str::to_string),
    });
    request
}

fn authenticated(mut request: AccessRequest) -> AccessRequest {
    request.authenticated = true;
    request
}

fn creating(mut request: AccessRequest, ty: Option<u32>) -> AccessRequest {
    request.resource_type = ty;
    request
}

/// The table (48 rows). The first row is the benchmarked request.
pub fn cases() -> Vec<Case> {
    use Operation::{Create, Delete, Discovery, Notify, Retrieve, Update};
    let row = |name, request, permit| Case {
        name,
        request,
        permit,
    };
    vec![
        row("bench request: rule 10 grants", bench_request(), true),
        // Rule 10 {"acor":["CAE1"],"acop":2}, and originators no rule names.
        row("CAE1 retrieve", from("CAE1", Retrieve), true),
        row("CAE1 update: wrong operation", from("CAE1", Update), false),
        row("CAE1 delete: wrong operation", from("CAE1", Delete), false),
        row(
            "cae1: IDs are case-sensitive",
            from("cae1", Retrieve),
            false,
        ),
        row("CAE2: unknown originator", from("CAE2", Retrieve), false),
        row(
            "CAE-admin2: exact IDs are not prefixes",
            from("CAE-admin2", Retrieve),
            false,
        ),
        // Rule 1 {"acor":["CAE-admin"],"acop":63}.
        row("CAE-admin create", from("CAE-admin", Create), true),
        row("CAE-admin delete", from("CAE-admin", Delete), true),
        row("CAE-admin notify", from("CAE-admin", Notify), true),
        row("CAE-admin discovery", from("CAE-admin", Discovery), true),
        // Rule 2 {"acor":["CAE-ops-*"],"acop":3}.
        row("CAE-ops-7 create", from("CAE-ops-7", Create), true),
        row(
            "CAE-ops-west retrieve",
            from("CAE-ops-west", Retrieve),
            true,
        ),
        row(
            "CAE-ops-7 update: wrong operation",
            from("CAE-ops-7", Update),
            false,
        ),
        row(
            "CAE-ops-a/b: the wildcard never crosses '/'",
            from("CAE-ops-a/b", Retrieve),
            false,
        ),
        row(
            "CAE-op-7: not the wildcard's prefix",
            from("CAE-op-7", Retrieve),
            false,
        ),
        // Rule 3 {"acor":["role:auditor"],"acop":2}.
        row(
            "auditor role retrieve",
            with_roles(from("CAE-x", Retrieve), &["operator", "auditor"]),
            true,
        ),
        row(
            "auditor role update: wrong operation",
            with_roles(from("CAE-x", Update), &["auditor"]),
            false,
        ),
        row(
            "auditors role: roles are exact",
            with_roles(from("CAE-x", Retrieve), &["auditors"]),
            false,
        ),
        row(
            "originator named auditor has no role",
            from("auditor", Retrieve),
            false,
        ),
        // Rule 4 {"acor":["CAE-night"],"acop":2,"acco":[{"actw":["* * 0-6 * * * *"]}]}.
        row(
            "CAE-night at 03:00",
            at(from("CAE-night", Retrieve), MIDNIGHT + 3 * 3_600),
            true,
        ),
        row(
            "CAE-night at 00:00:00",
            at(from("CAE-night", Retrieve), MIDNIGHT),
            true,
        ),
        row(
            "CAE-night at 06:59:59",
            at(from("CAE-night", Retrieve), MIDNIGHT + 7 * 3_600 - 1),
            true,
        ),
        row(
            "CAE-night at 07:00:00: outside the window",
            at(from("CAE-night", Retrieve), MIDNIGHT + 7 * 3_600),
            false,
        ),
        row(
            "CAE-night at 10:15: outside the window",
            from("CAE-night", Retrieve),
            false,
        ),
        // Rule 5 {"acor":["CAE-lan"],"acop":6,"acco":[{"acip":{"ipv4":["192.168.0.0/16"]}}]}.
        row(
            "CAE-lan from the LAN",
            with_ip(from("CAE-lan", Retrieve), "192.168.1.20"),
            true,
        ),
        row(
            "CAE-lan update from the range's last address",
            with_ip(from("CAE-lan", Update), "192.168.255.255"),
            true,
        ),
        row(
            "CAE-lan from IPv4-mapped IPv6",
            with_ip(from("CAE-lan", Retrieve), "::ffff:192.168.1.20"),
            true,
        ),
        row(
            "CAE-lan from 10.0.0.1: outside the range",
            with_ip(from("CAE-lan", Retrieve), "10.0.0.1"),
            false,
        ),
        row(
            "CAE-lan without a source address",
            from("CAE-lan", Retrieve),
            false,
        ),
        row(
            "CAE-lan with a port: unreadable address",
            with_ip(from("CAE-lan", Retrieve), "192.168.1.20:80"),
            false,
        ),
        row(
            "CAE-lan delete from the LAN: wrong operation",
            with_ip(from("CAE-lan", Delete), "192.168.1.20"),
            false,
        ),
        // Rule 6 {"acor":["CAE-v6"],"acop":6,"acco":[{"acip":{"ipv6":["2001:db8::/32"]}}]}.
        row(
            "CAE-v6 from 2001:db8::1",
            with_ip(from("CAE-v6", Update), "2001:db8::1"),
            true,
        ),
        row(
            "CAE-v6 from a bracketed literal",
            with_ip(from("CAE-v6", Retrieve), "[2001:db8:ffff::7]"),
            true,
        ),
        row(
            "CAE-v6 from 2001:db9::1: outside the range",
            with_ip(from("CAE-v6", Retrieve), "2001:db9::1"),
            false,
        ),
        row(
            "CAE-v6 from IPv4: other family",
            with_ip(from("CAE-v6", Retrieve), "192.168.1.20"),
            false,
        ),
        // Rule 7 {"acor":["CAE-fr"],"acop":2,"acco":[{"aclr":{"accc":["FR"]}}]}.
        row(
            "CAE-fr in FR",
            located(from("CAE-fr", Retrieve), Some("FR")),
            true,
        ),
        row(
            "CAE-fr in fr: codes are case-insensitive",
            located(from("CAE-fr", Retrieve), Some("fr")),
            true,
        ),
        row(
            "CAE-fr in DE",
            located(from("CAE-fr", Retrieve), Some("DE")),
            false,
        ),
        row(
            "CAE-fr located without a country",
            located(from("CAE-fr", Retrieve), None),
            false,
        ),
        row("CAE-fr without a location", from("CAE-fr", Retrieve), false),
        // Rule 8 {"acor":["CAE-auth"],"acop":4,"acaf":true}.
        row(
            "CAE-auth authenticated update",
            authenticated(from("CAE-auth", Update)),
            true,
        ),
        row(
            "CAE-auth unauthenticated update",
            from("CAE-auth", Update),
            false,
        ),
        row(
            "CAE-auth authenticated retrieve: wrong operation",
            authenticated(from("CAE-auth", Retrieve)),
            false,
        ),
        // Rule 9 {"acor":["CAE-creator"],"acop":1,"acod":[{"chty":[4]}]}.
        row(
            "CAE-creator creates type 4",
            creating(from("CAE-creator", Create), Some(4)),
            true,
        ),
        row(
            "CAE-creator creates type 3",
            creating(from("CAE-creator", Create), Some(3)),
            false,
        ),
        row(
            "CAE-creator creates an unknown type",
            creating(from("CAE-creator", Create), None),
            false,
        ),
        row(
            "CAE-creator retrieves: wrong operation",
            creating(from("CAE-creator", Retrieve), Some(4)),
            false,
        ),
    ]
}
