//! Replays, on every `cargo test`, each fuzz target's committed corpus
//! (`fuzz/corpus/<target>/`) and every crash fuzzing ever found
//! (`fuzz/regressions/<target>/`, kept after the fix), through the same checks the
//! fuzzer runs.

use std::path::{Path, PathBuf};

fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz")
        .join(kind)
        .join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|entry| {
            entry
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .path()
        })
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

fn replay(kind: &str) -> usize {
    let mut count = 0;
    for target in dht_fuzz::TARGETS {
        for path in inputs(kind, target) {
            let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let outcome = std::panic::catch_unwind(|| dht_fuzz::run(target, &data));
            assert!(
                matches!(outcome, Ok(true)),
                "{target} fails on {}; reproduce with `cargo fuzz run {target} {}`",
                path.display(),
                path.display()
            );
            count += 1;
        }
    }
    count
}

#[test]
fn every_corpus_input_passes_the_checks() {
    let count = replay("corpus");
    // The seeds alone (crates/dht-fuzz/examples/seeds.rs) are 5 API, 12 peer and 1
    // handshake inputs: an empty or misplaced corpus must not pass unnoticed.
    assert!(
        count >= 18,
        "only {count} corpus inputs found under fuzz/corpus"
    );
    for target in dht_fuzz::TARGETS {
        assert!(
            !inputs("corpus", target).is_empty(),
            "no corpus for {target}"
        );
    }
}

#[test]
fn every_crash_found_by_fuzzing_stays_fixed() {
    replay("regressions");
}

#[test]
fn the_checks_do_catch_a_broken_promise() {
    // A check that cannot fail would make the replay above worthless.
    assert!(!dht_fuzz::run("no_such_target", b""));
    let ping = dht_wire::PeerFrame::request(1, dht_wire::PeerMessage::Ping);
    let real = ping.encoded_len();
    assert!(std::panic::catch_unwind(|| dht_fuzz::round_trip(&ping, real)).is_ok());
    // Read from one byte more than it encodes to: a codec that does this is caught.
    assert!(std::panic::catch_unwind(|| dht_fuzz::round_trip(&ping, real + 1)).is_err());
    let get = dht_wire::ApiMessage::Get {
        key: dht_id::Key::from_bytes([1; 32]),
    };
    let real = get.encoded_len();
    assert!(std::panic::catch_unwind(|| dht_fuzz::round_trip(&get, real)).is_ok());
    assert!(std::panic::catch_unwind(|| dht_fuzz::round_trip(&get, real - 1)).is_err());
}
