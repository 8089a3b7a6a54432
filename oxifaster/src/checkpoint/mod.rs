//! Checkpoints and recovery: concurrent prefix recovery (CPR) the FASTER
//! way.
//!
//! A checkpoint runs while sessions keep working. It is driven by epoch
//! bumps (see `cpr` for the phases and the session-side invariants):
//!
//! 1. **Index** (kinds `FoldOver`, `Snapshot`, `IndexOnly`, and `LogOnly`
//!    when no earlier index checkpoint of this incarnation exists): note the
//!    log tail as `log_start`, wait for one epoch (every operation that
//!    allocated below it has published or abandoned its record), then dump
//!    the hash table and its overflow buckets, fuzzily.
//! 2. **Version change**: publish `IN_PROGRESS(v + 1)`; once every
//!    protected session has refreshed (an epoch action), every operation of
//!    version `v` has finished or is parked (and excluded). Record every
//!    session's commit point, claiming idle sessions.
//! 3. **Log**: *fold-over* moves the read-only address to the tail (the
//!    final address) and waits until the log below it is written and
//!    synced; *snapshot* copies the in-memory part of the log above the
//!    flushed address into its own file (the mutable region stays mutable),
//!    and syncs the log below it.
//! 4. **Metadata**, last and atomically (temp file, fsync, rename, fsync
//!    directory): a checkpoint exists exactly when its `meta` file does.
//!
//! Recovery loads the index checkpoint, replays the log from its
//! `log_start` to the final address (records of later versions are
//! skipped: by CPR invariant 3 they are unreachable from older records),
//! and starts a new incarnation of the log beyond everything the device
//! holds, so recovering never destroys another checkpoint.
//!
//! On disk, under the store directory:
//!
//! ```text
//! checkpoints/<token>/meta       metadata (see `meta.rs`)
//! checkpoints/<token>/index      index checkpoint (see `index::checkpoint`)
//! checkpoints/<token>/snapshot   log pages of a snapshot checkpoint
//! ```

mod admin;
mod appender;
#[cfg(feature = "testing")]
mod fault_io;
mod handle;
mod machine;
mod meta;
mod recover;
mod verify;
mod walk;

pub use crate::cpr::{
    CheckpointFile, CheckpointFn, CheckpointInfo, CheckpointIo, CheckpointKind, CheckpointToken,
    CommitPoint, IoHandle, Progress, ProgressFn, RealIo,
};
#[cfg(feature = "testing")]
#[doc(hidden)]
pub use fault_io::FaultIo;

#[cfg(feature = "testing")]
mod testing;
#[cfg(feature = "testing")]
#[doc(hidden)]
pub use testing::{meta_decode, meta_fix_checksum, meta_sample, snapshot_fix_checksum};

use std::path::{Path, PathBuf};

/// The `checkpoints` directory of a store directory.
pub(crate) fn root(dir: &Path) -> PathBuf {
    dir.join("checkpoints")
}

pub(crate) use admin::retain_older;
#[cfg(any(test, feature = "testing"))]
pub(crate) use admin::walk_page;
pub use admin::{
    LogVerification, RawRecord, delete, index_stats, latest_token, list, retain, scan_log, verify,
    verify_log,
};
pub(crate) use meta::{sync_dir, write_atomic};
pub(crate) use recover::recover as recover_store;
pub(crate) use walk::for_each_record;
