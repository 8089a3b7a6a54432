//! Growing the hash index: its table doubles online (FASTER's GrowIndex).
//!
//! ## Protocol
//!
//! The table lives behind [`HashIndex`]'s table pointer. One growth runs at
//! a time, in three phases ([`GrowPhase`]):
//!
//! 1. **Prepare** ([`HashIndex::start_grow`]): the new table (twice the
//!    buckets, zeroed) is allocated and the phase published. Every
//!    operation checks the phase after protecting itself in the epoch; in
//!    any phase but `Rest` it does not touch the index but helps or waits.
//!    The caller waits until every operation that began before the phase
//!    was published has finished, then moves to `Split`
//!    ([`HashIndex::begin_split`]) — so from `Split` on nobody writes the
//!    old table.
//! 2. **Split** ([`HashIndex::split`]): threads claim chunks of old buckets
//!    and split each bucket chain `i` into new buckets `i` and `i + n` (`n`
//!    the old size) by the hash bit the new mask adds. An entry whose record
//!    is in memory goes to its record's side; its chain is followed back to
//!    the first record of the other side, whose address becomes that side's
//!    entry (same tag). An entry whose record is not in memory (on the
//!    device, or gone) goes to both sides (its key's hash is not at
//!    hand); after the growth the caller reads those chains back and
//!    points each copy at its own side's first record or frees it
//!    ([`HashIndex::entries_below`], [`HashIndex::retarget`]), so copies
//!    do not double with every growth. Until then a copy costs a longer
//!    walk for some keys on the device and never a wrong answer (a walk
//!    compares keys). Only the claimer of old bucket `i` writes new
//!    buckets `i` and `i + n`.
//! 3. The thread that finishes the last chunk publishes the new table
//!    (Release) and then the phase `Rest`; operations that waited load the
//!    phase (Acquire) and then the table. The old table is kept until
//!    [`HashIndex::release_retired`] is called after an epoch drain (no
//!    operation that began before the swap still runs); its overflow
//!    buckets are zeroed and reused by the new table's chains.
//!
//! **Invariant**: while the phase is not `Rest`, no thread writes to the
//! current table, and each bucket of the new table has one writer.
//!
//! What the caller adds (the store does, in `store/grow.rs`): a phase
//! check at the start of every operation, an operation-in-flight flag the
//! growth waits for (an operation may refresh its epoch protection in its
//! middle, so the epoch alone cannot tell that it still holds a slot of
//! the old table), `HashIndex::hold_table` around the split so that no
//! index checkpoint dumps a table being replaced, and the resolution of
//! the copies. The unit tests below check splits against a model log
//! (records in memory and on the device, several growths, overflow buckets
//! reused); `tests/index_grow.rs` and the loom model in `tests/loom.rs`
//! check the store's side.

use std::sync::Mutex;

use super::bucket::HashBucketEntry;
use super::{HashIndex, MAX_TABLE_SIZE, Table};
use crate::address::Address;
use crate::sync::{AtomicBool, AtomicPtr, AtomicU8, AtomicU64, Ordering};

/// Where a growth of the index is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrowPhase {
    /// No growth: operations use the table.
    Rest,
    /// A growth waits for the operations that use the table to finish.
    Prepare,
    /// Threads split the old table's buckets into the new one.
    Split,
}

const REST: u8 = 0;
const PREPARE: u8 = 1;
const SPLIT: u8 = 2;

/// Old buckets per chunk a splitter claims.
const CHUNK_BUCKETS: u64 = 1 << 12;

/// How many buckets ahead of its split a splitter prefetches records.
const PREFETCH_BUCKETS: u64 = 8;

/// What a splitter learns of a record of a chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Traced {
    /// In memory: its key's hash, and the previous record of its chain.
    Memory {
        /// The key's hash.
        hash: u64,
        /// The previous record's address.
        previous: Address,
    },
    /// Not in memory (on the device, or gone): an entry keeps pointing at
    /// it from both sides.
    Elsewhere,
}

/// An entry where it is in the table (see [`HashIndex::entries_below`]).
#[derive(Debug, Clone, Copy)]
pub struct Placed<'a> {
    /// The bucket that holds it.
    pub bucket: u64,
    /// Its slot.
    pub slot: &'a AtomicU64,
    /// The entry, as read.
    pub entry: HashBucketEntry,
}

/// A growth's state (see the module's protocol).
pub(crate) struct Growth {
    phase: AtomicU8,
    /// The table being filled (null at rest).
    new: AtomicPtr<Table>,
    /// The table being split (null at rest).
    old: AtomicPtr<Table>,
    next_chunk: AtomicU64,
    chunks_done: AtomicU64,
    /// The old table's overflow buckets, set aside when the split starts.
    old_overflow: Mutex<Vec<usize>>,
    /// Tables a growth replaced, with the overflow buckets their chains
    /// used, until they are released.
    retired: Mutex<Vec<(Box<Table>, Vec<usize>)>>,
    /// Growths completed.
    pub(crate) completed: AtomicU64,
    /// Entries the running growth's split put in both halves.
    copied: AtomicU64,
    /// Set when the entries created pass [`GROW_AT`] per main bucket.
    requested: AtomicBool,
    /// Entries created by inserts (not by splits), in shards on their own
    /// cache lines (picked by the bucket's address), so that inserts on
    /// different threads do not share a counter line.
    created: [Counter; SHARDS],
    /// Held while the table may be replaced (a growth, from its split to
    /// its publication) and by readers of the whole table (an index
    /// checkpoint's dump, statistics), which must see one table throughout.
    table_lock: Mutex<()>,
}

/// A counter alone on its cache line pair.
#[derive(Default)]
#[repr(align(128))]
struct Counter(AtomicU64);

const SHARDS: usize = 8;

/// The automatic growth's trigger: entries created per main bucket (a
/// bucket holds 7; at 4 per bucket on average about 5% of the buckets
/// have overflowed). A growth halves it to 2, the load of a table sized
/// for its keys.
pub const GROW_AT: u64 = 4;

impl Default for Growth {
    fn default() -> Self {
        Self {
            phase: AtomicU8::new(REST),
            new: AtomicPtr::new(std::ptr::null_mut()),
            old: AtomicPtr::new(std::ptr::null_mut()),
            next_chunk: AtomicU64::new(0),
            chunks_done: AtomicU64::new(0),
            old_overflow: Mutex::new(Vec::new()),
            retired: Mutex::new(Vec::new()),
            completed: AtomicU64::new(0),
            copied: AtomicU64::new(0),
            requested: AtomicBool::new(false),
            created: Default::default(),
            table_lock: Mutex::new(()),
        }
    }
}

impl Growth {
    /// Frees a table being filled (the index is dropped mid-growth).
    pub(super) fn drop_pending(&mut self) {
        let new = self.new.swap(std::ptr::null_mut(), Ordering::AcqRel);
        if !new.is_null() {
            // SAFETY: made by `Box::into_raw` in `start_grow`, published
            // nowhere else; the index is being dropped.
            drop(unsafe { Box::from_raw(new) });
        }
    }
}

/// Twice `size`, if a table may have that many buckets.
fn doubled(size: u64) -> crate::Result<u64> {
    match size.checked_mul(2) {
        Some(doubled) if doubled <= MAX_TABLE_SIZE => Ok(doubled),
        _ => Err(crate::Error::InvalidConfig {
            what: "table_size",
            why: format!("the index cannot grow past 2^40 buckets (it has {size})"),
        }),
    }
}

impl HashIndex {
    /// The phase of a growth (`Rest` when none runs).
    #[inline(always)]
    pub fn grow_phase(&self) -> GrowPhase {
        match self.grow.phase.load(Ordering::Acquire) {
            REST => GrowPhase::Rest,
            PREPARE => GrowPhase::Prepare,
            _ => GrowPhase::Split,
        }
    }

    /// Whether the entries created passed [`GROW_AT`] per main bucket
    /// since this was last asked (then a growth is due): one load while
    /// nothing is due.
    #[inline(always)]
    pub fn take_growth_request(&self) -> bool {
        self.grow.requested.load(Ordering::Relaxed)
            && self.grow.requested.swap(false, Ordering::AcqRel)
    }

    /// Counts an entry an insert made final in `slot` (off the hot path:
    /// only inserts of a new (bucket, tag) come here), and asks for a
    /// growth when the entries pass [`GROW_AT`] per main bucket. Entries a
    /// split writes are not counted, so copies of an entry in both halves
    /// (see the protocol) never inflate the trigger.
    pub(super) fn entry_created(&self, slot: &AtomicU64) {
        let shard = ((slot as *const AtomicU64 as usize) >> 6) % SHARDS;
        let n = self.grow.created[shard].0.fetch_add(1, Ordering::Relaxed) + 1;
        if n * SHARDS as u64 > GROW_AT * self.table_size()
            && !self.grow.requested.load(Ordering::Relaxed)
            && self.grow_phase() == GrowPhase::Rest
        {
            self.grow.requested.store(true, Ordering::Release);
        }
    }

    /// Uncounts an entry freed in `slot` (see [`HashIndex::clear_below`]),
    /// so that the growth trigger follows the entries the table holds.
    pub(super) fn entry_freed(&self, slot: &AtomicU64) {
        let shard = ((slot as *const AtomicU64 as usize) >> 6) % SHARDS;
        let counter = &self.grow.created[shard].0;
        let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    /// Sets the count of created entries to the entries in the table now
    /// (after recovery loaded and replayed it).
    pub(crate) fn recount_entries(&self) {
        let mut entries = 0u64;
        self.for_each_entry(|_| entries += 1);
        // Spread evenly: the trigger takes one shard as an eighth of all.
        for (i, counter) in self.grow.created.iter().enumerate() {
            let share = entries / SHARDS as u64 + u64::from((i as u64) < entries % SHARDS as u64);
            counter.0.store(share, Ordering::Relaxed);
        }
    }

    /// Holds the table in place: no growth replaces it until the guard is
    /// dropped. For readers of the whole table (an index checkpoint's dump,
    /// statistics) and for a growth's split.
    pub(crate) fn hold_table(&self) -> std::sync::MutexGuard<'_, ()> {
        self.grow.table_lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many entries the last growth's split put in both halves (their
    /// records were not in memory): the copies to resolve.
    pub fn copied_by_last_split(&self) -> u64 {
        self.grow.copied.load(Ordering::Acquire)
    }

    /// Growths this index completed.
    pub fn growths(&self) -> u64 {
        self.grow.completed.load(Ordering::Acquire)
    }

    /// Starts doubling the table: allocates the new one and moves to
    /// `Prepare`. The caller then waits until no operation still uses the
    /// table (an epoch drain) and calls [`Self::begin_split`]. Returns the
    /// new size, or `None` if a growth already runs (this one is not
    /// started). Fails past 2^40 buckets, or without the memory.
    pub fn start_grow(&self) -> crate::Result<Option<u64>> {
        let size = doubled(self.table_size())?;
        let new = Box::into_raw(Box::new(Table::new(size)?));
        if self.grow.new.compare_exchange(std::ptr::null_mut(), new, Ordering::AcqRel, Ordering::Acquire).is_err() {
            // SAFETY: made just above and published nowhere.
            drop(unsafe { Box::from_raw(new) });
            return Ok(None);
        }
        self.grow.old.store(self.table.load(Ordering::Acquire), Ordering::Release);
        self.grow.next_chunk.store(0, Ordering::Relaxed);
        self.grow.chunks_done.store(0, Ordering::Relaxed);
        self.grow.copied.store(0, Ordering::Relaxed);
        self.grow.phase.store(PREPARE, Ordering::SeqCst);
        Ok(Some(size))
    }

    /// Moves a prepared growth to `Split`: call once no operation uses
    /// the table (see the module's protocol). The old table's overflow
    /// buckets are set aside for release with it.
    pub fn begin_split(&self) {
        if self.grow.phase.load(Ordering::Acquire) != PREPARE {
            return;
        }
        {
            let mut overflow = self.overflow.lock().unwrap_or_else(|p| p.into_inner());
            *self.grow.old_overflow.lock().unwrap_or_else(|p| p.into_inner()) =
                std::mem::take(&mut overflow.in_use);
        }
        self.grow.phase.store(SPLIT, Ordering::SeqCst);
    }

    /// Splits chunks of the old table until none is left to claim, reading
    /// records through `trace`; true if this call finished the last chunk
    /// (the new table is then published and the phase back to `Rest`).
    /// Does nothing outside `Split`. The caller is protected in the epoch
    /// for the whole call (the growth's drain, which waits for it, keeps
    /// the tables it uses alive).
    pub fn split(&self, trace: &dyn Fn(Address) -> Traced, prefetch: &dyn Fn(Address)) -> bool {
        if self.grow.phase.load(Ordering::Acquire) != SPLIT {
            return false;
        }
        // Both tables of this growth, or null once it published: the next
        // growth cannot set others while this thread is protected (its
        // start waits for an epoch drain after this one's publication).
        // Not `self.table()` for the old one: after a publication that is
        // the new table.
        let new = self.grow.new.load(Ordering::Acquire);
        let old = self.grow.old.load(Ordering::Acquire);
        if new.is_null() || old.is_null() {
            return false;
        }
        // SAFETY: non-null, so set by this growth's `start_grow`: the new
        // table lives on as the index's table (freed only by a later
        // growth's `release_retired`, after a drain this thread holds
        // back), the old one until this growth's `release_retired` (same).
        let (new, old) = unsafe { (&*new, &*old) };
        let chunks = old.size().div_ceil(CHUNK_BUCKETS);
        loop {
            let chunk = self.grow.next_chunk.fetch_add(1, Ordering::AcqRel);
            if chunk >= chunks {
                return false;
            }
            let first = chunk * CHUNK_BUCKETS;
            let end = (first + CHUNK_BUCKETS).min(old.size());
            // The records a split reads are scattered over the log: asking
            // for those of a few buckets ahead overlaps their cache misses
            // (one growth of a table of 8 M buckets reads 33 M records).
            for i in first..end.min(first + PREFETCH_BUCKETS) {
                Self::prefetch_records(old, i, prefetch);
            }
            for i in first..end {
                if i + PREFETCH_BUCKETS < end {
                    Self::prefetch_records(old, i + PREFETCH_BUCKETS, prefetch);
                }
                self.split_bucket(old, new, i, trace);
            }
            if self.grow.chunks_done.fetch_add(1, Ordering::AcqRel) + 1 == chunks {
                self.publish();
                return true;
            }
        }
    }

    /// Asks for the records old bucket `i`'s entries point at.
    fn prefetch_records(old: &Table, i: u64, prefetch: &dyn Fn(Address)) {
        let mut bucket = Some(old.bucket_at(i));
        while let Some(b) = bucket {
            for slot in &b.entries {
                let entry = HashBucketEntry::from_raw(slot.load(Ordering::Relaxed));
                if !entry.is_unused() && !entry.is_tentative() {
                    prefetch(entry.address());
                }
            }
            bucket = b.next();
        }
    }

    /// Splits old bucket `i`'s chain into new buckets `i` and `i + n`.
    fn split_bucket(&self, old: &Table, new: &Table, i: u64, trace: &dyn Fn(Address) -> Traced) {
        let n = old.size();
        let mut bucket = Some(old.bucket_at(i));
        while let Some(b) = bucket {
            for slot in &b.entries {
                let entry = HashBucketEntry::from_raw(slot.load(Ordering::Acquire));
                if entry.is_unused() || entry.is_tentative() || !entry.address().is_valid() {
                    continue;
                }
                let tag = entry.tag();
                let Traced::Memory { hash, previous } = trace(entry.address()) else {
                    self.put(new, i, entry);
                    self.put(new, i + n, entry);
                    self.grow.copied.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                let upper = hash & n != 0;
                let (mine, other) = if upper { (i + n, i) } else { (i, i + n) };
                self.put(new, mine, entry);
                let mut at = previous;
                while at.is_valid() {
                    match trace(at) {
                        Traced::Memory { hash, previous } if (hash & n != 0) == upper => at = previous,
                        _ => {
                            self.put(new, other, HashBucketEntry::new(at, tag, false));
                            break;
                        }
                    }
                }
            }
            bucket = b.next();
        }
    }

    /// Adds `entry` to `index`'s chain of `table`, which only this thread
    /// writes (see the module's invariant).
    fn put(&self, table: &Table, index: u64, entry: HashBucketEntry) {
        let mut bucket = table.bucket_at(index);
        loop {
            for slot in &bucket.entries {
                if slot.load(Ordering::Relaxed) == 0 {
                    slot.store(entry.raw(), Ordering::Release);
                    return;
                }
            }
            bucket = match bucket.next() {
                Some(next) => next,
                None => self.append_overflow(bucket),
            };
        }
    }

    /// Publishes the new table, retires the old one and ends the growth.
    fn publish(&self) {
        let new = self.grow.new.swap(std::ptr::null_mut(), Ordering::AcqRel);
        let old = self.table.swap(new, Ordering::AcqRel);
        self.grow.old.store(std::ptr::null_mut(), Ordering::Release);
        let overflow = std::mem::take(&mut *self.grow.old_overflow.lock().unwrap_or_else(|p| p.into_inner()));
        // SAFETY: `old` was the current table, made by `Box::into_raw`;
        // it is no longer published, and is freed only by
        // `release_retired`.
        let old = unsafe { Box::from_raw(old) };
        self.grow.retired.lock().unwrap_or_else(|p| p.into_inner()).push((old, overflow));
        self.grow.completed.fetch_add(1, Ordering::AcqRel);
        self.grow.phase.store(REST, Ordering::SeqCst);
    }

    /// The entries of buckets `first..first + count` whose records are
    /// below `below` (on the device), for the caller to check by reading
    /// their chains ([`Self::retarget`]): after a split these include the
    /// copies it put in both halves.
    ///
    /// The references stay valid while the table is current: the caller
    /// keeps other growths out while it uses them.
    pub fn entries_below(&self, first: u64, count: u64, below: Address) -> Vec<Placed<'_>> {
        let table = self.table();
        let mut found = Vec::new();
        for i in first..first.saturating_add(count).min(table.size()) {
            let mut bucket = Some(table.bucket_at(i));
            while let Some(b) = bucket {
                for slot in &b.entries {
                    let entry = HashBucketEntry::from_raw(slot.load(Ordering::Acquire));
                    if !entry.is_unused()
                        && !entry.is_tentative()
                        && entry.address().is_valid()
                        && entry.address() < below
                    {
                        found.push(Placed { bucket: i, slot, entry });
                    }
                }
                bucket = b.next();
            }
        }
        found
    }

    /// Points an entry at `to` — the first record of its chain whose key
    /// belongs to the entry's bucket and tag — or, with an invalid `to`
    /// (no such record), frees its slot; by a CAS from the entry as it was
    /// read, so a session's insert that got there first wins. False if the
    /// entry changed meanwhile.
    ///
    /// Correct because the records skipped belong to other buckets: no key
    /// of this bucket and tag loses a record (its walks compare keys and
    /// would have passed them). A freed slot is a slot any insert may take;
    /// an insert racing for this tag sees the slot change and looks again.
    pub fn retarget(&self, placed: &Placed<'_>, to: Address) -> bool {
        let new = if to.is_valid() { HashBucketEntry::new(to, placed.entry.tag(), false).raw() } else { 0 };
        placed.slot.compare_exchange(placed.entry.raw(), new, Ordering::AcqRel, Ordering::Relaxed).is_ok()
    }

    /// Frees the tables growths replaced and makes their overflow buckets
    /// free for reuse.
    ///
    /// # Safety
    ///
    /// No reference into a replaced table — a bucket or an
    /// [`EntrySlot`](super::EntrySlot) obtained before its growth published
    /// the new table — may be used after this call: call it after an epoch
    /// drain that followed the growth (every operation protected before it
    /// has finished).
    pub unsafe fn release_retired(&self) {
        let retired = std::mem::take(&mut *self.grow.retired.lock().unwrap_or_else(|p| p.into_inner()));
        if retired.is_empty() {
            return;
        }
        let mut overflow = self.overflow.lock().unwrap_or_else(|p| p.into_inner());
        for (table, buckets) in retired {
            drop(table);
            for i in buckets {
                let bucket = &overflow.owned[i];
                for slot in &bucket.entries {
                    slot.store(0, Ordering::Relaxed);
                }
                bucket.set_next(std::ptr::null());
                overflow.free.push(i);
            }
        }
    }
}

#[cfg(all(test, not(oxifaster_loom)))]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A model log: records by address (hash, previous), and each key's
    /// newest record.
    #[derive(Default)]
    struct Log {
        records: HashMap<u64, (u64, Address)>,
        newest: HashMap<u64, u64>,
        next: u64,
        /// Records below this are "on the device".
        head: u64,
    }

    impl Log {
        /// Appends a record of `hash` to its index chain.
        fn write(&mut self, index: &HashIndex, hash: u64) {
            self.next += 8;
            let address = Address::new(self.next).expect("address");
            let slot = index.find_or_create_entry(hash);
            self.records.insert(self.next, (hash, slot.entry.address()));
            let entry = HashBucketEntry::new(address, HashBucketEntry::tag_of(hash), false);
            slot.slot.store(entry.raw(), Ordering::Release);
            self.newest.insert(hash, self.next);
        }

        fn trace(&self, address: Address) -> Traced {
            match self.records.get(&address.raw()) {
                Some(&(hash, previous)) if address.raw() >= self.head => {
                    Traced::Memory { hash, previous }
                }
                _ => Traced::Elsewhere,
            }
        }

        /// Every key's walk from its entry meets its newest record first.
        fn check(&self, index: &HashIndex) {
            for (&hash, &newest) in &self.newest {
                let entry = index.find_entry(hash).expect("an entry");
                let mut at = entry.entry.address().raw();
                loop {
                    let &(h, previous) = self.records.get(&at).expect("a record");
                    if h == hash {
                        assert_eq!(at, newest, "hash {hash:#x}: an older record first");
                        break;
                    }
                    at = previous.raw();
                }
            }
        }
    }

    fn grow(index: &HashIndex, log: &Log) {
        let size = index.table_size();
        assert_eq!(index.start_grow().expect("grow"), Some(size * 2));
        assert_eq!(index.start_grow().expect("grow"), None, "one growth at a time");
        assert_eq!(index.grow_phase(), GrowPhase::Prepare);
        index.begin_split();
        assert_eq!(index.grow_phase(), GrowPhase::Split);
        assert!(index.split(&|a| log.trace(a), &|_| {}));
        assert_eq!(index.grow_phase(), GrowPhase::Rest);
        assert_eq!(index.table_size(), size * 2);
        // SAFETY: nothing holds a reference into the old table.
        unsafe { index.release_retired() };
    }

    #[test]
    fn splits_keep_every_key_reachable_in_memory_and_on_the_device() {
        let index = HashIndex::new(4).expect("index");
        let mut log = Log::default();
        let mut x = 0x1234_5678_9abc_def0u64;
        let mut hashes = Vec::new();
        for _ in 0..1000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            hashes.push(x);
        }
        for round in 0..4 {
            // New keys and new versions of old ones, some of them below
            // the "head".
            for (i, &hash) in hashes.iter().enumerate() {
                if i % 4 <= round {
                    log.write(&index, hash);
                }
            }
            log.head = log.next / 2;
            log.check(&index);
            grow(&index, &log);
            log.check(&index);
        }
        assert_eq!(index.table_size(), 64);
        assert_eq!(index.growths(), 4);
    }

    #[test]
    fn overflow_buckets_of_a_replaced_table_are_reused() {
        let index = HashIndex::new(1).expect("index");
        let mut log = Log::default();
        // 100 tags in one bucket: 14 overflow buckets.
        for tag in 1..=100u64 {
            log.write(&index, tag << 48);
        }
        let before = index.overflow_buckets();
        assert!(before >= 14);
        log.head = u64::MAX; // all "on the device": entries go to both halves
        grow(&index, &log);
        log.check(&index);
        let owned = index.overflow.lock().expect("lock").owned.len();
        // Both halves hold all 100 entries, in buckets taken first from the
        // new allocations, then (after the release) from the old ones.
        grow(&index, &log);
        log.check(&index);
        let overflow = index.overflow.lock().expect("lock");
        assert!(overflow.owned.len() < owned + 4 * before, "old overflow buckets reused");
        assert_eq!(overflow.in_use.len() + overflow.free.len(), overflow.owned.len());
    }

    #[test]
    fn a_growth_past_the_largest_table_is_refused() {
        assert_eq!(doubled(1 << 39).expect("fits"), 1 << 40);
        let err = doubled(1 << 40).expect_err("too large");
        assert!(matches!(err, crate::Error::InvalidConfig { what: "table_size", .. }), "{err}");
    }
}
