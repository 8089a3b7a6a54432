//! The Raft log on a [`FasterLog`].
//!
//! Each Raft entry is one log entry (its postcard encoding). The vote, the
//! committed log id and the last purged log id travel in the log's commit
//! cookie, so that they are durable exactly with the commit that carries
//! them. In memory the store keeps, for every present entry, its log id and
//! address (rebuilt at open by one scan of the log).
//!
//! Invariants:
//!
//! 1. An append places its entries in the log and lists them at once, and
//!    hands its flush callback to the store's committer thread, which
//!    commits (one fsync for every append queued meanwhile: group commit)
//!    and only then reports those appends flushed, in order. A reader
//!    waits for an entry's commit before it reads it. So Raft may queue the
//!    next append while one is being synced, and a crash never loses an
//!    append reported flushed.
//! 2. The listed entries have increasing indexes (Raft appends them
//!    consecutively), all above the last purged log id.
//! 3. A purge makes its log id durable (cookie) before it releases the
//!    log's prefix: after a crash in between, the open skips entries at or
//!    below it. A conflict truncation (`truncate_after`) is durable when it
//!    returns; the dropped entries never come back.
//! 4. With a purge limit (`limit_purges`, a node's state machine's durable
//!    snapshot), a purge never releases entries the newest durable
//!    snapshot does not cover: openraft asks for a purge as soon as it
//!    hands a received snapshot to the state machine, before the install
//!    is durable, and a crash in between must find those entries still in
//!    the log. Such a purge waits for the install (at most a minute, then
//!    it fails: a snapshot that never becomes durable stops the node).
//! 5. The committed log id is written with the next commit of the log (an
//!    append, a vote, a purge): it is never durable ahead of the entries it
//!    names, and after a crash it may be behind (which Raft allows).

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak, mpsc};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, OptionalSend, RaftLogReader, StorageIOError, Vote};
use oxifaster::log::{FasterLog, LogAddress, LogConfig};
use serde::{Deserialize, Serialize};

use crate::types::{Entry, LogId, NodeId, StorageError, TypeConfig};

/// What the commit cookie holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Cookie {
    /// The cookie's format (1).
    format: u32,
    vote: Option<Vote<NodeId>>,
    committed: Option<LogId>,
    last_purged: Option<LogId>,
}

const COOKIE_FORMAT: u32 = 1;

#[derive(Debug, Default)]
struct Listing {
    /// The present entries by index: log id and address.
    entries: BTreeMap<u64, (LogId, LogAddress)>,
    cookie: Cookie,
}

impl Listing {
    fn last_log_id(&self) -> Option<LogId> {
        self.entries.last_key_value().map(|(_, (id, _))| *id).or(self.cookie.last_purged)
    }
}

#[derive(Debug)]
struct Shared {
    log: FasterLog,
    listing: Mutex<Listing>,
    /// The committer thread's queue (see invariant 1).
    flushes: Mutex<mpsc::Sender<LogFlushed<TypeConfig>>>,
    /// Held by a commit with a cookie (see `commit_with`).
    committing: Mutex<()>,
    /// Purges release entries below this index only (invariant 4).
    purge_limit: Mutex<Option<Arc<AtomicU64>>>,
}

impl Shared {
    fn listing(&self) -> MutexGuard<'_, Listing> {
        // A panic while the listing was held leaves it as it was before the
        // panicking call's first change, or with that change whole: each
        // change is one assignment or one push/truncate.
        self.listing.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Applies `update` to the cookie and commits the log with it (durable
    /// when this returns). One commit with a cookie at a time: the cookie
    /// a commit writes is the newest, so no commit can write back an older
    /// vote or purge point over a newer one.
    fn commit_with(&self, update: impl FnOnce(&mut Cookie)) -> Result<(), StorageError> {
        let _one_at_a_time = self.committing.lock().unwrap_or_else(|p| p.into_inner());
        let cookie = {
            let mut listing = self.listing();
            update(&mut listing.cookie);
            listing.cookie.format = COOKIE_FORMAT;
            listing.cookie.clone()
        };
        let bytes = postcard::to_allocvec(&cookie).map_err(|e| write_err(ErrorSubject::Logs, e))?;
        self.log.commit_with_cookie(&bytes).map_err(|e| write_err(ErrorSubject::Logs, e))?;
        Ok(())
    }

    fn read_entries(&self, addresses: &[(LogId, LogAddress)]) -> Result<Vec<Entry>, StorageError> {
        let mut out = Vec::with_capacity(addresses.len());
        for (id, address) in addresses {
            if *address >= self.log.committed_until() {
                // Placed, not committed yet (invariant 1).
                self.log
                    .wait_for_commit(*address)
                    .map_err(|e| StorageIOError::read_log_at_index(id.index, anyerror(&e)))?;
            }
            let bytes = self
                .log
                .read(*address)
                .map_err(|e| StorageIOError::read_log_at_index(id.index, anyerror(&e)))?;
            let entry: Entry = postcard::from_bytes(&bytes)
                .map_err(|e| StorageIOError::read_log_at_index(id.index, anyerror(&e)))?;
            if entry.log_id != *id {
                let e = std::io::Error::other(format!(
                    "the entry at {address} holds log id {} where {id} was listed",
                    entry.log_id
                ));
                return Err(StorageIOError::read_log_at_index(id.index, anyerror(&e)).into());
            }
            out.push(entry);
        }
        Ok(out)
    }
}

/// The Raft log storage of one node: a [`FasterLog`] in a directory of its
/// own.
#[derive(Debug, Clone)]
pub struct LogStore {
    shared: Arc<Shared>,
}

impl LogStore {
    /// Opens (or creates) the Raft log in `dir`, recovering what its last
    /// commit made durable.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, crate::Error> {
        let dir = dir.as_ref();
        let log = FasterLog::open(LogConfig::new(dir).page_size_bits(22))?;
        let mut cookie = Cookie::default();
        let raw = log.cookie();
        if !raw.is_empty() {
            cookie = postcard::from_bytes(&raw).map_err(|e| crate::Error::Corrupt {
                what: format!("the Raft log's commit cookie in {}", dir.display()),
                why: e.to_string(),
            })?;
            if cookie.format != COOKIE_FORMAT {
                return Err(crate::Error::Corrupt {
                    what: format!("the Raft log's commit cookie in {}", dir.display()),
                    why: format!("format {} (this build reads {COOKIE_FORMAT})", cookie.format),
                });
            }
        }
        let mut listing = Listing { entries: BTreeMap::new(), cookie };
        let floor = listing.cookie.last_purged.map_or(0, |id| id.index + 1);
        for item in log.scan_all() {
            let item = item?;
            let entry: Entry =
                postcard::from_bytes(&item.data).map_err(|e| crate::Error::Corrupt {
                    what: format!("the Raft log entry at {} in {}", item.address, dir.display()),
                    why: e.to_string(),
                })?;
            if entry.log_id.index < floor {
                continue;
            }
            if let Some((&last, _)) = listing.entries.last_key_value()
                && last >= entry.log_id.index
            {
                return Err(crate::Error::Corrupt {
                    what: format!("the Raft log in {}", dir.display()),
                    why: format!(
                        "entry {} follows entry {last} (at {})",
                        entry.log_id.index, item.address
                    ),
                });
            }
            listing.entries.insert(entry.log_id.index, (entry.log_id, item.address));
        }
        let (tx, rx) = mpsc::channel();
        let shared = Arc::new(Shared {
            log,
            listing: Mutex::new(listing),
            flushes: Mutex::new(tx),
            committing: Mutex::new(()),
            purge_limit: Mutex::new(None),
        });
        let weak = Arc::downgrade(&shared);
        std::thread::Builder::new()
            .name("raft-log-commit".into())
            .spawn(move || committer(weak, rx))
            .map_err(|e| crate::Error::io("starting the Raft log's committer", e))?;
        Ok(Self { shared })
    }

    /// Limits purges to entries below `limit` (the index past the newest
    /// durable snapshot's last entry; see invariant 4).
    pub fn limit_purges(&self, limit: Arc<AtomicU64>) {
        *self.shared.purge_limit.lock().unwrap_or_else(|p| p.into_inner()) = Some(limit);
    }

    /// The largest entry this log takes (bytes of its encoding).
    pub fn max_entry_size(&self) -> usize {
        self.shared.log.max_entry_size()
    }

    /// Runs `f` on the blocking pool (device writes and syncs).
    async fn blocking<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Shared) -> Result<R, StorageError> + Send + 'static,
    ) -> Result<R, StorageError> {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || f(&shared))
            .await
            .map_err(|e| write_err(ErrorSubject::Logs, e))?
    }
}

/// The committer thread: waits for appends, commits once for all that
/// are queued, then reports them flushed in order. Ends when the store is
/// dropped (its queue closes).
fn committer(shared: Weak<Shared>, queue: mpsc::Receiver<LogFlushed<TypeConfig>>) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        batch.extend(queue.try_iter());
        let result = match shared.upgrade() {
            Some(shared) => shared.commit_with(|_| {}).map_err(|e| e.to_string()),
            None => Err("the Raft log was closed".to_string()),
        };
        for callback in batch {
            callback.log_io_completed(result.clone().map_err(std::io::Error::other));
        }
    }
}

fn anyerror(e: &(impl std::error::Error + 'static)) -> openraft::AnyError {
    openraft::AnyError::new(e)
}

fn write_err(subject: ErrorSubject<NodeId>, e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::new(subject, ErrorVerb::Write, anyerror(&e)).into()
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let wanted: Vec<(LogId, LogAddress)> = {
            let listing = self.shared.listing();
            let from = match range.start_bound() {
                Bound::Included(&i) => i,
                Bound::Excluded(&i) => i.saturating_add(1),
                Bound::Unbounded => 0,
            };
            let to = match range.end_bound() {
                Bound::Included(&i) => i.saturating_add(1),
                Bound::Excluded(&i) => i,
                Bound::Unbounded => u64::MAX,
            };
            if from >= to {
                return Ok(Vec::new());
            }
            listing.entries.range(from..to).map(|(_, e)| *e).collect()
        };
        self.blocking(move |shared| shared.read_entries(&wanted)).await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let listing = self.shared.listing();
        Ok(LogState {
            last_purged_log_id: listing.cookie.last_purged,
            last_log_id: listing.last_log_id(),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        let vote = *vote;
        self.blocking(move |shared| shared.commit_with(|cookie| cookie.vote = Some(vote))).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        Ok(self.shared.listing().cookie.vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Written with the next commit of the log (invariant 4).
        self.shared.listing().cookie.committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.shared.listing().cookie.committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut ids = Vec::new();
        let mut encoded = Vec::new();
        for entry in entries {
            let bytes = postcard::to_allocvec(&entry)
                .map_err(|e| StorageIOError::write_log_entry(entry.log_id, anyerror(&e)))?;
            ids.push(entry.log_id);
            encoded.push(bytes);
        }
        if !encoded.is_empty() {
            // Placing entries only waits when the page ring is full.
            let addresses = self
                .shared
                .log
                .enqueue_batch(&encoded)
                .map_err(|e| StorageIOError::write_log_entry(ids[0], anyerror(&e)))?;
            let mut listing = self.shared.listing();
            for (id, address) in ids.into_iter().zip(addresses) {
                listing.entries.insert(id.index, (id, address));
            }
        }
        let queue = self.shared.flushes.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(mpsc::SendError(callback)) = queue.send(callback) {
            callback.log_io_completed(Err(std::io::Error::other("the committer has stopped")));
        }
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.blocking(move |shared| {
            let address = {
                let listing = shared.listing();
                match listing.entries.range(log_id.index..).next() {
                    Some((_, (_, address))) => *address,
                    None => return Ok(()),
                }
            };
            shared.log.truncate_after(address).map_err(|e| write_err(ErrorSubject::Logs, e))?;
            let mut listing = shared.listing();
            listing.entries.split_off(&log_id.index);
            Ok(())
        })
        .await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.blocking(move |shared| {
            let limit = shared.purge_limit.lock().unwrap_or_else(|p| p.into_inner()).clone();
            if let Some(limit) = limit {
                let start = std::time::Instant::now();
                while limit.load(Ordering::Acquire) <= log_id.index {
                    if start.elapsed() > std::time::Duration::from_secs(60) {
                        let e = std::io::Error::other(format!(
                            "a purge up to {log_id} waited a minute for a durable snapshot \
                             covering it"
                        ));
                        return Err(write_err(ErrorSubject::Logs, e));
                    }
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
            }
            let purged = shared.listing().cookie.last_purged;
            if purged.is_some_and(|purged| purged.index >= log_id.index) {
                return Ok(());
            }
            shared.commit_with(|cookie| cookie.last_purged = Some(log_id))?;
            let until = {
                let mut listing = shared.listing();
                listing.entries = listing.entries.split_off(&log_id.index.saturating_add(1));
                listing.entries.first_key_value().map(|(_, (_, address))| *address)
            };
            let until = until.unwrap_or_else(|| shared.log.committed_until());
            shared.log.truncate_until(until).map_err(|e| write_err(ErrorSubject::Logs, e))?;
            Ok(())
        })
        .await
    }
}
