//! The file device: the log's byte space split into segment files.
//!
//! Segment `i` holds device offsets `[i·S, (i+1)·S)` in the file
//! `log.<i>` (S = segment size, a power of two). Reads and writes are
//! positional (`pread`/`pwrite` through `FileExt`), so any number of threads
//! do I/O at once; the segment table is only locked to open a new segment.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use super::Device;

/// The default segment size: 1 GiB.
pub const DEFAULT_SEGMENT_SIZE_BITS: u32 = 30;

/// The file in a store directory that records its segment size.
pub const SEGMENTS_FILE: &str = "SEGMENTS";

/// The segment size (log2) recorded in `dir`'s `SEGMENTS` file, if it has
/// one; a file that does not say one is an `InvalidData` error.
pub fn recorded_segment_bits(dir: &Path) -> io::Result<Option<u32>> {
    let text = match std::fs::read_to_string(dir.join(SEGMENTS_FILE)) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    text.trim()
        .strip_prefix("segment_size_bits=")
        .and_then(|n| n.parse::<u32>().ok())
        .filter(|bits| (12..=40).contains(bits))
        .map(Some)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} does not hold a segment size: {text:?}",
                    dir.join(SEGMENTS_FILE).display()
                ),
            )
        })
}

/// Whether `dir` holds log segment files (`log.<n>`).
fn has_segments(dir: &Path) -> io::Result<bool> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if name
            .strip_prefix("log.")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The block size of direct requests.
pub(crate) const DIRECT_BLOCK: usize = crate::mem::BlockBuf::ALIGN;

/// One segment file: a buffered handle, and (on a direct device) an
/// `O_DIRECT` handle for whole-block requests. Linux keeps the two
/// coherent: a direct write first writes back and then drops the
/// page-cache pages it covers, and a direct read first writes back the
/// dirty pages it covers.
#[derive(Debug)]
pub(crate) struct Segment {
    pub(crate) file: File,
    pub(crate) direct: Option<File>,
}

/// Segment files in a directory.
#[derive(Debug)]
pub struct FileDevice {
    dir: PathBuf,
    segment_bits: u32,
    /// Whether whole-block writes bypass the page cache.
    direct: bool,
    /// Whether reads do too (through block-aligned bounce buffers where
    /// the request is not aligned).
    pub(crate) direct_reads: bool,
    segments: RwLock<BTreeMap<u64, Arc<Segment>>>,
}

impl FileDevice {
    /// A device in `dir` (created if missing) with segments of
    /// `1 << segment_bits` bytes.
    pub fn open(dir: impl AsRef<Path>, segment_bits: u32) -> io::Result<Self> {
        if !(12..=40).contains(&segment_bits) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("segment size 2^{segment_bits} is outside 2^12..=2^40"),
            ));
        }
        std::fs::create_dir_all(dir.as_ref())?;
        Ok(Self {
            dir: dir.as_ref().to_path_buf(),
            segment_bits,
            direct: false,
            direct_reads: false,
            segments: RwLock::new(BTreeMap::new()),
        })
    }

    /// Opens the segments of a store directory at the size recorded in
    /// its `SEGMENTS` file. A directory without one gets `segment_bits`,
    /// recorded (durably) before any segment exists, unless it already
    /// holds segments: those were written before sizes were recorded, at
    /// [`DEFAULT_SEGMENT_SIZE_BITS`].
    pub fn open_recorded(dir: impl AsRef<Path>, segment_bits: u32) -> io::Result<Self> {
        let dir = dir.as_ref();
        let bits = match recorded_segment_bits(dir)? {
            Some(bits) => bits,
            None if has_segments(dir)? => DEFAULT_SEGMENT_SIZE_BITS,
            None => {
                std::fs::create_dir_all(dir)?;
                let path = dir.join(SEGMENTS_FILE);
                let temp = dir.join(format!("{SEGMENTS_FILE}.tmp"));
                let mut file = File::create(&temp)?;
                std::io::Write::write_all(
                    &mut file,
                    format!("segment_size_bits={segment_bits}\n").as_bytes(),
                )?;
                file.sync_all()?;
                std::fs::rename(&temp, &path)?;
                File::open(dir)?.sync_all()?;
                segment_bits
            }
        };
        Self::open(dir, bits)
    }

    /// Opens the segments of an existing store directory at their recorded
    /// size (see [`Self::open_recorded`]), recording nothing: for tools
    /// that read a store.
    pub fn open_existing(dir: impl AsRef<Path>) -> io::Result<Self> {
        let bits = recorded_segment_bits(dir.as_ref())?.unwrap_or(DEFAULT_SEGMENT_SIZE_BITS);
        Self::open(dir, bits)
    }

    /// [`Self::open`], writing 4 KiB-aligned requests with `O_DIRECT` (Linux)
    /// so that page flushes skip the page-cache copy; other requests and all
    /// reads stay buffered. Where the file system refuses `O_DIRECT`
    /// (tmpfs, for one) every write is buffered.
    pub fn open_direct(dir: impl AsRef<Path>, segment_bits: u32) -> io::Result<Self> {
        let mut device = Self::open(dir, segment_bits)?;
        device.direct = cfg!(target_os = "linux");
        Ok(device)
    }

    /// Makes reads bypass the page cache too, on top of
    /// [`Self::open_direct`]'s writes: whole-block reads go straight to
    /// the caller's buffer, others through a block-aligned buffer of the
    /// thread's covering the blocks around them. A store whose data is
    /// larger than memory then neither depends on nor fills the page
    /// cache. Where the file system refuses `O_DIRECT`, I/O stays
    /// buffered.
    pub fn with_direct_io(mut self) -> Self {
        self.direct = cfg!(target_os = "linux");
        self.direct_reads = self.direct;
        self
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The numbers of the segment files in the directory.
    fn segment_numbers(&self) -> io::Result<Vec<u64>> {
        let mut numbers = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let name = entry?.file_name();
            if let Some(n) = name.to_str().and_then(|n| n.strip_prefix("log.")).and_then(|n| {
                n.bytes().all(|b| b.is_ascii_digit()).then(|| n.parse::<u64>().ok()).flatten()
            }) {
                numbers.push(n);
            }
        }
        Ok(numbers)
    }

    fn segment_path(&self, segment: u64) -> PathBuf {
        self.dir.join(format!("log.{segment}"))
    }

    pub(crate) fn segment(&self, segment: u64, create: bool) -> io::Result<Arc<Segment>> {
        if let Some(file) = self.segments.read().map_err(poisoned)?.get(&segment) {
            return Ok(file.clone());
        }
        let mut segments = self.segments.write().map_err(poisoned)?;
        if let Some(file) = segments.get(&segment) {
            return Ok(file.clone());
        }
        let path = self.segment_path(segment);
        let file = OpenOptions::new().read(true).write(true).create(create).open(&path)?;
        let direct = if self.direct { open_direct(&path) } else { None };
        let entry = Arc::new(Segment { file, direct });
        segments.insert(segment, entry.clone());
        Ok(entry)
    }

    /// Splits `[offset, offset + len)` at segment boundaries.
    pub(crate) fn chunks(
        &self,
        offset: u64,
        len: usize,
    ) -> impl Iterator<Item = (u64, u64, usize, usize)> {
        let size = 1u64 << self.segment_bits;
        let mut done = 0usize;
        std::iter::from_fn(move || {
            if done >= len {
                return None;
            }
            let at = offset + done as u64;
            let in_segment = (size - (at & (size - 1))) as usize;
            let n = in_segment.min(len - done);
            let chunk = (at >> self.segment_bits, at & (size - 1), done, n);
            done += n;
            Some(chunk)
        })
    }
}

/// Frees the blocks of `file`'s first `len` bytes (they read as zeros
/// afterwards), keeping its size. Best effort: a file system that cannot
/// punch holes keeps them until the segment is deleted whole.
#[cfg(target_os = "linux")]
fn punch_hole(file: &File, len: u64) {
    use std::os::fd::AsRawFd;
    let Ok(len) = libc::off_t::try_from(len) else { return };
    // SAFETY: `fallocate` on a descriptor this `File` owns and keeps open
    // for the call; it touches no memory of ours.
    let punched = unsafe {
        libc::fallocate(
            file.as_raw_fd(),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            0,
            len,
        )
    };
    if punched != 0 {
        tracing::debug!(error = %io::Error::last_os_error(), "punching a hole in a log segment");
    }
}

#[cfg(not(target_os = "linux"))]
fn punch_hole(_file: &File, _len: u64) {}

fn poisoned<T>(_: T) -> io::Error {
    io::Error::other("segment table lock poisoned")
}

/// An `O_DIRECT` handle on `path`, if the platform and file system allow.
fn open_direct(path: &Path) -> Option<File> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::OpenOptionsExt;
        OpenOptions::new().read(true).write(true).custom_flags(libc::O_DIRECT).open(path).ok()
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = path;
        None
    }
}

/// Reads `buf.len()` bytes at `at` through an `O_DIRECT` handle: straight
/// into `buf` when it is block-aligned, else through the thread's aligned
/// buffer covering the blocks around it.
fn read_direct(file: &File, at: u64, buf: &mut [u8]) -> io::Result<()> {
    if aligned(at, buf) {
        let need = buf.len();
        return read_blocks(file, at, buf, need);
    }
    let (start, len, skip) = covering_blocks(at, buf.len());
    BOUNCE.with(|cell| {
        let mut bounce = cell.borrow_mut();
        if bounce.as_ref().is_none_or(|b| b.len() < len) {
            let size = len.next_power_of_two().max(64 << 10);
            *bounce = Some(crate::mem::BlockBuf::zeroed(size).map_err(io::Error::other)?);
        }
        let Some(bounce) = bounce.as_mut() else { return Err(io::Error::other("no buffer")) };
        let blocks = &mut bounce.as_mut_slice()[..len];
        read_blocks(file, start, blocks, skip + buf.len())?;
        buf.copy_from_slice(&blocks[skip..skip + buf.len()]);
        Ok(())
    })
}

/// The whole blocks around `[at, at + len)`: their start, their length,
/// and where the range starts in them.
pub(crate) fn covering_blocks(at: u64, len: usize) -> (u64, usize, usize) {
    let block = DIRECT_BLOCK as u64;
    let start = at & !(block - 1);
    let end = (at + len as u64).next_multiple_of(block);
    (start, (end - start) as usize, (at - start) as usize)
}

thread_local! {
    /// A thread's bounce buffer for unaligned direct reads (grown on
    /// demand, kept for the thread's life).
    static BOUNCE: std::cell::RefCell<Option<crate::mem::BlockBuf>> =
        const { std::cell::RefCell::new(None) };
}

/// Fills `buf` (block-aligned, at a block-aligned `at`) from an `O_DIRECT`
/// handle until its first `need` bytes are read: a read that ends short of
/// a block boundary met the end of the file.
fn read_blocks(file: &File, at: u64, buf: &mut [u8], need: usize) -> io::Result<()> {
    let mut done = 0;
    while done < need {
        match file.read_at(&mut buf[done..], at + done as u64) {
            Ok(n) => {
                done += n;
                if done < need && (n == 0 || !done.is_multiple_of(DIRECT_BLOCK)) {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "read past the end of a segment",
                    ));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn aligned(at: u64, bytes: &[u8]) -> bool {
    direct_request(at, bytes.as_ptr(), bytes.len())
}

/// Whether `len` bytes at device offset `at` from or into `ptr` can go
/// through an `O_DIRECT` handle as they are (all three block-aligned).
pub(crate) fn direct_request(at: u64, ptr: *const u8, len: usize) -> bool {
    at.is_multiple_of(DIRECT_BLOCK as u64)
        && len.is_multiple_of(DIRECT_BLOCK)
        && (ptr as usize).is_multiple_of(DIRECT_BLOCK)
}

impl Device for FileDevice {
    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        for (segment, at, from, n) in self.chunks(offset, buf.len()) {
            let segment = self.segment(segment, true)?;
            let bytes = &buf[from..from + n];
            match &segment.direct {
                Some(direct) if aligned(at, bytes) => direct.write_all_at(bytes, at)?,
                _ => segment.file.write_all_at(bytes, at)?,
            }
        }
        Ok(())
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        for (segment, at, from, n) in self.chunks(offset, buf.len()) {
            let segment = self.segment(segment, false)?;
            let part = &mut buf[from..from + n];
            match &segment.direct {
                Some(direct) if self.direct_reads => read_direct(direct, at, part)?,
                _ => segment.file.read_exact_at(part, at)?,
            }
        }
        Ok(())
    }

    /// With direct reads and the `io_uring` feature (Linux), a batch of
    /// reads is in flight at once through the thread's ring, as on
    /// [`super::IoUringDevice`]: that is what a disk needs to reach its
    /// IOPS. Buffered reads (served by the page cache while the data fits
    /// the machine's memory), or where the kernel refuses io_uring: one
    /// after the other.
    fn read_batch(&self, requests: &mut [super::ReadRequest<'_>]) -> Vec<io::Result<()>> {
        #[cfg(all(target_os = "linux", feature = "io_uring"))]
        if self.direct_reads && requests.len() > 1 && super::uring::available() {
            return super::uring::read_batch(self, requests);
        }
        requests.iter_mut().map(|r| self.read_at(r.offset, r.buf)).collect()
    }

    fn sync(&self) -> io::Result<()> {
        let segments: Vec<Arc<Segment>> =
            self.segments.read().map_err(poisoned)?.values().cloned().collect();
        for segment in segments {
            segment.file.sync_data()?;
        }
        File::open(&self.dir)?.sync_all()
    }

    fn write_alignment(&self) -> usize {
        if self.direct { DIRECT_BLOCK } else { 1 }
    }

    fn direct_reads(&self) -> bool {
        self.direct_reads
    }

    fn end_offset(&self) -> io::Result<u64> {
        let mut end = 0u64;
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(segment) = name
                .to_str()
                .and_then(|n| n.strip_prefix("log."))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            let len = entry.metadata()?.len();
            if len > 0 {
                end = end.max((segment << self.segment_bits) + len);
            }
        }
        Ok(end)
    }

    fn stored_bytes(&self) -> u64 {
        use std::os::unix::fs::MetadataExt;
        // Every segment file in the directory, opened by this process or
        // not (a reopened store has not touched its old segments).
        let Ok(numbers) = self.segment_numbers() else { return 0 };
        numbers
            .into_iter()
            .filter_map(|n| std::fs::metadata(self.segment_path(n)).ok())
            .map(|m| m.blocks() * 512)
            .sum()
    }

    fn truncate_before(&self, offset: u64) -> io::Result<()> {
        let first_kept = offset >> self.segment_bits;
        let mut segments = self.segments.write().map_err(poisoned)?;
        // The files on disk, not only those this process opened.
        for segment in self.segment_numbers()?.into_iter().filter(|n| *n < first_kept) {
            segments.remove(&segment);
            match std::fs::remove_file(self.segment_path(segment)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        drop(segments);
        // The part of the segment holding `offset` below it: its blocks
        // go back too, where the file system can punch holes (a segment
        // of 1 GiB would otherwise hold up to 1 GiB of dead log).
        let dead = (offset & ((1u64 << self.segment_bits) - 1)) / 4096 * 4096;
        if dead > 0 && self.segment_path(first_kept).exists() {
            punch_hole(&self.segment(first_kept, false)?.file, dead);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_span_segments_and_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let device = FileDevice::open(dir.path(), 12).expect("open");
        let data: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        device.write_at(4000, &data).expect("write");
        let mut back = vec![0u8; data.len()];
        device.read_at(4000, &mut back).expect("read");
        assert_eq!(back, data);
        assert!(dir.path().join("log.0").exists() && dir.path().join("log.3").exists());
        device.sync().expect("sync");
        device.truncate_before(8192).expect("truncate");
        assert!(!dir.path().join("log.0").exists() && !dir.path().join("log.1").exists());
        assert!(device.read_at(100, &mut [0u8; 4]).is_err());
        let mut tail = [0u8; 4];
        device.read_at(9000, &mut tail).expect("read kept segment");
        assert_eq!(tail, data[5000..5004]);
    }

    #[test]
    fn direct_and_buffered_reads_return_what_was_written() {
        for direct in [false, true] {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut device = FileDevice::open(dir.path(), 14).expect("open");
            if direct {
                device = device.with_direct_io();
            }
            crate::device::check_reads(&device);
        }
    }

    /// The pages of `file` in the page cache.
    #[cfg(target_os = "linux")]
    fn cached_pages(file: &File) -> usize {
        use std::os::fd::AsRawFd;
        let len = file.metadata().expect("metadata").len() as usize;
        // SAFETY: a shared read-only mapping of the whole file, unmapped
        // below; nothing reads through it.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        assert_ne!(map, libc::MAP_FAILED);
        let mut resident = vec![0u8; len.div_ceil(4096)];
        // SAFETY: `map` is a mapping of `len` bytes and `resident` has one
        // byte per 4 KiB page of it.
        let rc = unsafe { libc::mincore(map, len, resident.as_mut_ptr()) };
        // SAFETY: the mapping made above, unmapped once.
        unsafe { libc::munmap(map, len) };
        assert_eq!(rc, 0);
        resident.iter().filter(|r| *r & 1 == 1).count()
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn direct_reads_leave_the_page_cache_alone() {
        use std::os::fd::AsRawFd;
        let dir = tempfile::tempdir().expect("tempdir");
        let device = FileDevice::open(dir.path(), 24).expect("open").with_direct_io();
        let mut data = crate::mem::BlockBuf::zeroed(1 << 20).expect("memory");
        data.as_mut_slice().iter_mut().enumerate().for_each(|(i, b)| *b = i as u8);
        device.write_at(0, data.as_slice()).expect("write");
        let segment = device.segment(0, false).expect("segment");
        if segment.direct.is_none() {
            eprintln!("skipped: the file system refuses O_DIRECT");
            return;
        }
        // Written around the cache; drop whatever may be there anyway.
        // SAFETY: advice on a descriptor the segment keeps open.
        unsafe { libc::posix_fadvise(segment.file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        let mut whole = crate::mem::BlockBuf::zeroed(1 << 20).expect("memory");
        device.read_at(0, whole.as_mut_slice()).expect("read");
        let mut piece = [0u8; 100];
        for at in (7..1 << 20).step_by(40_000) {
            device.read_at(at, &mut piece).expect("read");
        }
        assert_eq!(whole.as_slice(), data.as_slice());
        assert_eq!(cached_pages(&segment.file), 0, "direct reads filled the page cache");
        // The same reads through the buffered handle do fill it (so the
        // count above measures something).
        let buffered = FileDevice::open(dir.path(), 24).expect("open");
        buffered.read_at(0, whole.as_mut_slice()).expect("read");
        assert!(cached_pages(&segment.file) > 0, "buffered reads should fill the page cache");
    }

    #[test]
    fn reading_unwritten_bytes_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let device = FileDevice::open(dir.path(), 12).expect("open");
        device.write_at(0, &[1, 2, 3]).expect("write");
        assert!(device.read_at(2, &mut [0u8; 4]).is_err());
        assert!(device.read_at(1 << 20, &mut [0u8; 1]).is_err());
    }
}
