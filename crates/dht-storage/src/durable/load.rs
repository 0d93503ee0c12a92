//! Loading a database at open: the format and key checks, one scan of the records into the
//! in-memory store, and the removal of what must not stay (entries that fail
//! authentication, expired records, records beyond the limits), in one transaction.

use dht_id::Key;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OptionalExtension};

use super::OpenReport;
use super::file::{Fault, META_CHECK, META_CONTACTS, META_FORMAT, backend, begin, sql_fault};
use super::seal::{FORMAT_VERSION, Sealer};
use crate::memory::MemoryStore;
use crate::store::StoreLimits;

/// The plaintext of the key check entry.
pub(crate) const CHECK_PLAINTEXT: &[u8] = b"voidphone-dht storage key check";

/// Loads the records of `db` into a new [`MemoryStore`] with `limits`, counting in
/// `report` what it skipped, and removes from the file:
///
/// - the saved contacts and the records that fail authentication (or do not decode);
/// - with `now`, the records expired at `now`;
/// - records the limits no longer admit: values that are empty or longer than
///   `max_value_len`, then, while the store is over `max_records` or `max_bytes` (the limits
///   were lowered), the records that expire first.
///
/// A new, empty database gets its format and key check entries. Faults:
/// [`Fault::WrongKey`] if the key check fails (nothing is changed),
/// [`Fault::Unusable`] for an unknown format or corruption.
pub(crate) fn load(
    db: &Connection,
    sealer: &Sealer,
    limits: &StoreLimits,
    now: Option<u64>,
    report: &mut OpenReport,
) -> Result<MemoryStore, Fault> {
    let txn = begin(db)?;
    let mut cache = MemoryStore::new(limits.clone());
    check_format_and_key(&txn, sealer)?;
    let contacts = meta_entry(&txn, META_CONTACTS)
        .map_err(|e| sql_fault("reading the contacts", e))?
        .map(|v| sealer.open(META_CONTACTS.as_bytes(), &v).is_none());
    if contacts == Some(true) {
        report.corrupt_skipped += 1;
        txn.execute("DELETE FROM meta WHERE name = ?1", [META_CONTACTS])
            .map_err(|e| sql_fault("removing the contacts", e))?;
    }
    let mut doomed = scan(&txn, sealer, limits, now, &mut cache, report)?;
    doomed.extend(over_limits(&mut cache, limits, sealer, report));
    {
        let mut remove = txn
            .prepare("DELETE FROM records WHERE slot = ?1")
            .map_err(|e| sql_fault("removing an entry", e))?;
        for slot in doomed {
            remove
                .execute([slot])
                .map_err(|e| sql_fault("removing an entry", e))?;
        }
    }
    txn.commit()
        .map_err(|e| Fault::Backend(backend("committing the load", e)))?;
    Ok(cache)
}

/// The meta entry `name`; an entry that is not a blob reads as its bytes (text) or as
/// empty (a number): either then fails its checks.
pub(crate) fn meta_entry(db: &Connection, name: &str) -> rusqlite::Result<Option<Vec<u8>>> {
    db.prepare_cached("SELECT value FROM meta WHERE name = ?1")?
        .query_row([name], |row| Ok(bytes_of(row.get_ref(0)?)))
        .optional()
}

/// The bytes of a blob or text value; empty for any other type.
fn bytes_of(value: ValueRef<'_>) -> Vec<u8> {
    match value {
        ValueRef::Blob(bytes) | ValueRef::Text(bytes) => bytes.to_vec(),
        _ => Vec::new(),
    }
}

fn count(db: &Connection, table: &str) -> Result<usize, Fault> {
    db.query_row(&format!("SELECT count(*) FROM {table}"), [], |row| {
        row.get::<_, i64>(0)
    })
    .map(|n| usize::try_from(n).unwrap_or(0))
    .map_err(|e| sql_fault("counting entries", e))
}

/// Checks the format entry and the key check entry; writes both into a new database.
fn check_format_and_key(db: &Connection, sealer: &Sealer) -> Result<(), Fault> {
    let read = |e| sql_fault("reading the meta table", e);
    match meta_entry(db, META_FORMAT).map_err(read)?.as_deref() {
        None => {
            let entries = count(db, "records")? + count(db, "meta")?;
            if entries > 0 {
                return Err(Fault::Unusable(format!(
                    "{entries} entries but no format entry"
                )));
            }
            let check = sealer.seal(META_CHECK.as_bytes(), CHECK_PLAINTEXT)?;
            db.execute(
                "INSERT INTO meta (name, value) VALUES (?1, ?2), (?3, ?4)",
                (
                    META_FORMAT,
                    [FORMAT_VERSION].as_slice(),
                    META_CHECK,
                    check.as_slice(),
                ),
            )
            .map_err(|e| sql_fault("initializing the database", e))?;
            return Ok(());
        }
        Some([FORMAT_VERSION]) => {}
        Some(other) => {
            return Err(Fault::Unusable(format!("unknown format {other:?}")));
        }
    }
    let Some(check) = meta_entry(db, META_CHECK).map_err(read)? else {
        return Err(Fault::Unusable("no key check entry".into()));
    };
    if sealer.open(META_CHECK.as_bytes(), &check).as_deref() != Some(CHECK_PLAINTEXT) {
        let contacts = usize::from(meta_entry(db, META_CONTACTS).map_err(read)?.is_some());
        return Err(Fault::WrongKey {
            entries: count(db, "records")?.saturating_add(contacts),
        });
    }
    Ok(())
}

/// Reads every record entry into `cache` and returns the slots to remove: entries that fail
/// authentication (or are not blobs), records expired at `now`, values the limits refuse.
fn scan(
    db: &Connection,
    sealer: &Sealer,
    limits: &StoreLimits,
    now: Option<u64>,
    cache: &mut MemoryStore,
    report: &mut OpenReport,
) -> Result<Vec<rusqlite::types::Value>, Fault> {
    let read = |e| sql_fault("reading the records", e);
    let mut doomed = Vec::new();
    let mut select = db
        .prepare("SELECT slot, entry FROM records")
        .map_err(read)?;
    let mut rows = select.query([]).map_err(read)?;
    while let Some(row) = rows.next().map_err(read)? {
        let (slot, sealed) = (row.get_ref(0).map_err(read)?, row.get_ref(1).map_err(read)?);
        let opened = match (slot, sealed) {
            (ValueRef::Blob(slot), ValueRef::Blob(sealed)) => sealer.open_record(slot, sealed),
            _ => None,
        };
        match opened {
            None => {
                report.corrupt_skipped += 1;
                doomed.push(slot.into());
            }
            Some((record, _)) if now.is_some_and(|now| record.is_expired(now)) => {
                report.expired_purged += 1;
                doomed.push(slot.into());
            }
            Some((record, _))
                if record.value.is_empty() || record.value.len() > limits.max_value_len =>
            {
                report.dropped_over_limits += 1;
                doomed.push(slot.into());
            }
            Some((record, origin)) => {
                // Slots are distinct and each record opens only in its key's slot, so no
                // record displaces another.
                cache.restore(record, origin);
            }
        }
    }
    Ok(doomed)
}

/// Drops records that expire first from `cache` until it is within the hard limits, and
/// returns their slots.
fn over_limits(
    cache: &mut MemoryStore,
    limits: &StoreLimits,
    sealer: &Sealer,
    report: &mut OpenReport,
) -> Vec<rusqlite::types::Value> {
    use crate::store::RecordStore;
    if limits.allows(cache.len(), cache.bytes()) {
        return Vec::new();
    }
    let mut order: Vec<(u64, Key)> = cache.held().map(|(r, _)| (r.expires_at, r.key)).collect();
    order.sort_unstable();
    let mut doomed = Vec::new();
    for (_, key) in order {
        if limits.allows(cache.len(), cache.bytes()) {
            break;
        }
        if cache.take(&key).is_some() {
            report.dropped_over_limits += 1;
            doomed.push(rusqlite::types::Value::Blob(sealer.slot(&key).to_vec()));
        }
    }
    doomed
}
