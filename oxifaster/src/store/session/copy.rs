//! Compaction's copy of a record to the tail, as an operation of an
//! internal session: the conditional insert that FASTER calls
//! `ConditionalCopyToTail`.
//!
//! ## Protocol
//!
//! Compaction hands over a record it read at `address` below the range it
//! compacts (immutable: below the safe read-only address). The copy:
//!
//! 1. reads the key's index entry `e` (under epoch protection);
//! 2. walks the chain from `e` to the newest record of the key: in memory,
//!    then on the device, down to `address` at most;
//! 3. if that newest record is not the one at `address`, a session wrote
//!    the key since (or the record was never live): nothing is copied;
//! 4. if it is a tombstone, nothing is copied either (once the begin
//!    address passes it, the key is absent, as the tombstone said);
//! 5. otherwise a copy of the record is appended at the tail, chained to
//!    `e`'s record, and published by a CAS of the entry from `e`; if the
//!    CAS fails (any write to any key of the entry since step 1), the copy
//!    is marked invalid and the whole operation runs again from step 1.
//!
//! **Invariant**: a copy is published only while the entry still holds `e`,
//! and a walk from `e` found no record of the key newer than `address`; a
//! session's write of the key changes the entry (it publishes by CAS, or,
//! in place, writes a record that is itself newer than `address` and above
//! the read-only address, so the walk of step 2 finds it first). Hence a
//! copy never overwrites a newer value, and never brings back a deleted
//! key. Conversely, a session whose write raced with the copy either saw
//! the copy (its CAS from `e` failed, it retried and chained after the
//! copy) or wrote first (the copy's CAS failed and step 2 then finds the
//! session's record). The copy carries the session's CPR version, so
//! checkpoints treat it as any other write (see `cpr`).
//!
//! Checked by loom in `tests/loom.rs` (a copy racing an upsert, an RMW and
//! a delete of its key, on the real store; a variant without step 3 is
//! caught) and stressed in `tests/compaction.rs` (writers and readers of
//! the keys compaction moves, against a model).

use super::{Location, Session};
use crate::Result;
use crate::address::Address;
use crate::device::Device;
use crate::record::{EncodedKey, EncodedValue, Key, KeyArg, Value};

/// What [`Session::copy_if_newest`] did with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CopyOutcome {
    /// The record was the key's newest: a copy is at the tail.
    Copied,
    /// The key has a newer record (or the record is not in its chain).
    Superseded,
    /// The record was the key's newest and a tombstone: nothing to keep.
    Tombstone,
    /// Asked to settle in memory only, the walk would have had to read the
    /// device (nothing was copied).
    Unsettled,
    /// Asked only to tell, the record is its key's newest and not a
    /// tombstone (nothing was copied: the caller keeps it elsewhere).
    Newest,
}

impl<K: Key, V: Value, D: Device> Session<K, V, D> {
    /// Copies the record at `address` (key and value given as their
    /// encodings) to the tail if it is still the newest record of its key
    /// (see the module's protocol). With `device` false, a walk that would
    /// continue on the device stops and returns [`CopyOutcome::Unsettled`].
    /// With `tell` true nothing is copied: a newest live record is reported
    /// as [`CopyOutcome::Newest`] (for a migration to another log, which a
    /// newer record written here afterwards still supersedes).
    pub(crate) fn copy_if_newest(
        &mut self,
        address: Address,
        key: &[u8],
        value: &[u8],
        tombstone: bool,
        device: bool,
        tell: bool,
    ) -> Result<CopyOutcome> {
        self.begin();
        let result = self.copy_if_newest_protected(address, key, value, tombstone, device, tell);
        self.end_write();
        result
    }

    fn copy_if_newest_protected(
        &mut self,
        address: Address,
        key: &[u8],
        value: &[u8],
        tombstone: bool,
        device: bool,
        tell: bool,
    ) -> Result<CopyOutcome> {
        self.store.log.check_poisoned()?;
        let key = EncodedKey(key);
        let hash = <EncodedKey<'_> as KeyArg<K>>::key_arg_hash(&key);
        loop {
            let Some(slot) = self.store.index.find_entry(hash) else {
                return Ok(CopyOutcome::Superseded);
            };
            let newest = match self.locate(&key, self.log_start(slot.entry.address())) {
                Location::Memory(found) => Some(found),
                // The walk reached the record itself (no record of the key
                // above it): no need to read it back.
                Location::Disk(from) if from == address => Some(address),
                Location::Disk(from) if from > address && !device => {
                    return Ok(CopyOutcome::Unsettled);
                }
                Location::Disk(from) if from > address => {
                    // The walk continues on the device; the protection is
                    // not held across the I/O.
                    self.handle.suspend();
                    let found = self.disk().find(key.0, from)?.map(|record| record.address);
                    self.refresh_in_op();
                    found
                }
                Location::Disk(_) | Location::Absent | Location::BelowBegin => None,
            };
            #[cfg(oxifaster_loom)]
            let newest = match crate::sync::broken::unconditional_copy() {
                true => Some(address),
                false => newest,
            };
            if newest != Some(address) {
                return Ok(CopyOutcome::Superseded);
            }
            if tombstone {
                return Ok(CopyOutcome::Tombstone);
            }
            if tell {
                return Ok(CopyOutcome::Newest);
            }
            if self.append(&slot, hash, &key, Some(&EncodedValue(value)), false)? {
                return Ok(CopyOutcome::Copied);
            }
            // The entry changed (or the version moved on): look again.
            self.refresh_in_op();
        }
    }

    /// Waits until every operation protected when it is called has
    /// finished (an epoch drain). Call it between operations.
    pub(crate) fn drain_epoch(&mut self) {
        self.handle.wait_epoch();
    }

    /// Runs `f` with this session's epoch handle, protected (for log
    /// operations that need one: the begin address shift).
    pub(crate) fn with_handle<R>(
        &mut self,
        f: impl FnOnce(&crate::epoch::EpochHandle<'static>) -> R,
    ) -> R {
        self.begin();
        let result = f(&self.handle);
        self.end();
        result
    }
}

/// Hooks for the loom model of the copy race (`tests/loom.rs`).
#[cfg(oxifaster_loom)]
impl<K: Key, V: Value, D: Device> Session<K, V, D> {
    /// The address `key`'s index entry holds (0 without one).
    #[doc(hidden)]
    pub fn loom_entry_address(&mut self, key: &K) -> u64 {
        let hash = <K as KeyArg<K>>::key_arg_hash(key);
        self.store.index.find_entry(hash).map_or(0, |slot| slot.entry.address().raw())
    }

    /// [`Session::copy_if_newest`] of the record at `address` (with the
    /// device allowed); whether it copied.
    #[doc(hidden)]
    pub fn loom_copy_if_newest(&mut self, address: u64, key: &[u8], value: &[u8]) -> Result<bool> {
        let address = Address::new(address).ok_or(crate::Error::LogFull)?;
        let outcome = self.copy_if_newest(address, key, value, false, true, false)?;
        Ok(outcome == CopyOutcome::Copied)
    }
}
