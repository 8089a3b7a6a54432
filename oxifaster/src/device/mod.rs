//! Devices: where the hybrid log's pages go when they leave memory.
//!
//! A [`Device`] is a flat, byte-addressed space (a log address is its device
//! offset, so files stay dense) with positional reads and writes that many
//! threads may issue at once: no file-wide lock, no single I/O worker. The
//! hybrid log writes whole pages from its flush thread and reads records back
//! from any session thread.
//!
//! The interface is synchronous and positional (plus [`Device::read_batch`]
//! for many reads in flight) rather than callback-based as in FASTER: the
//! asynchrony lives one layer up, where a session parks operations whose
//! records are on the device and completes them in batches
//! (`complete_pending`), or where the async API awaits a blocking-pool read.
//! Page flushes currently run synchronously inside the epoch action that
//! makes the pages read-only.
//!
//! - [`FileDevice`]: segment files in a directory (the default);
//!   [`FileDevice::open_direct`] writes whole blocks with `O_DIRECT`.
//! - [`MemoryDevice`]: an in-memory device for tests.
//! - [`NullDevice`]: discards writes; reads fail. For pure in-memory use.
//! - `FaultDevice` (with the `testing` feature): for tests; simulates power loss (unsynced writes
//!   dropped, kept or torn) at a chosen operation.
//! - `IoUringDevice` (Linux, feature `io_uring`): the file layout of
//!   `FileDevice`, with I/O submitted through io_uring so that a batch of
//!   reads is in flight at once.

#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod fault;
mod file;
mod memory;
#[cfg(all(target_os = "linux", feature = "io_uring"))]
mod uring;

#[cfg(feature = "testing")]
#[doc(hidden)]
pub use fault::{CrashClock, CrashMode, FaultDevice, FaultKind, FaultOp};
pub use file::{DEFAULT_SEGMENT_SIZE_BITS, FileDevice, SEGMENTS_FILE, recorded_segment_bits};
pub use memory::{MemoryDevice, NullDevice};
#[cfg(all(target_os = "linux", feature = "io_uring"))]
pub use uring::IoUringDevice;

use std::io;

/// A byte-addressed store for log pages.
pub trait Device: Send + Sync + 'static {
    /// Writes all of `buf` at `offset`.
    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()>;

    /// Fills all of `buf` from `offset`. Reading bytes that were never
    /// written is an error (`UnexpectedEof`).
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;

    /// Makes every completed write durable.
    fn sync(&self) -> io::Result<()>;

    /// Releases storage below `offset`: whole segments, and (where the
    /// device can, as the file device on Linux file systems that punch
    /// holes) the blocks below `offset` in the segment that holds it.
    /// Nothing below `offset` may be read afterwards: such reads fail, or
    /// return bytes that fail their page's seal.
    fn truncate_before(&self, offset: u64) -> io::Result<()>;

    /// The bytes the device takes on its storage now (blocks allocated to
    /// its files; 0 where that is not known), for reports of what
    /// [`Device::truncate_before`] freed.
    fn stored_bytes(&self) -> u64 {
        0
    }

    /// One past the highest offset ever written (0 for an empty device).
    /// Recovery starts a new log incarnation beyond it, so that nothing a
    /// later checkpoint of the old incarnation needs is overwritten.
    fn end_offset(&self) -> io::Result<u64>;

    /// The alignment (offset, length and memory address) that makes a write
    /// cheapest: a device that writes aligned requests around the page
    /// cache (`O_DIRECT`) returns its block size, and the hybrid log then
    /// rounds its flushes out to whole blocks. 1 (the default): any write
    /// is as good as any other.
    fn write_alignment(&self) -> usize {
        1
    }

    /// Whether reads bypass the page cache (`O_DIRECT`): then nothing
    /// reads ahead of a sequential reader, and one large request beats a
    /// stream of small ones. Default false.
    fn direct_reads(&self) -> bool {
        false
    }

    /// Fills every buffer from its offset. The default reads one after the
    /// other; a device with a submission queue keeps them all in flight.
    fn read_batch(&self, requests: &mut [ReadRequest<'_>]) -> Vec<io::Result<()>> {
        requests.iter_mut().map(|r| self.read_at(r.offset, r.buf)).collect()
    }
}

/// One read of a batch.
#[derive(Debug)]
pub struct ReadRequest<'a> {
    /// The device offset.
    pub offset: u64,
    /// The buffer to fill.
    pub buf: &'a mut [u8],
}

/// Checks a device's reads against what was written: whole blocks and odd
/// pieces, within and across segments (of 16 KiB), batched, and past the
/// end (errors).
#[cfg(test)]
pub(crate) fn check_reads(device: &dyn Device) {
    let data: Vec<u8> = (0..40_000u32).map(|i| (i.wrapping_mul(7) % 251) as u8).collect();
    // Whole blocks from an aligned buffer (direct writes where the device
    // has them), then an unaligned tail.
    let mut blocks = crate::mem::BlockBuf::zeroed(32_768).expect("memory");
    blocks.as_mut_slice().copy_from_slice(&data[..32_768]);
    device.write_at(0, blocks.as_slice()).expect("write blocks");
    device.write_at(32_768, &data[32_768..]).expect("write tail");
    let pieces = [
        (0, 4096),
        (0, 1),
        (5, 100),
        (4090, 20),
        (16_380, 10),
        (12_288, 8192),
        (100, 39_900),
        (39_990, 10),
    ];
    for (at, len) in pieces {
        let mut buf = vec![0u8; len];
        device.read_at(at as u64, &mut buf).unwrap_or_else(|e| panic!("read {at}+{len}: {e}"));
        assert_eq!(buf, data[at..at + len], "read {at}+{len}");
        if at % 4096 == 0 && len % 4096 == 0 {
            let mut aligned = crate::mem::BlockBuf::zeroed(len).expect("memory");
            device.read_at(at as u64, aligned.as_mut_slice()).expect("aligned read");
            assert_eq!(aligned.as_slice(), &data[at..at + len], "aligned read {at}+{len}");
        }
    }
    let mut bufs: Vec<Vec<u8>> = pieces.iter().map(|&(_, len)| vec![0u8; len]).collect();
    let mut requests: Vec<ReadRequest<'_>> = bufs
        .iter_mut()
        .zip(pieces)
        .map(|(buf, (at, _))| ReadRequest { offset: at as u64, buf })
        .collect();
    assert!(device.read_batch(&mut requests).iter().all(Result::is_ok), "batch");
    for (buf, (at, len)) in bufs.iter().zip(pieces) {
        assert_eq!(buf[..], data[at..at + len], "batched read {at}+{len}");
    }
    assert!(device.read_at(39_995, &mut [0u8; 10]).is_err(), "a read past the end");
    assert!(device.read_at(1 << 20, &mut [0u8; 1]).is_err(), "a read of a missing segment");
}
