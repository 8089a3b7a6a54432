//! Fault injection for tests: a device that simulates power loss.
//!
//! [`FaultDevice`] keeps two images of its bytes: the *visible* one (what
//! reads return: every completed write) and the *durable* one (what survives
//! a power loss: writes followed by a `sync`). Unsynced writes are kept in
//! order. [`FaultDevice::power_loss`] returns what a restart would find,
//! under a [`CrashMode`]: unsynced writes dropped, a random subset kept, or
//! some of them torn at 512-byte sector boundaries.
//!
//! A [`CrashClock`] shared by the device (and by the checkpoint files'
//! [`crate::checkpoint::FaultIo`]) counts operations; armed with a crash
//! point, the operation with that number and every later one fail, as if
//! the power went out there. Sweeping the crash point over every operation
//! of a workload is the L2 test of `TESTING.md`.
//!
//! Everything is seeded and deterministic for a deterministic workload.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::Device;

/// Counts device and file operations and cuts the power at one of them.
#[derive(Debug, Default)]
pub struct CrashClock {
    ops: AtomicU64,
    /// The operation number at which the power goes out (`u64::MAX`: never).
    crash_at: AtomicU64,
    crashed: AtomicBool,
    /// The operation number that fails once, without a crash.
    fail_at: AtomicU64,
}

impl CrashClock {
    /// A clock that never crashes until armed.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            crash_at: AtomicU64::new(u64::MAX),
            fail_at: AtomicU64::new(u64::MAX),
            ..Self::default()
        })
    }

    /// Cuts the power at the `after`-th operation from now (0: the next one).
    pub fn arm(&self, after: u64) {
        let now = self.ops.load(Ordering::SeqCst);
        self.crash_at.store(now.saturating_add(after), Ordering::SeqCst);
    }

    /// Fails the `after`-th operation from now (0: the next one) with an
    /// I/O error, once; the power stays on.
    pub fn fail_once(&self, after: u64) {
        let now = self.ops.load(Ordering::SeqCst);
        self.fail_at.store(now.saturating_add(after), Ordering::SeqCst);
    }

    /// Never crash (again).
    pub fn disarm(&self) {
        self.crash_at.store(u64::MAX, Ordering::SeqCst);
    }

    /// Operations counted so far.
    pub fn ops(&self) -> u64 {
        self.ops.load(Ordering::SeqCst)
    }

    /// Whether the power went out.
    pub fn crashed(&self) -> bool {
        self.crashed.load(Ordering::SeqCst)
    }

    /// Counts one operation; fails it (and every later one) at the crash
    /// point.
    pub fn tick(&self, what: &str) -> io::Result<()> {
        let n = self.ops.fetch_add(1, Ordering::SeqCst);
        if self.crashed.load(Ordering::SeqCst) || n >= self.crash_at.load(Ordering::SeqCst) {
            self.crashed.store(true, Ordering::SeqCst);
            return Err(io::Error::other(format!(
                "simulated power loss at operation {n} ({what})"
            )));
        }
        if self.fail_at.compare_exchange(n, u64::MAX, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
            return Err(io::Error::other(format!("injected I/O error at operation {n} ({what})")));
        }
        Ok(())
    }
}

/// What happens to unsynced writes at a power loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashMode {
    /// All are lost.
    Drop,
    /// Each survives or not, at random.
    KeepSome,
    /// Each survives whole, not at all, or as a prefix of whole 512-byte
    /// sectors, at random.
    Tear,
}

#[derive(Debug, Default)]
struct Images {
    visible: Vec<u8>,
    durable: Vec<u8>,
    unsynced: Vec<(u64, Vec<u8>)>,
}

fn put(image: &mut Vec<u8>, offset: u64, bytes: &[u8]) {
    let end = offset as usize + bytes.len();
    if image.len() < end {
        image.resize(end, 0);
    }
    image[offset as usize..end].copy_from_slice(bytes);
}

/// A device that remembers which writes are durable (see the module
/// documentation).
#[derive(Debug)]
pub struct FaultDevice {
    images: Mutex<Images>,
    clock: Arc<CrashClock>,
    /// The write alignment it claims and enforces (1: none).
    alignment: usize,
}

impl FaultDevice {
    /// An empty device on `clock`.
    pub fn new(clock: Arc<CrashClock>) -> Self {
        Self::from_image(Vec::new(), clock)
    }

    /// A device whose durable bytes are `image` (what a restart finds).
    pub fn from_image(image: Vec<u8>, clock: Arc<CrashClock>) -> Self {
        Self {
            images: Mutex::new(Images {
                visible: image.clone(),
                durable: image,
                unsynced: Vec::new(),
            }),
            clock,
            alignment: 1,
        }
    }

    /// Claims a write alignment of `bytes` (a power of two), like a direct
    /// I/O device, and refuses writes that are not aligned to it, so that
    /// tests check that the hybrid log rounds its flushes correctly.
    pub fn with_write_alignment(mut self, bytes: usize) -> Self {
        self.alignment = bytes.max(1);
        self
    }

    fn images(&self) -> std::sync::MutexGuard<'_, Images> {
        self.images.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The bytes a restart would find after a power loss now, under `mode`,
    /// with the random choices drawn from `seed`.
    pub fn power_loss(&self, mode: CrashMode, seed: u64) -> Vec<u8> {
        let images = self.images();
        let mut image = images.durable.clone();
        let mut state = seed | 1;
        let mut next = move || {
            // xorshift64*: enough randomness for choosing writes.
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x2545_f491_4f6c_dd1d)
        };
        for (offset, bytes) in &images.unsynced {
            match mode {
                CrashMode::Drop => {}
                CrashMode::KeepSome => {
                    if next() % 2 == 0 {
                        put(&mut image, *offset, bytes);
                    }
                }
                CrashMode::Tear => match next() % 3 {
                    0 => {}
                    1 => put(&mut image, *offset, bytes),
                    _ => {
                        let sectors = bytes.len().div_ceil(512) as u64;
                        let keep = ((next() % sectors.max(1)) * 512) as usize;
                        put(&mut image, *offset, &bytes[..keep.min(bytes.len())]);
                    }
                },
            }
        }
        image
    }
}

impl Device for FaultDevice {
    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        let a = self.alignment as u64;
        if !offset.is_multiple_of(a) || !(buf.len() as u64).is_multiple_of(a) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a write of {} bytes at {offset:#x} is not {a}-byte aligned", buf.len()),
            ));
        }
        self.clock.tick("device write")?;
        let mut images = self.images();
        put(&mut images.visible, offset, buf);
        images.unsynced.push((offset, buf.to_vec()));
        Ok(())
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.clock.tick("device read")?;
        let images = self.images();
        let end = offset as usize + buf.len();
        if end > images.visible.len() {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "read past the device's end"));
        }
        buf.copy_from_slice(&images.visible[offset as usize..end]);
        Ok(())
    }

    fn sync(&self) -> io::Result<()> {
        self.clock.tick("device sync")?;
        let mut images = self.images();
        images.durable = images.visible.clone();
        images.unsynced.clear();
        Ok(())
    }

    fn truncate_before(&self, _offset: u64) -> io::Result<()> {
        Ok(())
    }

    fn end_offset(&self) -> io::Result<u64> {
        Ok(self.images().visible.len() as u64)
    }

    fn write_alignment(&self) -> usize {
        self.alignment
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsynced_writes_are_lost_kept_or_torn() {
        let clock = CrashClock::new();
        let device = FaultDevice::new(clock.clone());
        device.write_at(0, &[1; 1024]).expect("write");
        device.sync().expect("sync");
        device.write_at(0, &[2; 1024]).expect("write");
        assert_eq!(device.power_loss(CrashMode::Drop, 1), vec![1; 1024]);
        let mut seen_torn = false;
        for seed in 0..64 {
            let image = device.power_loss(CrashMode::Tear, seed);
            assert_eq!(image.len(), 1024);
            let twos = image.iter().take_while(|b| **b == 2).count();
            assert!(image[twos..].iter().all(|b| *b == 1), "a torn write is a prefix");
            assert_eq!(twos % 512, 0, "torn at a sector boundary");
            seen_torn |= twos == 512;
        }
        assert!(seen_torn);
        clock.arm(1);
        let mut buf = [0u8; 4];
        device.read_at(0, &mut buf).expect("before the crash point");
        assert!(device.write_at(0, &[3; 4]).is_err(), "the power is out");
        assert!(device.read_at(0, &mut buf).is_err(), "and stays out");
        assert!(clock.crashed());
    }
}
