//! The read cache: an in-memory ring of records copied in when they were
//! read from the device (FASTER's read cache), so that a hot key whose
//! record was evicted from the log is read from memory again.
//!
//! The store links the records (`Session::cache_read`), reads them
//! (`Session::locate_read`), writes over them (`Session::log_start`), splits
//! them with the index (`store::grow`) and leaves them out of index
//! checkpoints; the tests below check the ring itself against a model
//! index, `tests/read_cache.rs` the store with it.
//!
//! ## Protocol
//!
//! - **Addresses.** A cache record's address is its offset in the cache's
//!   own logical space with [`READ_CACHE_BIT`] set (bit 47 of the index
//!   entry's address, which the log never reaches: its addresses stay
//!   below 2^47).
//! - **Records** have the log's layout ([`RecordShape`]): a header whose
//!   `previous` is the log address the key's index entry held when the
//!   record was linked, then key and value.
//! - **Insert** (one at a time, under `state`): room at the tail, the
//!   record's bytes, then `link(address)`, which swings the key's index
//!   entry from that log address to the cache address by a CAS. An entry
//!   therefore points at no more than one cache record, whose `previous`
//!   is a log address: an insert links only over an entry that points into
//!   the log. A record whose link failed is marked invalid.
//! - **Eviction.** The ring has `frames` pages. Turning onto a frame whose
//!   page is still live first unlinks each valid record of that page
//!   (`unlink(address, previous, key)`, which swings the entry back from
//!   the cache address to `previous` if it still points there), then moves
//!   `head` past the page, then bumps the epoch with an action that frees
//!   the frame for the new page. Until that action has run, inserts are
//!   refused: the cache is best effort, a read it cannot keep is answered
//!   anyway.
//!
//! **Invariant**: no index entry points at a record of a frame that is
//! being rewritten. Entries are unlinked before `head` moves; a reader that
//! loaded an entry before its unlink is epoch-protected, so the frame is
//! not written before it has left (the bump's action runs after it).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::address::Address;
use crate::epoch::Epoch;
use crate::mem::LargeBuffer;
use crate::store::record::RecordShape;
use crate::{Error, Result};

pub use crate::index::READ_CACHE_BIT;

/// The header bit that marks a record invalid (the log's record format).
const INVALID_BIT: u64 = 1 << 61;

/// Whether `address` is a read-cache address.
#[inline(always)]
pub fn is_cached(address: Address) -> bool {
    address.raw() & READ_CACHE_BIT != 0
}

/// The read cache (see the module's protocol).
pub struct ReadCache {
    frames: LargeBuffer,
    frame_count: u64,
    page_bits: u32,
    shape: RecordShape,
    /// The lowest logical offset whose records may be linked.
    head: AtomicU64,
    /// The highest page whose frame may be written (set by the epoch
    /// action that frees a frame).
    writable_through: Arc<AtomicU64>,
    state: Mutex<State>,
}

/// What inserts change, under the lock.
struct State {
    /// The next free logical offset.
    tail: u64,
    /// Where each frame's records end (a logical offset).
    ends: Vec<u64>,
    /// Pages below this one were unlinked (their frames reused or
    /// waiting for a drain).
    evicted_through: u64,
    /// Records linked, and records copied in but not linked or not
    /// copied (for `stats`).
    inserted: u64,
    skipped: u64,
}

/// What an insert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// Linked at this address.
    Linked(Address),
    /// Written, but `link` found the entry changed: the record is invalid.
    NotLinked,
    /// No room: the frame to write next still waits for an epoch drain, or
    /// the record is larger than a page.
    NoRoom,
}

impl std::fmt::Debug for ReadCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadCache")
            .field("bytes", &(self.frame_count << self.page_bits))
            .field("page_bits", &self.page_bits)
            .finish()
    }
}

impl ReadCache {
    /// A cache of `bytes` (a whole number of pages of `2^page_bits` bytes,
    /// at least two) for records of `shape`.
    pub fn new(bytes: u64, page_bits: u32, shape: RecordShape) -> Result<Self> {
        let page = 1u64 << page_bits;
        let frame_count = bytes / page;
        if !bytes.is_multiple_of(page) || frame_count < 2 {
            return Err(Error::InvalidConfig {
                what: "read_cache_bytes",
                why: format!("{bytes} is not a whole number of at least two {page}-byte pages"),
            });
        }
        let size = usize::try_from(bytes).map_err(|_| Error::OutOfMemory { bytes: usize::MAX })?;
        Ok(Self {
            frames: LargeBuffer::zeroed(size, 64)?,
            frame_count,
            page_bits,
            shape,
            head: AtomicU64::new(0),
            writable_through: Arc::new(AtomicU64::new(frame_count - 1)),
            state: Mutex::new(State {
                tail: 0,
                ends: vec![0; frame_count as usize],
                evicted_through: 0,
                inserted: 0,
                skipped: 0,
            }),
        })
    }

    /// The lowest logical offset whose records may still be linked.
    #[cfg(test)]
    pub fn head(&self) -> u64 {
        self.head.load(Ordering::Acquire)
    }

    /// Its size, records linked, records skipped and pages evicted.
    pub fn stats(&self) -> crate::stats::ReadCacheStats {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        crate::stats::ReadCacheStats {
            bytes: self.frame_count << self.page_bits,
            inserted: state.inserted,
            skipped: state.skipped,
            evicted_pages: state.evicted_through,
        }
    }

    /// A pointer to the record at cache address `address`.
    ///
    /// # Safety
    ///
    /// The caller is protected in the store's epoch and loaded `address`
    /// from an index entry after it protected itself (see the module's
    /// invariant), or holds the insert lock.
    #[inline(always)]
    pub unsafe fn record_ptr(&self, address: Address) -> *const u8 {
        let logical = address.raw() & !READ_CACHE_BIT;
        let page = logical >> self.page_bits;
        // The logical page's frame: a mask when the frame count is a power
        // of two (the usual case), else the remainder — never a mask of a
        // count that is not one, which would put two pages in one frame.
        let frame = if self.frame_count.is_power_of_two() {
            page & (self.frame_count - 1)
        } else {
            page % self.frame_count
        };
        let offset = (frame << self.page_bits) | (logical & ((1 << self.page_bits) - 1));
        // SAFETY: `frame < frame_count` and the offset within the page is
        // below the page size, so `offset` is inside the frames.
        unsafe { self.frames.as_ptr().add(offset as usize) }
    }

    /// Copies in the record `bytes` (a whole record in the log's layout,
    /// its header's `previous` already the log address the entry holds)
    /// and links it with `link`; `unlink` is called for the records of a
    /// page this insert evicts. `epoch` frees evicted frames.
    pub fn insert(
        &self,
        bytes: &[u8],
        epoch: &Epoch,
        link: impl FnOnce(Address) -> bool,
        mut unlink: impl FnMut(Address, Address, &[u8]),
    ) -> Inserted {
        let page = 1u64 << self.page_bits;
        let size = bytes.len() as u64;
        if size > page || size < self.shape.header_size as u64 || !size.is_multiple_of(8) {
            return Inserted::NoRoom;
        }
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut at = state.tail;
        if (at & (page - 1)) + size > page {
            // The rest of this page is left empty (its end says so).
            at = ((at >> self.page_bits) + 1) << self.page_bits;
            state.tail = at;
        }
        let this_page = at >> self.page_bits;
        let frame = (this_page % self.frame_count) as usize;
        if at & (page - 1) == 0
            && this_page >= self.frame_count
            && state.evicted_through <= this_page - self.frame_count
        {
            // The frame's old page goes: its records are unlinked, then the
            // head moves past it, then the frame waits for a drain.
            let victim = this_page - self.frame_count;
            self.evict(victim, &state, &mut unlink);
            state.evicted_through = victim + 1;
            state.ends[frame] = at;
            self.head.store((victim + 1) << self.page_bits, Ordering::Release);
            let writable = self.writable_through.clone();
            epoch.bump_with_action(move || {
                writable.fetch_max(this_page, Ordering::AcqRel);
            });
        }
        if self.writable_through.load(Ordering::Acquire) < this_page {
            state.skipped += 1;
            return Inserted::NoRoom;
        }
        // SAFETY: `at` is this cache's tail, inside a frame no index entry
        // points into (its old page was unlinked and the epoch drained since,
        // checked just above), and the lock excludes other writers.
        let ptr =
            unsafe { self.record_ptr(Address::new(at).unwrap_or(Address::INVALID)) }.cast_mut();
        // SAFETY: `size` bytes from `at` stay inside its page (checked), so
        // inside the frames; `bytes` is a distinct buffer.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), ptr, bytes.len()) };
        state.tail = at + size;
        state.ends[frame] = state.tail;
        let address = Address::new(at | READ_CACHE_BIT).unwrap_or(Address::INVALID);
        if link(address) {
            state.inserted += 1;
            Inserted::Linked(address)
        } else {
            state.skipped += 1;
            // SAFETY: the record's header is 8-aligned (records are 8-byte
            // multiples from a 64-aligned frame) and only this thread writes
            // it (the lock); readers never reach an unlinked record.
            let header = unsafe { &*ptr.cast::<AtomicU64>() };
            header.fetch_or(INVALID_BIT, Ordering::Release);
            Inserted::NotLinked
        }
    }

    /// Unlinks the valid records of logical page `victim`.
    fn evict(&self, victim: u64, state: &State, unlink: &mut impl FnMut(Address, Address, &[u8])) {
        let page = 1u64 << self.page_bits;
        let start = victim << self.page_bits;
        let end = state.ends[(victim % self.frame_count) as usize].min(start + page);
        let mut at = start;
        while at + self.shape.header_size as u64 <= end {
            // SAFETY: under the lock, inside the victim's frame, which no
            // insert writes until it is freed.
            let ptr = unsafe { self.record_ptr(Address::new(at).unwrap_or(Address::INVALID)) };
            // SAFETY: `header_size` bytes from `at` lie before `end`, inside
            // the frame.
            let header = unsafe { std::slice::from_raw_parts(ptr, self.shape.header_size) };
            let info = u64::from_le_bytes(header[..8].try_into().unwrap_or([0; 8]));
            let (key_len, value_len) = self.shape.lengths_in(header);
            let size = self.shape.record_size(key_len, value_len) as u64;
            if info == 0 || size == 0 || at + size > end {
                break;
            }
            if info & INVALID_BIT == 0 {
                let previous =
                    Address::new(info & ((1 << Address::BITS) - 1)).unwrap_or(Address::INVALID);
                // SAFETY: the key lies inside the record, inside `end`.
                let key =
                    unsafe { std::slice::from_raw_parts(ptr.add(self.shape.header_size), key_len) };
                unlink(
                    Address::new(at | READ_CACHE_BIT).unwrap_or(Address::INVALID),
                    previous,
                    key,
                );
            }
            at += size;
        }
    }
}

#[cfg(all(test, not(oxifaster_loom)))]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Fixed 8-byte keys and values.
    const SHAPE: RecordShape = RecordShape::new(Some(8), Some(8));

    fn record(key: u64, value: u64, previous: u64) -> Vec<u8> {
        let mut bytes = vec![0u8; SHAPE.record_size(8, 8)];
        // A version of 1 in bits 48.. keeps the header non-zero.
        bytes[..8].copy_from_slice(&(previous | 1 << 48).to_le_bytes());
        let h = SHAPE.header_size;
        bytes[h..h + 8].copy_from_slice(&key.to_le_bytes());
        bytes[h + 8..h + 16].copy_from_slice(&value.to_le_bytes());
        bytes
    }

    /// A model index: each key's entry.
    struct Index(HashMap<u64, u64>);

    impl Index {
        fn insert(&mut self, cache: &ReadCache, epoch: &Epoch, key: u64) -> Inserted {
            let previous = self.0[&key];
            let bytes = record(key, key * 10, previous);
            let mut links = None;
            let mut unlinks = Vec::new();
            let inserted = cache.insert(
                &bytes,
                epoch,
                |address| {
                    links = Some(address.raw());
                    true
                },
                |address, previous, key| {
                    unlinks.push((
                        address.raw(),
                        previous.raw(),
                        u64::from_le_bytes(key.try_into().expect("key")),
                    ))
                },
            );
            for (address, previous, key) in unlinks {
                if self.0[&key] == address {
                    self.0.insert(key, previous);
                }
            }
            if let Some(address) = links {
                self.0.insert(key, address);
            }
            inserted
        }
    }

    /// Records per 4 KiB page (24-byte records: 170, and 16 bytes left).
    fn per_page() -> u64 {
        4096 / SHAPE.record_size(8, 8) as u64
    }

    #[test]
    fn records_are_linked_evicted_with_their_page_and_read_back() {
        // Two, three and five 4 KiB frames: a frame count that is not a
        // power of two must still give each logical page its own frame.
        for frames in [2, 3, 5] {
            linked_records_read_back(frames);
        }
    }

    /// Links 1,000 keys through a cache of `frames` 4 KiB pages (several
    /// laps of the ring) and reads each cached one back.
    fn linked_records_read_back(frames: u64) {
        let epoch = Epoch::new(4);
        let cache = ReadCache::new(frames << 12, 12, SHAPE).expect("cache");
        let mut index = Index((0..1000u64).map(|k| (k, 8 * (k + 1))).collect());
        for key in 0..1000u64 {
            assert!(matches!(index.insert(&cache, &epoch, key), Inserted::Linked(_)), "key {key}");
        }
        // The newest keys are cached, the others back on their log address.
        let cached: Vec<u64> =
            (0..1000).filter(|k| is_cached(Address::new(index.0[k]).expect("a"))).collect();
        let n = per_page();
        let count = cached.len() as u64;
        assert!(count >= (frames - 1) * n && count <= frames * n, "{frames} frames: {count}");
        assert!(cached.iter().all(|&k| k >= 1000 - frames * n));
        let size = SHAPE.record_size(8, 8);
        let h = SHAPE.header_size;
        let word = |bytes: &[u8], at: usize| {
            u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
        };
        for key in 0..1000u64 {
            let entry = index.0[&key];
            if is_cached(Address::new(entry).expect("a")) {
                assert!(entry & !READ_CACHE_BIT >= cache.head());
                // SAFETY: no epoch participant runs; the record is linked.
                let ptr = unsafe { cache.record_ptr(Address::new(entry).expect("a")) };
                // SAFETY: a whole record.
                let bytes = unsafe { std::slice::from_raw_parts(ptr, size) };
                assert_eq!(word(bytes, h), key, "{frames} frames");
                assert_eq!(word(bytes, h + 8), key * 10);
                assert_eq!(word(bytes, 0) & 0xffff_ffff_ffff, 8 * (key + 1));
            } else {
                assert_eq!(entry, 8 * (key + 1), "key {key} back on its log record");
            }
        }
    }

    #[test]
    fn a_frame_is_not_rewritten_while_a_reader_may_hold_it() {
        let epoch = Epoch::new(4);
        let cache = ReadCache::new(8 << 10, 12, SHAPE).expect("cache");
        let mut index = Index((0..1000u64).map(|k| (k, 8 * (k + 1))).collect());
        let reader = epoch.register().expect("handle");
        reader.protect();
        // Two pages fill; the third needs the first frame, which waits for
        // the protected reader.
        let mut refused = 0;
        for key in 0..500u64 {
            if index.insert(&cache, &epoch, key) == Inserted::NoRoom {
                refused += 1;
            }
        }
        assert_eq!(refused, 500 - 2 * per_page(), "inserts refused while the frame drains");
        reader.unprotect();
        reader.refresh();
        reader.unprotect();
        assert!(matches!(index.insert(&cache, &epoch, 999), Inserted::Linked(_)));
    }

    #[test]
    fn a_failed_link_leaves_an_invalid_record_that_eviction_skips() {
        let epoch = Epoch::new(4);
        let cache = ReadCache::new(8 << 10, 12, SHAPE).expect("cache");
        let bytes = record(7, 70, 8);
        assert_eq!(cache.insert(&bytes, &epoch, |_| false, |_, _, _| {}), Inserted::NotLinked);
        let mut unlinked = 0;
        for key in 0..2 * per_page() + 10 {
            cache.insert(&record(key, 0, 8), &epoch, |_| true, |_, _, _| unlinked += 1);
        }
        // The first page held the invalid record and the first linked ones.
        assert_eq!(unlinked, per_page() - 1);
    }

    #[test]
    fn bad_sizes_are_named_errors() {
        assert!(matches!(
            ReadCache::new(4 << 10, 12, SHAPE),
            Err(Error::InvalidConfig { what: "read_cache_bytes", .. })
        ));
        assert!(matches!(
            ReadCache::new(10_000, 12, SHAPE),
            Err(Error::InvalidConfig { what: "read_cache_bytes", .. })
        ));
    }
}
