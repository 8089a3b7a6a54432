//! The atomics of the lock-free protocols that are model-checked with loom
//! (`tests/loom.rs`): `--cfg oxifaster_loom` swaps in loom's types, which
//! record every access so that loom can explore every interleaving and
//! every weak-memory outcome the orderings allow. (A crate-specific cfg,
//! not `loom`, so that dependencies which react to `cfg(loom)` build as
//! usual.)

#[cfg(oxifaster_loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicU8, AtomicUsize, Ordering, fence};
#[cfg(not(oxifaster_loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicU8, AtomicUsize, Ordering, fence};

/// Gives way to other threads in a wait loop: under loom, a loom yield
/// (a spin loop must yield for loom to schedule the thread it waits for).
#[inline]
pub(crate) fn yield_now() {
    #[cfg(oxifaster_loom)]
    loom::thread::yield_now();
    #[cfg(not(oxifaster_loom))]
    std::thread::yield_now();
}

/// Under loom, a point where the model switches to another thread before
/// the plain (unmodelled) memory writes that follow, such as writing an
/// entry into a page just allocated: loom does not see plain writes, so
/// without it no interleaving would put another thread inside that window.
/// Nothing otherwise.
#[inline(always)]
pub(crate) fn schedule_point() {
    #[cfg(oxifaster_loom)]
    loom::thread::yield_now();
}

/// Under loom, a line for the trace a failed model prints
/// ([`take_notes`]); nothing otherwise.
#[cfg(oxifaster_loom)]
pub(crate) fn note(line: impl FnOnce() -> String) {
    NOTES.lock().unwrap_or_else(|p| p.into_inner()).push(line());
}

#[cfg(oxifaster_loom)]
static NOTES: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// The notes so far (and clears them).
#[cfg(oxifaster_loom)]
#[doc(hidden)]
pub fn take_notes() -> Vec<String> {
    std::mem::take(&mut *NOTES.lock().unwrap_or_else(|p| p.into_inner()))
}

/// Deliberately broken variants of the protocols, switched on by the loom
/// tests to check that the models catch them. Compiled only for loom.
#[cfg(oxifaster_loom)]
#[doc(hidden)]
pub mod broken {
    use std::sync::atomic::{AtomicBool, Ordering};

    static WEAK_PROTECT: AtomicBool = AtomicBool::new(false);
    static PLAIN_TAIL: AtomicBool = AtomicBool::new(false);
    static EAGER_FLUSH: AtomicBool = AtomicBool::new(false);
    static NO_RESCAN: AtomicBool = AtomicBool::new(false);
    static UNCONDITIONAL_COPY: AtomicBool = AtomicBool::new(false);
    static NO_GROW_DRAIN: AtomicBool = AtomicBool::new(false);
    static NO_MIGRATION_CHECK: AtomicBool = AtomicBool::new(false);

    /// The F2 store's conditional update inserts over a cold value without
    /// checking that no migration published since its cold read (it still
    /// inserts only if the key has no hot record).
    pub fn set_no_migration_check(on: bool) {
        NO_MIGRATION_CHECK.store(on, Ordering::SeqCst);
    }

    pub(crate) fn no_migration_check() -> bool {
        NO_MIGRATION_CHECK.load(Ordering::SeqCst)
    }

    /// A growth of the index splits once no operation is flagged as
    /// refreshed in its middle, without the epoch drain before: an
    /// operation that began before the growth's phase and kept its
    /// protection goes on writing the old table.
    pub fn set_no_grow_drain(on: bool) {
        NO_GROW_DRAIN.store(on, Ordering::SeqCst);
    }

    pub(crate) fn no_grow_drain() -> bool {
        NO_GROW_DRAIN.load(Ordering::SeqCst)
    }

    /// Compaction's `Session::copy_if_newest` copies without checking that
    /// the record is still its key's newest (it still publishes by a CAS
    /// from the entry it read).
    pub fn set_unconditional_copy(on: bool) {
        UNCONDITIONAL_COPY.store(on, Ordering::SeqCst);
    }

    pub(crate) fn unconditional_copy() -> bool {
        UNCONDITIONAL_COPY.load(Ordering::SeqCst)
    }

    /// `HashIndex::find_or_create_entry` makes its claimed slot final
    /// without rescanning the chain for a racing insert of the same tag.
    pub fn set_no_rescan(on: bool) {
        NO_RESCAN.store(on, Ordering::SeqCst);
    }

    pub(crate) fn no_rescan() -> bool {
        NO_RESCAN.load(Ordering::SeqCst)
    }

    /// `HybridLog::flush_written` writes the pages at once instead of in
    /// the epoch action (so without waiting for writers to leave).
    pub fn set_eager_flush(on: bool) {
        EAGER_FLUSH.store(on, Ordering::SeqCst);
    }

    pub(crate) fn eager_flush() -> bool {
        EAGER_FLUSH.load(Ordering::SeqCst)
    }

    /// `EpochHandle::protect` publishes with a Relaxed store and no fence.
    pub fn set_weak_protect(on: bool) {
        WEAK_PROTECT.store(on, Ordering::SeqCst);
    }

    pub(crate) fn weak_protect() -> bool {
        WEAK_PROTECT.load(Ordering::SeqCst)
    }

    /// Tail allocation reads and writes the tail word instead of one
    /// `fetch_add`.
    pub fn set_plain_tail(on: bool) {
        PLAIN_TAIL.store(on, Ordering::SeqCst);
    }

    pub(crate) fn plain_tail() -> bool {
        PLAIN_TAIL.load(Ordering::SeqCst)
    }
}

/// A value alone on its own pair of cache lines (128 bytes, so that the
/// adjacent-line prefetcher does not pair it with a neighbour): a word that
/// one thread writes often must not slow down readers of the fields beside
/// it.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct CachePadded<T>(pub(crate) T);

impl<T> std::ops::Deref for CachePadded<T> {
    type Target = T;
    #[inline(always)]
    fn deref(&self) -> &T {
        &self.0
    }
}
