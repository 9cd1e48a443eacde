//! The one table from oneM2M response status codes (`X-M2M-RSC`, TS-0004 §6.6.3) to HTTP
//! status codes, as TS-0009 §6.3.4.2 (Table 6.3.4.2-1) maps them.
//!
//! Every answer the gateway makes itself on the proxy (refusals, denials, overload, audit
//! unavailability, an unreachable or silent CSE) picks only its RSC; the HTTP status comes
//! from [`http_status`], so the two can never disagree. A client that reads only the HTTP
//! status and one that reads only `X-M2M-RSC` learn the same thing, as they would from a
//! CSE. docs/proxy.md carries the same table; a unit test fails when the two differ.
//!
//! Consequences worth knowing (TS-0009's choices, not the gateway's): 5103 TARGET_NOT_REACHABLE
//! is HTTP 404 (not 502/504); a rate limit, overload or audit outage is RSC 5000 and so HTTP
//! 500, told apart by `Retry-After` and the `m2m:dbg` text (TS-0004 has no "too many
//! requests" code); a size refusal is RSC 4000 and so HTTP 400, its `[limits]` key named in
//! `m2m:dbg`. Implementations differ on 4008: the ACME CSE answers 504, Eclipse OM2M 408;
//! the table says 408.

use hyper::StatusCode;

/// One row of TS-0009 Table 6.3.4.2-1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// The oneM2M response status code.
    pub rsc: u32,
    /// Its name in TS-0004 Table 6.6.3.3-1 and following.
    pub name: &'static str,
    /// The HTTP status code TS-0009 maps it to.
    pub http: u16,
}

const fn row(rsc: u32, name: &'static str, http: u16) -> Mapping {
    Mapping { rsc, name, http }
}

/// TS-0009 Table 6.3.4.2-1, in RSC order.
pub const TABLE: &[Mapping] = &[
    row(1000, "ACCEPTED", 202),
    row(2000, "OK", 200),
    row(2001, "CREATED", 201),
    row(2002, "DELETED", 200),
    row(2004, "UPDATED", 200),
    row(4000, "BAD_REQUEST", 400),
    row(4004, "NOT_FOUND", 404),
    row(4005, "OPERATION_NOT_ALLOWED", 405),
    row(4008, "REQUEST_TIMEOUT", 408),
    row(4101, "SUBSCRIPTION_CREATOR_HAS_NO_PRIVILEGE", 403),
    row(4102, "CONTENTS_UNACCEPTABLE", 400),
    row(4103, "ORIGINATOR_HAS_NO_PRIVILEGE", 403),
    row(4104, "GROUP_REQUEST_IDENTIFIER_EXISTS", 409),
    row(4105, "CONFLICT", 409),
    row(4106, "ORIGINATOR_NOT_AUTHENTICATED", 403),
    row(4107, "SECURITY_ASSOCIATION_REQUIRED", 403),
    row(4108, "INVALID_CHILD_RESOURCE_TYPE", 403),
    row(4109, "NO_MEMBERS", 403),
    row(4110, "GROUP_MEMBER_TYPE_INCONSISTENT", 400),
    row(5000, "INTERNAL_SERVER_ERROR", 500),
    row(5001, "NOT_IMPLEMENTED", 501),
    row(5103, "TARGET_NOT_REACHABLE", 404),
    row(5105, "RECEIVER_HAS_NO_PRIVILEGE", 403),
    row(5106, "ALREADY_EXISTS", 403),
    row(5203, "TARGET_NOT_SUBSCRIBABLE", 403),
    row(5204, "SUBSCRIPTION_VERIFICATION_INITIATION_FAILED", 500),
    row(5205, "SUBSCRIPTION_HOST_HAS_NO_PRIVILEGE", 403),
    row(5206, "NON_BLOCKING_REQUEST_NOT_SUPPORTED", 501),
    row(5207, "NOT_ACCEPTABLE", 406),
];

/// The row for `rsc`, if TS-0009 maps it.
pub fn lookup(rsc: u32) -> Option<&'static Mapping> {
    TABLE.iter().find(|row| row.rsc == rsc)
}

/// The HTTP status for `rsc`. An RSC outside the table (none the gateway sends: see the
/// tests) answers 500, the status of a failure the receiver cannot classify.
pub fn http_status(rsc: u32) -> StatusCode {
    lookup(rsc)
        .and_then(|row| StatusCode::from_u16(row.http).ok())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

#[cfg(test)]
mod tests {
    use super::super::onem2m::rsc;
    use super::*;

    #[test]
    fn every_code_the_gateway_sends_is_in_the_table() {
        for code in rsc::ALL {
            let row = lookup(code).unwrap_or_else(|| panic!("{code} is not in TS-0009's table"));
            assert_eq!(http_status(code).as_u16(), row.http);
        }
        assert_eq!(
            http_status(rsc::TARGET_NOT_REACHABLE),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            http_status(rsc::ORIGINATOR_HAS_NO_PRIVILEGE),
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            http_status(rsc::ORIGINATOR_NOT_AUTHENTICATED),
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            http_status(rsc::REQUEST_TIMEOUT),
            StatusCode::REQUEST_TIMEOUT
        );
        assert_eq!(http_status(9999), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn the_table_is_ordered_once_per_code_and_valid_http() {
        for pair in TABLE.windows(2) {
            assert!(
                pair[0].rsc < pair[1].rsc,
                "{:?} before {:?}",
                pair[0],
                pair[1]
            );
        }
        for row in TABLE {
            assert!(StatusCode::from_u16(row.http).is_ok(), "{row:?}");
        }
    }

    /// docs/proxy.md's "Status mapping" table is this table, row for row.
    #[test]
    fn the_documented_table_is_the_code_table() {
        let docs = include_str!("../../../docs/proxy.md");
        let section = docs
            .split("## Status mapping")
            .nth(1)
            .expect("docs/proxy.md has a \"## Status mapping\" section");
        let section = section.split("\n## ").next().unwrap_or(section);
        let documented: Vec<Mapping> = section
            .lines()
            .filter_map(|line| {
                let cells: Vec<&str> = line
                    .trim()
                    .strip_prefix('|')?
                    .strip_suffix('|')?
                    .split('|')
                    .map(|cell| cell.trim().trim_matches('`'))
                    .collect();
                let [code, name, http, ..] = cells[..] else {
                    return None;
                };
                let rsc = code.parse().ok()?;
                let http = http.split_whitespace().next()?.parse().ok()?;
                let name = TABLE
                    .iter()
                    .find(|row| row.name == name)
                    .map(|row| row.name);
                Some(Mapping {
                    rsc,
                    name: name.unwrap_or("(a name not in the code table)"),
                    http,
                })
            })
            .collect();
        assert_eq!(
            documented, TABLE,
            "docs/proxy.md's status table differs from api::status::TABLE"
        );
    }
}
