//! The atomics of the lock-free protocols that are model-checked with loom
//! (`tests/loom.rs`): `--cfg oxifaster_loom` swaps in loom's types, which
//! record every access so that loom can explore every interleaving and
//! every weak-memory outcome the orderings allow. (A crate-specific cfg,
//! not `loom`, so that dependencies which react to `cfg(loom)` build as
//! usual.)

#[cfg(oxifaster_loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, fence};
#[cfg(not(oxifaster_loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, fence};

/// Deliberately broken variants of the protocols, switched on by the loom
/// tests to check that the models catch them. Compiled only for loom.
#[cfg(oxifaster_loom)]
#[doc(hidden)]
pub mod broken {
    use std::sync::atomic::{AtomicBool, Ordering};

    static WEAK_PROTECT: AtomicBool = AtomicBool::new(false);
    static PLAIN_TAIL: AtomicBool = AtomicBool::new(false);

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
