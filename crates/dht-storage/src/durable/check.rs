//! The checks of a database's format and storage key at open: telling a wrong key from a
//! damaged key check entry, re-sealing a database under a new key when it opens under the
//! key it replaces, and setting damaged entries aside.

use rusqlite::Connection;

use super::OpenReport;
use super::file::{Fault, META_CHECK, META_CONTACTS, META_FORMAT, sql_fault};
use super::load::{CHECK_PLAINTEXT, bytes_of, meta_entry};
use super::seal::{FORMAT_VERSION, Sealer};

/// Where a damaged entry was: the `place` column of the `damaged` table.
pub(crate) const PLACE_RECORDS: &str = "records";
pub(crate) const PLACE_META: &str = "meta";

/// Checks the format entry and the key check entry (in a transaction); writes both into
/// a new database.
///
/// When the key check does not open under `sealer`'s key:
///
/// - if it opens under `former` (the key this one replaces), every entry is re-sealed
///   under the new key ([`OpenReport::rekeyed`]); so too if the check is damaged but
///   other entries open under `former`;
/// - if any other entry (a record, the saved contacts) opens, the key is right and only
///   the check entry is damaged: it is set aside and written again, and counted in
///   [`OpenReport::corrupt_skipped`] (one damaged entry must not cost the whole file);
/// - if the file holds no other entry, nothing tells the two apart and nothing can be
///   lost: the check is written again;
/// - otherwise the file was sealed under another key: [`Fault::WrongKey`], nothing is
///   changed.
pub(crate) fn format_and_key(
    db: &Connection,
    sealer: &Sealer,
    former: Option<&Sealer>,
    found: u64,
    report: &mut OpenReport,
) -> Result<(), Fault> {
    let read = |e| sql_fault("reading the meta table", e);
    match meta_entry(db, META_FORMAT).map_err(read)?.as_deref() {
        None => {
            let entries = count(db, "records")? + count(db, "meta")?;
            if entries > 0 {
                return Err(Fault::Unusable(format!(
                    "{entries} entries but no format entry"
                )));
            }
            db.execute(
                "INSERT INTO meta (name, value) VALUES (?1, ?2)",
                (META_FORMAT, [FORMAT_VERSION].as_slice()),
            )
            .map_err(|e| sql_fault("initializing the database", e))?;
            return write_check(db, sealer);
        }
        Some([FORMAT_VERSION]) => {}
        Some(other) => {
            return Err(Fault::Unusable(format!("unknown format {other:?}")));
        }
    }
    let Some(check) = meta_entry(db, META_CHECK).map_err(read)? else {
        return Err(Fault::Unusable("no key check entry".into()));
    };
    let opens = |sealer: &Sealer| {
        sealer.open(META_CHECK.as_bytes(), &check).as_deref() == Some(CHECK_PLAINTEXT)
    };
    if opens(sealer) {
        return Ok(());
    }
    if let Some(former) = former.filter(|former| opens(former)) {
        return rekey(db, former, sealer, found, report);
    }
    match fit(db, sealer)? {
        Fit::Opens | Fit::Empty => {
            set_aside(db, PLACE_META, META_CHECK.as_bytes(), &check, found)?;
            report.corrupt_skipped += 1;
            write_check(db, sealer)
        }
        Fit::NoneOpens { entries } => match former {
            // The check is damaged and the file is the former key's: re-sealed.
            Some(former) if matches!(fit(db, former)?, Fit::Opens) => {
                set_aside(db, PLACE_META, META_CHECK.as_bytes(), &check, found)?;
                report.corrupt_skipped += 1;
                rekey(db, former, sealer, found, report)
            }
            _ => Err(Fault::WrongKey { entries }),
        },
    }
}

/// Whether the entries of a file open under a key.
enum Fit {
    /// At least one entry opens: the key is right.
    Opens,
    /// There is no entry to tell.
    Empty,
    /// `entries` entries, and none opens.
    NoneOpens { entries: usize },
}

/// Tries the file's saved contacts, then its records, until one opens under `sealer`.
fn fit(db: &Connection, sealer: &Sealer) -> Result<Fit, Fault> {
    let read = |e| sql_fault("reading the entries", e);
    let mut entries = 0;
    if let Some(contacts) = meta_entry(db, META_CONTACTS).map_err(read)? {
        if sealer.open(META_CONTACTS.as_bytes(), &contacts).is_some() {
            return Ok(Fit::Opens);
        }
        entries += 1;
    }
    let mut select = db
        .prepare("SELECT slot, entry FROM records")
        .map_err(read)?;
    let mut rows = select.query([]).map_err(read)?;
    while let Some(row) = rows.next().map_err(read)? {
        let slot = bytes_of(row.get_ref(0).map_err(read)?);
        let sealed = bytes_of(row.get_ref(1).map_err(read)?);
        if sealer.open_record(&slot, &sealed).is_some() {
            return Ok(Fit::Opens);
        }
        entries += 1;
    }
    Ok(if entries == 0 {
        Fit::Empty
    } else {
        Fit::NoneOpens { entries }
    })
}

/// Re-seals every entry sealed under `former` under `sealer`'s key, each record in the
/// slot of the new key; entries that do not open under `former` are set aside.
fn rekey(
    db: &Connection,
    former: &Sealer,
    sealer: &Sealer,
    found: u64,
    report: &mut OpenReport,
) -> Result<(), Fault> {
    let read = |e| sql_fault("re-sealing under the new key", e);
    let rows: Vec<(Vec<u8>, Vec<u8>)> = {
        let mut select = db
            .prepare("SELECT slot, entry FROM records")
            .map_err(read)?;
        select
            .query_map([], |row| {
                Ok((bytes_of(row.get_ref(0)?), bytes_of(row.get_ref(1)?)))
            })
            .map_err(read)?
            .collect::<Result<_, _>>()
            .map_err(read)?
    };
    db.execute("DELETE FROM records", []).map_err(read)?;
    let mut insert = db
        .prepare("INSERT INTO records (slot, entry) VALUES (?1, ?2)")
        .map_err(read)?;
    for (slot, sealed) in rows {
        match former.open_record(&slot, &sealed) {
            Some((record, origin)) => {
                let new_slot = sealer.slot(&record.key);
                let resealed = sealer.seal_record(&new_slot, &record, origin)?;
                insert
                    .execute((new_slot.as_slice(), resealed.as_slice()))
                    .map_err(read)?;
                report.rekeyed += 1;
            }
            None => {
                set_aside(db, PLACE_RECORDS, &slot, &sealed, found)?;
                report.corrupt_skipped += 1;
            }
        }
    }
    if let Some(contacts) = meta_entry(db, META_CONTACTS).map_err(read)? {
        match former.open(META_CONTACTS.as_bytes(), &contacts) {
            Some(blob) => {
                let resealed = sealer.seal(META_CONTACTS.as_bytes(), &blob)?;
                db.execute(
                    "UPDATE meta SET value = ?2 WHERE name = ?1",
                    (META_CONTACTS, resealed.as_slice()),
                )
                .map_err(read)?;
                report.rekeyed += 1;
            }
            None => {
                set_aside(db, PLACE_META, META_CONTACTS.as_bytes(), &contacts, found)?;
                db.execute("DELETE FROM meta WHERE name = ?1", [META_CONTACTS])
                    .map_err(read)?;
                report.corrupt_skipped += 1;
            }
        }
    }
    write_check(db, sealer)
}

/// Writes (or replaces) the key check entry under `sealer`'s key.
fn write_check(db: &Connection, sealer: &Sealer) -> Result<(), Fault> {
    let check = sealer.seal(META_CHECK.as_bytes(), CHECK_PLAINTEXT)?;
    db.execute(
        "INSERT OR REPLACE INTO meta (name, value) VALUES (?1, ?2)",
        (META_CHECK, check.as_slice()),
    )
    .map_err(|e| sql_fault("writing the key check", e))?;
    Ok(())
}

/// Copies a damaged entry into the `damaged` table (the caller removes it from its place):
/// it is never served, and kept for inspection or recovery.
pub(crate) fn set_aside(
    db: &Connection,
    place: &str,
    slot: &[u8],
    entry: &[u8],
    found: u64,
) -> Result<(), Fault> {
    db.prepare_cached("INSERT INTO damaged (place, slot, entry, found) VALUES (?1, ?2, ?3, ?4)")
        .and_then(|mut insert| {
            insert.execute((place, slot, entry, i64::try_from(found).unwrap_or(i64::MAX)))
        })
        .map_err(|e| sql_fault("setting a damaged entry aside", e))?;
    Ok(())
}

/// Entries in `table`.
fn count(db: &Connection, table: &str) -> Result<usize, Fault> {
    db.query_row(&format!("SELECT count(*) FROM {table}"), [], |row| {
        row.get::<_, i64>(0)
    })
    .map(|n| usize::try_from(n).unwrap_or(0))
    .map_err(|e| sql_fault("counting entries", e))
}
