//! The one error of the codec: what was wrong, and in which field.

/// Why input could not be read. Every variant names the field being read (the caller's
/// name for it), so a refusal says where the input went wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The input ended inside a field, or a list announces more entries than the remaining
    /// bytes could hold.
    #[error("input truncated in field {field}")]
    Truncated {
        /// The field being read.
        field: &'static str,
    },
    /// A byte or text string is longer than the field's cap.
    #[error("field {field} is {len} bytes, the limit is {max}")]
    FieldTooLong {
        /// The field.
        field: &'static str,
        /// Its announced length.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// A list or map announces more entries than its cap.
    #[error("list {field} announces {count} entries, the limit is {max}")]
    TooMany {
        /// The list or map.
        field: &'static str,
        /// The announced count.
        count: usize,
        /// The cap.
        max: usize,
    },
    /// The item found is not the kind the format puts there (or is a text string that is not
    /// UTF-8, or a reserved header).
    #[error("field {field} is not {expected}")]
    Unexpected {
        /// The field.
        field: &'static str,
        /// What the format puts there.
        expected: &'static str,
    },
    /// An array has another number of items than the format's fixed layout.
    #[error("field {field} has {got} items, the format has {expected}")]
    WrongCount {
        /// The field.
        field: &'static str,
        /// The layout's count.
        expected: u64,
        /// The count found.
        got: u64,
    },
    /// An integer does not fit the field's range.
    #[error("field {field} is out of range")]
    OutOfRange {
        /// The field.
        field: &'static str,
    },
    /// The item is well formed but not in its one deterministic encoding.
    #[error("field {field} is not in deterministic CBOR: {reason}")]
    NotCanonical {
        /// The field.
        field: &'static str,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// Bytes remain after the last item.
    #[error("{count} trailing bytes after the last item")]
    TrailingBytes {
        /// How many.
        count: usize,
    },
}
