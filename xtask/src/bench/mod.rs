//! `cargo xtask bench [--quick] [--anchors]`: builds `dht-bench` in release mode (the
//! build does not count), runs it for networks of 20, 100 and 500 nodes (`--quick`: 20
//! nodes, few operations), with `--anchors` also builds and runs the anchors of
//! `../shared/anchors` at the same sizes and operation counts, and our throughput runs of
//! the same DHTs (`bench/anchors`), one after another in the same run, and prints one
//! table. Writes `target/bench/report.md`,
//! `target/bench/get-latency.svg` and, for a full run, `docs/BENCHMARKS.md`.

mod anchors;
mod plot;
mod report;
mod rows;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use crate::progress::Progress;
use report::{Machine, Network, Ours};

pub(crate) const USAGE: &str = "  bench [--quick] [--anchors] [--sizes N,N,...]
      Build dht-bench in release mode and measure networks of 20, 100 and 500 nodes
      on 127.0.0.1 (--quick: 20 nodes, few operations, about a minute; --sizes: only
      the sizes given, e.g. --sizes 100,500, with the full series); --anchors also
      runs ../shared/anchors (mainline, libp2p-kad, tcp/tls-pingpong) and the same
      DHTs' throughput (bench/anchors) in the same run.
      Prints one table; writes target/bench/report.md, target/bench/get-latency.svg
      and (full runs of the default sizes) docs/BENCHMARKS.md.";

/// The sizes of a full run.
const FULL_SIZES: [usize; 3] = [20, 100, 500];
/// The largest network one run measures.
const MAX_SIZE: usize = 2000;

/// The libp2p anchor's seeding mode: every node is given every other's address, like
/// mainline's seeded testnet.
const LIBP2P_SEED: &str = "full";

#[derive(Debug, PartialEq, Eq)]
struct Options {
    quick: bool,
    anchors: bool,
    /// `--sizes`: the network sizes to measure instead of the default ones.
    sizes: Option<Vec<usize>>,
}

impl Options {
    fn parse(args: &[&str]) -> anyhow::Result<Options> {
        let mut options = Options {
            quick: false,
            anchors: false,
            sizes: None,
        };
        let mut args = args.iter();
        while let Some(&arg) = args.next() {
            match arg {
                "--quick" => options.quick = true,
                "--anchors" => options.anchors = true,
                "--sizes" => {
                    let list = args.next().context("--sizes needs a list, e.g. 100,500")?;
                    options.sizes = Some(parse_sizes(list)?);
                }
                other => match other.strip_prefix("--sizes=") {
                    Some(list) => options.sizes = Some(parse_sizes(list)?),
                    None => bail!("bench: unknown option {other:?}\n\n{USAGE}"),
                },
            }
        }
        anyhow::ensure!(
            !(options.quick && options.sizes.is_some()),
            "--quick measures 20 nodes; --sizes gives the sizes of a full series: not both"
        );
        Ok(options)
    }

    /// The sizes to measure and the operations per series.
    fn plan(&self) -> (Vec<usize>, usize) {
        match (&self.sizes, self.quick) {
            (_, true) => (vec![20], 20),
            (Some(sizes), false) => (sizes.clone(), 200),
            (None, false) => (FULL_SIZES.to_vec(), 200),
        }
    }

    /// Whether the run is the full default one, whose table docs/BENCHMARKS.md keeps.
    fn is_full(&self) -> bool {
        !self.quick && self.sizes.as_ref().is_none_or(|s| s[..] == FULL_SIZES[..])
    }
}

/// `100,500` → [100, 500]: sizes of 2 to 2000 nodes, each once.
fn parse_sizes(list: &str) -> anyhow::Result<Vec<usize>> {
    let mut sizes = Vec::new();
    for item in list.split(',') {
        let size: usize = item
            .trim()
            .parse()
            .with_context(|| format!("--sizes {list:?}: {item:?} is not a number"))?;
        anyhow::ensure!(
            (2..=MAX_SIZE).contains(&size),
            "--sizes {list:?}: {size} is not between 2 and {MAX_SIZE}"
        );
        anyhow::ensure!(!sizes.contains(&size), "--sizes {list:?}: {size} twice");
        sizes.push(size);
    }
    Ok(sizes)
}

/// Runs `cargo xtask bench ARGS`.
pub(crate) fn command(args: &[&str]) -> anyhow::Result<()> {
    let options = Options::parse(args)?;
    let root = workspace_root()?;
    let out_dir = root.join("target/bench");
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let (sizes, ops) = options.plan();
    let bench = build_release(&root, "dht-bench")?;
    let anchor_bins = if options.anchors {
        Some(build_anchors(&root)?)
    } else {
        None
    };
    let mut nets = Vec::new();
    let mut anchor_notes = Vec::new();
    // Each size runs ours and, with --anchors, the two anchors; then the floor.
    let per_size = if anchor_bins.is_some() { 3 } else { 1 };
    let steps = sizes.len() * per_size + usize::from(anchor_bins.is_some());
    let mut progress = Progress::new("bench steps", steps);
    for &n in &sizes {
        let ours = progress.suspend(|| run_ours(&root, &bench, n, ops, options.quick));
        progress.inc();
        if let Err(e) = &ours {
            eprintln!("dht-bench at N={n}: {e}");
        }
        let (mainline, libp2p) = match &anchor_bins {
            Some(bins) => {
                let args = vec![n.to_string(), ops.to_string()];
                // The throughput anchors: the window and connection counts of ours.
                let secs = if options.quick { "1" } else { "3" };
                let tput_args = [n.to_string(), secs.to_string(), "1,8,64".to_string()];
                progress.println(&format!("mainline-bench {n} {ops}, mainline-tput {n}..."));
                let m = progress.suspend(|| {
                    let latency = (&bins.mainline, &args[..], anchors::parse_mainline as _);
                    let throughput = (&bins.mainline_tput, &tput_args[..]);
                    run_dht_anchor("mainline", n, &out_dir, latency, throughput)
                });
                progress.inc();
                let mut args = args;
                args.push(LIBP2P_SEED.into());
                progress.println(&format!(
                    "libp2p-kad-bench {n} {ops} {LIBP2P_SEED}, libp2p-kad-tput {n}..."
                ));
                let l = progress.suspend(|| {
                    let latency = (&bins.libp2p, &args[..], anchors::parse_libp2p as _);
                    let throughput = (&bins.libp2p_tput, &tput_args[..]);
                    run_dht_anchor("libp2p", n, &out_dir, latency, throughput)
                });
                progress.inc();
                for (name, note) in [("mainline", &m.1), ("libp2p", &l.1)] {
                    if let Some(note) = note {
                        anchor_notes.push(format!("- N={n}, {name}: {note}\n"));
                    }
                }
                (Some(m.0), Some(l.0))
            }
            None => (None, None),
        };
        nets.push(Network {
            n,
            ours,
            mainline,
            libp2p,
        });
    }
    let floor = anchor_bins.as_ref().map(|bins| {
        progress.println("tcp-pingpong, tls-pingpong...");
        let floor = progress.suspend(|| {
            let tcp = run_anchor(
                &bins.tcp,
                &[],
                &out_dir.join("tcp-pingpong.txt"),
                anchors::parse_tcp,
            );
            let tls = run_anchor(
                &bins.tls,
                &[],
                &out_dir.join("tls-pingpong.txt"),
                anchors::parse_tls,
            );
            (tcp, tls)
        });
        progress.inc();
        floor
    });
    progress.finish();
    let machine = machine(&root);
    let floor_refs = floor.as_ref().map(|(t, l)| (Some(t), Some(l)));
    let mut extra = BTreeMap::new();
    extra.insert(
        "What ran where".to_string(),
        notes(&nets) + &anchor_notes.concat(),
    );
    let text = report::markdown(&nets, LIBP2P_SEED, floor_refs, &machine, &extra);
    println!("{text}");
    let report_path = out_dir.join("report.md");
    let sizes_flag = match &options.sizes {
        Some(sizes) => format!(
            " --sizes {}",
            sizes
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(",")
        ),
        None => String::new(),
    };
    let heading = format!(
        "# cargo xtask bench{}{}{sizes_flag}\n\n",
        if options.quick { " --quick" } else { "" },
        if options.anchors { " --anchors" } else { "" }
    );
    write(&report_path, &format!("{heading}{text}"))?;
    let svg = out_dir.join("get-latency.svg");
    plot::write(&svg, &nets, LIBP2P_SEED)?;
    eprintln!("wrote {} and {}", report_path.display(), svg.display());
    if options.is_full() {
        let doc = root.join("docs/BENCHMARKS.md");
        let previous = std::fs::read_to_string(&doc).unwrap_or_default();
        write(&doc, &benchmarks_doc(&text, options.anchors, &previous))?;
        eprintln!("wrote {}", doc.display());
    }
    Ok(())
}

/// The line of docs/BENCHMARKS.md after which the text is written by hand (the heap
/// breakdown, measurements the bench does not take): a full run keeps it.
const HAND_WRITTEN: &str = "<!-- Written by hand from here on: `cargo xtask bench` keeps it. -->";

/// docs/BENCHMARKS.md for a full run's table `text`, keeping the hand-written part of
/// the `previous` file.
fn benchmarks_doc(text: &str, anchors: bool, previous: &str) -> String {
    let kept = previous
        .find(HAND_WRITTEN)
        .map(|at| format!("\n{}", &previous[at..]))
        .unwrap_or_default();
    format!(
        "# Benchmarks\n\n\
         The latest full `cargo xtask bench{}` (written by it; `--quick` runs leave this file \
         alone). Figures from different runs or machines are not comparable: the anchors \
         (mainline, libp2p) ran in the same run on the same machine. What each figure means: \
         `bench/src/driver.rs` and `bench/src/measure.rs`; the plot of the GET latency \
         distributions is written to `target/bench/get-latency.svg`.\n\n{text}{kept}",
        if anchors { " --anchors" } else { "" }
    )
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// Builds the binary of workspace package `package` in release mode; its path.
pub(crate) fn build_release(root: &Path, package: &str) -> anyhow::Result<PathBuf> {
    eprintln!("building {package} (release)...");
    let status = Command::new(cargo())
        .args(["build", "--release", "--quiet", "-p", package])
        .current_dir(root)
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("building {package} failed ({status})");
    }
    Ok(root.join("target/release").join(package))
}

pub(crate) fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

pub(crate) fn workspace_root() -> anyhow::Result<PathBuf> {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .map(Path::to_path_buf)
        .context("xtask has no parent folder")
}

fn run_ours(root: &Path, bench: &Path, n: usize, ops: usize, quick: bool) -> Result<Ours, String> {
    eprintln!("dht-bench run --nodes {n} --ops {ops}...");
    let out = root.join(format!("target/bench/ours-n{n}.json"));
    let _ = std::fs::remove_file(&out);
    let mut command = Command::new(bench);
    command
        .args(["run", "--nodes", &n.to_string(), "--ops", &ops.to_string()])
        .arg("--out")
        .arg(&out)
        .arg("--work-dir")
        .arg(root.join("target/bench/work"))
        .current_dir(root);
    if quick {
        command.args(["--idle-secs", "2", "--throughput-secs", "1"]);
    }
    let started = std::time::Instant::now();
    let status = command
        .status()
        .map_err(|e| format!("dht-bench did not start: {e}"))?;
    if !status.success() {
        return Err(format!("dht-bench failed ({status})"));
    }
    eprintln!("dht-bench at N={n} took {:.1?}", started.elapsed());
    let text = std::fs::read_to_string(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", out.display()))
}

struct AnchorBins {
    mainline: Result<PathBuf, String>,
    libp2p: Result<PathBuf, String>,
    /// Their throughput runs (`bench/anchors`).
    mainline_tput: Result<PathBuf, String>,
    libp2p_tput: Result<PathBuf, String>,
    tcp: Result<PathBuf, String>,
    tls: Result<PathBuf, String>,
}

fn build_anchors(root: &Path) -> anyhow::Result<AnchorBins> {
    let dir = anchors::anchors_dir(root)?;
    let ours = anchors::throughput_anchors_dir(root);
    eprintln!("building the anchors (release, target/anchors)...");
    Ok(AnchorBins {
        mainline: anchors::build(root, &dir, "mainline", "mainline-bench"),
        libp2p: anchors::build(root, &dir, "libp2p-kad", "libp2p-kad-bench"),
        tcp: anchors::build(root, &dir, "tcp-pingpong", "tcp-pingpong"),
        tls: anchors::build(root, &dir, "tls-pingpong", "tls-pingpong"),
        mainline_tput: anchors::build(root, &ours, "mainline-tput", "mainline-tput"),
        libp2p_tput: anchors::build(root, &ours, "libp2p-kad-tput", "libp2p-kad-tput"),
    })
}

/// An anchor binary and its arguments, with the parser of what it prints.
type LatencyRun<'a> = (
    &'a Result<PathBuf, String>,
    &'a [String],
    fn(&str) -> anchors::Figures,
);

/// Anchor DHT `name` at `n` nodes: its latency run (`../shared/anchors`), then its
/// throughput run (`bench/anchors`), their outputs in `out_dir/<name>[-tput]-n<n>.txt`,
/// figures merged as [`anchors::with_throughput`] does.
fn run_dht_anchor(
    name: &str,
    n: usize,
    out_dir: &Path,
    (binary, args, parse): LatencyRun<'_>,
    (tput_binary, tput_args): (&Result<PathBuf, String>, &[String]),
) -> (anchors::Figures, Option<String>) {
    let latency = run_anchor(
        binary,
        args,
        &out_dir.join(format!("{name}-n{n}.txt")),
        parse,
    );
    let throughput = run_anchor(
        tput_binary,
        tput_args,
        &out_dir.join(format!("{name}-tput-n{n}.txt")),
        anchors::parse_tput,
    );
    anchors::with_throughput(latency, throughput)
}

fn run_anchor(
    binary: &Result<PathBuf, String>,
    args: &[String],
    out: &Path,
    parse: fn(&str) -> anchors::Figures,
) -> anchors::Figures {
    let binary = binary.as_ref().map_err(Clone::clone)?;
    let text = anchors::run(binary, args, out)?;
    parse(&text)
}

fn notes(nets: &[Network]) -> String {
    let mut out = String::new();
    for net in nets {
        match &net.ours {
            Ok(ours) => {
                for note in &ours.notes {
                    out.push_str(&format!("- N={}, {} ops: {note}\n", ours.n, ours.ops));
                }
            }
            Err(reason) => out.push_str(&format!(
                "- N={}: dht-bench gave no figures: {reason}\n",
                net.n
            )),
        }
    }
    out.push_str(
        "- Anchors: mainline-bench N OPS (a seeded Testnet of N nodes plus a writer and a late \
         reader, replication 20 by design); libp2p-kad-bench N OPS full (every node seeded with \
         every address; replication 20; GET = the first record). Each runs alone, one after \
         another, after our run at the same N. Their GET/PUT rows compare with our r=20 rows; \
         they run only replication 20, so the r=3 rows show the same anchor figure. Their \
         throughput rows come from bench/anchors (mainline-tput and libp2p-kad-tput N SECS \
         1,8,64): one node with C requests in flight for the window of ours, PUTs of fresh \
         keys (mainline put_immutable; libp2p put_record with Quorum::One, its store bound \
         raised from 1,024 to our 100,000 records), then GETs of the last 200 of them, in \
         turn, by a node that joined after them (a lookup each; libp2p's query is finished \
         at its first record). Both count only successes.\n",
    );
    out
}

fn machine(root: &Path) -> Machine {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let cpu_model = read("/proc/cpuinfo")
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let output = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .current_dir(root)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    // The file a full run writes is no change to the code measured.
    let dirty = !output(
        "git",
        &[
            "status",
            "--porcelain",
            "--untracked-files=no",
            "--",
            ".",
            ":!docs/BENCHMARKS.md",
        ],
    )
    .is_empty();
    Machine {
        cpus: std::thread::available_parallelism().map_or(0, usize::from),
        cpu_model,
        kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
        date: output("date", &["-u", "+%Y-%m-%d %H:%M"]),
        commit: format!(
            "{}{}",
            output("git", &["rev-parse", "--short", "HEAD"]),
            if dirty { " + uncommitted changes" } else { "" }
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_run_keeps_the_hand_written_part_of_the_doc() {
        let previous = format!("# Benchmarks\n\nold table\n{HAND_WRITTEN}\n\n## Heap\n\nbytes\n");
        let doc = benchmarks_doc("new table\n", true, &previous);
        assert!(doc.contains("new table\n\n<!-- Written by hand"), "{doc}");
        assert!(doc.ends_with("## Heap\n\nbytes\n"));
        assert!(!doc.contains("old table"));
        assert!(!benchmarks_doc("new table\n", true, "old").contains("old"));
    }

    #[test]
    fn sizes_quick_and_full_runs() {
        let parse = |args: &[&str]| Options::parse(args);
        let full = parse(&[]).unwrap();
        assert_eq!(full.plan(), (vec![20, 100, 500], 200));
        assert!(full.is_full());
        let quick = parse(&["--quick", "--anchors"]).unwrap();
        assert_eq!(quick.plan(), (vec![20], 20));
        assert!(!quick.is_full() && quick.anchors);
        let some = parse(&["--sizes", "100,500", "--anchors"]).unwrap();
        assert_eq!(some.plan(), (vec![100, 500], 200));
        assert!(
            !some.is_full(),
            "a partial run leaves docs/BENCHMARKS.md alone"
        );
        assert!(parse(&["--sizes=20,100,500"]).unwrap().is_full());
        for bad in [
            &["--sizes"][..],
            &["--sizes", "100,x"],
            &["--sizes", "1"],
            &["--sizes", "100,100"],
            &["--sizes", "2001"],
            &["--quick", "--sizes", "100"],
            &["--fast"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
