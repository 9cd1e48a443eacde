//! JSON parsing that refuses duplicate member names.
//!
//! RFC 7515 §4 lets a JWS parser either reject duplicate header names or keep the last one;
//! RFC 7519 says the same of claims. Two parsers that choose differently read two different
//! tokens out of one text (a parser differential: `{"tkhd":"A","tkhd":"B"}`), so this plugin
//! rejects duplicates everywhere, at every depth (SER-010: a credential must mean one thing).

use serde_json::{Map, Value};

/// Parse `bytes` as one JSON object with unique member names at every depth.
pub fn object(bytes: &[u8]) -> Result<Map<String, Value>, String> {
    match palisade_sdk::json::parse(bytes)? {
        Value::Object(map) => Ok(map),
        _ => Err("not a JSON object".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_objects() {
        let map = object(br#"{"a":[1,-2,3.5,"x",null,true,{"b":{}}]}"#).unwrap();
        assert_eq!(
            Value::Object(map),
            serde_json::json!({"a":[1,-2,3.5,"x",null,true,{"b":{}}]})
        );
    }

    #[test]
    fn refuses_duplicates_at_any_depth() {
        assert!(object(br#"{"a":1,"a":2}"#)
            .unwrap_err()
            .contains("duplicate member name \"a\""));
        assert!(object(br#"{"x":[{"a":1,"a":1}]}"#)
            .unwrap_err()
            .contains("duplicate"));
    }

    #[test]
    fn refuses_non_objects_and_garbage() {
        assert_eq!(object(b"[1]").unwrap_err(), "not a JSON object");
        assert!(object(b"{").is_err());
        assert!(object(b"{} x").is_err());
        assert!(object(b"\xff").is_err());
    }
}
