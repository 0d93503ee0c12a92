//! The one-time move of a `records.redb` file, the store's database before it moved to
//! SQLite, into the SQLite database. The sealed entries did not change (format version
//! 1), so they are copied byte for byte and then opened by the normal load.

use std::panic::{self, AssertUnwindSafe};
use std::path::Path;

use redb::{ReadableTable, TableDefinition};
use rusqlite::Connection;

use super::OpenReport;
use super::file::{META_FORMAT, backend, begin, move_aside, suffixed};
use super::load::meta_entry;
use crate::store::StoreError;

/// Name of the database file of earlier versions in the store's directory.
pub const OLD_FILE_NAME: &str = "records.redb";

const OLD_RECORDS: TableDefinition<'static, &[u8], &[u8]> = TableDefinition::new("records");
const OLD_META: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("meta");

/// If `dir` holds a `records.redb` file: copies its records and meta entries into `db`
/// in one transaction (when `db` is new: it has no format entry yet), counted in
/// [`OpenReport::migrated`], and renames the old file `records.redb.migrated`. An old
/// file that cannot be read is moved aside (`records.redb.broken-<n>`, reported like an
/// unusable database) and nothing is copied.
pub(crate) fn from_redb(
    dir: &Path,
    db: &Connection,
    report: &mut OpenReport,
) -> Result<(), StoreError> {
    let old = dir.join(OLD_FILE_NAME);
    if !old.exists() {
        return Ok(());
    }
    let fresh = meta_entry(db, META_FORMAT)
        .map_err(|e| backend("reading the meta table", e))?
        .is_none();
    // A database that is not new got the copy already (the rename did not happen).
    if fresh {
        let copied = panic::catch_unwind(AssertUnwindSafe(|| copy(&old, db)))
            .unwrap_or_else(|_| Err("redb panicked reading the file".into()));
        match copied {
            Ok(entries) => report.migrated = entries,
            Err(reason) => {
                report.moved_aside = Some(move_aside(&old)?);
                report.moved_aside_reason =
                    Some(format!("{OLD_FILE_NAME} of an earlier version: {reason}"));
                return Ok(());
            }
        }
    }
    std::fs::rename(&old, suffixed(&old, ".migrated"))
        .map_err(|e| backend("renaming the migrated database", e))
}

/// Copies every entry of both tables of the redb file at `old` into `db`, committed;
/// returns how many.
fn copy(old: &Path, db: &Connection) -> Result<usize, String> {
    let redb = redb::Database::open(old).map_err(|e| e.to_string())?;
    let read = redb.begin_read().map_err(|e| e.to_string())?;
    let txn = begin(db).map_err(|e| e.to_string())?;
    let entries = copy_table(&read, OLD_RECORDS, &txn, "records (slot, entry)")?
        + copy_table(&read, OLD_META, &txn, "meta (name, value)")?;
    txn.commit().map_err(|e| e.to_string())?;
    Ok(entries)
}

/// Copies the redb table `table` into the SQLite table and columns `into`; returns how
/// many entries.
fn copy_table<K>(
    read: &redb::ReadTransaction,
    table: TableDefinition<'static, K, &'static [u8]>,
    db: &Connection,
    into: &str,
) -> Result<usize, String>
where
    K: redb::Key + 'static,
    for<'a> K::SelfType<'a>: rusqlite::ToSql,
{
    let mut insert = db
        .prepare(&format!("INSERT OR REPLACE INTO {into} VALUES (?1, ?2)"))
        .map_err(|e| e.to_string())?;
    let mut entries = 0;
    for item in read
        .open_table(table)
        .map_err(|e| e.to_string())?
        .iter()
        .map_err(|e| e.to_string())?
    {
        let (key, value) = item.map_err(|e| e.to_string())?;
        insert
            .execute((key.value(), value.value()))
            .map_err(|e| e.to_string())?;
        entries += 1;
    }
    Ok(entries)
}
