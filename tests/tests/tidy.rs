//! Tidy checks over the source tree, run as ordinary tests: crate dependencies point
//! down only, every Rust file starts with a `//!` doc, no test is marked ignored, and
//! the library code of the crates below `dht-core` never reads a clock (their tests may
//! take an arbitrary instant as a starting point).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The workspace crates each library or binary crate may depend on (any kind of
/// dependency). Crates of one level never depend on each other.
fn allowed_edges() -> BTreeMap<&'static str, BTreeSet<&'static str>> {
    let level1 = ["dht-id"];
    let core = [
        "dht-id",
        "dht-wire",
        "dht-routing",
        "dht-storage",
        "dht-security",
    ];
    let api = ["dht-core", "dht-id", "dht-wire"];
    let bins = ["dht-api", "dht-core", "dht-id", "dht-wire"];
    BTreeMap::from([
        ("dht-id", BTreeSet::new()),
        ("dht-wire", level1.into()),
        ("dht-routing", level1.into()),
        ("dht-storage", level1.into()),
        ("dht-security", level1.into()),
        ("dht-core", core.into()),
        ("dht-api", api.into()),
        ("dht-node", bins.into()),
        ("dht-bootstrap", bins.into()),
        ("dht-cli", bins.into()),
        (
            "dht-bench",
            [
                "dht-api",
                "dht-core",
                "dht-id",
                "dht-security",
                "dht-storage",
                "dht-wire",
            ]
            .into(),
        ),
        // The fuzz checks read what crosses the process boundary: the codecs, and a
        // peer's certificate and identity proof.
        ("dht-fuzz", ["dht-id", "dht-security", "dht-wire"].into()),
        // The simulation reuses the benchmark's latency summaries and counters; its
        // eclipse attacker mints ids and speaks peer messages.
        (
            "dht-sim",
            ["dht-bench", "dht-core", "dht-security", "dht-wire"].into(),
        ),
    ])
}

#[test]
fn crate_dependencies_point_down() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(workspace_root())
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let packages = metadata["packages"].as_array().expect("packages");
    let members: BTreeSet<String> = packages
        .iter()
        .filter_map(|p| p["name"].as_str().map(str::to_string))
        .collect();
    let allowed = allowed_edges();
    let mut violations = Vec::new();
    for package in packages {
        let name = package["name"].as_str().expect("name");
        if name == "dht-tests" || name == "xtask" {
            continue;
        }
        let Some(allowed_here) = allowed.get(name) else {
            violations.push(format!(
                "{name}: a new crate: add it to the tidy test's allowed edges"
            ));
            continue;
        };
        for dep in package["dependencies"].as_array().expect("dependencies") {
            let dep_name = dep["name"].as_str().expect("dependency name");
            // The test-support package may serve any crate's own tests.
            if dep_name == "dht-tests" && dep["kind"].as_str() == Some("dev") {
                continue;
            }
            if members.contains(dep_name) && !allowed_here.contains(dep_name) {
                violations.push(format!("{name} depends on {dep_name}"));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "forbidden crate edges:\n{}",
        violations.join("\n")
    );
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n == "target") {
                continue;
            }
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn sources(top: &[&str]) -> Vec<PathBuf> {
    let root = workspace_root();
    let mut files = Vec::new();
    for dir in top {
        rust_files(&root.join(dir), &mut files);
    }
    assert!(!files.is_empty(), "no Rust files found under {top:?}");
    files
}

#[test]
fn every_file_starts_with_a_module_doc() {
    let missing: Vec<String> = sources(&["crates", "bins", "bench", "xtask", "tests"])
        .into_iter()
        .filter(|path| {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            !text.trim_start().starts_with("//!")
        })
        .map(|path| path.display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "files without a //! doc:\n{}",
        missing.join("\n")
    );
}

#[test]
fn no_ignored_tests() {
    let marker = ["#[", "ignore"].concat();
    let offenders: Vec<String> = sources(&["crates", "bins", "bench", "xtask", "tests"])
        .into_iter()
        .filter(|path| {
            std::fs::read_to_string(path)
                .unwrap_or_default()
                .contains(&marker)
        })
        .map(|path| path.display().to_string())
        .collect();
    assert!(
        offenders.is_empty(),
        "ignored tests in:\n{}",
        offenders.join("\n")
    );
}

#[test]
fn crates_below_core_never_read_the_clock() {
    let clocks = [
        ["Instant", "::now"].concat(),
        ["SystemTime", "::now"].concat(),
    ];
    let pure = [
        "crates/dht-id",
        "crates/dht-wire",
        "crates/dht-routing",
        "crates/dht-storage",
    ];
    let offenders: Vec<String> = sources(&pure)
        .into_iter()
        // Test code may read the clock: integration tests, and test modules kept in
        // their own `tests.rs` (declared under `#[cfg(test)]`).
        .filter(|path| path.components().all(|c| c.as_os_str() != "tests"))
        .filter(|path| path.file_name().is_some_and(|name| name != "tests.rs"))
        .filter(|path| {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let library_code = text.split("#[cfg(test)]").next().unwrap_or_default();
            clocks.iter().any(|c| library_code.contains(c.as_str()))
        })
        .map(|path| path.display().to_string())
        .collect();
    assert!(
        offenders.is_empty(),
        "clock reads below dht-core:\n{}",
        offenders.join("\n")
    );
}
