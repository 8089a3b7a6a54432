//! The directory lock: one open store or log per directory, across
//! processes.
//!
//! `flock(LOCK_EX | LOCK_NB)` on a `LOCK` file: the kernel releases it when
//! the process dies (a crashed writer never blocks recovery), and a second
//! open, in this process or another, fails at once with
//! [`Error::Locked`]. On platforms without `flock` the lock is not taken.

use std::fs::{File, OpenOptions};
use std::path::Path;

use crate::{Error, Result};

/// Holds the lock until dropped.
#[derive(Debug)]
pub(crate) struct LockFile {
    _file: File,
}

impl LockFile {
    pub(crate) fn acquire(path: &Path) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|source| Error::Io {
                context: format!("opening {}", path.display()),
                source,
            })?;
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            // SAFETY: `flock` on a file descriptor we own; no memory is
            // passed.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc != 0 {
                let source = std::io::Error::last_os_error();
                if source.kind() == std::io::ErrorKind::WouldBlock {
                    return Err(Error::Locked { path: path.display().to_string() });
                }
                return Err(Error::Io { context: format!("locking {}", path.display()), source });
            }
        }
        Ok(Self { _file: file })
    }
}
