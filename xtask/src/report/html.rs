//! The report page: one self-contained file (inline CSS, no script) that a browser
//! opens from disk. It is also well-formed XML (void elements closed, everything
//! escaped), which lets the tests parse it.

use std::fmt::Write as _;

use super::junit::{Outcome, TestCase, Totals};

/// What the page shows.
pub(crate) struct Page<'a> {
    /// Every test, in the order of the table (crate, then name).
    pub(crate) tests: &'a [TestCase],
    pub(crate) totals: Totals,
    /// Wall-clock time of the run, when the tests ran.
    pub(crate) seconds: Option<f64>,
    /// The run's verdict in one line, e.g. "FAILED: 1 of 2 tests failed".
    pub(crate) verdict: &'a str,
    /// Whether the verdict is good news (the colour of the header).
    pub(crate) ok: bool,
    /// When the run started.
    pub(crate) date: &'a str,
    /// The commit tested, e.g. "4aaf316 (with uncommitted changes)".
    pub(crate) commit: &'a str,
    /// The nextest command line.
    pub(crate) command: &'a str,
}

const STYLE: &str = "
body { font: 14px/1.4 system-ui, sans-serif; margin: 0 2em 2em; color: #1b1b1b; }
header { margin: 0 -2em 1.5em; padding: 0.8em 2em; border-bottom: 4px solid; }
header.ok { background: #e7f6e7; border-color: #2e7d32; }
header.bad { background: #fdeaea; border-color: #c62828; }
h1 { font-size: 1.5em; margin: 0.3em 0; }
h2 { margin-top: 1.5em; border-bottom: 1px solid #ccc; }
h3 { font-size: 1.05em; margin: 1.2em 0 0.3em; }
h4 { font-size: 0.95em; margin: 0.8em 0 0.2em; color: #555; }
table { border-collapse: collapse; }
th, td { text-align: left; padding: 0.2em 0.8em; border-bottom: 1px solid #e4e4e4; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
table.totals td { font-size: 1.3em; font-weight: bold; }
.meta { color: #444; }
code, pre { font-family: ui-monospace, monospace; }
pre { background: #f6f6f6; border: 1px solid #ddd; padding: 0.6em; overflow-x: auto;
      white-space: pre-wrap; max-height: 40em; overflow-y: auto; }
.failed { color: #c62828; font-weight: bold; }
.flaky { color: #b26a00; font-weight: bold; }
.passed { color: #2e7d32; }
.skipped { color: #777; }
tr:hover td { background: #f3f6fb; }
";

/// The whole page.
pub(crate) fn render(page: &Page<'_>) -> String {
    let mut out = String::with_capacity(64 * 1024);
    let t = page.totals;
    out += "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n";
    out += "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>\n";
    let _ = writeln!(out, "<title>Test report: {}</title>", escape(page.verdict));
    let _ = writeln!(out, "<style>{STYLE}</style>\n</head>\n<body>");
    let class = if page.ok { "ok" } else { "bad" };
    let _ = writeln!(out, "<header class=\"{class}\">");
    let _ = writeln!(out, "<h1>Test report: {}</h1>", escape(page.verdict));
    out += "<table class=\"totals\">\n<tr><th class=\"num\">passed</th><th class=\"num\">failed</th>\
            <th class=\"num\">flaky</th><th class=\"num\">skipped</th><th class=\"num\">tests</th>\
            <th class=\"num\">time</th></tr>\n";
    let time = page.seconds.map_or_else(|| "-".to_string(), total_time);
    let _ = writeln!(
        out,
        "<tr><td class=\"num passed\">{}</td><td class=\"num failed\">{}</td>\
         <td class=\"num flaky\">{}</td><td class=\"num skipped\">{}</td><td class=\"num\">{}</td>\
         <td class=\"num\">{}</td></tr>\n</table>",
        t.passed,
        t.failed,
        t.flaky,
        t.skipped,
        t.total(),
        escape(&time)
    );
    let _ = writeln!(
        out,
        "<p class=\"meta\">Run started {}; commit {}.<br/>Command: <code>{}</code></p>\n</header>",
        escape(page.date),
        escape(page.commit),
        escape(page.command)
    );
    out += "<main>\n";
    attempts_section(&mut out, page.tests, Outcome::Failed);
    attempts_section(&mut out, page.tests, Outcome::Flaky);
    table(&mut out, page.tests);
    out += "</main>\n</body>\n</html>\n";
    out
}

/// The section of failed or flaky tests, each with the output of its failed attempts.
fn attempts_section(out: &mut String, tests: &[TestCase], outcome: Outcome) {
    let count = tests.iter().filter(|t| t.outcome == outcome).count();
    if count == 0 {
        return;
    }
    let (id, title) = match outcome {
        Outcome::Flaky => ("flaky", "Flaky tests: failed, then passed on a retry"),
        _ => ("failures", "Failures"),
    };
    let _ = writeln!(out, "<section id=\"{id}\">\n<h2>{title} ({count})</h2>");
    for (index, test) in tests.iter().enumerate() {
        if test.outcome != outcome {
            continue;
        }
        let _ = writeln!(
            out,
            "<article id=\"{}\">\n<h3><span class=\"{}\">{}</span> {} <code>{}</code></h3>",
            anchor(index),
            outcome.as_str(),
            outcome.as_str(),
            escape(&test.binary),
            escape(&test.name)
        );
        let attempts = test.failures.len();
        for (n, attempt) in test.failures.iter().enumerate() {
            let heading = if attempts > 1 || outcome == Outcome::Flaky {
                format!("attempt {} failed: {}", n + 1, attempt.kind)
            } else {
                attempt.kind.clone()
            };
            let _ = writeln!(out, "<h4>{}</h4>", escape(&heading));
            if !attempt.message.is_empty() {
                let _ = writeln!(out, "<p><code>{}</code></p>", escape(&attempt.message));
            }
            let mut shown = false;
            for (label, text) in [("stdout", &attempt.stdout), ("stderr", &attempt.stderr)] {
                if !text.trim().is_empty() {
                    let _ = writeln!(out, "<h4>{label}</h4>\n<pre>{}</pre>", escape(text));
                    shown = true;
                }
            }
            if !shown && !attempt.description.is_empty() {
                let _ = writeln!(out, "<pre>{}</pre>", escape(&attempt.description));
            }
        }
        out.push_str("</article>\n");
    }
    out.push_str("</section>\n");
}

/// The table of every test.
fn table(out: &mut String, tests: &[TestCase]) {
    let _ = writeln!(
        out,
        "<section id=\"tests\">\n<h2>All tests ({})</h2>\n<table class=\"tests\">\n\
         <thead><tr><th>crate (binary)</th><th>test</th><th>outcome</th>\
         <th class=\"num\">duration</th></tr></thead>\n<tbody>",
        tests.len()
    );
    for (index, test) in tests.iter().enumerate() {
        let outcome = test.outcome.as_str();
        let name = match test.outcome {
            Outcome::Failed | Outcome::Flaky => format!(
                "<a href=\"#{}\"><code>{}</code></a>",
                anchor(index),
                escape(&test.name)
            ),
            Outcome::Passed | Outcome::Skipped => format!("<code>{}</code>", escape(&test.name)),
        };
        let title = match &test.skip_reason {
            Some(reason) if !reason.is_empty() => format!(" title=\"{}\"", escape(reason)),
            _ => String::new(),
        };
        let duration = match test.outcome {
            Outcome::Skipped => String::new(),
            _ => format!("{:.3} s", test.seconds),
        };
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{name}</td><td class=\"{outcome}\"{title}>{outcome}</td>\
             <td class=\"num\">{duration}</td></tr>",
            escape(&test.binary)
        );
    }
    out.push_str("</tbody>\n</table>\n</section>\n");
}

/// The id of the test at `index` of the table.
fn anchor(index: usize) -> String {
    format!("test-{index}")
}

/// A run's wall-clock time: "0.250 s", "12.4 s", "3 min 07 s".
pub(crate) fn total_time(seconds: f64) -> String {
    if seconds < 10.0 {
        format!("{seconds:.3} s")
    } else if seconds < 60.0 {
        format!("{seconds:.1} s")
    } else {
        // Whole seconds: the cast saturates, and no run lasts 2^64 s.
        let whole = seconds.round() as u64;
        format!("{} min {:02} s", whole / 60, whole % 60)
    }
}

/// `text` as HTML text or attribute value. Control characters that HTML cannot show
/// (all of C0 but tab, newline and carriage return) become U+FFFD, so the page stays
/// well-formed XML too.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if c < ' ' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::junit::Attempt;
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(
            escape(r#"<a href="x">Tom & 'Jerry'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;Tom &amp; &#39;Jerry&#39;&lt;/a&gt;"
        );
        assert_eq!(escape("&amp;"), "&amp;amp;");
        assert_eq!(escape("tab\tline\r\nend"), "tab\tline\r\nend");
        assert_eq!(
            escape("bell\u{7}esc\u{1b}[31m"),
            "bell\u{FFFD}esc\u{FFFD}[31m"
        );
        assert_eq!(escape("ünïcödé ✓"), "ünïcödé ✓");
        assert_eq!(escape(""), "");
    }

    #[test]
    fn times() {
        assert_eq!(total_time(0.25), "0.250 s");
        assert_eq!(total_time(12.44), "12.4 s");
        assert_eq!(total_time(187.2), "3 min 07 s");
    }

    fn test(name: &str, outcome: Outcome, failures: Vec<Attempt>) -> TestCase {
        TestCase {
            binary: "crate<x>".into(),
            name: name.into(),
            outcome,
            seconds: 0.5,
            failures,
            skip_reason: (outcome == Outcome::Skipped).then(|| "ignored \"why\"".into()),
        }
    }

    #[test]
    fn the_page_is_well_formed_and_escaped() {
        let fail = Attempt {
            kind: "test failure".into(),
            message: "panicked at <src>".into(),
            description: "unused".into(),
            stdout: "out & <about>".into(),
            stderr: String::new(),
        };
        let silent = Attempt {
            kind: "test timeout".into(),
            description: "only the description".into(),
            ..Attempt::default()
        };
        let tests = [
            test("a::fails", Outcome::Failed, vec![fail.clone(), silent]),
            test("b::flaky", Outcome::Flaky, vec![fail]),
            test("c::<passes>", Outcome::Passed, Vec::new()),
            test("d::skipped", Outcome::Skipped, Vec::new()),
        ];
        let html = render(&Page {
            tests: &tests,
            totals: Totals::of(&tests),
            seconds: Some(1.5),
            verdict: "FAILED: 1 of 4 tests failed",
            ok: false,
            date: "2026-11-25T16:13:43Z",
            commit: "4aaf316",
            command: "cargo nextest run --profile report -E 'test(<x>)'",
        });
        let options = roxmltree::ParsingOptions {
            allow_dtd: true,
            ..roxmltree::ParsingOptions::default()
        };
        let doc = roxmltree::Document::parse_with_options(&html, options).unwrap();
        let rows: Vec<Vec<String>> = doc
            .descendants()
            .filter(|n| n.has_tag_name("tbody"))
            .flat_map(|b| b.children().filter(|n| n.has_tag_name("tr")))
            .map(|tr| {
                tr.children()
                    .filter(|n| n.has_tag_name("td"))
                    .map(|td| {
                        td.descendants()
                            .filter(|n| n.is_text())
                            .filter_map(|n| n.text())
                            .collect()
                    })
                    .collect()
            })
            .collect();
        assert_eq!(
            rows,
            [
                ["crate<x>", "a::fails", "failed", "0.500 s"],
                ["crate<x>", "b::flaky", "flaky", "0.500 s"],
                ["crate<x>", "c::<passes>", "passed", "0.500 s"],
                ["crate<x>", "d::skipped", "skipped", ""],
            ]
        );
        // Failed and flaky rows link to their sections, which exist.
        for (row, id) in [(0, "test-0"), (1, "test-1")] {
            assert!(html.contains(&format!("<a href=\"#{id}\">")), "row {row}");
            assert!(doc.descendants().any(|n| n.attribute("id") == Some(id)));
        }
        assert!(html.contains("<h4>attempt 1 failed: test failure</h4>"));
        assert!(html.contains("<h4>attempt 2 failed: test timeout</h4>"));
        assert!(html.contains("<pre>out &amp; &lt;about&gt;</pre>"));
        // Without output, the description stands in; with output, it does not.
        assert!(html.contains("<pre>only the description</pre>"));
        assert!(!html.contains("unused"));
        assert!(html.contains("title=\"ignored &quot;why&quot;\""));
        assert!(html.contains("<header class=\"bad\">"));
        assert!(html.contains("<title>Test report: FAILED: 1 of 4 tests failed</title>"));
        assert!(html.contains("-E &#39;test(&lt;x&gt;)&#39;"));
        assert!(!html.contains("<script"));
    }

    #[test]
    fn a_page_without_tests_says_so() {
        let html = render(&Page {
            tests: &[],
            totals: Totals::default(),
            seconds: None,
            verdict: "no tests ran: building them failed",
            ok: false,
            date: "d",
            commit: "c",
            command: "cmd",
        });
        assert!(html.contains("<h2>All tests (0)</h2>"));
        assert!(!html.contains("id=\"failures\""));
        let options = roxmltree::ParsingOptions {
            allow_dtd: true,
            ..roxmltree::ParsingOptions::default()
        };
        roxmltree::Document::parse_with_options(&html, options).unwrap();
    }
}
