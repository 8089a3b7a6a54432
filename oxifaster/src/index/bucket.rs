//! Hash buckets and their entries.
#![cfg_attr(oxifaster_loom, allow(dead_code))]

use crate::sync::{AtomicU64, Ordering};

use crate::address::Address;

/// One 8-byte index entry: bits 0..48 address (bit 47 is reserved to flag a
/// read-cache address), bits 48..62 tag, bit 62 unused, bit 63 tentative.
/// The value 0 is an unused slot.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct HashBucketEntry(u64);

const ADDRESS_MASK: u64 = (1 << Address::BITS) - 1;
/// The address bit that makes an entry's address a read-cache address.
pub const READ_CACHE_BIT: u64 = 1 << 47;
const TAG_SHIFT: u32 = 48;
/// The number of tag bits.
pub const TAG_BITS: u32 = 14;
const TAG_MASK: u64 = (1 << TAG_BITS) - 1;
const TENTATIVE_BIT: u64 = 1 << 63;

const _: () = assert!(TAG_SHIFT + TAG_BITS <= 62);

impl std::fmt::Debug for HashBucketEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HashBucketEntry")
            .field("address", &self.address())
            .field("tag", &self.tag())
            .field("tentative", &self.is_tentative())
            .finish()
    }
}

impl HashBucketEntry {
    /// An entry.
    #[inline(always)]
    pub fn new(address: Address, tag: u16, tentative: bool) -> Self {
        debug_assert!(u64::from(tag) <= TAG_MASK);
        let tentative = if tentative { TENTATIVE_BIT } else { 0 };
        Self(address.raw() | ((u64::from(tag) & TAG_MASK) << TAG_SHIFT) | tentative)
    }

    /// The tag of a hash: bits 48..62, never 0, so that a created entry with
    /// an invalid address is never mistaken for an unused slot.
    #[inline(always)]
    pub fn tag_of(hash: u64) -> u16 {
        (((hash >> TAG_SHIFT) & TAG_MASK) as u16).max(1)
    }

    /// An entry from its raw bits.
    #[inline(always)]
    pub fn from_raw(raw: u64) -> Self {
        Self(raw)
    }

    /// The raw bits.
    #[inline(always)]
    pub fn raw(self) -> u64 {
        self.0
    }

    /// The address.
    #[inline(always)]
    pub fn address(self) -> Address {
        // Masked to 48 bits, so always a valid `Address`.
        Address::new(self.0 & ADDRESS_MASK).unwrap_or(Address::INVALID)
    }

    /// The tag.
    #[inline(always)]
    pub fn tag(self) -> u16 {
        ((self.0 >> TAG_SHIFT) & TAG_MASK) as u16
    }

    /// The bits above the address that a final (not tentative) entry with
    /// `tag` carries: an entry is that entry exactly when
    /// `raw & !ADDRESS_MASK == final_bits(tag)`, one compare per slot. (The
    /// tag is never 0, so an unused slot never matches.)
    #[inline(always)]
    pub fn final_bits(tag: u16) -> u64 {
        (u64::from(tag) & TAG_MASK) << TAG_SHIFT
    }

    /// Whether this is the final entry whose bits above the address are
    /// `final_bits` (from [`Self::final_bits`]).
    #[inline(always)]
    pub fn is_final_with(self, final_bits: u64) -> bool {
        self.0 & !ADDRESS_MASK == final_bits
    }

    /// Whether the entry is still being inserted.
    #[inline(always)]
    pub fn is_tentative(self) -> bool {
        self.0 & TENTATIVE_BIT != 0
    }

    /// Whether the slot is free.
    #[inline(always)]
    pub fn is_unused(self) -> bool {
        self.0 == 0
    }
}

/// Entries in one bucket.
pub const ENTRIES_PER_BUCKET: usize = 7;

/// A 64-byte bucket: 7 entries and a pointer to an overflow bucket.
#[repr(C, align(64))]
#[derive(Debug, Default)]
pub struct HashBucket {
    /// The entries.
    pub entries: [AtomicU64; ENTRIES_PER_BUCKET],
    /// The address of the next bucket of the chain, or 0.
    overflow: AtomicU64,
}

// (Loom's atomics are larger: under loom a bucket is only a model.)
#[cfg(not(oxifaster_loom))]
const _: () = assert!(size_of::<HashBucket>() == 64);
const _: () = assert!(align_of::<HashBucket>() == 64);

impl HashBucket {
    /// The next bucket of the chain.
    #[inline(always)]
    pub(super) fn next(&self) -> Option<&HashBucket> {
        let ptr = self.overflow.load(Ordering::Acquire) as usize as *const HashBucket;
        // SAFETY: a non-null overflow pointer was set by `set_next` to a
        // bucket owned by the index, which outlives `self` (the index owns
        // both); it was published with Release and read with Acquire.
        unsafe { ptr.as_ref() }
    }

    /// The raw overflow word (in a bucket just read from an index
    /// checkpoint: the overflow bucket's number + 1).
    pub(super) fn raw_next(&self) -> u64 {
        self.overflow.load(Ordering::Relaxed)
    }

    /// Links `next` after this bucket; the caller holds the index's
    /// allocation lock and checked that no bucket is linked.
    pub(super) fn set_next(&self, next: *const HashBucket) {
        self.overflow.store(next as usize as u64, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_packs_address_tag_and_tentative_bit() {
        let a = Address::new(0x0000_7fff_ffff_fff8).expect("fits");
        let e = HashBucketEntry::new(a, 0x3fff, true);
        assert_eq!((e.address(), e.tag(), e.is_tentative()), (a, 0x3fff, true));
        let e = HashBucketEntry::new(Address::INVALID, 1, false);
        assert!(!e.is_unused());
        assert_eq!(HashBucketEntry::tag_of(0), 1);
        assert_eq!(HashBucketEntry::tag_of(0x3fff << 48), 0x3fff);
        assert_eq!(HashBucketEntry::tag_of(u64::MAX), 0x3fff);
    }
}
