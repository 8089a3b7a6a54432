//! Logical addresses into the hybrid log.
//!
//! An [`Address`] is a 48-bit byte position in the log: `page : offset`,
//! where the split depends on the configured page size (`page_size_bits`),
//! so that addresses — and the log's files — stay dense, with no gaps
//! between pages. Address 0 is never a record: the first page starts with a
//! reserved header, so "no previous record" is unambiguous.
//!
//! Invariant: every `Address` holds a value below 2^48 (checked on
//! construction), so it fits the 48-bit fields of hash-bucket entries and
//! record headers.

use std::sync::atomic::{AtomicU64, Ordering};

/// A 48-bit logical address in the hybrid log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct Address(u64);

const _: () = assert!(size_of::<Address>() == 8);
const _: () = assert!(size_of::<AtomicAddress>() == 8);

impl Address {
    /// The number of bits an address uses.
    pub const BITS: u32 = 48;
    /// The invalid address: "no record".
    pub const INVALID: Address = Address(0);
    /// The largest address.
    pub const MAX: Address = Address((1 << Self::BITS) - 1);

    /// The address `raw`, or `None` if it does not fit in 48 bits.
    #[inline]
    pub const fn new(raw: u64) -> Option<Address> {
        if raw >> Self::BITS == 0 { Some(Address(raw)) } else { None }
    }

    /// The address of `offset` in `page`, for pages of `1 << page_bits`
    /// bytes; `None` if the offset is outside the page or the address does
    /// not fit in 48 bits.
    #[inline]
    pub const fn from_page(page: u64, offset: u64, page_bits: u32) -> Option<Address> {
        if page_bits >= Self::BITS
            || offset >> page_bits != 0
            || page >> (Self::BITS - page_bits) != 0
        {
            return None;
        }
        Some(Address((page << page_bits) | offset))
    }

    /// The raw 48-bit value.
    #[inline(always)]
    pub const fn raw(self) -> u64 {
        self.0
    }

    /// The page this address is in.
    #[inline(always)]
    pub const fn page(self, page_bits: u32) -> u64 {
        self.0 >> page_bits
    }

    /// The offset of this address inside its page.
    #[inline(always)]
    pub const fn offset(self, page_bits: u32) -> u64 {
        self.0 & ((1 << page_bits) - 1)
    }

    /// Whether this is a real address (not [`Address::INVALID`]).
    #[inline(always)]
    pub const fn is_valid(self) -> bool {
        self.0 != 0
    }

    /// `self + bytes`, or `None` past [`Address::MAX`].
    #[inline]
    pub const fn checked_add(self, bytes: u64) -> Option<Address> {
        match self.0.checked_add(bytes) {
            Some(raw) => Address::new(raw),
            None => None,
        }
    }

    /// The start of the page after this address's page.
    #[inline]
    pub const fn next_page_start(self, page_bits: u32) -> Option<Address> {
        Address::from_page(self.page(page_bits) + 1, 0, page_bits)
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// An [`Address`] that threads share.
#[derive(Debug, Default)]
#[repr(transparent)]
pub struct AtomicAddress(AtomicU64);

impl AtomicAddress {
    /// A new atomic address.
    pub const fn new(address: Address) -> Self {
        Self(AtomicU64::new(address.0))
    }

    /// Loads the address.
    #[inline(always)]
    pub fn load(&self, order: Ordering) -> Address {
        Address(self.0.load(order))
    }

    /// Stores an address.
    #[inline(always)]
    pub fn store(&self, address: Address, order: Ordering) {
        self.0.store(address.0, order)
    }

    /// Compare-and-swap; on failure returns the current address.
    #[inline(always)]
    pub fn compare_exchange(
        &self,
        current: Address,
        new: Address,
        success: Ordering,
        failure: Ordering,
    ) -> Result<Address, Address> {
        self.0.compare_exchange(current.0, new.0, success, failure).map(Address).map_err(Address)
    }

    /// Raises the address to at least `address`; returns the previous value.
    /// Region boundaries only move forward: this is how they move.
    #[inline(always)]
    pub fn fetch_max(&self, address: Address, order: Ordering) -> Address {
        Address(self.0.fetch_max(address.0, order))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_and_offset_split_densely() {
        for page_bits in [9u32, 12, 22, 25] {
            let a = Address::from_page(5, 17, page_bits).expect("fits");
            assert_eq!((a.page(page_bits), a.offset(page_bits)), (5, 17));
            assert_eq!(a.raw(), 5 * (1 << page_bits) + 17);
            let next = a.next_page_start(page_bits).expect("fits");
            assert_eq!((next.page(page_bits), next.offset(page_bits)), (6, 0));
        }
    }

    #[test]
    fn out_of_range_addresses_are_refused() {
        assert_eq!(Address::new(1 << 48), None);
        assert_eq!(Address::new((1 << 48) - 1), Some(Address::MAX));
        assert_eq!(Address::from_page(0, 1 << 12, 12), None);
        assert_eq!(Address::from_page(1 << 36, 0, 12), None);
        assert_eq!(Address::from_page(0, 0, 48), None);
        assert_eq!(Address::MAX.checked_add(1), None);
        assert_eq!(Address::MAX.next_page_start(12), None);
        assert!(!Address::INVALID.is_valid());
    }

    #[test]
    fn atomic_address_moves_forward_only_with_fetch_max() {
        let a = AtomicAddress::new(Address::new(100).expect("fits"));
        a.fetch_max(Address::new(50).expect("fits"), Ordering::SeqCst);
        assert_eq!(a.load(Ordering::SeqCst).raw(), 100);
        a.fetch_max(Address::new(150).expect("fits"), Ordering::SeqCst);
        assert_eq!(a.load(Ordering::SeqCst).raw(), 150);
    }
}
