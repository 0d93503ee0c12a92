//! The write path of [`DurableStore`]: puts applied to the in-memory store, the database
//! operations they call for (entries sealed, slots to delete), then one transaction and
//! one commit for the batch; on failure the batch is undone in memory.
//!
//! [`DurableStore::stage_many`] splits the two halves: the memory half runs under the
//! caller's hold of the store, the disk half ([`Staged::commit`]) without it, holding only
//! the database's own lock, so that readers of the store never wait for a commit, an
//! `fsync` or a checkpoint. Readers may see a staged batch's records before they are on
//! disk; nobody is told a put succeeded before its commit, and a failed commit withdraws
//! the batch ([`DurableStore::unstage`]).

use std::any::Any;
use std::sync::{Arc, Mutex};

use dht_id::Key;
use rusqlite::Connection;

use super::DurableStore;
use super::file::{backend, begin};
use super::seal::Sealer;
use crate::memory::Change;
use crate::quota::Origin;
use crate::record::Record;
use crate::store::{PutOutcome, StagedWrite, Staging, StoreError};

/// One database operation of a batch.
enum Op {
    /// Removes the entry of a slot (a purged record).
    Delete([u8; 32]),
    /// Writes a record, sealed for its slot, into the slot.
    Write([u8; 32], Record, Origin),
}

/// The disk half of a staged batch: its operations, and what undoes it in memory.
pub(crate) struct Staged {
    db: Arc<Mutex<Connection>>,
    sealer: Arc<Sealer>,
    ops: Vec<Op>,
    undo: Vec<(Key, Change)>,
}

impl StagedWrite for Staged {
    /// Runs the operations in one transaction and commits (durably, as the store's sync
    /// mode says), holding the database's lock only.
    fn commit(&mut self) -> Result<(), StoreError> {
        let db = self.db.lock().unwrap_or_else(|e| e.into_inner());
        write_ops(&db, &self.sealer, &self.ops)
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

/// Runs `ops` in one transaction and commits; nothing to do commits nothing. Entries
/// are sealed here, off the store's lock.
fn write_ops(db: &Connection, sealer: &Sealer, ops: &[Op]) -> Result<(), StoreError> {
    if ops.is_empty() {
        return Ok(());
    }
    let txn = begin(db)?;
    for op in ops {
        match op {
            Op::Delete(slot) => txn
                .prepare_cached("DELETE FROM records WHERE slot = ?1")
                .and_then(|mut delete| delete.execute([slot.as_slice()]))
                .map_err(|e| backend("removing a purged record", e))?,
            Op::Write(slot, record, origin) => {
                let sealed = sealer.seal_record(slot, record, *origin)?;
                txn.prepare_cached("INSERT OR REPLACE INTO records (slot, entry) VALUES (?1, ?2)")
                    .and_then(|mut insert| insert.execute((slot.as_slice(), sealed.as_slice())))
                    .map_err(|e| backend("writing a record", e))?
            }
        };
    }
    txn.commit().map_err(|e| backend("committing", e))
}

impl DurableStore {
    /// Applies `puts` in order in ONE write transaction with one durable commit (group
    /// commit), with the semantics of [`RecordStore::put_from`] for each; returns their
    /// results in order. A put's refusal does not affect the others. If the database write
    /// or the commit fails, nothing of the batch is applied (in memory or on disk) and every
    /// result is that [`StoreError::Backend`]. A batch that changes nothing commits
    /// nothing.
    ///
    /// [`RecordStore::put_from`]: crate::RecordStore::put_from
    pub fn put_many(
        &mut self,
        puts: Vec<(Record, Origin)>,
        now: u64,
    ) -> Vec<Result<PutOutcome, StoreError>> {
        let (results, staged) = self.stage_many(puts, now);
        let Some(mut staged) = staged else {
            return results;
        };
        match staged.commit() {
            Ok(()) => results,
            Err(e) => {
                let n = results.len();
                self.unstage(staged);
                vec![Err(e); n]
            }
        }
    }

    /// [`put_many`](Self::put_many) in two halves ([`RecordStore::stage_many`]): applies
    /// the puts in memory and returns their results with the disk half (which seals the
    /// entries and commits them), to run without holding the store; `None` when the batch
    /// changed nothing.
    ///
    /// [`RecordStore::stage_many`]: crate::RecordStore::stage_many
    pub fn stage_many(&mut self, puts: Vec<(Record, Origin)>, now: u64) -> Staging {
        let n = puts.len();
        let mut results = Vec::with_capacity(n);
        let mut undo: Vec<(Key, Change)> = Vec::new();
        let mut ops = Vec::new();
        for (record, origin) in puts {
            let key = record.key;
            let change = match self.cache.put_traced(record, now, origin) {
                Ok(change) => change,
                Err(refused) => {
                    results.push(Err(refused));
                    continue;
                }
            };
            results.push(Ok(change.outcome));
            if !change.stored() && change.purged.is_empty() {
                continue;
            }
            let sealed = self.ops_of(&key, &change, &mut ops);
            undo.push((key, change));
            if let Err(e) = sealed {
                self.undo(undo);
                return (vec![Err(e); n], None);
            }
        }
        if undo.is_empty() {
            return (results, None);
        }
        let staged = Staged {
            db: self.db.clone(),
            sealer: self.sealer.clone(),
            ops,
            undo,
        };
        (results, Some(Box::new(staged)))
    }

    /// [`RecordStore::stage_purge`]: the records expired at `now` leave memory, and the
    /// disk half removes their entries; a failed disk half handed to
    /// [`unstage`](Self::unstage) puts them back.
    ///
    /// [`RecordStore::stage_purge`]: crate::RecordStore::stage_purge
    pub fn stage_purge(&mut self, now: u64) -> (usize, Option<Box<dyn StagedWrite>>) {
        let expired = self.cache.expired_keys(now);
        if expired.is_empty() {
            return (0, None);
        }
        let mut ops = Vec::with_capacity(expired.len());
        let mut undo = Vec::with_capacity(expired.len());
        for key in expired {
            if let Some((record, origin)) = self.cache.take(&key) {
                ops.push(Op::Delete(self.sealer.slot(&key)));
                let change = Change {
                    outcome: PutOutcome::Unchanged,
                    replaced: None,
                    purged: vec![(record, origin)],
                };
                undo.push((key, change));
            }
        }
        let purged = undo.len();
        let staged = Staged {
            db: self.db.clone(),
            sealer: self.sealer.clone(),
            ops,
            undo,
        };
        (purged, Some(Box::new(staged)))
    }

    /// Undoes in memory a batch whose disk half failed ([`RecordStore::unstage`]). A
    /// disk half of another store is ignored.
    ///
    /// [`RecordStore::unstage`]: crate::RecordStore::unstage
    pub fn unstage(&mut self, staged: Box<dyn StagedWrite>) {
        if let Ok(staged) = staged.into_any().downcast::<Staged>() {
            self.undo(staged.undo);
        }
    }

    /// Appends to `ops` what a put of `key` changed: deletes of the purged records'
    /// entries, then the new record's sealed entry.
    fn ops_of(&self, key: &Key, change: &Change, ops: &mut Vec<Op>) -> Result<(), StoreError> {
        for (purged, _) in &change.purged {
            ops.push(Op::Delete(self.sealer.slot(&purged.key)));
        }
        if change.stored() {
            let (record, origin) = self
                .cache
                .entry(key)
                .ok_or_else(|| StoreError::Backend("a stored record is not held".into()))?;
            ops.push(Op::Write(self.sealer.slot(key), record.clone(), origin));
        }
        Ok(())
    }

    /// Undoes the in-memory changes of puts whose transaction failed, last first.
    pub(super) fn undo(&mut self, undo: Vec<(Key, Change)>) {
        for (key, change) in undo.into_iter().rev() {
            if change.stored() {
                self.cache.take(&key);
            }
            if let Some((record, origin)) = change.replaced {
                self.cache.restore(record, origin);
            }
            for (record, origin) in change.purged {
                self.cache.restore(record, origin);
            }
        }
    }

    /// Removes the entries of `slots` in one durable transaction.
    pub(super) fn remove_slots(
        &self,
        slots: impl Iterator<Item = [u8; 32]>,
    ) -> Result<(), StoreError> {
        let ops: Vec<Op> = slots.map(Op::Delete).collect();
        write_ops(&self.db(), &self.sealer, &ops)
    }
}
