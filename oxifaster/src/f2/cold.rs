//! The cold tier: a log of records and an index that lives mostly on disk.
//!
//! ## Layout
//!
//! - **Cold log**: a [`FasterLog`] whose entries are records
//!   `[previous: u64][key length: u32][value length: u32][key][pad to
//!   8][value]` (little-endian lengths; the key and value are the hot
//!   store's encodings, the value a [`super::Tiered`] one). Its entries are
//!   checksummed, so every cold read is verified.
//! - **Cold index**: hash *chunks* of [`CHUNK_SLOTS`] entries, each entry
//!   the cold-log address of the newest record whose key hashes to its
//!   slot (0: none). The chunks are the values of a small store of their
//!   own (`Store<u64, Chunk>`, keyed by chunk number), with its own log on
//!   disk and its own memory: its in-memory index holds one entry per
//!   chunk, not per key. A key's chunk is taken from the high bits of its
//!   hash, its slot from the low bits; records of keys that share a slot
//!   form a chain through `previous`, newest first.
//!
//! A cold lookup reads the chunk (at most one device read: the chunk
//! store's index is in memory) and walks the slot's chain (one device read
//! per record, until the key is found). With `n` keys over `c` chunks a
//! slot holds `n / (32 c)` keys on average, so a lookup of a present key
//! reads `1 + (1 + n / (32 c)) / 2` records on average, and one of an
//! absent key `n / (32 c)`.
//!
//! ## Writers and readers
//!
//! One writer at a time ([`ColdWriter`], held under the F2 store's
//! maintenance lock: migration and cold compaction) appends records, then
//! **commits the log before** it points any chunk at them (a reader only
//! ever follows committed addresses), then updates the chunks. Readers
//! take no lock: a chunk is read whole (the chunk store gives consistent
//! values), and each record followed is immutable. A record a reader
//! reaches may be below the log's begin address once cold compaction
//! truncated it; the reader then starts again from the chunk, which by then
//! points at the copies compaction made (it copies, publishes and only
//! after the next checkpoint truncates).
//!
//! **Invariant**: for every key, the first record with that key on the
//! chain from its slot's entry is the key's newest cold record. Appends
//! keep it (a new record is chained in front of the slot's head); cold
//! compaction copies only a key's newest record, in front of the head, and
//! a key's records are appended in the order of their versions (migration
//! moves the hot log's oldest range first, and a copy is made only of a
//! record nothing newer in the cold tier supersedes).

use std::collections::HashMap;
use std::sync::Arc;

use crate::device::{Device, FileDevice};
use crate::log::FasterLog;
use crate::record::{AlignedBytes, CodecError, Layout, Merge, Sink, Value};
use crate::store::{CompletedOp, ReadStatus, Session};
use crate::{Error, Result, Store};

/// Entries in a chunk of the cold index.
pub const CHUNK_SLOTS: usize = 32;
/// A chunk of the cold index: cold-log addresses (0: no record). Stored as
/// a `[u64; CHUNK_SLOTS]` (its layout); a write replaces it whole (its
/// merge, which lets the chunk store complete pending reads).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Chunk(pub [u64; CHUNK_SLOTS]);

impl Value for Chunk {
    const FIXED_SIZE: Option<usize> = <[u64; CHUNK_SLOTS] as Value>::FIXED_SIZE;
    type View<'a> = &'a [u64; CHUNK_SLOTS];
    fn encoded_size(&self) -> usize {
        self.0.encoded_size()
    }
    fn encode<S: Sink + ?Sized>(&self, sink: &mut S) {
        self.0.encode(sink)
    }
    fn decode(bytes: &[u8]) -> std::result::Result<Self, CodecError> {
        <[u64; CHUNK_SLOTS]>::decode(bytes).map(Chunk)
    }
    fn view(bytes: &[u8]) -> std::result::Result<Self::View<'_>, CodecError> {
        <[u64; CHUNK_SLOTS]>::view(bytes)
    }
    fn layout() -> Layout {
        <[u64; CHUNK_SLOTS]>::layout()
    }
}

impl Merge for Chunk {
    fn initial(input: &Self) -> Self {
        *input
    }
    fn in_place(stored: &mut [u8], input: &Self) -> bool {
        input.encode_into(stored).is_ok()
    }
    fn copy_update(_old: Self::View<'_>, input: &Self) -> Self {
        *input
    }
}

/// A session of the chunk store.
pub(crate) type IndexSession<D = FileDevice> = Session<u64, Chunk, D>;

/// The record header's size: previous address and the two lengths.
const RECORD_HEAD: usize = 16;

/// The chunk and slot of a key hash, with `chunks` chunks.
#[inline]
pub(crate) fn place(hash: u64, chunks: u64) -> (u64, usize) {
    let chunk = ((u128::from(hash) * u128::from(chunks)) >> 64) as u64;
    (chunk, (hash & (CHUNK_SLOTS as u64 - 1)) as usize)
}

/// A cold record, as read.
pub(crate) struct ColdRecord<'a> {
    pub previous: u64,
    pub key: &'a [u8],
    pub value: &'a [u8],
}

fn padded(len: usize) -> usize {
    len.div_ceil(8) * 8
}

/// The entry bytes of a cold record.
pub(crate) fn encode_record(previous: u64, key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(RECORD_HEAD + padded(key.len()) + value.len());
    out.extend_from_slice(&previous.to_le_bytes());
    out.extend_from_slice(&(key.len() as u32).to_le_bytes());
    out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    out.extend_from_slice(key);
    out.resize(RECORD_HEAD + padded(key.len()), 0);
    out.extend_from_slice(value);
    out
}

/// Parses a cold record's entry bytes (read at `address`).
pub(crate) fn decode_record(address: u64, bytes: &[u8]) -> Result<ColdRecord<'_>> {
    let corrupt = |what: &str| Error::Corruption { address, what: format!("cold record: {what}") };
    if bytes.len() < RECORD_HEAD {
        return Err(corrupt("shorter than its header"));
    }
    let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap_or([0; 8]));
    let half = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap_or([0; 4]));
    let previous = word(0);
    let (key_len, value_len) = (half(8) as usize, half(12) as usize);
    let key_end = RECORD_HEAD.checked_add(key_len).ok_or_else(|| corrupt("key length"))?;
    let value_at = RECORD_HEAD + padded(key_len);
    if value_at.checked_add(value_len) != Some(bytes.len()) || key_end > bytes.len() {
        return Err(corrupt("its lengths do not add up to the entry"));
    }
    if previous >= address && previous != 0 {
        return Err(corrupt("it links forward"));
    }
    Ok(ColdRecord { previous, key: &bytes[RECORD_HEAD..key_end], value: &bytes[value_at..] })
}

/// What a cold lookup cost.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ColdProbe {
    /// Chunks read (one per lookup, more if it started over).
    pub chunks: u64,
    /// Chunks that were not in the chunk store's memory (each a device
    /// read; an absent chunk counts too, though it costs none).
    pub chunk_misses: u64,
    /// Cold-log records read.
    pub records: u64,
    /// Cold-log records that were not in the cold log's memory (each a
    /// device read).
    pub record_misses: u64,
    /// Cold reads copied into the hot tier
    /// ([`super::F2Builder::promote_cold_reads`]).
    pub promoted: u64,
}

/// Sums the counts (of several sessions, say).
impl std::ops::AddAssign for ColdProbe {
    fn add_assign(&mut self, other: ColdProbe) {
        self.chunks += other.chunks;
        self.chunk_misses += other.chunk_misses;
        self.records += other.records;
        self.record_misses += other.record_misses;
        self.promoted += other.promoted;
    }
}

/// The cold tier: its log, its index store and the index's geometry.
pub(crate) struct Cold<D: Device = FileDevice> {
    pub log: FasterLog<D>,
    pub index: Store<u64, Chunk, D>,
    pub chunks: u64,
}

/// A lookup of [`Cold::lookup_batch`]: the key's bytes and hash.
pub(crate) type Lookup<'a> = (&'a [u8], u64);

/// What a lookup found: the address and value (a `Tiered` encoding) of the
/// key's newest cold record.
pub(crate) type Found = Option<(u64, AlignedBytes)>;

/// An error of a batch, shared by the lookups it failed.
pub(crate) type Shared = Arc<Error>;

/// The error itself, where this was its only user; else a copy of the
/// same variant where it has one (a device error keeps its kind, a
/// corruption its address), or its message as an I/O error.
pub(crate) fn unshare(e: Shared) -> Error {
    Arc::try_unwrap(e).unwrap_or_else(|e| match &*e {
        Error::Corruption { address, what } => {
            Error::Corruption { address: *address, what: what.clone() }
        }
        Error::Poisoned { message, kind } => {
            Error::Poisoned { message: message.clone(), kind: *kind }
        }
        Error::Io { context, source } => Error::Io {
            context: context.clone(),
            source: std::io::Error::new(source.kind(), source.to_string()),
        },
        other => Error::Io {
            context: "a cold lookup of a batch".into(),
            source: std::io::Error::other(other.to_string()),
        },
    })
}

impl<D: Device> Cold<D> {
    /// The chunks numbered `numbers` (each read once; an absent chunk is
    /// all zeros), those on the chunk store's device read as one batch.
    /// Counts the device reads in `probe.chunk_misses`.
    pub(crate) fn read_chunks(
        &self,
        index: &mut IndexSession<D>,
        numbers: &[u64],
        probe: &mut ColdProbe,
    ) -> std::result::Result<HashMap<u64, [u64; CHUNK_SLOTS]>, Shared> {
        let mut chunks = HashMap::with_capacity(numbers.len());
        let mut waiting: HashMap<u64, u64> = HashMap::new(); // serial -> chunk
        let mut asked = std::collections::HashSet::with_capacity(numbers.len());
        for &number in numbers {
            if !asked.insert(number) {
                continue;
            }
            match index.read(&number).map_err(Arc::new)? {
                ReadStatus::Found(Chunk(c)) => {
                    chunks.insert(number, c);
                }
                ReadStatus::NotFound => {
                    chunks.insert(number, [0; CHUNK_SLOTS]);
                }
                ReadStatus::Pending { serial } => {
                    probe.chunk_misses += 1;
                    waiting.insert(serial, number);
                }
            }
        }
        while !waiting.is_empty() {
            let done = index.complete_pending().map_err(Arc::new)?;
            if done.is_empty() {
                std::thread::yield_now();
            }
            for done in done {
                let Some(number) = waiting.remove(&done.serial) else { continue };
                let chunk = match done.op {
                    CompletedOp::Read(c) => c.map_or([0; CHUNK_SLOTS], |c| c.0),
                    CompletedOp::Failed(e) => return Err(e.0),
                    _ => {
                        return Err(Arc::new(Error::Corruption {
                            address: 0,
                            what: "a cold-index read completed as another operation".into(),
                        }));
                    }
                };
                chunks.insert(number, chunk);
            }
        }
        Ok(chunks)
    }

    /// The value (a `Tiered` encoding) of `key`'s newest cold record, if
    /// any, following the chain of its slot (see the module's invariant).
    pub(crate) fn lookup(
        &self,
        index: &mut IndexSession<D>,
        key: &[u8],
        hash: u64,
        probe: &mut ColdProbe,
    ) -> Result<Option<AlignedBytes>> {
        Ok(self.find(index, key, hash, probe)?.map(|(_, value)| value))
    }

    /// [`Self::lookup`], with the record's address.
    pub(crate) fn find(
        &self,
        index: &mut IndexSession<D>,
        key: &[u8],
        hash: u64,
        probe: &mut ColdProbe,
    ) -> Result<Found> {
        self.lookup_batch(index, &[(key, hash)], probe).pop().unwrap_or(Ok(None)).map_err(unshare)
    }

    /// Many lookups at once, each step's device reads in flight together:
    /// the chunks of all of them, then the first record of every chain,
    /// then the next record of those not yet found, and so on. The results
    /// are in the order of `lookups`.
    pub(crate) fn lookup_batch(
        &self,
        index: &mut IndexSession<D>,
        lookups: &[Lookup<'_>],
        probe: &mut ColdProbe,
    ) -> Vec<std::result::Result<Found, Shared>> {
        let mut results: Vec<Option<std::result::Result<Found, Shared>>> =
            lookups.iter().map(|_| None).collect();
        // (lookup, the head it started from, the record to read next)
        let mut walks: Vec<(usize, u64, u64)> = Vec::with_capacity(lookups.len());
        // Walks that met a truncated record, with the head they started
        // from (none to begin with: every lookup starts at its chunk).
        let mut truncated: Vec<(usize, Option<u64>)> =
            (0..lookups.len()).map(|i| (i, None)).collect();
        while !truncated.is_empty() {
            let numbers: Vec<u64> =
                truncated.iter().map(|&(i, _)| place(lookups[i].1, self.chunks).0).collect();
            probe.chunks += numbers.len() as u64;
            let chunks = match self.read_chunks(index, &numbers, probe) {
                Ok(chunks) => chunks,
                Err(e) => {
                    for (i, _) in truncated.drain(..) {
                        results[i] = Some(Err(e.clone()));
                    }
                    break;
                }
            };
            for (i, started) in truncated.drain(..) {
                let (chunk, slot) = place(lookups[i].1, self.chunks);
                let head = chunks.get(&chunk).map_or(0, |c| c[slot]);
                if started == Some(head) {
                    // The chunk still holds the head the walk started
                    // from: the rest of its chain is older than anything
                    // compaction kept (it publishes its copies in front of
                    // the head before it truncates).
                    results[i] = Some(Ok(None));
                } else {
                    // A first look, or the chunk moved under the walk.
                    walks.push((i, head, head));
                }
            }
            while !walks.is_empty() {
                let begin = self.log.begin_address().raw();
                let mut reading = Vec::with_capacity(walks.len());
                for (i, head, at) in walks.drain(..) {
                    if at == 0 {
                        results[i] = Some(Ok(None));
                    } else if at < begin {
                        truncated.push((i, Some(head)));
                    } else {
                        reading.push((i, head, at));
                    }
                }
                let addresses: Vec<u64> = reading.iter().map(|r| r.2).collect();
                probe.records += addresses.len() as u64;
                let (read, from_device) = self.log.read_batch_known(&addresses);
                probe.record_misses += from_device as u64;
                for ((i, head, at), bytes) in reading.into_iter().zip(read) {
                    let record = match &bytes {
                        Ok(bytes) => decode_record(at, bytes),
                        // Truncated while we read.
                        Err(_) if at < self.log.begin_address().raw() => {
                            truncated.push((i, Some(head)));
                            continue;
                        }
                        Err(_) => Err(bytes.err().unwrap_or(Error::LogFull)),
                    }
                    .map_err(Arc::new);
                    match record {
                        Ok(record) if record.key == lookups[i].0 => {
                            results[i] =
                                Some(Ok(Some((at, AlignedBytes::copy_from(record.value)))));
                        }
                        Ok(record) => walks.push((i, head, record.previous)),
                        Err(e) => results[i] = Some(Err(e)),
                    }
                }
            }
        }
        results.into_iter().map(|r| r.unwrap_or(Ok(None))).collect()
    }

    /// Whether `hash`'s slot has no record in the cold tier (then no key
    /// of that hash has one either).
    pub(crate) fn slot_empty(&self, index: &mut IndexSession<D>, hash: u64) -> Result<bool> {
        let (chunk, slot) = place(hash, self.chunks);
        let chunks =
            self.read_chunks(index, &[chunk], &mut ColdProbe::default()).map_err(unshare)?;
        let head = chunks.get(&chunk).map_or(0, |c| c[slot]);
        Ok(head == 0 || head < self.log.begin_address().raw())
    }
}

/// Chunks a batch may change before the writer publishes it by itself
/// (4 MiB of chunks).
const BATCH_CHUNKS: usize = 16_384;

/// Records the writer queues before it reads their chunks (as one batch of
/// device reads) and appends them.
const QUEUE_RECORDS: usize = 4_096;

/// The cold tier's one writer: appends records and publishes them in
/// batches (log commit first, then the chunks). Each chunk a batch touches
/// is read once and kept, changed, until the batch is published; records
/// wait in a queue until [`QUEUE_RECORDS`] of them can have their chunks
/// read together.
pub(crate) struct ColdWriter<D: Device = FileDevice> {
    pub index: IndexSession<D>,
    /// The chunks this batch changed, as they will be published.
    chunks: HashMap<u64, [u64; CHUNK_SLOTS]>,
    /// Queued records: hash, and where the key and value are in `bytes`.
    queue: Vec<(u64, std::ops::Range<usize>, std::ops::Range<usize>)>,
    bytes: Vec<u8>,
}

impl<D: Device> ColdWriter<D> {
    pub(crate) fn new(index: IndexSession<D>) -> Self {
        Self { index, chunks: HashMap::new(), queue: Vec::new(), bytes: Vec::new() }
    }

    /// Appends a record of `key` (hash `hash`) with `value` (a `Tiered`
    /// encoding) in front of its slot's chain, in the order of the calls;
    /// readers see it after [`Self::publish`] (which a batch that outgrows
    /// [`BATCH_CHUNKS`] calls by itself: records become visible early,
    /// never late).
    pub(crate) fn append(
        &mut self,
        cold: &Cold<D>,
        key: &[u8],
        hash: u64,
        value: &[u8],
    ) -> Result<()> {
        let at = self.bytes.len();
        self.bytes.extend_from_slice(key);
        self.bytes.extend_from_slice(value);
        self.queue.push((hash, at..at + key.len(), at + key.len()..self.bytes.len()));
        if self.queue.len() >= QUEUE_RECORDS {
            self.drain(cold)?;
        }
        Ok(())
    }

    /// Appends the queued records: reads the chunks they need that the
    /// batch does not hold (one batch of reads), then appends each.
    fn drain(&mut self, cold: &Cold<D>) -> Result<()> {
        let queue = std::mem::take(&mut self.queue);
        let bytes = std::mem::take(&mut self.bytes);
        let mut start = 0;
        while start < queue.len() {
            // As many records as fit in the batch's chunk limit.
            let mut needed: Vec<u64> = Vec::new();
            let mut seen = std::collections::HashSet::new();
            let mut end = start;
            while end < queue.len() {
                let (chunk, _) = place(queue[end].0, cold.chunks);
                if !self.chunks.contains_key(&chunk) && seen.insert(chunk) {
                    if self.chunks.len() + needed.len() >= BATCH_CHUNKS {
                        break;
                    }
                    needed.push(chunk);
                }
                end += 1;
            }
            if end == start {
                // The batch is full: publish it and go on with a new one.
                self.publish_chunks(cold)?;
                continue;
            }
            let read = cold
                .read_chunks(&mut self.index, &needed, &mut ColdProbe::default())
                .map_err(unshare)?;
            for chunk in needed {
                self.chunks.insert(chunk, read.get(&chunk).copied().unwrap_or([0; CHUNK_SLOTS]));
            }
            for (hash, key, value) in &queue[start..end] {
                let (chunk, slot) = place(*hash, cold.chunks);
                let Some(entries) = self.chunks.get_mut(&chunk) else {
                    return Err(Error::Corruption {
                        address: 0,
                        what: format!("cold index chunk {chunk} was not read before its append"),
                    });
                };
                let previous = entries[slot];
                let previous = if previous < cold.log.begin_address().raw() { 0 } else { previous };
                let record = encode_record(previous, &bytes[key.clone()], &bytes[value.clone()]);
                entries[slot] = cold.log.enqueue(&record)?.raw();
            }
            start = end;
        }
        // Keep the buffers' capacity for the next queue.
        self.queue = queue;
        self.queue.clear();
        self.bytes = bytes;
        self.bytes.clear();
        Ok(())
    }

    /// Makes the batch durable and visible: appends the queued records,
    /// commits the log, then writes the chunks it changed, in chunk order.
    /// Returns the chunks written.
    pub(crate) fn publish(&mut self, cold: &Cold<D>) -> Result<usize> {
        self.drain(cold)?;
        self.publish_chunks(cold)
    }

    fn publish_chunks(&mut self, cold: &Cold<D>) -> Result<usize> {
        if self.chunks.is_empty() {
            return Ok(0);
        }
        cold.log.commit()?;
        let mut chunks: Vec<(u64, [u64; CHUNK_SLOTS])> = self.chunks.drain().collect();
        chunks.sort_unstable_by_key(|(chunk, _)| *chunk);
        for (chunk, entries) in &chunks {
            self.index.upsert(chunk, &Chunk(*entries))?;
        }
        Ok(chunks.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_bad_ones_are_named() {
        let bytes = encode_record(64, b"key", &[1, 2, 3, 4, 5, 6, 7, 8, 9]);
        let r = decode_record(128, &bytes).expect("record");
        assert_eq!((r.previous, r.key, r.value.len()), (64, &b"key"[..], 9));
        assert!(decode_record(128, &bytes[..10]).is_err());
        assert!(decode_record(128, &bytes[..bytes.len() - 1]).is_err());
        assert!(decode_record(32, &bytes).is_err(), "a record linking forward is corrupt");
        let mut long = bytes.clone();
        long[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode_record(128, &long).is_err());
    }

    #[test]
    fn a_shared_batch_error_keeps_its_variant() {
        let corrupt = Arc::new(Error::Corruption { address: 7, what: "bad".into() });
        let _other_user = corrupt.clone();
        assert!(matches!(unshare(corrupt), Error::Corruption { address: 7, .. }));
        let io = Arc::new(Error::Io {
            context: "reading".into(),
            source: std::io::Error::new(std::io::ErrorKind::StorageFull, "full"),
        });
        let _other_user = io.clone();
        match unshare(io) {
            Error::Io { source, .. } => assert_eq!(source.kind(), std::io::ErrorKind::StorageFull),
            e => panic!("{e}"),
        }
        let only = Arc::new(Error::LogFull);
        assert!(matches!(unshare(only), Error::LogFull));
    }

    #[test]
    fn places_spread_over_chunks_and_slots() {
        let chunks = 1000;
        let mut seen = std::collections::HashSet::new();
        for i in 0..100_000u64 {
            let hash = xxhash_rust::xxh3::xxh3_64(&i.to_le_bytes());
            let (chunk, slot) = place(hash, chunks);
            assert!(chunk < chunks && slot < CHUNK_SLOTS);
            seen.insert((chunk, slot));
        }
        // 32,000 places, 100,000 keys: uniform placement leaves e^-3.125
        // (4.4%) of them empty, about 30,600 used.
        assert!(seen.len() > 30_000, "{}", seen.len());
    }
}
