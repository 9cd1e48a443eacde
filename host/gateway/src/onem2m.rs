//! The oneM2M HTTP binding (TS-0009) as the enforcement proxy reads and answers it.
//!
//! Requests: the method and query give the operation (POST with `ty=` in `Content-Type` is
//! create, POST without is notify; GET is retrieve, or discovery with `fu=1`; PUT update;
//! DELETE delete); `X-M2M-Origin` the originator; `X-M2M-RI` the request id, echoed in every
//! answer; `X-M2M-RVI` the release version, echoed too; `Authorization: <scheme> <value>` a
//! credential for the app's authenticators, and `Authorization: <jws>+<jws>` (oneM2M tokens
//! with no scheme word, TS-0009 §6.4.19) the credential `bearer <jws>+<jws>`.
//!
//! One identity from decision to CSE (issue 11.7): everything the decision reads is read
//! once, strictly, and the request forwarded to the CSE is rebuilt from what was read
//! ([`BindingRequest`]) rather than copied from the client. So a request that two readers
//! could read differently is refused (`X-M2M-RSC: 4000`): a oneM2M header given twice, a
//! `Connection` header naming one (hop-by-hop removal would take it away after the
//! decision), a `Content-Type` with a duplicate or malformed parameter, a query parameter
//! given twice, and a path with dot segments, empty segments, `;` parameters, or an encoded
//! `/`, `\`, `;` or `%`. Before any of that, every part plugins see is bounded in size
//! (issue 11.4, `[limits]`), so no request can grow a plugin's view or its answer.
//! docs/proxy.md has the table, header by header.
//!
//! Answers made by the gateway carry `X-M2M-RSC` and a `{"m2m:dbg": "..."}` body.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Uri};

use super::config::ServerLimits;
use super::error::Response;
use palisade_core::{Credential, Operation};

/// Response status codes (TS-0004 §6.6.3) the gateway itself uses. Their HTTP statuses
/// come from [`super::status`], never from the code that answers.
pub mod rsc {
    pub const OK: u32 = 2000;
    pub const BAD_REQUEST: u32 = 4000;
    pub const OPERATION_NOT_ALLOWED: u32 = 4005;
    pub const REQUEST_TIMEOUT: u32 = 4008;
    pub const ORIGINATOR_HAS_NO_PRIVILEGE: u32 = 4103;
    pub const ORIGINATOR_NOT_AUTHENTICATED: u32 = 4106;
    pub const INTERNAL_SERVER_ERROR: u32 = 5000;
    pub const TARGET_NOT_REACHABLE: u32 = 5103;
    /// Every code above (the status tests walk it).
    #[cfg(test)]
    pub const ALL: [u32; 8] = [
        OK,
        BAD_REQUEST,
        OPERATION_NOT_ALLOWED,
        REQUEST_TIMEOUT,
        ORIGINATOR_HAS_NO_PRIVILEGE,
        ORIGINATOR_NOT_AUTHENTICATED,
        INTERNAL_SERVER_ERROR,
        TARGET_NOT_REACHABLE,
    ];
}

pub const X_M2M_ORIGIN: &str = "x-m2m-origin";
pub const X_M2M_RI: &str = "x-m2m-ri";
pub const X_M2M_RVI: &str = "x-m2m-rvi";
pub const X_M2M_RSC: &str = "x-m2m-rsc";

/// The oneM2M request headers (TS-0009 §6.4) forwarded to the CSE as the client sent them,
/// once each and within `max_header_bytes`. The decision does not read them; every other
/// header, and any other `X-M2M-*`, stays at the gateway. `X-M2M-Origin`, `X-M2M-RI`,
/// `Content-Type` and `Authorization` are forwarded too, rebuilt from what was decided.
pub const PASSED_THROUGH: [&str; 9] = [
    X_M2M_RVI,
    "x-m2m-gid",
    "x-m2m-rtu",
    "x-m2m-ot",
    "x-m2m-rst",
    "x-m2m-ret",
    "x-m2m-oet",
    "x-m2m-ec",
    "accept",
];

/// Most query parameters a request may have (they reach plugins as attributes).
pub const MAX_QUERY_PARAMETERS: usize = 32;

/// A oneM2M request read from HTTP: what the decision sees and what the CSE receives.
#[derive(Clone, Debug)]
pub struct BindingRequest {
    pub originator: String,
    pub request_id: String,
    pub operation: Operation,
    /// The decoded target path the application's plugins judge.
    pub target: String,
    /// The same path, encoded canonically: what the CSE receives.
    pub path: String,
    /// The query parameters, decoded (plugins see them as attributes).
    pub attributes: Vec<(String, String)>,
    pub resource_type: Option<u32>,
    /// `Content-Type` rebuilt: the media type, its parameters once each, `ty` as decided.
    pub content_type: Option<HeaderValue>,
    pub credential: Option<Credential>,
    /// The `Authorization` header the credential was read from.
    pub authorization: Option<HeaderValue>,
    /// The [`PASSED_THROUGH`] headers present.
    pub passed: Vec<(HeaderName, HeaderValue)>,
}

impl BindingRequest {
    /// The path and query the CSE receives: the target encoded canonically and the query
    /// rebuilt from the decoded parameters.
    pub fn path_and_query(&self) -> String {
        let mut out = self.path.clone();
        for (index, (name, value)) in self.attributes.iter().enumerate() {
            out.push(if index == 0 { '?' } else { '&' });
            encode_query_part(&mut out, name);
            out.push('=');
            encode_query_part(&mut out, value);
        }
        out
    }

    /// The headers the CSE receives (hyper adds `Host` and `Content-Length`).
    pub fn forwarded_headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::with_capacity(4 + self.passed.len());
        let value = |text: &str| HeaderValue::from_str(text).expect("read from a header value");
        // Empty only for an AE registration without one: the CSE gets none either.
        if !self.originator.is_empty() {
            headers.insert(X_M2M_ORIGIN, value(&self.originator));
        }
        headers.insert(X_M2M_RI, value(&self.request_id));
        if let Some(content_type) = &self.content_type {
            headers.insert(CONTENT_TYPE, content_type.clone());
        }
        if let Some(authorization) = &self.authorization {
            headers.insert(AUTHORIZATION, authorization.clone());
        }
        for (name, value) in &self.passed {
            headers.insert(name.clone(), value.clone());
        }
        headers
    }
}

/// The headers every gateway answer echoes.
#[derive(Clone, Debug, Default)]
pub struct Echo {
    pub request_id: Option<HeaderValue>,
    pub release: Option<HeaderValue>,
}

impl Echo {
    /// The first `X-M2M-RI` and `X-M2M-RVI`, each when within its bound
    /// (`max_request_id_bytes`, `max_header_bytes`): an oversized one is refused, and not
    /// sent back.
    pub fn from_headers(headers: &HeaderMap, limits: &ServerLimits) -> Echo {
        let short = |name: &str, max: usize| {
            headers
                .get(name)
                .filter(|value| value.len() <= max)
                .cloned()
        };
        Echo {
            request_id: short(X_M2M_RI, limits.max_request_id_bytes),
            release: short(X_M2M_RVI, limits.max_header_bytes),
        }
    }

    /// Adds `X-M2M-RI` and `X-M2M-RVI` to `response` when the CSE did not set them.
    pub fn apply(&self, headers: &mut HeaderMap) {
        if let Some(ri) = &self.request_id {
            headers.entry(X_M2M_RI).or_insert_with(|| ri.clone());
        }
        if let Some(rvi) = &self.release {
            headers.entry(X_M2M_RVI).or_insert_with(|| rvi.clone());
        }
    }
}

/// Why a request cannot be read as oneM2M: answered with this RSC (and the HTTP status
/// [`super::status`] maps it to).
#[derive(Debug)]
pub struct BindingError {
    pub rsc: u32,
    pub message: String,
    /// A part over its `[limits]` bound (counted apart in the metrics).
    pub too_long: bool,
}

fn bad(message: impl Into<String>) -> BindingError {
    BindingError {
        rsc: rsc::BAD_REQUEST,
        message: message.into(),
        too_long: false,
    }
}

/// A part over its `[limits]` bound. TS-0009 maps 4000 to HTTP 400, so an oversized URI or
/// header is 400 too (not 414/431); `m2m:dbg` names the limit.
fn too_long(what: &str, length: usize, limit: usize, key: &str) -> BindingError {
    BindingError {
        rsc: rsc::BAD_REQUEST,
        message: format!("{what} is {length} bytes, over the limit of {limit} ([limits] {key})"),
        too_long: true,
    }
}

/// Reads the oneM2M request in `method`, `uri` and `headers`, within `limits`.
pub fn parse(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    limits: &ServerLimits,
) -> Result<BindingRequest, BindingError> {
    // Bounds first (issue 11.4): nothing oversized is even parsed.
    let raw_path = uri.path();
    if raw_path.len() > limits.max_path_bytes {
        return Err(too_long(
            "the path",
            raw_path.len(),
            limits.max_path_bytes,
            "max_path_bytes",
        ));
    }
    let raw_query = uri.query().unwrap_or("");
    if raw_query.len() > limits.max_query_bytes {
        return Err(too_long(
            "the query",
            raw_query.len(),
            limits.max_query_bytes,
            "max_query_bytes",
        ));
    }
    check_headers(headers, limits)?;

    let originator = header_text(headers, X_M2M_ORIGIN)?.unwrap_or_default();
    let request_id = header_text(headers, X_M2M_RI)?
        .filter(|ri| !ri.is_empty())
        .ok_or_else(|| bad("X-M2M-RI is required"))?;
    let (target, path) = normalise_path(raw_path)?;
    let attributes = parse_query(raw_query)?;
    let (content_type, resource_type) = match header_text(headers, CONTENT_TYPE.as_str())? {
        Some(text) => {
            let (rebuilt, ty) = parse_content_type(&text)?;
            (Some(rebuilt), ty)
        }
        None => (None, None),
    };
    if resource_type.is_some() && *method != Method::POST {
        return Err(bad(format!(
            "ty in Content-Type names the type of a resource to create: only a POST (create) may carry it, not {method}"
        )));
    }
    // TS-0001 §10.2.2.2: an AE may register without an originator and take the AE-ID the
    // CSE assigns; every other request names its originator. Whether a registration
    // without one may pass is the application's registration policy (api::registration).
    if originator.is_empty()
        && !(*method == Method::POST
            && resource_type == Some(super::registration::AE_RESOURCE_TYPE))
    {
        return Err(bad("X-M2M-Origin is required"));
    }
    let fu = attributes
        .iter()
        .find(|(name, _)| name == "fu")
        .map(|(_, value)| value.as_str());
    let discovery = match fu {
        None | Some("2") => false,
        Some("1") => true,
        Some(other) => {
            return Err(bad(format!(
                "fu={other:?}: the filter usage is 1 (discovery) or 2 (conditional retrieval)"
            )))
        }
    };
    let operation = match *method {
        Method::GET if discovery => Operation::Discovery,
        Method::GET => Operation::Retrieve,
        Method::POST if resource_type.is_some() => Operation::Create,
        Method::POST => Operation::Notify,
        Method::PUT => Operation::Update,
        Method::DELETE => Operation::Delete,
        _ => {
            return Err(BindingError {
                rsc: rsc::OPERATION_NOT_ALLOWED,
                message: format!(
                    "{method} is not a oneM2M operation (use POST, GET, PUT or DELETE)"
                ),
                too_long: false,
            })
        }
    };
    let authorization = headers.get(AUTHORIZATION).cloned();
    let credential = match header_text(headers, AUTHORIZATION.as_str())? {
        // TS-0009 §6.4.19: oneM2M tokens without a scheme word, compact JWS joined by `+`;
        // read as the `bearer` credential the `Bearer <jws>` form gives.
        Some(value) if !value.contains(' ') && value.contains('.') => Some(Credential {
            scheme: "bearer".into(),
            value,
        }),
        Some(value) => {
            let (scheme, rest) = value.split_once(' ').unwrap_or((value.as_str(), ""));
            Some(Credential {
                scheme: scheme.to_ascii_lowercase(),
                value: rest.trim().to_string(),
            })
        }
        None => None,
    };
    let passed = PASSED_THROUGH
        .iter()
        .filter_map(|name| {
            let value = headers.get(*name)?;
            Some((HeaderName::from_static(name), value.clone()))
        })
        .collect();
    Ok(BindingRequest {
        originator,
        request_id,
        operation,
        target,
        path,
        attributes,
        resource_type,
        content_type,
        credential,
        authorization,
        passed,
    })
}

/// Whether the proxy reads or forwards header `name`: such a header must come once and
/// must not be named in `Connection`.
fn is_end_to_end(name: &str) -> bool {
    name.starts_with("x-m2m-")
        || name == CONTENT_TYPE.as_str()
        || name == AUTHORIZATION.as_str()
        || name == ACCEPT.as_str()
}

/// Duplicates, `Connection` and sizes of the headers the decision reads or the CSE gets.
fn check_headers(headers: &HeaderMap, limits: &ServerLimits) -> Result<(), BindingError> {
    for name in headers.keys() {
        let name = name.as_str();
        if is_end_to_end(name) && headers.get_all(name).iter().nth(1).is_some() {
            return Err(bad(format!(
                "the {name} header is given more than once: the gateway and the CSE could read different ones"
            )));
        }
    }
    // RFC 9110 §7.6.1 makes a proxy drop the headers `Connection` names. Dropping one the
    // decision used would send the CSE a request other than the one decided; keeping it
    // would break the RFC. No legitimate oneM2M client names them, so the request is
    // refused instead.
    for value in headers.get_all(hyper::header::CONNECTION) {
        let text = value
            .to_str()
            .map_err(|_| bad("the Connection header is not visible ASCII"))?;
        for option in text.split(',') {
            let option = option.trim().to_ascii_lowercase();
            if is_end_to_end(&option) {
                return Err(bad(format!(
                    "Connection names {option}, a header the decision uses or the CSE needs: it cannot be hop-by-hop"
                )));
            }
        }
    }
    let sized = [
        (
            X_M2M_ORIGIN,
            limits.max_originator_bytes,
            "max_originator_bytes",
        ),
        (
            X_M2M_RI,
            limits.max_request_id_bytes,
            "max_request_id_bytes",
        ),
        (
            AUTHORIZATION.as_str(),
            limits.max_authorization_bytes,
            "max_authorization_bytes",
        ),
        (
            CONTENT_TYPE.as_str(),
            limits.max_header_bytes,
            "max_header_bytes",
        ),
    ];
    let passed = PASSED_THROUGH
        .iter()
        .map(|name| (*name, limits.max_header_bytes, "max_header_bytes"));
    for (name, limit, key) in sized.into_iter().chain(passed) {
        if let Some(value) = headers.get(name) {
            if value.len() > limit {
                return Err(too_long(
                    &format!("the {name} header"),
                    value.len(),
                    limit,
                    key,
                ));
            }
            if value.to_str().is_err() {
                return Err(bad(format!("the {name} header is not visible ASCII")));
            }
        }
    }
    Ok(())
}

fn header_text(headers: &HeaderMap, name: &str) -> Result<Option<String>, BindingError> {
    match headers.get(name) {
        None => Ok(None),
        Some(value) => value
            .to_str()
            .map(|text| Some(text.trim().to_string()))
            .map_err(|_| bad(format!("the {name} header is not visible ASCII"))),
    }
}

/// RFC 9110 `tchar`.
fn is_token(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A oneM2M content type such as `application/json;ty=4`, strictly: a `type/subtype` of
/// tokens, then `;name=value` parameters of tokens, each name once. Quoted values are not
/// accepted (a `;` inside quotes reads differently to a naive reader). Returns the
/// content type rebuilt from what was read (lower-case names, no spaces) and `ty`.
pub fn parse_content_type(text: &str) -> Result<(HeaderValue, Option<u32>), BindingError> {
    let malformed = |why: &str| bad(format!("Content-Type {text:?}: {why}"));
    let mut parts = text.split(';');
    let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    match media.split_once('/') {
        Some((kind, subtype)) if is_token(kind) && is_token(subtype) => {}
        _ => return Err(malformed("not a type/subtype media type")),
    }
    let mut rebuilt = media;
    let mut names: Vec<String> = Vec::new();
    let mut ty = None;
    for parameter in parts {
        let (name, value) = parameter
            .trim()
            .split_once('=')
            .ok_or_else(|| malformed("a parameter is not name=value"))?;
        let name = name.trim().to_ascii_lowercase();
        let value = value.trim();
        if !is_token(&name) || !is_token(value) {
            return Err(malformed(&format!(
                "parameter {name:?} is not a plain name=value (no quotes, spaces or empty parts)"
            )));
        }
        if names.contains(&name) {
            return Err(malformed(&format!(
                "parameter {name} is given more than once"
            )));
        }
        if name == "ty" {
            // Digits only: `+4`, `4.0` or `0x4` could read as 4 to one parser and not another.
            let number = (value.len() <= 5 && value.bytes().all(|b| b.is_ascii_digit()))
                .then(|| value.parse::<u32>().ok())
                .flatten()
                .ok_or_else(|| malformed(&format!("ty={value} is not a resource type number")))?;
            ty = Some(number);
            rebuilt.push_str(&format!(";ty={number}"));
        } else {
            rebuilt.push_str(&format!(";{name}={value}"));
        }
        names.push(name);
    }
    let rebuilt = HeaderValue::from_str(&rebuilt).map_err(|_| malformed("not a header value"))?;
    Ok((rebuilt, ty))
}

/// Bytes an encoded path may carry as themselves (RFC 3986 `pchar` without `;`, which
/// starts a path parameter for some servers).
fn is_path_char(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"-._~!$&'()*+,=:@".contains(&byte)
}

/// The target path, read once: `(decoded, canonical)`. The decoded form is what plugins
/// judge; the canonical form (every byte that is not a plain path character
/// percent-encoded, upper-case hex) is what the CSE receives, so both name one resource.
///
/// Refused, rather than guessed at: `.` and `..` segments (also encoded), empty segments
/// (beyond TS-0009's `/~/` and `/_/` prefixes), `;` path parameters (`..;`), a literal
/// `\`, an encoded `/`, `\`, `;` or `%` (double decoding), control characters and
/// percent-encodings that are not UTF-8. Each would let the gateway and the CSE resolve
/// the path to different resources, and so to different applications and policies.
pub fn normalise_path(raw: &str) -> Result<(String, String), BindingError> {
    if !raw.starts_with('/') {
        return Err(bad(format!("{raw:?} is not an absolute path")));
    }
    if raw.contains(';') {
        return Err(bad(format!(
            "{raw:?} holds ';' (a path parameter): not a plain resource path"
        )));
    }
    let bytes = raw.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let byte = match bytes[index] {
            b'%' => {
                let byte = raw
                    .get(index + 1..index + 3)
                    // Two hex digits exactly: `from_str_radix` alone also takes a sign (`%+A`).
                    .filter(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()))
                    .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                    .ok_or_else(|| bad(format!("{raw:?} holds a '%' that is not %XX")))?;
                index += 3;
                if matches!(byte, b'/' | b'\\' | b';' | b'%') {
                    return Err(bad(format!(
                        "{raw:?} holds an encoded {:?}: it could be decoded twice",
                        byte as char
                    )));
                }
                byte
            }
            b'\\' => return Err(bad(format!("{raw:?} holds a '\\'"))),
            byte => {
                index += 1;
                byte
            }
        };
        if byte.is_ascii_control() {
            return Err(bad(format!("{raw:?} holds a control character")));
        }
        decoded.push(byte);
    }
    let decoded = String::from_utf8(decoded)
        .map_err(|_| bad(format!("{raw:?} is not percent-encoded UTF-8")))?;
    // TS-0009: `/~/` (SP-relative) and `/_/` (absolute) forms start with an empty-looking
    // segment on purpose; everything after must be plain segments.
    let rest = decoded
        .strip_prefix("/~/")
        .or_else(|| decoded.strip_prefix("/_/"))
        .unwrap_or(&decoded[1..]);
    if let Some(segment) = rest
        .split('/')
        .find(|segment| segment.is_empty() || *segment == "." || *segment == "..")
    {
        let what = if segment.is_empty() {
            "an empty segment".to_string()
        } else {
            format!("a {segment:?} segment")
        };
        return Err(bad(format!(
            "{decoded:?} is not a plain resource path: it holds {what}, which the gateway will not resolve for the CSE"
        )));
    }
    let mut canonical = String::with_capacity(decoded.len());
    for &byte in decoded.as_bytes() {
        if byte == b'/' || is_path_char(byte) {
            canonical.push(byte as char);
        } else {
            canonical.push_str(&format!("%{byte:02X}"));
        }
    }
    Ok((decoded, canonical))
}

/// The decoded query parameters: `name=value` pairs, each name once, at most
/// [`MAX_QUERY_PARAMETERS`].
fn parse_query(query: &str) -> Result<Vec<(String, String)>, BindingError> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (name, value) = pair.split_once('=').ok_or_else(|| {
            bad(format!(
                "query parameter {pair:?} has no value (name=value)"
            ))
        })?;
        let decode = |text| {
            percent_decode(text, true)
                .filter(|text| !text.chars().any(char::is_control))
                .ok_or_else(|| {
                    bad(format!(
                        "query parameter {pair:?} is not percent-encoded UTF-8"
                    ))
                })
        };
        let (name, value) = (decode(name)?, decode(value)?);
        if pairs.iter().any(|(seen, _)| *seen == name) {
            return Err(bad(format!(
                "query parameter {name} is given more than once (oneM2M lists values with '+')"
            )));
        }
        pairs.push((name, value));
        if pairs.len() > MAX_QUERY_PARAMETERS {
            return Err(bad(format!(
                "the query has more than {MAX_QUERY_PARAMETERS} parameters"
            )));
        }
    }
    Ok(pairs)
}

/// Strict percent-decoding (the `percent-encoding` crate, as everywhere in the gateway): every
/// `%` must start a `%XX` escape and the result must be UTF-8, else `None`.
fn percent_decode(text: &str, plus_is_space: bool) -> Option<String> {
    let bytes = text.as_bytes();
    let well_formed = bytes.iter().enumerate().all(|(index, &byte)| {
        byte != b'%'
            || bytes
                .get(index + 1..index + 3)
                .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
    });
    if !well_formed {
        return None;
    }
    let text = if plus_is_space {
        std::borrow::Cow::Owned(text.replace('+', " "))
    } else {
        std::borrow::Cow::Borrowed(text)
    };
    percent_encoding::percent_decode_str(&text)
        .decode_utf8()
        .ok()
        .map(|decoded| decoded.into_owned())
}

/// Form-encodes `text` into `out`: unreserved bytes as themselves, space as `+`.
fn encode_query_part(out: &mut String, text: &str) {
    for &byte in text.as_bytes() {
        match byte {
            b' ' => out.push('+'),
            b if b.is_ascii_alphanumeric() || b"-._~".contains(&b) => out.push(b as char),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
}

/// An answer made by the gateway: `X-M2M-RSC`, the HTTP status TS-0009 maps it to
/// ([`super::status::http_status`]: the one table), the echoed headers and
/// `{"m2m:dbg": ...}`. The only constructor of gateway-made oneM2M answers.
pub fn gateway_answer(rsc: u32, dbg: &str, echo: &Echo) -> Response {
    let body = serde_json::json!({ "m2m:dbg": dbg }).to_string();
    let mut response = hyper::Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = super::status::http_status(rsc);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(X_M2M_RSC, HeaderValue::from(rsc));
    echo.apply(headers);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(
        method: Method,
        uri: &str,
        headers: &[(&'static str, &str)],
    ) -> Result<BindingRequest, BindingError> {
        let mut map = HeaderMap::new();
        map.insert(X_M2M_RI, HeaderValue::from_static("r1"));
        for (name, value) in headers {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        parse(
            &method,
            &uri.parse().unwrap(),
            &map,
            &ServerLimits::default(),
        )
    }

    /// The gateway's decoders are the `percent-encoding` crate's (issue #14.3). The hand-written
    /// ones read hex with `u8::from_str_radix`, which also takes a sign: `%+A` decoded as 0x0A.
    #[test]
    fn query_percent_decoding_is_strict() {
        assert_eq!(percent_decode("a%2Fb%20c", false).as_deref(), Some("a/b c"));
        assert_eq!(percent_decode("x+y%2B", true).as_deref(), Some("x y+"));
        assert_eq!(percent_decode("x+y", false).as_deref(), Some("x+y"));
        assert_eq!(percent_decode("%C3%A9", false).as_deref(), Some("\u{e9}"));
        for bad in ["%", "%2", "a%G1", "%+A", "%-1", "%C3", "%FF"] {
            assert_eq!(percent_decode(bad, true), None, "{bad}");
        }
        assert!(request(Method::GET, "/cse-in/a?lbl=%+A", &[(X_M2M_ORIGIN, "CAE1")]).is_err());
    }

    /// The path's own decoder (it refuses encoded separators byte by byte) takes exactly two
    /// hex digits too: `%+A` (a newline to `from_str_radix`) is refused, `%41` still read.
    #[test]
    fn path_percent_decoding_is_strict() {
        assert_eq!(normalise_path("/cse-in/%41").unwrap().0, "/cse-in/A");
        for bad in ["/cse-in/a%+A", "/cse-in/a%-1", "/cse-in/a%2", "/cse-in/a%"] {
            assert!(normalise_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn methods_and_query_map_to_operations() {
        let origin = [(X_M2M_ORIGIN, "CAE1")];
        let create = [
            (X_M2M_ORIGIN, "CAE1"),
            ("content-type", "application/json;ty=4"),
        ];
        assert_eq!(
            request(Method::GET, "/cse-in/a", &origin)
                .unwrap()
                .operation,
            Operation::Retrieve
        );
        assert_eq!(
            request(Method::GET, "/cse-in/a?fu=1&lbl=x", &origin)
                .unwrap()
                .operation,
            Operation::Discovery
        );
        let created = request(Method::POST, "/cse-in/a", &create).unwrap();
        assert_eq!(
            (created.operation, created.resource_type),
            (Operation::Create, Some(4))
        );
        assert_eq!(
            request(Method::POST, "/cse-in/a", &origin)
                .unwrap()
                .operation,
            Operation::Notify
        );
        assert_eq!(
            request(Method::PUT, "/cse-in/a", &origin)
                .unwrap()
                .operation,
            Operation::Update
        );
        assert_eq!(
            request(Method::DELETE, "/cse-in/a", &origin)
                .unwrap()
                .operation,
            Operation::Delete
        );
        assert_eq!(
            request(Method::PATCH, "/cse-in/a", &origin)
                .unwrap_err()
                .rsc,
            rsc::OPERATION_NOT_ALLOWED
        );
        assert_eq!(
            request(Method::GET, "/cse-in/a", &[]).unwrap_err().rsc,
            rsc::BAD_REQUEST
        );
    }

    #[test]
    fn encoded_paths_cannot_escape_their_prefix() {
        let target = |path: &str| normalise_path(path).map(|(decoded, _)| decoded);
        assert_eq!(
            target("/cse-in/%6cights/lamp").unwrap(),
            "/cse-in/lights/lamp"
        );
        assert!(target("/cse-in/lights/../meters").is_err());
        assert!(target("/cse-in/lights/%2e%2e/meters").is_err());
        assert!(target("/cse-in/lights/..;/meters").is_err());
        assert!(target("/cse-in/lights;x=1/lamp").is_err());
        assert!(target("/cse-in/lights%2Fx").is_err());
        assert!(target("/cse-in/lights%5cx").is_err());
        assert!(target("/cse-in/lights/%252e%252e").is_err());
        assert!(target("/cse-in//lights").is_err());
        assert!(target("/cse-in/lights/").is_err());
        assert!(target("/cse-in/./lights").is_err());
        assert!(target("/~/mn-cse/cse-in/lights").is_ok());
        assert!(target("/cse-in/%ff").is_err());
        assert!(target("/cse-in/%0a").is_err());
    }

    #[test]
    fn the_forwarded_path_is_the_decided_one_encoded_canonically() {
        assert_eq!(
            normalise_path("/cse-in/%6Cights/a%20b/%c3%a9").unwrap(),
            (
                "/cse-in/lights/a b/\u{e9}".to_string(),
                "/cse-in/lights/a%20b/%C3%A9".to_string()
            )
        );
        assert_eq!(
            normalise_path("/~/mn-cse/cse-in/x:y@z").unwrap().1,
            "/~/mn-cse/cse-in/x:y@z"
        );
    }

    #[test]
    fn content_types_are_read_strictly_and_rebuilt() {
        let read = |text: &str| {
            parse_content_type(text).map(|(value, ty)| (value.to_str().unwrap().to_string(), ty))
        };
        assert_eq!(
            read("application/json;ty=4").unwrap(),
            ("application/json;ty=4".to_string(), Some(4))
        );
        assert_eq!(
            read("Application/Vnd.onem2m-res+json; TY=04 ; charset=utf-8").unwrap(),
            (
                "application/vnd.onem2m-res+json;ty=4;charset=utf-8".to_string(),
                Some(4)
            )
        );
        assert_eq!(read("application/json").unwrap().1, None);
        for malformed in [
            "application/json;ty=4;ty=2",
            "application/json;ty=4;TY=2",
            "application/json;charset=a;charset=b",
            "application/json;ty=+4",
            "application/json;ty=0x4",
            "application/json;ty=\"4\"",
            "application/json;ty",
            "application/json;",
            "application/json;=4",
            "json",
            "application/json;ty=4000000",
        ] {
            assert!(read(malformed).is_err(), "{malformed}");
        }
    }

    #[test]
    fn onem2m_headers_come_once_and_stay_end_to_end() {
        let mut map = HeaderMap::new();
        map.insert(X_M2M_RI, HeaderValue::from_static("r1"));
        map.append(X_M2M_ORIGIN, HeaderValue::from_static("CAE1"));
        map.append(X_M2M_ORIGIN, HeaderValue::from_static("CAE9"));
        let limits = ServerLimits::default();
        let uri: Uri = "/cse-in/a".parse().unwrap();
        let error = parse(&Method::GET, &uri, &map, &limits).unwrap_err();
        assert!(
            error.message.contains("more than once"),
            "{}",
            error.message
        );
        map.insert(X_M2M_ORIGIN, HeaderValue::from_static("CAE1"));
        map.insert(
            "connection",
            HeaderValue::from_static("close, X-M2M-Origin"),
        );
        let error = parse(&Method::GET, &uri, &map, &limits).unwrap_err();
        assert!(
            error.message.contains("Connection names x-m2m-origin"),
            "{}",
            error.message
        );
        map.insert("connection", HeaderValue::from_static("close, x-private"));
        assert!(parse(&Method::GET, &uri, &map, &limits).is_ok());
    }

    #[test]
    fn oversized_parts_are_refused_naming_their_limit() {
        let long = "x".repeat(5000);
        let error = request(
            Method::GET,
            &format!("/cse-in/{long}"),
            &[(X_M2M_ORIGIN, "CAE1")],
        )
        .unwrap_err();
        assert!(error.too_long);
        assert!(
            error.message.contains("max_path_bytes"),
            "{}",
            error.message
        );
        let error = request(Method::GET, "/cse-in/a", &[(X_M2M_ORIGIN, &long)]).unwrap_err();
        assert_eq!((error.too_long, error.rsc), (true, rsc::BAD_REQUEST));
        assert!(
            error.message.contains("max_originator_bytes"),
            "{}",
            error.message
        );
        let at_limit = "o".repeat(256);
        assert!(request(Method::GET, "/cse-in/a", &[(X_M2M_ORIGIN, &at_limit)]).is_ok());
    }

    #[test]
    fn queries_are_read_once_and_rebuilt() {
        let origin = [(X_M2M_ORIGIN, "CAE1")];
        let read = request(Method::GET, "/cse-in/a?fu=1&lbl=a+b&rcn=%34", &origin).unwrap();
        assert_eq!(read.operation, Operation::Discovery);
        assert_eq!(read.path_and_query(), "/cse-in/a?fu=1&lbl=a+b&rcn=4");
        for refused in [
            "/cse-in/a?fu=1&fu=2",
            "/cse-in/a?fu=01",
            "/cse-in/a?rcn",
            "/cse-in/a?x=%zz",
        ] {
            assert!(request(Method::GET, refused, &origin).is_err(), "{refused}");
        }
        let many: Vec<String> = (0..33).map(|i| format!("p{i}=1")).collect();
        assert!(request(
            Method::GET,
            &format!("/cse-in/a?{}", many.join("&")),
            &origin
        )
        .is_err());
    }
}
