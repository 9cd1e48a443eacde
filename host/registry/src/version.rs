//! Module versions: semantic versions (semver 2.0.0), compared by semver precedence.
//!
//! Versions only go up (the registry refuses an activation that is not greater than the active
//! version unless an operator forces a rollback), so comparing them must be exact: `1.10.0` is
//! greater than `1.9.0`, and `1.0.0-rc.1` is less than `1.0.0`. Only the canonical spelling is
//! accepted (no leading zeros, no `v` prefix), so two different strings are two different
//! versions. Build metadata (`+...`) is refused: semver ignores it when comparing, so two
//! different modules could otherwise claim the same version.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A semantic version `MAJOR.MINOR.PATCH[-PRERELEASE]`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Version {
    major: u64,
    minor: u64,
    patch: u64,
    pre: Vec<PreId>,
    text: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum PreId {
    Numeric(u64),
    Alpha(String),
}

/// A version string that is not a canonical semantic version.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a semantic version (MAJOR.MINOR.PATCH[-PRERELEASE]): {reason}")]
pub struct VersionError {
    /// The refused text.
    pub text: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl Version {
    /// The major, minor and patch numbers.
    pub fn triple(&self) -> (u64, u64, u64) {
        (self.major, self.minor, self.patch)
    }

    /// The version as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

fn numeric(s: &str) -> Option<u64> {
    let canonical =
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    canonical.then(|| s.parse().ok()).flatten()
}

impl FromStr for Version {
    type Err = VersionError;

    fn from_str(text: &str) -> Result<Version, VersionError> {
        let err = |reason| VersionError {
            text: text.to_owned(),
            reason,
        };
        if text.len() > 64 {
            return Err(err("longer than 64 characters"));
        }
        if text.contains('+') {
            return Err(err(
                "build metadata (+...) is not accepted, it does not order versions",
            ));
        }
        let (core, pre) = match text.split_once('-') {
            Some((core, pre)) => (core, Some(pre)),
            None => (text, None),
        };
        let nums: Vec<&str> = core.split('.').collect();
        let [major, minor, patch] = nums[..] else {
            return Err(err("it needs exactly three numbers separated by dots"));
        };
        let num = |s| numeric(s).ok_or_else(|| err("numbers are decimal without leading zeros"));
        let (major, minor, patch) = (num(major)?, num(minor)?, num(patch)?);
        let mut ids = Vec::new();
        if let Some(pre) = pre {
            for id in pre.split('.') {
                if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                    return Err(err("pre-release identifiers are non-empty [0-9A-Za-z-]"));
                }
                if id.bytes().all(|b| b.is_ascii_digit()) {
                    let n = numeric(id).ok_or_else(|| {
                        err("numeric pre-release identifiers have no leading zeros")
                    })?;
                    ids.push(PreId::Numeric(n));
                } else {
                    ids.push(PreId::Alpha(id.to_owned()));
                }
            }
        }
        Ok(Version {
            major,
            minor,
            patch,
            pre: ids,
            text: text.to_owned(),
        })
    }
}

impl Ord for Version {
    /// Semver precedence: numbers first; a pre-release is lower than its release; pre-release
    /// identifiers compare numerically when numeric, lexically otherwise, numeric below
    /// alphanumeric, and a shorter list is lower when all its identifiers are equal.
    fn cmp(&self, other: &Version) -> Ordering {
        self.triple().cmp(&other.triple()).then_with(|| {
            match (self.pre.is_empty(), other.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => {
                    for (a, b) in self.pre.iter().zip(&other.pre) {
                        let ord = match (a, b) {
                            (PreId::Numeric(a), PreId::Numeric(b)) => a.cmp(b),
                            (PreId::Numeric(_), PreId::Alpha(_)) => Ordering::Less,
                            (PreId::Alpha(_), PreId::Numeric(_)) => Ordering::Greater,
                            (PreId::Alpha(a), PreId::Alpha(b)) => a.as_bytes().cmp(b.as_bytes()),
                        };
                        if ord != Ordering::Equal {
                            return ord;
                        }
                    }
                    self.pre.len().cmp(&other.pre.len())
                }
            }
        })
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Version) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Version({})", self.text)
    }
}

impl Serialize for Version {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::Version;

    fn v(s: &str) -> Version {
        s.parse().unwrap()
    }

    #[test]
    fn semver_precedence() {
        let ordered = [
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "1.2.0",
            "1.9.0",
            "1.10.0",
            "2.0.0",
        ];
        for pair in ordered.windows(2) {
            assert!(v(pair[0]) < v(pair[1]), "{} < {}", pair[0], pair[1]);
        }
    }

    #[test]
    fn only_canonical_versions() {
        for bad in [
            "",
            "1",
            "1.2",
            "1.2.3.4",
            "01.2.3",
            "1.2.3-",
            "1.2.3-01",
            "v1.2.3",
            "1.2.3+build",
            "1.2.3-a..b",
            "1.2.x",
            " 1.2.3",
        ] {
            assert!(bad.parse::<Version>().is_err(), "{bad:?}");
        }
    }
}
