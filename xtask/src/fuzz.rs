//! `cargo xtask fuzz`: coverage-guided fuzzing of what a node reads from outside the
//! process, with cargo-fuzz (libFuzzer) on stable Rust. The targets are in `fuzz/`, the
//! checks they run in `crates/dht-fuzz`, the committed corpus in `fuzz/corpus/<target>/`
//! and every crash ever found in `fuzz/regressions/<target>/` (replayed by `cargo test`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

use crate::bench::workspace_root;

pub(crate) const USAGE: &str =
    "  fuzz [--seconds N] [--target api_stream|peer_stream|handshake] [--grow]
      Fuzz each target (default: all three) for N seconds (default 60) with cargo-fuzz
      (installed if missing), starting from fuzz/corpus/<target>/; print executions and
      coverage. A crash is copied to fuzz/regressions/<target>/ (so `cargo test` replays
      it from then on) and fails the command. --grow merges the inputs that found new
      coverage into the committed corpus.";

const TARGETS: [&str; 3] = ["api_stream", "peer_stream", "handshake"];

struct Options {
    seconds: u64,
    targets: Vec<&'static str>,
    grow: bool,
}

fn parse(args: &[&str]) -> anyhow::Result<Options> {
    let mut options = Options {
        seconds: 60,
        targets: TARGETS.to_vec(),
        grow: false,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match *arg {
            "--seconds" => {
                let value = args.next().context("--seconds needs a value")?;
                options.seconds =
                    value.parse().ok().filter(|s| *s > 0).with_context(|| {
                        format!("--seconds {value:?}: not a positive whole number")
                    })?;
            }
            "--target" => {
                let value = args.next().context("--target needs a value")?;
                let target = TARGETS.iter().find(|t| **t == *value).with_context(|| {
                    format!("--target {value:?}: the targets are {}", TARGETS.join(", "))
                })?;
                options.targets = vec![*target];
            }
            "--grow" => options.grow = true,
            other => bail!("unknown option {other:?}\n\n{USAGE}"),
        }
    }
    Ok(options)
}

/// Runs `cargo xtask fuzz ARGS`.
pub(crate) fn command(args: &[&str]) -> anyhow::Result<()> {
    let options = parse(args)?;
    let root = workspace_root()?;
    ensure_cargo_fuzz()?;
    let mut crashed = Vec::new();
    for target in &options.targets {
        let run = run_target(&root, target, options.seconds)?;
        println!(
            "fuzz {target}: {} executions in {} s ({} per second), coverage {} edges, {} inputs in corpus",
            run.executions,
            options.seconds,
            run.executions / options.seconds,
            run.coverage.as_deref().unwrap_or("?"),
            run.corpus.as_deref().unwrap_or("?"),
        );
        if let Some(kept) = run.crash {
            println!("fuzz {target}: CRASH, input kept as {}", kept.display());
            crashed.push(kept);
            continue;
        }
        if options.grow {
            grow_corpus(&root, target)?;
        }
    }
    if !crashed.is_empty() {
        bail!(
            "fuzzing found {} crash(es); each input is kept under fuzz/regressions and \
             replayed by `cargo test -p dht-fuzz` until fixed (see the logs in target/fuzz/)",
            crashed.len()
        );
    }
    Ok(())
}

fn ensure_cargo_fuzz() -> anyhow::Result<()> {
    let found = Command::new("cargo")
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return Ok(());
    }
    println!("installing cargo-fuzz (cargo install cargo-fuzz --locked)");
    let status = Command::new("cargo")
        .args(["install", "cargo-fuzz", "--locked"])
        .status()
        .context("running cargo install cargo-fuzz")?;
    if !status.success() {
        bail!("cargo install cargo-fuzz failed ({status})");
    }
    Ok(())
}

struct Run {
    executions: u64,
    coverage: Option<String>,
    corpus: Option<String>,
    crash: Option<PathBuf>,
}

/// The `cargo fuzz` arguments shared by a run and a merge: stable Rust (no sanitizer;
/// nothing under test has `unsafe`), with debug assertions (overflow checks) on.
fn cargo_fuzz(root: &Path, action: &str, target: &str) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(root).args([
        "fuzz",
        action,
        "--sanitizer",
        "none",
        "--debug-assertions",
        target,
    ]);
    cmd
}

fn run_target(root: &Path, target: &str, seconds: u64) -> anyhow::Result<Run> {
    // New inputs go to a scratch directory, read first; the committed corpus is read only.
    let scratch = root.join("target/fuzz/corpus").join(target);
    let logs = root.join("target/fuzz");
    std::fs::create_dir_all(&scratch).with_context(|| format!("creating {}", scratch.display()))?;
    let log_path = logs.join(format!("{target}.log"));
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    let artifacts = logs.join("artifacts").join(target);
    let _ = std::fs::remove_dir_all(&artifacts);
    std::fs::create_dir_all(&artifacts)
        .with_context(|| format!("creating {}", artifacts.display()))?;
    let status = cargo_fuzz(root, "run", target)
        .arg(&scratch)
        .arg(root.join("fuzz/corpus").join(target))
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .arg("-print_final_stats=1")
        .stdout(log.try_clone().context("log file")?)
        .stderr(log)
        .status()
        .context("running cargo fuzz")?;
    let text = std::fs::read_to_string(&log_path)
        .with_context(|| format!("reading {}", log_path.display()))?;
    let stat = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()))
    };
    let executions = stat("stat::number_of_executed_units:")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // The last status line, e.g. "#123456	DONE   cov: 812 ft: 2301 corp: 95/4210b ...".
    let last = text
        .lines()
        .rev()
        .find(|l| l.starts_with('#') && l.contains("cov:"));
    let field = |key: &str| {
        last.and_then(|l| {
            let mut words = l.split_whitespace();
            words.find(|w| *w == key)?;
            words.next().map(str::to_owned)
        })
    };
    let crash = first_file(&artifacts)?;
    if status.success() {
        return Ok(Run {
            executions,
            coverage: field("cov:"),
            corpus: field("corp:"),
            crash: None,
        });
    }
    let Some(found) = crash else {
        let tail: Vec<&str> = text.lines().rev().take(30).collect();
        bail!(
            "cargo fuzz {target} failed ({status}) without a crash input; end of {}:\n{}",
            log_path.display(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    };
    let regressions = root.join("fuzz/regressions").join(target);
    std::fs::create_dir_all(&regressions)
        .with_context(|| format!("creating {}", regressions.display()))?;
    let name = found.file_name().context("crash file name")?;
    let kept = regressions.join(name);
    std::fs::copy(&found, &kept).with_context(|| format!("copying {}", found.display()))?;
    Ok(Run {
        executions,
        coverage: field("cov:"),
        corpus: field("corp:"),
        crash: Some(kept),
    })
}

fn first_file(dir: &Path) -> anyhow::Result<Option<PathBuf>> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    for entry in entries {
        let path = entry
            .with_context(|| format!("reading {}", dir.display()))?
            .path();
        if path.is_file() {
            return Ok(Some(path));
        }
    }
    Ok(None)
}

/// Adds to the committed corpus only the scratch inputs that reach coverage it lacks
/// (libFuzzer's merge), so that it stays small.
fn grow_corpus(root: &Path, target: &str) -> anyhow::Result<()> {
    let status = cargo_fuzz(root, "run", target)
        .arg(root.join("fuzz/corpus").join(target))
        .arg(root.join("target/fuzz/corpus").join(target))
        .args(["--", "-merge=1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("running cargo fuzz run -merge=1")?;
    if !status.success() {
        bail!("merging the new inputs of {target} into fuzz/corpus failed ({status})");
    }
    Ok(())
}
