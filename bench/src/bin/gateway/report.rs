//! Tables for people, targets for the summary, and the few statistics the scenarios need.

use std::time::Duration;

use serde::Serialize;

/// A plain text table: a title, a header row and rows, columns padded to fit.
pub struct Table {
    title: String,
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    notes: Vec<String>,
}

impl Table {
    pub fn new(title: impl Into<String>, header: &[&str]) -> Table {
        Table {
            title: title.into(),
            header: header.iter().map(|cell| cell.to_string()).collect(),
            rows: Vec::new(),
            notes: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// A line printed under the table (how to read it, what was found).
    pub fn note(&mut self, text: impl Into<String>) {
        self.notes.push(text.into());
    }

    pub fn render(&self) -> String {
        let columns = self.header.len();
        let mut widths: Vec<usize> = self
            .header
            .iter()
            .map(|cell| cell.chars().count())
            .collect();
        for row in &self.rows {
            for (index, cell) in row.iter().enumerate().take(columns) {
                widths[index] = widths[index].max(cell.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let padded: Vec<String> = cells
                .iter()
                .enumerate()
                .map(|(index, cell)| {
                    // First column left-aligned (labels), the rest right-aligned (numbers).
                    if index == 0 {
                        format!("{cell:<width$}", width = widths[index])
                    } else {
                        format!("{cell:>width$}", width = widths[index])
                    }
                })
                .collect();
            format!("  {}\n", padded.join("  ").trim_end())
        };
        let mut out = format!("{}\n", self.title);
        out.push_str(&line(&self.header));
        let rule: Vec<String> = widths.iter().map(|&width| "-".repeat(width)).collect();
        out.push_str(&line(&rule));
        for row in &self.rows {
            out.push_str(&line(row));
        }
        for note in &self.notes {
            out.push_str(&format!("  {note}\n"));
        }
        out
    }
}

/// One performance target from the issue and whether this run met it.
#[derive(Clone, Debug, Serialize)]
pub struct Target {
    pub scenario: &'static str,
    /// What is compared, e.g. "cached boot time".
    pub name: String,
    /// The goal, e.g. "<= 100 ms".
    pub target: String,
    pub measured: String,
    pub met: bool,
}

impl Target {
    pub fn new(
        scenario: &'static str,
        name: impl Into<String>,
        target: impl Into<String>,
        measured: impl Into<String>,
        met: bool,
    ) -> Target {
        Target {
            scenario,
            name: name.into(),
            target: target.into(),
            measured: measured.into(),
            met,
        }
    }
}

/// The summary of `all`: every target, MET or MISSED, and scenarios that could not run.
pub fn summary(targets: &[Target], failures: &[(&str, String)]) -> Table {
    let mut table = Table::new(
        "Summary: gateway targets (issues #6 and #18)",
        &["scenario", "measure", "target", "measured", "result"],
    );
    for target in targets {
        table.row(vec![
            target.scenario.to_string(),
            target.name.clone(),
            target.target.clone(),
            target.measured.clone(),
            if target.met { "MET" } else { "MISSED" }.to_string(),
        ]);
    }
    for (scenario, error) in failures {
        table.row(vec![
            scenario.to_string(),
            "(did not run)".into(),
            "-".into(),
            "-".into(),
            "ERROR".into(),
        ]);
        table.note(format!("{scenario}: {error}"));
    }
    table
}

/// Latency percentiles of a sample, in microseconds.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Percentiles {
    pub count: usize,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
}

impl Percentiles {
    /// Nearest-rank percentiles of `samples` (sorted in place).
    pub fn of(samples: &mut [Duration]) -> Percentiles {
        if samples.is_empty() {
            return Percentiles::default();
        }
        samples.sort_unstable();
        let rank = |p: f64| {
            let index = ((p / 100.0) * samples.len() as f64).ceil() as usize;
            micros(samples[index.clamp(1, samples.len()) - 1])
        };
        let total: Duration = samples.iter().sum();
        Percentiles {
            count: samples.len(),
            mean_us: micros(total) / samples.len() as f64,
            p50_us: rank(50.0),
            p90_us: rank(90.0),
            p99_us: rank(99.0),
            p999_us: rank(99.9),
            max_us: micros(samples[samples.len() - 1]),
        }
    }
}

pub fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}

pub fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

/// The median of a few measurements (the lower middle one for an even count).
pub fn median(values: &[Duration]) -> Duration {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    sorted
        .get(sorted.len().saturating_sub(1) / 2)
        .copied()
        .unwrap_or_default()
}

/// `1234.5 ms`, `12.3 ms`, `0.85 ms`: three significant-ish digits.
pub fn format_ms(ms: f64) -> String {
    if ms >= 100.0 {
        format!("{ms:.0} ms")
    } else if ms >= 10.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.2} ms")
    }
}

pub fn format_us(us: f64) -> String {
    if us >= 10_000.0 {
        format_ms(us / 1e3)
    } else if us >= 100.0 {
        format!("{us:.0} µs")
    } else {
        format!("{us:.1} µs")
    }
}

pub fn format_mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut samples: Vec<Duration> = (1..=100).map(Duration::from_micros).collect();
        samples.reverse();
        let p = Percentiles::of(&mut samples);
        assert_eq!((p.p50_us, p.p99_us, p.max_us), (50.0, 99.0, 100.0));
        assert_eq!(p.count, 100);
        assert_eq!(
            median(&[3, 1, 2].map(Duration::from_millis)),
            Duration::from_millis(2)
        );
    }

    #[test]
    fn tables_align_their_columns() {
        let mut table = Table::new("T", &["name", "value"]);
        table.row(vec!["a".into(), "1".into()]);
        table.row(vec!["longer".into(), "100".into()]);
        let text = table.render();
        assert!(text.contains("  a           1\n"), "{text}");
        assert!(text.contains("  longer    100\n"), "{text}");
    }
}
