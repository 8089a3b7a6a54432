//! Group commit: making appended entries durable (the flush, the commit
//! record, the waiters) and the automatic commit thread.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::commit::{self, CommitRecord, SLOT_SIZE};
use super::{CommitState, Inner, LogAddress};
use crate::device::Device;
use crate::{Error, Result};

impl<D: Device> Inner<D> {
    pub(super) fn commit(&self, cookie: Option<&[u8]>) -> Result<LogAddress> {
        self.check_failed()?;
        let wanted = self.hlog.tail_address().raw();
        let mut state = self.lock_state();
        let dirty = self.iterators_dirty.load(Ordering::Acquire);
        if cookie.is_none() && !dirty && self.committed.load(Ordering::Acquire) >= wanted {
            // A commit that ran while we waited for the lock covered us.
            self.check_failed()?;
            return Ok(LogAddress(self.committed.load(Ordering::Acquire)));
        }
        self.commit_locked(&mut state, |record| {
            if let Some(cookie) = cookie {
                record.cookie = cookie.to_vec();
            }
        })
    }

    /// One commit: flush and sync the entries up to the tail, then write and
    /// sync the next commit record (as changed by `change`).
    pub(super) fn commit_locked(
        &self,
        state: &mut CommitState,
        change: impl FnOnce(&mut CommitRecord),
    ) -> Result<LogAddress> {
        self.check_failed()?;
        let target = self.hlog.tail_address();
        // The record first: a record that cannot be written changes nothing.
        let mut next = state.record.clone();
        next.seq += 1;
        next.committed = next.committed.max(target.raw());
        let iterators_dirty = self.iterators_dirty.swap(false, Ordering::AcqRel);
        if iterators_dirty {
            next.iterators = self.lock_iterators().clone();
        }
        change(&mut next);
        let bytes = next.encode().map_err(|why| {
            self.iterators_dirty.fetch_or(iterators_dirty, Ordering::AcqRel);
            Error::InvalidConfig { what: "commit record", why }
        })?;
        {
            let handle = self.protect()?;
            self.hlog.flush_written(target, &handle).map_err(|e| self.fail(e))?;
            // Leave the epoch before the sync: page flushes and head shifts
            // must not wait for it.
        }
        self.hlog.sync_device().map_err(|e| self.fail(e))?;
        let io = |context: &str| {
            let context = context.to_owned();
            move |source| self.fail(Error::Io { context, source })
        };
        // Spilled ranges go to this commit's region before the record
        // that names them (and only when the region holds others).
        if let Some(spilled) = next.spill_bytes() {
            let key = (spilled.len(), crc32c::crc32c(&spilled));
            let region = (next.seq % 2) as usize;
            if state.regions[region] != Some(key) {
                state.regions[region] = None;
                let at = commit::region_offset(next.seq);
                self.commits.write_at(at, &spilled).map_err(io("writing dropped ranges"))?;
                self.commits.sync().map_err(io("syncing dropped ranges"))?;
                state.regions[region] = Some(key);
            }
        }
        let slot = (next.seq % 2) * SLOT_SIZE;
        self.commits.write_at(slot, &bytes).map_err(io("writing the commit record"))?;
        self.commits.sync().map_err(io("syncing the commit record"))?;
        if next.seq == 1 {
            // The first commit goes to both slots (before it is
            // acknowledged), so that from now on one damaged slot always
            // leaves a valid one: an empty slot beside a damaged one then
            // means the first commit never completed.
            self.commits.write_at(0, &bytes).map_err(io("writing the commit record"))?;
            self.commits.sync().map_err(io("syncing the commit record"))?;
        }
        let committed = next.committed;
        state.record = next;
        self.committed.store(committed, Ordering::Release);
        self.signal.notify();
        Ok(LogAddress(committed))
    }

    pub(super) fn wait_for_commit(&self, address: u64) -> Result<()> {
        self.signal.wait_until(|| self.commit_status(address).transpose())
    }

    /// `Some(Ok)` once `address` is committed, `Some(Err)` if it never will
    /// be (failed or closed), `None` while waiting makes sense.
    pub(super) fn commit_status(&self, address: u64) -> Result<Option<()>> {
        if self.committed.load(Ordering::Acquire) > address {
            return Ok(Some(()));
        }
        self.check_failed()?;
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Poisoned {
                message: "the log was closed before the entry was committed".into(),
                kind: None,
            });
        }
        Ok(None)
    }
}

/// The background committer: commits every `interval`, and when asked by
/// an enqueue that passed the size threshold.
pub(super) fn auto_commit<D: Device>(inner: Arc<Inner<D>>, interval: Option<Duration>) {
    let mut last = Instant::now();
    loop {
        match interval {
            Some(every) => std::thread::park_timeout(every.saturating_sub(last.elapsed())),
            None => std::thread::park(),
        }
        if inner.closed.load(Ordering::Acquire) {
            return;
        }
        let due = interval.is_some_and(|every| last.elapsed() >= every);
        let asked = inner.commit_requested.swap(false, Ordering::AcqRel);
        if !due && !asked {
            continue;
        }
        last = Instant::now();
        let pending = inner.hlog.tail_address().raw() > inner.committed.load(Ordering::Acquire)
            || inner.iterators_dirty.load(Ordering::Acquire);
        if pending && inner.commit(None).is_err() && inner.failed.get().is_some() {
            // The log is poisoned; waiters have the error. Other errors
            // (say, no free epoch entry for a moment) are retried.
            return;
        }
    }
}
