//! The hash index: a power-of-two table of 64-byte buckets that maps a key's
//! hash to the address of the newest record of its chain.
//!
//! A bucket holds 7 entries and an overflow pointer to a chained bucket. An
//! entry packs a 48-bit address, a 14-bit tag (hash bits 48..62) and a
//! tentative bit. Keys whose hashes share bucket and tag share an entry; the
//! record chain behind it tells them apart.
//!
//! ## Insert invariant: a tag never gets two entries in one bucket chain
//!
//! `find_or_create_entry` inserts latch-free with the tentative-bit protocol:
//! claim a free slot by CAS with the tentative bit set (readers ignore
//! tentative entries), scan the chain again for any other entry with the same
//! tag (tentative or not); if there is one, back out (clear the slot) and
//! retry; otherwise clear the tentative bit. Of two racing inserts of one
//! tag, at least one sees the other and backs out, so at most one entry with
//! the tag ever becomes final. `tests/index_stress.rs` checks this.
//!
//! Overflow buckets are allocated on demand, linked by CAS on the overflow
//! pointer, and live until the index is dropped, so a reader may follow an
//! overflow pointer without protection.

mod bucket;
mod checkpoint;
pub mod grow;

pub use bucket::{HashBucket, HashBucketEntry, READ_CACHE_BIT};
#[doc(hidden)]
#[cfg(feature = "testing")]
pub use checkpoint::fix_checkpoint_trailer;
#[cfg(feature = "testing")]
pub use checkpoint::{HEADER_SIZE as INDEX_HEADER_SIZE, INDEX_FORMAT_VERSION};
pub use checkpoint::IndexFileHeader;

use std::sync::Mutex;

use crate::address::Address;
#[cfg(not(oxifaster_loom))]
use crate::mem::LargeBuffer;
use crate::sync::{AtomicPtr, AtomicU64, Ordering};

/// The hash index.
pub struct HashIndex {
    /// The table operations use: replaced only by growth, while no
    /// operation uses the index (see [`grow`]), and freed only when the
    /// index is dropped or after it was retired
    /// ([`HashIndex::retire_table`]).
    table: AtomicPtr<Table>,
    /// Owns every overflow bucket; only allocation takes the lock. Boxed so
    /// that a bucket's address never changes when the vector grows. A
    /// retired table's overflow buckets are zeroed and listed in `free`
    /// for the next allocations.
    #[allow(clippy::vec_box)]
    overflow: Mutex<Overflow>,
    /// A growth's state.
    grow: grow::Growth,
}

/// The overflow buckets: every one allocated, and those free for reuse.
#[derive(Default)]
struct Overflow {
    #[allow(clippy::vec_box)]
    owned: Vec<Box<HashBucket>>,
    /// Indexes into `owned` of zeroed buckets no chain links.
    free: Vec<usize>,
    /// Indexes into `owned` of the buckets the current table's chains use.
    in_use: Vec<usize>,
}

/// A table of main buckets.
pub(crate) struct Table {
    /// `mask + 1` zero-initialised buckets (all-zero is a valid, empty
    /// bucket).
    #[cfg(not(oxifaster_loom))]
    buf: LargeBuffer,
    /// Under loom, whose atomics cannot be zero-initialised: built ones.
    #[cfg(oxifaster_loom)]
    buf: Box<[HashBucket]>,
    mask: u64,
}

impl Table {
    fn new(table_size: u64) -> crate::Result<Self> {
        if !table_size.is_power_of_two() || table_size > MAX_TABLE_SIZE {
            return Err(crate::Error::InvalidConfig {
                what: "table_size",
                why: format!("{table_size} is not a power of two between 1 and 2^40"),
            });
        }
        let bytes = usize::try_from(table_size)
            .ok()
            .and_then(|n| n.checked_mul(size_of::<HashBucket>()))
            .ok_or(crate::Error::OutOfMemory { bytes: usize::MAX })?;
        #[cfg(not(oxifaster_loom))]
        let buf = LargeBuffer::zeroed(bytes, align_of::<HashBucket>())?;
        #[cfg(oxifaster_loom)]
        let buf = {
            let _ = bytes;
            (0..table_size).map(|_| HashBucket::default()).collect()
        };
        Ok(Self { buf, mask: table_size - 1 })
    }

    #[inline(always)]
    fn size(&self) -> u64 {
        self.mask + 1
    }

    #[cfg(oxifaster_loom)]
    fn bucket_at(&self, index: u64) -> &HashBucket {
        &self.buf[(index & self.mask) as usize]
    }

    #[cfg(not(oxifaster_loom))]
    #[inline(always)]
    fn bucket_at(&self, index: u64) -> &HashBucket {
        let index = (index & self.mask) as usize;
        // SAFETY: `index <= mask`, and the table holds `mask + 1` buckets,
        // 64-byte aligned, zero-initialised (a valid empty bucket: atomics
        // only), living as long as `self`.
        unsafe { &*self.buf.as_ptr().cast::<HashBucket>().add(index) }
    }
}

impl Overflow {
    /// A zeroed bucket for a chain of the current table (a free one, or a
    /// new one), as a pointer that lives as long as the index.
    fn take(&mut self) -> *const HashBucket {
        let index = match self.free.pop() {
            Some(index) => index,
            None => {
                self.owned.push(Box::new(HashBucket::default()));
                self.owned.len() - 1
            }
        };
        self.in_use.push(index);
        &*self.owned[index]
    }
}

impl std::fmt::Debug for HashIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HashIndex")
            .field("buckets", &self.table_size())
            .field("overflow_buckets", &self.overflow_buckets())
            .finish()
    }
}

/// The largest table: 2^40 buckets (64 TiB of index).
pub const MAX_TABLE_SIZE: u64 = 1 << 40;

impl Drop for HashIndex {
    fn drop(&mut self) {
        let table = self.table.load(Ordering::Acquire);
        // SAFETY: the current table was made by `Box::into_raw` (in `new`
        // or by a growth) and is freed only here; nothing else can use the
        // index while it is dropped.
        drop(unsafe { Box::from_raw(table) });
        self.grow.drop_pending();
    }
}

/// The hash index's size and fill at one moment
/// ([`Store::index_stats`](crate::Store::index_stats)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct IndexStats {
    /// Main buckets (the configured table size).
    pub buckets: u64,
    /// Overflow buckets allocated by chains that outgrew their bucket.
    pub overflow_buckets: u64,
    /// Entries in use (one per distinct (bucket, tag) of the keys).
    pub entries: u64,
    /// Entry slots in all buckets.
    pub slots: u64,
    /// Memory of the buckets, in bytes.
    pub bytes: u64,
}

/// The result of a lookup: the slot that holds the entry, and the entry.
#[derive(Debug, Clone, Copy)]
pub struct EntrySlot<'a> {
    /// The slot, for a later CAS of the address.
    pub slot: &'a AtomicU64,
    /// The entry read from it.
    pub entry: HashBucketEntry,
}

impl HashIndex {
    /// An index of `table_size` buckets; `table_size` must be a power of two.
    pub fn new(table_size: u64) -> crate::Result<Self> {
        let table = Box::into_raw(Box::new(Table::new(table_size)?));
        Ok(Self {
            table: AtomicPtr::new(table),
            overflow: Mutex::new(Overflow::default()),
            grow: grow::Growth::default(),
        })
    }

    /// The current table.
    #[inline(always)]
    fn table(&self) -> &Table {
        // SAFETY: the pointer is always a live table: set from
        // `Box::into_raw` in `new` or when a growth publishes its new table
        // (Release, read with Acquire here); a table a growth replaced is
        // freed only by `retire_table`, whose contract is that no thread
        // still uses a reference obtained before the replacement.
        unsafe { &*self.table.load(Ordering::Acquire) }
    }

    /// The number of main buckets.
    pub fn table_size(&self) -> u64 {
        self.table().size()
    }

    /// The table's size and fill, counted now (walks every bucket).
    pub fn stats(&self) -> IndexStats {
        let _held = self.hold_table();
        let mut entries = 0u64;
        self.for_each_entry(|_| entries += 1);
        let overflow_buckets = self.overflow_buckets() as u64;
        let bucket_bytes = size_of::<HashBucket>() as u64;
        IndexStats {
            buckets: self.table_size(),
            overflow_buckets,
            entries,
            slots: (self.table_size() + overflow_buckets) * bucket::ENTRIES_PER_BUCKET as u64,
            bytes: (self.table_size() + overflow_buckets) * bucket_bytes,
        }
    }

    /// The number of overflow buckets the current table's chains use.
    pub fn overflow_buckets(&self) -> usize {
        self.overflow.lock().map(|o| o.in_use.len()).unwrap_or(0)
    }

    #[inline(always)]
    fn bucket(&self, hash: u64) -> &HashBucket {
        let table = self.table();
        table.bucket_at(hash & table.mask)
    }

    #[inline(always)]
    #[cfg_attr(oxifaster_loom, allow(dead_code))]
    fn bucket_at(&self, index: u64) -> &HashBucket {
        self.table().bucket_at(index)
    }

    /// Asks the CPU to start loading `hash`'s bucket (for loops that look
    /// up many hashes, such as recovery's replay).
    #[inline(always)]
    pub fn prefetch(&self, hash: u64) {
        crate::mem::prefetch(self.bucket(hash));
    }

    /// The final (non-tentative) entry for `hash`'s bucket and tag, if any.
    #[inline]
    pub fn find_entry(&self, hash: u64) -> Option<EntrySlot<'_>> {
        let wanted = HashBucketEntry::final_bits(HashBucketEntry::tag_of(hash));
        let mut bucket = self.bucket(hash);
        loop {
            for slot in &bucket.entries {
                let entry = HashBucketEntry::from_raw(slot.load(Ordering::Acquire));
                if entry.is_final_with(wanted) {
                    return Some(EntrySlot { slot, entry });
                }
            }
            bucket = bucket.next()?;
        }
    }

    /// The entry for `hash`'s bucket and tag, created (with an invalid
    /// address) if there is none. Latch-free; see the module invariant.
    #[inline]
    pub fn find_or_create_entry(&self, hash: u64) -> EntrySlot<'_> {
        match self.find_entry(hash) {
            Some(found) => found,
            None => self.create_entry(hash),
        }
    }

    /// [`Self::find_or_create_entry`] for a caller whose own
    /// [`Self::find_entry`] of `hash` just found nothing: it goes straight
    /// to claiming a slot. (Skipping the lookup is safe because the claim's
    /// rescan, not the lookup, is what keeps a tag from getting two
    /// entries: an entry created since the caller looked is seen there.)
    #[inline(never)]
    pub fn create_entry(&self, hash: u64) -> EntrySlot<'_> {
        let tag = HashBucketEntry::tag_of(hash);
        loop {
            if let Some(created) = self.try_claim(hash, tag) {
                return created;
            }
            if let Some(found) = self.find_entry(hash) {
                return found;
            }
        }
    }

    /// One attempt to claim a free slot of `hash`'s chain for `tag`: a
    /// tentative CAS, then the rescan. `None` if the CAS lost or another
    /// insert of the tag raced us (the caller looks the tag up again).
    fn try_claim(&self, hash: u64, tag: u16) -> Option<EntrySlot<'_>> {
        let slot = self.free_slot(hash);
        let tentative = HashBucketEntry::new(Address::INVALID, tag, true);
        // SeqCst with the SeqCst loads of `has_other_entry`: of two racing
        // inserts, at least one sees the other's slot (Dekker).
        slot.compare_exchange(0, tentative.raw(), Ordering::SeqCst, Ordering::Relaxed).ok()?;
        // Loom models SeqCst accesses as AcqRel (too weak for Dekker); its
        // SeqCst fences are exact. On hardware the SeqCst CAS is a full
        // barrier already.
        #[cfg(oxifaster_loom)]
        crate::sync::fence(Ordering::SeqCst);
        if !Self::skip_rescan() && self.has_other_entry(hash, tag, slot) {
            // Another insert of this tag raced us: back out and retry.
            slot.store(0, Ordering::Release);
            #[cfg(oxifaster_loom)]
            crate::sync::yield_now();
            std::hint::spin_loop();
            return None;
        }
        let entry = HashBucketEntry::new(Address::INVALID, tag, false);
        slot.store(entry.raw(), Ordering::Release);
        self.entry_created(slot);
        Some(EntrySlot { slot, entry })
    }

    /// Whether inserts skip the rescan (only under loom, as the broken
    /// variant its model must catch: a claim that is final at once).
    #[inline(always)]
    fn skip_rescan() -> bool {
        #[cfg(oxifaster_loom)]
        return crate::sync::broken::no_rescan();
        #[cfg(not(oxifaster_loom))]
        false
    }

    /// Frees every entry whose newest record is below `below` (the log's
    /// begin address: no record of its bucket and tag is left), by a CAS
    /// from the entry as read, so an insert that got there first wins.
    /// Returns the entries freed. Holds the table in place (no growth
    /// meanwhile).
    ///
    /// A caller that relies on an absent key's entry never going back to a
    /// value it held (a conditional insert's CAS from an empty entry)
    /// calls this only after an epoch drain that followed whatever made
    /// the key's newest record unreachable: then every operation that
    /// looked at the entry before has finished (see `f2`).
    pub(crate) fn clear_below(&self, below: Address) -> u64 {
        const BUCKETS: u64 = 4096;
        let _held = self.hold_table();
        let mut freed = 0;
        let mut first = 0;
        while first < self.table_size() {
            for placed in self.entries_below(first, BUCKETS, below) {
                if self.retarget(&placed, Address::INVALID) {
                    self.entry_freed(placed.slot);
                    freed += 1;
                }
            }
            first += BUCKETS;
        }
        freed
    }

    /// Swings an entry that points at a read-cache record (`found`, as
    /// read) back to the record's `previous`, by a CAS so that a write that
    /// replaced the entry meanwhile wins; with no `previous` (the cache
    /// record was its tag's only record: an F2 cold read's) the slot is
    /// freed instead, as [`Self::clear_below`] frees one.
    pub(crate) fn unlink_cached(&self, found: &EntrySlot<'_>, previous: Address) {
        let back = if previous.is_valid() {
            HashBucketEntry::new(previous, found.entry.tag(), false).raw()
        } else {
            0
        };
        let swung = found
            .slot
            .compare_exchange(found.entry.raw(), back, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok();
        if swung && back == 0 {
            self.entry_freed(found.slot);
        }
    }

    /// Points the entry of `hash`'s (bucket, tag) at `address`, creating
    /// it if needed, in one pass over the chain and without the
    /// tentative-bit protocol. For recovery's replay, where each bucket
    /// chain is written by one thread only (threads split the buckets) and
    /// nobody reads concurrently.
    pub(crate) fn set_entry_exclusive(&self, hash: u64, address: Address) {
        let tag = HashBucketEntry::tag_of(hash);
        let entry = HashBucketEntry::new(address, tag, false).raw();
        let mut bucket = self.bucket(hash);
        let mut free: Option<&AtomicU64> = None;
        loop {
            for slot in &bucket.entries {
                let current = HashBucketEntry::from_raw(slot.load(Ordering::Relaxed));
                if current.is_unused() {
                    free = free.or(Some(slot));
                } else if current.tag() == tag {
                    slot.store(entry, Ordering::Relaxed);
                    return;
                }
            }
            match bucket.next() {
                Some(next) => bucket = next,
                None => break,
            }
        }
        let slot = match free {
            Some(slot) => slot,
            None => &self.append_overflow(bucket).entries[0],
        };
        slot.store(entry, Ordering::Relaxed);
    }

    /// Whether any slot other than `mine` holds an entry (tentative or not)
    /// with `tag` in `hash`'s chain.
    fn has_other_entry(&self, hash: u64, tag: u16, mine: &AtomicU64) -> bool {
        let mut bucket = Some(self.bucket(hash));
        while let Some(b) = bucket {
            for slot in &b.entries {
                if std::ptr::eq(slot, mine) {
                    continue;
                }
                let entry = HashBucketEntry::from_raw(slot.load(Ordering::SeqCst));
                if !entry.is_unused() && entry.tag() == tag {
                    return true;
                }
            }
            bucket = b.next();
        }
        false
    }

    /// A slot that was free when looked at, appending an overflow bucket to
    /// the chain if every slot is taken.
    fn free_slot(&self, hash: u64) -> &AtomicU64 {
        let mut bucket = self.bucket(hash);
        loop {
            for slot in &bucket.entries {
                if slot.load(Ordering::Acquire) == 0 {
                    return slot;
                }
            }
            bucket = match bucket.next() {
                Some(next) => next,
                None => self.append_overflow(bucket),
            };
        }
    }

    /// Links a new overflow bucket after `tail` (or returns the one another
    /// thread linked first).
    fn append_overflow<'a>(&'a self, tail: &'a HashBucket) -> &'a HashBucket {
        let mut overflow = self.overflow.lock().unwrap_or_else(|poison| poison.into_inner());
        // Under the allocation lock, a racing allocator may have linked one.
        if let Some(next) = tail.next() {
            return next;
        }
        let ptr = overflow.take();
        tail.set_next(ptr);
        // SAFETY: the bucket is owned by `self.overflow`, which never drops
        // or moves a boxed bucket before `self` is dropped.
        unsafe { &*ptr }
    }
}
