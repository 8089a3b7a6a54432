//! Large, zeroed, aligned memory regions for the log frames and the hash
//! table.
//!
//! Both are gigabytes at scale and accessed at random, so TLB misses would
//! cost as much as cache misses. On Linux, regions of 2 MiB or more are
//! mapped anonymously (zeroed by the kernel, never touched before use),
//! 2 MiB aligned, and advised to use transparent huge pages
//! (`madvise(MADV_HUGEPAGE)`) before their first touch; the kernel may still
//! decline. Elsewhere, for small regions, and when the environment variable
//! `OXIFASTER_NO_HUGE_PAGES` is set, the global allocator is used.

use std::alloc::Layout;
use std::ptr::NonNull;

use crate::{Error, Result};

const HUGE_PAGE_BYTES: usize = 2 << 20;

#[derive(Debug)]
enum Backing {
    Heap(Layout),
    #[cfg(target_os = "linux")]
    Mapped {
        base: *mut libc::c_void,
        len: usize,
    },
}

/// An owned, zeroed region of memory.
#[derive(Debug)]
pub struct LargeBuffer {
    ptr: NonNull<u8>,
    backing: Backing,
}

// SAFETY: the buffer is plain memory owned by this value; how threads share
// it is up to its owner (the hybrid log and the hash index document their
// protocols).
unsafe impl Send for LargeBuffer {}
// SAFETY: as above.
unsafe impl Sync for LargeBuffer {}

impl LargeBuffer {
    /// `bytes` zeroed bytes aligned to at least `align` (a power of two, at
    /// most 2 MiB).
    pub fn zeroed(bytes: usize, align: usize) -> Result<Self> {
        #[cfg(target_os = "linux")]
        if bytes >= HUGE_PAGE_BYTES
            && align <= HUGE_PAGE_BYTES
            && std::env::var_os("OXIFASTER_NO_HUGE_PAGES").is_none()
        {
            return Self::mapped(bytes);
        }
        let layout = Layout::from_size_align(bytes.max(1), align)
            .map_err(|_| Error::OutOfMemory { bytes })?;
        // SAFETY: the layout has a non-zero size.
        let ptr = NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) })
            .ok_or(Error::OutOfMemory { bytes })?;
        Ok(Self { ptr, backing: Backing::Heap(layout) })
    }

    #[cfg(target_os = "linux")]
    fn mapped(bytes: usize) -> Result<Self> {
        let len = bytes.checked_add(HUGE_PAGE_BYTES).ok_or(Error::OutOfMemory { bytes })?;
        // SAFETY: an anonymous private mapping of `len` bytes at an address
        // of the kernel's choosing; no file, no fixed address.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(Error::OutOfMemory { bytes });
        }
        let aligned = (base as usize).next_multiple_of(HUGE_PAGE_BYTES);
        // SAFETY: `aligned` lies within the mapping, at most 2 MiB past its
        // start, so `[aligned, aligned + bytes)` is inside `[base, base + len)`;
        // MADV_HUGEPAGE is advice and never changes contents.
        unsafe {
            libc::madvise(aligned as *mut libc::c_void, bytes, libc::MADV_HUGEPAGE);
        }
        let ptr = NonNull::new(aligned as *mut u8).ok_or(Error::OutOfMemory { bytes })?;
        Ok(Self { ptr, backing: Backing::Mapped { base, len } })
    }

    /// The start of the region.
    #[inline(always)]
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }
}

/// An owned, zeroed byte buffer aligned to `BlockBuf::ALIGN` (4 KiB), as
/// `O_DIRECT` requests need theirs: scan pages and direct-read bounce
/// buffers.
#[derive(Debug)]
pub(crate) struct BlockBuf {
    buf: LargeBuffer,
    len: usize,
}

impl BlockBuf {
    /// The alignment of the buffer's start.
    pub const ALIGN: usize = 4096;

    /// `len` zeroed bytes.
    pub fn zeroed(len: usize) -> Result<Self> {
        Ok(Self { buf: LargeBuffer::zeroed(len.max(1), Self::ALIGN)?, len })
    }

    /// The length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: the region holds at least `len` initialised (zeroed, then
        // written through `as_mut_slice`) bytes owned by `self`, and the
        // shared borrow of `self` excludes writers for the slice's life.
        unsafe { std::slice::from_raw_parts(self.buf.as_ptr(), self.len) }
    }

    /// The bytes, mutably.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`; the exclusive borrow of `self` makes
        // this the only access for the slice's life.
        unsafe { std::slice::from_raw_parts_mut(self.buf.as_ptr(), self.len) }
    }
}

impl Drop for LargeBuffer {
    fn drop(&mut self) {
        match self.backing {
            // SAFETY: allocated in `zeroed` with exactly this layout, freed once.
            Backing::Heap(layout) => unsafe { std::alloc::dealloc(self.ptr.as_ptr(), layout) },
            #[cfg(target_os = "linux")]
            Backing::Mapped { base, len } => {
                // SAFETY: the mapping made in `mapped`, unmapped once.
                unsafe { libc::munmap(base, len) };
            }
        }
    }
}

/// The machine's physical memory in bytes (Linux: `MemTotal` of
/// `/proc/meminfo`), if known.
pub(crate) fn physical_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// Asks the CPU to start loading the cache line holding `ptr`: a hint for
/// loops that know their next addresses before they need them. It never
/// faults (any address may be given), reads nothing the program sees and
/// changes no memory.
#[inline(always)]
pub(crate) fn prefetch<T>(ptr: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `_mm_prefetch` is a hint with no architectural effect: it
    // cannot fault, even on an unmapped address, and writes nothing.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(ptr.cast::<i8>())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = ptr;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_buffers_are_aligned_and_sized() {
        for len in [0, 1, 4096, 5000, 4 << 20] {
            let mut buf = BlockBuf::zeroed(len).expect("memory");
            assert_eq!(buf.as_slice().as_ptr() as usize % BlockBuf::ALIGN, 0);
            assert_eq!(buf.len(), len);
            assert!(buf.as_slice().iter().all(|b| *b == 0));
            buf.as_mut_slice().fill(3);
            assert!(buf.as_slice().iter().all(|b| *b == 3));
        }
    }

    #[test]
    fn regions_are_zeroed_aligned_and_writable() {
        for (bytes, align) in [(100, 8), (4 << 20, 64), ((2 << 20) + 123, 4096)] {
            let buffer = LargeBuffer::zeroed(bytes, align).expect("memory");
            assert_eq!(buffer.as_ptr() as usize % align, 0);
            // SAFETY: the buffer holds `bytes` bytes.
            let slice = unsafe { std::slice::from_raw_parts_mut(buffer.as_ptr(), bytes) };
            assert!(slice.iter().all(|b| *b == 0));
            slice.fill(7);
        }
    }
}
