//! Loading a database at open: the format and key checks, one scan of the records into the
//! in-memory store, and the removal of what must not stay (entries that fail
//! authentication, expired records, records beyond the limits), in one transaction.

use dht_id::Key;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OptionalExtension};

use super::OpenReport;
use super::check::{self, PLACE_META, PLACE_RECORDS, set_aside};
use super::file::{Fault, META_CONTACTS, backend, begin, sql_fault};
use super::seal::Sealer;
use crate::memory::MemoryStore;
use crate::store::StoreLimits;

/// The plaintext of the key check entry.
pub(crate) const CHECK_PLAINTEXT: &[u8] = b"voidphone-dht storage key check";

/// Loads the records of `db` into a new [`MemoryStore`] with `limits`, counting in
/// `report` what it skipped, after the format and key checks of [`check::format_and_key`]
/// (which re-seals a file sealed under `former`, the key this one replaces). It moves to
/// the `damaged` table the saved contacts and the records that fail authentication (or do
/// not decode), and removes from the file:
///
/// - with `now`, the records expired at `now`;
/// - records the limits no longer admit: values that are empty or longer than
///   `max_value_len`, then, while the store is over `max_records` or `max_bytes` (the limits
///   were lowered), the records that expire first.
///
/// A new, empty database gets its format and key check entries. Faults:
/// [`Fault::WrongKey`] if the file was sealed under another key (nothing is changed),
/// [`Fault::Unusable`] for an unknown format or corruption.
pub(crate) fn load(
    db: &Connection,
    sealer: &Sealer,
    former: Option<&Sealer>,
    limits: &StoreLimits,
    now: Option<u64>,
    report: &mut OpenReport,
) -> Result<MemoryStore, Fault> {
    let txn = begin(db)?;
    let mut cache = MemoryStore::new(limits.clone());
    let found = now.unwrap_or(0);
    check::format_and_key(&txn, sealer, former, found, report)?;
    let contacts =
        meta_entry(&txn, META_CONTACTS).map_err(|e| sql_fault("reading the contacts", e))?;
    if let Some(sealed) = contacts
        && sealer.open(META_CONTACTS.as_bytes(), &sealed).is_none()
    {
        report.corrupt_skipped += 1;
        set_aside(&txn, PLACE_META, META_CONTACTS.as_bytes(), &sealed, found)?;
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
pub(crate) fn bytes_of(value: ValueRef<'_>) -> Vec<u8> {
    match value {
        ValueRef::Blob(bytes) | ValueRef::Text(bytes) => bytes.to_vec(),
        _ => Vec::new(),
    }
}

/// Reads every record entry into `cache` and returns the slots to remove: entries that fail
/// authentication (or are not blobs; set aside in the `damaged` table first), records
/// expired at `now`, values the limits refuse.
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
                let found = now.unwrap_or(0);
                set_aside(db, PLACE_RECORDS, &bytes_of(slot), &bytes_of(sealed), found)?;
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
