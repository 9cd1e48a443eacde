//! JSON parsing that refuses duplicate member names.
//!
//! With `{"pos":{"lat":48.8566},"pos":null}` a last-wins parser (serde_json's) sees no location
//! while a first-wins consumer downstream reads the precise one. The filter must inspect the
//! same document the originator will read, so a duplicate member name anywhere makes the body
//! uninspectable and it is blocked (SER-026, fail closed).

pub use palisade_sdk::json::{parse, DUPLICATE};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses_duplicates() {
        assert_eq!(
            parse(br#"[1,{"a":"b"},null]"#).unwrap(),
            serde_json::json!([1, {"a": "b"}, null])
        );
        assert!(parse(br#"{"a":{"b":1,"b":1}}"#)
            .unwrap_err()
            .starts_with(DUPLICATE));
        assert!(parse(b"{").is_err());
        assert!(parse(b"1e999").is_err());
    }
}
