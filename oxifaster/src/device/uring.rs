//! The io_uring device: `FileDevice`'s segment files, with reads and writes
//! submitted through io_uring.
//!
//! Each thread that does I/O owns a ring (created on first use), so there is
//! no lock on the I/O path. A call submits all of its operations at once and
//! waits for all of them: a batch of pending reads (`read_batch`) is in
//! flight together, which is what a real disk needs to reach its IOPS.
//!
//! ## Invariant
//!
//! Every buffer handed to the kernel stays borrowed by the running call
//! until its completion has been reaped. A wait interrupted by a signal
//! (`EINTR`) is retried; any other failure of `io_uring_enter` is retried
//! (with a pause) for as long as an entry of the batch may still be in the
//! kernel, and only then reported: dropping the ring does *not* cancel
//! what is in flight (io-uring's `Drop` unmaps the rings and closes the
//! descriptor while the kernel's workers may still write into the
//! buffers). Entries that never left the submission queue are discarded
//! with the ring.

use std::cell::RefCell;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::Arc;

use io_uring::{IoUring, opcode, types};

use super::{Device, FileDevice, ReadRequest};

/// Submission queue entries per thread's ring.
const RING_ENTRIES: u32 = 256;

thread_local! {
    static RING: RefCell<Option<IoUring>> = const { RefCell::new(None) };
}

/// Segment files in a directory, accessed through io_uring.
#[derive(Debug)]
pub struct IoUringDevice {
    files: FileDevice,
}

/// One operation on one segment.
struct Operation {
    file: Arc<super::file::Segment>,
    /// Through the segment's `O_DIRECT` handle.
    direct: bool,
    ptr: *mut u8,
    len: usize,
    /// Done once this many bytes are transferred (a direct read may stop
    /// short of `len` at the end of the file past what it needs).
    need: usize,
    offset: u64,
    write: bool,
    done: usize,
    result: Option<io::Result<()>>,
    /// The request of the caller this operation serves.
    request: usize,
    /// For an unaligned direct read: the aligned buffer read into, and
    /// where the caller's bytes are in it and go to.
    bounce: Option<Bounce>,
}

struct Bounce {
    buf: crate::mem::BlockBuf,
    skip: usize,
    dest: *mut u8,
    len: usize,
}

impl IoUringDevice {
    /// A device in `dir` with segments of `1 << segment_bits` bytes. Fails
    /// if the kernel does not offer io_uring.
    pub fn open(dir: impl AsRef<Path>, segment_bits: u32) -> io::Result<Self> {
        IoUring::new(8)?;
        Ok(Self { files: FileDevice::open(dir, segment_bits)? })
    }

    /// A device like [`Self::open`] whose reads and whole-block writes
    /// bypass the page cache (see [`FileDevice::with_direct_io`]).
    pub fn open_direct_io(dir: impl AsRef<Path>, segment_bits: u32) -> io::Result<Self> {
        IoUring::new(8)?;
        Ok(Self { files: FileDevice::open(dir, segment_bits)?.with_direct_io() })
    }

    /// Splits a request into per-segment operations.
    fn plan(
        files: &FileDevice,
        request: usize,
        offset: u64,
        ptr: *mut u8,
        len: usize,
        write: bool,
        out: &mut Vec<Operation>,
    ) -> io::Result<()> {
        for (segment, at, from, n) in files.chunks(offset, len) {
            let file = files.segment(segment, write)?;
            // SAFETY: `from + n <= len`: the chunk lies inside the buffer.
            let ptr = unsafe { ptr.add(from) };
            let direct = file.direct.is_some() && (write || files.direct_reads);
            let aligned = super::file::direct_request(at, ptr, n);
            let mut op = Operation {
                file,
                direct: direct && aligned,
                ptr,
                len: n,
                need: n,
                offset: at,
                write,
                done: 0,
                result: None,
                request,
                bounce: None,
            };
            if direct && !aligned && !write {
                let (start, blocks, skip) = super::file::covering_blocks(at, n);
                let mut buf = crate::mem::BlockBuf::zeroed(blocks).map_err(io::Error::other)?;
                op.direct = true;
                op.ptr = buf.as_mut_slice().as_mut_ptr();
                op.len = blocks;
                op.need = skip + n;
                op.offset = start;
                op.bounce = Some(Bounce { buf, skip, dest: ptr, len: n });
            }
            out.push(op);
        }
        Ok(())
    }

    /// Runs the operations to completion (see the module invariant).
    fn run(operations: &mut [Operation]) {
        let outcome = RING.with(|cell| {
            let mut slot = cell.borrow_mut();
            if slot.is_none() {
                *slot = Some(IoUring::new(RING_ENTRIES)?);
            }
            let Some(ring) = slot.as_mut() else { return Err(io::Error::other("no ring")) };
            let result = Self::drive(ring, operations);
            if result.is_err() {
                // `drive` reaped every entry that reached the kernel; what
                // is left in the submission queue goes with the ring.
                *slot = None;
            }
            result
        });
        if let Err(e) = outcome {
            for op in operations.iter_mut().filter(|op| op.result.is_none()) {
                op.result = Some(Err(io::Error::new(e.kind(), e.to_string())));
            }
        }
    }

    fn drive(ring: &mut IoUring, operations: &mut [Operation]) -> io::Result<()> {
        loop {
            let mut in_flight = 0usize;
            for (index, op) in operations.iter().enumerate().filter(|(_, op)| op.result.is_none()) {
                if in_flight == RING_ENTRIES as usize {
                    break;
                }
                let fd = match (&op.file.direct, op.direct) {
                    (Some(direct), true) => types::Fd(direct.as_raw_fd()),
                    _ => types::Fd(op.file.file.as_raw_fd()),
                };
                let remaining = (op.len - op.done).min(u32::MAX as usize) as u32;
                // SAFETY: `done < len`, so the pointer stays inside the buffer.
                let ptr = unsafe { op.ptr.add(op.done) };
                let offset = op.offset + op.done as u64;
                let entry = if op.write {
                    opcode::Write::new(fd, ptr, remaining).offset(offset).build()
                } else {
                    opcode::Read::new(fd, ptr, remaining).offset(offset).build()
                }
                .user_data(index as u64);
                // SAFETY: the buffer behind `ptr` is borrowed by our caller for
                // the whole call, and this loop reaps every submitted entry
                // before returning (module invariant); the file stays open
                // through `op.file`.
                unsafe { ring.submission().push(&entry) }
                    .map_err(|_| io::Error::other("io_uring submission queue full"))?;
                in_flight += 1;
            }
            if in_flight == 0 {
                return Ok(());
            }
            let mut reaped = 0;
            let mut failure: Option<io::Error> = None;
            let mut pauses = 0u32;
            while reaped < in_flight {
                let Some(cqe) = ring.completion().next() else {
                    // Entries still in the submission queue never reached
                    // the kernel; the others must be reaped before return.
                    let unsubmitted = ring.submission().len();
                    if failure.is_some() && in_flight - reaped <= unsubmitted {
                        break;
                    }
                    match ring.submit_and_wait(in_flight - reaped) {
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            failure.get_or_insert(e);
                            pauses += 1;
                            std::thread::sleep(std::time::Duration::from_millis(
                                pauses.min(100) as u64
                            ));
                        }
                    }
                    continue;
                };
                reaped += 1;
                let Some(op) = operations.get_mut(cqe.user_data() as usize) else { continue };
                let res = cqe.result();
                if res < 0 {
                    let error = io::Error::from_raw_os_error(-res);
                    if error.kind() != io::ErrorKind::Interrupted {
                        op.result = Some(Err(error));
                    }
                } else if res == 0 {
                    op.result = Some(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "read past the end of a segment",
                    )));
                } else {
                    op.done += res as usize;
                    if op.done >= op.need {
                        op.result = Some(Ok(()));
                    } else if op.direct && !op.done.is_multiple_of(super::file::DIRECT_BLOCK) {
                        // A direct transfer ends short of a block only at
                        // the end of the file.
                        op.result = Some(Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "read past the end of a segment",
                        )));
                    }
                }
            }
            if let Some(e) = failure {
                return Err(e);
            }
        }
    }

    fn finish(operations: Vec<Operation>, requests: usize) -> Vec<io::Result<()>> {
        let mut results: Vec<io::Result<()>> = (0..requests).map(|_| Ok(())).collect();
        for op in operations {
            if let (Some(Ok(())), Some(bounce)) = (&op.result, &op.bounce) {
                let bytes = &bounce.buf.as_slice()[bounce.skip..bounce.skip + bounce.len];
                // SAFETY: `dest` points at `len` bytes of the caller's
                // buffer, still borrowed by the running call; the bounce
                // buffer is ours, so the two do not overlap.
                unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), bounce.dest, bounce.len) };
            }
            if let Some(Err(e)) = op.result
                && let Some(slot) = results.get_mut(op.request)
                && slot.is_ok()
            {
                *slot = Err(e);
            }
        }
        results
    }
}

impl Device for IoUringDevice {
    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        let mut ops = Vec::new();
        // The kernel only reads from a write's buffer.
        Self::plan(&self.files, 0, offset, buf.as_ptr().cast_mut(), buf.len(), true, &mut ops)?;
        Self::run(&mut ops);
        Self::finish(ops, 1).pop().unwrap_or(Ok(()))
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let mut ops = Vec::new();
        Self::plan(&self.files, 0, offset, buf.as_mut_ptr(), buf.len(), false, &mut ops)?;
        Self::run(&mut ops);
        Self::finish(ops, 1).pop().unwrap_or(Ok(()))
    }

    fn sync(&self) -> io::Result<()> {
        self.files.sync()
    }

    fn truncate_before(&self, offset: u64) -> io::Result<()> {
        self.files.truncate_before(offset)
    }

    fn stored_bytes(&self) -> u64 {
        self.files.stored_bytes()
    }

    fn end_offset(&self) -> io::Result<u64> {
        self.files.end_offset()
    }

    fn write_alignment(&self) -> usize {
        self.files.write_alignment()
    }

    fn direct_reads(&self) -> bool {
        self.files.direct_reads()
    }

    fn read_batch(&self, requests: &mut [ReadRequest<'_>]) -> Vec<io::Result<()>> {
        read_batch(&self.files, requests)
    }
}

/// Whether this process may use io_uring (a kernel or a sandbox may refuse
/// it), asked once.
pub(super) fn available() -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(|| IoUring::new(8).is_ok())
}

/// Reads a batch from `files` through this thread's ring, all in flight
/// together (what [`FileDevice`]'s `read_batch` does when io_uring is
/// [`available`]).
pub(super) fn read_batch(
    files: &FileDevice,
    requests: &mut [ReadRequest<'_>],
) -> Vec<io::Result<()>> {
    let mut ops = Vec::new();
    let mut planned: Vec<io::Result<()>> = Vec::with_capacity(requests.len());
    for (index, request) in requests.iter_mut().enumerate() {
        planned.push(IoUringDevice::plan(
            files,
            index,
            request.offset,
            request.buf.as_mut_ptr(),
            request.buf.len(),
            false,
            &mut ops,
        ));
    }
    IoUringDevice::run(&mut ops);
    let mut results = IoUringDevice::finish(ops, requests.len());
    for (result, plan) in results.iter_mut().zip(planned) {
        if let Err(e) = plan {
            *result = Err(e);
        }
    }
    results
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direct_and_buffered_reads_return_what_was_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        crate::device::check_reads(&IoUringDevice::open(dir.path(), 14).expect("io_uring"));
        let dir = tempfile::tempdir().expect("tempdir");
        crate::device::check_reads(
            &IoUringDevice::open_direct_io(dir.path(), 14).expect("io_uring"),
        );
    }

    #[test]
    fn batches_of_reads_and_spanning_writes_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let device = IoUringDevice::open(dir.path(), 12).expect("io_uring");
        let data: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        device.write_at(1000, &data).expect("write");
        let mut a = vec![0u8; 5000];
        let mut b = vec![0u8; 300];
        let mut c = vec![0u8; 10];
        let mut requests = [
            ReadRequest { offset: 1000, buf: &mut a },
            ReadRequest { offset: 9000, buf: &mut b },
            ReadRequest { offset: 1 << 30, buf: &mut c },
        ];
        let results = device.read_batch(&mut requests);
        assert!(results[0].is_ok() && results[1].is_ok());
        assert!(results[2].is_err(), "a read of a missing segment must fail");
        assert_eq!(a, data[..5000]);
        assert_eq!(b, data[8000..8300]);
        let mut tail = [0u8; 8];
        device.read_at(20_996, &mut tail).expect_err("a read past the end must fail");
    }
}
