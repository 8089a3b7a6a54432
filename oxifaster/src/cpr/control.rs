//! A store's checkpoint bookkeeping: the running checkpoint, background
//! checkpoint tasks, and what the next checkpoint builds on.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use super::types::{CheckpointInfo, CheckpointToken};
use crate::Error;

/// Where the index checkpoint a log checkpoint builds on is.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq, Eq)]
pub(crate) struct IndexRef {
    /// The checkpoint directory that holds the `index` file.
    pub(crate) token: String,
    pub(crate) log_start: u64,
    pub(crate) log_end: u64,
    pub(crate) table_size: u64,
}

/// The part of the log a snapshot checkpoint wrote to its own file.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq, Eq)]
pub(crate) struct SnapshotRef {
    /// The checkpoint directory holding the `snapshot` file (the
    /// checkpoint's own, or for an incremental snapshot its base's).
    pub(crate) token: String,
    /// The log address of the file's first byte (a page boundary).
    pub(crate) from: u64,
    /// The file's length: it ends at the (base) checkpoint's final address.
    pub(crate) len: u64,
    /// XXH3-64 of the file.
    pub(crate) checksum: u64,
}

/// A checkpoint started with [`Store::checkpoint`].
#[derive(Debug)]
pub(crate) struct Task {
    pub(crate) token: CheckpointToken,
    pub(crate) result: Mutex<Option<std::result::Result<CheckpointInfo, Arc<Error>>>>,
    pub(crate) finished: Condvar,
}

/// A store's checkpoint bookkeeping.
#[derive(Debug, Default)]
pub(crate) struct Control {
    /// Set while a checkpoint runs.
    pub(crate) busy: AtomicBool,
    /// Background checkpoints, newest last.
    pub(crate) tasks: Mutex<Vec<Arc<Task>>>,
    pub(crate) threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// The last index checkpoint of this incarnation of the log.
    pub(crate) last_index: Mutex<Option<IndexRef>>,
    /// The last full snapshot of this incarnation, and its version: the
    /// base of incremental snapshots.
    pub(crate) last_snapshot: Mutex<Option<(u32, SnapshotRef)>>,
    /// What recovery found, if the store was recovered.
    pub(crate) recovered: Mutex<Option<CheckpointInfo>>,
    /// The log's dead ranges (see `meta::Gap`), in order.
    pub(crate) gaps: Mutex<Vec<(u64, u64)>>,
    /// Damaged checkpoints that recovery skipped: (token, why).
    pub(crate) skipped: Mutex<Vec<(String, String)>>,
    /// The store's write count and tail when the last checkpoint
    /// started (see `StoreInner::changed_since_checkpoint`).
    pub(crate) started_at: Mutex<Option<(u64, u64)>>,
    /// The begin address the running checkpoint recorded at its start (it
    /// needs the log from there on). Held while a checkpoint records it
    /// and while log segments are deleted, so that a deletion never
    /// removes what a checkpoint that started meanwhile needs.
    pub(crate) log_pin: Mutex<Option<u64>>,
}

impl Control {
    /// Where this incarnation's last index checkpoint ends, if it has one.
    pub(crate) fn last_index_end(&self) -> Option<u64> {
        self.last_index.lock().unwrap_or_else(|p| p.into_inner()).as_ref().map(|i| i.log_end)
    }

    /// Waits for background checkpoints (the store is being dropped).
    pub(crate) fn join_running(&self) {
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        for thread in threads {
            let _ = thread.join();
        }
    }
}

/// Clears the busy flag however the checkpoint ends.
pub(crate) struct Busy<'a>(pub(crate) &'a AtomicBool);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}
