//! Tests of `cargo xtask test-report`: real runs of cargo-nextest on the fixture
//! crate (one passing, one failing test) and on a crate that does not compile, and
//! the pieces around them.

use std::time::Duration;

use super::*;

/// The rows of the page's table of tests: crate, test, outcome, duration.
fn table_rows(html: &str) -> Vec<Vec<String>> {
    let options = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..roxmltree::ParsingOptions::default()
    };
    let doc = roxmltree::Document::parse_with_options(html, options)
        .unwrap_or_else(|e| panic!("the report is not well-formed: {e}"));
    doc.descendants()
        .filter(|n| n.has_tag_name("tbody"))
        .flat_map(|body| body.children().filter(|n| n.has_tag_name("tr")))
        .map(|row| {
            row.children()
                .filter(|n| n.has_tag_name("td"))
                .map(|cell| {
                    cell.descendants()
                        .filter(|n| n.is_text())
                        .filter_map(|n| n.text())
                        .collect()
                })
                .collect()
        })
        .collect()
}

#[test]
fn a_failing_test_shows_as_failed() {
    let Layout { root, target, .. } = Layout::new().unwrap();
    let fixture = root.join("xtask").join("fixtures").join("report-fixture");
    let target = target.join("report-fixture");
    let out = target.join("report");
    // --locked: the run must not write a Cargo.lock into the source tree.
    let summary = run(&fixture, &target, &out, &["--locked".into()], Echo::Capture)
        .unwrap_or_else(|e| panic!("test-report on {}: {e:#}", fixture.display()));
    let output = summary.output.as_deref().unwrap_or_default();
    assert_eq!(summary.nextest_code, Some(100), "nextest said:\n{output}");
    assert_eq!(summary.exit_code(), 100);
    assert!(summary.ran);
    assert_eq!(
        summary.totals,
        Totals {
            passed: 1,
            failed: 1,
            flaky: 0,
            skipped: 0,
        }
    );
    assert_eq!(summary.verdict, "FAILED: 1 of 2 tests failed");
    assert!(summary.seconds.is_some_and(|s| s > 0.0));
    assert_eq!(summary.report, out.join("index.html"));

    let html = fs::read_to_string(&summary.report).unwrap();
    let rows = table_rows(&html);
    let cells: Vec<[&str; 3]> = rows
        .iter()
        .map(|r| [r[0].as_str(), r[1].as_str(), r[2].as_str()])
        .collect();
    assert_eq!(
        cells,
        [
            ["report-fixture", "tests::fails", "failed"],
            ["report-fixture", "tests::passes", "passed"],
        ]
    );
    assert!(rows.iter().all(|r| r[3].ends_with(" s")), "{rows:?}");
    // The failure, with its output escaped, comes before the table.
    let failures = html
        .find("<section id=\"failures\">")
        .expect("a failures section");
    let output = html
        .find("markup in the output: &lt;&amp;&gt; &quot;quoted&quot;")
        .expect("the failing test's stdout, escaped");
    let table = html.find("<section id=\"tests\">").expect("the table");
    assert!(failures < output && output < table);
    assert!(html.contains("this test fails on purpose"));
    assert!(!html.contains("<&>"));
    assert!(html.contains("<header class=\"bad\">"));
    // The JUnit file landed in the target folder given, not in the fixture.
    assert!(
        target
            .join("nextest")
            .join("report")
            .join("junit.xml")
            .is_file()
    );
    assert!(!fixture.join("target").exists());

    // A browser shows the page as a page: the failure first, then the table.
    let url = format!("file://{}", summary.report.display());
    if let Some(page) = dht_tests::browser::render(&url, "test-report", 1280, 900).unwrap() {
        let failures = page
            .dom
            .find("<section id=\"failures\">")
            .expect("failures");
        let table = page.dom.find("<section id=\"tests\">").expect("the table");
        assert!(failures < table);
        assert!(page.dom.contains("this test fails on purpose"));
        assert_eq!(dht_tests::browser::png_size(&page.png), Some((1280, 900)));
        assert!(page.png.len() > 20_000, "a nearly empty screenshot");
    }
}

#[test]
fn a_build_failure_is_reported_and_fails() {
    let target = Layout::new().unwrap().target;
    let base = target.join("report-broken");
    let crate_dir = base.join("crate");
    fs::create_dir_all(crate_dir.join("src")).unwrap();
    fs::create_dir_all(crate_dir.join(".config")).unwrap();
    fs::write(
        crate_dir.join("Cargo.toml"),
        "[package]\nname = \"broken\"\nversion = \"0.0.0\"\nedition = \"2024\"\n\n[workspace]\n",
    )
    .unwrap();
    fs::write(
        crate_dir.join("src").join("lib.rs"),
        "//! Does not compile.\nfn f() -> u8 { \"not a number\" }\n",
    )
    .unwrap();
    fs::write(
        crate_dir.join(".config").join("nextest.toml"),
        "[profile.report.junit]\npath = \"junit.xml\"\n",
    )
    .unwrap();
    let out = base.join("report");
    let summary = run(&crate_dir, &base.join("target"), &out, &[], Echo::Capture)
        .unwrap_or_else(|e| panic!("test-report on {}: {e:#}", crate_dir.display()));
    let output = summary.output.as_deref().unwrap_or_default();
    assert_eq!(summary.nextest_code, Some(101), "nextest said:\n{output}");
    assert_eq!(summary.exit_code(), 101);
    assert!(!summary.ran);
    assert_eq!(summary.totals, Totals::default());
    assert_eq!(
        summary.verdict,
        "FAILED: no tests ran: building the tests failed (cargo-nextest exit code 101)"
    );
    let html = fs::read_to_string(&summary.report).unwrap();
    assert!(html.contains("no tests ran: building the tests failed"));
    assert!(table_rows(&html).is_empty());
}

#[test]
fn the_fixture_has_our_report_profile() {
    let root = Layout::new().unwrap().root;
    let profile = |path: PathBuf| {
        let text = fs::read_to_string(&path).unwrap();
        let table: toml::Table = toml::from_str(&text).unwrap();
        table["profile"][PROFILE].clone()
    };
    let ours = profile(root.join(".config").join("nextest.toml"));
    let fixture = root.join("xtask").join("fixtures").join("report-fixture");
    assert_eq!(ours, profile(fixture.join(".config").join("nextest.toml")));
    assert_eq!(ours["fail-fast"].as_bool(), Some(false));
}

#[test]
fn arguments() {
    assert!(parse_args(&[]).unwrap().is_empty());
    assert_eq!(
        parse_args(&["--", "-E", "test(x)", "--", "--exact"]).unwrap(),
        ["-E", "test(x)", "--", "--exact"]
    );
    assert_eq!(
        parse_args(&["-E"]).unwrap_err().to_string(),
        "test-report: unexpected argument \"-E\" (arguments for cargo nextest run go after --)"
    );

    let args = |tool: Option<&Path>, extra: &[&str]| {
        let extra: Vec<String> = extra.iter().map(|a| a.to_string()).collect();
        nextest_args(tool, &extra).map(|args| {
            args.iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        })
    };
    assert_eq!(
        args(Some(Path::new("/t/store.toml")), &[]).unwrap(),
        "nextest run --profile report --tool-config-file xtask:/t/store.toml --workspace --no-fail-fast"
    );
    assert_eq!(
        args(None, &["conn", "--", "--workspace"]).unwrap(),
        "nextest run --profile report --workspace --no-fail-fast conn -- --workspace"
    );
    // Flags nextest refuses twice are not doubled.
    assert_eq!(
        args(None, &["--workspace", "--no-fail-fast"]).unwrap(),
        "nextest run --profile report --workspace --no-fail-fast"
    );
    for packages in [&["-p", "dht-id"][..], &["-pdht-id"], &["--package=dht-id"]] {
        assert_eq!(
            args(None, packages).unwrap(),
            format!(
                "nextest run --profile report --no-fail-fast {}",
                packages.join(" ")
            )
        );
    }
    for profile in ["--profile", "--profile=ci", "-P", "-Pci"] {
        assert_eq!(
            args(None, &[profile, "ci"]).unwrap_err().to_string(),
            format!("test-report runs nextest's \"report\" profile itself: drop {profile:?}")
        );
    }
}

#[test]
fn nextest_versions() {
    let v = nextest_version;
    assert_eq!(
        v("cargo-nextest 0.9.143 (60fa45f63 2026-08-04)\nrelease: 0.9.143\n"),
        Some((0, 9, 143))
    );
    assert_eq!(v("cargo-nextest 0.10.0-rc.1"), Some((0, 10, 0)));
    assert_eq!(v("cargo-nextest 0.9"), None);
    assert_eq!(v("something 0.9.143"), None);
    assert_eq!(v(""), None);
    assert!((0, 9, 142) < MIN_NEXTEST && (0, 10, 0) > MIN_NEXTEST);
}

#[test]
fn nextest_configuration() {
    let parse = |text: &str| NextestConfig::parse(text, "n.toml");
    assert_eq!(
        parse("[profile.report.junit]\npath = \"j.xml\"\n").unwrap(),
        NextestConfig {
            junit_path: "j.xml".into(),
            store_dir: None,
        }
    );
    assert_eq!(
        parse("[store]\ndir = \"out\"\n[profile.report.junit]\npath = \"j.xml\"\n")
            .unwrap()
            .store_dir
            .as_deref(),
        Some("out")
    );
    let missing = "n.toml has no [profile.report.junit] path: test-report reads the JUnit file \
                   nextest writes there";
    for text in [
        "",
        "[profile.report]\nfail-fast = false\n",
        "[profile.ci.junit]\npath = \"j\"\n",
    ] {
        assert_eq!(parse(text).unwrap_err().to_string(), missing, "{text:?}");
    }
    assert_eq!(
        parse("[profile.report.junit]\npath = 3\n")
            .unwrap_err()
            .to_string(),
        missing
    );
    assert!(
        parse("[profile")
            .unwrap_err()
            .to_string()
            .starts_with("n.toml is not valid TOML")
    );
}

#[test]
fn verdicts_and_exit_codes() {
    let totals = |passed, failed, skipped| Totals {
        passed,
        failed,
        flaky: 0,
        skipped,
    };
    assert_eq!(
        verdict(true, Some(100), totals(3, 2, 1)),
        "FAILED: 2 of 5 tests failed"
    );
    assert_eq!(
        verdict(true, Some(0), totals(3, 0, 1)),
        "passed: 3 tests ran, none failed"
    );
    assert_eq!(
        verdict(true, Some(100), totals(0, 1, 0)),
        "FAILED: 1 of 1 test failed"
    );
    assert_eq!(
        verdict(true, Some(0), totals(1, 0, 0)),
        "passed: 1 test ran, none failed"
    );
    assert_eq!(
        verdict(true, Some(4), totals(0, 0, 0)),
        "FAILED: no test failed, but cargo-nextest exited with code 4"
    );
    assert_eq!(
        verdict(false, Some(96), Totals::default()),
        "FAILED: no tests ran: cargo-nextest stopped before running them (cargo-nextest exit code 96)"
    );
    assert_eq!(
        verdict(false, None, Totals::default()),
        "FAILED: no tests ran: cargo-nextest was ended by a signal"
    );

    let summary = |nextest_code, totals| Summary {
        totals,
        seconds: Some(2.5),
        nextest_code,
        ran: true,
        verdict: "v".into(),
        report: PathBuf::new(),
        output: None,
    };
    assert_eq!(summary(Some(0), totals(2, 0, 0)).exit_code(), 0);
    assert_eq!(summary(Some(100), totals(1, 1, 0)).exit_code(), 100);
    assert_eq!(summary(Some(101), Totals::default()).exit_code(), 101);
    // Never success while a test failed, nor when nextest did not finish.
    assert_eq!(summary(Some(0), totals(1, 1, 0)).exit_code(), 1);
    assert_eq!(summary(None, totals(2, 0, 0)).exit_code(), 1);
    assert_eq!(
        summary(Some(100), totals(1, 1, 3)).line(),
        "v (1 passed, 1 failed, 0 flaky, 3 skipped) in 2.500 s"
    );
    let not_run = Summary {
        ran: false,
        ..summary(Some(101), Totals::default())
    };
    assert_eq!(not_run.line(), "v");
}

#[test]
fn utc_dates() {
    let at = |secs| utc(UNIX_EPOCH + Duration::from_secs(secs));
    assert_eq!(at(0), "1970-01-01T00:00:00Z");
    assert_eq!(at(1_700_000_000), "2023-11-14T22:13:20Z");
    assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
    assert_eq!(at(4_107_542_399), "2100-02-28T23:59:59Z");
    assert_eq!(
        utc(UNIX_EPOCH - Duration::from_secs(1)),
        "1970-01-01T00:00:00Z"
    );
}
