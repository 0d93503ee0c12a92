//! The database file: a SQLite database with two tables, opening it (moving an unusable
//! file aside), and write transactions with the durability the store promises.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags, Transaction};

use crate::store::StoreError;

/// Name of the database file in the store's directory.
pub const FILE_NAME: &str = "records.sqlite";

/// Meta entry: the format version byte, in the clear.
pub(crate) const META_FORMAT: &str = "format";
/// Meta entry: a known plaintext sealed under the storage key, to tell a wrong key.
pub(crate) const META_CHECK: &str = "check";
/// Meta entry: the saved contacts.
pub(crate) const META_CONTACTS: &str = "contacts";

/// The records: slot (keyed hash of the record key, 32 bytes) -> sealed entry. Everything
/// else, by name: [`META_FORMAT`] (plain), [`META_CHECK`] and [`META_CONTACTS`] (sealed
/// under their names). Entries found damaged at open are moved to `damaged`, with where
/// they were (`place`: `records` or `meta`), their slot or name, and when (UNIX seconds,
/// 0 when the open had no clock): kept for inspection and recovery, never served.
const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS records (slot BLOB PRIMARY KEY NOT NULL, entry BLOB NOT NULL)
        WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY NOT NULL, value BLOB NOT NULL)
        WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS damaged (place TEXT NOT NULL, slot BLOB NOT NULL,
        entry BLOB NOT NULL, found INTEGER NOT NULL);";

/// Most problems `PRAGMA quick_check` reports at open before it stops.
const QUICK_CHECK_PROBLEMS: u32 = 8;

/// SQLite's page cache, in KiB. The store keeps every record in memory and reads the file
/// only when it opens; a commit touches a few B-tree pages, which the operating system's
/// cache holds anyway. (SQLite's default is 2 MiB per database.)
const CACHE_KIB: i64 = 64;

/// Most `records.sqlite.broken-<n>` names tried before giving up.
const MAX_BROKEN: u32 = 10_000;

/// Why a database file cannot serve as the store.
#[derive(Debug)]
pub(crate) enum Fault {
    /// The file is not a usable store database (not SQLite, corrupt, another schema or
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

/// Classifies a SQLite error met doing `what`: a file that is not a database or is
/// corrupt is [`Fault::Unusable`]; the rest (IO, a database locked by another
/// connection, a full disk) is a backend failure.
pub(crate) fn sql_fault(what: &str, err: rusqlite::Error) -> Fault {
    match err.sqlite_error_code() {
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => {
            Fault::Unusable(format!("{what}: {err}"))
        }
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => Fault::Backend(backend(
            what,
            format!("{err} (the database is open in another store or process)"),
        )),
        _ => Fault::Backend(backend(what, err)),
    }
}

/// Opens or creates the SQLite database at `path`, holding its lock for as long as the
/// connection lives.
///
/// Settings: write-ahead log with `synchronous = FULL` (a commit returns after the log is
/// `fsync`ed: one `fsync` per commit), exclusive locking (the first statement takes the
/// lock and it is never released: a second store on the file, in this process or another,
/// fails to open instead of waiting), a small page cache ([`CACHE_KIB`]).
///
/// A file that is not a SQLite database, or whose pages SQLite finds corrupt, or whose
/// tables have another schema, is [`Fault::Unusable`]. A database already open and IO
/// failures (permissions, disk) are [`Fault::Backend`]: the file is never moved aside for
/// those.
pub(crate) fn open_db(path: &Path) -> Result<Connection, Fault> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let db = Connection::open_with_flags(path, flags)
        .map_err(|e| sql_fault("opening the database", e))?;
    let setting = |e| sql_fault("setting up the database", e);
    db.busy_timeout(Duration::ZERO).map_err(setting)?;
    db.pragma_update(None, "locking_mode", "EXCLUSIVE")
        .map_err(setting)?;
    // The first statement that reads the file: a file that is not SQLite fails here.
    let mode: String = db
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(setting)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Fault::Backend(StoreError::Backend(format!(
            "the database cannot use a write-ahead log (journal mode {mode})"
        ))));
    }
    db.pragma_update(None, "synchronous", "FULL")
        .map_err(setting)?;
    db.pragma_update(None, "cache_size", -CACHE_KIB)
        .map_err(setting)?;
    // Takes the exclusive lock now rather than at the first write.
    db.execute_batch(&format!("BEGIN EXCLUSIVE; {SCHEMA} COMMIT;"))
        .map_err(|e| sql_fault("creating the tables", e))?;
    // Tables of the same names from another schema: not a store database.
    for probe in [
        "SELECT slot, entry FROM records LIMIT 0",
        "SELECT name, value FROM meta LIMIT 0",
        "SELECT place, slot, entry, found FROM damaged LIMIT 0",
    ] {
        if let Err(e) = db.prepare(probe) {
            return Err(match sql_fault("reading the tables", e) {
                Fault::Backend(StoreError::Backend(reason)) => {
                    Fault::Unusable(format!("not a store database: {reason}"))
                }
                other => other,
            });
        }
    }
    quick_check(&db)?;
    Ok(db)
}

/// SQLite's `PRAGMA quick_check`: the B-trees and their pages are well formed (the checks
/// of `integrity_check` but those of indexes against tables, in one pass over the file).
/// A file with problems is [`Fault::Unusable`] and names the first ones. A damaged page
/// that the record scan would happen not to touch still fails here, before the store
/// serves anything from the file.
fn quick_check(db: &Connection) -> Result<(), Fault> {
    let check = |e| sql_fault("checking the database (quick_check)", e);
    let mut statement = db
        .prepare(&format!("PRAGMA quick_check({QUICK_CHECK_PROBLEMS})"))
        .map_err(check)?;
    let problems: Vec<String> = statement
        .query_map([], |row| row.get::<_, String>(0))
        .map_err(check)?
        .collect::<Result<_, _>>()
        .map_err(check)?;
    if problems.iter().all(|p| p == "ok") {
        return Ok(());
    }
    Err(Fault::Unusable(format!(
        "quick_check found damage: {}",
        problems.join("; ")
    )))
}

/// Renames `path` to `<path>.broken-<n>` with the smallest `n >= 1` not taken, and returns
/// the new name. The write-ahead log of the file (if any) goes along with it.
pub(crate) fn move_aside(path: &Path) -> Result<PathBuf, StoreError> {
    for n in 1..=MAX_BROKEN {
        let aside = suffixed(path, &format!(".broken-{n}"));
        if aside.exists() {
            continue;
        }
        std::fs::rename(path, &aside).map_err(|e| backend("moving the database aside", e))?;
        let wal = suffixed(path, "-wal");
        if wal.exists() {
            std::fs::rename(&wal, suffixed(&aside, "-wal"))
                .map_err(|e| backend("moving the database's log aside", e))?;
        }
        return Ok(aside);
    }
    Err(StoreError::Backend(format!(
        "{MAX_BROKEN} broken databases are kept already; remove some"
    )))
}

/// `path` with `suffix` appended to its file name.
pub(crate) fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// A write transaction; [`Transaction::commit`] returns once the commit is durable (see
/// [`open_db`]). Dropped without a commit, it rolls back.
pub(crate) fn begin(db: &Connection) -> Result<Transaction<'_>, StoreError> {
    db.unchecked_transaction()
        .map_err(|e| backend("starting a transaction", e))
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
        fs::write(suffixed(&path, "-wal"), b"log").unwrap();
        let first = move_aside(&path).unwrap();
        assert_eq!(first, dir.join("records.sqlite.broken-1"));
        assert!(!path.exists());
        assert_eq!(
            fs::read(dir.join("records.sqlite.broken-1-wal")).unwrap(),
            b"log"
        );
        fs::write(&path, b"two").unwrap();
        let second = move_aside(&path).unwrap();
        assert_eq!(second, dir.join("records.sqlite.broken-2"));
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

    #[test]
    fn tables_of_another_schema_are_unusable() {
        let dir = temp_dir("schema");
        let path = dir.join(FILE_NAME);
        let other = Connection::open(&path).unwrap();
        other
            .execute_batch("CREATE TABLE records (id INTEGER PRIMARY KEY, body TEXT);")
            .unwrap();
        drop(other);
        assert!(matches!(open_db(&path), Err(Fault::Unusable(_))));
        fs::remove_dir_all(&dir).unwrap();
    }
}
