//! Truncation: dropping the log's head (`truncate_until`) or everything
//! after an entry (`truncate_after`).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::{Inner, commit};
use crate::device::Device;
use crate::hlog::FIRST_ADDRESS;
use crate::{Error, Result};

impl<D: Device> Inner<D> {
    pub(super) fn truncate_until(self: &Arc<Self>, address: u64) -> Result<()> {
        let mut state = self.lock_state();
        let committed = self.committed.load(Ordering::Acquire);
        if address > committed {
            return Err(Error::InvalidAddress {
                address,
                why: "truncate_until takes an address at or below the commit point",
            });
        }
        let address = address.max(state.record.begin);
        if !self.is_boundary(address, state.record.begin)? {
            return Err(Error::InvalidAddress { address, why: "no entry starts here" });
        }
        self.commit_locked(&mut state, |record| {
            record.begin = address;
            record.dropped =
                record.dropped.iter().filter(|(_, to)| *to > address).copied().collect();
        })?;
        *self.dropped.write().unwrap_or_else(|p| p.into_inner()) = state.record.dropped.clone();
        self.begin.store(address, Ordering::Release);
        // The new begin is durable: the files below it may go.
        self.hlog.device().truncate_before(address).map_err(|source| Error::Io {
            context: format!("deleting log segments below {address:#x}"),
            source,
        })
    }

    pub(super) fn truncate_after(self: &Arc<Self>, address: u64) -> Result<()> {
        if !address.is_multiple_of(8) || address < FIRST_ADDRESS {
            return Err(Error::InvalidAddress { address, why: "not an entry address" });
        }
        let mut state = self.lock_state();
        // Commit first: the entries up to the cut become durable and can be
        // walked to check that the cut falls between two of them.
        self.commit_locked(&mut state, |_| {})?;
        let address = address.max(state.record.begin);
        let tail = self.committed.load(Ordering::Acquire);
        if address >= tail {
            return Ok(());
        }
        if !self.is_boundary(address, state.record.begin)? {
            return Err(Error::InvalidAddress { address, why: "no entry starts here" });
        }
        let mut dropped = state.record.dropped.to_vec();
        // Ranges inside the new one are absorbed; one overlapping its start
        // is extended.
        dropped.retain(|(from, _)| *from < address);
        match dropped.last_mut() {
            Some((_, to)) if *to >= address => *to = tail,
            _ => dropped.push((address, tail)),
        }
        if dropped.len() > commit::MAX_DROPPED {
            return Err(Error::InvalidConfig {
                what: "truncate_after",
                why: format!(
                    "{} dropped ranges are recorded already; truncate_until past some first",
                    commit::MAX_DROPPED
                ),
            });
        }
        let published: Arc<[(u64, u64)]> = dropped.into();
        let ranges = published.clone();
        self.commit_locked(&mut state, |record| record.dropped = ranges)?;
        // Durable: readers stop seeing the range.
        *self.dropped.write().unwrap_or_else(|p| p.into_inner()) = published;
        Ok(())
    }
}
