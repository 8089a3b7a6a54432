//! Epoch protection: when is it safe to act on state that threads may still
//! be reading?
//!
//! A global `current_epoch` counts up. A participant (a session) *protects*
//! itself by copying the current epoch into its own cache-line entry, and
//! *refreshes* by doing so again; an unprotected entry holds 0 and is ignored.
//! A writer that has changed shared state (moved the read-only address,
//! unlinked a page) *bumps* the epoch with an action: the action is tagged
//! with the epoch before the bump and runs once every protected participant
//! has moved past it.
//!
//! ## Invariant
//!
//! An action tagged with epoch `E` runs only when `safe_to_reclaim_epoch >= E`,
//! that is when every entry that was protected at the time of the scan holds
//! an epoch greater than `E`. Such a participant protected itself after the
//! bump, so (by the SeqCst fences of `protect` and of the scan, a Dekker
//! pattern) it observes all state that was published before the bump. A
//! participant whose protection the scan missed likewise observes that
//! state. So when the action runs, nobody can still act on the old state.
//!
//! An entry's top bit (`MID_OP`) is not part of its epoch: it flags an
//! operation that refreshed or suspended its protection in its middle and
//! so may still hold what it read at an older epoch.
//! `EpochHandle::refresh_mid_op` and `EpochHandle::suspend` set it, the
//! unprotect at an operation's end clears it, and
//! [`Epoch::wait_mid_ops`] waits for it (the hash index's growth uses it,
//! see `store::grow`). The scan ignores it.
//!
//! Idle participants never stall a bump: an unprotected entry holds 0 and
//! does not count, and a session that parks unprotects first.
//!
//! The drain list is a fixed array of slots, each `(epoch, action)`. A slot is
//! free (`FREE`), being written or run by the one thread that claimed it by a
//! CAS (`LOCKED`), or ready with the epoch it waits for. Only the claimant
//! touches the action cell, which is what makes the `UnsafeCell` sound.

use crate::sync::{AtomicBool, AtomicU64, AtomicUsize, Ordering, fence};
use std::cell::UnsafeCell;

use crate::{Error, Result};

/// An action run once its epoch is safe.
type Action = Box<dyn FnOnce() + Send>;

const FREE: u64 = u64::MAX;
const LOCKED: u64 = u64::MAX - 1;
/// The epoch of an unprotected entry.
const UNPROTECTED: u64 = 0;
/// The bit of an entry's epoch that flags an operation whose protection
/// was refreshed or suspended in its middle (epochs never reach it).
const MID_OP: u64 = 1 << 63;

/// The default number of participant entries.
pub const DEFAULT_MAX_PARTICIPANTS: usize = 128;
/// The number of pending actions the drain list holds.
#[cfg(not(oxifaster_loom))]
pub const DRAIN_LIST_SIZE: usize = 256;
/// The number of pending actions the drain list holds (small for loom).
#[cfg(oxifaster_loom)]
pub const DRAIN_LIST_SIZE: usize = 2;

/// One participant's entry, alone on its cache line so that refreshes of
/// different threads never contend.
#[repr(align(64))]
#[derive(Debug, Default)]
struct Entry {
    /// The epoch the participant is protected at, or `UNPROTECTED`; with
    /// [`MID_OP`] set while the participant is inside an operation that
    /// refreshed (or suspended) its protection in its middle: the epoch
    /// alone no longer tells that it still holds what it read before (see
    /// [`Epoch::wait_mid_ops`]).
    local_epoch: AtomicU64,
    /// Whether a handle owns this entry.
    taken: AtomicBool,
}

const _: () = assert!(size_of::<Entry>() == 64);

struct DrainSlot {
    epoch: AtomicU64,
    action: UnsafeCell<Option<Action>>,
}

// SAFETY: `action` is only accessed by the thread that moved `epoch` to
// `LOCKED` with a successful CAS (see the module invariant), and the action
// itself is `Send`.
unsafe impl Sync for DrainSlot {}

/// The epoch table shared by the participants of one store or log.
pub struct Epoch {
    current_epoch: AtomicU64,
    safe_to_reclaim_epoch: AtomicU64,
    entries: Box<[Entry]>,
    drain: Box<[DrainSlot]>,
    /// Ready or claimed slots; lets refresh skip the drain scan.
    drain_count: AtomicUsize,
}

impl std::fmt::Debug for Epoch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Epoch")
            .field("current_epoch", &self.current_epoch.load(Ordering::Relaxed))
            .field("safe_to_reclaim_epoch", &self.safe_to_reclaim_epoch.load(Ordering::Relaxed))
            .field("pending_actions", &self.drain_count.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Default for Epoch {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_PARTICIPANTS)
    }
}

impl Epoch {
    /// An epoch table for at most `max_participants` protected handles.
    pub fn new(max_participants: usize) -> Self {
        Self {
            current_epoch: AtomicU64::new(1),
            safe_to_reclaim_epoch: AtomicU64::new(0),
            entries: (0..max_participants.max(1)).map(|_| Entry::default()).collect(),
            drain: (0..DRAIN_LIST_SIZE)
                .map(|_| DrainSlot { epoch: AtomicU64::new(FREE), action: UnsafeCell::new(None) })
                .collect(),
            drain_count: AtomicUsize::new(0),
        }
    }

    /// Takes a free entry; the handle starts unprotected.
    pub fn register(&self) -> Result<EpochHandle<'_>> {
        self.register_near(0)
    }

    /// Takes a free entry, searching from `hint` (modulo the table size), so
    /// that threads registering and releasing entries at a high rate each
    /// start on their own cache line rather than all contending for the
    /// first.
    pub fn register_near(&self, hint: usize) -> Result<EpochHandle<'_>> {
        let n = self.entries.len();
        for index in (0..n).map(|i| (i + hint) % n) {
            let entry = &self.entries[index];
            if !entry.taken.load(Ordering::Relaxed)
                && entry
                    .taken
                    .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                return Ok(EpochHandle { epoch: self, entry });
            }
        }
        Err(Error::TooManySessions { max: self.entries.len() })
    }

    /// The current epoch.
    pub fn current(&self) -> u64 {
        self.current_epoch.load(Ordering::SeqCst)
    }

    /// The newest epoch whose actions may run.
    pub fn safe_to_reclaim(&self) -> u64 {
        self.safe_to_reclaim_epoch.load(Ordering::SeqCst)
    }

    /// Bumps the epoch and returns the new one. State published before the
    /// call is seen by every participant that protects or refreshes later.
    pub fn bump(&self) -> u64 {
        let next = self.current_epoch.fetch_add(1, Ordering::SeqCst) + 1;
        self.drain();
        next
    }

    /// Bumps the epoch and runs `action` once every participant protected
    /// before the bump has refreshed or unprotected. The action may run on
    /// this thread, now, or on whichever thread drains later.
    ///
    /// If the drain list is full this waits for a slot, draining as it goes;
    /// a caller that is itself protected must use
    /// [`EpochHandle::bump_with_action`] so that it does not wait on itself.
    pub fn bump_with_action(&self, action: impl FnOnce() + Send + 'static) -> u64 {
        self.bump_with_action_inner(Box::new(action), None)
    }

    fn bump_with_action_inner(&self, action: Action, handle: Option<&EpochHandle<'_>>) -> u64 {
        let prior = self.current_epoch.fetch_add(1, Ordering::SeqCst);
        let mut action = Some(action);
        let mut spins = 0u32;
        loop {
            for slot in self.drain.iter() {
                if slot.epoch.load(Ordering::Relaxed) == FREE
                    && slot
                        .epoch
                        .compare_exchange(FREE, LOCKED, Ordering::Acquire, Ordering::Relaxed)
                        .is_ok()
                {
                    // SAFETY: our CAS moved the slot to LOCKED: we alone
                    // access its action until we publish its epoch below.
                    unsafe { *slot.action.get() = action.take() };
                    self.drain_count.fetch_add(1, Ordering::AcqRel);
                    slot.epoch.store(prior, Ordering::Release);
                    self.drain();
                    return prior + 1;
                }
            }
            // The list is full: make progress on it, then look again.
            if let Some(handle) = handle {
                // Possibly inside an operation (a page turn's bump).
                if handle.is_protected() {
                    handle.refresh_mid_op();
                } else {
                    handle.refresh();
                }
            } else {
                self.drain();
            }
            spins += 1;
            if spins.is_multiple_of(64) || cfg!(oxifaster_loom) {
                crate::sync::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
    }

    /// Recomputes the safe epoch from the entries: one less than the oldest
    /// protected epoch, or than the current epoch if nobody is protected.
    fn compute_safe_to_reclaim(&self) -> u64 {
        fence(Ordering::SeqCst);
        let mut oldest = self.current_epoch.load(Ordering::SeqCst);
        for entry in self.entries.iter() {
            let local = entry.local_epoch.load(Ordering::SeqCst) & !MID_OP;
            if local != UNPROTECTED && local < oldest {
                oldest = local;
            }
        }
        let safe = oldest - 1;
        self.safe_to_reclaim_epoch.fetch_max(safe, Ordering::SeqCst);
        safe
    }

    /// Waits until no participant is inside an operation that refreshed or
    /// suspended its protection in its middle
    /// ([`EpochHandle::refresh_mid_op`], [`EpochHandle::suspend`]).
    ///
    /// With an epoch drain before it, this tells that every operation that
    /// began before some point has ended: the drain passes those that kept
    /// their protection from start to end (they unprotected at their end,
    /// or are gone) and those that refreshed; the ones that refreshed or
    /// suspended flagged themselves first, and the drain's observation of
    /// their new epoch carries the flag (Release/Acquire through the
    /// entry, SeqCst through the scan). The caller is not inside an
    /// operation itself.
    pub fn wait_mid_ops(&self) {
        for entry in self.entries.iter() {
            let mut spins = 0u32;
            while entry.local_epoch.load(Ordering::Acquire) & MID_OP != 0 {
                spins += 1;
                if spins < 64 && !cfg!(oxifaster_loom) {
                    std::hint::spin_loop();
                } else {
                    crate::sync::yield_now();
                }
            }
        }
    }

    /// Runs every pending action whose epoch is safe. The common case (no
    /// pending action) is one load.
    #[inline(always)]
    fn drain(&self) {
        if self.drain_count.load(Ordering::Acquire) != 0 {
            self.drain_pending();
        }
    }

    #[cold]
    #[inline(never)]
    fn drain_pending(&self) {
        let safe = self.compute_safe_to_reclaim();
        for slot in self.drain.iter() {
            let epoch = slot.epoch.load(Ordering::Acquire);
            if epoch >= LOCKED || epoch > safe {
                continue;
            }
            if slot
                .epoch
                .compare_exchange(epoch, LOCKED, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                // SAFETY: our CAS moved the slot to LOCKED, so we alone
                // access the action; its writer published it with the
                // Release store of the epoch that our AcqRel CAS read.
                let action = unsafe { (*slot.action.get()).take() };
                slot.epoch.store(FREE, Ordering::Release);
                self.drain_count.fetch_sub(1, Ordering::AcqRel);
                if let Some(action) = action {
                    action();
                }
            }
        }
    }
}

/// A participant's entry in an [`Epoch`] table: one per session, used by one
/// thread at a time.
#[derive(Debug)]
pub struct EpochHandle<'a> {
    epoch: &'a Epoch,
    /// This participant's entry in `epoch.entries`, held by reference so
    /// that the per-operation protect and unprotect touch it directly.
    entry: &'a Entry,
}

impl EpochHandle<'_> {
    #[inline(always)]
    fn entry(&self) -> &Entry {
        self.entry
    }

    /// Protects at the current epoch and returns it. While protected at `E`,
    /// the participant holds back every action tagged with `E` or later.
    #[inline]
    pub fn protect(&self) -> u64 {
        self.protect_flagged(0)
    }

    /// [`Self::protect`], with `flag` (0 or `MID_OP`) stored with the
    /// epoch.
    #[inline(always)]
    fn protect_flagged(&self, flag: u64) -> u64 {
        let current = self.epoch.current_epoch.load(Ordering::SeqCst);
        let value = current | flag;
        #[cfg(oxifaster_loom)]
        if crate::sync::broken::weak_protect() {
            self.entry().local_epoch.store(value, Ordering::Relaxed);
            return current;
        }
        // A SeqCst read-modify-write is a full barrier (one `xchg` on x86,
        // cheaper than a store and an `mfence`): it pairs with the fence in
        // `compute_safe_to_reclaim` (module invariant), and no later load of
        // this thread is performed before it.
        self.entry().local_epoch.swap(value, Ordering::SeqCst);
        // Loom models SeqCst accesses as AcqRel but SeqCst fences exactly:
        // the model checks the handshake in its fence form, which the swap
        // implies on every target we build for.
        #[cfg(oxifaster_loom)]
        fence(Ordering::SeqCst);
        current
    }

    /// Moves the protection to the current epoch and runs the actions that
    /// this makes safe.
    #[inline]
    pub fn refresh(&self) -> u64 {
        let current = self.protect();
        self.epoch.drain();
        current
    }

    /// [`Self::refresh`] in the middle of an operation that keeps what it
    /// read before (an index slot, say): every refresh of an operation
    /// after its start must be this one. The new epoch carries `MID_OP`,
    /// published by the same store (see [`Epoch::wait_mid_ops`]); the
    /// operation's [`Self::unprotect`] clears it.
    #[inline]
    pub fn refresh_mid_op(&self) -> u64 {
        let current = self.protect_flagged(MID_OP);
        self.epoch.drain();
        current
    }

    /// Drops the protection at the end of an operation: this participant
    /// no longer holds anything back.
    #[inline]
    pub fn unprotect(&self) {
        self.entry().local_epoch.store(UNPROTECTED, Ordering::Release);
    }

    /// Drops the protection in the middle of an operation (to wait for a
    /// device read, say), flagged as such: the operation still holds what
    /// it read before (see [`Epoch::wait_mid_ops`]). The flag goes at the
    /// operation's [`Self::unprotect`].
    #[inline]
    pub fn suspend(&self) {
        self.entry().local_epoch.store(MID_OP, Ordering::Release);
    }

    /// Whether this participant is protected.
    pub fn is_protected(&self) -> bool {
        self.entry().local_epoch.load(Ordering::Relaxed) & !MID_OP != UNPROTECTED
    }

    /// Runs one epoch: bumps with an action and waits, unprotected
    /// (refreshing only to drain), until it has run — every participant
    /// protected before the bump has refreshed or unprotected since. The
    /// caller is not inside an operation, and is unprotected on return.
    pub fn wait_epoch(&self) {
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = done.clone();
        self.bump_with_action(move || flag.store(true, std::sync::atomic::Ordering::Release));
        let mut spins = 0u32;
        while !done.load(std::sync::atomic::Ordering::Acquire) {
            self.refresh();
            self.unprotect();
            spins += 1;
            if spins < 64 || cfg!(oxifaster_loom) {
                crate::sync::yield_now();
            } else {
                std::thread::sleep(std::time::Duration::from_micros(50));
            }
        }
    }

    /// [`Epoch::bump_with_action`] from a participant that may be protected:
    /// it refreshes itself while it waits for a drain slot.
    pub fn bump_with_action(&self, action: impl FnOnce() + Send + 'static) -> u64 {
        self.epoch.bump_with_action_inner(Box::new(action), Some(self))
    }
}

impl Drop for EpochHandle<'_> {
    fn drop(&mut self) {
        self.unprotect();
        self.entry().taken.store(false, Ordering::Release);
        self.epoch.drain();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn action_waits_for_every_protected_participant() {
        let epoch = Epoch::new(4);
        let a = epoch.register().expect("entry");
        let b = epoch.register().expect("entry");
        a.protect();
        b.protect();
        let ran = Arc::new(AtomicUsize::new(0));
        let r = ran.clone();
        epoch.bump_with_action(move || {
            r.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(ran.load(Ordering::SeqCst), 0);
        a.refresh();
        assert_eq!(ran.load(Ordering::SeqCst), 0, "b still holds the old epoch");
        b.refresh();
        assert_eq!(ran.load(Ordering::SeqCst), 1);
        a.refresh();
        assert_eq!(ran.load(Ordering::SeqCst), 1, "an action runs once");
    }

    #[test]
    fn unprotected_and_dropped_participants_do_not_stall_a_bump() {
        let epoch = Epoch::new(4);
        let idle = epoch.register().expect("entry");
        let parked = epoch.register().expect("entry");
        parked.protect();
        parked.unprotect();
        let dropped = epoch.register().expect("entry");
        dropped.protect();
        drop(dropped);
        let ran = Arc::new(AtomicUsize::new(0));
        let r = ran.clone();
        epoch.bump_with_action(move || {
            r.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(ran.load(Ordering::SeqCst), 1);
        assert!(!idle.is_protected());
    }

    #[test]
    fn the_table_has_a_bound_and_entries_are_reused() {
        let epoch = Epoch::new(2);
        let a = epoch.register().expect("entry");
        let _b = epoch.register().expect("entry");
        assert!(matches!(epoch.register(), Err(Error::TooManySessions { max: 2 })));
        drop(a);
        assert!(epoch.register().is_ok());
    }

    #[test]
    fn a_full_drain_list_makes_progress_for_a_protected_caller() {
        let epoch = Epoch::new(2);
        let me = epoch.register().expect("entry");
        me.protect();
        let ran = Arc::new(AtomicUsize::new(0));
        for _ in 0..DRAIN_LIST_SIZE * 3 {
            let r = ran.clone();
            me.bump_with_action(move || {
                r.fetch_add(1, Ordering::SeqCst);
            });
        }
        me.refresh();
        me.refresh();
        assert_eq!(ran.load(Ordering::SeqCst), DRAIN_LIST_SIZE * 3);
    }
}
