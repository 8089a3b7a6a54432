//! Completing parked operations: `complete_pending` reads the parked
//! operations' records from the device in batches and finishes each,
//! reporting every one exactly once (see `Session::complete_pending`).

use super::{
    Completed, CompletedOp, OpError, PendingKind, PendingOp, RmwStatus, Session, UpdateStatus,
};
use std::sync::atomic::Ordering;

use crate::Result;
use crate::device::Device;
use crate::index::HashBucketEntry;
use crate::readcache;
use crate::record::{EncodedKey, Key, Merge, Value};
use crate::stats::Count;
use crate::store::disk::{DiskReader, DiskRecord};
use crate::store::record::{RecordInfo, pad8};

impl<K: Key, V: Value, D: Device> Session<K, V, D> {
    /// Finishes every pending operation of this session and returns each
    /// one's result exactly once, by serial number: a read with its value,
    /// an RMW applied, or — when its record could not be read back or its
    /// update not written — [`CompletedOp::Failed`] with the error (that
    /// operation was not applied and is not retried; the others finish
    /// regardless). Device reads are positional and issued on this thread
    /// in batches, so sessions on different threads read in parallel;
    /// every parked operation has finished when this returns (FASTER's
    /// `CompletePending(true)`; reads here are synchronous, so there is no
    /// non-waiting form).
    ///
    /// Ordering: a pending RMW is applied when it completes here, after
    /// any operation the session issued on the same key in between (an
    /// `rmw` that went pending, then a `delete` of the key, then
    /// `complete_pending`: the RMW applies to the deleted key, giving its
    /// initial value) — as in FASTER. Complete pending RMWs before a later
    /// write of the same key where that order matters.
    pub fn complete_pending(&mut self) -> Result<Vec<Completed<V>>>
    where
        V: Merge + Clone,
    {
        let mut done = std::mem::take(&mut self.ready);
        done.reserve(self.pending.len());
        // Operations parked again (an RMW whose chain changed) wait for the
        // next round, so the loop ends.
        while !self.pending.is_empty() {
            let ops: Vec<PendingOp<V>> = self.pending.drain(..).collect();
            let disk = self.disk();
            let found =
                disk.find_batch(ops.iter().map(|op| (op.key.as_slice(), op.address)).collect());
            for (op, found) in ops.into_iter().zip(found) {
                let serial = op.serial;
                let rmw = matches!(op.kind, PendingKind::Rmw { .. } | PendingKind::Update { .. });
                let result = found.and_then(|found| self.complete_one(op, found, &mut done));
                if let Err(e) = result {
                    // Not applied: it leaves the parked set (it is no
                    // longer the session's to finish) and is reported.
                    if rmw {
                        self.slot.finished(serial);
                    }
                    let op = CompletedOp::Failed(OpError(std::sync::Arc::new(e)));
                    done.push(Completed { serial, op });
                }
            }
        }
        Ok(done)
    }

    fn complete_one(
        &mut self,
        op: PendingOp<V>,
        found: Option<DiskRecord>,
        done: &mut Vec<Completed<V>>,
    ) -> Result<()>
    where
        V: Merge + Clone,
    {
        let found_nothing = found.is_none();
        let old = found.filter(|r| !r.info.is_tombstone());
        self.completed(op.parked_at.elapsed());
        match op.kind {
            PendingKind::Read { entry } => {
                let value = match (old, found_nothing) {
                    (Some(record), _) => {
                        let value = V::decode(&record.value)?;
                        if self.store.read_cache.is_some() {
                            self.begin();
                            self.cache_read(op.hash, &op.key, entry, &record);
                            self.end();
                        }
                        Some(value)
                    }
                    // Nothing found while the key's entry changed:
                    // compaction may have moved the record (see
                    // `Session::entry_moved`); read again from the index.
                    (None, true) if self.entry_moved(op.hash, entry) => {
                        let key = EncodedKey(op.key.as_slice());
                        self.begin();
                        let again = self.read_with_protected(&key, op.hash, None, |b| {
                            super::found(b).map(V::decode).transpose()
                        });
                        self.end();
                        again??
                    }
                    (None, _) => None,
                };
                done.push(Completed { serial: op.serial, op: CompletedOp::Read(value) });
            }
            PendingKind::Rmw { input, expected_entry } => {
                let key = K::decode_key(&op.key)?;
                let (new_value, count) = match &old {
                    Some(record) => {
                        (V::copy_update(V::view(&record.value)?, &input), Count::RmwsCopyUpdate)
                    }
                    None => (V::initial(&input), Count::RmwsInitial),
                };
                self.begin();
                let status = self.publish_pending_rmw(
                    &key,
                    &input,
                    (&new_value, count),
                    op.hash,
                    expected_entry,
                    op.serial,
                );
                // The operation leaves the parked set while the session is
                // still protected: a checkpoint's version change cannot
                // complete (and claim this session's commit point) in
                // between, which would list as excluded an operation whose
                // record is already in the old version.
                if matches!(status, Ok(RmwStatus::Done)) {
                    self.slot.finished(op.serial);
                }
                // Unprotect on every path, errors included: a session left
                // protected would hold back every page flush.
                self.end_write();
                if status? == RmwStatus::Done {
                    done.push(Completed { serial: op.serial, op: CompletedOp::Rmw });
                }
            }
            PendingKind::Update { mut update, expected_entry } => {
                let old = old.as_ref().map(|record| record.value.as_slice());
                self.begin();
                let status = self.finish_parked_update(
                    &EncodedKey(op.key.as_slice()),
                    op.hash,
                    &mut update,
                    old,
                    expected_entry,
                    op.serial,
                );
                // As for an RMW above: leaves the parked set while protected.
                if matches!(status, Ok(UpdateStatus::Done(_))) {
                    self.slot.finished(op.serial);
                }
                self.end_write();
                if let UpdateStatus::Done(outcome) = status? {
                    done.push(Completed { serial: op.serial, op: CompletedOp::Update(outcome) });
                }
            }
        }
        Ok(())
    }

    /// Publishes the result of a pending RMW if the key's chain is as it was
    /// when the RMW went pending; otherwise runs the RMW again. Protected.
    fn publish_pending_rmw(
        &mut self,
        key: &K,
        input: &V,
        (new_value, count): (&V, Count),
        hash: u64,
        expected_entry: u64,
        serial: u64,
    ) -> Result<RmwStatus>
    where
        V: Merge + Clone,
    {
        let slot = self.store.index.find_or_create_entry(hash);
        if slot.entry.raw() == expected_entry
            && self.append(&slot, hash, key, Some(new_value), false)?
        {
            self.count(count);
            return Ok(RmwStatus::Done);
        }
        self.count(Count::Retries);
        // The chain changed while we read: redo the whole RMW.
        self.rmw_inner(key, input, serial)
    }

    /// Copies `record`, just read from the device for `key` (encoded) under
    /// an index entry that held `entry` when the read began, into the read
    /// cache (if the store has one) and points the entry at it — only if
    /// the entry still holds `entry` and that is a log address (see
    /// `readcache`'s protocol). Best effort: nothing happens when the
    /// cache has no room or the entry moved. The caller is protected,
    /// inside an operation.
    pub(super) fn cache_read(&mut self, hash: u64, key: &[u8], entry: u64, record: &DiskRecord) {
        let previous = HashBucketEntry::from_raw(entry).address();
        if self.store.read_cache.is_none()
            || readcache::is_cached(previous)
            || !previous.is_valid()
            || record.info.is_tombstone()
        {
            return;
        }
        self.link_cached(hash, key, entry, &record.value, record.info.version(), &|| true);
    }

    /// Puts `value` (an encoding of `V`) for `key` (encoded, of hash
    /// `hash`) in the read cache, when the store has one, for a key this
    /// store had no record of under the index entry `observed` (the
    /// [`Self::last_miss_entry`] of the read that found nothing, with the
    /// migration count `still` compares loaded before that read): F2's
    /// cold reads. Linked only if the entry still holds `observed`
    /// (for an entry with no log address, any entry with none) and `still`
    /// holds at the link, which runs protected: F2 passes "no migration
    /// published since", which rules out the one way an entry returns to a
    /// value it held (emptied by a migration's clearing, which follows an
    /// epoch drain after the count moves). Returns whether it was linked.
    pub(crate) fn cache_value(
        &mut self,
        key: &[u8],
        hash: u64,
        observed: u64,
        value: &[u8],
        still: &dyn Fn() -> bool,
    ) -> bool {
        if self.store.read_cache.is_none()
            || readcache::is_cached(HashBucketEntry::from_raw(observed).address())
        {
            return false;
        }
        self.begin();
        let version = self.version_bits;
        let linked = self.link_cached(hash, key, observed, value, version, still);
        self.end();
        linked
    }

    /// Builds the cache record of `key` and `value` whose `previous` is the
    /// address in `entry`, inserts it, and links it by a CAS of the index
    /// entry from `entry` (with no log address in `entry`: from whatever
    /// entry without one the key's tag has, created if missing) when
    /// `still` holds. Evicted records are unlinked back to their
    /// `previous`, an entry with none freed. Protected.
    fn link_cached(
        &mut self,
        hash: u64,
        key: &[u8],
        entry: u64,
        value: &[u8],
        version: u32,
        still: &dyn Fn() -> bool,
    ) -> bool {
        let Some(cache) = &self.store.read_cache else { return false };
        let entry = HashBucketEntry::from_raw(entry);
        let previous = entry.address();
        let format = self.format();
        let header = format.header_size();
        let value_at = header + pad8(key.len());
        let mut bytes = std::mem::take(&mut self.cache_record);
        bytes.clear();
        bytes.resize(format.record_size(key.len(), value.len()), 0);
        let info = RecordInfo::new(previous, version, false);
        bytes[..8].copy_from_slice(&info.raw().to_le_bytes());
        if format.has_lengths() {
            let lengths = key.len() as u64 | (value.len() as u64) << 32;
            bytes[header - 8..header].copy_from_slice(&lengths.to_le_bytes());
        }
        bytes[header..header + key.len()].copy_from_slice(key);
        bytes[value_at..value_at + value.len()].copy_from_slice(value);
        let index = &self.store.index;
        let inserted = cache.insert(
            &bytes,
            &self.store.epoch,
            |address| {
                if !still() {
                    return false;
                }
                let slot = match index.find_entry(hash) {
                    Some(slot) => slot,
                    None if !previous.is_valid() => index.create_entry(hash),
                    None => return false,
                };
                let current = slot.entry;
                let expected = if previous.is_valid() {
                    current.raw() == entry.raw()
                } else {
                    !current.address().is_valid()
                };
                expected && {
                    let linked = HashBucketEntry::new(address, current.tag(), false);
                    slot.slot
                        .compare_exchange(
                            current.raw(),
                            linked.raw(),
                            Ordering::AcqRel,
                            Ordering::Relaxed,
                        )
                        .is_ok()
                }
            },
            |address, previous, key| {
                let hash = crate::record::hash_bytes(key);
                if let Some(slot) = index.find_entry(hash)
                    && slot.entry.address() == address
                {
                    index.unlink_cached(&slot, previous);
                }
            },
        );
        self.cache_record = bytes;
        matches!(inserted, readcache::Inserted::Linked(_))
    }

    /// A reader of records on the device, detached from this session.
    pub(super) fn disk(&self) -> DiskReader<K, V, D> {
        DiskReader::new(self.store.log.reader(), self.format())
    }
}
