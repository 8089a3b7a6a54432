//! Growing the store's hash index (the protocol is `index::grow`'s): the
//! store's side, which knows the sessions and the records.
//!
//! A growth publishes `Prepare`, then waits until no session is inside an
//! operation it began before (`SessionSlot::in_op`; operations that begin
//! afterwards see the phase and help instead), then splits with every
//! session that begins an operation meanwhile, and finally frees the old
//! table once every thread protected at the swap has refreshed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::StoreInner;
use super::record::RecordPtr;
use crate::Result;
use crate::address::Address;
use crate::device::Device;
use crate::epoch::EpochHandle;
use crate::index::grow::{GrowPhase, Traced};
use crate::record::{Key, Value};

/// Doubles the index's table; with a growth already running, helps it to
/// its end. Returns the table size after. `handle` is the caller's, not
/// protected, and the caller is outside any operation.
pub(crate) fn grow<K: Key, V: Value, D: Device>(
    inner: &StoreInner<K, V, D>,
    handle: &EpochHandle<'_>,
) -> Result<u64> {
    if inner.index.start_grow()?.is_some() {
        // Every operation in flight when the phase was published finishes;
        // the ones that begin now help instead of using the table.
        for slot in inner.sessions.all() {
            let mut spins = 0u32;
            while slot.in_op.load(Ordering::SeqCst) {
                crate::hlog::backoff(&mut spins);
            }
        }
        inner.index.begin_split();
        tracing::info!(buckets = inner.index.table_size() * 2, "growing the hash index");
    }
    help(inner, handle);
    // The old table goes once every thread protected now has refreshed:
    // none of them still holds a reference into it.
    let released = Arc::new(AtomicBool::new(false));
    let flag = released.clone();
    handle.bump_with_action(move || flag.store(true, Ordering::Release));
    let mut spins = 0u32;
    while !released.load(Ordering::Acquire) {
        handle.refresh();
        handle.unprotect();
        crate::hlog::backoff(&mut spins);
    }
    // SAFETY: the drain above passed: every operation that could hold a
    // reference into a replaced table (protected before the swap) has
    // refreshed since, and operations that began later use the new table.
    unsafe { inner.index.release_retired() };
    Ok(inner.index.table_size())
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
    inner.index.split(&|address| trace(inner, address));
    handle.unprotect();
    inner.index.grow_phase() == GrowPhase::Rest
}

/// What a split learns of the record at `address`: its key's hash and the
/// previous record of its chain while it is in memory. The caller is
/// protected.
fn trace<K: Key, V: Value, D: Device>(inner: &StoreInner<K, V, D>, address: Address) -> Traced {
    if address < inner.log.head_address() || address >= inner.log.tail_address() {
        return Traced::Elsewhere;
    }
    // SAFETY: the caller is protected and `address >= head` was observed
    // after it protected itself, so the frame stays valid; the record was
    // published (an index entry or a published record's previous link
    // points at it) and no operation writes its key or header meanwhile
    // (none runs while the index splits).
    let record = unsafe { RecordPtr::new(inner.log.record_ptr(address), inner.format) };
    // (`record_ptr`'s contract: protected, `address >= head` seen after.)
    let info = record.info();
    let (key_len, _) = record.lengths();
    let hash = crate::record::hash_bytes(record.key_bytes(key_len));
    Traced::Memory { hash, previous: info.previous() }
}
