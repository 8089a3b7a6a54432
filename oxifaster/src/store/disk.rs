//! Reading records back from the device.
//!
//! A [`DiskReader`] owns what it needs (a clone of the log's reader and the
//! record format), so a chain walk can run on any thread: the session's own
//! for `complete_pending`, or a blocking thread for the async API.

use super::record::{RecordFormat, RecordInfo, pad8};
use crate::address::Address;
use crate::device::Device;
use crate::hlog::LogReader;
use crate::record::{AlignedBytes, Key, Value};
use crate::{Error, Result};

/// The longest record chain followed on the device before declaring the log
/// corrupt (a cycle cannot occur in a healthy log: chains go backwards).
const MAX_DISK_HOPS: u64 = 1 << 32;

/// A record read back from the device.
pub(super) struct DiskRecord {
    pub(super) info: RecordInfo,
    pub(super) value: AlignedBytes,
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
    pub fn find(&self, key: &[u8], mut address: Address) -> Result<Option<DiskRecord>> {
        let begin = self.log.begin_address();
        let mut buf = AlignedBytes::zeroed(0);
        let mut hops = 0u64;
        while address.is_valid() && address >= begin {
            let (info, key_len, value_len) = self.read_disk_record(address, &mut buf)?;
            let header = self.format.header_size;
            let record_key = &buf[header..header + key_len];
            if !info.is_invalid() && record_key == key {
                let value_at = header + pad8(key_len);
                let value = AlignedBytes::copy_from(&buf[value_at..value_at + value_len]);
                return Ok(Some(DiskRecord { info, value }));
            }
            let previous = info.previous();
            hops += 1;
            if previous >= address || hops > MAX_DISK_HOPS {
                return Err(Error::Corruption {
                    address: address.raw(),
                    what: format!("record chain goes forward to {previous}"),
                });
            }
            address = previous;
        }
        Ok(None)
    }

    /// Reads the record at `address` into `buf` (which it resizes): one
    /// device read for fixed-size records, and for variable-length records
    /// whose size fits the first guess.
    fn read_disk_record(
        &self,
        address: Address,
        buf: &mut AlignedBytes,
    ) -> Result<(RecordInfo, usize, usize)> {
        const FIRST_READ_BYTES: u64 = 256;
        let format = self.format;
        let log = &self.log;
        let page_left = log.page_size() - address.offset(log.page_bits());
        let guess = match (K::FIXED_KEY_SIZE, V::FIXED_SIZE) {
            (Some(k), Some(v)) => format.record_size(k, v) as u64,
            _ => FIRST_READ_BYTES.min(page_left),
        };
        if guess < format.header_size as u64 || guess > page_left {
            return Err(Error::Corruption {
                address: address.raw(),
                what: "record header crosses its page".into(),
            });
        }
        if buf.len() != guess as usize {
            *buf = AlignedBytes::zeroed(guess as usize);
        }
        log.read_from_device(address, buf.as_mut_slice())?;
        let word = |bytes: &[u8], i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&bytes[i * 8..i * 8 + 8]);
            u64::from_le_bytes(w)
        };
        let info = RecordInfo::from_raw(word(buf, 0));
        if info.is_empty() {
            return Err(Error::Corruption {
                address: address.raw(),
                what: "no record header".into(),
            });
        }
        let (key_len, value_len) = if format.has_lengths {
            let lengths = word(buf, format.header_size / 8 - 1);
            ((lengths & 0xffff_ffff) as usize, (lengths >> 32) as usize)
        } else {
            (K::FIXED_KEY_SIZE.unwrap_or(0), V::FIXED_SIZE.unwrap_or(0))
        };
        let size = format.record_size(key_len, value_len) as u64;
        if size > page_left {
            return Err(Error::Corruption {
                address: address.raw(),
                what: format!("record of {size} bytes crosses its page"),
            });
        }
        if size > guess {
            let mut whole = AlignedBytes::zeroed(size as usize);
            whole.as_mut_slice()[..guess as usize].copy_from_slice(buf);
            let rest_at = address.checked_add(guess).unwrap_or(Address::MAX);
            log.read_from_device(rest_at, &mut whole.as_mut_slice()[guess as usize..])?;
            *buf = whole;
        }
        Ok((info, key_len, value_len))
    }
}
