//! How an error is shown to a person: the one rule for every Palisade error (issue #14.2).
//!
//! An error's `Display` says what failed; its cause is reached through
//! [`std::error::Error::source`], never also printed in the message (the rustls and wasmtime
//! convention), so that a report that walks the chain (anyhow's `{:#}` at the CLI edge, the
//! gateway's JSON error body, a log line) names each cause exactly once. [`Chain`] is that walk
//! for the places that print an error without anyhow.

use std::error::Error;
use std::fmt;

/// Displays an error and each of its sources, `: `-separated, e.g.
/// `cannot read config.toml: No such file or directory (os error 2)`.
///
/// ```
/// let error = std::io::Error::new(std::io::ErrorKind::Other, "disk on fire");
/// assert_eq!(palisade_types::Chain(&error).to_string(), "disk on fire");
/// ```
#[derive(Clone, Copy)]
pub struct Chain<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut next = self.0.source();
        while let Some(cause) = next {
            write!(f, ": {cause}")?;
            next = cause.source();
        }
        Ok(())
    }
}

impl fmt::Debug for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::Chain;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot open the store")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn each_cause_is_named_once_in_order() {
        let error = Outer(std::io::Error::other("permission denied"));
        assert_eq!(error.to_string(), "cannot open the store");
        assert_eq!(
            Chain(&error).to_string(),
            "cannot open the store: permission denied"
        );
    }
}
