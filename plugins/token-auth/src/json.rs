//! JSON parsing that refuses duplicate member names.
//!
//! RFC 7515 §4 lets a JWS parser either reject duplicate header names or keep the last one;
//! RFC 7519 says the same of claims. Two parsers that choose differently read two different
//! tokens out of one text (a parser differential: `{"tkhd":"A","tkhd":"B"}`), so this plugin
//! rejects duplicates everywhere, at every depth (SER-010: a credential must mean one thing).

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// A JSON value parsed with duplicate member names refused.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("number out of range"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom(format!(
                    "duplicate member name \"{key}\""
                )));
            }
            let Strict(v) = map.next_value()?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

/// Parse `bytes` as one JSON object with unique member names at every depth.
pub fn object(bytes: &[u8]) -> Result<Map<String, Value>, String> {
    match serde_json::from_slice::<Strict>(bytes) {
        Ok(Strict(Value::Object(map))) => Ok(map),
        Ok(_) => Err("not a JSON object".into()),
        Err(error) => Err(error.to_string()),
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
