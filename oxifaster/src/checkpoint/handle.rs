//! The checkpoint operations of a [`Store`] handle: taking one in the
//! background or on this thread, waiting for it, and resuming the sessions
//! of the checkpoint a store was recovered from.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};

use super::list;
use crate::cpr::{Busy, CheckpointInfo, CheckpointKind, CheckpointToken, CommitPoint, Task};
use crate::device::Device;
use crate::record::{Key, Value};
use crate::store::Store;
use crate::{Error, Result};

impl<K: Key, V: Value> Store<K, V> {
    /// Every complete checkpoint in `dir`, oldest first.
    pub fn checkpoints(dir: impl AsRef<Path>) -> Result<Vec<CheckpointInfo>> {
        list(dir)
    }
}

impl<K: Key, V: Value, D: Device> Store<K, V, D> {
    /// Takes a checkpoint on this thread and returns when it is durable.
    /// Sessions on other threads keep running meanwhile; a session on this
    /// thread may stay open (it is not protected between operations).
    ///
    /// ```
    /// use oxifaster::checkpoint::CheckpointKind;
    /// use oxifaster::Store;
    ///
    /// let dir = tempfile::tempdir()?;
    /// let store: Store<u64, u64> =
    ///     Store::<u64, u64>::builder().dir(dir.path()).log_memory_size_bytes(1 << 24).open()?;
    /// let mut session = store.start_session()?;
    /// session.upsert(&1, &10)?;
    /// let info = store.checkpoint_and_wait(CheckpointKind::FoldOver)?;
    /// assert_eq!(info.commit_point(session.id()).map(|p| p.until), Some(1));
    /// drop(session);
    /// drop(store);
    ///
    /// let store = Store::<u64, u64>::recover(dir.path(), info.token.as_str())?;
    /// let mut session = store.start_session()?;
    /// assert_eq!(session.read_blocking(&1)?, Some(10));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn checkpoint_and_wait(&self, kind: CheckpointKind) -> Result<CheckpointInfo> {
        self.inner.checkpoint_now(kind)
    }

    /// Starts a checkpoint on a background thread and returns its token at
    /// once; [`Store::wait_for_checkpoint`] (or the async form) waits for
    /// it. One checkpoint runs at a time: starting another meanwhile is
    /// [`Error::CheckpointInProgress`].
    pub fn checkpoint(&self, kind: CheckpointKind) -> Result<CheckpointToken> {
        let token = self.inner.claim_checkpoint()?;
        let task = Arc::new(Task {
            token: token.clone(),
            result: Mutex::new(None),
            finished: Condvar::new(),
        });
        let control = &self.inner.checkpoints;
        {
            // Results of finished checkpoints are kept for the last 64 of
            // them (for `wait_for_checkpoint`), not forever.
            let mut tasks = control.tasks.lock().unwrap_or_else(|p| p.into_inner());
            let finished =
                |t: &Arc<Task>| t.result.lock().unwrap_or_else(|p| p.into_inner()).is_some();
            let done = tasks.iter().filter(|t| finished(t)).count();
            let mut excess = done.saturating_sub(64);
            tasks.retain(|t| {
                let drop = excess > 0 && finished(t);
                excess -= usize::from(drop);
                !drop
            });
            tasks.push(task.clone());
        }
        let inner = self.inner.clone();
        let thread = std::thread::Builder::new()
            .name("oxifaster-checkpoint".into())
            .spawn(move || {
                let result = {
                    let _busy = Busy(&inner.checkpoints.busy);
                    // A panic inside the checkpoint (a user callback, a
                    // bug) is reported to every waiter, never a hang.
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        inner.run_checkpoint(kind, &task.token)
                    }))
                    .unwrap_or_else(|panic| {
                        Err(Error::CheckpointFailed {
                            token: task.token.to_string(),
                            message: format!("the checkpoint panicked: {}", panic_message(&*panic)),
                            source: None,
                        })
                    })
                    .map_err(Arc::new)
                };
                *task.result.lock().unwrap_or_else(|p| p.into_inner()) = Some(result);
                task.finished.notify_all();
            })
            .map_err(|source| {
                control.busy.store(false, Ordering::Release);
                Error::Io { context: "starting the checkpoint thread".into(), source }
            })?;
        let mut threads = control.threads.lock().unwrap_or_else(|p| p.into_inner());
        threads.retain(|t| !t.is_finished());
        threads.push(thread);
        Ok(token)
    }

    /// Waits for a checkpoint started with [`Store::checkpoint`].
    pub fn wait_for_checkpoint(&self, token: &CheckpointToken) -> Result<CheckpointInfo> {
        let task = {
            let tasks = self.inner.checkpoints.tasks.lock().unwrap_or_else(|p| p.into_inner());
            tasks.iter().find(|t| t.token == *token).cloned()
        };
        let Some(task) = task else {
            return Err(Error::CheckpointNotFound {
                token: token.to_string(),
                dir: self.dir().map(Path::to_path_buf).unwrap_or_default(),
            });
        };
        wait_task(&task)
    }

    /// Awaits a checkpoint started with [`Store::checkpoint`] without
    /// blocking the async runtime.
    #[cfg(feature = "tokio")]
    pub async fn checkpoint_async(&self, kind: CheckpointKind) -> Result<CheckpointInfo> {
        let token = self.checkpoint(kind)?;
        let task = {
            let tasks = self.inner.checkpoints.tasks.lock().unwrap_or_else(|p| p.into_inner());
            tasks.iter().find(|t| t.token == token).cloned()
        };
        let Some(task) = task else {
            return Err(Error::CheckpointNotFound {
                token: token.to_string(),
                dir: self.dir().map(Path::to_path_buf).unwrap_or_default(),
            });
        };
        tokio::task::spawn_blocking(move || wait_task(&task)).await.map_err(|e| Error::Io {
            context: "waiting for a checkpoint".into(),
            source: std::io::Error::other(e),
        })?
    }

    /// The checkpoint this store was recovered from, with every session's
    /// commit point, if it was recovered.
    pub fn recovered(&self) -> Option<CheckpointInfo> {
        self.inner.checkpoints.recovered.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The sessions of the checkpoint this store was recovered from, with
    /// their commit points: `continue_session(id)` resumes one.
    pub fn recovered_sessions(&self) -> Vec<(u64, CommitPoint)> {
        self.recovered().map(|info| info.sessions).unwrap_or_default()
    }

    /// Resumes a recovered session: returns it, with its serial number set
    /// to its commit point's `until`, and the commit point (reissue the
    /// operations after `until` and those in `excluded`).
    pub fn continue_session(&self, id: u64) -> Result<(crate::Session<K, V, D>, CommitPoint)> {
        let point = self
            .recovered_sessions()
            .into_iter()
            .find(|(s, _)| *s == id)
            .map(|(_, p)| p)
            .ok_or(Error::UnknownSession { id })?;
        let (version, _) = self.inner.cpr.load();
        let slot = self.inner.sessions.reopen(id, version).ok_or(Error::UnknownSession { id })?;
        let session = crate::Session::new(self.open.clone(), slot, point.until)?;
        Ok((session, point))
    }
}

/// The text of a caught panic's payload.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".into()
    }
}

fn wait_task(task: &Task) -> Result<CheckpointInfo> {
    let mut result = task.result.lock().unwrap_or_else(|p| p.into_inner());
    while result.is_none() {
        result = task.finished.wait(result).unwrap_or_else(|p| p.into_inner());
    }
    match result.clone() {
        Some(Ok(info)) => Ok(info),
        Some(Err(message)) => Err(Error::CheckpointFailed {
            token: task.token.to_string(),
            message: message.to_string(),
            source: Some(message),
        }),
        None => Err(Error::CheckpointFailed {
            token: task.token.to_string(),
            message: "no result".into(),
            source: None,
        }),
    }
}
