//! The state machine: a [`Store<K, V>`] that applies committed commands
//! through one session, snapshotted by the store's checkpoints.
//!
//! ## Files, under the state machine's directory
//!
//! ```text
//! CURRENT                   "generation=<n>\n": the live generation (temp file, fsync, rename, fsync dir)
//! <n>/store/                the store (its log segments and checkpoints)
//! <n>/applied               what the store's newest usable checkpoint holds:
//!                           "OXRAPPL\0" | u32 1 | u32 0 | u64 length | postcard(Applied) | u64 XXH3-64
//! snapshots/<id>.snap       the newest snapshot (an `archive` of a checkpoint)
//! snapshots/incoming-*      a snapshot being received
//! snapshots/staging-*       a checkpoint's files being packed
//! ```
//!
//! ## Invariants
//!
//! 1. *Data and metadata from one cut.* A checkpoint is taken only between
//!    two `apply` calls, while the apply session is idle (no operation in
//!    flight, nothing pending): by CPR it holds exactly the commands applied
//!    so far, which is what the last-applied log id, the membership and the
//!    client table written beside it (`applied`) describe. After a restart
//!    the store is recovered to the checkpoint `applied` names, never to a
//!    later state, and Raft re-applies the committed entries after its
//!    last-applied id: each command takes effect exactly once.
//! 2. *A snapshot is that cut's files.* They are staged (hard links, and a
//!    copy of the segment the store still appends to, up to the end of the
//!    checkpoint's last page) before the next command is applied, so the
//!    packing that follows may run beside further applies.
//! 3. *An installed snapshot replaces the generation whole.* The archive is
//!    verified and unpacked into generation n+1, recovered there, and only
//!    then does `CURRENT` name n+1: a crash on the way leaves generation n.
//! 4. *Exactly once per client.* A command applies only if its serial is
//!    above the client's last; a retry of the last gets the first answer.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{EntryPayload, ErrorSubject, ErrorVerb, OptionalSend, RaftSnapshotBuilder};
use openraft::{StorageIOError, StoredMembership as RaftStoredMembership};
use oxifaster::checkpoint::CheckpointKind;
use oxifaster::store::Outcome;
use oxifaster::{Key, Merge, Session, Store, StoreBuilder, Value};
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

use crate::archive;
use crate::types::{
    Command, Entry, LogId, Request, Response, Responses, SnapshotMeta, StorageError,
    StoredMembership, TypeConfig,
};
use crate::{Error, Result};

const APPLIED_MAGIC: &[u8; 8] = b"OXRAPPL\0";
const APPLIED_FORMAT: u32 = 1;
const HEADER_FORMAT: u32 = 1;

/// What the state machine knows beside the store's data.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Applied {
    /// The checkpoint holding the data this describes.
    token: String,
    last_applied: Option<LogId>,
    membership: StoredMembership,
    /// Per client: the last serial applied and its response.
    clients: BTreeMap<u64, (u64, Response)>,
}

/// A snapshot archive's header.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SnapshotHeader {
    format: u32,
    meta: SnapshotMeta,
    applied: Applied,
}

/// How the state machine opens its store: a function that completes the
/// builder (log memory, table size, ...). The directory and the checkpoint
/// policy are the state machine's own.
pub type Configure<K, V> = Arc<dyn Fn(StoreBuilder<K, V>) -> StoreBuilder<K, V> + Send + Sync>;

/// The newest snapshot on disk.
#[derive(Debug, Clone)]
struct Current {
    meta: SnapshotMeta,
    path: PathBuf,
}

/// A read handle on the state machine's store that follows it across
/// snapshot installs (which replace the store).
#[derive(Debug)]
pub struct Reader<K: Key, V: Value> {
    store: Arc<RwLock<Store<K, V>>>,
}

impl<K: Key, V: Value> Clone for Reader<K, V> {
    fn clone(&self) -> Self {
        Self { store: self.store.clone() }
    }
}

impl<K: Key, V: Value> Reader<K, V> {
    /// The store as it is now.
    pub fn store(&self) -> Store<K, V> {
        self.store.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Reads `key` from this node's state (not linearizable by itself: see
    /// `Node::read`).
    pub async fn read(&self, key: &K) -> Result<Option<V>> {
        let store = self.store();
        let mut session = store.start_session()?;
        Ok(session.read_async(key).await?)
    }
}

/// The state machine of one node.
pub struct StateMachine<K: Key, V: Value + Merge + Clone> {
    root: PathBuf,
    generation: u64,
    configure: Configure<K, V>,
    store: Arc<RwLock<Store<K, V>>>,
    session: Session<K, V, oxifaster::device::FileDevice>,
    applied: Applied,
    current: Arc<Mutex<Option<Current>>>,
    /// Files made to receive snapshots (removed after an install).
    incoming: Vec<PathBuf>,
    /// The index past the newest durable snapshot's last entry.
    durable: Arc<AtomicU64>,
}

impl<K: Key, V: Value + Merge + Clone> std::fmt::Debug for StateMachine<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateMachine")
            .field("root", &self.root)
            .field("generation", &self.generation)
            .field("last_applied", &self.applied.last_applied)
            .finish_non_exhaustive()
    }
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let context = context.into();
    move |e| Error::io(context, e)
}

fn storage(subject: ErrorSubject<u64>, verb: ErrorVerb, e: Error) -> StorageError {
    StorageIOError::new(subject, verb, openraft::AnyError::new(&e)).into()
}

/// Writes `bytes` to `path` atomically and durably (temp file, fsync,
/// rename, fsync of the directory).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(io(format!("creating {}", tmp.display())))?;
    f.write_all(bytes).map_err(io(format!("writing {}", tmp.display())))?;
    f.sync_all().map_err(io(format!("syncing {}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(io(format!("renaming {}", tmp.display())))?;
    archive::sync_dir(path.parent().unwrap_or(Path::new(".")))
}

fn encode_applied(applied: &Applied) -> Result<Vec<u8>> {
    let payload = postcard::to_allocvec(applied)
        .map_err(|e| Error::Corrupt { what: "the applied state".into(), why: e.to_string() })?;
    let mut out = Vec::with_capacity(payload.len() + 32);
    out.extend_from_slice(APPLIED_MAGIC);
    out.extend_from_slice(&APPLIED_FORMAT.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&payload);
    out.extend_from_slice(&xxh3_64(&payload).to_le_bytes());
    Ok(out)
}

fn decode_applied(path: &Path, bytes: &[u8]) -> Result<Applied> {
    let corrupt = |why: String| Error::Corrupt { what: path.display().to_string(), why };
    if bytes.len() < 32 || &bytes[..8] != APPLIED_MAGIC {
        return Err(corrupt("not an applied-state file".into()));
    }
    let format = u32::from_le_bytes(bytes[8..12].try_into().unwrap_or_default());
    if format != APPLIED_FORMAT {
        return Err(corrupt(format!("format {format}; this build reads {APPLIED_FORMAT}")));
    }
    let len = u64::from_le_bytes(bytes[16..24].try_into().unwrap_or_default());
    if len != (bytes.len() - 32) as u64 {
        return Err(corrupt(format!("{len} payload bytes in a file of {}", bytes.len())));
    }
    let payload = &bytes[24..24 + len as usize];
    let sum = u64::from_le_bytes(bytes[24 + len as usize..].try_into().unwrap_or_default());
    if sum != xxh3_64(payload) {
        return Err(corrupt("fails its checksum".into()));
    }
    postcard::from_bytes(payload).map_err(|e| corrupt(e.to_string()))
}

/// The segment size (log2) of the store in `dir` (its `SEGMENTS` file).
fn segment_bits(dir: &Path) -> Result<u32> {
    match std::fs::read_to_string(dir.join("SEGMENTS")) {
        Ok(text) => {
            text.trim().strip_prefix("segment_size_bits=").and_then(|s| s.parse().ok()).ok_or_else(
                || Error::Corrupt {
                    what: dir.join("SEGMENTS").display().to_string(),
                    why: format!("{text:?}"),
                },
            )
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(30),
        Err(e) => Err(Error::io(format!("reading {}", dir.join("SEGMENTS").display()), e)),
    }
}

fn unix_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}

impl<K: Key, V: Value + Merge + Clone> StateMachine<K, V> {
    /// Opens the state machine in `root` (created if new) with the store's
    /// default configuration.
    pub fn open(root: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(root, Arc::new(|b| b))
    }

    /// Opens the state machine in `root`, its store configured by
    /// `configure`. Recovers the store to the checkpoint its last snapshot
    /// was built from (nothing applied after it survives: Raft applies it
    /// again from the log).
    pub fn open_with(root: impl AsRef<Path>, configure: Configure<K, V>) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        std::fs::create_dir_all(root.join("snapshots"))
            .map_err(io(format!("creating {}", root.display())))?;
        let generation = match std::fs::read_to_string(root.join("CURRENT")) {
            Ok(text) => {
                text.trim().strip_prefix("generation=").and_then(|n| n.parse().ok()).ok_or_else(
                    || Error::Corrupt {
                        what: root.join("CURRENT").display().to_string(),
                        why: format!("{text:?}"),
                    },
                )?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(Error::io(format!("reading {}", root.display()), e)),
        };
        Self::clean(&root, generation)?;
        let gen_dir = root.join(generation.to_string());
        let store_dir = gen_dir.join("store");
        let applied_path = gen_dir.join("applied");
        let (store, applied) = match std::fs::read(&applied_path) {
            Ok(bytes) => {
                let applied = decode_applied(&applied_path, &bytes)?;
                let store = Self::builder(&configure, &store_dir).recover(&applied.token)?;
                (store, applied)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // Nothing was ever snapshotted here: whatever the store holds
                // was applied after no checkpoint, and Raft applies it again.
                if store_dir.exists() {
                    std::fs::remove_dir_all(&store_dir)
                        .map_err(io(format!("removing {}", store_dir.display())))?;
                }
                std::fs::create_dir_all(&store_dir)
                    .map_err(io(format!("creating {}", store_dir.display())))?;
                (Self::builder(&configure, &store_dir).open()?, Applied::default())
            }
            Err(e) => return Err(Error::io(format!("reading {}", applied_path.display()), e)),
        };
        let current = Self::newest_snapshot(&root, applied.last_applied)?;
        let current_index = current.as_ref().and_then(|c| c.meta.last_log_id);
        let session = store.start_session()?;
        Ok(Self {
            root,
            generation,
            configure,
            store: Arc::new(RwLock::new(store)),
            session,
            applied,
            current: Arc::new(Mutex::new(current)),
            incoming: Vec::new(),
            durable: Arc::new(AtomicU64::new(past(current_index))),
        })
    }

    fn builder(configure: &Configure<K, V>, dir: &Path) -> StoreBuilder<K, V> {
        configure(Store::<K, V>::builder())
            .dir(dir)
            .checkpoint_every(None)
            .checkpoint_on_close(false)
    }

    /// Removes what a crash left behind: other generations, snapshots
    /// being received or staged.
    fn clean(root: &Path, generation: u64) -> Result<()> {
        let list = |dir: &Path| -> Result<Vec<std::fs::DirEntry>> {
            std::fs::read_dir(dir)
                .map_err(io(format!("listing {}", dir.display())))?
                .collect::<std::io::Result<Vec<_>>>()
                .map_err(io(format!("listing {}", dir.display())))
        };
        for entry in list(root)? {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.parse::<u64>().is_ok_and(|n| n != generation) {
                std::fs::remove_dir_all(entry.path())
                    .map_err(io(format!("removing {}", entry.path().display())))?;
            }
        }
        let snapshots = root.join("snapshots");
        for entry in list(&snapshots)? {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("incoming-") || name.ends_with(".tmp") {
                std::fs::remove_file(entry.path())
                    .map_err(io(format!("removing {}", entry.path().display())))?;
            } else if name.starts_with("staging-") {
                std::fs::remove_dir_all(entry.path())
                    .map_err(io(format!("removing {}", entry.path().display())))?;
            }
        }
        Ok(())
    }

    /// The newest complete snapshot archive in `root/snapshots` that is not
    /// newer than what the store holds (`applied`); newer ones (an install
    /// that a crash cut short) are removed.
    fn newest_snapshot(root: &Path, applied: Option<LogId>) -> Result<Option<Current>> {
        let dir = root.join("snapshots");
        let mut newest: Option<Current> = None;
        for entry in std::fs::read_dir(&dir).map_err(io(format!("listing {}", dir.display())))? {
            let entry = entry.map_err(io(format!("listing {}", dir.display())))?;
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "snap") {
                continue;
            }
            let header = read_snapshot_header(&path)?;
            if header.meta.last_log_id.map(|id| id.index) > applied.map(|id| id.index) {
                std::fs::remove_file(&path).map_err(io(format!("removing {}", path.display())))?;
                continue;
            }
            let index = |c: &Current| c.meta.last_log_id.map(|id| id.index);
            let candidate = Current { meta: header.meta, path };
            if newest.as_ref().is_none_or(|n| index(n) < index(&candidate)) {
                newest = Some(candidate);
            }
        }
        Ok(newest)
    }

    /// The index past the newest durable snapshot's last entry, kept
    /// current: a node limits its log's purges to it (`LogStore::limit_purges`).
    pub fn durable_snapshot(&self) -> Arc<AtomicU64> {
        self.durable.clone()
    }

    /// A handle for reads that follows the store across snapshot installs.
    pub fn reader(&self) -> Reader<K, V> {
        Reader { store: self.store.clone() }
    }

    /// The last applied log id.
    pub fn last_applied(&self) -> Option<LogId> {
        self.applied.last_applied
    }

    /// Applies one client request (exactly once per client serial).
    async fn apply_request(&mut self, request: Request) -> Result<Response> {
        if let Some((last, response)) = self.applied.clients.get(&request.client) {
            if request.serial == *last {
                return Ok(response.clone());
            }
            if request.serial < *last {
                return Ok(Response::Stale { last: *last });
            }
        }
        let response = self.execute(request.command).await?;
        self.applied.clients.insert(request.client, (request.serial, response.clone()));
        Ok(response)
    }

    async fn execute(&mut self, command: Command) -> Result<Response> {
        fn key<K: Key>(bytes: &[u8]) -> std::result::Result<K, Response> {
            K::decode_key(bytes).map_err(|e| Response::Invalid(format!("the key: {e}")))
        }
        fn value<V: Value>(bytes: &[u8]) -> std::result::Result<V, Response> {
            V::decode(bytes).map_err(|e| Response::Invalid(format!("a value: {e}")))
        }
        let s = &mut self.session;
        let done = match command {
            Command::Upsert { key: k, value: v } => match (key::<K>(&k), value::<V>(&v)) {
                (Ok(k), Ok(v)) => s.upsert_async(&k, &v).await.map(|()| Response::Applied),
                (Err(r), _) | (_, Err(r)) => return Ok(r),
            },
            Command::Rmw { key: k, input } => match (key::<K>(&k), value::<V>(&input)) {
                (Ok(k), Ok(v)) => s.rmw_async(&k, &v).await.map(|()| Response::Applied),
                (Err(r), _) | (_, Err(r)) => return Ok(r),
            },
            Command::Delete { key: k } => match key::<K>(&k) {
                Ok(k) => s.delete_async(&k).await.map(|()| Response::Applied),
                Err(r) => return Ok(r),
            },
            Command::InsertIfAbsent { key: k, value: v } => match (key::<K>(&k), value::<V>(&v)) {
                (Ok(k), Ok(v)) => s
                    .insert_if_absent_async(&k, &v)
                    .await
                    .map(|o| Response::Conditional { written: o == Outcome::Set }),
                (Err(r), _) | (_, Err(r)) => return Ok(r),
            },
            Command::CompareAndSwap { key: k, expected, new } => {
                match (key::<K>(&k), value::<V>(&expected), value::<V>(&new)) {
                    (Ok(k), Ok(e), Ok(n)) => s
                        .compare_and_swap_async(&k, &e, &n)
                        .await
                        .map(|o| Response::Conditional { written: o == Outcome::Set }),
                    (Err(r), _, _) | (_, Err(r), _) | (_, _, Err(r)) => return Ok(r),
                }
            }
        };
        match done {
            Ok(response) => Ok(response),
            // What the command itself makes impossible is its answer, the
            // same on every node; anything else is the node's own failure.
            Err(e @ (oxifaster::Error::RecordTooLarge { .. } | oxifaster::Error::Codec(_))) => {
                Ok(Response::Invalid(e.to_string()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Takes a checkpoint of what is applied now and stages its files for a
    /// snapshot (invariants 1 and 2). Runs between two applies.
    async fn prepare_snapshot(&mut self) -> Result<Prepared> {
        let store = self.reader().store();
        let info = tokio::task::spawn_blocking(move || {
            store.checkpoint_and_wait(CheckpointKind::FoldOver)
        })
        .await
        .map_err(|e| Error::Raft(format!("the checkpoint task: {e}")))??;
        let mut applied = self.applied.clone();
        applied.token = info.token.to_string();
        let gen_dir = self.root.join(self.generation.to_string());
        let store_dir = gen_dir.join("store");
        let id = format!("{:020}-{}", applied.last_applied.map_or(0, |id| id.index), unix_nanos());
        let staging = self.root.join("snapshots").join(format!("staging-{id}"));
        let (files, applied) = tokio::task::spawn_blocking({
            let staging = staging.clone();
            move || -> Result<(Vec<String>, Applied)> {
                write_atomic(&gen_dir.join("applied"), &encode_applied(&applied)?)?;
                // Older checkpoints are no longer needed by anything.
                oxifaster::checkpoint::retain(&store_dir, 1)?;
                let files = stage(&store_dir, &staging, &info)?;
                Ok((files, applied))
            }
        })
        .await
        .map_err(|e| Error::Raft(format!("the staging task: {e}")))??;
        self.applied.token = applied.token.clone();
        let meta = SnapshotMeta {
            last_log_id: applied.last_applied,
            last_membership: applied.membership.clone(),
            snapshot_id: id,
        };
        Ok(Prepared { root: self.root.clone(), staging, files, meta, applied })
    }

    /// Replaces the store with the one in the snapshot archive at `path`
    /// (invariant 3).
    async fn install(&mut self, meta: &SnapshotMeta, path: PathBuf) -> Result<()> {
        let next = self.generation + 1;
        let root = self.root.clone();
        let configure = self.configure.clone();
        let expected = meta.clone();
        let (store, applied) = tokio::task::spawn_blocking(move || -> Result<_> {
            let header = read_snapshot_header(&path)?;
            if header.meta != expected {
                return Err(Error::Corrupt {
                    what: format!("the snapshot {}", path.display()),
                    why: format!("it holds {:?}, Raft sent {:?}", header.meta, expected),
                });
            }
            let gen_dir = root.join(next.to_string());
            if gen_dir.exists() {
                std::fs::remove_dir_all(&gen_dir)
                    .map_err(io(format!("removing {}", gen_dir.display())))?;
            }
            archive::unpack(&path, &gen_dir)?;
            let store =
                Self::builder(&configure, &gen_dir.join("store")).recover(&header.applied.token)?;
            write_atomic(&gen_dir.join("applied"), &encode_applied(&header.applied)?)?;
            write_atomic(&root.join("CURRENT"), format!("generation={next}\n").as_bytes())?;
            Ok((store, header.applied))
        })
        .await
        .map_err(|e| Error::Raft(format!("the install task: {e}")))??;
        let session = store.start_session()?;
        let old_store =
            std::mem::replace(&mut *self.store.write().unwrap_or_else(|p| p.into_inner()), store);
        self.session = session;
        drop(old_store);
        let old = self.root.join(self.generation.to_string());
        self.generation = next;
        self.applied = applied;
        if let Err(e) = std::fs::remove_dir_all(&old) {
            tracing::warn!(dir = %old.display(), error = %e, "removing the replaced generation");
        }
        Ok(())
    }
}

/// The index past `id`'s (0 for none).
fn past(id: Option<LogId>) -> u64 {
    id.map_or(0, |id| id.index + 1)
}

/// Reads and decodes a snapshot archive's header.
fn read_snapshot_header(path: &Path) -> Result<SnapshotHeader> {
    let bytes = archive::read_header(path)?;
    let header: SnapshotHeader = postcard::from_bytes(&bytes).map_err(|e| Error::Corrupt {
        what: format!("the header of {}", path.display()),
        why: e.to_string(),
    })?;
    if header.format != HEADER_FORMAT {
        return Err(Error::Corrupt {
            what: format!("the header of {}", path.display()),
            why: format!("format {}; this build reads {HEADER_FORMAT}", header.format),
        });
    }
    Ok(header)
}

/// Stages the files of checkpoint `info` of the store in `store_dir` into
/// `staging` (hard links where the bytes never change again, copies where
/// they may), and returns their names relative to `staging`.
fn stage(
    store_dir: &Path,
    staging: &Path,
    info: &oxifaster::checkpoint::CheckpointInfo,
) -> Result<Vec<String>> {
    let store_out = staging.join("store");
    let checkpoint_rel = format!("checkpoints/{}", info.token);
    std::fs::create_dir_all(store_out.join(&checkpoint_rel))
        .map_err(io(format!("creating {}", staging.display())))?;
    let mut files = Vec::new();
    let link = |from: &Path, to: &Path| -> Result<()> {
        std::fs::hard_link(from, to)
            .or_else(|_| std::fs::copy(from, to).map(|_| ()))
            .map_err(io(format!("staging {}", from.display())))
    };
    let bits = segment_bits(store_dir)?;
    if store_dir.join("SEGMENTS").exists() {
        link(&store_dir.join("SEGMENTS"), &store_out.join("SEGMENTS"))?;
        files.push("store/SEGMENTS".to_string());
    }
    // The checkpoint's own files (fold-over: `meta` and `index`).
    let checkpoint_dir = store_dir.join(&checkpoint_rel);
    for entry in std::fs::read_dir(&checkpoint_dir)
        .map_err(io(format!("listing {}", checkpoint_dir.display())))?
    {
        let entry = entry.map_err(io(format!("listing {}", checkpoint_dir.display())))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        link(&entry.path(), &store_out.join(&checkpoint_rel).join(&name))?;
        files.push(format!("store/{checkpoint_rel}/{name}"));
    }
    // The log: every segment below the checkpoint's end; the one holding
    // its last page is still appended to, so it is copied up to that
    // page's end (its seal included).
    let page = 1u64 << info.page_size_bits;
    let end = info.final_address.div_ceil(page) * page;
    let segment = 1u64 << bits;
    let mut n = info.begin_address >> bits;
    while n * segment < end {
        let name = format!("log.{n}");
        let from = store_dir.join(&name);
        let to = store_out.join(&name);
        if from.exists() {
            if (n + 1) * segment <= end {
                link(&from, &to)?;
            } else {
                let mut src = std::fs::File::open(&from)
                    .map_err(io(format!("opening {}", from.display())))?;
                let mut dst =
                    std::fs::File::create(&to).map_err(io(format!("creating {}", to.display())))?;
                std::io::copy(&mut std::io::Read::take(&mut src, end - n * segment), &mut dst)
                    .map_err(io(format!("copying {}", from.display())))?;
            }
            files.push(format!("store/{name}"));
        }
        n += 1;
    }
    Ok(files)
}

/// A checkpoint staged for a snapshot.
#[derive(Debug)]
struct Prepared {
    root: PathBuf,
    staging: PathBuf,
    files: Vec<String>,
    meta: SnapshotMeta,
    applied: Applied,
}

/// Packs a staged checkpoint into a snapshot archive (beside the applies
/// that follow it).
#[derive(Debug)]
pub struct SnapshotBuilder {
    prepared: std::result::Result<Prepared, String>,
    current: Arc<Mutex<Option<Current>>>,
    durable: Arc<AtomicU64>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> std::result::Result<Snapshot<TypeConfig>, StorageError> {
        let write = |e: Error| storage(ErrorSubject::Snapshot(None), ErrorVerb::Write, e);
        let prepared = match &self.prepared {
            Ok(p) => p,
            Err(why) => return Err(write(Error::Raft(format!("preparing the snapshot: {why}")))),
        };
        let header = SnapshotHeader {
            format: HEADER_FORMAT,
            meta: prepared.meta.clone(),
            applied: prepared.applied.clone(),
        };
        let bytes = postcard::to_allocvec(&header).map_err(|e| {
            write(Error::Corrupt { what: "a snapshot header".into(), why: e.to_string() })
        })?;
        let (root, staging, files) =
            (prepared.root.clone(), prepared.staging.clone(), prepared.files.clone());
        let id = prepared.meta.snapshot_id.clone();
        let path = tokio::task::spawn_blocking(move || -> Result<PathBuf> {
            let dir = root.join("snapshots");
            let tmp = dir.join(format!("{id}.snap.tmp"));
            archive::pack(&staging, &files, &bytes, &tmp)?;
            let path = dir.join(format!("{id}.snap"));
            std::fs::rename(&tmp, &path).map_err(io(format!("renaming {}", tmp.display())))?;
            archive::sync_dir(&dir)?;
            let _ = std::fs::remove_dir_all(&staging);
            Ok(path)
        })
        .await
        .map_err(|e| write(Error::Raft(format!("the packing task: {e}"))))?
        .map_err(write)?;
        let old = {
            let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
            let newer = current.as_ref().is_none_or(|c| {
                c.meta.last_log_id.map(|id| id.index)
                    <= prepared.meta.last_log_id.map(|id| id.index)
            });
            if newer {
                current.replace(Current { meta: prepared.meta.clone(), path: path.clone() })
            } else {
                None
            }
        };
        self.durable.fetch_max(past(prepared.meta.last_log_id), Ordering::AcqRel);
        if let Some(old) = old
            && old.path != path
        {
            let _ = std::fs::remove_file(&old.path);
        }
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| write(Error::io(format!("opening {}", path.display()), e)))?;
        Ok(Snapshot { meta: prepared.meta.clone(), snapshot: Box::new(file) })
    }
}

impl<K: Key, V: Value + Merge + Clone> RaftStateMachine<TypeConfig> for StateMachine<K, V> {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> std::result::Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok((self.applied.last_applied, self.applied.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> std::result::Result<Vec<Responses>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut responses = Vec::new();
        for entry in entries {
            let log_id = entry.log_id;
            let response = match entry.payload {
                EntryPayload::Blank => Responses(Vec::new()),
                EntryPayload::Normal(proposal) => {
                    let mut out = Vec::with_capacity(proposal.0.len());
                    for request in proposal.0 {
                        out.push(self.apply_request(request).await.map_err(|e| {
                            StorageError::from(StorageIOError::apply(
                                log_id,
                                openraft::AnyError::new(&e),
                            ))
                        })?);
                    }
                    Responses(out)
                }
                EntryPayload::Membership(membership) => {
                    self.applied.membership = RaftStoredMembership::new(Some(log_id), membership);
                    Responses(Vec::new())
                }
            };
            self.applied.last_applied = Some(log_id);
            responses.push(response);
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        let prepared = self.prepare_snapshot().await.map_err(|e| e.to_string());
        SnapshotBuilder { prepared, current: self.current.clone(), durable: self.durable.clone() }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> std::result::Result<Box<tokio::fs::File>, StorageError> {
        let path = self.root.join("snapshots").join(format!("incoming-{}", unix_nanos()));
        let file = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .await
            .map_err(|e| {
                storage(
                    ErrorSubject::Snapshot(None),
                    ErrorVerb::Write,
                    Error::io(format!("creating {}", path.display()), e),
                )
            })?;
        self.incoming.push(path);
        Ok(Box::new(file))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<tokio::fs::File>,
    ) -> std::result::Result<(), StorageError> {
        use tokio::io::{AsyncSeekExt, AsyncWriteExt};
        let fail =
            |e: Error| storage(ErrorSubject::Snapshot(Some(meta.signature())), ErrorVerb::Write, e);
        // The data may be any file handle (Raft hands over what it
        // received): copy it under this state machine's own name.
        let dir = self.root.join("snapshots");
        let path = dir.join(format!("{}.snap", meta.snapshot_id));
        let tmp = dir.join(format!("{}.snap.tmp", meta.snapshot_id));
        let mut src = *snapshot;
        let copy = async {
            src.flush().await?;
            src.seek(std::io::SeekFrom::Start(0)).await?;
            let mut dst = tokio::fs::File::create(&tmp).await?;
            tokio::io::copy(&mut src, &mut dst).await?;
            dst.sync_all().await
        };
        copy.await.map_err(|e| fail(Error::io(format!("saving {}", tmp.display()), e)))?;
        // Installed first, named a snapshot after: a snapshot on disk is
        // never newer than the store (a crash between leaves the older one).
        self.install(meta, tmp.clone()).await.map_err(fail)?;
        std::fs::rename(&tmp, &path)
            .map_err(|e| fail(Error::io(format!("renaming {}", tmp.display()), e)))?;
        archive::sync_dir(&dir).map_err(fail)?;
        self.durable.fetch_max(past(meta.last_log_id), Ordering::AcqRel);
        let old = self
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replace(Current { meta: meta.clone(), path: path.clone() });
        if let Some(old) = old
            && old.path != path
        {
            let _ = std::fs::remove_file(&old.path);
        }
        for received in self.incoming.drain(..) {
            let _ = std::fs::remove_file(received);
        }
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> std::result::Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let current = self.current.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let Some(current) = current else { return Ok(None) };
        let file = tokio::fs::File::open(&current.path).await.map_err(|e| {
            storage(
                ErrorSubject::Snapshot(Some(current.meta.signature())),
                ErrorVerb::Read,
                Error::io(format!("opening {}", current.path.display()), e),
            )
        })?;
        Ok(Some(Snapshot { meta: current.meta, snapshot: Box::new(file) }))
    }
}
