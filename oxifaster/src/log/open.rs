//! Opening a log: a new one, or recovery to its last durable commit
//! (the newer valid commit record, the partial page at the commit point
//! checked and loaded back).

use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use super::commit::{CommitRecord, SLOT_SIZE};
use super::group_commit::auto_commit;
use std::sync::atomic::{AtomicBool, AtomicU64};

use super::{
    CommitState, FasterLog, Inner, LogAddress, LogConfig, RecoveryInfo, commit, entry, page_end,
    wait,
};
use crate::address::Address;
use crate::device::{Device, FileDevice};
use crate::epoch::Epoch;
use crate::hlog::{FIRST_ADDRESS, HybridLog};
use crate::{Error, Result};

impl FasterLog<FileDevice> {
    /// Opens the log in `config`'s directory (a new temporary one by
    /// default), recovering it to its last durable commit if it holds one.
    /// The directory is locked: a second open, from this process or
    /// another, fails with [`Error::Locked`] until this log is dropped.
    pub fn open(config: LogConfig) -> Result<Self> {
        let (dir, temp) = crate::lock::dir_or_temp(config.dir.as_deref(), "oxifaster-log-")?;
        std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
            context: format!("creating {}", dir.display()),
            source,
        })?;
        refuse_a_store(&dir)?;
        let lock = crate::lock::LockFile::acquire(&dir.join("LOCK"))?;
        let device = |sub: &str, bits: u32, direct: bool| {
            let path = dir.join(sub);
            let device = if direct {
                FileDevice::open_direct(&path, bits)
            } else {
                FileDevice::open(&path, bits)
            };
            device.map_err(|source| Error::Io {
                context: format!("opening {}", path.display()),
                source,
            })
        };
        let data = device("log", config.segment_size_bits, config.direct_io)?;
        let commits = device("commit", 20, false)?;
        Self::build(config, data, commits, Some(lock), temp)
    }
}

/// A store's directory (its `checkpoints/` or `log.N` segment files) is not
/// a log's: opening one as a log would mix the two formats.
fn refuse_a_store(dir: &Path) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Ok(()) };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let segment = name
            .strip_prefix("log.")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if name == "checkpoints" || segment {
            return Err(Error::InvalidConfig {
                what: "dir",
                why: format!(
                    "{} holds a Store (`{name}`); a FasterLog needs a directory of its own",
                    dir.display()
                ),
            });
        }
    }
    Ok(())
}

impl<D: Device> FasterLog<D> {
    pub(super) fn build(
        config: LogConfig,
        data: D,
        commits: D,
        lock: Option<crate::lock::LockFile>,
        temp_dir: Option<tempfile::TempDir>,
    ) -> Result<Self> {
        let geometry = config.geometry()?;
        let record = read_commit_record(&commits)?;
        if let Some(r) = &record
            && (r.page_bits != config.page_size_bits || r.segment_bits != config.segment_size_bits)
        {
            return Err(Error::InvalidConfig {
                what: "page_size_bits / segment_size_bits",
                why: format!(
                    "the log was written with 2^{} pages and 2^{} segments, not 2^{} and 2^{}",
                    r.page_bits, r.segment_bits, config.page_size_bits, config.segment_size_bits
                ),
            });
        }
        let (hlog, recovery) = match &record {
            None => (HybridLog::new(geometry, data)?, None),
            Some(r) => {
                let hlog = HybridLog::resumed(geometry, data, r.begin, r.committed)?;
                load_tail_page(&hlog, r.begin, r.committed)?;
                let end = hlog.device().end_offset().map_err(|source| Error::Io {
                    context: "reading the log's length".into(),
                    source,
                })?;
                let info = RecoveryInfo {
                    commit_number: r.seq,
                    committed_until: LogAddress(r.committed),
                    begin: LogAddress(r.begin),
                    cut_bytes: end.saturating_sub(r.committed),
                };
                (hlog, Some(info))
            }
        };
        let record = record.unwrap_or(CommitRecord {
            begin: FIRST_ADDRESS,
            committed: FIRST_ADDRESS,
            page_bits: config.page_size_bits,
            segment_bits: config.segment_size_bits,
            ..CommitRecord::default()
        });
        // (Loom models run the flushes in the epoch action: a background
        // thread would be outside the model.)
        let flusher = if cfg!(oxifaster_loom) { None } else { Some(hlog.start_flusher()?) };
        let inner = Arc::new(Inner {
            epoch: Epoch::new(config.max_threads),
            hlog,
            commits,
            begin: AtomicU64::new(record.begin),
            committed: AtomicU64::new(record.committed),
            dropped: RwLock::new(record.dropped.clone()),
            iterators: Mutex::new(record.iterators.clone()),
            iterators_dirty: AtomicBool::new(false),
            state: Mutex::new(CommitState { record, regions: [None, None] }),
            failed: OnceLock::new(),
            closed: AtomicBool::new(false),
            signal: wait::Signal::default(),
            auto_bytes: config.auto_commit_bytes.unwrap_or(0),
            commit_requested: AtomicBool::new(false),
            auto_thread: OnceLock::new(),
            recovery,
            _temp_dir: temp_dir,
        });
        let auto_commit =
            if config.auto_commit_interval.is_some() || config.auto_commit_bytes.is_some() {
                let inner2 = inner.clone();
                let interval = config.auto_commit_interval;
                let thread = std::thread::Builder::new()
                    .name("oxifaster-log-commit".into())
                    .spawn(move || auto_commit(inner2, interval))
                    .map_err(|source| Error::Io {
                        context: "starting the auto-commit thread".into(),
                        source,
                    })?;
                let _ = inner.auto_thread.set(thread.thread().clone());
                Some(thread)
            } else {
                None
            };
        Ok(Self { inner, auto_commit, _flusher: flusher, _lock: lock })
    }
}

/// Reads the commit device's two slots; the newest valid record, if any.
fn read_commit_record<D: Device>(commits: &D) -> Result<Option<CommitRecord>> {
    let io = |source| Error::Io { context: "reading the commit record".into(), source };
    let end = commits.end_offset().map_err(io)?;
    let slot = |at: u64| -> Result<Vec<u8>> {
        let len = end.saturating_sub(at).min(SLOT_SIZE) as usize;
        let mut buf = vec![0u8; len];
        if len > 0 {
            commits.read_at(at, &mut buf).map_err(io)?;
        }
        Ok(buf)
    };
    let (a, b) = (slot(0)?, slot(SLOT_SIZE)?);
    let Some(mut record) =
        commit::newest(&a, &b).map_err(|what| Error::Corruption { address: 0, what })?
    else {
        return Ok(None);
    };
    if let Some(spill) = record.spill {
        // The ranges of the newest record were made durable before it.
        let at = commit::region_offset(record.seq);
        let mut region = vec![0u8; spill.count as usize * 16];
        commits.read_at(at, &mut region).map_err(io)?;
        record.load_spill(&region).map_err(|e| Error::Corruption {
            address: 0,
            what: match e {
                commit::SlotError::Corrupt(why) => format!("the commit's dropped ranges: {why}"),
                other => format!("the commit's dropped ranges: {other:?}"),
            },
        })?;
    }
    Ok(Some(record))
}

/// Copies the committed part of the page holding `committed` back into
/// memory, checking that it is a chain of valid entries ending exactly
/// there. It starts at `begin` when that lies in the page: below it,
/// `truncate_until` may have punched the blocks out (they read as zeros).
fn load_tail_page<D: Device>(hlog: &HybridLog<D>, begin: u64, committed: u64) -> Result<()> {
    let bits = hlog.geometry().page_bits;
    let head = (committed >> bits << bits).max(FIRST_ADDRESS).max(begin);
    if committed <= head {
        return Ok(());
    }
    let mut bytes = vec![0u8; (committed - head) as usize];
    hlog.device().read_at(head, &mut bytes).map_err(|source| Error::Corruption {
        address: head,
        what: format!("the committed page cannot be read back: {source}"),
    })?;
    let page_end = page_end(head, bits);
    let mut at = head;
    while at < committed {
        let rel = (at - head) as usize;
        match entry::decode(at, &bytes[rel..], page_end - at) {
            Ok(Some((_, size))) => at += size,
            Ok(None) => {
                return Err(Error::Corruption {
                    address: at,
                    what: "an empty header inside the committed range".into(),
                });
            }
            Err(invalid) => {
                return Err(Error::Corruption { address: at, what: invalid.describe().into() });
            }
        }
    }
    if at != committed {
        return Err(Error::Corruption {
            address: committed,
            what: "the commit point is not an entry boundary".into(),
        });
    }
    let address = Address::new(head).ok_or(Error::LogFull)?;
    // SAFETY: the log is not shared yet; `[head, committed)` lies in one page
    // inside the resumed log's in-memory range.
    unsafe { hlog.load(address, &bytes) };
    Ok(())
}
