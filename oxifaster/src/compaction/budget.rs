//! The disk budget: a background task that keeps the store directory (log
//! segments and checkpoints) under [`StoreConfig::disk_budget`].
//!
//! Every 50 ms a gauge thread measures the directory: the blocks its
//! files take, plus what it will take without a new write (the log in
//! memory not yet written, which a fold-over checkpoint writes at once,
//! and one more checkpoint's index).
//! Past 60% of the budget it compacts the older half of the log between
//! the begin address and the tail (up to the safe read-only address),
//! then, for a store in a directory, takes a checkpoint (which makes the
//! new begin address durable: older checkpoints no longer need to be the
//! recovery point), prunes checkpoints (those taken by hand too) to
//! `keep_checkpoints`, and deletes the log segments that no remaining
//! checkpoint needs. The 40% headroom absorbs what sessions write while a round runs; past 80%
//! writers are throttled (an append waits, up to a second at a time, see
//! `HybridLog::set_throttled`) until a round brings the directory back
//! under 60%. In-place updates, which take no new space, never wait.
//!
//! The thread holds the store's shared state, not the open store: it never
//! keeps a store open, and the store's close stops and joins it before the
//! final checkpoint.
//!
//! [`StoreConfig::disk_budget`]: crate::StoreConfig::disk_budget

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::checkpoint::{self, CheckpointKind};
use crate::device::Device;
use crate::record::{Key, Value};
use crate::store::StoreInner;
use crate::{Error, Result};

/// How often the gauge measures the directory.
const PERIOD: Duration = Duration::from_millis(50);
/// Past this share of the budget, a round runs.
const HIGH_WATER_PERCENT: u64 = 60;
/// Past this share, writers are throttled until a round brings the
/// directory back under the high-water mark.
const THROTTLE_PERCENT: u64 = 80;

/// The running task (two threads: a gauge that measures the directory and
/// throttles writers, and the rounds); [`BudgetTask::stop`] ends it.
pub(crate) struct BudgetTask {
    stop: Arc<(Mutex<bool>, Condvar)>,
    threads: Vec<JoinHandle<()>>,
}

impl BudgetTask {
    /// Starts the task for a budget of `budget` bytes.
    pub(crate) fn start<K: Key, V: Value, D: Device>(
        inner: Arc<StoreInner<K, V, D>>,
        budget: u64,
    ) -> Result<Self> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let over = Arc::new(AtomicBool::new(false));
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new().name(name.into()).spawn(f).map_err(|source| Error::Io {
                context: "starting the disk budget task".into(),
                source,
            })
        };
        let gauge = {
            let (inner, stop, over) = (inner.clone(), stop.clone(), over.clone());
            spawn("oxifaster-gauge", Box::new(move || gauge(&inner, budget, &stop, &over)))?
        };
        let mut task = Self { stop: stop.clone(), threads: vec![gauge] };
        let rounds = {
            let stop = stop.clone();
            spawn("oxifaster-budget", Box::new(move || rounds(&inner, &stop, &over)))?
        };
        task.threads.push(rounds);
        Ok(task)
    }

    /// Stops the task and waits for it (and for a round it is running).
    pub(crate) fn stop(mut self) {
        self.signal();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }

    fn signal(&self) {
        let (flag, wake) = &*self.stop;
        *flag.lock().unwrap_or_else(|p| p.into_inner()) = true;
        wake.notify_all();
    }
}

impl Drop for BudgetTask {
    fn drop(&mut self) {
        self.signal();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// Sleeps for `period` unless stopped; whether it was stopped.
fn stopped(stop: &(Mutex<bool>, Condvar), period: Duration) -> bool {
    let (flag, wake) = stop;
    let stopped = flag.lock().unwrap_or_else(|p| p.into_inner());
    let (stopped, _) = wake
        .wait_timeout_while(stopped, period, |stopped| !*stopped)
        .unwrap_or_else(|p| p.into_inner());
    *stopped
}

/// Measures the directory: asks for rounds past the high-water mark, and
/// throttles writers past the throttle mark until it is back under the
/// high-water mark.
fn gauge<K: Key, V: Value, D: Device>(
    inner: &StoreInner<K, V, D>,
    budget: u64,
    stop: &(Mutex<bool>, Condvar),
    over: &AtomicBool,
) {
    while !stopped(stop, PERIOD) {
        let used = usage(inner);
        over.store(used > budget / 100 * HIGH_WATER_PERCENT, Ordering::Release);
        if used > budget / 100 * THROTTLE_PERCENT {
            inner.log.set_throttled(true);
        } else if used <= budget / 100 * HIGH_WATER_PERCENT {
            inner.log.set_throttled(false);
        }
    }
    inner.log.set_throttled(false);
}

/// Runs a round whenever the gauge says the directory is past the
/// high-water mark.
fn rounds<K: Key, V: Value, D: Device>(
    inner: &Arc<StoreInner<K, V, D>>,
    stop: &(Mutex<bool>, Condvar),
    over: &AtomicBool,
) {
    while !stopped(stop, PERIOD) {
        if !over.load(Ordering::Acquire) || inner.log.check_poisoned().is_err() {
            continue;
        }
        if let Err(e) = crate::hlog::unthrottled(|| round(inner)) {
            tracing::error!(error = %e, "a disk budget round failed");
        }
    }
}

/// One round: compact the older half of the log, checkpoint, prune,
/// delete what no checkpoint needs.
fn round<K: Key, V: Value, D: Device>(inner: &Arc<StoreInner<K, V, D>>) -> Result<()> {
    let log = &inner.log;
    // First what costs nothing: checkpoints taken since the last round may
    // have made older ones (and the log they pin) unneeded.
    if let Some(dir) = &inner.dir {
        checkpoint::retain_older(dir, inner.config.keep_checkpoints)?;
        super::reclaim(inner)?;
    }
    let page = log.page_size();
    let begin = log.begin_address().raw();
    let tail = log.tail_address().raw();
    let safe = log.safe_read_only_address().raw();
    let until = ((begin + (tail - begin) / 2).min(safe) / page * page).max(begin);
    if until > begin {
        super::compact(inner, until, super::CompactionKind::default())?;
    }
    let Some(dir) = &inner.dir else { return super::reclaim(inner).map(drop) };
    // The new begin address, durable: older checkpoints stop being the
    // newest recovery point, and pruning lets their log go.
    match inner.checkpoint_now(CheckpointKind::LogOnly) {
        Ok(_) | Err(Error::CheckpointInProgress { .. }) => {}
        Err(e) => return Err(e),
    }
    // Under a budget every checkpoint counts, taken by hand or not.
    checkpoint::retain_older(dir, inner.config.keep_checkpoints)?;
    super::reclaim(inner).map(drop)
}

/// The bytes the store directory takes (its log segments and its
/// checkpoints) and will take without any new write: the log in memory
/// that is not on the device yet (a fold-over checkpoint writes it all at
/// once) and the index file of one more checkpoint.
fn usage<K: Key, V: Value, D: Device>(inner: &StoreInner<K, V, D>) -> u64 {
    let log = &inner.log;
    let stored = log.device().stored_bytes();
    let unflushed = log.tail_address().raw().saturating_sub(log.flushed_until_address().raw());
    let checkpoints = inner.dir.as_deref().map_or(0, |dir| {
        super::directory_bytes(&dir.join("checkpoints")) + inner.index.table_size() * 64
    });
    stored + unflushed + checkpoints
}
