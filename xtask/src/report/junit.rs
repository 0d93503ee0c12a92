//! Reading the JUnit XML file cargo-nextest writes (the Jenkins flavour): one
//! `<testsuite>` per test binary, named like `dht-core` or `dht-tests::network`, one
//! `<testcase>` per test with its duration in seconds. A failed test has a
//! `<failure>` (or `<error>`) for its first attempt and a `<rerunFailure>` for each
//! retry that failed too; a test that passed on a retry has a `<flakyFailure>` per
//! failed attempt; a skipped one has `<skipped>`. The first attempt's output is in the
//! test case's `<system-out>` and `<system-err>`, a retry's inside its own element.

use anyhow::{Context, bail};
use roxmltree::Node;

/// How a test ended. The order is the order of importance in the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Outcome {
    /// Its last attempt failed.
    Failed,
    /// It failed, then passed on a retry.
    Flaky,
    /// It passed at the first attempt.
    Passed,
    /// It did not run: ignored, or not selected by a filter.
    Skipped,
}

impl Outcome {
    /// The word the report shows.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Outcome::Failed => "failed",
            Outcome::Flaky => "flaky",
            Outcome::Passed => "passed",
            Outcome::Skipped => "skipped",
        }
    }
}

/// One failed attempt of a test.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Attempt {
    /// nextest's kind of failure, e.g. "test failure with exit code 101".
    pub(crate) kind: String,
    /// One line, e.g. where the test panicked.
    pub(crate) message: String,
    /// nextest's excerpt of the output (the panic message).
    pub(crate) description: String,
    /// What the test printed to stdout.
    pub(crate) stdout: String,
    /// What the test printed to stderr.
    pub(crate) stderr: String,
}

/// One test.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TestCase {
    /// The test binary: the crate, plus the target for anything but the library,
    /// e.g. `dht-tests::network`.
    pub(crate) binary: String,
    /// The test's path in its binary, e.g. `tests::fails`.
    pub(crate) name: String,
    pub(crate) outcome: Outcome,
    /// Duration of the attempt that decided the outcome, in seconds.
    pub(crate) seconds: f64,
    /// The failed attempts in the order they ran (none for a passed or skipped test).
    pub(crate) failures: Vec<Attempt>,
    /// Why a skipped test was skipped.
    pub(crate) skip_reason: Option<String>,
}

/// How many tests ended how.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    /// Passed at the first attempt.
    pub(crate) passed: usize,
    pub(crate) failed: usize,
    /// Passed on a retry.
    pub(crate) flaky: usize,
    pub(crate) skipped: usize,
}

impl Totals {
    /// Counts the outcomes of `tests`.
    pub(crate) fn of(tests: &[TestCase]) -> Totals {
        let mut totals = Totals::default();
        for test in tests {
            *match test.outcome {
                Outcome::Failed => &mut totals.failed,
                Outcome::Flaky => &mut totals.flaky,
                Outcome::Passed => &mut totals.passed,
                Outcome::Skipped => &mut totals.skipped,
            } += 1;
        }
        totals
    }

    /// Every test, run or not.
    pub(crate) fn total(&self) -> usize {
        self.passed + self.failed + self.flaky + self.skipped
    }
}

/// A whole JUnit file.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Run {
    /// When the run started, as nextest wrote it (RFC 3339).
    pub(crate) started: Option<String>,
    /// Wall-clock duration of the run in seconds.
    pub(crate) seconds: Option<f64>,
    /// Every test, in the file's order.
    pub(crate) tests: Vec<TestCase>,
}

/// Parses the text of a JUnit file. `file` names it in errors.
pub(crate) fn parse(text: &str, file: &str) -> anyhow::Result<Run> {
    let doc = roxmltree::Document::parse(text)
        .with_context(|| format!("{file} is not well-formed XML"))?;
    let root = doc.root_element();
    if !root.has_tag_name("testsuites") {
        bail!(
            "{file}: the root element is <{}>, not <testsuites>",
            root.tag_name().name()
        );
    }
    let seconds = root
        .attribute("time")
        .map(|t| seconds(t, file, "<testsuites>"))
        .transpose()?;
    let mut tests = Vec::new();
    for suite in elements(root).filter(|n| n.has_tag_name("testsuite")) {
        let binary = suite.attribute("name").unwrap_or_default();
        for case in elements(suite).filter(|n| n.has_tag_name("testcase")) {
            tests.push(test_case(case, binary, file)?);
        }
    }
    Ok(Run {
        started: root.attribute("timestamp").map(str::to_string),
        seconds,
        tests,
    })
}

/// One `<testcase>` of the suite of `binary`.
fn test_case(case: Node<'_, '_>, binary: &str, file: &str) -> anyhow::Result<TestCase> {
    let binary = match binary {
        "" => case.attribute("classname").unwrap_or_default(),
        name => name,
    };
    let Some(name) = case.attribute("name") else {
        bail!("{file}: a <testcase> of {binary:?} has no name");
    };
    let seconds = match case.attribute("time") {
        Some(time) => seconds(time, file, name)?,
        None => 0.0,
    };
    let mut first = None;
    let mut reruns = Vec::new();
    let mut flaky = Vec::new();
    let mut skip_reason = None;
    let (mut stdout, mut stderr) = (String::new(), String::new());
    for child in elements(case) {
        match child.tag_name().name() {
            "failure" | "error" => first = Some(attempt(child)),
            "rerunFailure" | "rerunError" => reruns.push(attempt(child)),
            "flakyFailure" | "flakyError" => flaky.push(attempt(child)),
            "skipped" => {
                skip_reason = Some(child.attribute("message").unwrap_or_default().to_string())
            }
            "system-out" => stdout += &text(child),
            "system-err" => stderr += &text(child),
            _ => {}
        }
    }
    let (outcome, failures) = match first {
        Some(mut first) => {
            // The test case's own output is that of its first attempt.
            if first.stdout.is_empty() && first.stderr.is_empty() {
                (first.stdout, first.stderr) = (stdout, stderr);
            }
            // A "flaky-fail" test (flaky-result = "fail") has both kinds.
            let failures = flaky.into_iter().chain([first]).chain(reruns).collect();
            (Outcome::Failed, failures)
        }
        None if skip_reason.is_some() => (Outcome::Skipped, Vec::new()),
        None if !flaky.is_empty() => (Outcome::Flaky, flaky),
        None => (Outcome::Passed, Vec::new()),
    };
    Ok(TestCase {
        binary: binary.to_string(),
        name: name.to_string(),
        outcome,
        seconds,
        failures,
        skip_reason,
    })
}

/// A failure element: its attributes, its own text and the output inside it.
fn attempt(element: Node<'_, '_>) -> Attempt {
    let mut attempt = Attempt {
        kind: element.attribute("type").unwrap_or_default().to_string(),
        message: element.attribute("message").unwrap_or_default().to_string(),
        description: text(element).trim_end().to_string(),
        ..Attempt::default()
    };
    for child in elements(element) {
        match child.tag_name().name() {
            "system-out" => attempt.stdout += &text(child),
            "system-err" => attempt.stderr += &text(child),
            _ => {}
        }
    }
    attempt
}

/// The child elements of `node`.
fn elements<'a, 'input>(node: Node<'a, 'input>) -> impl Iterator<Item = Node<'a, 'input>> {
    node.children().filter(Node::is_element)
}

/// The text directly inside `node` (text and CDATA), without that of child elements.
fn text(node: Node<'_, '_>) -> String {
    node.children()
        .filter(Node::is_text)
        .filter_map(|n| n.text())
        .collect()
}

/// A `time` attribute: seconds, finite and not negative.
fn seconds(value: &str, file: &str, of: &str) -> anyhow::Result<f64> {
    match value.trim().parse::<f64>() {
        Ok(s) if s.is_finite() && s >= 0.0 => Ok(s),
        _ => bail!("{file}: time {value:?} of {of} is not a number of seconds"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shaped like nextest's output: a pass, a failure retried once, a flaky test, a
    /// skipped test, and markup in the output.
    const SAMPLE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="nextest-run" tests="5" failures="1" errors="0" timestamp="2026-11-25T16:13:43.400+00:00" time="1.250">
    <testsuite name="dht-core" tests="3" disabled="0" errors="0" failures="1">
        <testcase name="conn::tests::ok" classname="dht-core" time="0.008"/>
        <testcase name="conn::tests::broken" classname="dht-core" time="0.140">
            <failure message="thread &apos;broken&apos; panicked at src/conn.rs:6:5" type="test failure with exit code 101">assertion failed: a &lt; b</failure>
            <rerunFailure time="0.102" message="second try" type="test failure with exit code 101">retry text
                <system-out>retry out</system-out>
                <system-err>retry err</system-err>
            </rerunFailure>
            <system-out>out: &lt;&amp;&gt; &quot;q&quot;</system-out>
            <system-err><![CDATA[err: <b>]]></system-err>
        </testcase>
        <testcase name="peers::tests::flaky" classname="dht-core" time="0.020">
            <flakyFailure time="0.500" message="first try timed out" type="test timeout">
                <system-out>slow</system-out>
            </flakyFailure>
        </testcase>
    </testsuite>
    <testsuite name="dht-tests::network" tests="1" errors="0" failures="0">
        <testcase name="slow_one" classname="dht-tests::network" time="0.000">
            <skipped message="Skipped: test does not match the run-ignored option"/>
        </testcase>
        <testcase name="crashes" classname="dht-tests::network" time="0.300">
            <error message="killed" type="test abort with signal 9"/>
        </testcase>
    </testsuite>
</testsuites>"#;

    #[test]
    fn reads_every_kind_of_test() {
        let run = parse(SAMPLE, "junit.xml").unwrap();
        assert_eq!(
            run.started.as_deref(),
            Some("2026-11-25T16:13:43.400+00:00")
        );
        assert_eq!(run.seconds, Some(1.25));
        let names: Vec<(&str, &str, Outcome)> = run
            .tests
            .iter()
            .map(|t| (t.binary.as_str(), t.name.as_str(), t.outcome))
            .collect();
        assert_eq!(
            names,
            [
                ("dht-core", "conn::tests::ok", Outcome::Passed),
                ("dht-core", "conn::tests::broken", Outcome::Failed),
                ("dht-core", "peers::tests::flaky", Outcome::Flaky),
                ("dht-tests::network", "slow_one", Outcome::Skipped),
                ("dht-tests::network", "crashes", Outcome::Failed),
            ]
        );

        assert_eq!(
            Totals::of(&run.tests),
            Totals {
                passed: 1,
                failed: 2,
                flaky: 1,
                skipped: 1,
            }
        );
        assert_eq!(Totals::of(&run.tests).total(), 5);

        let ok = &run.tests[0];
        assert_eq!(ok.seconds, 0.008);
        assert!(ok.failures.is_empty() && ok.skip_reason.is_none());

        let broken = &run.tests[1];
        assert_eq!(broken.seconds, 0.14);
        assert_eq!(
            broken.failures,
            [
                Attempt {
                    kind: "test failure with exit code 101".into(),
                    message: "thread 'broken' panicked at src/conn.rs:6:5".into(),
                    description: "assertion failed: a < b".into(),
                    stdout: "out: <&> \"q\"".into(),
                    stderr: "err: <b>".into(),
                },
                Attempt {
                    kind: "test failure with exit code 101".into(),
                    message: "second try".into(),
                    description: "retry text".into(),
                    stdout: "retry out".into(),
                    stderr: "retry err".into(),
                },
            ]
        );

        let flaky = &run.tests[2];
        assert_eq!(flaky.failures.len(), 1);
        assert_eq!(flaky.failures[0].kind, "test timeout");
        assert_eq!(flaky.failures[0].stdout, "slow");

        let skipped = &run.tests[3];
        assert_eq!(
            skipped.skip_reason.as_deref(),
            Some("Skipped: test does not match the run-ignored option")
        );

        let crashed = &run.tests[4];
        assert_eq!(crashed.failures.len(), 1);
        assert_eq!(crashed.failures[0].kind, "test abort with signal 9");
    }

    #[test]
    fn a_flaky_test_that_counts_as_failed_keeps_every_attempt() {
        let xml = r#"<testsuites><testsuite name="a">
            <testcase name="t" time="0.1">
                <flakyFailure message="try 1"/>
                <failure message="flaky, configured to fail"/>
            </testcase>
        </testsuite></testsuites>"#;
        let run = parse(xml, "f.xml").unwrap();
        let t = &run.tests[0];
        assert_eq!(t.outcome, Outcome::Failed);
        let messages: Vec<&str> = t.failures.iter().map(|a| a.message.as_str()).collect();
        assert_eq!(messages, ["try 1", "flaky, configured to fail"]);
        assert_eq!((run.started, run.seconds), (None, None));
    }

    #[test]
    fn the_binary_falls_back_to_the_classname() {
        let xml =
            r#"<testsuites><testsuite><testcase name="t" classname="c"/></testsuite></testsuites>"#;
        let run = parse(xml, "f.xml").unwrap();
        assert_eq!(run.tests[0].binary, "c");
        assert_eq!(run.tests[0].seconds, 0.0);
    }

    #[test]
    fn bad_files_are_errors_naming_the_file() {
        let error = |xml: &str| format!("{:#}", parse(xml, "j.xml").unwrap_err());
        assert!(error("<testsuites><testsuite>").starts_with("j.xml is not well-formed XML"));
        assert!(error("").starts_with("j.xml is not well-formed XML"));
        assert_eq!(
            error("<report/>"),
            "j.xml: the root element is <report>, not <testsuites>"
        );
        assert_eq!(
            error(r#"<testsuites><testsuite name="a"><testcase/></testsuite></testsuites>"#),
            "j.xml: a <testcase> of \"a\" has no name"
        );
        assert_eq!(
            error(
                r#"<testsuites><testsuite><testcase name="t" time="x"/></testsuite></testsuites>"#
            ),
            "j.xml: time \"x\" of t is not a number of seconds"
        );
        assert_eq!(
            error(r#"<testsuites time="-1"/>"#),
            "j.xml: time \"-1\" of <testsuites> is not a number of seconds"
        );
        // A DTD could define entities that expand without bound: refused.
        assert!(
            error(r#"<!DOCTYPE t [<!ENTITY a "aaaa">]><testsuites/>"#)
                .starts_with("j.xml is not well-formed XML")
        );
    }
}
