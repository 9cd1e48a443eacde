//! Times in the trust chain: whole seconds since the Unix epoch (UTC), shown as RFC 3339.
//!
//! Delegations carry `not_before` and `not_after` as integers so that their signed encoding has
//! one form; people read and write them as `2026-01-31T12:00:00Z` or `2026-01-31`.

use std::time::{SystemTime, UNIX_EPOCH};

/// The current time in seconds since the Unix epoch.
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A time or duration that could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TimeError {
    /// Not a timestamp in one of the accepted forms.
    #[error(
        "{0:?} is not a time: use seconds since the Unix epoch, YYYY-MM-DD or \
         YYYY-MM-DDTHH:MM:SSZ (UTC)"
    )]
    BadTimestamp(String),
    /// Not a duration in one of the accepted forms.
    #[error("{0:?} is not a duration: use a whole number followed by s, m, h or d (e.g. 365d)")]
    BadDuration(String),
}

/// Formats seconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn format_rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Reads a timestamp: decimal seconds since the epoch, `YYYY-MM-DD` (midnight UTC) or
/// `YYYY-MM-DDTHH:MM:SSZ`.
pub fn parse_timestamp(text: &str) -> Result<u64, TimeError> {
    let bad = || TimeError::BadTimestamp(text.to_owned());
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().map_err(|_| bad());
    }
    let (date, clock) = match text.split_once('T') {
        Some((date, rest)) => (date, Some(rest.strip_suffix('Z').ok_or_else(bad)?)),
        None => (text, None),
    };
    let num = |s: &str, len: usize| -> Result<u64, TimeError> {
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
    if y < 1970 || !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) {
        return Err(bad());
    }
    let mut secs = days_from_civil(y as i64, m as u32, d as u32) as u64 * 86_400;
    if let Some(clock) = clock {
        let mut parts = clock.split(':');
        let (h, mi, s) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(h), Some(mi), Some(s), None) => (num(h, 2)?, num(mi, 2)?, num(s, 2)?),
            _ => return Err(bad()),
        };
        if h > 23 || mi > 59 || s > 59 {
            return Err(bad());
        }
        secs += h * 3600 + mi * 60 + s;
    }
    Ok(secs)
}

/// Reads a duration such as `90s`, `30m`, `12h` or `365d` into seconds.
pub fn parse_duration(text: &str) -> Result<u64, TimeError> {
    let bad = || TimeError::BadDuration(text.to_owned());
    let split = text.len().checked_sub(1).ok_or_else(bad)?;
    let (digits, unit) = text.split_at(split);
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: u64 = digits.parse().map_err(|_| bad())?;
    n.checked_mul(scale).filter(|&s| s > 0).ok_or_else(bad)
}

fn days_in_month(y: u64, m: u64) -> u64 {
    match m {
        2 if (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
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
        for bad in [
            "",
            "2001-02-29",
            "2026-1-01",
            "2026-01-01T25:00:00Z",
            "2026-01-01T00:00:00",
        ] {
            assert!(parse_timestamp(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("365d"), Ok(365 * 86_400));
        assert_eq!(parse_duration("90s"), Ok(90));
        for bad in ["", "d", "0d", "1y", "-1d", "1.5h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
