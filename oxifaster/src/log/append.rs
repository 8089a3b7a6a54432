//! Appending: entries allocated at the tail under epoch protection and
//! written in place (see the module documentation of `log`).

use std::sync::atomic::Ordering;

use super::entry::entry_size;
use super::{EPOCH_HINT, Inner, LogAddress, entry};
use crate::device::Device;
use crate::hlog::FIRST_ADDRESS;
use crate::{Error, Result};

impl<D: Device> Inner<D> {
    pub(super) fn enqueue(&self, data: &[u8], try_only: bool) -> Result<Option<LogAddress>> {
        self.check_failed()?;
        self.hlog.check_poisoned()?;
        let size = entry_size(data.len());
        if size > self.hlog.page_size() - FIRST_ADDRESS {
            return Err(self.too_large(data.len()));
        }
        let handle = if try_only {
            // Never wait, not even for a free epoch entry.
            match self.epoch.register_near(EPOCH_HINT.with(|h| *h)) {
                Ok(handle) => {
                    handle.refresh();
                    handle
                }
                Err(Error::TooManySessions { .. }) => return Ok(None),
                Err(e) => return Err(e),
            }
        } else {
            self.protect()?
        };
        let address = if try_only {
            match self.hlog.try_allocate(size, &handle)? {
                Some(a) => a,
                None => return Ok(None),
            }
        } else {
            self.hlog.allocate(size, &handle)?
        };
        crate::sync::schedule_point();
        // SAFETY: `[address, address + size)` was just allocated to us, in
        // one page whose frame is live (the tail only enters a page after
        // its frame is cleared), and we are protected; nobody reads it
        // before it is below the safe read-only address, which needs this
        // thread to leave its protection first (module invariant).
        let out =
            unsafe { std::slice::from_raw_parts_mut(self.hlog.record_ptr(address), size as usize) };
        entry::encode(address.raw(), data, out);
        drop(handle);
        self.after_enqueue(address.raw() + size);
        Ok(Some(LogAddress(address.raw())))
    }

    pub(super) fn enqueue_batch<T: AsRef<[u8]>>(&self, entries: &[T]) -> Result<Vec<LogAddress>> {
        self.check_failed()?;
        self.hlog.check_poisoned()?;
        let max = self.hlog.page_size() - FIRST_ADDRESS;
        // All or nothing: refuse an oversized entry before placing any.
        if let Some(e) = entries.iter().find(|e| entry_size(e.as_ref().len()) > max) {
            return Err(self.too_large(e.as_ref().len()));
        }
        let mut out = Vec::with_capacity(entries.len());
        let handle = self.protect()?;
        let mut i = 0;
        let mut end = 0;
        while i < entries.len() {
            // The longest run from `i` that fits in one allocation.
            let mut run = entry_size(entries[i].as_ref().len());
            let mut j = i + 1;
            while j < entries.len() {
                let next = entry_size(entries[j].as_ref().len());
                if run + next > max {
                    break;
                }
                run += next;
                j += 1;
            }
            let start = self.hlog.allocate(run, &handle)?;
            // SAFETY: as in `enqueue`: a fresh allocation in a live frame,
            // written before this thread leaves its protection.
            let bytes = unsafe {
                std::slice::from_raw_parts_mut(self.hlog.record_ptr(start), run as usize)
            };
            let mut at = 0usize;
            for e in &entries[i..j] {
                let e = e.as_ref();
                let size = entry_size(e.len()) as usize;
                let address = start.raw() + at as u64;
                entry::encode(address, e, &mut bytes[at..at + size]);
                out.push(LogAddress(address));
                at += size;
            }
            end = start.raw() + run;
            i = j;
        }
        drop(handle);
        self.after_enqueue(end);
        Ok(out)
    }

    /// Asks the auto-commit thread for a commit once enough is uncommitted.
    #[inline]
    pub(super) fn after_enqueue(&self, end: u64) {
        if self.auto_bytes != 0
            && end.saturating_sub(self.committed.load(Ordering::Relaxed)) >= self.auto_bytes
            && !self.commit_requested.swap(true, Ordering::AcqRel)
            && let Some(thread) = self.auto_thread.get()
        {
            thread.unpark();
        }
    }
}
