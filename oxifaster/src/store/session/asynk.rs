//! The async API on tokio (the `tokio` feature): `read_async`,
//! `rmw_async`, `upsert_async`, `delete_async`. A future never holds epoch
//! protection while it waits, and one dropped at an await leaves nothing
//! parked.

use std::sync::Arc;

use super::conditional::{Cas, Decide, InsertIfAbsent, Parked, ParkedFn, ViewClosure, delete_if};
use super::{
    Decision, Outcome, PendingKind, PendingOp, ReadStatus, RmwStatus, Session, UpdateStatus,
};
use crate::address::Address;
use crate::cpr::SessionSlot;
use crate::device::Device;
use crate::record::{AlignedBytes, Key, KeyArg, Merge, Value, ValueArg};
use crate::stats::Count;
use crate::{Error, Result};

/// Takes a parked RMW out of its session's parked set when dropped (see
/// `rmw_async`).
struct Unpark {
    slot: Arc<SessionSlot>,
    serial: u64,
}

impl Drop for Unpark {
    fn drop(&mut self) {
        self.slot.finished(self.serial);
    }
}

/// The async API: futures that are `Send`, for tokio. Device reads run on
/// tokio's blocking pool; a future never holds epoch protection while it
/// waits, so a suspended task never holds back the log.
impl<K: Key, V: Value, D: Device> Session<K, V, D> {
    /// Reads `key`, awaiting the device if the record is there.
    ///
    /// Cancel safety: dropping the future at its `.await` leaves nothing
    /// behind (no parked read, no epoch protection held).
    pub async fn read_async<Q: KeyArg<K> + ?Sized>(&mut self, key: &Q) -> Result<Option<V>> {
        loop {
            match self.read(key)? {
                ReadStatus::Found(value) => return Ok(Some(value)),
                ReadStatus::NotFound => return Ok(None),
                ReadStatus::Pending { .. } => {
                    let op = self.pop_pending()?;
                    let PendingKind::Read { entry } = op.kind else {
                        return Err(Error::Corruption {
                            address: op.address.raw(),
                            what: "pending kind".into(),
                        });
                    };
                    let hash = op.hash;
                    // The key, for the read cache (if there is one).
                    let cached_key = self.store.read_cache.is_some().then(|| op.key.clone());
                    let parked_at = op.parked_at;
                    let found = self.find_async(op.key, op.address).await?;
                    self.completed(parked_at.elapsed());
                    match found {
                        Some(record) if !record.info.is_tombstone() => {
                            let value = V::decode(&record.value)?;
                            if let Some(key) = cached_key {
                                self.begin();
                                self.cache_read(hash, &key, entry, &record);
                                self.end();
                            }
                            return Ok(Some(value));
                        }
                        Some(_) => {
                            self.miss_entry = entry;
                            return Ok(None);
                        }
                        // Compaction may have moved the record meanwhile
                        // (see `Session::entry_moved`): read again.
                        None if self.entry_moved(hash, entry) => continue,
                        None => {
                            self.miss_entry = entry;
                            return Ok(None);
                        }
                    }
                }
            }
        }
    }

    /// Inserts or replaces `key`'s value (never waits for the device; the
    /// future completes on its first poll).
    pub async fn upsert_async<Q: KeyArg<K> + ?Sized, W: ValueArg<V> + ?Sized>(
        &mut self,
        key: &Q,
        value: &W,
    ) -> Result<()> {
        self.upsert(key, value)
    }

    /// Deletes `key` (never waits for the device).
    pub async fn delete_async<Q: KeyArg<K> + ?Sized>(&mut self, key: &Q) -> Result<()> {
        self.delete(key)
    }

    /// Read-modify-write, awaiting the device if the old value is there.
    ///
    /// Cancel safety: the future may be dropped at any `.await`; the update
    /// is then applied zero or one times — zero if it was waiting for the
    /// old value (it publishes only after the read), one if it had already
    /// published before the drop. Either way nothing stays parked and no
    /// later checkpoint lists it under `excluded`. An error leaves it
    /// unapplied too.
    pub async fn rmw_async<Q: KeyArg<K> + ?Sized>(&mut self, key: &Q, input: &V) -> Result<()>
    where
        V: Merge + Clone,
    {
        // One serial number for the whole operation, however many rounds
        // it takes: commit points count it once.
        let serial = self.next_serial();
        let mut parked = false;
        // If this future is dropped at an await (cancelled) or fails, the
        // operation leaves the parked set: it was not applied, and nothing
        // of it stays behind in later checkpoints.
        let mut _unpark: Option<Unpark> = None;
        loop {
            self.begin();
            let status = self.rmw_inner(key, input, serial);
            if parked && matches!(status, Ok(RmwStatus::Done)) {
                // While still protected: see `complete_one`.
                self.slot.finished(serial);
            }
            self.end_write();
            if let RmwStatus::Done = status? {
                return Ok(());
            }
            parked = true;
            _unpark.get_or_insert_with(|| Unpark { slot: self.slot.clone(), serial });
            let op = self.pop_pending()?;
            let PendingKind::Rmw { expected_entry, .. } = op.kind else {
                return Err(Error::Corruption {
                    address: op.address.raw(),
                    what: "pending kind".into(),
                });
            };
            let found = self.find_async(op.key, op.address).await?;
            self.completed(op.parked_at.elapsed());
            let (new_value, count) = match found.filter(|r| !r.info.is_tombstone()) {
                Some(record) => {
                    (V::copy_update(V::view(&record.value)?, input), Count::RmwsCopyUpdate)
                }
                None => (V::initial(input), Count::RmwsInitial),
            };
            self.begin();
            let slot = self.store.index.find_or_create_entry(op.hash);
            let published = if slot.entry.raw() == expected_entry {
                self.append(&slot, op.hash, key, Some(&new_value), false)
            } else {
                Ok(false)
            };
            if matches!(published, Ok(true)) {
                // While still protected: see `complete_one`.
                self.slot.finished(serial);
                self.count(count);
            }
            self.end_write();
            if published? {
                return Ok(());
            }
            // The chain changed while we read: run the RMW again.
        }
    }

    /// [`Session::update`], awaiting the device if the value is there.
    ///
    /// Cancel safety as for [`Session::rmw_async`]: dropped at an `.await`,
    /// the update is applied zero or one times, and nothing stays parked.
    pub async fn update_async<Q, F>(&mut self, key: &Q, decide: F) -> Result<Outcome>
    where
        Q: KeyArg<K> + ?Sized,
        F: FnMut(Option<V::View<'_>>) -> Decision<V> + Send + 'static,
    {
        self.conditional_async(key, &mut ViewClosure::new(decide)).await
    }

    /// [`Session::insert_if_absent`], awaiting the device if the value is
    /// there (cancel safety as for [`Session::update_async`]).
    pub async fn insert_if_absent_async<Q, W>(&mut self, key: &Q, value: &W) -> Result<Outcome>
    where
        Q: KeyArg<K> + ?Sized,
        W: ValueArg<V> + ?Sized,
    {
        self.conditional_async(key, &mut InsertIfAbsent { value }).await
    }

    /// [`Session::compare_and_swap`], awaiting the device if the value is
    /// there (cancel safety as for [`Session::update_async`]).
    pub async fn compare_and_swap_async<Q, E, N>(
        &mut self,
        key: &Q,
        expected: &E,
        new: &N,
    ) -> Result<Outcome>
    where
        Q: KeyArg<K> + ?Sized,
        E: ValueArg<V> + ?Sized,
        N: ValueArg<V> + ?Sized,
    {
        self.conditional_async(key, &mut Cas { expected, new }).await
    }

    /// [`Session::delete_if`], awaiting the device if the value is there
    /// (cancel safety as for [`Session::update_async`]).
    pub async fn delete_if_async<Q, P>(&mut self, key: &Q, predicate: P) -> Result<Outcome>
    where
        Q: KeyArg<K> + ?Sized,
        P: FnMut(V::View<'_>) -> bool + Send + 'static,
    {
        self.conditional_async(key, &mut ViewClosure::new(delete_if(predicate))).await
    }

    /// [`Session::update_encoded`], awaiting the device if the value is
    /// there (for the F2 store's async operations; cancel safety as for
    /// [`Session::update_async`]).
    pub(crate) async fn update_encoded_async<Q: KeyArg<K> + ?Sized>(
        &mut self,
        key: &Q,
        decide: ParkedFn,
    ) -> Result<Outcome> {
        self.conditional_async(key, &mut Parked::<V>::new(decide)).await
    }

    /// A conditional operation, its device reads awaited.
    async fn conditional_async<Q: KeyArg<K> + ?Sized, U: Decide<V>>(
        &mut self,
        key: &Q,
        update: &mut U,
    ) -> Result<Outcome> {
        // One serial number for the whole operation (see `rmw_async`).
        let serial = self.next_serial();
        self.count(crate::stats::Count::Conditional);
        let hash = key.key_arg_hash();
        self.begin();
        let first = self.conditional_core(key, hash, update, serial);
        self.end_write();
        let mut status = first?;
        let mut _unpark: Option<Unpark> = None;
        loop {
            if let UpdateStatus::Done(outcome) = status {
                return Ok(outcome);
            }
            _unpark.get_or_insert_with(|| Unpark { slot: self.slot.clone(), serial });
            let op = self.pop_pending()?;
            let PendingKind::Update { update: mut parked, expected_entry } = op.kind else {
                return Err(Error::Corruption {
                    address: op.address.raw(),
                    what: "pending kind".into(),
                });
            };
            let found = self.find_async(op.key, op.address).await?;
            self.completed(op.parked_at.elapsed());
            let old = found.filter(|r| !r.info.is_tombstone());
            self.begin();
            let result = self.finish_parked_update(
                key,
                hash,
                &mut parked,
                old.as_ref().map(|r| r.value.as_slice()),
                expected_entry,
                serial,
            );
            if matches!(result, Ok(UpdateStatus::Done(_))) {
                // While still protected: see `complete_one`.
                self.slot.finished(serial);
            }
            self.end_write();
            status = result?;
        }
    }

    /// The operation that the last `read`/`rmw` queued (the async forms
    /// take it back at once: an async operation is never left parked).
    fn pop_pending(&mut self) -> Result<PendingOp<V>> {
        self.pending.pop_back().ok_or(Error::Corruption {
            address: 0,
            what: "a pending operation vanished from its session".into(),
        })
    }

    async fn find_async(
        &self,
        key: AlignedBytes,
        address: Address,
    ) -> Result<Option<crate::store::disk::DiskRecord>> {
        let disk = self.disk();
        tokio::task::spawn_blocking(move || disk.find(&key, address)).await.map_err(|e| {
            Error::Io {
                context: "in a blocking read task".into(),
                source: std::io::Error::other(e),
            }
        })?
    }
}
