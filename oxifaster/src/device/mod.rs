//! Devices: where the hybrid log's pages go when they leave memory.
//!
//! A [`Device`] is a flat, byte-addressed space (a log address is its device
//! offset, so files stay dense) with positional reads and writes that many
//! threads may issue at once: no file-wide lock, no single I/O worker. The
//! hybrid log writes whole pages from its flush thread and reads records back
//! from any session thread.
//!
//! - [`FileDevice`]: segment files in a directory (the default).
//! - [`MemoryDevice`]: an in-memory device for tests.
//! - [`NullDevice`]: discards writes; reads fail. For pure in-memory use.

mod file;
mod memory;

pub use file::{DEFAULT_SEGMENT_SIZE_BITS, FileDevice};
pub use memory::{MemoryDevice, NullDevice};

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

    /// Releases storage below `offset` (whole segments only); reads below it
    /// fail afterwards.
    fn truncate_before(&self, offset: u64) -> io::Result<()>;
}
