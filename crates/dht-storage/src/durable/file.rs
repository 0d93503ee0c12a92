//! The database file: its tables, opening it (moving an unusable file aside), and write
//! transactions with the durability the store promises.

use std::fmt;
use std::io::ErrorKind;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use redb::{
    Builder, Database, DatabaseError, Durability, StorageError, TableDefinition, TableError,
    WriteTransaction,
};

use crate::store::StoreError;

/// Name of the database file in the store's directory.
pub const FILE_NAME: &str = "records.redb";

/// The records: slot (keyed hash of the record key, 32 bytes) -> sealed entry.
pub(crate) const RECORDS: TableDefinition<'static, &[u8], &[u8]> = TableDefinition::new("records");

/// Everything else, by name: [`META_FORMAT`] (plain), [`META_CHECK`] and [`META_CONTACTS`]
/// (sealed under their names).
pub(crate) const META: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("meta");

/// Meta entry: the format version byte, in the clear.
pub(crate) const META_FORMAT: &str = "format";
/// Meta entry: a known plaintext sealed under the storage key, to tell a wrong key.
pub(crate) const META_CHECK: &str = "check";
/// Meta entry: the saved contacts.
pub(crate) const META_CONTACTS: &str = "contacts";

/// redb's page cache (9/10 for reads, 1/10 for a commit's dirty pages). The store keeps
/// every record in memory anyway and reads the file only when it opens, so a large cache
/// only held written pages for nothing: at 16 MiB it was half of an idle node's memory.
/// A commit larger than the write share spills its pages to the file early, which
/// redb does safely (redb's default is 1 GiB).
const CACHE_BYTES: usize = 1024 * 1024;

/// Most `records.redb.broken-<n>` names tried before giving up.
const MAX_BROKEN: u32 = 10_000;

/// Why a database file cannot serve as the store.
#[derive(Debug)]
pub(crate) enum Fault {
    /// The file is not a usable store database (not redb, corrupt, another schema or
    /// format version): move it aside and start afresh.
    Unusable(String),
    /// The file was sealed under another storage key (its key check fails): it holds
    /// `entries` entries (records and saved contacts) that this key cannot open.
    WrongKey {
        /// Entries in the file.
        entries: usize,
    },
    /// An IO or other failure that moving the file aside would not cure: report it.
    Backend(StoreError),
}

impl From<StoreError> for Fault {
    fn from(e: StoreError) -> Fault {
        Fault::Backend(e)
    }
}

/// A backend error: `what` failed because of `err`.
pub(crate) fn backend(what: &str, err: impl fmt::Display) -> StoreError {
    StoreError::Backend(format!("{what}: {err}"))
}

/// Classifies a storage error met doing `what`: corruption is [`Fault::Unusable`], the
/// rest is a backend failure.
pub(crate) fn storage_fault(what: &str, err: StorageError) -> Fault {
    match err {
        StorageError::Corrupted(msg) => Fault::Unusable(format!("{what}: corrupted: {msg}")),
        StorageError::Io(e) if matches!(e.kind(), ErrorKind::InvalidData) => {
            Fault::Unusable(format!("{what}: {e}"))
        }
        other => Fault::Backend(backend(what, other)),
    }
}

/// Classifies an error of opening a table: a table of another type belongs to another
/// schema ([`Fault::Unusable`]).
pub(crate) fn table_fault(err: TableError) -> Fault {
    match err {
        TableError::Storage(e) => storage_fault("opening a table", e),
        TableError::TableTypeMismatch { .. }
        | TableError::TableIsMultimap(_)
        | TableError::TypeDefinitionChanged { .. } => {
            Fault::Unusable(format!("not a store database: {err}"))
        }
        other => Fault::Backend(backend("opening a table", other)),
    }
}

/// Opens or creates the redb database at `path`.
///
/// A file that is not a redb database, or whose header or pages redb finds corrupt, or that
/// needs a format upgrade, is [`Fault::Unusable`]. A database already open (by this or
/// another process) and IO failures (permissions, disk) are [`Fault::Backend`]: the file
/// is never moved aside for those. A panic inside redb on a malformed file counts as
/// unusable.
pub(crate) fn open_db(path: &Path) -> Result<Database, Fault> {
    let opened = panic::catch_unwind(AssertUnwindSafe(|| {
        Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create_with_file_format_v3(true)
            .create(path)
    }));
    match opened {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(DatabaseError::Storage(e))) => Err(storage_fault("opening the database", e)),
        Ok(Err(DatabaseError::UpgradeRequired(v))) => Err(Fault::Unusable(format!(
            "database file format {v} needs an upgrade"
        ))),
        Ok(Err(e)) => Err(Fault::Backend(backend("opening the database", e))),
        Err(_) => Err(Fault::Unusable("redb panicked opening the file".into())),
    }
}

/// Renames `path` to `<path>.broken-<n>` with the smallest `n >= 1` not taken, and returns
/// the new name.
pub(crate) fn move_aside(path: &Path) -> Result<PathBuf, StoreError> {
    for n in 1..=MAX_BROKEN {
        let mut name = path.as_os_str().to_owned();
        name.push(format!(".broken-{n}"));
        let aside = PathBuf::from(name);
        if aside.exists() {
            continue;
        }
        std::fs::rename(path, &aside).map_err(|e| backend("moving the database aside", e))?;
        return Ok(aside);
    }
    Err(StoreError::Backend(format!(
        "{MAX_BROKEN} broken databases are kept already; remove some"
    )))
}

/// A write transaction that commits durably: [`Durability::Immediate`], the commit returns
/// after `fsync`.
///
/// It keeps redb's default one-phase commit with checksums (one `fsync` per commit). redb
/// recommends two-phase commit when an attacker can choose the bytes written, since a
/// crafted checksum collision could then make a torn commit look complete; here every
/// byte written is a slot (a keyed hash) or an AEAD ciphertext under a random nonce, which
/// no peer can choose, so that attack does not apply and a commit costs one `fsync`, not
/// two.
pub(crate) fn begin(db: &Database) -> Result<WriteTransaction, StoreError> {
    let mut txn = db
        .begin_write()
        .map_err(|e| backend("starting a transaction", e))?;
    txn.set_durability(Durability::Immediate);
    Ok(txn)
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "dht-storage-file-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn move_aside_takes_the_next_free_name() {
        let dir = temp_dir("aside");
        let path = dir.join(FILE_NAME);
        fs::write(&path, b"one").unwrap();
        let first = move_aside(&path).unwrap();
        assert_eq!(first, dir.join("records.redb.broken-1"));
        assert!(!path.exists());
        fs::write(&path, b"two").unwrap();
        let second = move_aside(&path).unwrap();
        assert_eq!(second, dir.join("records.redb.broken-2"));
        assert_eq!(fs::read(first).unwrap(), b"one");
        assert_eq!(fs::read(second).unwrap(), b"two");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn garbage_is_unusable_but_an_open_database_is_not() {
        let dir = temp_dir("classify");
        let path = dir.join(FILE_NAME);
        fs::write(&path, b"not a database").unwrap();
        assert!(matches!(open_db(&path), Err(Fault::Unusable(_))));
        fs::write(&path, vec![0x5a; 64 * 1024]).unwrap();
        assert!(matches!(open_db(&path), Err(Fault::Unusable(_))));
        fs::remove_file(&path).unwrap();
        let db = open_db(&path).unwrap();
        // The lock holds within one process too: never moved aside.
        assert!(matches!(open_db(&path), Err(Fault::Backend(_))));
        drop(db);
        assert!(open_db(&path).is_ok());
        fs::remove_dir_all(&dir).unwrap();
    }
}
