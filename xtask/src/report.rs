//! `cargo xtask test-report`: runs the whole test suite under cargo-nextest and turns
//! the JUnit file it writes into `target/report/index.html`.
//!
//! Stable libtest has no machine-readable output; nextest's JUnit file has every test
//! with its binary, outcome, duration and, for failures, the output. The run uses the
//! `report` profile of the workspace's `.config/nextest.toml` (no fail-fast, skipped
//! tests listed) and points nextest's store folder, where the file lands, at the
//! target folder. Our exit code is nextest's, after the report is written: a failed
//! test or a failed build is never hidden behind a written report.

mod html;
mod junit;

use std::ffi::OsString;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail, ensure};

use crate::layout::Layout;
use junit::Totals;

/// Usage of the `test-report` command.
pub(crate) const USAGE: &str = "  test-report [-- <cargo nextest run arguments>]
      Run every test of the workspace with cargo-nextest (the `report` profile of
      .config/nextest.toml: no fail-fast) and write target/report/index.html: totals,
      each failure with its output, and every test with its crate, outcome and duration.
      Exits with nextest's status: non-zero when a test failed or the tests did not
      build. Arguments after -- go to `cargo nextest run`, e.g. a filter:
      cargo xtask test-report -- -E 'package(dht-id)'. Needs cargo-nextest 0.9.143 or
      later (cargo install cargo-nextest --locked).";

/// The nextest profile the report runs with.
const PROFILE: &str = "report";
/// The first cargo-nextest with `junit.report-skipped`, which lists skipped tests.
const MIN_NEXTEST: (u64, u64, u64) = (0, 9, 143);
/// What to do with nextest's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Echo {
    /// Stream it to our terminal as it comes.
    Terminal,
    /// Keep it in [`Summary::output`], out of the terminal of `cargo test`.
    #[cfg_attr(not(test), expect(dead_code, reason = "only the tests capture"))]
    Capture,
}

/// The outcome of one `run_report`.
#[derive(Debug)]
pub(crate) struct Summary {
    /// How many tests passed, failed, were flaky or skipped.
    pub(crate) totals: Totals,
    /// Wall-clock time of the test run, when tests ran.
    pub(crate) seconds: Option<f64>,
    /// cargo-nextest's exit code; `None` when a signal ended it.
    pub(crate) nextest_code: Option<i32>,
    /// Whether nextest got as far as running tests (it wrote its JUnit file).
    pub(crate) ran: bool,
    /// The verdict in one line, as the report's title says it.
    pub(crate) verdict: String,
    /// The report written.
    pub(crate) report: PathBuf,
    /// nextest's stdout and stderr, with [`Echo::Capture`].
    #[cfg_attr(not(test), expect(dead_code, reason = "only the tests capture"))]
    pub(crate) output: Option<String>,
}

impl Summary {
    /// Our exit code: nextest's when it failed; 1 when a signal ended it or it
    /// succeeded although a test failed (a failure is never turned into success).
    pub(crate) fn exit_code(&self) -> i32 {
        match self.nextest_code {
            Some(0) if self.totals.failed == 0 => 0,
            Some(0) | None => 1,
            Some(code) => code,
        }
    }

    /// The totals line printed at the end.
    pub(crate) fn line(&self) -> String {
        if !self.ran {
            return self.verdict.clone();
        }
        let t = self.totals;
        let time = self
            .seconds
            .map_or_else(String::new, |s| format!(" in {}", html::total_time(s)));
        format!(
            "{} ({} passed, {} failed, {} flaky, {} skipped){time}",
            self.verdict, t.passed, t.failed, t.flaky, t.skipped
        )
    }
}

/// `cargo xtask test-report [-- args]`. Exits the process with nextest's code when
/// the run failed, after printing where the report is.
pub(crate) fn command(args: &[&str]) -> anyhow::Result<()> {
    let extra = parse_args(args)?;
    let layout = Layout::new()?;
    let out = layout.target.join("report");
    let summary = run_report(&layout.root, &layout.target, &out, &extra)?;
    println!();
    println!("report: {}", layout.show(&summary.report));
    println!("{}", summary.line());
    if !summary.ran {
        eprintln!("cargo-nextest ran no tests: its output above says why");
    }
    let code = summary.exit_code();
    if code != 0 {
        // `exit` skips destructors: flush what was printed first.
        let _ = std::io::stdout().flush();
        let _ = std::io::stderr().flush();
        std::process::exit(code);
    }
    Ok(())
}

/// The arguments after `test-report`: nothing, or `--` and arguments for nextest.
fn parse_args(args: &[&str]) -> anyhow::Result<Vec<String>> {
    match args {
        [] => Ok(Vec::new()),
        ["--", rest @ ..] => Ok(rest.iter().map(|a| a.to_string()).collect()),
        [other, ..] => bail!(
            "test-report: unexpected argument {other:?} (arguments for cargo nextest run go after --)"
        ),
    }
}

/// Runs the tests of the workspace at `workspace` with cargo-nextest, building into
/// `target`, with `extra_args` appended to `cargo nextest run`, and writes
/// `out_dir/index.html`. An error means no report could be written; failed tests and
/// a failed build are a [`Summary`] with a non-zero [`Summary::exit_code`].
pub(crate) fn run_report(
    workspace: &Path,
    target: &Path,
    out_dir: &Path,
    extra_args: &[String],
) -> anyhow::Result<Summary> {
    run(workspace, target, out_dir, extra_args, Echo::Terminal)
}

/// [`run_report`], with the choice of where nextest's output goes.
pub(crate) fn run(
    workspace: &Path,
    target: &Path,
    out_dir: &Path,
    extra_args: &[String],
    echo: Echo,
) -> anyhow::Result<Summary> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    check_nextest(&cargo)?;
    let config_file = workspace.join(".config").join("nextest.toml");
    let config_text = fs::read_to_string(&config_file)
        .with_context(|| format!("reading {}", config_file.display()))?;
    let config = NextestConfig::parse(&config_text, &config_file.display().to_string())?;
    fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;

    // nextest puts its store under the workspace's target/ whatever CARGO_TARGET_DIR
    // says; a tool configuration moves it to our target folder, unless the workspace
    // chose a folder itself (its configuration wins over a tool's).
    let (store, tool_config) = match &config.store_dir {
        Some(dir) => (workspace.join(dir), None),
        None => {
            let store = target.join("nextest");
            let file = out_dir.join("nextest-store.toml");
            let store_text = store
                .to_str()
                .with_context(|| format!("{} is not UTF-8", store.display()))?;
            let text = format!(
                "# Written by cargo xtask test-report: nextest's store in the target folder.\n\
                 [store]\ndir = {}\n",
                toml::Value::String(store_text.to_string())
            );
            fs::write(&file, text).with_context(|| format!("writing {}", file.display()))?;
            (store, Some(file))
        }
    };
    let junit_file = store.join(PROFILE).join(&config.junit_path);
    let report = out_dir.join("index.html");
    // Files of an earlier run must not pass for this one's, even if this one fails
    // before writing its own.
    for file in [&junit_file, &report] {
        match fs::remove_file(file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("removing {}", file.display()));
            }
            _ => {}
        }
    }

    let args = nextest_args(tool_config.as_deref(), extra_args)?;
    let shown_command = format!(
        "cargo {}",
        args.iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let mut command = Command::new(&cargo);
    command
        .current_dir(workspace)
        .args(&args)
        .env("CARGO_TARGET_DIR", target);
    let (status, output) = match echo {
        Echo::Terminal => (command.status(), None),
        Echo::Capture => match command.output() {
            Ok(o) => {
                let mut text = String::from_utf8_lossy(&o.stdout).into_owned();
                text += &String::from_utf8_lossy(&o.stderr);
                (Ok(o.status), Some(text))
            }
            Err(e) => (Err(e), None),
        },
    };
    let status = status.with_context(|| format!("running {shown_command}"))?;
    let nextest_code = status.code();

    let run = if junit_file.is_file() {
        let text = fs::read_to_string(&junit_file)
            .with_context(|| format!("reading {}", junit_file.display()))?;
        Some(junit::parse(&text, &junit_file.display().to_string())?)
    } else {
        ensure!(
            !status.success(),
            "cargo-nextest succeeded but wrote no JUnit file at {}",
            junit_file.display()
        );
        None
    };
    let mut tests = run.as_ref().map(|r| r.tests.clone()).unwrap_or_default();
    tests.sort_by(|a, b| (&a.binary, &a.name).cmp(&(&b.binary, &b.name)));
    let totals = Totals::of(&tests);
    let seconds = run.as_ref().and_then(|r| r.seconds);
    let verdict = verdict(run.is_some(), nextest_code, totals);
    let date = run
        .as_ref()
        .and_then(|r| r.started.clone())
        .unwrap_or_else(|| utc(SystemTime::now()));
    let page = html::render(&html::Page {
        tests: &tests,
        totals,
        seconds,
        verdict: &verdict,
        ok: nextest_code == Some(0) && totals.failed == 0,
        date: &date,
        commit: &commit(workspace),
        command: &shown_command,
    });
    fs::write(&report, page).with_context(|| format!("writing {}", report.display()))?;
    Ok(Summary {
        totals,
        seconds,
        nextest_code,
        ran: run.is_some(),
        verdict,
        report,
        output,
    })
}

/// What test-report needs from the workspace's nextest configuration.
#[derive(Debug, PartialEq, Eq)]
struct NextestConfig {
    /// `[profile.report.junit] path`, relative to the profile's store folder.
    junit_path: String,
    /// `[store] dir`, relative to the workspace, when set.
    store_dir: Option<String>,
}

impl NextestConfig {
    /// Reads the text of `.config/nextest.toml`; `file` names it in errors.
    fn parse(text: &str, file: &str) -> anyhow::Result<NextestConfig> {
        let table: toml::Table =
            toml::from_str(text).with_context(|| format!("{file} is not valid TOML"))?;
        let string = |path: &[&str]| {
            let (first, rest) = path.split_first()?;
            let value = rest
                .iter()
                .try_fold(table.get(*first)?, |v, key| v.get(key))?;
            value.as_str().map(str::to_string)
        };
        let Some(junit_path) = string(&["profile", PROFILE, "junit", "path"]) else {
            bail!(
                "{file} has no [profile.{PROFILE}.junit] path: test-report reads the JUnit file \
                 nextest writes there"
            );
        };
        Ok(NextestConfig {
            junit_path,
            store_dir: string(&["store", "dir"]),
        })
    }
}

/// Fails with one line telling how to install cargo-nextest when it is missing or
/// older than [`MIN_NEXTEST`].
fn check_nextest(cargo: &OsString) -> anyhow::Result<()> {
    const INSTALL: &str = "cargo install cargo-nextest --locked";
    let output = Command::new(cargo)
        .args(["nextest", "--version"])
        .output()
        .with_context(|| format!("running {} nextest --version", cargo.to_string_lossy()))?;
    ensure!(
        output.status.success(),
        "cargo-nextest is not installed (`cargo nextest --version` failed): install it with `{INSTALL}`"
    );
    let text = String::from_utf8_lossy(&output.stdout);
    let Some(version) = nextest_version(&text) else {
        bail!("cannot read the version of cargo-nextest from {text:?}");
    };
    let (major, minor, patch) = MIN_NEXTEST;
    ensure!(
        version >= MIN_NEXTEST,
        "cargo-nextest {}.{}.{} is too old: test-report needs {major}.{minor}.{patch} or later \
         (`{INSTALL}`)",
        version.0,
        version.1,
        version.2
    );
    Ok(())
}

/// The version in the output of `cargo nextest --version`
/// ("cargo-nextest 0.9.143 (60fa45f63 2026-08-04)").
fn nextest_version(text: &str) -> Option<(u64, u64, u64)> {
    let mut words = text.split_whitespace();
    if words.next()? != "cargo-nextest" {
        return None;
    }
    let core = words.next()?.split(['-', '+']).next()?;
    let mut parts = core.split('.').map(|p| p.parse::<u64>().ok());
    Some((parts.next()??, parts.next()??, parts.next()??))
}

/// The arguments of `cargo` for the run: the profile, the store, the whole workspace
/// (unless `extra` chooses packages: nextest would run every package despite them)
/// and no fail-fast (unless `extra` says so already: nextest refuses a flag twice),
/// then `extra`.
fn nextest_args(tool_config: Option<&Path>, extra: &[String]) -> anyhow::Result<Vec<OsString>> {
    // After a `--`, arguments are for the test binaries.
    let own = extra.split(|a| a == "--").next().unwrap_or_default();
    if let Some(profile) = own
        .iter()
        .find(|a| *a == "--profile" || a.starts_with("--profile=") || a.starts_with("-P"))
    {
        bail!("test-report runs nextest's {PROFILE:?} profile itself: drop {profile:?}");
    }
    let mut args: Vec<OsString> = ["nextest", "run", "--profile", PROFILE]
        .into_iter()
        .map(OsString::from)
        .collect();
    if let Some(file) = tool_config {
        let mut spec = OsString::from("xtask:");
        spec.push(file);
        args.extend([OsString::from("--tool-config-file"), spec]);
    }
    let given = |flags: &[&str]| own.iter().any(|a| flags.contains(&a.as_str()));
    let packages = own
        .iter()
        .any(|a| a.starts_with("-p") || a == "--package" || a.starts_with("--package="));
    if !packages && !given(&["--workspace", "--all"]) {
        args.push("--workspace".into());
    }
    if !given(&["--no-fail-fast"]) {
        args.push("--no-fail-fast".into());
    }
    args.extend(extra.iter().map(OsString::from));
    Ok(args)
}

/// The report's verdict in one line.
fn verdict(ran: bool, nextest_code: Option<i32>, totals: Totals) -> String {
    let run = totals.total() - totals.skipped;
    if !ran {
        let why = match nextest_code {
            Some(101) => "building the tests failed",
            Some(102) => "cargo metadata failed",
            Some(104) => "listing the tests failed",
            Some(105) => "a setup script failed",
            Some(_) => "cargo-nextest stopped before running them",
            None => "cargo-nextest was ended by a signal",
        };
        let code =
            nextest_code.map_or_else(String::new, |c| format!(" (cargo-nextest exit code {c})"));
        return format!("FAILED: no tests ran: {why}{code}");
    }
    match nextest_code {
        _ if totals.failed > 0 => format!("FAILED: {} of {} failed", totals.failed, n_tests(run)),
        Some(0) => format!("passed: {} ran, none failed", n_tests(run)),
        Some(code) => format!("FAILED: no test failed, but cargo-nextest exited with code {code}"),
        None => "FAILED: cargo-nextest was ended by a signal".to_string(),
    }
}

/// "1 test", "2 tests".
fn n_tests(n: usize) -> String {
    if n == 1 {
        "1 test".to_string()
    } else {
        format!("{n} tests")
    }
}

/// The commit tested, "unknown" outside a git checkout.
fn commit(workspace: &Path) -> String {
    let git = |args: &[&str]| {
        let output = Command::new("git")
            .current_dir(workspace)
            .args(args)
            .output()
            .ok()?;
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(hash) if !hash.is_empty() => {
            match git(&["status", "--porcelain", "--untracked-files=no"]) {
                Some(changes) if !changes.is_empty() => format!("{hash} with uncommitted changes"),
                _ => hash,
            }
        }
        _ => "unknown (not a git checkout)".to_string(),
    }
}

/// `time` as RFC 3339 in UTC, to the second.
fn utc(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Days since 1970-01-01 to a civil date (H. Hinnant's `civil_from_days`).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3_600,
        rest / 60 % 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests;
