//! The key check entry and the storage key: a damaged check told from a wrong key,
//! re-sealing a file under the key that replaces its own, and SQLite's quick_check at open.

use super::*;

/// Flips one byte of the key check entry of the (closed) database of `dir`.
fn damage_the_check(dir: &TempDir) {
    with_records(dir, |db| {
        let mut check: Vec<u8> = db
            .query_row("SELECT value FROM meta WHERE name = 'check'", [], |row| {
                row.get(0)
            })
            .unwrap();
        check[20] ^= 0x01;
        db.execute(
            "UPDATE meta SET value = ?1 WHERE name = 'check'",
            [check.as_slice()],
        )
        .unwrap();
    });
}

#[test]
fn a_damaged_key_check_costs_only_itself_not_the_file() {
    let dir = TempDir::new("check-damaged");
    let (mut store, _) = open_default(&dir);
    for k in 1..=3 {
        store.put(rec(k, 1, b"value", NOW + 100), NOW).unwrap();
    }
    store.save_contacts(b"contacts").unwrap();
    drop(store);
    damage_the_check(&dir);
    let (store, report) = open_default(&dir);
    assert_eq!(report.moved_aside, None, "{report:?}");
    assert_eq!((report.records, report.corrupt_skipped), (3, 1));
    for k in 1..=3 {
        assert!(store.get(&key(k), NOW).unwrap().is_some());
    }
    assert_eq!(store.load_contacts(), Ok(Some(b"contacts".to_vec())));
    drop(store);
    let aside = damaged_on_disk(&dir);
    assert_eq!(aside.len(), 1);
    assert_eq!(
        (aside[0].0.as_str(), aside[0].1.as_slice()),
        ("meta", &b"check"[..])
    );
    // Written again: the next open finds nothing wrong.
    let (_, report) = open_default(&dir);
    assert_eq!((report.records, report.corrupt_skipped), (3, 0));
    assert_eq!(report.moved_aside, None);
}

#[test]
fn a_damaged_check_with_only_contacts_left_is_still_told_from_a_wrong_key() {
    let dir = TempDir::new("check-contacts");
    let (mut store, _) = open_default(&dir);
    store.save_contacts(b"contacts").unwrap();
    drop(store);
    damage_the_check(&dir);
    let (store, report) = open_default(&dir);
    assert_eq!(report.moved_aside, None);
    assert_eq!(store.load_contacts(), Ok(Some(b"contacts".to_vec())));
    drop(store);
    // With the wrong key, the same file is moved aside whole.
    damage_the_check(&dir);
    let (_, report) =
        DurableStore::open_at(dir.path(), skey(2), StoreLimits::default(), NOW).unwrap();
    assert!(report.moved_aside.is_some());
    assert_eq!(report.corrupt_skipped, 1);
}

#[test]
fn a_file_sealed_under_the_former_key_is_resealed_under_the_new_one() {
    let dir = TempDir::new("rekey");
    let (mut store, _) = open_default(&dir);
    for k in 1..=3 {
        store.put(rec(k, 1, b"value", NOW + 100), NOW).unwrap();
    }
    store
        .put_from(rec(4, 2, b"theirs", NOW + 100), NOW, Origin::Peer(node(7)))
        .unwrap();
    store.save_contacts(b"contacts").unwrap();
    let before = snapshot(&store);
    drop(store);
    let (store, report) =
        DurableStore::open_rekeying(dir.path(), skey(2), skey(1), StoreLimits::default(), NOW)
            .unwrap();
    assert_eq!(report.moved_aside, None, "{report:?}");
    assert_eq!((report.rekeyed, report.records), (5, 4));
    assert_eq!(snapshot(&store), before);
    assert_eq!(store.usage_of(&node(7)).0, 1);
    assert_eq!(store.load_contacts(), Ok(Some(b"contacts".to_vec())));
    drop(store);
    // Now under the new key only: it opens plainly, and the former key is wrong.
    let (store, report) =
        DurableStore::open_at(dir.path(), skey(2), StoreLimits::default(), NOW).unwrap();
    assert_eq!(
        (report.records, report.rekeyed, report.corrupt_skipped),
        (4, 0, 0)
    );
    assert_eq!(snapshot(&store), before);
    drop(store);
    let (_, report) = open_default(&dir);
    assert!(report.moved_aside.is_some());
}

#[test]
fn a_damaged_check_in_a_file_of_the_former_key_is_resealed_not_moved_aside() {
    let dir = TempDir::new("rekey-damaged-check");
    let (mut store, _) = open_default(&dir);
    for k in 1..=3 {
        store.put(rec(k, 1, b"value", NOW + 100), NOW).unwrap();
    }
    let before = snapshot(&store);
    drop(store);
    damage_the_check(&dir);
    let (store, report) =
        DurableStore::open_rekeying(dir.path(), skey(2), skey(1), StoreLimits::default(), NOW)
            .unwrap();
    assert_eq!(report.moved_aside, None, "{report:?}");
    assert_eq!(
        (report.rekeyed, report.records, report.corrupt_skipped),
        (3, 3, 1)
    );
    assert_eq!(snapshot(&store), before);
}

#[test]
fn a_former_key_that_does_not_fit_changes_nothing() {
    let dir = TempDir::new("rekey-wrong");
    let (mut store, _) = open_default(&dir);
    store.put(rec(1, 1, b"value", NOW + 100), NOW).unwrap();
    drop(store);
    // Neither key 2 nor key 3 sealed it: moved aside as sealed under another key.
    let (_, report) =
        DurableStore::open_rekeying(dir.path(), skey(2), skey(3), StoreLimits::default(), NOW)
            .unwrap();
    assert_eq!(report.rekeyed, 0);
    assert!(report.moved_aside.is_some());
}

/// Bytes `at..at + 4` of `file`, big-endian.
fn read_u32(file: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(file[at..at + 4].try_into().unwrap())
}

#[test]
fn damage_that_no_record_read_touches_is_found_by_quick_check_at_open() {
    let dir = TempDir::new("quick-check");
    let (mut store, _) = open_default(&dir);
    let value = vec![0x42; 2000];
    for k in 0..=200 {
        store.put(rec(k, 1, &value, NOW + 100), NOW).unwrap();
    }
    for k in 0..150 {
        store.remove(&key(k)).unwrap();
    }
    drop(store);
    // The removed records' pages are on the free list, which no read of the records
    // visits. Make its first trunk page claim more leaves than a page can hold.
    let mut file = fs::read(dir.file()).unwrap();
    let page_size = match u16::from_be_bytes([file[16], file[17]]) {
        1 => 65_536,
        n => usize::from(n),
    };
    let trunk = read_u32(&file, 32) as usize;
    assert!(trunk > 0, "no free list: the test needs one");
    let at = (trunk - 1) * page_size + 4;
    file[at..at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
    fs::write(dir.file(), &file).unwrap();
    let (store, report) = open_default(&dir);
    let reason = report.moved_aside_reason.clone().unwrap_or_default();
    assert!(report.moved_aside.is_some(), "{report:?}");
    assert!(reason.contains("quick_check"), "{reason}");
    assert_eq!(store.len(), 0);
}
