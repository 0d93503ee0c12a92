//! Loading a database at open: the format and key checks, one scan of the records into the
//! in-memory store, and the removal of what must not stay (entries that fail
//! authentication, expired records, records beyond the limits), in one transaction.

use dht_id::Key;
use redb::{Database, ReadableTable, ReadableTableMetadata, Table};

use super::OpenReport;
use super::file::{
    Fault, META, META_CHECK, META_CONTACTS, META_FORMAT, RECORDS, backend, begin, storage_fault,
    table_fault,
};
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
/// [`Fault::Unusable`] for another schema, an unknown format or corruption.
pub(crate) fn load(
    db: &Database,
    sealer: &Sealer,
    limits: &StoreLimits,
    now: Option<u64>,
    report: &mut OpenReport,
) -> Result<MemoryStore, Fault> {
    let txn = begin(db)?;
    let mut cache = MemoryStore::new(limits.clone());
    {
        let mut meta = txn.open_table(META).map_err(table_fault)?;
        let mut records = txn.open_table(RECORDS).map_err(table_fault)?;
        check_format_and_key(&mut meta, &records, sealer)?;
        let contacts = meta
            .get(META_CONTACTS)
            .map_err(|e| storage_fault("reading the contacts", e))?
            .map(|v| sealer.open(META_CONTACTS.as_bytes(), v.value()).is_none());
        if contacts == Some(true) {
            report.corrupt_skipped += 1;
            meta.remove(META_CONTACTS)
                .map_err(|e| storage_fault("removing the contacts", e))?;
        }
        let mut doomed = scan(&records, sealer, limits, now, &mut cache, report)?;
        doomed.extend(over_limits(&mut cache, limits, sealer, report));
        for slot in doomed {
            records
                .remove(slot.as_slice())
                .map_err(|e| storage_fault("removing an entry", e))?;
        }
    }
    txn.commit()
        .map_err(|e| Fault::Backend(backend("committing the load", e)))?;
    Ok(cache)
}

/// Checks the format entry and the key check entry; writes both into a new database.
fn check_format_and_key(
    meta: &mut Table<'_, &str, &[u8]>,
    records: &Table<'_, &[u8], &[u8]>,
    sealer: &Sealer,
) -> Result<(), Fault> {
    let read = |e| storage_fault("reading the meta table", e);
    let format = meta
        .get(META_FORMAT)
        .map_err(read)?
        .map(|v| v.value().to_vec());
    match format.as_deref() {
        None => {
            let entries = records.len().map_err(read)? + meta.len().map_err(read)?;
            if entries > 0 {
                return Err(Fault::Unusable(format!(
                    "{entries} entries but no format entry"
                )));
            }
            let write = |e| storage_fault("initializing the database", e);
            meta.insert(META_FORMAT, [FORMAT_VERSION].as_slice())
                .map_err(write)?;
            let check = sealer.seal(META_CHECK.as_bytes(), CHECK_PLAINTEXT)?;
            meta.insert(META_CHECK, check.as_slice()).map_err(write)?;
            return Ok(());
        }
        Some([FORMAT_VERSION]) => {}
        Some(other) => {
            return Err(Fault::Unusable(format!("unknown format {other:?}")));
        }
    }
    let check = meta
        .get(META_CHECK)
        .map_err(read)?
        .map(|v| v.value().to_vec());
    let Some(check) = check else {
        return Err(Fault::Unusable("no key check entry".into()));
    };
    if sealer.open(META_CHECK.as_bytes(), &check).as_deref() != Some(CHECK_PLAINTEXT) {
        let contacts = usize::from(meta.get(META_CONTACTS).map_err(read)?.is_some());
        let records = usize::try_from(records.len().map_err(read)?).unwrap_or(usize::MAX);
        return Err(Fault::WrongKey {
            entries: records.saturating_add(contacts),
        });
    }
    Ok(())
}

/// Reads every record entry into `cache` and returns the slots to remove: entries that fail
/// authentication, records expired at `now`, values the limits refuse.
fn scan(
    records: &Table<'_, &[u8], &[u8]>,
    sealer: &Sealer,
    limits: &StoreLimits,
    now: Option<u64>,
    cache: &mut MemoryStore,
    report: &mut OpenReport,
) -> Result<Vec<Vec<u8>>, Fault> {
    let read = |e| storage_fault("reading the records", e);
    let mut doomed = Vec::new();
    for item in records.iter().map_err(read)? {
        let (slot, sealed) = item.map_err(read)?;
        let (slot, sealed) = (slot.value(), sealed.value());
        match sealer.open_record(slot, sealed) {
            None => {
                report.corrupt_skipped += 1;
                doomed.push(slot.to_vec());
            }
            Some((record, _)) if now.is_some_and(|now| record.is_expired(now)) => {
                report.expired_purged += 1;
                doomed.push(slot.to_vec());
            }
            Some((record, _))
                if record.value.is_empty() || record.value.len() > limits.max_value_len =>
            {
                report.dropped_over_limits += 1;
                doomed.push(slot.to_vec());
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
) -> Vec<Vec<u8>> {
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
            doomed.push(sealer.slot(&key).to_vec());
        }
    }
    doomed
}
