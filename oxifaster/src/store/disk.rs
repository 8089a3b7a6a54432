//! Reading records back from the device.
//!
//! A [`DiskReader`] owns what it needs (a clone of the log's reader and the
//! record format), so a chain walk can run on any thread: the session's own
//! for `complete_pending`, or a blocking thread for the async API.

use super::record::{RecordFormat, RecordInfo, pad8};
use crate::address::Address;
use crate::device::{Device, ReadRequest};
use crate::hlog::LogReader;
use crate::record::{AlignedBytes, Key, Value};
use crate::{Error, Result};

/// The longest record chain followed on the device before declaring the log
/// corrupt (a cycle cannot occur in a healthy log: chains go backwards).
const MAX_DISK_HOPS: u64 = 1 << 32;

/// A record read back from the device.
pub(super) struct DiskRecord {
    /// Where it is in the log.
    pub(super) address: Address,
    pub(super) info: RecordInfo,
    pub(super) value: AlignedBytes,
}

/// A record a walk of [`DiskReader::walk_batch`] reads: where it is, its
/// header, its key's and its value's bytes.
pub(super) struct Visited<'a> {
    pub(super) address: Address,
    pub(super) info: RecordInfo,
    pub(super) key: &'a [u8],
    pub(super) value: &'a [u8],
}

/// How a walk of [`DiskReader::walk_batch`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Walked {
    /// Its `stop` returned true.
    Stopped,
    /// The chain ended.
    Ended,
    /// It passed its most records.
    TooLong,
}

/// Walks record chains on the device.
pub(super) struct DiskReader<K, V, D> {
    log: LogReader<D>,
    format: RecordFormat<K, V>,
}

impl<K: Key, V: Value, D: Device> DiskReader<K, V, D> {
    pub(super) fn new(log: LogReader<D>, format: RecordFormat<K, V>) -> Self {
        Self { log, format }
    }

    /// Follows the chain on the device from `address` for the record of the
    /// key encoded as `key`.
    pub fn find(&self, key: &[u8], address: Address) -> Result<Option<DiskRecord>> {
        self.find_batch(vec![(key, address)]).pop().unwrap_or(Ok(None))
    }

    /// Follows many chains at once: each round reads the next record of
    /// every unfinished chain in one device batch (all in flight together on
    /// a device with a submission queue).
    pub fn find_batch(&self, walks: Vec<(&[u8], Address)>) -> Vec<Result<Option<DiskRecord>>> {
        let starts: Vec<Address> = walks.iter().map(|&(_, address)| address).collect();
        let mut found: Vec<Option<DiskRecord>> = walks.iter().map(|_| None).collect();
        let ends = self.walk_batch(&starts, MAX_DISK_HOPS, |walk, record| {
            if record.info.is_invalid() || record.key != walks[walk].0 {
                return false;
            }
            found[walk] = Some(DiskRecord {
                address: record.address,
                info: record.info,
                value: AlignedBytes::copy_from(record.value),
            });
            true
        });
        ends.into_iter()
            .zip(found)
            .zip(&starts)
            .map(|((end, record), start)| match end? {
                Walked::TooLong => Err(corrupt(
                    start.raw(),
                    format!("a record chain of more than {MAX_DISK_HOPS} records"),
                )),
                _ => Ok(record),
            })
            .collect()
    }

    /// Walks many chains on the device at once, batched as
    /// [`Self::find_batch`]: `stop(walk, record)` sees each record of walk
    /// `walk`'s chain in turn, from its start, until it returns true or the
    /// chain ends (a previous address that is invalid or below the begin
    /// address) or `max_hops` records were passed. A chain going forwards
    /// is an error.
    pub(super) fn walk_batch(
        &self,
        starts: &[Address],
        max_hops: u64,
        mut stop: impl FnMut(usize, &Visited<'_>) -> bool,
    ) -> Vec<Result<Walked>> {
        let begin = self.log.begin_address();
        let mut results: Vec<Option<Result<Walked>>> = starts.iter().map(|_| None).collect();
        // (walk, current address, hops so far)
        let mut active: Vec<(usize, Address, u64)> = Vec::with_capacity(starts.len());
        for (index, address) in starts.iter().enumerate() {
            if !address.raw().is_multiple_of(8) {
                results[index] = Some(Err(misaligned(*address)));
            } else if address.is_valid() && *address >= begin {
                active.push((index, *address, 0));
            } else {
                results[index] = Some(Ok(Walked::Ended));
            }
        }
        while !active.is_empty() {
            let mut buffers = Vec::with_capacity(active.len());
            for &(_, address, _) in &active {
                buffers
                    .push(self.first_read_size(address).map(|n| AlignedBytes::zeroed(n as usize)));
            }
            let mut requests = Vec::with_capacity(active.len());
            let mut requested = Vec::with_capacity(active.len());
            for (slot, buffer) in buffers.iter_mut().enumerate() {
                if let Ok(buffer) = buffer {
                    requests.push(ReadRequest {
                        offset: active[slot].1.raw(),
                        buf: buffer.as_mut_slice(),
                    });
                    requested.push(slot);
                }
            }
            let mut outcomes = self.log.read_batch(&mut requests).into_iter();
            drop(requests);
            let mut next = Vec::with_capacity(active.len());
            let mut outcome_for = requested.into_iter().peekable();
            for (slot, (index, address, hops)) in active.into_iter().enumerate() {
                let step = match &mut buffers[slot] {
                    Err(e) => Err(corrupt(address.raw(), e.to_string())),
                    Ok(buffer) => {
                        debug_assert_eq!(outcome_for.peek(), Some(&slot));
                        outcome_for.next();
                        match outcomes.next() {
                            Some(Ok(())) => self.parse(address, buffer),
                            Some(Err(e)) => Err(e),
                            None => Err(corrupt(address.raw(), "lost read".into())),
                        }
                    }
                };
                let (info, key_len, value_len) = match step {
                    Ok(parsed) => parsed,
                    // Compaction moved the begin address past the record
                    // during the walk and its segment is gone: the record
                    // is gone for readers too (they check the key's index
                    // entry, see `Session::entry_moved`).
                    Err(_) if address < self.log.begin_address() => {
                        results[index] = Some(Ok(Walked::Ended));
                        continue;
                    }
                    Err(e) => {
                        results[index] = Some(Err(e));
                        continue;
                    }
                };
                let Ok(buffer) = &buffers[slot] else { continue };
                let header = self.format.header_size();
                let value_at = header + pad8(key_len);
                let visited = Visited {
                    address,
                    info,
                    key: &buffer[header..header + key_len],
                    value: &buffer[value_at..value_at + value_len],
                };
                if stop(index, &visited) {
                    results[index] = Some(Ok(Walked::Stopped));
                    continue;
                }
                let previous = info.previous();
                if !previous.raw().is_multiple_of(8) {
                    results[index] = Some(Err(misaligned(previous)));
                } else if previous >= address {
                    results[index] = Some(Err(corrupt(
                        address.raw(),
                        format!("record chain goes forward to {previous}"),
                    )));
                } else if hops + 1 > max_hops {
                    results[index] = Some(Ok(Walked::TooLong));
                } else if previous.is_valid() && previous >= begin {
                    next.push((index, previous, hops + 1));
                } else {
                    results[index] = Some(Ok(Walked::Ended));
                }
            }
            active = next;
        }
        results.into_iter().map(|r| r.unwrap_or(Ok(Walked::Ended))).collect()
    }

    /// How many bytes to read first at `address`: the whole record when its
    /// size is fixed, else up to 256 bytes (never past the page).
    fn first_read_size(&self, address: Address) -> Result<u64> {
        const FIRST_READ_BYTES: u64 = 256;
        let format = self.format;
        let page_left = self.log.page_size() - address.offset(self.log.page_bits());
        let guess = match (K::FIXED_KEY_SIZE, V::FIXED_SIZE) {
            (Some(k), Some(v)) => format.record_size(k, v) as u64,
            _ => FIRST_READ_BYTES.min(page_left),
        };
        if guess < format.header_size() as u64 || guess > page_left {
            return Err(corrupt(address.raw(), "record header crosses its page".into()));
        }
        Ok(guess)
    }

    /// Checks the record read into `buf` at `address`, reading the rest of
    /// it if the first read was short; returns its header and lengths.
    fn parse(
        &self,
        address: Address,
        buf: &mut AlignedBytes,
    ) -> Result<(RecordInfo, usize, usize)> {
        let format = self.format;
        let page_left = self.log.page_body().saturating_sub(address.offset(self.log.page_bits()));
        let word = |bytes: &[u8], i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&bytes[i * 8..i * 8 + 8]);
            u64::from_le_bytes(w)
        };
        let info = RecordInfo::from_raw(word(buf, 0));
        if info.is_empty() {
            return Err(corrupt(address.raw(), "no record header".into()));
        }
        let (key_len, value_len) = format.lengths_in(buf);
        let size = format.record_size(key_len, value_len) as u64;
        if size > page_left {
            return Err(corrupt(address.raw(), format!("record of {size} bytes crosses its page")));
        }
        let guess = buf.len() as u64;
        if size > guess {
            let mut whole = AlignedBytes::zeroed(size as usize);
            whole.as_mut_slice()[..guess as usize].copy_from_slice(buf);
            let rest_at = address.checked_add(guess).unwrap_or(Address::MAX);
            self.log.read_from_device(rest_at, &mut whole.as_mut_slice()[guess as usize..])?;
            *buf = whole;
        }
        // Integrity on every read: the record's bytes are checked against
        // its page's seal before anything of them is used.
        self.log.verify(address, address.raw() + size)?;
        Ok((info, key_len, value_len))
    }
}

/// Records start on 8-byte boundaries: an address that does not came from
/// damaged (or forged) bytes.
fn misaligned(address: Address) -> Error {
    corrupt(address.raw(), "a record address that is not 8-byte aligned".into())
}

/// A record read back from the device that does not check: logged (an
/// ERROR event with the address) and returned as [`Error::Corruption`].
fn corrupt(address: u64, what: String) -> Error {
    tracing::error!(address = format_args!("{address:#x}"), %what, "a corrupted record was read from the device");
    Error::Corruption { address, what }
}
