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
//! Besides power cuts, the clock injects I/O errors ([`CrashClock::inject`],
//! [`CrashClock::inject_rate`]): EIO, ENOSPC (`ErrorKind::StorageFull`) or
//! a short transfer (a prefix of the bytes moves, then the call fails), on
//! the N-th read, write or sync, once (transient) or from then on
//! (persistent), or at a seeded random rate.
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
    /// Device reads, writes and syncs counted so far (by [`FaultOp`]).
    counts: [AtomicU64; 3],
    injections: Mutex<Vec<Injection>>,
}

/// A device operation, for [`CrashClock::inject`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultOp {
    /// `read_at` (and each read of a batch).
    Read,
    /// `write_at`.
    Write,
    /// `sync`.
    Sync,
}

/// What an injected fault does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// The call fails with an I/O error (EIO); nothing moves.
    Eio,
    /// The call fails with `ErrorKind::StorageFull` (ENOSPC); nothing moves.
    NoSpace,
    /// A prefix of the bytes (whole 512-byte sectors, possibly none) is
    /// read or written, then the call fails. A short sync is an EIO.
    Short,
}

#[derive(Debug)]
struct Injection {
    /// The operation it applies to (`None`: any device operation).
    op: Option<FaultOp>,
    kind: FaultKind,
    /// Fires at this count of `op` (for counted injections).
    at: u64,
    /// Fires on every later operation too.
    persistent: bool,
    /// Fires with this probability per million instead (xorshift state).
    rate: Option<(u32, u64)>,
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

    /// Injects `kind` on the `after`-th `op` from now (0: the next one);
    /// `persistent`: on every later `op` too (a dead disk), else once.
    pub fn inject(&self, op: FaultOp, kind: FaultKind, after: u64, persistent: bool) {
        let at = self.counts[op as usize].load(Ordering::SeqCst).saturating_add(after);
        self.lock_injections().push(Injection { op: Some(op), kind, at, persistent, rate: None });
    }

    /// Injects `kind` into each `op` (`None`: every device operation) with
    /// probability `per_million` / 1 000 000, drawn from `seed`.
    pub fn inject_rate(&self, op: Option<FaultOp>, kind: FaultKind, per_million: u32, seed: u64) {
        self.lock_injections().push(Injection {
            op,
            kind,
            at: 0,
            persistent: false,
            rate: Some((per_million, seed | 1)),
        });
    }

    /// Removes every injected fault (power cuts stay armed).
    pub fn clear_injections(&self) {
        self.lock_injections().clear();
    }

    fn lock_injections(&self) -> std::sync::MutexGuard<'_, Vec<Injection>> {
        self.injections.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts one device operation: the power cut and `fail_once` as for
    /// [`Self::tick`], then the injected faults. `Ok(Some(Short))` asks the
    /// device for a short transfer.
    pub fn device_op(&self, op: FaultOp, what: &str) -> io::Result<Option<FaultKind>> {
        self.tick(what)?;
        let n = self.counts[op as usize].fetch_add(1, Ordering::SeqCst);
        let mut injections = self.lock_injections();
        let mut fired = None;
        injections.retain_mut(|i| {
            if fired.is_some() || i.op.is_some_and(|o| o != op) {
                return true;
            }
            match &mut i.rate {
                Some((per_million, state)) => {
                    *state ^= *state >> 12;
                    *state ^= *state << 25;
                    *state ^= *state >> 27;
                    let draw = state.wrapping_mul(0x2545_f491_4f6c_dd1d) % 1_000_000;
                    if draw < u64::from(*per_million) {
                        fired = Some(i.kind);
                    }
                    true
                }
                None if n >= i.at => {
                    fired = Some(i.kind);
                    i.persistent
                }
                None => true,
            }
        });
        match fired {
            None => Ok(None),
            Some(FaultKind::Eio) => {
                Err(io::Error::other(format!("injected EIO at {what} {n} ({op:?})")))
            }
            Some(FaultKind::NoSpace) => Err(io::Error::new(
                io::ErrorKind::StorageFull,
                format!("injected ENOSPC at {what} {n} ({op:?})"),
            )),
            Some(FaultKind::Short) if op == FaultOp::Sync => {
                Err(io::Error::other(format!("injected EIO at {what} {n} (short sync)")))
            }
            Some(FaultKind::Short) => Ok(Some(FaultKind::Short)),
        }
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

/// How many bytes a short transfer of `len` bytes at `offset` moves: the
/// whole sectors of its first half (possibly none).
fn short_len(len: usize, offset: u64) -> usize {
    let half_end = offset + len as u64 / 2;
    let sector_end = half_end & !511;
    sector_end.saturating_sub(offset).min(len as u64) as usize
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
        let short = self.clock.device_op(FaultOp::Write, "device write")?;
        let mut images = self.images();
        let len = match short {
            Some(_) => short_len(buf.len(), offset),
            None => buf.len(),
        };
        put(&mut images.visible, offset, &buf[..len]);
        images.unsynced.push((offset, buf[..len].to_vec()));
        if short.is_some() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("injected short write: {len} of {} bytes at {offset:#x}", buf.len()),
            ));
        }
        Ok(())
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let short = self.clock.device_op(FaultOp::Read, "device read")?;
        let images = self.images();
        let end = offset as usize + buf.len();
        if end > images.visible.len() {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "read past the device's end"));
        }
        if short.is_some() {
            let len = short_len(buf.len(), offset);
            buf[..len].copy_from_slice(&images.visible[offset as usize..offset as usize + len]);
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("injected short read: {len} of {} bytes at {offset:#x}", buf.len()),
            ));
        }
        buf.copy_from_slice(&images.visible[offset as usize..end]);
        Ok(())
    }

    fn sync(&self) -> io::Result<()> {
        self.clock.device_op(FaultOp::Sync, "device sync")?;
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
    fn injected_faults_fire_where_asked() {
        let clock = CrashClock::new();
        let device = FaultDevice::new(clock.clone());
        device.write_at(0, &[1; 2048]).expect("write");
        // The second write fails with ENOSPC, once.
        clock.inject(FaultOp::Write, FaultKind::NoSpace, 1, false);
        device.write_at(0, &[2; 8]).expect("first write");
        let err = device.write_at(0, &[3; 8]).expect_err("ENOSPC");
        assert_eq!(err.kind(), io::ErrorKind::StorageFull);
        device.write_at(0, &[4; 8]).expect("transient: the next write works");
        // A short write moves whole sectors of the first half, then fails.
        clock.inject(FaultOp::Write, FaultKind::Short, 0, false);
        assert!(device.write_at(0, &[5; 2048]).is_err());
        let mut back = [0u8; 2048];
        device.read_at(0, &mut back).expect("read");
        assert!(back[..1024].iter().all(|b| *b == 5) && back[1024..].iter().all(|b| *b == 1));
        // A persistent read fault.
        clock.inject(FaultOp::Read, FaultKind::Eio, 0, true);
        assert!(device.read_at(0, &mut back).is_err());
        assert!(device.read_at(0, &mut back).is_err());
        device.sync().expect("syncs are unaffected");
        clock.clear_injections();
        device.read_at(0, &mut back).expect("cleared");
        // A seeded rate: the same seed fails the same operations.
        let fails = |seed| {
            let clock = CrashClock::new();
            let device = FaultDevice::new(clock.clone());
            clock.inject_rate(None, FaultKind::Eio, 200_000, seed);
            (0..200).map(|i| device.write_at(i * 8, &[1; 8]).is_err()).collect::<Vec<_>>()
        };
        let a = fails(9);
        assert_eq!(a, fails(9));
        let n = a.iter().filter(|f| **f).count();
        assert!((20..=70).contains(&n), "{n} of 200 failed at a 20% rate");
    }

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
