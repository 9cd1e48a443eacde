//! `actw` time windows: the oneM2M `scheduleEntry` (TS-0001 §9.6.9, TS-0004 `m2m:scheduleEntry`)
//! used by `accessControlWindow` (TS-0003 §7.1.5), a 7-field UTC cron expression
//!
//! ```text
//! second minute hour day-of-month month day-of-week year
//! 0-59   0-59   0-23 1-31         1-12  0-6 (0 = Sunday, 7 also Sunday)  1970-2199
//! ```
//!
//! Each field is `*`, a value `a`, a range `a-b`, a step `*/n`, `a-b/n` or `a/n` (from `a` to
//! the field's maximum), or a comma list of those. Names (`MON`, `JAN`), `?`, `L`, `W` and `#`
//! are not supported and make the configuration invalid rather than being guessed at
//! (SER-008: an unreadable window is a deny). All seven fields must match — unlike classic
//! cron, day-of-month and day-of-week are AND-ed, the stricter reading.
//!
//! The plugin has no clock: the window is evaluated against the request's `request_time`
//! (seconds since the Unix epoch, UTC) and the civil date is computed here, without chrono, so
//! the component stays small. Fields are compiled into bitsets once, at configuration load.

/// One field's allowed values as a bitset over `min..=max` (at most 256 values).
#[derive(Debug, Clone, PartialEq)]
struct Field {
    any: bool,
    bits: [u64; 4],
}

impl Field {
    fn contains(&self, offset: u32) -> bool {
        self.any || (offset < 256 && self.bits[(offset / 64) as usize] & (1 << (offset % 64)) != 0)
    }

    fn set(&mut self, offset: u32) {
        self.bits[(offset / 64) as usize] |= 1 << (offset % 64);
    }
}

/// The name and bounds of each of the seven fields, in order.
const FIELDS: [(&str, u32, u32); 7] = [
    ("second", 0, 59),
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day-of-month", 1, 31),
    ("month", 1, 12),
    ("day-of-week", 0, 7),
    ("year", 1970, 2199),
];

/// A compiled `actw` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    fields: [Field; 7],
}

/// The civil UTC time of a request, computed once per request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Civil {
    pub second: u32,
    pub minute: u32,
    pub hour: u32,
    pub day: u32,
    pub month: u32,
    /// 0 = Sunday.
    pub weekday: u32,
    pub year: u32,
}

impl Civil {
    /// Break seconds since the Unix epoch (UTC) into calendar fields (proleptic Gregorian,
    /// Howard Hinnant's `civil_from_days`).
    pub fn from_unix(seconds: u64) -> Civil {
        let days = seconds / 86_400;
        let secs = (seconds % 86_400) as u32;
        let z = days + 719_468;
        let era = z / 146_097;
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + u64::from(month <= 2);
        Civil {
            second: secs % 60,
            minute: secs / 60 % 60,
            hour: secs / 3_600,
            day,
            month,
            // 1970-01-01 was a Thursday (4).
            weekday: ((days + 4) % 7) as u32,
            year: u32::try_from(year).unwrap_or(u32::MAX),
        }
    }
}

impl Window {
    /// Compile one `actw` string; the error names the field and the offending text.
    pub fn parse(text: &str) -> Result<Window, String> {
        let parts: Vec<&str> = text.split_ascii_whitespace().collect();
        if parts.len() != 7 {
            return Err(format!(
                "time window {text:?} has {} fields; expected 7: second minute hour day-of-month month day-of-week year",
                parts.len()
            ));
        }
        let mut fields: [Field; 7] = std::array::from_fn(|_| Field {
            any: false,
            bits: [0; 4],
        });
        for (index, part) in parts.iter().enumerate() {
            fields[index] = parse_field(part, FIELDS[index]).map_err(|problem| {
                format!("time window {text:?}, {} field: {problem}", FIELDS[index].0)
            })?;
        }
        // Day-of-week 7 is Sunday, like 0.
        let dow = &mut fields[5];
        if dow.contains(7) && !dow.any {
            dow.set(0);
        }
        Ok(Window { fields })
    }

    pub fn matches(&self, t: &Civil) -> bool {
        let values = [
            t.second, t.minute, t.hour, t.day, t.month, t.weekday, t.year,
        ];
        self.fields
            .iter()
            .zip(values)
            .zip(FIELDS)
            .all(|((field, value), (_, min, _))| {
                // A year before the field's minimum wraps to a huge offset and so never matches.
                field.contains(value.wrapping_sub(min))
            })
    }
}

fn parse_field(text: &str, (_, min, max): (&str, u32, u32)) -> Result<Field, String> {
    let mut field = Field {
        any: false,
        bits: [0; 4],
    };
    if text == "*" {
        field.any = true;
        return Ok(field);
    }
    for item in text.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => (range, Some(number(step)?)),
            None => (item, None),
        };
        let (low, high) = if range == "*" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            (number(a)?, number(b)?)
        } else {
            let a = number(range)?;
            // `a/n` runs from `a` to the field's maximum.
            (a, if step.is_some() { max } else { a })
        };
        if low < min || high > max {
            return Err(format!("{item:?} is outside {min}-{max}"));
        }
        if low > high {
            return Err(format!("range {item:?} runs backwards"));
        }
        let step = step.unwrap_or(1);
        if step == 0 {
            return Err(format!("step in {item:?} must be at least 1"));
        }
        let mut value = low;
        while value <= high {
            field.set(value - min);
            value += step;
        }
    }
    Ok(field)
}

fn number(text: &str) -> Result<u32, String> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) || text.len() > 5 {
        return Err(format!(
            "{text:?} is not a number (names, `?`, `L`, `W` and `#` are not supported)"
        ));
    }
    text.parse()
        .map_err(|_| format!("{text:?} is not a number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-28T10:15:00Z, a Saturday.
    const SAT: u64 = 1_795_860_900;

    fn at(window: &str, t: u64) -> bool {
        Window::parse(window).unwrap().matches(&Civil::from_unix(t))
    }

    #[test]
    fn civil_dates() {
        let c = Civil::from_unix(0);
        assert_eq!(
            (c.year, c.month, c.day, c.weekday, c.hour),
            (1970, 1, 1, 4, 0)
        );
        let c = Civil::from_unix(SAT);
        assert_eq!(
            (c.year, c.month, c.day, c.hour, c.minute, c.second),
            (2026, 11, 28, 10, 15, 0)
        );
        assert_eq!(c.weekday, 6);
        // 2024-02-29T23:59:59Z, leap day, Thursday.
        let c = Civil::from_unix(1_709_251_199);
        assert_eq!(
            (c.year, c.month, c.day, c.hour, c.minute, c.second, c.weekday),
            (2024, 2, 29, 23, 59, 59, 4)
        );
        // 2000-03-01T00:00:00Z, Wednesday (2000 is a leap year: Feb had 29 days).
        let c = Civil::from_unix(951_868_800);
        assert_eq!((c.year, c.month, c.day, c.weekday), (2000, 3, 1, 3));
        // 2100-03-01 (2100 is not a leap year), Monday.
        let c = Civil::from_unix(4_107_542_400);
        assert_eq!((c.year, c.month, c.day, c.weekday), (2100, 3, 1, 1));
    }

    #[test]
    fn ranges_lists_steps() {
        assert!(at("* * * * * * *", SAT));
        assert!(at("* 0-30 8-17 * * 1-6 *", SAT));
        assert!(!at("* 0-30 8-17 * * 1-5 *", SAT));
        assert!(at("0 15 10 28 11 6 2026", SAT));
        assert!(!at("1 15 10 28 11 6 2026", SAT));
        assert!(at("* 5,15,25 * * * * *", SAT));
        assert!(!at("* 5,25 * * * * *", SAT));
        assert!(at("* */15 * * * * *", SAT));
        assert!(!at("* */10 * * * * *", SAT));
        assert!(at("* 1-30/7 * * * * *", SAT)); // 1, 8, 15, 22, 29
        assert!(!at("* 0-30/7 * * * * *", SAT)); // 0, 7, 14, 21, 28
        assert!(at("* 1/7 * * * * *", SAT));
        assert!(at("* * * * * 0,6 *", SAT));
        assert!(at("* * * * * 6-7 *", SAT));
        assert!(at("* * * * * * 2025-2027", SAT));
        assert!(!at("* * * * * * 2027", SAT));
        assert!(at("* * * * * * */2", SAT)); // 1970, 1972, ..., 2026
        assert!(at("* * * * * 7 *", SAT + 86_400)); // Sunday written as 7
    }

    #[test]
    fn rejects_malformed_windows() {
        for bad in [
            "* * * * * *",
            "* * * * * * * *",
            "60 * * * * * *",
            "* * 24 * * * *",
            "* * * 0 * * *",
            "* * * * 13 * *",
            "* * * * * 8 *",
            "* * * * * * 1969",
            "* * * * * MON *",
            "* * * ? * * *",
            "* 30-10 * * * * *",
            "* */0 * * * * *",
            "* 1,,2 * * * * *",
            "* -1 * * * * *",
            "",
        ] {
            assert!(Window::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
