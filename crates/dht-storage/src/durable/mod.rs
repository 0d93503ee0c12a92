//! [`DurableStore`]: a [`RecordStore`] that survives restarts, on a [SQLite] database
//! whose entries are sealed with AES-256-GCM (see also `docs/STORAGE.md`).
//!
//! # Design
//!
//! The store is a [`MemoryStore`] (all records decrypted, in memory) plus the database as
//! its durable copy. Every mutating call runs `MemoryStore`'s own logic (version order,
//! expiry, limits, quotas, `Unchanged` / `KeptNewer`, purges to make room), writes exactly
//! what it changed to the database in one write transaction, and commits before it
//! returns. If the database write or the commit fails, the in-memory changes are undone
//! and the call returns [`StoreError::Backend`]: memory and disk never disagree. Reads
//! (`get`, `records`, `len`, `bytes`, `usage_of`) never touch the disk. A batch can be
//! split in two ([`DurableStore::stage_many`], `write.rs`): applied in memory, then
//! sealed, written and committed by a disk half that needs nothing of the store, so
//! that its owner lets readers in while the disk works. The memory cost is
//! the `MemoryStore`'s, bounded by [`StoreLimits::max_bytes`]; the database holds the
//! same records, so the limits hold on disk too.
//!
//! Why a full in-memory copy rather than an index of the database: the semantics are
//! `MemoryStore`'s by construction (one implementation, and `tests/durable.rs` checks the
//! two against each other), reads cannot fail or block on IO, and the memory is what the
//! node already budgets for its in-memory store. The price is the memory, and a scan of
//! the whole file at open.
//!
//! # Format (format version 1)
//!
//! One file, `dir/records.sqlite`, with two tables:
//!
//! - `records`: slot -> sealed entry. The slot is HMAC-SHA256 of the record key under the
//!   slot subkey (32 bytes), so that lookups need no plaintext key. The sealed entry is
//!   `nonce (12) || AES-256-GCM ciphertext || tag (16)` of the plaintext
//!   `key (32) || expires_at (u64 BE) || version (u64 BE) || replication (u8) ||
//!   origin tag (u8: 0 local, 1 peer, 2 replication) || peer id (32, tags 1 and 2) ||
//!   value`, with associated data `slot || format version (1)`: an entry moved or copied
//!   to another slot fails authentication, and a record must also hash to its slot.
//! - `meta`: `"format"` -> the format version byte in the clear; `"check"` -> a known
//!   plaintext sealed with associated data `"check" || 1` (tells a wrong storage key from
//!   damaged entries); `"contacts"` -> the saved contacts blob sealed with associated data
//!   `"contacts" || 1`.
//!
//! Keys: the [`StorageKey`] (HKDF-SHA256 of the host key, or given) is the pseudorandom
//! key of two HKDF-SHA256 expansions, `"voidphone-dht storage v1 seal"` (AEAD key) and
//! `"voidphone-dht storage v1 slot"` (HMAC key).
//!
//! Nonces are 96 random bits from ring's `SystemRandom`, fresh for every seal. Random
//! nonces are safe for up to 2^32 seals per key (the NIST SP 800-38D bound: collision
//! chance below 2^-32); one seal is one written record, so a node would have to store over
//! four billion records under one key (100 per second for more than a year without pause)
//! before reaching it; a new storage key (a new host key, or another configured key) starts
//! the count afresh.
//!
//! The file holds no key, value or peer id in the clear: only slots, sealed entries, the
//! format byte and SQLite's own structure. It does show how many entries there are and, by
//! each entry's length, the length of each value (plus a fixed overhead).
//!
//! # Open
//!
//! [`DurableStore::open_at`] (and [`DurableStore::open`], which purges nothing) scans the
//! file once and
//!
//! - first copies a `records.redb` file of an earlier version (the same sealed entries in
//!   a redb database) into the new database and renames it `records.redb.migrated`;
//! - moves a file that is not a usable database (not SQLite, corrupt, another schema or
//!   format, or problems found by SQLite's `PRAGMA quick_check`) aside to
//!   `records.sqlite.broken-<n>` and starts a new, empty one;
//! - moves a file sealed under another storage key aside the same way, counting all its
//!   entries as [`corrupt_skipped`](OpenReport::corrupt_skipped): nothing is served, and
//!   the file is kept intact for recovery with the right key. A wrong key is told from a
//!   damaged key check entry by the other entries: if any of them opens, only the check
//!   entry is damaged, and it is set aside and written again;
//! - re-seals a file sealed under the key the new one replaces
//!   ([`DurableStore::open_rekeying`]);
//! - **sets aside** single entries that fail authentication (damaged or tampered with):
//!   they move to the `damaged` table (never served, kept for inspection and recovery) and
//!   are counted;
//! - removes records expired at `now` (with `open_at`) and records the (lowered) limits no
//!   longer admit.
//!
//! # Durability
//!
//! The database runs with a write-ahead log and, by default, `synchronous = FULL`: a call
//! that returned `Ok` has had its log `fsync`ed (one `fsync` per commit), so its changes
//! survive the process being killed (`kill -9`) at any point (tested: `tests/crash.rs`),
//! and a batch is all or nothing. They also survive power loss as far as the disk honours
//! `fsync`, SQLite's documented assumption; a crash mid-commit rolls back that commit
//! only. With [`DurableStore::set_sync_every_commit`]`(false)` (`synchronous = NORMAL`) a
//! commit waits for the OS only: `kill -9` still loses nothing (tested too), a power loss
//! may lose what came after the last run of its [`RecordStore::syncer`]. Why SQLite rather than redb,
//! the store of earlier versions: `docs/STORAGE.md`.
//!
//! [SQLite]: https://sqlite.org

mod check;
mod file;
mod load;
mod migrate;
mod seal;
#[cfg(test)]
mod tests;
mod write;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use dht_id::Key;
use rusqlite::Connection;

pub use file::FILE_NAME;
pub use migrate::OLD_FILE_NAME;
pub use seal::{STORAGE_KEY_INFO, STORAGE_KEY_SALT, StorageKey};

use self::file::{Fault, META_CONTACTS, backend, begin, move_aside, open_db};
use self::seal::Sealer;
use crate::memory::MemoryStore;
use crate::quota::Origin;
use crate::record::Record;
use crate::store::{
    ContactsSaver, PutOutcome, RecordStore, StagedWrite, Staging, StoreError, StoreLimits, Syncer,
};

/// Largest contacts blob [`DurableStore::save_contacts`] accepts (4 MiB).
pub const MAX_CONTACTS_LEN: usize = 4 * 1024 * 1024;

/// What [`DurableStore::open`] found. The caller logs it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct OpenReport {
    /// Records loaded and held.
    pub records: usize,
    /// Expired records removed at open ([`DurableStore::open_at`] only).
    pub expired_purged: usize,
    /// Entries (records, saved contacts, the key check) that failed authentication: moved
    /// to the file's `damaged` table and never served; or, if the whole file was sealed under another key, all its
    /// entries (then the file was moved aside, see `moved_aside`).
    pub corrupt_skipped: usize,
    /// Where an unusable file (or one sealed under another key) was moved; a new, empty
    /// database was created in its place.
    pub moved_aside: Option<PathBuf>,
    /// Why the file was moved aside.
    pub moved_aside_reason: Option<String>,
    /// Records removed because the limits no longer admit them (lowered since they were
    /// stored): values that are too long, and the records that expire first while the store
    /// was over `max_records` or `max_bytes`.
    pub dropped_over_limits: usize,
    /// Entries (records, and the format, key check and contacts entries) copied from a
    /// `records.redb` file of an earlier version, which was then renamed
    /// `records.redb.migrated`.
    pub migrated: usize,
    /// Entries (records and saved contacts) re-sealed under the storage key because the
    /// file was sealed under the former key given to [`DurableStore::open_rekeying`].
    pub rekeyed: usize,
}

/// A [`RecordStore`] that keeps its records in an encrypted SQLite database in a directory,
/// and all of them decrypted in memory. See the [module doc](self) for the design, the file
/// format and the durability promise.
///
/// The database IO is blocking: run the store off the async workers.
pub struct DurableStore {
    /// The database, shared with the disk half of a staged batch (`write.rs`), which
    /// commits it without the store.
    db: Arc<Mutex<Connection>>,
    /// Shared with the disk half of a staged batch, which seals its entries.
    sealer: Arc<Sealer>,
    cache: MemoryStore,
    path: PathBuf,
}

impl DurableStore {
    /// Opens (or creates) the database `dir/records.sqlite` (creating `dir` if needed) and
    /// loads its records. Purges nothing: expired records are held, never served, until
    /// [`purge_expired`](RecordStore::purge_expired) or a put that needs room removes them
    /// (use [`open_at`](Self::open_at) to purge at open).
    ///
    /// A `records.redb` file of an earlier version is migrated first (see the module
    /// doc). A file that cannot be opened as a store (not a SQLite file, corrupt, another
    /// schema) or that was sealed under another key is moved aside to
    /// `dir/records.sqlite.broken-<n>` and a new empty database is created; the report says
    /// so. Entries that fail authentication are counted, moved to the file's `damaged`
    /// table and never served. Errors: [`StoreError::Backend`] for IO failures, and if the database is
    /// already open (in this process or another).
    pub fn open(
        dir: &Path,
        key: StorageKey,
        limits: StoreLimits,
    ) -> Result<(DurableStore, OpenReport), StoreError> {
        Self::open_inner(dir, &key, None, limits, None)
    }

    /// [`open`](Self::open), and removes the records expired at `now` (wall-clock UNIX
    /// seconds), counted in [`OpenReport::expired_purged`].
    pub fn open_at(
        dir: &Path,
        key: StorageKey,
        limits: StoreLimits,
        now: u64,
    ) -> Result<(DurableStore, OpenReport), StoreError> {
        Self::open_inner(dir, &key, None, limits, Some(now))
    }

    /// [`open_at`](Self::open_at), for a store whose key replaces `former` (a key derived
    /// differently by an earlier version): a file sealed under `former` is re-sealed under
    /// `key` in the open's transaction, entry by entry, and counted in
    /// [`OpenReport::rekeyed`], instead of being moved aside as sealed under another key.
    pub fn open_rekeying(
        dir: &Path,
        key: StorageKey,
        former: StorageKey,
        limits: StoreLimits,
        now: u64,
    ) -> Result<(DurableStore, OpenReport), StoreError> {
        Self::open_inner(dir, &key, Some(&former), limits, Some(now))
    }

    fn open_inner(
        dir: &Path,
        key: &StorageKey,
        former: Option<&StorageKey>,
        limits: StoreLimits,
        now: Option<u64>,
    ) -> Result<(DurableStore, OpenReport), StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| backend("creating the directory", e))?;
        let sealer = Sealer::new(key)?;
        let former = former.map(Sealer::new).transpose()?;
        let path = dir.join(FILE_NAME);
        let mut report = OpenReport::default();
        // The second attempt runs on a new, empty file.
        for attempt in 0..2 {
            let fault = match open_db(&path) {
                Ok(db) => match migrate::from_redb(dir, &db, &mut report)
                    .map_err(Fault::Backend)
                    .and_then(|()| {
                        load::load(&db, &sealer, former.as_ref(), &limits, now, &mut report)
                    }) {
                    Ok(cache) => {
                        report.records = cache.len();
                        let store = DurableStore {
                            db: Arc::new(Mutex::new(db)),
                            sealer: Arc::new(sealer),
                            cache,
                            path,
                        };
                        return Ok((store, report));
                    }
                    Err(fault) => fault,
                },
                Err(fault) => fault,
            };
            if attempt > 0 {
                return Err(fault_error(fault, "the new database"));
            }
            let (reason, corrupt) = match fault {
                Fault::Backend(e) => return Err(e),
                Fault::Unusable(reason) => (reason, 0),
                Fault::WrongKey { entries } => (
                    format!("sealed under another storage key ({entries} entries)"),
                    entries,
                ),
            };
            report = OpenReport {
                corrupt_skipped: corrupt,
                moved_aside: Some(move_aside(&path)?),
                moved_aside_reason: Some(reason),
                ..OpenReport::default()
            };
        }
        Err(StoreError::Backend(
            "the new database cannot be used".into(),
        ))
    }

    /// Whether a commit returns only once it is on disk (`true`, the default: one `fsync`
    /// per commit), or once the OS has it (`false`): a commit then survives a crash of the
    /// process (`kill -9`) as before, but a power loss or an OS crash may lose what was
    /// committed since the last run of the [`syncer`](RecordStore::syncer) or log
    /// checkpoint (never a part of a commit: SQLite's log checksums bring the file back to
    /// the last whole one). The caller that turns it off syncs on a schedule of its own.
    pub fn set_sync_every_commit(&mut self, on: bool) -> Result<(), StoreError> {
        let mode = if on { "FULL" } else { "NORMAL" };
        self.db()
            .pragma_update(None, "synchronous", mode)
            .map_err(|e| backend("setting the sync mode", e))
    }

    /// Saves the contacts blob (opaque bytes the caller encodes, sealed like the records),
    /// replacing the saved one, durably. At most [`MAX_CONTACTS_LEN`] bytes, otherwise
    /// [`StoreError::ValueTooLarge`].
    pub fn save_contacts(&mut self, blob: &[u8]) -> Result<(), StoreError> {
        save_contacts(&self.db, &self.sealer, blob)
    }

    /// The contacts blob last saved, if any. [`StoreError::Backend`] if it fails
    /// authentication (it was damaged since the store was opened).
    pub fn load_contacts(&self) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(sealed) = load::meta_entry(&self.db(), META_CONTACTS)
            .map_err(|e| backend("reading the contacts", e))?
        else {
            return Ok(None);
        };
        self.sealer
            .open(META_CONTACTS.as_bytes(), &sealed)
            .map(Some)
            .ok_or_else(|| StoreError::Backend("the saved contacts fail authentication".into()))
    }

    /// The database (its lock is held by a staged batch's commit only).
    fn db(&self) -> MutexGuard<'_, Connection> {
        self.db.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The limits the store enforces.
    pub fn limits(&self) -> &StoreLimits {
        self.cache.limits()
    }

    /// Records and bytes held that `origin` wrote (see [`MemoryStore::usage`]).
    pub fn usage(&self, origin: &Origin) -> (usize, usize) {
        self.cache.usage(origin)
    }

    /// Every record held, expired ones not yet purged included, with the origin that
    /// wrote it, in no particular order (see [`MemoryStore::held`]).
    pub fn held(&self) -> impl Iterator<Item = (&Record, Origin)> {
        self.cache.held()
    }
}

/// The error for `fault` met opening `what`.
fn fault_error(fault: Fault, what: &str) -> StoreError {
    match fault {
        Fault::Backend(e) => e,
        Fault::Unusable(reason) => StoreError::Backend(format!("{what} is unusable: {reason}")),
        Fault::WrongKey { .. } => StoreError::Backend(format!("{what} fails the key check")),
    }
}

impl fmt::Debug for DurableStore {
    /// Shows the file, the limits and the totals, not the records.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DurableStore")
            .field("path", &self.path)
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

/// Saves the contacts blob through the database's own lock (not the store's).
fn save_contacts(db: &Mutex<Connection>, sealer: &Sealer, blob: &[u8]) -> Result<(), StoreError> {
    if blob.len() > MAX_CONTACTS_LEN {
        return Err(StoreError::ValueTooLarge {
            len: blob.len(),
            max: MAX_CONTACTS_LEN,
        });
    }
    let sealed = sealer.seal(META_CONTACTS.as_bytes(), blob)?;
    let db = db.lock().unwrap_or_else(|e| e.into_inner());
    let txn = begin(&db)?;
    txn.prepare_cached("INSERT OR REPLACE INTO meta (name, value) VALUES (?1, ?2)")
        .and_then(|mut insert| insert.execute((META_CONTACTS, sealed.as_slice())))
        .map_err(|e| backend("writing the contacts", e))?;
    txn.commit().map_err(|e| backend("committing", e))
}

impl RecordStore for DurableStore {
    /// `fsync`s the write-ahead log, through a handle of its own (on Linux an `fsync`
    /// acts on the file, whatever handle it comes through): what was committed is in the
    /// log or, once checkpointed, in the database file, which SQLite `fsync`s at each
    /// checkpoint. The store need not be locked while the disk works, and an `fsync` more
    /// never harms SQLite's consistency. The first sync also `fsync`s the folder, so that
    /// a log created since the store opened is found after a power loss. A log that is not
    /// there (SQLite removes it when it closes the database) holds nothing to sync.
    fn syncer(&self) -> Option<Syncer> {
        let mut log = self.path.clone().into_os_string();
        log.push("-wal");
        let log = PathBuf::from(log);
        let dir = self.path.parent().map(Path::to_path_buf);
        let dir_synced = std::sync::atomic::AtomicBool::new(false);
        Some(std::sync::Arc::new(move || {
            let fail =
                |what: &str, path: &Path, e| backend(&format!("{what} {}", path.display()), e);
            match std::fs::File::open(&log) {
                Ok(file) => file.sync_data().map_err(|e| fail("syncing", &log, e))?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(fail("opening", &log, e)),
            }
            if let Some(dir) = dir.as_deref() {
                if !dir_synced.load(std::sync::atomic::Ordering::Relaxed) {
                    std::fs::File::open(dir)
                        .and_then(|d| d.sync_all())
                        .map_err(|e| fail("syncing", dir, e))?;
                    dir_synced.store(true, std::sync::atomic::Ordering::Relaxed);
                }
            }
            Ok(())
        }))
    }

    fn set_sync_every_commit(&mut self, on: bool) -> Result<(), StoreError> {
        DurableStore::set_sync_every_commit(self, on)
    }

    fn contacts_saver(&self) -> Option<ContactsSaver> {
        let (db, sealer) = (self.db.clone(), self.sealer.clone());
        Some(Arc::new(move |blob: &[u8]| {
            save_contacts(&db, &sealer, blob)
        }))
    }

    fn load_contacts(&self) -> Result<Option<Vec<u8>>, StoreError> {
        DurableStore::load_contacts(self)
    }

    fn put_many(
        &mut self,
        puts: Vec<(Record, Origin)>,
        now: u64,
    ) -> Vec<Result<PutOutcome, StoreError>> {
        DurableStore::put_many(self, puts, now)
    }

    fn stage_many(&mut self, puts: Vec<(Record, Origin)>, now: u64) -> Staging {
        DurableStore::stage_many(self, puts, now)
    }

    fn unstage(&mut self, staged: Box<dyn StagedWrite>) {
        DurableStore::unstage(self, staged);
    }

    fn stage_purge(
        &mut self,
        now: u64,
    ) -> Result<(usize, Option<Box<dyn StagedWrite>>), StoreError> {
        Ok(DurableStore::stage_purge(self, now))
    }

    /// A batch of one ([`put_many`](DurableStore::put_many)).
    fn put_from(
        &mut self,
        record: Record,
        now: u64,
        origin: Origin,
    ) -> Result<PutOutcome, StoreError> {
        self.put_many(vec![(record, origin)], now)
            .pop()
            .unwrap_or_else(|| Err(StoreError::Backend("no result".into())))
    }

    fn usage_of(&self, peer: &Key) -> (usize, usize) {
        self.cache.usage_of(peer)
    }

    fn get(&self, key: &Key, now: u64) -> Result<Option<Record>, StoreError> {
        self.cache.get(key, now)
    }

    /// Removes the record from the file (one durable commit), then from memory.
    fn remove(&mut self, key: &Key) -> Result<Option<Record>, StoreError> {
        if self.cache.entry(key).is_none() {
            return Ok(None);
        }
        self.remove_slots(std::iter::once(self.sealer.slot(key)))?;
        self.cache.remove(key)
    }

    /// Removes the expired records from the file (one durable commit), then from memory.
    fn purge_expired(&mut self, now: u64) -> Result<usize, StoreError> {
        let expired = self.cache.expired_keys(now);
        if expired.is_empty() {
            return Ok(0);
        }
        self.remove_slots(expired.iter().map(|key| self.sealer.slot(key)))?;
        self.cache.purge_expired(now)
    }

    fn records(&self, now: u64) -> Result<Vec<Record>, StoreError> {
        self.cache.records(now)
    }

    fn records_from(&self, from: &Key, limit: usize, now: u64) -> Result<Vec<Record>, StoreError> {
        self.cache.records_from(from, limit, now)
    }

    fn len(&self) -> usize {
        self.cache.len()
    }

    fn bytes(&self) -> usize {
        self.cache.bytes()
    }
}
