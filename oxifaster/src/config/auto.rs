//! The automatic checkpoint policy: durability without a hand-written
//! checkpoint loop.
//!
//! A background thread wakes every `checkpoint_every` and, if any
//! operation ran since the last checkpoint (the store's change counter
//! moved), takes one: a fold-over with an index checkpoint when this
//! incarnation has none yet or the log has grown by more than the index's
//! own size since it, else a log-only checkpoint on the last index (no
//! index rewrite: an idle index costs nothing per checkpoint). After each
//! one it keeps the newest `keep_checkpoints` checkpoints and deletes older
//! ones that no kept one needs; it never deletes a checkpoint newer than
//! the ones it keeps (one being written by hand, say).
//!
//! The thread holds a reference to the store's shared state; the store's
//! close stops and joins it before the final checkpoint, so at most one
//! policy checkpoint and the final one never overlap.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::checkpoint::CheckpointKind;
use crate::device::Device;
use crate::record::{Key, Value};
use crate::store::StoreInner;
use crate::{Error, Result};

/// The running policy; [`AutoCheckpoint::stop`] ends it.
pub(crate) struct AutoCheckpoint {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl AutoCheckpoint {
    /// Starts the policy's thread.
    pub(crate) fn start<K: Key, V: Value, D: Device>(
        inner: Arc<StoreInner<K, V, D>>,
        interval: Duration,
    ) -> Result<Self> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name("oxifaster-autockpt".into())
            .spawn(move || run(&inner, interval, &stop2))
            .map_err(|source| Error::Io {
                context: "starting the automatic checkpoint thread".into(),
                source,
            })?;
        Ok(Self { stop, thread: Some(thread) })
    }

    /// Stops the thread and waits for it (and for a checkpoint it is
    /// taking).
    pub(crate) fn stop(mut self) {
        self.signal();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }

    fn signal(&self) {
        let (flag, wake) = &*self.stop;
        *flag.lock().unwrap_or_else(|p| p.into_inner()) = true;
        wake.notify_all();
    }
}

impl Drop for AutoCheckpoint {
    fn drop(&mut self) {
        self.signal();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run<K: Key, V: Value, D: Device>(
    inner: &StoreInner<K, V, D>,
    interval: Duration,
    stop: &(Mutex<bool>, Condvar),
) {
    let (flag, wake) = stop;
    loop {
        {
            let stopped = flag.lock().unwrap_or_else(|p| p.into_inner());
            let (stopped, _) = wake
                .wait_timeout_while(stopped, interval, |stopped| !*stopped)
                .unwrap_or_else(|p| p.into_inner());
            if *stopped {
                return;
            }
        }
        if inner.log.check_poisoned().is_err() || !inner.changed_since_checkpoint() {
            continue;
        }
        let kind = inner.policy_kind();
        match inner.checkpoint_now(kind) {
            Ok(_) => {
                if let Some(dir) = &inner.dir
                    && let Err(e) =
                        crate::checkpoint::retain_older(dir, inner.config.keep_checkpoints)
                {
                    tracing::warn!(error = %e, "pruning old checkpoints failed");
                }
            }
            // One taken by hand is running: it serves as well.
            Err(Error::CheckpointInProgress { .. }) => {}
            Err(e) => tracing::error!(error = %e, "the automatic checkpoint failed"),
        }
    }
}

impl<K: Key, V: Value, D: Device> StoreInner<K, V, D> {
    /// The kind the policy takes now: log-only on this incarnation's index
    /// checkpoint while the log has grown less than the index's size since
    /// it, else a fold-over with a fresh index checkpoint.
    pub(crate) fn policy_kind(&self) -> CheckpointKind {
        let last_index = self.checkpoints.last_index_end();
        let tail = self.log.tail_address().raw();
        let index_bytes = self.index.table_size() * 64;
        match last_index {
            Some(end) if tail.saturating_sub(end) < index_bytes.max(64 << 20) => {
                CheckpointKind::LogOnly
            }
            _ => CheckpointKind::FoldOver,
        }
    }
}
