//! The canonical byte encoding that signatures cover.
//!
//! Why not JSON: two JSON texts can mean the same value (key order, spacing, escapes), so a
//! signature over JSON needs a canonicalisation that every verifier must reproduce exactly.
//! Instead each signed value is encoded as a sequence of fields, each one either
//! - a byte string: its length as a 4-byte big-endian integer, then the bytes, or
//! - an integer: 8 bytes big-endian,
//! - a list: its item count as a 4-byte big-endian integer, then each item as a byte string,
//!
//! in a fixed order, starting with a domain tag (itself a byte string such as
//! `palisade-manifest-v1`). Lengths make the encoding unambiguous: no two different values
//! encode to the same bytes, and the domain tag keeps a signature made for one kind of
//! statement from verifying as another (e.g. a manifest signature as a delegation).

/// Builds one canonical encoding.
pub(crate) struct Canon(Vec<u8>);

impl Canon {
    /// Starts an encoding with its domain-separation tag.
    pub(crate) fn new(domain: &str) -> Canon {
        let mut c = Canon(Vec::with_capacity(256));
        c.bytes(domain.as_bytes());
        c
    }

    /// Appends a length-prefixed byte string.
    pub(crate) fn bytes(&mut self, b: &[u8]) -> &mut Canon {
        let len = u32::try_from(b.len()).expect("canonical fields are far below 4 GiB");
        self.0.extend_from_slice(&len.to_be_bytes());
        self.0.extend_from_slice(b);
        self
    }

    /// Appends a UTF-8 string as a length-prefixed byte string.
    pub(crate) fn str(&mut self, s: &str) -> &mut Canon {
        self.bytes(s.as_bytes())
    }

    /// Appends a fixed-width integer.
    pub(crate) fn u64(&mut self, v: u64) -> &mut Canon {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// Appends a counted list of strings.
    pub(crate) fn list<'a>(&mut self, items: impl ExactSizeIterator<Item = &'a str>) -> &mut Canon {
        let n = u32::try_from(items.len()).expect("canonical lists are short");
        self.0.extend_from_slice(&n.to_be_bytes());
        for item in items {
            self.str(item);
        }
        self
    }

    /// The encoded bytes.
    pub(crate) fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::Canon;

    #[test]
    fn moving_bytes_between_fields_changes_the_encoding() {
        let a = Canon::new("d").str("ab").str("c").finish();
        let b = Canon::new("d").str("a").str("bc").finish();
        assert_ne!(a, b);
        let c = Canon::new("d").list(["a", "b"].into_iter()).finish();
        let d = Canon::new("d").list(["ab"].into_iter()).finish();
        assert_ne!(c, d);
    }

    #[test]
    fn the_domain_tag_separates_encodings() {
        assert_ne!(
            Canon::new("x-v1").u64(1).finish(),
            Canon::new("y-v1").u64(1).finish()
        );
    }
}
