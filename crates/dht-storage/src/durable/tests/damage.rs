//! Damage and secrecy: what the file reveals, damaged and moved entries, files that are
//! not a store, a database already open, the contacts blob, a wrong key.

use std::fs;

use super::*;
use crate::durable::file::{META_CONTACTS, suffixed};

#[test]
fn the_file_reveals_no_key_value_or_peer_id() {
    let dir = TempDir::new("raw");
    let (mut store, _) = open_default(&dir);
    let values: Vec<Vec<u8>> = (0..20u8)
        .map(|n| format!("plaintext-value-{n:02}-{}", "x".repeat(40)).into_bytes())
        .collect();
    for (n, value) in (0u8..).zip(&values) {
        let origin = Origin::Peer(node(200));
        store
            .put_from(rec(n, 1, value, NOW + 100), NOW, origin)
            .unwrap();
    }
    // Overwritten and removed records, whose pages SQLite frees, must not show either.
    store
        .put(rec(0, 2, b"plaintext-newer", NOW + 100), NOW)
        .unwrap();
    store.remove(&key(1)).unwrap();
    store.save_contacts(b"plaintext-contacts-blob").unwrap();
    drop(store);
    // The file and its write-ahead log, if the close left one.
    let mut raw = fs::read(dir.file()).unwrap();
    raw.extend(fs::read(suffixed(&dir.file(), "-wal")).unwrap_or_default());
    let has = |needle: &[u8]| raw.windows(needle.len()).any(|w| w == needle);
    assert!(!has(b"plaintext"));
    for n in 0..20u8 {
        assert!(!has(key(n).as_bytes()), "key {n}");
        assert!(!has(&key(n).as_bytes()[..8]), "key prefix {n}");
    }
    assert!(!has(node(200).as_bytes()));
    assert!(!has(&[0x78; 16]), "a run of the values' bytes");
}

#[test]
fn flipped_bytes_are_reported_set_aside_and_the_store_keeps_working() {
    let dir = TempDir::new("flip");
    let (mut store, _) = open_default(&dir);
    for k in 1..=4 {
        store.put(rec(k, 1, b"value", NOW + 100), NOW).unwrap();
    }
    drop(store);
    // Damage the nonce of 2, the ciphertext of 3 and the tag of 4.
    let mut damaged = Vec::new();
    with_records(&dir, |db| {
        for (k, at) in [(2, 0usize), (3, 20), (4, usize::MAX)] {
            let mut sealed = sealed_at(db, &slot(k));
            let at = at.min(sealed.len() - 1);
            sealed[at] ^= 0x01;
            put_raw(db, &slot(k), &sealed);
            damaged.push(("records".to_string(), slot(k).to_vec(), sealed));
        }
    });
    let (store, report) = open_default(&dir);
    assert_eq!((report.records, report.corrupt_skipped), (1, 3));
    assert_eq!(report.moved_aside, None);
    // Kept aside as they were, for inspection or recovery; never served.
    drop(store);
    let mut aside = damaged_on_disk(&dir);
    aside.sort();
    damaged.sort();
    assert_eq!(aside, damaged);
    assert_eq!(entries_on_disk(&dir), 1);
    let (mut store, report) = open_default(&dir);
    assert_eq!((report.records, report.corrupt_skipped), (1, 0));
    assert!(store.get(&key(1), NOW).unwrap().is_some());
    for k in 2..=4 {
        assert_eq!(store.get(&key(k), NOW), Ok(None));
    }
    assert_eq!(store.records(NOW).unwrap().len(), 1);
    assert_eq!(
        store.put(rec(2, 1, b"again", NOW + 100), NOW),
        Ok(PutOutcome::Inserted)
    );
    drop(store);
    let (store, report) = open_default(&dir);
    assert_eq!((report.records, report.corrupt_skipped), (2, 0));
    assert!(store.get(&key(2), NOW).unwrap().is_some());
}

#[test]
fn an_entry_copied_to_another_slot_fails_authentication() {
    let dir = TempDir::new("swap");
    let (mut store, _) = open_default(&dir);
    store.put(rec(1, 1, b"one", NOW + 100), NOW).unwrap();
    store.put(rec(2, 1, b"two", NOW + 100), NOW).unwrap();
    drop(store);
    with_records(&dir, |db| {
        let one = sealed_at(db, &slot(1));
        // Over another record's entry, and into the slot of a key never stored.
        put_raw(db, &slot(2), &one);
        put_raw(db, &slot(3), &one);
    });
    let (store, report) = open_default(&dir);
    assert_eq!((report.records, report.corrupt_skipped), (1, 2));
    assert!(store.get(&key(1), NOW).unwrap().is_some());
    assert_eq!(store.get(&key(2), NOW), Ok(None));
    assert_eq!(store.get(&key(3), NOW), Ok(None));
    drop(store);
    assert_eq!(entries_on_disk(&dir), 1);
}

#[test]
fn a_file_that_is_not_a_database_is_moved_aside() {
    let dir = TempDir::new("garbage");
    fs::create_dir_all(dir.path()).unwrap();
    fs::write(dir.file(), b"this is not a database").unwrap();
    let (mut store, report) = open_default(&dir);
    let aside = dir.path().join("records.sqlite.broken-1");
    assert_eq!(report.moved_aside.as_ref(), Some(&aside));
    assert!(report.moved_aside_reason.is_some());
    assert_eq!(fs::read(&aside).unwrap(), b"this is not a database");
    assert!(store.is_empty());
    store.put(rec(1, 1, b"v", NOW + 10), NOW).unwrap();
    drop(store);
    let (store, report) = open_default(&dir);
    assert_eq!(report.moved_aside, None);
    assert_eq!(report.records, 1);
    drop(store);
    // Random bytes, larger than a header: moved aside under the next name.
    let noise: Vec<u8> = (0..64 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    fs::write(dir.file(), &noise).unwrap();
    let (store, report) = open_default(&dir);
    let aside = dir.path().join("records.sqlite.broken-2");
    assert_eq!(report.moved_aside.as_ref(), Some(&aside));
    assert_eq!(fs::read(&aside).unwrap(), noise);
    assert!(store.is_empty());
}

#[test]
fn a_database_of_another_schema_or_format_is_moved_aside() {
    let dir = TempDir::new("schema");
    fs::create_dir_all(dir.path()).unwrap();
    with_records(&dir, |db| {
        db.execute_batch(
            "CREATE TABLE records (id INTEGER PRIMARY KEY, body TEXT);
             INSERT INTO records VALUES (1, 'two');",
        )
        .unwrap();
    });
    let (store, report) = open_default(&dir);
    assert!(report.moved_aside.is_some());
    assert!(store.is_empty());
    drop(store);
    // Our schema, an unknown format version.
    with_records(&dir, |db| {
        db.execute("UPDATE meta SET value = x'09' WHERE name = 'format'", [])
            .unwrap();
    });
    let (_, report) = open_default(&dir);
    assert_eq!(
        report.moved_aside,
        Some(dir.path().join("records.sqlite.broken-2"))
    );
    assert!(
        report
            .moved_aside_reason
            .is_some_and(|r| r.contains("format"))
    );
}

#[test]
fn an_open_database_is_an_error_and_is_not_moved_aside() {
    let dir = TempDir::new("locked");
    let (store, _) = open_default(&dir);
    let second = DurableStore::open(dir.path(), skey(1), StoreLimits::default());
    assert!(matches!(second, Err(StoreError::Backend(_))));
    assert!(!dir.path().join("records.sqlite.broken-1").exists());
    drop(store);
    assert!(DurableStore::open(dir.path(), skey(1), StoreLimits::default()).is_ok());
}

#[test]
fn contacts_roundtrip() {
    let dir = TempDir::new("contacts");
    let (mut store, _) = open_default(&dir);
    assert_eq!(store.load_contacts(), Ok(None));
    store.save_contacts(b"first").unwrap();
    store.save_contacts(b"second blob").unwrap();
    assert_eq!(store.load_contacts(), Ok(Some(b"second blob".to_vec())));
    let too_large = vec![0; MAX_CONTACTS_LEN + 1];
    assert_eq!(
        store.save_contacts(&too_large),
        Err(StoreError::ValueTooLarge {
            len: MAX_CONTACTS_LEN + 1,
            max: MAX_CONTACTS_LEN
        })
    );
    store.save_contacts(b"").unwrap();
    assert_eq!(store.load_contacts(), Ok(Some(Vec::new())));
    store.save_contacts(b"kept").unwrap();
    drop(store);
    let (store, report) = open_default(&dir);
    assert_eq!(report.corrupt_skipped, 0);
    assert_eq!(store.load_contacts(), Ok(Some(b"kept".to_vec())));
    drop(store);
    // A damaged blob is reported, removed and not served.
    with_records(&dir, |db| {
        let mut sealed: Vec<u8> = db
            .query_row(
                "SELECT value FROM meta WHERE name = ?1",
                [META_CONTACTS],
                |row| row.get(0),
            )
            .unwrap();
        sealed[14] ^= 0x80;
        db.execute(
            "UPDATE meta SET value = ?1 WHERE name = ?2",
            (sealed.as_slice(), META_CONTACTS),
        )
        .unwrap();
    });
    let (store, report) = open_default(&dir);
    assert_eq!(report.corrupt_skipped, 1);
    assert_eq!(store.load_contacts(), Ok(None));
}

#[test]
fn a_wrong_key_serves_nothing_and_keeps_the_file_for_the_right_key() {
    let dir = TempDir::new("wrong-key");
    let (mut store, _) = open_default(&dir);
    for k in 1..=3 {
        store.put(rec(k, 1, b"value", NOW + 100), NOW).unwrap();
    }
    store.save_contacts(b"contacts").unwrap();
    drop(store);
    let (mut store, report) =
        DurableStore::open_at(dir.path(), skey(2), StoreLimits::default(), NOW).unwrap();
    assert_eq!(report.corrupt_skipped, 4);
    assert_eq!(report.records, 0);
    let aside = dir.path().join("records.sqlite.broken-1");
    assert_eq!(report.moved_aside.as_ref(), Some(&aside));
    for k in 1..=3 {
        assert_eq!(store.get(&key(k), NOW), Ok(None));
    }
    assert_eq!(store.load_contacts(), Ok(None));
    // The new store works under the new key.
    store.put(rec(9, 1, b"new", NOW + 100), NOW).unwrap();
    drop(store);
    // The old file still opens with the right key.
    let other = TempDir::new("wrong-key-recovered");
    fs::create_dir_all(other.path()).unwrap();
    fs::copy(&aside, other.file()).unwrap();
    let (store, report) = open_default(&other);
    assert_eq!((report.records, report.corrupt_skipped), (3, 0));
    assert!(store.get(&key(1), NOW).unwrap().is_some());
    assert_eq!(store.load_contacts(), Ok(Some(b"contacts".to_vec())));
}

/// Writes a `records.redb` file as the store of earlier versions did: the same sealed
/// entries, in redb tables.
fn write_old_redb(dir: &TempDir, records: &[Record]) {
    use redb::TableDefinition;
    let records_table: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("records");
    let meta_table: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("meta");
    fs::create_dir_all(dir.path()).unwrap();
    let sealer = Sealer::new(&skey(1)).unwrap();
    let db = redb::Database::create(dir.path().join(OLD_FILE_NAME)).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut meta = txn.open_table(meta_table).unwrap();
        meta.insert("format", [1u8].as_slice()).unwrap();
        let check = sealer
            .seal(b"check", super::super::load::CHECK_PLAINTEXT)
            .unwrap();
        meta.insert("check", check.as_slice()).unwrap();
        let mut table = txn.open_table(records_table).unwrap();
        for record in records {
            let slot = sealer.slot(&record.key);
            let sealed = sealer.seal_record(&slot, record, Origin::Local).unwrap();
            table.insert(slot.as_slice(), sealed.as_slice()).unwrap();
        }
    }
    txn.commit().unwrap();
}

#[test]
fn a_records_redb_file_of_an_earlier_version_is_migrated() {
    let dir = TempDir::new("migrate");
    write_old_redb(
        &dir,
        &[rec(1, 1, b"one", NOW + 100), rec(2, 1, b"two", NOW + 100)],
    );
    let (store, report) = open_default(&dir);
    assert_eq!(
        report.migrated, 4,
        "two records, the format and the key check"
    );
    assert_eq!((report.records, report.corrupt_skipped), (2, 0));
    assert_eq!(report.moved_aside, None);
    assert_eq!(
        store.get(&key(2), NOW).unwrap().map(|r| r.value),
        Some(Bytes::from_static(b"two"))
    );
    assert!(!dir.path().join(OLD_FILE_NAME).exists());
    assert!(dir.path().join("records.redb.migrated").exists());
    drop(store);
    // Copied once: the next open reads the SQLite file only.
    let (store, report) = open_default(&dir);
    assert_eq!((report.records, report.migrated), (2, 0));
    drop(store);
}

#[test]
fn an_unreadable_records_redb_file_is_moved_aside() {
    let dir = TempDir::new("migrate-garbage");
    fs::create_dir_all(dir.path()).unwrap();
    fs::write(dir.path().join(OLD_FILE_NAME), b"not redb").unwrap();
    let (store, report) = open_default(&dir);
    assert_eq!(
        report.moved_aside,
        Some(dir.path().join("records.redb.broken-1"))
    );
    assert_eq!((report.records, report.migrated), (0, 0));
    assert!(store.is_empty());
}
