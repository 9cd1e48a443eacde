//! Canonical JSON written straight from typed records (SER-016).
//!
//! Why: every decision is audited on the request path, and building a `serde_json::Value`
//! (a map of heap-allocated keys and strings) only to sort and print it again cost more than
//! the rest of the audit. A record instead writes its fields here in sorted key order and
//! gets the very bytes [`canonical_json`] would give for its `Value`, so entry hashes and the
//! verifier are unchanged.
//!
//! A [`CanonicalJson`] can only come out of [`canonical_json`] or out of
//! [`canonical_object`], which checks the key order as it goes: text that is not canonical
//! would hash differently from what the verifier recomputes, making a genuine log fail
//! verification (or, if not even JSON, refuse to reopen), so it must never reach the file.

use super::entry::canonical_json;
use serde::Serialize;
use serde_json::Value;
use std::fmt;

/// A payload already in canonical JSON (keys sorted by bytes, no whitespace, strings and
/// numbers as serde_json writes them), ready for [`super::AuditLog::append_canonical`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalJson(String);

impl CanonicalJson {
    /// The canonical JSON of any value.
    pub fn from_value(value: &Value) -> CanonicalJson {
        CanonicalJson(canonical_json(value))
    }

    /// The canonical JSON of `value`, written straight from its `Serialize` when that writes
    /// every object's keys in ascending byte order (as [`palisade_core`]'s decision record
    /// does), checked as it goes; through a `serde_json::Value` otherwise (same bytes,
    /// slower). Never fails: a value serde cannot write becomes `null`, as in
    /// [`CanonicalJson::from_value`].
    ///
    /// [`palisade_core`]: https://docs.rs/palisade-core
    pub fn of<T: Serialize + ?Sized>(value: &T) -> CanonicalJson {
        CanonicalJson::from_sorted(value).unwrap_or_else(|| {
            let value = serde_json::to_value(value).unwrap_or_default();
            CanonicalJson::from_value(&value)
        })
    }

    /// The JSON of `value` if it is canonical as written: `None` when an object's keys are
    /// not strictly ascending (unsorted or duplicated) or a key needed escaping or was not a
    /// string (then [`CanonicalJson::of`] takes the slow path).
    pub fn from_sorted<T: Serialize + ?Sized>(value: &T) -> Option<CanonicalJson> {
        let mut out = Vec::with_capacity(512);
        let mut checker = KeyOrder::default();
        let mut serializer = serde_json::Serializer::with_formatter(&mut out, &mut checker);
        value.serialize(&mut serializer).ok()?;
        if !checker.canonical {
            return None;
        }
        String::from_utf8(out).ok().map(CanonicalJson)
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The text, owned.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for CanonicalJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Writes one JSON object whose fields `fields` adds in ascending key order; `None` if they
/// were not ascending (a bug in the caller: the text would not be canonical). `capacity` is a
/// guess at the length, to allocate once.
pub fn canonical_object(
    capacity: usize,
    fields: impl FnOnce(&mut ObjectWriter<'_>),
) -> Option<CanonicalJson> {
    let mut out = Vec::with_capacity(capacity);
    let mut canonical = true;
    write_object(&mut out, &mut canonical, fields);
    if !canonical {
        return None;
    }
    // serde_json writes UTF-8 and everything added here is ASCII.
    String::from_utf8(out).ok().map(CanonicalJson)
}

fn write_object(
    out: &mut Vec<u8>,
    canonical: &mut bool,
    fields: impl FnOnce(&mut ObjectWriter<'_>),
) {
    out.push(b'{');
    let mut writer = ObjectWriter {
        out,
        last_key: None,
        canonical,
    };
    fields(&mut writer);
    writer.out.push(b'}');
}

/// The fields of one object being written by [`canonical_object`]. Keys must come in
/// ascending byte order, each once; an omitted optional field is simply not written (as
/// serde's `skip_serializing_if` omits it).
pub struct ObjectWriter<'a> {
    out: &'a mut Vec<u8>,
    last_key: Option<&'static str>,
    canonical: &'a mut bool,
}

impl ObjectWriter<'_> {
    fn key(&mut self, key: &'static str) {
        if let Some(last) = self.last_key {
            // `str` orders by bytes, as `canonical_json` sorts; equal keys would be a
            // duplicate that a `Value` map collapses.
            if key <= last {
                *self.canonical = false;
            }
            self.out.push(b',');
        }
        self.last_key = Some(key);
        self.json(key);
        self.out.push(b':');
    }

    /// serde_json's own writer, so strings are escaped exactly as `canonical_json` escapes
    /// them (the hash depends on every byte).
    fn json<T: Serialize + ?Sized>(&mut self, value: &T) {
        if serde_json::to_writer(&mut *self.out, value).is_err() {
            *self.canonical = false;
        }
    }

    /// A string field.
    pub fn str(&mut self, key: &'static str, value: &str) {
        self.key(key);
        self.json(value);
    }

    /// A string field, omitted when `None`.
    pub fn opt_str(&mut self, key: &'static str, value: Option<&str>) {
        if let Some(value) = value {
            self.str(key, value);
        }
    }

    /// An unsigned integer field.
    pub fn u64(&mut self, key: &'static str, value: u64) {
        self.key(key);
        self.json(&value);
    }

    /// A boolean field.
    pub fn bool(&mut self, key: &'static str, value: bool) {
        self.key(key);
        self.out
            .extend_from_slice(if value { b"true" } else { b"false" });
    }

    /// A field whose value serializes to a JSON scalar (e.g. a unit enum variant, with its
    /// serde renames). A map or sequence is refused: serde would not sort its keys.
    pub fn scalar<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) {
        self.key(key);
        let start = self.out.len();
        self.json(value);
        if matches!(self.out.get(start), Some(b'{' | b'[')) {
            *self.canonical = false;
        }
    }

    /// A nested object, written by `fields` under the same rules.
    pub fn object(&mut self, key: &'static str, fields: impl FnOnce(&mut ObjectWriter<'_>)) {
        self.key(key);
        write_object(self.out, self.canonical, fields);
    }
}

/// serde_json's compact output (the bytes [`canonical_json`] writes), checking that every
/// object's keys come in strictly ascending byte order. Keys are compared as written, so a key
/// that needs an escape or is not a string (a number, a bool) is refused rather than
/// compared wrongly.
struct KeyOrder {
    /// Per open object: whether it has a key yet, and its last key. Buffers are swapped with
    /// `key` rather than copied, so a record costs an allocation per nesting level, not per
    /// key.
    open: Vec<(bool, Vec<u8>)>,
    /// The key being written.
    key: Vec<u8>,
    in_key: bool,
    canonical: bool,
}

impl Default for KeyOrder {
    fn default() -> Self {
        KeyOrder {
            open: Vec::new(),
            key: Vec::new(),
            in_key: false,
            canonical: true,
        }
    }
}

/// Methods that write a scalar: inside a key they mean a non-string key, refused.
macro_rules! scalar_writers {
    ($($name:ident($type:ty)),* $(,)?) => {$(
        fn $name<W: ?Sized + std::io::Write>(&mut self, w: &mut W, value: $type) -> std::io::Result<()> {
            if self.in_key {
                self.canonical = false;
            }
            CompactFormatter.$name(w, value)
        }
    )*};
}

use serde_json::ser::{CharEscape, CompactFormatter, Formatter};

impl Formatter for &mut KeyOrder {
    scalar_writers!(
        write_bool(bool),
        write_i8(i8),
        write_i16(i16),
        write_i32(i32),
        write_i64(i64),
        write_i128(i128),
        write_u8(u8),
        write_u16(u16),
        write_u32(u32),
        write_u64(u64),
        write_u128(u128),
        write_f32(f32),
        write_f64(f64),
        write_number_str(&str),
        write_raw_fragment(&str),
    );

    fn write_null<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        if self.in_key {
            self.canonical = false;
        }
        CompactFormatter.write_null(w)
    }

    fn write_string_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        if self.in_key {
            self.key.extend_from_slice(fragment.as_bytes());
        }
        CompactFormatter.write_string_fragment(w, fragment)
    }

    fn write_char_escape<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        escape: CharEscape,
    ) -> std::io::Result<()> {
        if self.in_key {
            self.canonical = false;
        }
        CompactFormatter.write_char_escape(w, escape)
    }

    fn begin_object<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.open.push((false, Vec::new()));
        CompactFormatter.begin_object(w)
    }

    fn end_object<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.open.pop();
        CompactFormatter.end_object(w)
    }

    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.in_key = true;
        self.key.clear();
        CompactFormatter.begin_object_key(w, first)
    }

    fn end_object_key<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.in_key = false;
        match self.open.last_mut() {
            Some((has_key, last)) => {
                if *has_key && self.key <= *last {
                    self.canonical = false;
                }
                *has_key = true;
                std::mem::swap(last, &mut self.key);
            }
            None => self.canonical = false,
        }
        CompactFormatter.end_object_key(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_object_matches_the_value_encoding() {
        let text = "q\"b\\c\u{1}\u{1f}\u{7f}\n\t\r\u{8}\u{c}é☃\u{2028}😀/";
        let written = canonical_object(16, |o| {
            o.bool("a", true);
            o.object("b", |inner| {
                inner.opt_str("x", None);
                inner.u64("y", u64::MAX);
            });
            o.str("c", text);
            o.scalar("d", &Some(1.5));
            o.opt_str("e", Some(""));
        })
        .unwrap();
        let value = json!({"e": "", "d": 1.5, "c": text, "b": {"y": u64::MAX}, "a": true});
        assert_eq!(written, CanonicalJson::from_value(&value));
    }

    #[test]
    fn sorted_serialize_is_taken_as_written_and_anything_else_is_sorted() {
        use std::collections::BTreeMap;
        #[derive(Serialize)]
        struct Sorted<'a> {
            a: bool,
            b: BTreeMap<&'a str, u64>,
            c: &'a str,
            d: Option<f64>,
            e: Vec<BTreeMap<&'a str, i8>>,
        }
        let text = "q\"b\\c\u{1}\u{1f}\u{7f}\n\té☃\u{2028}😀/";
        let sorted = Sorted {
            a: true,
            b: BTreeMap::from([("x", 1), ("y", u64::MAX)]),
            c: text,
            d: Some(1.5),
            e: vec![BTreeMap::from([("m", -1), ("n", 2)])],
        };
        let expected = CanonicalJson::from_value(&serde_json::to_value(&sorted).unwrap());
        assert_eq!(CanonicalJson::from_sorted(&sorted), Some(expected.clone()));
        assert_eq!(CanonicalJson::of(&sorted), expected);

        #[derive(Serialize)]
        struct Unsorted {
            b: u8,
            a: u8,
        }
        assert_eq!(CanonicalJson::from_sorted(&Unsorted { b: 1, a: 2 }), None);
        assert_eq!(
            CanonicalJson::of(&Unsorted { b: 1, a: 2 }).as_str(),
            r#"{"a":2,"b":1}"#
        );
        // Sorted outside, unsorted inside.
        #[derive(Serialize)]
        struct Outer {
            a: Unsorted,
        }
        assert_eq!(
            CanonicalJson::from_sorted(&Outer {
                a: Unsorted { b: 1, a: 2 }
            }),
            None
        );
        // Keys that would be compared wrongly as written are refused, then sorted.
        let escaped = BTreeMap::from([("a\n", 1), ("a", 2)]);
        assert_eq!(CanonicalJson::from_sorted(&escaped), None);
        assert_eq!(CanonicalJson::of(&escaped).as_str(), r#"{"a":2,"a\n":1}"#);
        let numeric = BTreeMap::from([(10u8, 1), (9, 2)]);
        assert_eq!(CanonicalJson::from_sorted(&numeric), None);
        assert_eq!(CanonicalJson::of(&numeric).as_str(), r#"{"10":1,"9":2}"#);
        // A duplicate key (a Serialize impl writing one twice) is not canonical.
        struct Twice;
        impl Serialize for Twice {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeMap;
                let mut map = s.serialize_map(None)?;
                map.serialize_entry("a", &1)?;
                map.serialize_entry("a", &2)?;
                map.end()
            }
        }
        assert_eq!(CanonicalJson::from_sorted(&Twice), None);
    }

    #[test]
    fn canonical_object_refuses_what_would_not_be_canonical() {
        let unsorted = canonical_object(0, |o| {
            o.str("b", "");
            o.str("a", "");
        });
        assert_eq!(unsorted, None, "keys out of order");
        let duplicate = canonical_object(0, |o| {
            o.u64("a", 1);
            o.u64("a", 2);
        });
        assert_eq!(duplicate, None, "a duplicate key");
        let nested_unsorted = canonical_object(0, |o| {
            o.object("a", |inner| {
                inner.bool("z", true);
                inner.bool("y", false);
            })
        });
        assert_eq!(
            nested_unsorted, None,
            "keys out of order in a nested object"
        );
        let map = canonical_object(0, |o| o.scalar("a", &json!({"z": 1, "y": 2})));
        assert_eq!(map, None, "a map through scalar() would keep serde's order");
        assert_eq!(
            canonical_object(0, |_| {}).unwrap().as_str(),
            "{}",
            "an empty object"
        );
    }
}
