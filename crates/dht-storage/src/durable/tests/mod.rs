//! Tests of [`DurableStore`](super::DurableStore) and their helpers: [`persist`] (reopen,
//! group commit, limits and quotas after reopen, rollback of a failed batch) and
//! [`damage`] (what the file reveals; damaged, moved and foreign entries; unusable files; a
//! wrong key; the contacts blob) and [`keys`] (a damaged key check told from a wrong key,
//! re-sealing under a new key, SQLite's quick_check at open).

mod damage;
mod keys;
mod persist;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use rusqlite::Connection;

use super::seal::Sealer;
use super::*;

pub(super) const NOW: u64 = 1_000;

/// A directory under the system temp dir, removed on drop.
pub(super) struct TempDir(PathBuf);

impl TempDir {
    pub(super) fn new(name: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "dht-storage-durable-{name}-{}-{n}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&dir);
        TempDir(dir)
    }

    pub(super) fn path(&self) -> &Path {
        &self.0
    }

    pub(super) fn file(&self) -> PathBuf {
        self.0.join(FILE_NAME)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

pub(super) fn key(n: u8) -> Key {
    Key::sha256(&[n])
}

pub(super) fn node(n: u8) -> Key {
    Key::from_bytes([n; 32])
}

pub(super) fn rec(k: u8, version: u64, value: &[u8], expires_at: u64) -> Record {
    Record {
        key: key(k),
        value: Bytes::copy_from_slice(value),
        expires_at,
        replication: 3,
        version,
    }
}

pub(super) fn skey(n: u8) -> StorageKey {
    StorageKey::from_bytes([n; 32])
}

pub(super) fn open(dir: &TempDir, limits: StoreLimits) -> (DurableStore, OpenReport) {
    DurableStore::open_at(dir.path(), skey(1), limits, NOW).unwrap()
}

pub(super) fn open_default(dir: &TempDir) -> (DurableStore, OpenReport) {
    open(dir, StoreLimits::default())
}

/// The records held with their origins, by key.
pub(super) fn snapshot(store: &DurableStore) -> Vec<(Record, Origin)> {
    let mut held: Vec<(Record, Origin)> = store.held().map(|(r, o)| (r.clone(), o)).collect();
    held.sort_by_key(|(r, _)| r.key);
    held
}

/// Number of entries in the records table of the (closed) database of `dir`.
pub(super) fn entries_on_disk(dir: &TempDir) -> u64 {
    let db = Connection::open(dir.file()).unwrap();
    let n: i64 = db
        .query_row("SELECT count(*) FROM records", [], |row| row.get(0))
        .unwrap();
    u64::try_from(n).unwrap()
}

/// Applies `f` to the (closed) database of `dir`, opened as any SQLite client would.
pub(super) fn with_records(dir: &TempDir, f: impl FnOnce(&Connection)) {
    let db = Connection::open(dir.file()).unwrap();
    f(&db);
}

/// Writes `sealed` into the records table at `slot`, replacing what is there.
pub(super) fn put_raw(db: &Connection, slot: &[u8; 32], sealed: &[u8]) {
    db.execute(
        "INSERT OR REPLACE INTO records (slot, entry) VALUES (?1, ?2)",
        (slot.as_slice(), sealed),
    )
    .unwrap();
}

/// The slot of record key `k` under storage key 1.
pub(super) fn slot(k: u8) -> [u8; 32] {
    Sealer::new(&skey(1)).unwrap().slot(&key(k))
}

pub(super) fn sealed_at(db: &Connection, slot: &[u8; 32]) -> Vec<u8> {
    db.query_row(
        "SELECT entry FROM records WHERE slot = ?1",
        [slot.as_slice()],
        |row| row.get(0),
    )
    .unwrap()
}

/// The entries of the `damaged` table of the (closed) database of `dir`: place, slot or
/// name, entry.
pub(super) fn damaged_on_disk(dir: &TempDir) -> Vec<(String, Vec<u8>, Vec<u8>)> {
    let db = Connection::open(dir.file()).unwrap();
    let mut select = db
        .prepare("SELECT place, slot, entry FROM damaged ORDER BY rowid")
        .unwrap();
    select
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}
