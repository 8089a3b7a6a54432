//! Growing the store's hash index (the protocol is `index::grow`'s): the
//! store's side, which knows the sessions and the records.
//!
//! A growth runs one at a time (`StoreInner::growing`), and its steps 1
//! and 2 never during a checkpoint (`StoreInner::resizing`, which
//! checkpoints hold too):
//!
//! 1. publishes `Prepare`, then waits until no session is inside an
//!    operation it began before: an epoch drain, then the flags of
//!    operations that refreshed their protection in their middle
//!    (`Epoch::wait_mid_ops`). Operations that begin afterwards see the
//!    phase and help instead;
//! 2. holds the table (no index checkpoint dumps it meanwhile), splits
//!    with every session that begins an operation, and frees the old table
//!    once every thread protected at the swap has refreshed;
//! 3. resolves the copies: an entry whose record was on the device went to
//!    both halves; its chain is read back (batched device reads) and each
//!    copy is pointed at the first record of its own bucket, or freed if
//!    the chain has none. Sessions run meanwhile; a copy is changed by a
//!    CAS from what the split wrote, so a session's insert that got there
//!    first wins. Without this step the copies of device-resident entries
//!    would double with every growth.

use std::sync::atomic::Ordering;

use super::StoreInner;
use super::disk::{DiskReader, Walked};
use super::record::RecordPtr;
use crate::Result;
use crate::address::Address;
use crate::device::Device;
use crate::epoch::EpochHandle;
use crate::index::HashBucketEntry;
use crate::index::grow::{GrowPhase, Traced};
use crate::record::{Key, Value};

/// Buckets whose device-resident entries are checked in one batch of walks.
const RESOLVE_BUCKETS: u64 = 1 << 12;

/// Records a checking walk reads before it leaves an entry as it is (the
/// entry stays correct: a walk from it compares keys).
const RESOLVE_HOPS: u64 = 64;

/// What a growth did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Grown {
    /// The table's buckets after it.
    pub(crate) buckets: u64,
    /// Copies of device-resident entries pointed at their own bucket's
    /// first record.
    pub(crate) retargeted: u64,
    /// Copies freed (their chain has no record of their bucket).
    pub(crate) freed: u64,
    /// Copies left as they were (a long chain, a changed entry, a read
    /// error).
    pub(crate) left: u64,
}

/// Doubles the index's table; with a growth already running, waits for it
/// and returns `None`. `handle` is the caller's, not protected, and the
/// caller is outside any operation.
pub(crate) fn grow<K: Key, V: Value, D: Device>(
    inner: &StoreInner<K, V, D>,
    handle: &EpochHandle<'_>,
    wait: bool,
) -> Result<Option<Grown>> {
    // An automatic growth does not wait: a busy lock leaves the request
    // to fire again at the next entry an insert creates.
    let Some(_one) = take(&inner.growing, wait) else { return Ok(None) };
    let Some(resizing) = take(&inner.resizing, wait) else { return Ok(None) };
    let span = tracing::info_span!("grow_index", from = inner.index.table_size());
    let _enter = span.enter();
    let started = std::time::Instant::now();
    let Some(buckets) = inner.index.start_grow()? else {
        // Not ours (cannot happen while `growing` is held; helped anyway).
        help(inner, handle);
        return Ok(None);
    };
    // Every operation in flight when the phase was published ends before
    // the split; the ones that begin now see `cpr::GROWING` (in the word
    // they load at their start anyway), find the phase and help instead of
    // using the table. An operation that kept its protection holds the
    // drain back until its end (it protected itself before the flag was
    // set, or it would have seen it: the flag's SeqCst RMW, a fence and
    // the epoch bump here; its protect's barrier and its load there). One that refreshed or suspended its protection in its middle
    // flagged itself first, and is waited for by its flag.
    inner.cpr.set_growing(true);
    crate::sync::fence(Ordering::SeqCst);
    #[cfg(oxifaster_loom)]
    let drain = !crate::sync::broken::no_grow_drain();
    #[cfg(not(oxifaster_loom))]
    let drain = true;
    if drain {
        handle.wait_epoch();
    }
    inner.epoch.wait_mid_ops();
    {
        let _held = inner.index.hold_table();
        inner.index.begin_split();
        help(inner, handle);
    }
    // Operations find the phase `Rest` from here on; the flag only sends
    // them to look.
    inner.cpr.set_growing(false);
    // The old table goes once every thread protected now (a helper still
    // in its last split round) has refreshed: none of them still holds a
    // reference into it.
    handle.wait_epoch();
    // SAFETY: the drain above passed: every operation that could hold a
    // reference into a replaced table (protected before the swap) has
    // refreshed since, and operations that began later use the new table.
    unsafe { inner.index.release_retired() };
    // Checkpoints from now on dump the grown index: a log-only or
    // incremental one on the last index would replay records chained by
    // the grown table into the smaller one (see the checkpoint machine).
    *inner.checkpoints.last_index.lock().unwrap_or_else(|p| p.into_inner()) = None;
    // Checkpoints may run from here on: the table keeps its size while
    // `growing` is held, and resolving only moves entries along their
    // chains (a dump with either address recovers the same keys).
    drop(resizing);
    let split_in = started.elapsed();
    let mut grown = Grown { buckets, ..Grown::default() };
    // Without copies (every record was in memory) there is nothing to
    // resolve, and the table is not scanned again.
    if inner.index.copied_by_last_split() > 0 {
        resolve_copies(inner, &mut grown);
    }
    tracing::info!(
        buckets,
        split_secs = split_in.as_secs_f64(),
        secs = started.elapsed().as_secs_f64(),
        retargeted = grown.retargeted,
        freed = grown.freed,
        left = grown.left,
        "grew the hash index"
    );
    Ok(Some(grown))
}

/// Locks `lock`, or with `wait` false, takes it only if it is free.
fn take(lock: &std::sync::Mutex<()>, wait: bool) -> Option<std::sync::MutexGuard<'_, ()>> {
    if wait {
        return Some(lock.lock().unwrap_or_else(|p| p.into_inner()));
    }
    match lock.try_lock() {
        Ok(guard) => Some(guard),
        Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
        Err(std::sync::TryLockError::WouldBlock) => None,
    }
}

/// Splits with the running growth until it ends (the caller is outside any
/// operation).
fn help<K: Key, V: Value, D: Device>(inner: &StoreInner<K, V, D>, handle: &EpochHandle<'_>) {
    let mut spins = 0u32;
    while !help_round(inner, handle) {
        crate::hlog::backoff(&mut spins);
    }
}

/// One round of help: splits what is left to claim (protected, as reading
/// records needs), then unprotects; true once the growth has ended.
pub(crate) fn help_round<K: Key, V: Value, D: Device>(
    inner: &StoreInner<K, V, D>,
    handle: &EpochHandle<'_>,
) -> bool {
    handle.refresh();
    inner.index.split(&|address| trace(inner, address), &|address| prefetch(inner, address));
    handle.unprotect();
    inner.index.grow_phase() == GrowPhase::Rest
}

/// Asks the CPU to start loading the record at `address` if it is in
/// memory (a hint: nothing is read). The caller is protected.
fn prefetch<K: Key, V: Value, D: Device>(inner: &StoreInner<K, V, D>, address: Address) {
    if address < inner.log.head_address() || address >= inner.log.tail_address() {
        return;
    }
    inner.log.prefetch(address);
}

/// What a split learns of the record at `address`: its key's hash and the
/// previous record of its chain while it is in memory. The caller is
/// protected.
fn trace<K: Key, V: Value, D: Device>(inner: &StoreInner<K, V, D>, address: Address) -> Traced {
    if let Some(cache) = &inner.read_cache
        && crate::readcache::is_cached(address)
    {
        // A read-cache record (the entry's only one; its `previous` is in
        // the log): it goes to its key's side like a log record, so that
        // its eviction finds the one entry that points at it.
        // SAFETY: loaded from an entry of the table being split while
        // protected (the cache's invariant keeps the frame).
        let record = unsafe { RecordPtr::new(cache.record_ptr(address).cast_mut(), inner.format) };
        let (key_len, _) = record.lengths();
        let hash = crate::record::hash_bytes(record.key_bytes(key_len));
        return Traced::Memory { hash, previous: record.info().previous() };
    }
    if address < inner.log.head_address() || address >= inner.log.tail_address() {
        return Traced::Elsewhere;
    }
    // SAFETY: the caller is protected and `address >= head` was observed
    // after it protected itself, so the frame stays valid; the record was
    // published (an index entry or a published record's previous link
    // points at it) and no operation writes its key or header meanwhile
    // (none runs while the index splits).
    let record = unsafe { RecordPtr::new(inner.log.record_ptr(address), inner.format) };
    let info = record.info();
    let (key_len, _) = record.lengths();
    let hash = crate::record::hash_bytes(record.key_bytes(key_len));
    Traced::Memory { hash, previous: info.previous() }
}

/// Step 3 of the growth: checks every entry whose record is on the
/// device — the copies the split left in both halves among them — by
/// reading its chain: an entry whose first record is of another bucket is
/// pointed at the first of its own, or freed if the chain has none. The
/// caller holds `growing` (so the table keeps its size) and is outside any
/// operation.
fn resolve_copies<K: Key, V: Value, D: Device>(inner: &StoreInner<K, V, D>, grown: &mut Grown) {
    let size = inner.index.table_size();
    let mask = size - 1;
    let disk = DiskReader::new(inner.log.reader(), inner.format);
    let mut first = 0;
    while first < size {
        let placed = inner.index.entries_below(first, RESOLVE_BUCKETS, inner.log.head_address());
        first += RESOLVE_BUCKETS;
        if placed.is_empty() {
            continue;
        }
        let starts: Vec<Address> = placed.iter().map(|p| p.entry.address()).collect();
        let mut own: Vec<Address> = vec![Address::INVALID; placed.len()];
        let ends = disk.walk_batch(&starts, RESOLVE_HOPS, |walk, record| {
            let hash = crate::record::hash_bytes(record.key);
            let mine = hash & mask == placed[walk].bucket
                && HashBucketEntry::tag_of(hash) == placed[walk].entry.tag();
            if mine {
                own[walk] = record.address;
            }
            mine
        });
        for ((entry, end), own) in placed.iter().zip(ends).zip(own) {
            let to = match end {
                Ok(Walked::Stopped) if own == entry.entry.address() => continue,
                Ok(Walked::Stopped) => own,
                Ok(Walked::Ended) => Address::INVALID,
                Ok(Walked::TooLong) => {
                    grown.left += 1;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(
                        address = %entry.entry.address(),
                        error = %e,
                        "reading a record chain to check an index entry after a split"
                    );
                    grown.left += 1;
                    continue;
                }
            };
            if !inner.index.retarget(entry, to) {
                grown.left += 1;
            } else if to.is_valid() {
                grown.retargeted += 1;
            } else {
                grown.freed += 1;
            }
        }
    }
}
