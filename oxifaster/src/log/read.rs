//! Reading entries back: in memory or from the device, checked against
//! their checksums, only at entry boundaries below the commit point.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::entry::{HEADER, Header, decode_header, entry_size};
use super::{Inner, LogIter, entry, page_end};
use crate::address::Address;
use crate::device::{Device, ReadRequest};
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
        let (room, readable) = self.room(address);
        // One read usually holds the whole entry.
        let mut buf = vec![0u8; readable.min(4096) as usize];
        self.read_bytes(address, &mut buf)?;
        self.finish_entry(address, buf, room, readable)
    }

    /// Reads the committed entries at `addresses` (each taken from the
    /// caller's own record of where it enqueued an entry), those on the
    /// device as one batch ([`crate::device::Device::read_batch`]: in
    /// flight together where the device can). Results in the order asked,
    /// and the number of device reads.
    pub(super) fn read_batch(&self, addresses: &[u64]) -> (Vec<Result<Vec<u8>>>, usize) {
        let mut results: Vec<Option<Result<Vec<u8>>>> = addresses.iter().map(|_| None).collect();
        // (request, address, room, readable, buffer)
        let mut device = Vec::new();
        let head = self.hlog.head_address().raw();
        for (i, &address) in addresses.iter().enumerate() {
            if let Err(e) = self.check_readable(address) {
                results[i] = Some(Err(e));
            } else if address >= head {
                // In memory (or flushed since: `read` looks again).
                results[i] = Some(self.read(address));
            } else {
                // Below the head address the page is on the device. Read to
                // the end of its block (at least 256 bytes): one block for
                // most entries, whole blocks for direct reads.
                let (room, readable) = self.room(address);
                let to_block = 4096 - address % 4096;
                let first = if to_block >= 256 { to_block } else { to_block + 4096 };
                device.push((i, address, room, readable, vec![0u8; first.min(readable) as usize]));
            }
        }
        let mut requests: Vec<ReadRequest<'_>> = device
            .iter_mut()
            .map(|(_, address, _, _, buf)| ReadRequest { offset: *address, buf })
            .collect();
        let outcomes = self.hlog.read_batch(&mut requests);
        drop(requests);
        let from_device = device.len();
        for ((i, address, room, readable, buf), outcome) in device.into_iter().zip(outcomes) {
            results[i] = Some(
                outcome
                    .map_err(|e| self.released(address, e))
                    .and_then(|()| self.finish_entry(address, buf, room, readable)),
            );
        }
        (results.into_iter().map(|r| r.unwrap_or(Err(Error::LogFull))).collect(), from_device)
    }

    /// The bytes from `address` to its page's end, and those of them below
    /// the commit point: never copy bytes at or past it, other threads may
    /// be writing them.
    fn room(&self, address: u64) -> (u64, u64) {
        let page_end = page_end(address, self.hlog.geometry().page_bits);
        (page_end - address, self.committed.load(Ordering::Acquire).min(page_end) - address)
    }

    /// The payload of the entry at `address`, from `buf` (its first bytes,
    /// read), reading the rest if the entry is longer, checked against its
    /// checksum.
    fn finish_entry(
        &self,
        address: u64,
        mut buf: Vec<u8>,
        room: u64,
        readable: u64,
    ) -> Result<Vec<u8>> {
        let corrupt = |what: &str| Error::Corruption { address, what: what.into() };
        if buf.len() < HEADER as usize {
            return Err(corrupt("the commit point falls inside an entry header"));
        }
        let mut header = [0u8; 8];
        header.copy_from_slice(&buf[..8]);
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

    /// A device read's error at `at`: "released" if `truncate_until` has
    /// passed it meanwhile.
    fn released(&self, at: u64, e: Error) -> Error {
        if at < self.begin.load(Ordering::Acquire) {
            Error::InvalidAddress { address: at, why: "released by truncate_until" }
        } else {
            e
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
        self.hlog.read_from_device(address, buf).map_err(|e| self.released(at, e))
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
