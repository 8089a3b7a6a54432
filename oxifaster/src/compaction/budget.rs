//! The disk budget: a background task that keeps the store directory (log
//! segments and checkpoints) under [`StoreConfig::disk_budget`].
//!
//! Its usage measure is the blocks the log segments and the checkpoints
//! take, plus what they will take without a new write: the log in memory
//! not yet written (a fold-over checkpoint writes it at once) and one more
//! checkpoint's index.
//!
//! A *round* runs when the log (begin address to tail) outgrows its share
//! — 85% of the budget less the checkpoints — or the usage passes 70%:
//! it compacts the older half of the log (up to the safe read-only
//! address), then takes `keep_checkpoints` checkpoints at the new begin
//! address (a fold-over with a fresh index, then log-only ones on it), so
//! that no kept checkpoint needs the log below it, prunes the older ones
//! (those taken by hand too) and deletes the segments nothing needs. A
//! round that finds the log within its share but older checkpoints holding
//! log below the begin address (taken by hand, say) only checkpoints and
//! prunes. Compacting the *oldest* half keeps copies few: under steady
//! updates, the oldest records are the most likely superseded.
//!
//! A gauge thread measures every 50 ms (and the task once before the
//! store opens) and sets the log's admission control
//! (`HybridLog::throttle_at`) each time: appends may take the tail only as
//! far as 95% of the budget allows, as of that measurement, then wait
//! while a round runs (however long it takes: a round's own appends are
//! never throttled, so it ends), and up to a second when none does (the
//! live data may not fit the budget; then the bound gives). The limit is
//! set at every measurement, not only near the budget: a writer can
//! append more than the whole budget between two of them. In-place updates, which take no new space, never wait. A
//! round
//! that finds its range nearly all live (the live data hardly fits the
//! budget) makes the next one wait a second rather than copy the same
//! records again and again.
//!
//! The thread holds the store's shared state, not the open store: it never
//! keeps a store open, and the store's close stops and joins it before the
//! final checkpoint.
//!
//! [`StoreConfig::disk_budget`]: crate::StoreConfig::disk_budget

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
/// The share of the budget for the log and the checkpoints; the rest is a
/// margin for what sessions write while a round runs.
const LOG_ROOM_PERCENT: u64 = 85;
/// Past this share of the budget, a round runs whatever the log's size.
const HIGH_WATER_PERCENT: u64 = 70;
/// Appends may not take the directory past this share of the budget: they
/// wait at the tail address where it would be (as of the last measurement)
/// until rounds make room.
const THROTTLE_PERCENT: u64 = 95;
/// Past this share, a round that has no compaction to do checkpoints to
/// let go of log that only older checkpoints need.
const RELEASE_PERCENT: u64 = 85;

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
        // Admission is set before the store is handed out: a writer can
        // append more than the whole budget before the gauge's first tick.
        admit(&inner, budget);
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new().name(name.into()).spawn(f).map_err(|source| Error::Io {
                context: "starting the disk budget task".into(),
                source,
            })
        };
        let gauge = {
            let (inner, stop) = (inner.clone(), stop.clone());
            spawn("oxifaster-gauge", Box::new(move || gauge(&inner, budget, &stop)))?
        };
        let mut task = Self { stop: stop.clone(), threads: vec![gauge] };
        let rounds = {
            let stop = stop.clone();
            spawn("oxifaster-budget", Box::new(move || rounds(&inner, budget, &stop)))?
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

/// Measures the directory every period and lets writers append only what
/// the throttle mark still has room for ([`admit`]).
fn gauge<K: Key, V: Value, D: Device>(
    inner: &StoreInner<K, V, D>,
    budget: u64,
    stop: &(Mutex<bool>, Condvar),
) {
    while !stopped(stop, PERIOD) {
        admit(inner, budget);
    }
    inner.log.throttle_at(None);
}

/// Measures the directory and sets the tail address appends may reach
/// until the next measurement: the tail plus what the throttle mark still
/// has room for. The tail is read before the measurement, so that what is
/// appended while the directory is walked counts against the room, not on
/// top of it.
fn admit<K: Key, V: Value, D: Device>(inner: &StoreInner<K, V, D>, budget: u64) {
    let tail = inner.log.tail_address().raw();
    let room = (budget / 100 * THROTTLE_PERCENT).saturating_sub(usage(inner));
    inner.log.throttle_at(crate::address::Address::new(tail + room));
}

/// Runs a round whenever the log outgrows its share of the budget.
fn rounds<K: Key, V: Value, D: Device>(
    inner: &Arc<StoreInner<K, V, D>>,
    budget: u64,
    stop: &(Mutex<bool>, Condvar),
) {
    let mut pause = PERIOD;
    while !stopped(stop, pause) {
        pause = PERIOD;
        if inner.log.check_poisoned().is_err() {
            continue;
        }
        // Throttled writers wait for a running round, however long.
        inner.log.set_making_room(true);
        let done = crate::hlog::unthrottled(|| round(inner, budget));
        inner.log.set_making_room(false);
        match done {
            // A range nearly all live gives little back: the live data
            // hardly fits the budget. Rounds slow down rather than copy
            // the same records over and over.
            Ok(Round::Compacted(r)) if r.copied_bytes * 10 > (r.until - r.from) * 9 => {
                pause = Duration::from_secs(1);
            }
            // A checkpoint only: not again right away.
            Ok(Round::Checkpointed) => pause = Duration::from_secs(1),
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "a disk budget round failed"),
        }
    }
}

/// One round, if the log (from the begin address to the tail, in memory or
/// not) has outgrown its share of the budget: compact its older half,
/// checkpoint, prune, delete what no checkpoint needs.
///
/// The log's share is what the budget leaves, less a margin, once the
/// checkpoints (and one more index) are counted.
fn round<K: Key, V: Value, D: Device>(
    inner: &Arc<StoreInner<K, V, D>>,
    budget: u64,
) -> Result<Round> {
    let log = &inner.log;
    // First what costs nothing: checkpoints taken since the last round may
    // have made older ones (and the log they pin) unneeded.
    if let Some(dir) = &inner.dir {
        checkpoint::retain_older(dir, inner.config.keep_checkpoints)?;
        super::reclaim(inner)?;
    }
    let room = (budget / 100 * LOG_ROOM_PERCENT).saturating_sub(checkpoint_bytes(inner));
    let page = log.page_size();
    let begin = log.begin_address().raw();
    let tail = log.tail_address().raw();
    // One measure of the directory (a walk of its files) for both tests.
    let used = usage(inner);
    let report = if tail - begin > room || used > budget / 100 * HIGH_WATER_PERCENT {
        let safe = log.safe_read_only_address().raw();
        let until = ((begin + (tail - begin) / 2).min(safe) / page * page).max(begin);
        match until > begin {
            true => Some(super::compact(inner, until, super::CompactionKind::default())?),
            false => None,
        }
    } else {
        // The log fits its share; still, past the release mark, log below
        // the begin address that only an older checkpoint needs is worth
        // a checkpoint to let go.
        let pinned = super::needed_from(inner, None)? < begin;
        if !(pinned && used > budget / 100 * RELEASE_PERCENT) {
            return Ok(Round::Idle);
        }
        None
    };
    let done = match report {
        Some(report) => Round::Compacted(report),
        None => Round::Checkpointed,
    };
    let Some(dir) = &inner.dir else { return super::reclaim(inner).map(|_| done) };
    // The new begin address, durable, in as many checkpoints as are kept:
    // then no kept checkpoint needs the log below it, and it can go now.
    // The first with a fresh index (a log-only checkpoint would keep the
    // one whose index it uses, and with it that one's older log), the
    // others log-only on it.
    for kind in std::iter::once(CheckpointKind::FoldOver)
        .chain(std::iter::repeat_n(CheckpointKind::LogOnly, inner.config.keep_checkpoints - 1))
    {
        match inner.checkpoint_now(kind) {
            Ok(_) | Err(Error::CheckpointInProgress { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    // Under a budget every checkpoint counts, taken by hand or not.
    checkpoint::retain_older(dir, inner.config.keep_checkpoints)?;
    super::reclaim(inner)?;
    Ok(done)
}

/// What a round did.
enum Round {
    /// Nothing: the log fits its share.
    Idle,
    /// A checkpoint (and pruning) only, to let go of log that an older
    /// checkpoint held.
    Checkpointed,
    /// A compaction, then a checkpoint.
    Compacted(super::CompactionReport),
}

/// The bytes the store's checkpoints take, and what they will add before
/// pruning: one more index for the round's checkpoint and, while another
/// checkpoint runs, one for it (its index may be half written), and
/// `keep_checkpoints` more sets of small files (metadata; a log-only
/// checkpoint takes 8 KiB).
fn checkpoint_bytes<K: Key, V: Value, D: Device>(inner: &StoreInner<K, V, D>) -> u64 {
    inner.dir.as_deref().map_or(0, |dir| {
        let running = inner.checkpoints.log_pin.lock().unwrap_or_else(|p| p.into_inner()).is_some();
        let next = inner.index.table_size() * 64 * (1 + u64::from(running))
            + inner.config.keep_checkpoints as u64 * CHECKPOINT_FILES_BYTES;
        super::directory_bytes(&dir.join("checkpoints")) + next
    })
}

/// What a checkpoint's files other than its index take on disk, at most.
const CHECKPOINT_FILES_BYTES: u64 = 64 << 10;

/// The bytes the store directory takes (its log segments and its
/// checkpoints) and will take without any new write: the log in memory
/// that is not on the device yet (a fold-over checkpoint writes it all at
/// once) and the index file of one more checkpoint.
fn usage<K: Key, V: Value, D: Device>(inner: &StoreInner<K, V, D>) -> u64 {
    let log = &inner.log;
    let stored = log.device().stored_bytes();
    let unflushed = log.tail_address().raw().saturating_sub(log.flushed_until_address().raw());
    stored + unflushed + checkpoint_bytes(inner)
}
