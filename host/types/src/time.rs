//! The one clock and the one way to read and write times and durations.
//!
//! Delegations, provisioning bundles and group messages carry times as whole seconds since the
//! Unix epoch (UTC) so that their signed encodings have one form; people read and write them as
//! `2026-01-31T12:00:00Z` or `2026-01-31`, and durations as `90s`, `12h`, `365d` or `2w`. The
//! calendar arithmetic is jiff's, not ours.

use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use jiff::{Span, SpanRelativeTo, Timestamp};
use std::time::{SystemTime, UNIX_EPOCH};

/// The current wall-clock time in seconds since the Unix epoch; `0` if the system clock is set
/// before 1970 (every validity check then fails closed: nothing is valid "before" its
/// `not_before`).
///
/// Code that needs a different time in tests takes the time as a parameter (e.g. `verify_at`)
/// rather than reading a second clock.
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The current wall-clock time in milliseconds since the Unix epoch (audit records); `0` before
/// 1970, like [`now_unix`].
pub fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A time or duration that could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    /// Not a timestamp in one of the accepted forms.
    #[error(
        "{0:?} is not a time: use seconds since the Unix epoch, YYYY-MM-DD or \
         YYYY-MM-DDTHH:MM:SSZ (UTC)"
    )]
    BadTimestamp(String),
    /// Not a duration in one of the accepted forms.
    #[error(
        "{0:?} is not a duration: use whole seconds (3600) or whole numbers with the units \
         w, d, h, m, s (e.g. 90s, 12h, 365d, 2w, 1d12h)"
    )]
    BadDuration(String),
    /// Not a date of the proleptic Gregorian calendar between the years 1970 and 9999.
    #[error("{year:04}-{month:02}-{day:02} is not a date between 1970 and 9999")]
    BadDate {
        /// The year given.
        year: i64,
        /// The month given.
        month: u32,
        /// The day given.
        day: u32,
    },
}

/// Formats seconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ`.
///
/// Times beyond the year 9999 (a signed delegation may carry any `u64`) are shown as
/// `@<seconds>` rather than as an invented date.
pub fn format_rfc3339(secs: u64) -> String {
    match i64::try_from(secs)
        .ok()
        .and_then(|s| Timestamp::from_second(s).ok())
    {
        Some(t) => t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        None => format!("@{secs}"),
    }
}

/// Reads a timestamp: decimal seconds since the epoch, `YYYY-MM-DD` (midnight UTC) or
/// `YYYY-MM-DDTHH:MM:SSZ`. Only these exact shapes: no offsets other than `Z`, no fractions.
pub fn parse_timestamp(text: &str) -> Result<u64, TimeError> {
    let bad = || TimeError::BadTimestamp(text.to_owned());
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().map_err(|_| bad());
    }
    let (date, clock) = match text.split_once('T') {
        Some((date, rest)) => (date, Some(rest.strip_suffix('Z').ok_or_else(bad)?)),
        None => (text, None),
    };
    let num = |s: &str, len: usize| -> Result<u32, TimeError> {
        if s.len() == len && s.bytes().all(|b| b.is_ascii_digit()) {
            s.parse().map_err(|_| bad())
        } else {
            Err(bad())
        }
    };
    let mut parts = date.split('-');
    let (y, m, d) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(y), Some(m), Some(d), None) => (num(y, 4)?, num(m, 2)?, num(d, 2)?),
        _ => return Err(bad()),
    };
    let days = days_since_epoch(i64::from(y), m, d).map_err(|_| bad())?;
    let mut secs = days * 86_400;
    if let Some(clock) = clock {
        let mut parts = clock.split(':');
        let (h, mi, s) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(h), Some(mi), Some(s), None) => (num(h, 2)?, num(mi, 2)?, num(s, 2)?),
            _ => return Err(bad()),
        };
        if h > 23 || mi > 59 || s > 59 {
            return Err(bad());
        }
        secs += i64::from(h * 3600 + mi * 60 + s);
    }
    u64::try_from(secs).map_err(|_| bad())
}

/// Seconds since the epoch of midnight UTC on a proleptic Gregorian date; the date must exist
/// and lie between 1970-01-01 and 9999-12-31.
pub fn unix_from_civil(year: i64, month: u32, day: u32) -> Result<i64, TimeError> {
    Ok(days_since_epoch(year, month, day)? * 86_400)
}

fn days_since_epoch(year: i64, month: u32, day: u32) -> Result<i64, TimeError> {
    let bad = || TimeError::BadDate { year, month, day };
    if year < 1970 {
        return Err(bad());
    }
    let date = Date::new(
        i16::try_from(year).map_err(|_| bad())?,
        i8::try_from(month).map_err(|_| bad())?,
        i8::try_from(day).map_err(|_| bad())?,
    )
    .map_err(|_| bad())?;
    let midnight = TimeZone::UTC
        .to_timestamp(date.to_datetime(Time::midnight()))
        .map_err(|_| bad())?;
    Ok(midnight.as_second().div_euclid(86_400))
}

/// Reads a positive duration into whole seconds; the one grammar of every `--valid-for`.
///
/// Accepted: whole seconds (`3600`), or jiff's friendly format with whole numbers and the units
/// `w`, `d`, `h`, `m`, `s` (long names such as `2 weeks` too), combined as in `1d12h`; also
/// ISO 8601 (`P2W`, `PT90M`). A day is 24 hours and a week 7 days. Refused: zero, negative
/// durations, fractions (`1.5h`), and months or years (`1y`), whose length depends on the date.
pub fn parse_duration(text: &str) -> Result<u64, TimeError> {
    let bad = || TimeError::BadDuration(text.to_owned());
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().ok().filter(|&s| s > 0).ok_or_else(bad);
    }
    // jiff would read `1.5h` as 90 minutes; a validity written with a fraction is more likely a
    // typo than a wish, and the old grammars refused it.
    if text.contains(['.', ',']) {
        return Err(bad());
    }
    let span: Span = text.parse().map_err(|_| bad())?;
    if span.is_negative() || span.get_years() != 0 || span.get_months() != 0 {
        return Err(bad());
    }
    let duration = span
        .to_duration(SpanRelativeTo::days_are_24_hours())
        .map_err(|_| bad())?;
    if duration.subsec_nanos() != 0 {
        return Err(bad());
    }
    u64::try_from(duration.as_secs())
        .ok()
        .filter(|&s| s > 0)
        .ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip() {
        for secs in [0, 951_782_400, 1_767_225_599, 4_102_444_800] {
            assert_eq!(parse_timestamp(&format_rfc3339(secs)), Ok(secs));
        }
        assert_eq!(parse_timestamp("2000-02-29"), Ok(951_782_400));
        assert_eq!(parse_timestamp("1700000000"), Ok(1_700_000_000));
        assert_eq!(format_rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_rfc3339(u64::MAX), format!("@{}", u64::MAX));
        for bad in [
            "",
            "2001-02-29",
            "1969-12-31",
            "2026-1-01",
            "2026-13-01",
            "2026-01-01T25:00:00Z",
            "2026-01-01T00:00:00",
            "2026-01-01T00:00:00+01:00",
            "2026-01-01T00:00:00.5Z",
            "99999999999999999999999",
        ] {
            assert!(parse_timestamp(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn civil_dates() {
        assert_eq!(unix_from_civil(1970, 1, 1), Ok(0));
        assert_eq!(unix_from_civil(2000, 2, 29), Ok(951_782_400));
        assert_eq!(unix_from_civil(2100, 3, 1), Ok(4_107_542_400));
        assert!(unix_from_civil(2100, 2, 29).is_err());
        assert!(unix_from_civil(1969, 12, 31).is_err());
        assert!(unix_from_civil(10_000, 1, 1).is_err());
    }

    /// Both `--valid-for` flags (`palisade trust delegate`, `palisade provision create`) read
    /// this grammar; before, `2w` worked for one and failed for the other.
    #[test]
    fn durations() {
        for (text, secs) in [
            ("3600", 3600),
            ("90s", 90),
            ("30m", 1800),
            ("12h", 43_200),
            ("1d", 86_400),
            ("365d", 365 * 86_400),
            ("2w", 14 * 86_400),
            ("1d12h", 129_600),
            ("2 weeks", 14 * 86_400),
            ("P2W", 14 * 86_400),
        ] {
            assert_eq!(parse_duration(text), Ok(secs), "{text}");
        }
        for bad in [
            "",
            "d",
            "0",
            "0d",
            "1y",
            "1mo",
            "-1d",
            "1d ago",
            "1.5h",
            "1,5h",
            "1x",
            "18446744073709551616",
            "99999999999w",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
