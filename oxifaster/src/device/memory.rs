//! In-memory and null devices.

use std::io;
use std::sync::RwLock;

use super::Device;

/// A device that keeps everything in memory, for tests: a growable byte
/// vector behind a reader-writer lock.
#[derive(Debug, Default)]
pub struct MemoryDevice {
    bytes: RwLock<Vec<u8>>,
}

impl MemoryDevice {
    /// An empty device.
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of bytes written so far (the highest written offset).
    pub fn len(&self) -> u64 {
        self.bytes.read().map(|b| b.len() as u64).unwrap_or(0)
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn range(offset: u64, len: usize) -> io::Result<std::ops::Range<usize>> {
    let start = usize::try_from(offset).map_err(|_| io::Error::other("offset out of range"))?;
    let end = start.checked_add(len).ok_or_else(|| io::Error::other("offset out of range"))?;
    Ok(start..end)
}

impl Device for MemoryDevice {
    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        let range = range(offset, buf.len())?;
        let mut bytes = self.bytes.write().map_err(|_| io::Error::other("poisoned"))?;
        if bytes.len() < range.end {
            bytes.resize(range.end, 0);
        }
        bytes[range].copy_from_slice(buf);
        Ok(())
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let range = range(offset, buf.len())?;
        let bytes = self.bytes.read().map_err(|_| io::Error::other("poisoned"))?;
        let src = bytes.get(range).ok_or_else(|| {
            io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end of the device")
        })?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn sync(&self) -> io::Result<()> {
        Ok(())
    }

    fn end_offset(&self) -> io::Result<u64> {
        Ok(self.len())
    }

    fn truncate_before(&self, _offset: u64) -> io::Result<()> {
        Ok(())
    }
}

/// A device that discards writes; reads fail. A store on it keeps only what
/// fits in memory.
#[derive(Debug, Default, Clone, Copy)]
pub struct NullDevice;

impl Device for NullDevice {
    fn write_at(&self, _offset: u64, _buf: &[u8]) -> io::Result<()> {
        Ok(())
    }

    fn read_at(&self, offset: u64, _buf: &mut [u8]) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("the null device holds nothing (read at {offset:#x})"),
        ))
    }

    fn sync(&self) -> io::Result<()> {
        Ok(())
    }

    fn end_offset(&self) -> io::Result<u64> {
        Ok(0)
    }

    fn truncate_before(&self, _offset: u64) -> io::Result<()> {
        Ok(())
    }
}
