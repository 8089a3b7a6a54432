//! Reading entries back: in memory or from the device, checked against
//! their checksums, only at entry boundaries below the commit point.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::entry::{HEADER, Header, decode_header, entry_size};
use super::{Inner, LogIter, entry, page_end};
use crate::address::Address;
use crate::device::Device;
use crate::hlog::FIRST_ADDRESS;
use crate::{Error, Result};

impl<D: Device> Inner<D> {
    /// Checks that `address` names a committed, live entry position.
    pub(super) fn check_readable(&self, address: u64) -> Result<()> {
        let why = if !address.is_multiple_of(8) || address < FIRST_ADDRESS {
            "not an entry address"
        } else if address < self.begin.load(Ordering::Acquire) {
            "released by truncate_until"
        } else if address >= self.committed.load(Ordering::Acquire) {
            "not committed"
        } else if dropped_range(&self.dropped_ranges(), address).is_some() {
            "dropped by truncate_after"
        } else {
            return Ok(());
        };
        Err(Error::InvalidAddress { address, why })
    }

    /// The ranges dropped by `truncate_after`, in order and disjoint.
    pub(super) fn dropped_ranges(&self) -> Arc<[(u64, u64)]> {
        self.dropped.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(super) fn read(&self, address: u64) -> Result<Vec<u8>> {
        self.check_readable(address)?;
        let bits = self.hlog.geometry().page_bits;
        let page_end = page_end(address, bits);
        let room = page_end - address;
        // Never copy bytes at or past the commit point: other threads may be
        // writing them. One read usually holds the whole entry.
        let readable = self.committed.load(Ordering::Acquire).min(page_end) - address;
        let mut buf = vec![0u8; readable.min(4096) as usize];
        if buf.len() < HEADER as usize {
            return Err(Error::Corruption {
                address,
                what: "the commit point falls inside an entry header".into(),
            });
        }
        self.read_bytes(address, &mut buf)?;
        let mut header = [0u8; 8];
        header.copy_from_slice(&buf[..8]);
        let corrupt = |what: &str| Error::Corruption { address, what: what.into() };
        let len = match decode_header(header, room) {
            Ok(Header::Entry { len, .. }) => len as usize,
            Ok(Header::Empty) => {
                return Err(Error::InvalidAddress {
                    address,
                    why: "no entry starts here (page padding)",
                });
            }
            Err(invalid) => return Err(corrupt(invalid.describe())),
        };
        let whole = entry_size(len) as usize;
        if whole as u64 > readable {
            return Err(corrupt("the entry runs past the commit point"));
        }
        if whole > buf.len() {
            let have = buf.len();
            buf.resize(whole, 0);
            self.read_bytes(address + have as u64, &mut buf[have..])?;
        }
        match entry::decode(address, &buf[..whole], room) {
            Ok(Some((payload, _))) => Ok(payload.to_vec()),
            Ok(None) => Err(corrupt("the entry header changed while reading")),
            Err(invalid) => Err(corrupt(invalid.describe())),
        }
    }

    /// Copies committed bytes `[at, at + buf.len())` (within one page) from
    /// memory if the page is there, else from the device. Reads and scans
    /// both come through here.
    pub(crate) fn read_bytes(&self, at: u64, buf: &mut [u8]) -> Result<()> {
        {
            let _handle = self.protect()?;
            let head = self.hlog.head_address();
            if at >= head.raw() {
                let address = Address::new(at).ok_or(Error::LogFull)?;
                // SAFETY: we are protected and saw `at >= head`, so the frame
                // stays live until we unprotect; the range is in one page and
                // below the commit point, hence immutable (module
                // invariant).
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        self.hlog.record_ptr(address),
                        buf.as_mut_ptr(),
                        buf.len(),
                    );
                }
                return Ok(());
            }
        }
        let address = Address::new(at).ok_or(Error::LogFull)?;
        self.hlog.read_from_device(address, buf).map_err(|e| {
            if at < self.begin.load(Ordering::Acquire) {
                Error::InvalidAddress { address: at, why: "released by truncate_until" }
            } else {
                e
            }
        })
    }

    /// Whether `address` (at most the commit point) is where an entry
    /// starts, the commit point, or the log's begin: walks the entries of
    /// its page from the page start (or the begin, if later).
    pub(crate) fn is_boundary(self: &Arc<Self>, address: u64, begin: u64) -> Result<bool> {
        let committed = self.committed.load(Ordering::Acquire);
        if address == committed || address == begin {
            return Ok(true);
        }
        if !address.is_multiple_of(8) || address < FIRST_ADDRESS || address > committed {
            return Ok(false);
        }
        let bits = self.hlog.geometry().page_bits;
        let page_start = (address >> bits << bits).max(FIRST_ADDRESS).max(begin);
        let mut walk = LogIter::new(self.clone(), page_start, address + 1, None);
        walk.verifying();
        while let Some((at, _)) = walk.next_ref()? {
            if at.0 >= address {
                return Ok(at.0 == address);
            }
        }
        Ok(walk.next_address().0 == address)
    }
}

/// The dropped range holding `address`, if any (`ranges` in order and
/// disjoint: a binary search).
pub(super) fn dropped_range(ranges: &[(u64, u64)], address: u64) -> Option<(u64, u64)> {
    let after = ranges.partition_point(|(from, _)| *from <= address);
    let (from, to) = *ranges.get(after.checked_sub(1)?)?;
    (from..to).contains(&address).then_some((from, to))
}
