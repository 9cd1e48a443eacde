//! The strict, bounded, borrowing reader.

use super::CodecError;
use minicbor::Decoder;

const UINT: u8 = 0;
const NINT: u8 = 1;
const BYTES: u8 = 2;
const TEXT: u8 = 3;
const ARRAY: u8 = 4;
const MAP: u8 = 5;
const TAG: u8 = 6;
const NULL: u8 = 0xf6;

/// An item's header: major type and argument (value, length or count).
struct Head {
    major: u8,
    arg: u64,
    /// Bytes of the header itself.
    len: usize,
}

/// Where the order of a map's keys (or a set's members) is checked: each must encode
/// strictly above the one before, so neither duplicates nor another order pass.
pub struct KeyOrder<'a> {
    field: &'static str,
    last: Option<&'a [u8]>,
}

impl<'a> KeyOrder<'a> {
    /// A fresh check for the map or set `field`.
    pub fn new(field: &'static str) -> Self {
        KeyOrder { field, last: None }
    }
}

/// Reads CBOR items from a borrowed input, never past its end, accepting only the
/// deterministic encoding of the item the caller expects.
pub struct Reader<'a> {
    d: Decoder<'a>,
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader {
            d: Decoder::new(buf),
            buf,
        }
    }

    /// The offset of the next item.
    pub fn position(&self) -> usize {
        self.d.position()
    }

    /// Bytes left after the current position.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.d.position()
    }

    /// The whole input.
    pub fn input(&self) -> &'a [u8] {
        self.buf
    }

    /// Reads the next item's header without moving, refusing the forms deterministic CBOR
    /// excludes: an argument in a longer form than needed, an indefinite length, and the
    /// reserved headers.
    fn head(&self, field: &'static str) -> Result<Head, CodecError> {
        let rest = &self.buf[self.d.position()..];
        let &first = rest.first().ok_or(CodecError::Truncated { field })?;
        let (major, info) = (first >> 5, first & 0x1f);
        let (arg, len) = match info {
            0..=23 => (u64::from(info), 1),
            24..=27 => {
                let n = 1usize << (info - 24);
                let b = rest.get(1..1 + n).ok_or(CodecError::Truncated { field })?;
                let arg = b.iter().fold(0u64, |a, &x| (a << 8) | u64::from(x));
                // The smallest argument each longer form is for (major type 7 holds floats
                // and simple values, which this codec never accepts anyway).
                let least = [24u64, 1 << 8, 1 << 16, 1 << 32][n.trailing_zeros() as usize];
                if major != 7 && arg < least {
                    return Err(CodecError::NotCanonical {
                        field,
                        reason: "an integer or length in a longer form than needed",
                    });
                }
                (arg, 1 + n)
            }
            31 if (BYTES..=MAP).contains(&major) => {
                return Err(CodecError::NotCanonical {
                    field,
                    reason: "an indefinite length",
                })
            }
            _ => {
                return Err(CodecError::Unexpected {
                    field,
                    expected: "a well-formed CBOR item",
                })
            }
        };
        Ok(Head { major, arg, len })
    }

    /// The next header, which must be of major type `major`.
    fn expect(
        &self,
        field: &'static str,
        major: u8,
        expected: &'static str,
    ) -> Result<Head, CodecError> {
        let h = self.head(field)?;
        if h.major != major {
            return Err(CodecError::Unexpected { field, expected });
        }
        Ok(h)
    }

    /// Maps an error of the underlying decoder (after the header was checked, only the end
    /// of input or bad UTF-8 remain).
    fn cbor(
        field: &'static str,
        expected: &'static str,
    ) -> impl Fn(minicbor::decode::Error) -> CodecError {
        move |e| {
            if e.is_end_of_input() {
                CodecError::Truncated { field }
            } else {
                CodecError::Unexpected { field, expected }
            }
        }
    }

    /// An unsigned integer up to `max`.
    fn uint(&mut self, field: &'static str, max: u64) -> Result<u64, CodecError> {
        let h = self.expect(field, UINT, "an unsigned integer")?;
        if h.arg > max {
            return Err(CodecError::OutOfRange { field });
        }
        self.d
            .u64()
            .map_err(Self::cbor(field, "an unsigned integer"))
    }

    /// An unsigned integer that fits a `u8`.
    pub fn u8(&mut self, field: &'static str) -> Result<u8, CodecError> {
        Ok(self.uint(field, u8::MAX.into())? as u8)
    }
    /// An unsigned integer that fits a `u32`.
    pub fn u32(&mut self, field: &'static str) -> Result<u32, CodecError> {
        Ok(self.uint(field, u32::MAX.into())? as u32)
    }
    /// An unsigned integer.
    pub fn u64(&mut self, field: &'static str) -> Result<u64, CodecError> {
        self.uint(field, u64::MAX)
    }
    /// A signed integer that fits an `i32`.
    pub fn i32(&mut self, field: &'static str) -> Result<i32, CodecError> {
        let h = self.head(field)?;
        // Major type 1 carries -1 - arg, so both take arguments up to i32::MAX.
        if h.major != UINT && h.major != NINT {
            return Err(CodecError::Unexpected {
                field,
                expected: "an integer",
            });
        }
        if h.arg > i32::MAX as u64 {
            return Err(CodecError::OutOfRange { field });
        }
        self.d.i32().map_err(Self::cbor(field, "an integer"))
    }

    /// The length of the next string of major type `major`, checked against `max` and the
    /// bytes left.
    fn string(
        &self,
        field: &'static str,
        major: u8,
        max: usize,
        expected: &'static str,
    ) -> Result<(), CodecError> {
        let h = self.expect(field, major, expected)?;
        let len = usize::try_from(h.arg).unwrap_or(usize::MAX);
        if len > max {
            return Err(CodecError::FieldTooLong { field, len, max });
        }
        if len > self.remaining() - h.len {
            return Err(CodecError::Truncated { field });
        }
        Ok(())
    }

    /// A byte string of at most `max` bytes, borrowed from the input.
    pub fn bytes(&mut self, field: &'static str, max: usize) -> Result<&'a [u8], CodecError> {
        self.string(field, BYTES, max, "a byte string")?;
        self.d.bytes().map_err(Self::cbor(field, "a byte string"))
    }

    /// A byte string of exactly `N` bytes (a key, nonce, digest, signature).
    pub fn arr<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], CodecError> {
        let b = self.bytes(field, N)?;
        b.try_into().map_err(|_| CodecError::Unexpected {
            field,
            expected: "a byte string of its fixed size",
        })
    }

    /// A UTF-8 text string of at most `max` bytes, borrowed from the input.
    pub fn str(&mut self, field: &'static str, max: usize) -> Result<&'a str, CodecError> {
        self.string(field, TEXT, max, "a text string")?;
        self.d.str().map_err(Self::cbor(field, "UTF-8 text"))
    }

    /// A text string (at most `max` bytes) that is the next key of a map or member of a set,
    /// encoded strictly above the previous one `order` saw.
    pub fn ordered_str(
        &mut self,
        order: &mut KeyOrder<'a>,
        max: usize,
    ) -> Result<&'a str, CodecError> {
        let start = self.position();
        let s = self.str(order.field, max)?;
        let encoded = &self.buf[start..self.position()];
        if order.last.is_some_and(|last| encoded <= last) {
            return Err(CodecError::NotCanonical {
                field: order.field,
                reason: "keys or members duplicated or out of order",
            });
        }
        order.last = Some(encoded);
        Ok(s)
    }

    /// A count announced by an array or map header, capped by `max` and by what the
    /// remaining bytes could hold at `min_entry` bytes per entry.
    fn count(
        &mut self,
        field: &'static str,
        major: u8,
        max: usize,
        min_entry: usize,
    ) -> Result<usize, CodecError> {
        let expected = if major == MAP { "a map" } else { "an array" };
        let h = self.expect(field, major, expected)?;
        let n = usize::try_from(h.arg).unwrap_or(usize::MAX);
        if n > max {
            return Err(CodecError::TooMany {
                field,
                count: n,
                max,
            });
        }
        if n > (self.remaining() - h.len) / min_entry.max(1) {
            return Err(CodecError::Truncated { field });
        }
        self.d.set_position(self.d.position() + h.len);
        Ok(n)
    }

    /// An array's count (at most `max`; each entry takes at least `min_entry` bytes), so the
    /// caller may allocate `count` entries safely.
    pub fn array(
        &mut self,
        field: &'static str,
        max: usize,
        min_entry: usize,
    ) -> Result<usize, CodecError> {
        self.count(field, ARRAY, max, min_entry)
    }

    /// A map's count of entries (at most `max`; each key and value together take at least
    /// `min_entry` bytes). Read the keys with [`Reader::ordered_str`].
    pub fn map(
        &mut self,
        field: &'static str,
        max: usize,
        min_entry: usize,
    ) -> Result<usize, CodecError> {
        self.count(field, MAP, max, min_entry)
    }

    /// An array of exactly `n` items (a fixed layout).
    pub fn tuple(&mut self, field: &'static str, n: u64) -> Result<(), CodecError> {
        let h = self.expect(field, ARRAY, "an array")?;
        if h.arg != n {
            return Err(CodecError::WrongCount {
                field,
                expected: n,
                got: h.arg,
            });
        }
        self.d.set_position(self.d.position() + h.len);
        Ok(())
    }

    /// Whether the next item is `null` (an absent optional value).
    pub fn is_null(&self) -> bool {
        self.buf.get(self.position()) == Some(&NULL)
    }

    /// `null`.
    pub fn null(&mut self, field: &'static str) -> Result<(), CodecError> {
        if !self.is_null() {
            return Err(CodecError::Unexpected {
                field,
                expected: "null",
            });
        }
        self.d.set_position(self.d.position() + 1);
        Ok(())
    }

    /// Whether the next item is a tag (its header is checked when it is read).
    pub fn is_tag(&self) -> bool {
        self.buf.get(self.position()).is_some_and(|b| b >> 5 == TAG)
    }

    /// A tag's number (the tagged item follows).
    pub fn tag(&mut self, field: &'static str) -> Result<u64, CodecError> {
        let h = self.expect(field, TAG, "a tag")?;
        self.d.set_position(self.d.position() + h.len);
        Ok(h.arg)
    }

    /// Fails if bytes remain.
    pub fn end(&self) -> Result<(), CodecError> {
        match self.remaining() {
            0 => Ok(()),
            count => Err(CodecError::TrailingBytes { count }),
        }
    }
}
