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

use crate::log::{FasterLog, LogAddress};
use crate::record::AlignedBytes;
use crate::store::Session;
use crate::{Error, Result, Store};

/// Entries in a chunk of the cold index.
pub const CHUNK_SLOTS: usize = 32;
/// A chunk of the cold index: cold-log addresses (0: no record).
pub(crate) type Chunk = [u64; CHUNK_SLOTS];

/// A session of the chunk store.
pub(crate) type IndexSession = Session<u64, Chunk, crate::device::FileDevice>;

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
    /// Cold reads copied into the hot tier
    /// ([`super::F2Builder::promote_cold_reads`]).
    pub promoted: u64,
}

/// The cold tier: its log, its index store and the index's geometry.
pub(crate) struct Cold {
    pub log: FasterLog,
    pub index: Store<u64, Chunk>,
    pub chunks: u64,
}

impl Cold {
    /// The address in `chunk`'s `slot` (0 without one).
    fn head(&self, index: &mut IndexSession, hash: u64, probe: &mut ColdProbe) -> Result<u64> {
        let (chunk, slot) = place(hash, self.chunks);
        probe.chunks += 1;
        if !index.is_in_memory(&chunk) {
            probe.chunk_misses += 1;
        }
        index.read_with(&chunk, |c| c.map_or(0, |c| c[slot]))
    }

    /// The value (a `Tiered` encoding) of `key`'s newest cold record, if
    /// any, following the chain of its slot (see the module's invariant).
    pub(crate) fn lookup(
        &self,
        index: &mut IndexSession,
        key: &[u8],
        hash: u64,
        probe: &mut ColdProbe,
    ) -> Result<Option<AlignedBytes>> {
        Ok(self.find(index, key, hash, probe)?.map(|(_, value)| value))
    }

    /// [`Self::lookup`], with the record's address.
    pub(crate) fn find(
        &self,
        index: &mut IndexSession,
        key: &[u8],
        hash: u64,
        probe: &mut ColdProbe,
    ) -> Result<Option<(u64, AlignedBytes)>> {
        'start: loop {
            let head = self.head(index, hash, probe)?;
            let mut at = head;
            while at != 0 {
                if at < self.log.begin_address().raw() {
                    // Truncated. If the chunk still holds the head we
                    // started from, the rest of the chain is older than
                    // anything compaction kept (it published its copies in
                    // front of the head before truncating); otherwise it
                    // moved under us: start again from it.
                    if self.head(index, hash, probe)? != head {
                        continue 'start;
                    }
                    return Ok(None);
                }
                probe.records += 1;
                let bytes = match self.log.read_at_known(LogAddress::from_raw(at)) {
                    Ok(bytes) => bytes,
                    // Truncated while we read: see above.
                    Err(_) if at < self.log.begin_address().raw() => continue,
                    Err(e) => return Err(e),
                };
                let record = decode_record(at, &bytes)?;
                if record.key == key {
                    return Ok(Some((at, AlignedBytes::copy_from(record.value))));
                }
                at = record.previous;
            }
            return Ok(None);
        }
    }

    /// Whether `hash`'s slot has no record in the cold tier (then no key
    /// of that hash has one either).
    pub(crate) fn slot_empty(&self, index: &mut IndexSession, hash: u64) -> Result<bool> {
        let head = self.head(index, hash, &mut ColdProbe::default())?;
        Ok(head == 0 || head < self.log.begin_address().raw())
    }
}

/// Chunks a batch may change before the writer publishes it by itself
/// (4 MiB of chunks).
const BATCH_CHUNKS: usize = 16_384;

/// The cold tier's one writer: appends records and publishes them in
/// batches (log commit first, then the chunks). Each chunk a batch touches
/// is read once and kept, changed, until the batch is published.
pub(crate) struct ColdWriter {
    pub index: IndexSession,
    /// The chunks this batch changed, as they will be published.
    chunks: HashMap<u64, Chunk>,
}

impl ColdWriter {
    pub(crate) fn new(index: IndexSession) -> Self {
        Self { index, chunks: HashMap::new() }
    }

    /// Appends a record of `key` (hash `hash`) with `value` (a `Tiered`
    /// encoding) in front of its slot's chain; readers see it after
    /// [`Self::publish`] (which a batch that outgrows [`BATCH_CHUNKS`]
    /// calls by itself: records become visible early, never late).
    pub(crate) fn append(
        &mut self,
        cold: &Cold,
        key: &[u8],
        hash: u64,
        value: &[u8],
    ) -> Result<u64> {
        let (chunk, slot) = place(hash, cold.chunks);
        if self.chunks.len() >= BATCH_CHUNKS && !self.chunks.contains_key(&chunk) {
            self.publish(cold)?;
        }
        let entries = match self.chunks.entry(chunk) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let read = self.index.read_with(&chunk, |c| c.copied())?;
                e.insert(read.unwrap_or([0; CHUNK_SLOTS]))
            }
        };
        let previous = entries[slot];
        let previous = if previous < cold.log.begin_address().raw() { 0 } else { previous };
        let address = cold.log.enqueue(&encode_record(previous, key, value))?.raw();
        entries[slot] = address;
        Ok(address)
    }

    /// Makes the batch durable and visible: commits the log, then writes
    /// the chunks it changed, in chunk order. Returns the chunks written.
    pub(crate) fn publish(&mut self, cold: &Cold) -> Result<usize> {
        if self.chunks.is_empty() {
            return Ok(0);
        }
        cold.log.commit()?;
        let mut chunks: Vec<(u64, Chunk)> = self.chunks.drain().collect();
        chunks.sort_unstable_by_key(|(chunk, _)| *chunk);
        for (chunk, entries) in &chunks {
            self.index.upsert(chunk, entries)?;
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
