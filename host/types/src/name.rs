//! The one rule for application and plugin names.

/// The longest name, in bytes (names are ASCII).
pub const MAX_NAME_LEN: usize = 64;

/// A name that could escape a directory or confuse a path.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "the {field} {value:?} is not allowed: names are 1 to 64 characters from A-Z a-z 0-9 . _ -, \
     start with a letter or digit, and never contain \"..\" or a path separator"
)]
pub struct NameError {
    /// Which name: `application name` or `plugin name`.
    pub field: &'static str,
    /// The refused value.
    pub value: String,
}

/// Checks an application or plugin name against `^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$` without
/// `..`.
///
/// Names end up in file names, URLs, metrics labels and audit records, so path separators and
/// `..` are refused wherever a name enters: the gateway configuration, the runtime's installer,
/// the module registry and its delegations all call this one function, so a name one of them
/// accepts is accepted by all.
pub fn validate_name(field: &'static str, value: &str) -> Result<(), NameError> {
    let bytes = value.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= MAX_NAME_LEN
        && bytes[0].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && !value.contains("..");
    if ok {
        Ok(())
    } else {
        Err(NameError {
            field,
            value: value.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let longest = "a".repeat(MAX_NAME_LEN);
        for good in ["a", "geo-privacy", "v1.2_x", "9lives", longest.as_str()] {
            assert!(validate_name("plugin name", good).is_ok(), "{good}");
        }
        let too_long = "a".repeat(MAX_NAME_LEN + 1);
        for bad in [
            "",
            ".hidden",
            "-flag",
            "_x",
            "a..b",
            "a/b",
            "a\\b",
            "é",
            "a b",
            too_long.as_str(),
        ] {
            assert!(validate_name("plugin name", bad).is_err(), "{bad}");
        }
    }
}
