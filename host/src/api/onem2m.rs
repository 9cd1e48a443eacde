//! The oneM2M HTTP binding (TS-0009) as the enforcement proxy reads and answers it.
//!
//! Requests: the method and query give the operation (POST with `ty=` in `Content-Type` is
//! create, POST without is notify; GET is retrieve, or discovery with `fu=1`; PUT update;
//! DELETE delete); `X-M2M-Origin` the originator; `X-M2M-RI` the request id, echoed in every
//! answer; `X-M2M-RVI` the release version, echoed too; `Authorization: <scheme> <value>` a
//! credential for the app's authenticators. The target is the percent-decoded path, refused
//! when it holds dot segments, empty segments, an encoded `/` or control characters: the path
//! the policy judged must be the path the CSE serves (no prefix bypass by encoding).
//!
//! Answers made by the gateway carry `X-M2M-RSC` and a `{"m2m:dbg": "..."}` body.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, StatusCode, Uri};

use super::error::Response;
use crate::request::{Credential, Operation};

/// Response status codes (TS-0004 §6.6.3) the gateway itself uses.
pub mod rsc {
    pub const OK: u32 = 2000;
    pub const BAD_REQUEST: u32 = 4000;
    pub const OPERATION_NOT_ALLOWED: u32 = 4005;
    pub const REQUEST_TIMEOUT: u32 = 4008;
    pub const ORIGINATOR_HAS_NO_PRIVILEGE: u32 = 4103;
    pub const INTERNAL_SERVER_ERROR: u32 = 5000;
    pub const TARGET_NOT_REACHABLE: u32 = 5103;
}

pub const X_M2M_ORIGIN: &str = "x-m2m-origin";
pub const X_M2M_RI: &str = "x-m2m-ri";
pub const X_M2M_RVI: &str = "x-m2m-rvi";
pub const X_M2M_RSC: &str = "x-m2m-rsc";

/// Most query parameters passed to plugins as attributes; longer values are cut.
const MAX_ATTRIBUTES: usize = 32;
const MAX_ATTRIBUTE_BYTES: usize = 256;

/// A oneM2M request read from HTTP.
#[derive(Clone, Debug)]
pub struct BindingRequest {
    pub originator: String,
    pub operation: Operation,
    pub target: String,
    pub resource_type: Option<u32>,
    pub credential: Option<Credential>,
    pub attributes: Vec<(String, String)>,
}

/// The headers every gateway answer echoes.
#[derive(Clone, Debug, Default)]
pub struct Echo {
    pub request_id: Option<HeaderValue>,
    pub release: Option<HeaderValue>,
}

impl Echo {
    pub fn from_headers(headers: &HeaderMap) -> Echo {
        Echo {
            request_id: headers.get(X_M2M_RI).cloned(),
            release: headers.get(X_M2M_RVI).cloned(),
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

/// Why a request cannot be read as oneM2M: answered with this status and RSC.
#[derive(Debug)]
pub struct BindingError {
    pub status: StatusCode,
    pub rsc: u32,
    pub message: String,
}

fn bad(message: impl Into<String>) -> BindingError {
    BindingError {
        status: StatusCode::BAD_REQUEST,
        rsc: rsc::BAD_REQUEST,
        message: message.into(),
    }
}

/// Reads the oneM2M request in `method`, `uri` and `headers`.
pub fn parse(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<BindingRequest, BindingError> {
    let originator = header_text(headers, X_M2M_ORIGIN)?
        .filter(|origin| !origin.is_empty())
        .ok_or_else(|| bad("X-M2M-Origin is required"))?;
    if header_text(headers, X_M2M_RI)?.is_none_or(|ri| ri.is_empty()) {
        return Err(bad("X-M2M-RI is required"));
    }
    let target = decode_target(uri.path())?;
    let query = parse_query(uri.query().unwrap_or(""));
    let resource_type = match header_text(headers, CONTENT_TYPE.as_str())? {
        Some(content_type) => content_type_ty(&content_type)?,
        None => None,
    };
    let discovery = query
        .iter()
        .any(|(name, value)| name == "fu" && value == "1");
    let operation = match *method {
        Method::GET if discovery => Operation::Discovery,
        Method::GET => Operation::Retrieve,
        Method::POST if resource_type.is_some() => Operation::Create,
        Method::POST => Operation::Notify,
        Method::PUT => Operation::Update,
        Method::DELETE => Operation::Delete,
        _ => {
            return Err(BindingError {
                status: StatusCode::METHOD_NOT_ALLOWED,
                rsc: rsc::OPERATION_NOT_ALLOWED,
                message: format!(
                    "{method} is not a oneM2M operation (use POST, GET, PUT or DELETE)"
                ),
            })
        }
    };
    let credential = match header_text(headers, AUTHORIZATION.as_str())? {
        Some(value) => {
            let (scheme, rest) = value.split_once(' ').unwrap_or((value.as_str(), ""));
            Some(Credential {
                scheme: scheme.to_ascii_lowercase(),
                value: rest.trim().to_string(),
            })
        }
        None => None,
    };
    let attributes = query
        .into_iter()
        .take(MAX_ATTRIBUTES)
        .map(|(name, mut value)| {
            truncate(&mut value, MAX_ATTRIBUTE_BYTES);
            (name, value)
        })
        .collect();
    Ok(BindingRequest {
        originator,
        operation,
        target,
        resource_type,
        credential,
        attributes,
    })
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

/// `ty=N` from a oneM2M content type such as `application/json;ty=4`.
fn content_type_ty(content_type: &str) -> Result<Option<u32>, BindingError> {
    for parameter in content_type.split(';').skip(1) {
        if let Some((name, value)) = parameter.split_once('=') {
            if name.trim().eq_ignore_ascii_case("ty") {
                return value.trim().parse().map(Some).map_err(|_| {
                    bad(format!(
                        "ty={} in Content-Type is not a resource type number",
                        value.trim()
                    ))
                });
            }
        }
    }
    Ok(None)
}

/// The percent-decoded target path, refused when decoding could change which resource
/// (and so which application and policy) it names.
pub fn decode_target(path: &str) -> Result<String, BindingError> {
    let decoded = percent_decode(path, false)
        .ok_or_else(|| bad("the path is not valid percent-encoded UTF-8"))?;
    if path.to_ascii_lowercase().contains("%2f") || decoded.chars().any(char::is_control) {
        return Err(bad("the path holds an encoded '/' or a control character"));
    }
    // TS-0009: `/~/` (SP-relative) and `/_/` (absolute) forms start with an empty-looking
    // segment on purpose; everything after must be plain segments.
    let rest = decoded
        .strip_prefix("/~/")
        .or_else(|| decoded.strip_prefix("/_/"))
        .unwrap_or_else(|| decoded.strip_prefix('/').unwrap_or(&decoded));
    if !decoded.starts_with('/')
        || rest
            .split('/')
            .any(|segment| segment.is_empty() || segment == "." || segment == "..")
    {
        return Err(bad(format!(
            "{decoded:?} is not a plain resource path (empty or dot segments)"
        )));
    }
    Ok(decoded)
}

fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .filter_map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            Some((percent_decode(name, true)?, percent_decode(value, true)?))
        })
        .collect()
}

fn percent_decode(text: &str, plus_is_space: bool) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'%' => {
                let hex = text.get(index + 1..index + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                index += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                index += 1;
            }
            byte => {
                out.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn truncate(text: &mut String, max: usize) {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
}

/// An answer made by the gateway: `X-M2M-RSC`, the echoed headers and `{"m2m:dbg": ...}`.
pub fn error_response(status: StatusCode, rsc: u32, dbg: &str, echo: &Echo) -> Response {
    let body = serde_json::json!({ "m2m:dbg": dbg }).to_string();
    let mut response = hyper::Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
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
        parse(&method, &uri.parse().unwrap(), &map)
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
        assert_eq!(
            decode_target("/cse-in/%6cights/lamp").unwrap(),
            "/cse-in/lights/lamp"
        );
        assert!(decode_target("/cse-in/lights/../meters").is_err());
        assert!(decode_target("/cse-in/lights/%2e%2e/meters").is_err());
        assert!(decode_target("/cse-in/lights%2Fx").is_err());
        assert!(decode_target("/cse-in//lights").is_err());
        assert!(decode_target("/~/mn-cse/cse-in/lights").is_ok());
        assert!(decode_target("/cse-in/%ff").is_err());
    }
}
