//! Concurrent prefix recovery (CPR): the versions and phases sessions
//! follow, their commit points, and the checkpoint vocabulary (kinds,
//! tokens, callbacks, bookkeeping) that the store carries and the
//! `checkpoint` layer above it fills in. This layer sits between the
//! index and the store, so that the store never calls the checkpoint
//! layer: it only holds these types. (The design's layer table has no row
//! for it: there the store and the checkpoint layer share this
//! vocabulary, which put each above the other; split out, each layer
//! calls only those below it.)
//!
//! ## The session side
//!
//! The store has a version `v` (starting at 1) and a phase, packed in one
//! atomic word. A checkpoint of version `v` captures, for every session,
//! exactly the operations it ran while it was at version `v` or earlier, and
//! none that it ran later. It moves the store to `v + 1` in these phases:
//!
//! ```text
//! REST(v) --publish--> IN_PROGRESS(v+1) --epoch action--> WAIT_FLUSH(v+1)
//!         --(log flushed or snapshot written, metadata durable)--> REST(v+1)
//! ```
//!
//! A session learns the new version at the start of its next operation
//! (after it protects its epoch entry), and records its *commit point* for
//! the old version: the serial number of its last operation run in it
//! (`until`) and the serial numbers of its read-modify-writes still parked
//! for I/O at that moment (`excluded`). Parked operations finish in the
//! session's current version when they complete, so a checkpoint never waits
//! for a session's I/O, and an idle session never stalls a checkpoint: once
//! every *protected* session has moved on (the epoch action above), the
//! checkpoint records idle sessions' points itself ("claims" them), under
//! the same per-session lock the session takes to switch.
//!
//! ## Invariants (enforced in `session.rs`)
//!
//! 1. A session updates a record in place only if the record's version is
//!    its own. Records of older versions are copied to the tail (so the
//!    checkpoint's records keep exactly their version's effects).
//! 2. While the phase is `IN_PROGRESS` (not every protected session has
//!    moved on), a session at `v + 1` does not copy a record of an older
//!    version for a read-modify-write: a session still at `v` may be updating
//!    it in place, and a copy now could lose that update. It retries after
//!    refreshing, like the fuzzy region.
//! 3. A session at `v` that meets a record of version `v + 1` (the newest of
//!    its key's chain, or the record it would chain a new one to) moves to
//!    `v + 1` before it writes ("pivots"), so no record of `v` ever includes
//!    or chains past an effect of `v + 1`. Recovery therefore never needs
//!    to rewrite the log: records newer than the checkpoint are simply
//!    unreachable from the recovered index.
//!
//! ## Where this departs from FASTER's state machine
//!
//! FASTER runs `PREPARE` (threads acknowledge, take shared bucket latches)
//! and `WAIT_PENDING` (the old version's pending operations drain) between
//! the version change and the flush. Here there is neither:
//!
//! - instead of latches, invariants 2 and 3 keep the two versions apart
//!   (a new-version RMW waits one epoch before copying an old record; an
//!   old-version operation that meets a new record joins the new version);
//! - instead of waiting for pending operations, a commit point lists the
//!   parked RMWs it excludes (as FASTER's later `CommitPoint` with
//!   `ExcludedSerialNos` does), so a session that never calls
//!   `complete_pending` cannot stall a checkpoint.
//!
//! The price: a session's durable prefix may have holes (the excluded
//! serial numbers), which recovery reports.
//!
//! Versions live in 13 bits of each record header; they compare on a ring
//! (see [`version_bits`]), which is sound while a log replay spans fewer
//! than 4095 checkpoints.

mod control;
mod io;
mod types;

pub(crate) use control::{Busy, Control, IndexRef, SnapshotRef, Task};
#[cfg(feature = "testing")]
pub(crate) use io::RealFile;
pub use io::{CheckpointFile, CheckpointIo, RealIo};
pub(crate) use types::report;
pub use types::{
    CheckpointFn, CheckpointInfo, CheckpointKind, CheckpointToken, IoHandle, Progress, ProgressFn,
};

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// The phase: no checkpoint runs.
pub(crate) const REST: u64 = 0;
/// The phase: the version moved; sessions still at the old one may be
/// running an operation.
pub(crate) const IN_PROGRESS: u64 = 1;
/// The phase: every session is at the new version (or idle); the old
/// version's records are being made durable.
pub(crate) const WAIT_FLUSH: u64 = 2;

/// The number of distinct record versions (13 bits, 0 excluded so that a
/// written header is never all zero).
const VERSION_RING: u32 = (1 << 13) - 1;

/// The 13 bits a record of store version `version` carries: `1..=8191`.
#[inline(always)]
pub(crate) fn version_bits(version: u32) -> u32 {
    (version.wrapping_sub(1) % VERSION_RING) + 1
}

/// Whether a record carrying `record` bits is newer than store version
/// `version` (on the ring: at most 4095 versions ahead).
#[inline]
pub(crate) fn is_newer(record: u32, version: u32) -> bool {
    let mine = version_bits(version);
    let ahead = (record + VERSION_RING - mine) % VERSION_RING;
    ahead != 0 && ahead < VERSION_RING / 2
}

/// Which operations of a session a checkpoint holds: every operation with a
/// serial number up to `until`, except those in `excluded` (read-modify-
/// writes that were waiting for I/O when the session moved to the next
/// version; they are in a later checkpoint).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommitPoint {
    /// The serial number of the last operation included.
    pub until: u64,
    /// Serial numbers at or below `until` that are *not* included.
    pub excluded: Vec<u64>,
}

impl CommitPoint {
    /// Whether the operation with serial number `serial` is included.
    pub fn includes(&self, serial: u64) -> bool {
        serial <= self.until && self.excluded.binary_search(&serial).is_err()
    }
}

/// The bit of the CPR word that tells operations the hash index is growing
/// (see `store::grow`): not part of the version or the phase.
pub(crate) const GROWING: u64 = 1 << 63;

/// The store's version and phase: `version << 8 | phase` (and [`GROWING`]).
#[derive(Debug)]
pub(crate) struct CprState {
    /// loom's under `--cfg oxifaster_loom` (the growth hand-off's model
    /// reads it).
    word: crate::sync::AtomicU64,
}

impl CprState {
    pub(crate) fn new(version: u32) -> Self {
        Self { word: crate::sync::AtomicU64::new(u64::from(version) << 8) }
    }

    /// `(version, phase)`. SeqCst: read after the session protects (the
    /// epoch invariant makes it see a phase published before a bump).
    #[inline(always)]
    pub(crate) fn load(&self) -> (u32, u64) {
        let word = self.word.load(Ordering::SeqCst);
        ((word >> 8) as u32, word & 0xff)
    }

    /// The whole word: `version << 8 | phase`, with [`GROWING`] while the
    /// hash index grows. An operation's start compares it with what it
    /// expects (its version, phase `REST`, no growth) in one load, and
    /// takes its slow path on any difference.
    #[inline(always)]
    pub(crate) fn word(&self) -> u64 {
        self.word.load(Ordering::SeqCst)
    }

    /// Sets the version and phase, keeping the [`GROWING`] bit.
    pub(crate) fn store(&self, version: u32, phase: u64) {
        let new = u64::from(version) << 8 | phase;
        let _ = self
            .word
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |word| Some(word & GROWING | new));
    }

    /// Sets or clears [`GROWING`].
    pub(crate) fn set_growing(&self, on: bool) {
        if on {
            self.word.fetch_or(GROWING, Ordering::SeqCst);
        } else {
            self.word.fetch_and(!GROWING, Ordering::SeqCst);
        }
    }
}

/// One session's CPR bookkeeping, shared with the checkpoint. Aligned to
/// two cache lines so that sessions on different threads, each storing its
/// serial number after every operation, never share a line.
#[derive(Debug)]
#[repr(align(128))]
pub(crate) struct SessionSlot {
    pub(crate) id: u64,
    /// The serial number of the session's last finished operation (an
    /// operation that went pending counts as finished here: it is in
    /// `pending_rmws`). Written by the session at the end of each operation.
    pub(crate) serial: AtomicU64,
    /// How many operations of the session may have written (see
    /// `Registry::writes`); on the same cache line as `serial`.
    pub(crate) writes: AtomicU64,
    state: Mutex<SlotState>,
    /// The session's operation counters (`stats`), on their own lines.
    pub(crate) counters: crate::stats::SessionCounters,
}

#[derive(Debug, Default)]
struct SlotState {
    /// The version the session is at (or was claimed into).
    version: u32,
    /// Serial numbers of parked read-modify-writes.
    pending_rmws: BTreeSet<u64>,
    /// Commit points recorded at switches: `(from, to, point)` holds for
    /// every checkpoint version in `from..to`.
    points: Vec<(u32, u32, CommitPoint)>,
    /// Whether a `Session` is attached.
    open: bool,
    /// An internal session (compaction's): its commit points are not
    /// listed in checkpoints.
    internal: bool,
    /// Recovered from a checkpoint and not continued yet: kept (and listed
    /// in every checkpoint) until `continue_session` takes it.
    recovered: bool,
}

impl SessionSlot {
    fn lock(&self) -> MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Moves the session to `version` if it is behind, recording its commit
    /// point for the versions it leaves. Returns the session's version.
    pub(crate) fn switch_to(&self, version: u32) -> u32 {
        let mut state = self.lock();
        if state.version < version {
            let point = CommitPoint {
                until: self.serial.load(Ordering::Acquire),
                excluded: state.pending_rmws.iter().copied().collect(),
            };
            let from = state.version;
            state.points.push((from, version, point));
            state.version = version;
        }
        state.version
    }

    /// The commit point for checkpoint version `version`, claiming the
    /// session into `version + 1` if it has not moved there itself. Called
    /// once every protected session is past `version`.
    pub(crate) fn commit_point(&self, version: u32) -> CommitPoint {
        self.switch_to(version + 1);
        let mut state = self.lock();
        let point = state
            .points
            .iter()
            .find(|(from, to, _)| *from <= version && version < *to)
            .map(|(_, _, p)| p.clone())
            .unwrap_or_default();
        state.points.retain(|(_, to, _)| *to > version + 1);
        point
    }

    pub(crate) fn parked(&self, serial: u64) {
        self.lock().pending_rmws.insert(serial);
    }

    pub(crate) fn finished(&self, serial: u64) {
        self.lock().pending_rmws.remove(&serial);
    }

    pub(crate) fn version(&self) -> u32 {
        self.lock().version
    }

    /// Whether this is an internal session (left out of commit points).
    pub(crate) fn is_internal(&self) -> bool {
        self.lock().internal
    }

    pub(crate) fn close(&self) {
        self.lock().open = false;
    }

    /// Whether the session is closed for good: no `Session` attached and
    /// not waiting to be continued after recovery.
    pub(crate) fn is_retired(&self) -> bool {
        let state = self.lock();
        !state.open && !state.recovered
    }
}

/// Every session the store knows: open ones, closed ones (their last commit
/// point stays in later checkpoints) and recovered ones not yet continued.
#[derive(Debug)]
pub(crate) struct Registry {
    slots: Mutex<BTreeMap<u64, Arc<SessionSlot>>>,
    next_id: AtomicU64,
    /// The write counts of every session forgotten so far, summed: with
    /// the live sessions' counts, a counter that grows with every write
    /// (see [`Registry::writes`]).
    forgotten_writes: AtomicU64,
    /// The operation counters of every session forgotten so far, summed.
    forgotten_counters: crate::stats::SessionCounters,
}

impl Registry {
    pub(crate) fn new() -> Self {
        Self {
            slots: Mutex::new(BTreeMap::new()),
            next_id: AtomicU64::new(1),
            forgotten_writes: AtomicU64::new(0),
            forgotten_counters: Default::default(),
        }
    }

    fn slots(&self) -> MutexGuard<'_, BTreeMap<u64, Arc<SessionSlot>>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new open session at `version`.
    pub(crate) fn open_new(&self, version: u32) -> Arc<SessionSlot> {
        self.open(version, false)
    }

    /// A new open internal session at `version` (see `SlotState::internal`).
    pub(crate) fn open_new_internal(&self, version: u32) -> Arc<SessionSlot> {
        self.open(version, true)
    }

    fn open(&self, version: u32, internal: bool) -> Arc<SessionSlot> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(SessionSlot {
            id,
            serial: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            state: Mutex::new(SlotState { version, open: true, internal, ..SlotState::default() }),
            counters: Default::default(),
        });
        self.slots().insert(id, slot.clone());
        slot
    }

    /// Reopens a closed session (one recovered from a checkpoint), returning
    /// it and its serial number.
    pub(crate) fn reopen(&self, id: u64, version: u32) -> Option<Arc<SessionSlot>> {
        let slots = self.slots();
        let slot = slots.get(&id)?.clone();
        let mut state = slot.lock();
        if state.open {
            return None;
        }
        state.open = true;
        state.recovered = false;
        state.version = state.version.max(version);
        drop(state);
        Some(slot)
    }

    /// Adds a closed session recovered from a checkpoint at `until`.
    pub(crate) fn add_recovered(&self, id: u64, point: &CommitPoint, version: u32) {
        let slot = Arc::new(SessionSlot {
            id,
            serial: AtomicU64::new(point.until),
            writes: AtomicU64::new(0),
            state: Mutex::new(SlotState {
                version,
                // The excluded operations never ran in this incarnation:
                // they stay excluded until the user reissues them.
                pending_rmws: point.excluded.iter().copied().collect(),
                recovered: true,
                ..SlotState::default()
            }),
            counters: Default::default(),
        });
        self.slots().insert(id, slot);
        self.next_id.fetch_max(id + 1, Ordering::Relaxed);
    }

    /// Never hands out ids below `next` (they were used before a crash).
    pub(crate) fn reserve_ids(&self, next: u64) {
        self.next_id.fetch_max(next, Ordering::Relaxed);
    }

    /// The next session id to hand out.
    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.load(Ordering::Relaxed)
    }

    /// Forgets the sessions `ids`: closed sessions whose final commit point
    /// a durable checkpoint holds (so the registry, and every checkpoint's
    /// metadata, stays as small as the set of live sessions).
    pub(crate) fn forget(&self, ids: &[u64]) {
        let mut slots = self.slots();
        for id in ids {
            if let Some(slot) = slots.remove(id) {
                self.forgotten_writes
                    .fetch_add(slot.writes.load(Ordering::Acquire), Ordering::AcqRel);
                slot.counters.add_into(&self.forgotten_counters);
            }
        }
    }

    /// Every session's operation counters (forgotten ones included) added
    /// to a snapshot.
    pub(crate) fn sum_counters(
        &self,
        ops: &mut crate::stats::OperationStats,
        pending: &mut crate::stats::PendingStats,
    ) {
        let slots = self.slots();
        for slot in slots.values() {
            slot.counters.sum_into(ops, pending);
        }
        self.forgotten_counters.sum_into(ops, pending);
    }

    /// A count that grows with every write of every session (forgotten
    /// sessions included): equal values mean no write ran in between.
    pub(crate) fn writes(&self) -> u64 {
        let slots = self.slots();
        let live: u64 = slots.values().map(|s| s.writes.load(Ordering::Acquire)).sum();
        live.wrapping_add(self.forgotten_writes.load(Ordering::Acquire))
    }

    /// Every slot, by id.
    pub(crate) fn all(&self) -> Vec<Arc<SessionSlot>> {
        self.slots().values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_on_a_ring() {
        assert_eq!(version_bits(1), 1);
        assert_eq!(version_bits(8191), 8191);
        assert_eq!(version_bits(8192), 1);
        assert!(is_newer(version_bits(6), 5));
        assert!(!is_newer(version_bits(5), 5));
        assert!(!is_newer(version_bits(4), 5));
        assert!(is_newer(version_bits(8192), 8191), "wraps");
        assert!(!is_newer(version_bits(8190), 8192));
    }

    #[test]
    fn commit_points_cover_skipped_versions_and_claims() {
        let registry = Registry::new();
        let slot = registry.open_new(1);
        slot.serial.store(5, Ordering::Release);
        slot.parked(4);
        // The checkpoint of version 1 claims the idle session.
        let point = slot.commit_point(1);
        assert_eq!(point, CommitPoint { until: 5, excluded: vec![4] });
        assert!(point.includes(5) && !point.includes(4) && !point.includes(6));
        assert_eq!(slot.version(), 2);
        // The session skips version 2 and 3 while idle, then moves to 4.
        slot.finished(4);
        slot.serial.store(9, Ordering::Release);
        assert_eq!(slot.switch_to(4), 4);
        assert_eq!(slot.commit_point(2).until, 9);
        assert_eq!(slot.commit_point(3).until, 9);
    }
}
