//! `palisade test --format junit`: the results as JUnit XML, the report format CI systems
//! (GitLab, Jenkins, GitHub actions that publish test reports) read. One `<testsuite>` per case
//! file, one `<testcase>` per case, a `<failure>` naming every problem of a failed case.
//!
//! Reasons come from plugins, so everything written is escaped, and characters XML 1.0 cannot
//! carry at all (most control characters) are replaced: a plugin's odd reason must not make
//! the report unreadable for the CI system.

use std::fmt::Write;

use super::{CaseReport, FileReport};

/// The whole report.
pub(super) fn render(reports: &[FileReport]) -> String {
    let tests: usize = reports.iter().map(|report| report.cases.len()).sum();
    let failures: usize = reports.iter().map(|report| report.failed).sum();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"palisade test\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" time=\"{}\">",
        seconds(reports.iter().flat_map(|report| &report.cases))
    );
    for report in reports {
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"0\" skipped=\"0\" time=\"{}\">",
            escape(&report.file),
            report.cases.len(),
            report.failed,
            seconds(&report.cases)
        );
        let _ = writeln!(
            out,
            "    <properties><property name=\"plugin\" value=\"{}\"/><property name=\"kind\" value=\"{}\"/></properties>",
            escape(&report.plugin),
            report.kind
        );
        let classname = format!("{}.{}", report.plugin, report.kind);
        for case in &report.cases {
            write_case(&mut out, &classname, case);
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

fn write_case(out: &mut String, classname: &str, case: &CaseReport) {
    let _ = write!(
        out,
        "    <testcase name=\"{}\" classname=\"{}\" time=\"{}\"",
        escape(&case.name),
        escape(classname),
        seconds(std::iter::once(case))
    );
    if case.passed {
        out.push_str("/>\n");
        return;
    }
    out.push_str(">\n");
    let message = case
        .problems
        .first()
        .map(String::as_str)
        .unwrap_or("failed");
    let mut body = case.problems.join("\n");
    if let Some(reason) = &case.reason {
        let _ = write!(body, "\nreason: {reason}");
    }
    if let Some(failure) = case.failure {
        let _ = write!(body, "\nplugin failure: {failure}");
    }
    let _ = writeln!(
        out,
        "      <failure message=\"{}\" type=\"expected {} got {}\">{}</failure>",
        escape(message),
        escape(&case.expected),
        case.got,
        escape(&body)
    );
    out.push_str("    </testcase>\n");
}

/// Total time of `cases` in seconds, as JUnit writes it.
fn seconds<'a>(cases: impl IntoIterator<Item = &'a CaseReport>) -> String {
    let micros: u64 = cases.into_iter().map(|case| case.micros).sum();
    format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000)
}

/// Text for an attribute value or element content: the five XML specials as entities, line
/// breaks and tabs as character references (so attribute values keep them), and characters
/// XML 1.0 forbids as U+FFFD.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' => out.push_str("&#9;"),
            c if allowed_in_xml(c) => out.push(c),
            _ => out.push('\u{FFFD}'),
        }
    }
    out
}

/// XML 1.0's `Char` production (tab, line feed and carriage return are handled before).
fn allowed_in_xml(c: char) -> bool {
    matches!(c, '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_specials_and_replaces_what_xml_cannot_carry() {
        assert_eq!(
            escape("a<b>&\"c'\n\u{1}\u{FFFE}é"),
            "a&lt;b&gt;&amp;&quot;c&apos;&#10;\u{FFFD}\u{FFFD}é"
        );
    }

    #[test]
    fn seconds_are_written_with_microseconds() {
        let case = |micros| CaseReport {
            name: String::new(),
            expected: String::new(),
            got: "permit",
            reason: None,
            failure: None,
            passed: true,
            problems: Vec::new(),
            micros,
        };
        assert_eq!(seconds([&case(1_500_000), &case(7)]), "1.500007");
    }
}
