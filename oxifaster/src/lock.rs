//! The directory lock: one open store or log per directory, across
//! processes.
//!
//! `flock(LOCK_EX | LOCK_NB)` on a `LOCK` file: the kernel releases it when
//! the process dies (a crashed writer never blocks recovery), and a second
//! open, in this process or another, fails with [`Error::Locked`] after
//! retrying for up to 100 ms (a forked child briefly shares a just-released
//! lock). On platforms without `flock` the lock is not taken.

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
            // A lock just released can still be held for a moment by a
            // child process this one is forking (it shares the open file
            // until it execs and closes it): retry briefly before
            // reporting the directory locked.
            let mut attempts = 0;
            loop {
                // SAFETY: `flock` on a file descriptor we own; no memory is
                // passed.
                let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
                if rc == 0 {
                    break;
                }
                let source = std::io::Error::last_os_error();
                if source.kind() != std::io::ErrorKind::WouldBlock {
                    return Err(Error::Io {
                        context: format!("locking {}", path.display()),
                        source,
                    });
                }
                attempts += 1;
                if attempts >= 20 {
                    return Err(Error::Locked { path: path.to_path_buf() });
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
        Ok(Self { _file: file })
    }
}

/// `dir`, or a new temporary directory named `prefix…` (returned too: the
/// directory is removed when it is dropped) when there is none.
pub(crate) fn dir_or_temp(
    dir: Option<&std::path::Path>,
    prefix: &str,
) -> crate::Result<(std::path::PathBuf, Option<tempfile::TempDir>)> {
    match dir {
        Some(dir) => Ok((dir.to_path_buf(), None)),
        None => {
            let temp = tempfile::Builder::new().prefix(prefix).tempdir().map_err(|source| {
                crate::Error::Io { context: "creating a temporary directory".into(), source }
            })?;
            Ok((temp.path().to_path_buf(), Some(temp)))
        }
    }
}
