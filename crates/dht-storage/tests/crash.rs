//! A put that returned `Ok` survives `kill -9`, with a commit that waits for the disk and
//! with one that waits for the OS only: the test runs itself again as a child process
//! that stores records and acknowledges each committed batch on stdout, kills it with
//! SIGKILL mid-stream, and reopens the store.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use bytes::Bytes;
use dht_id::Key;
use dht_storage::{DurableStore, Origin, Record, RecordStore, StorageKey, StoreLimits};

/// Set in the child: the directory of its store.
const CHILD_DIR: &str = "DHT_STORAGE_CRASH_CHILD_DIR";
/// Set in the child when its commits wait for the OS only.
const CHILD_NO_SYNC: &str = "DHT_STORAGE_CRASH_CHILD_NO_SYNC";
const NOW: u64 = 1_000;
/// Records per batch.
const BATCH: u32 = 4;
/// Batches the parent waits for before it kills the child.
const ACKED: u32 = 40;

fn record(i: u32) -> Record {
    Record {
        key: Key::sha256(&i.to_be_bytes()),
        value: Bytes::from(format!("value {i}").into_bytes()),
        expires_at: NOW + 1_000_000,
        replication: 3,
        version: u64::from(i),
    }
}

fn storage_key() -> StorageKey {
    StorageKey::derive(b"crash test host key")
}

/// The child: stores batches until killed, printing `ack <n>` after batch `n` committed.
fn child(dir: PathBuf, sync_every_commit: bool) {
    let (mut store, _) =
        DurableStore::open(&dir, storage_key(), StoreLimits::default()).expect("child opens");
    store
        .set_sync_every_commit(sync_every_commit)
        .expect("child sets the sync mode");
    for batch in 0..10_000u32 {
        let puts = (0..BATCH)
            .map(|j| (record(batch * BATCH + j), Origin::Local))
            .collect();
        for result in store.put_many(puts, NOW) {
            result.expect("child stores");
        }
        println!("ack {batch}");
    }
}

#[test]
fn acknowledged_puts_survive_kill_9() {
    kill_and_reopen("acknowledged_puts_survive_kill_9", "sync");
}

#[test]
fn acknowledged_puts_survive_kill_9_without_a_sync_per_commit() {
    kill_and_reopen(
        "acknowledged_puts_survive_kill_9_without_a_sync_per_commit",
        "nosync",
    );
}

/// Runs the test `name` as the child (`mode` "nosync": commits wait for the OS only),
/// kills it after `ACKED` batches and checks that every acknowledged record is there.
///
/// In the child (started by it), stores until killed instead.
fn kill_and_reopen(name: &str, mode: &str) {
    if let Some(dir) = std::env::var_os(CHILD_DIR) {
        child(
            PathBuf::from(dir),
            std::env::var_os(CHILD_NO_SYNC).is_none(),
        );
        return;
    }
    let dir = std::env::temp_dir().join(format!("dht-storage-crash-{mode}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut command = Command::new(std::env::current_exe().expect("the test executable"));
    command
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, &dir)
        .stdout(Stdio::piped());
    if mode == "nosync" {
        command.env(CHILD_NO_SYNC, "1");
    }
    let mut child = command.spawn().expect("the child starts");
    let stdout = child.stdout.take().expect("piped");
    let mut last = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("the child's output");
        if let Some(n) = line.strip_prefix("ack ") {
            let n: u32 = n.parse().expect("a batch number");
            last = Some(n);
            if n + 1 == ACKED {
                // SIGKILL, while the child goes on writing.
                child.kill().expect("killed");
                break;
            }
        }
    }
    child.wait().expect("reaped");
    assert_eq!(last, Some(ACKED - 1), "the child stopped early");

    let (store, report) =
        DurableStore::open(&dir, storage_key(), StoreLimits::default()).expect("the store reopens");
    assert_eq!(report.corrupt_skipped, 0);
    assert_eq!(report.moved_aside, None);
    for i in 0..ACKED * BATCH {
        assert_eq!(store.get(&record(i).key, NOW), Ok(Some(record(i))), "{i}");
    }
    // Whole batches only: a batch is one transaction.
    assert_eq!(store.len() % BATCH as usize, 0);
    drop(store);
    std::fs::remove_dir_all(&dir).expect("cleaned up");
}
