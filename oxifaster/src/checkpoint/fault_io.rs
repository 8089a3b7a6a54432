//! [`FaultIo`]: checkpoint file I/O that a test can cut the power of
//! (the `testing` feature).

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::cpr::{CheckpointFile, CheckpointIo, RealFile, RealIo};
use crate::device::{CrashClock, CrashMode};

#[derive(Debug, Clone)]
enum Step {
    DirCreated(PathBuf),
    Wrote(PathBuf),
    Synced(PathBuf),
    /// From, to, and the bytes of the file the rename replaced at `to`
    /// (a power loss before the directory's sync brings that file back:
    /// a rename is atomic).
    Renamed(PathBuf, PathBuf, Option<Vec<u8>>),
    DirSynced(PathBuf),
}

/// The real file system, with every operation counted on a [`CrashClock`]
/// and journaled, so that [`FaultIo::power_loss`] can undo what a power
/// loss would have lost (see [`crate::device::fault`]).
#[derive(Debug, Clone)]
pub struct FaultIo {
    clock: Arc<CrashClock>,
    journal: Arc<Mutex<Vec<Step>>>,
}

struct FaultFile {
    inner: RealFile,
    path: PathBuf,
    io: FaultIo,
}

impl FaultIo {
    /// Checkpoint file I/O on `clock`.
    pub fn new(clock: Arc<CrashClock>) -> Self {
        Self { clock, journal: Arc::new(Mutex::new(Vec::new())) }
    }

    fn log(&self, step: Step) {
        self.journal.lock().unwrap_or_else(|p| p.into_inner()).push(step);
    }

    /// Forgets the journal: everything so far counts as durable.
    pub fn settle(&self) {
        self.journal.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Changes the files on disk to what a restart after a power loss now
    /// would find: writes not followed by a sync of their file, renames and
    /// directory creations not followed by a sync of their directory, are
    /// lost (or, per `mode`, kept or torn).
    pub fn power_loss(&self, mode: CrashMode, seed: u64) -> io::Result<()> {
        let journal = std::mem::take(&mut *self.journal.lock().unwrap_or_else(|p| p.into_inner()));
        let mut state = seed | 1;
        let mut coin = move |sides: u64| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x2545_f491_4f6c_dd1d) % sides
        };
        let synced_after =
            |i: usize, pred: &dyn Fn(&Step) -> bool| journal[i + 1..].iter().any(pred);
        let parent = |p: &Path| p.parent().map(Path::to_path_buf).unwrap_or_default();
        // Newest first, so that an undone rename restores the file the
        // earlier steps wrote.
        for (i, step) in journal.iter().enumerate().rev() {
            let lose = |coin: &mut dyn FnMut(u64) -> u64| match mode {
                CrashMode::Drop => true,
                CrashMode::KeepSome | CrashMode::Tear => coin(2) == 0,
            };
            match step {
                Step::Renamed(from, to, replaced) => {
                    let durable =
                        synced_after(i, &|s| matches!(s, Step::DirSynced(d) if *d == parent(to)));
                    if !durable && to.exists() && lose(&mut coin) {
                        std::fs::rename(to, from)?;
                        if let Some(bytes) = replaced {
                            std::fs::write(to, bytes)?;
                        }
                    }
                }
                Step::DirCreated(dir) => {
                    let durable =
                        synced_after(i, &|s| matches!(s, Step::DirSynced(d) if *d == parent(dir)));
                    if !durable && dir.exists() && lose(&mut coin) {
                        std::fs::remove_dir_all(dir)?;
                    }
                }
                Step::Wrote(path) => {
                    // Only the newest write of a file decides.
                    let newer_write =
                        journal[i + 1..].iter().any(|s| matches!(s, Step::Wrote(p) if p == path));
                    let durable = synced_after(i, &|s| matches!(s, Step::Synced(p) if p == path));
                    if newer_write || durable || !path.exists() {
                        continue;
                    }
                    match (mode, coin(3)) {
                        (CrashMode::Drop, _) | (_, 0) => std::fs::remove_file(path)?,
                        (CrashMode::Tear, 2) => {
                            let len = std::fs::metadata(path)?.len();
                            let sectors = len.div_ceil(512).max(1);
                            let keep = (coin(sectors) * 512).min(len);
                            File::options().write(true).open(path)?.set_len(keep)?;
                        }
                        _ => {}
                    }
                }
                Step::Synced(_) | Step::DirSynced(_) => {}
            }
        }
        Ok(())
    }
}

impl CheckpointFile for FaultFile {
    fn write_at(&mut self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        self.io.clock.tick("checkpoint file write")?;
        self.io.log(Step::Wrote(self.path.clone()));
        self.inner.write_at(offset, bytes)
    }
    fn sync(&mut self) -> io::Result<()> {
        self.io.clock.tick("checkpoint file sync")?;
        self.inner.sync()?;
        self.io.log(Step::Synced(self.path.clone()));
        Ok(())
    }
}

impl CheckpointIo for FaultIo {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.clock.tick("create directory")?;
        if !path.exists() {
            self.log(Step::DirCreated(path.to_path_buf()));
        }
        RealIo.create_dir_all(path)
    }
    fn create(&self, path: &Path) -> io::Result<Box<dyn CheckpointFile>> {
        self.clock.tick("create file")?;
        self.log(Step::Wrote(path.to_path_buf()));
        Ok(Box::new(FaultFile {
            inner: RealFile(File::create(path)?),
            path: path.to_path_buf(),
            io: self.clone(),
        }))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.clock.tick("rename")?;
        // The file the rename replaces, to bring back if it is undone.
        let replaced = std::fs::read(to).ok();
        RealIo.rename(from, to)?;
        self.log(Step::Renamed(from.to_path_buf(), to.to_path_buf(), replaced));
        Ok(())
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.clock.tick("sync directory")?;
        RealIo.sync_dir(path)?;
        self.log(Step::DirSynced(path.to_path_buf()));
        Ok(())
    }
}
