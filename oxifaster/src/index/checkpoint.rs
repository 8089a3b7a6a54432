//! The index checkpoint: the table and its overflow buckets in one file.
//!
//! ```text
//! header (64 bytes, little-endian):
//!   magic "OXFINDEX" | format version u32 | 0 u32 | table size u64 |
//!   overflow buckets u64 | log start u64 | log end u64 | 0 u64
//! buckets ((table size + overflow) × 64 bytes): 7 entries, then the next
//!   bucket of the chain as overflow index + 1 (0: none)
//! trailer: XXH3-64 of header and buckets (u64)
//! ```
//!
//! The dump is *fuzzy*: it reads entries while sessions update them. Every
//! entry it writes points at a published record below `log end`, and
//! recovery replays the log from `log start` (taken before any operation
//! that could be missed began) to fix entries that changed meanwhile.
//! Tentative entries are dropped on load.
// Under loom the table is a model: reading checkpoints is left out.
#![cfg_attr(oxifaster_loom, allow(dead_code))]

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::Ordering;

use xxhash_rust::xxh3::Xxh3Default;

use super::bucket::READ_CACHE_BIT;
use super::{HashBucket, HashBucketEntry, HashIndex};
use crate::{Error, Result};

const MAGIC: &[u8; 8] = b"OXFINDEX";
/// The index file format this build writes and reads.
pub const INDEX_FORMAT_VERSION: u32 = 1;
/// The index file's header size.
pub const HEADER_SIZE: usize = 64;
const BUCKET_SIZE: usize = 64;
/// Buckets are hashed, written and read this many bytes at a time.
const CHUNK: usize = 1 << 20;

/// What an index checkpoint file describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexFileHeader {
    /// Main buckets.
    pub table_size: u64,
    /// Overflow buckets.
    pub overflow_buckets: u64,
    /// The log address from which recovery replays.
    pub log_start: u64,
    /// The log tail when the dump finished: every entry is below it.
    pub log_end: u64,
}

impl IndexFileHeader {
    fn encode(&self) -> [u8; HEADER_SIZE] {
        let mut h = [0u8; HEADER_SIZE];
        h[0..8].copy_from_slice(MAGIC);
        h[8..12].copy_from_slice(&INDEX_FORMAT_VERSION.to_le_bytes());
        h[16..24].copy_from_slice(&self.table_size.to_le_bytes());
        h[24..32].copy_from_slice(&self.overflow_buckets.to_le_bytes());
        h[32..40].copy_from_slice(&self.log_start.to_le_bytes());
        h[40..48].copy_from_slice(&self.log_end.to_le_bytes());
        h
    }

    fn decode(h: &[u8; HEADER_SIZE], path: &Path) -> Result<Self> {
        let corrupt =
            |what: String| Error::CheckpointCorrupt { path: path.to_path_buf(), what };
        if &h[0..8] != MAGIC {
            return Err(corrupt("not an index checkpoint (bad magic)".into()));
        }
        let word = |at: usize| u64::from_le_bytes(h[at..at + 8].try_into().unwrap_or([0; 8]));
        let version = u32::from_le_bytes(h[8..12].try_into().unwrap_or([0; 4]));
        if version != INDEX_FORMAT_VERSION {
            return Err(Error::UnsupportedFormat {
                path: path.to_path_buf(),
                found: version,
                supported: INDEX_FORMAT_VERSION,
            });
        }
        let header = Self {
            table_size: word(16),
            overflow_buckets: word(24),
            log_start: word(32),
            log_end: word(40),
        };
        if !header.table_size.is_power_of_two() || header.table_size > 1 << 40 {
            return Err(corrupt(format!("table size {} is not a power of two", header.table_size)));
        }
        if header.overflow_buckets > 1 << 40 || header.log_start > header.log_end {
            return Err(corrupt("impossible header fields".into()));
        }
        Ok(header)
    }
}

/// `bytes` (an index checkpoint file, possibly damaged) with its trailer
/// recomputed, so that a fuzzer reaches the checks behind the checksum.
#[doc(hidden)]
pub fn fix_checkpoint_trailer(bytes: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    if out.len() < HEADER_SIZE + 8 {
        return out;
    }
    let mut header = [0u8; HEADER_SIZE];
    header.copy_from_slice(&out[..HEADER_SIZE]);
    let body_end = out.len() - 8;
    let hashes: Vec<u64> =
        out[HEADER_SIZE..body_end].chunks(CHUNK).map(xxhash_rust::xxh3::xxh3_64).collect();
    let trailer = checksum(&header, &hashes);
    out[body_end..].copy_from_slice(&trailer.to_le_bytes());
    out
}

/// The trailer: XXH3 of the header and of the XXH3 of each 1 MiB chunk of
/// the buckets (so that chunks can be read and checked in parallel).
/// Positional reads of an index checkpoint: from its file, or (fuzzing)
/// from memory.
trait ReadAt: Sync {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()>;
}

impl ReadAt for File {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        FileExt::read_exact_at(self, buf, offset)
    }
}

/// A file image in memory.
struct Bytes<'a>(&'a [u8]);

impl ReadAt for Bytes<'_> {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        let at = usize::try_from(offset).map_err(std::io::Error::other)?;
        let src = at
            .checked_add(buf.len())
            .and_then(|end| self.0.get(at..end))
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

fn checksum(header: &[u8; HEADER_SIZE], chunk_hashes: &[u64]) -> u64 {
    let mut hash = Xxh3Default::new();
    hash.update(header);
    for h in chunk_hashes {
        hash.update(&h.to_le_bytes());
    }
    hash.digest()
}

impl HashIndex {
    /// Dumps the index into `out`: a placeholder header, the buckets and the
    /// trailer. Returns the header and its bytes, which the caller writes
    /// at offset 0 once `out` is flushed. `log_start` and `log_end` frame
    /// the dump (see the module documentation).
    pub fn write_checkpoint(
        &self,
        out: &mut impl Write,
        log_start: u64,
        log_end: impl FnOnce() -> u64,
    ) -> std::io::Result<(IndexFileHeader, [u8; HEADER_SIZE])> {
        self.write_checkpoint_resolving(out, log_start, log_end, &|slot| slot.load(Ordering::Acquire))
    }

    /// [`Self::write_checkpoint`], writing for each entry that points into
    /// the read cache what `resolve` returns for its slot: the entry with
    /// the log address the cache record's chain continues at (a file
    /// never holds a read-cache address).
    pub(crate) fn write_checkpoint_resolving(
        &self,
        out: &mut impl Write,
        log_start: u64,
        log_end: impl FnOnce() -> u64,
        resolve: &dyn Fn(&crate::sync::AtomicU64) -> u64,
    ) -> std::io::Result<(IndexFileHeader, [u8; HEADER_SIZE])> {
        // No growth replaces the table during the dump (the old table's
        // overflow buckets would be missing from it).
        let _held = self.hold_table();
        // Overflow allocation waits while the dump runs, so that every
        // bucket a chain links to has a number in the file.
        let overflow = self.overflow.lock().unwrap_or_else(|p| p.into_inner());
        let chained: Vec<&HashBucket> = overflow.in_use.iter().map(|&i| &*overflow.owned[i]).collect();
        let numbers: HashMap<*const HashBucket, u64> = chained
            .iter()
            .enumerate()
            .map(|(i, b)| (*b as *const HashBucket, i as u64 + 1))
            .collect();
        let table = self.table();
        out.write_all(&[0u8; HEADER_SIZE])?;
        // Buckets are encoded into a chunk, which is hashed and written
        // whole: hashing 64 bytes at a time costs more than the copy.
        let mut chunk_hashes: Vec<u64> = Vec::new();
        let mut chunk: Vec<u8> = Vec::with_capacity(CHUNK);
        let mut write_bucket = |bucket: Option<&HashBucket>, out: &mut dyn Write| {
            if let Some(bucket) = bucket {
                for slot in &bucket.entries {
                    let mut entry = HashBucketEntry::from_raw(slot.load(Ordering::Acquire));
                    if entry.address().raw() & READ_CACHE_BIT != 0 {
                        entry = HashBucketEntry::from_raw(resolve(slot));
                    }
                    let raw = if entry.is_tentative() { 0 } else { entry.raw() };
                    chunk.extend_from_slice(&raw.to_le_bytes());
                }
                let next = bucket
                    .next()
                    .map_or(0, |n| numbers.get(&(n as *const HashBucket)).copied().unwrap_or(0));
                chunk.extend_from_slice(&next.to_le_bytes());
            }
            if chunk.len() >= CHUNK || (bucket.is_none() && !chunk.is_empty()) {
                chunk_hashes.push(xxhash_rust::xxh3::xxh3_64(&chunk));
                out.write_all(&chunk)?;
                chunk.clear();
            }
            Ok::<(), std::io::Error>(())
        };
        for index in 0..table.size() {
            write_bucket(Some(table.bucket_at(index)), out)?;
        }
        for bucket in &chained {
            write_bucket(Some(bucket), out)?;
        }
        write_bucket(None, out)?;
        let header = IndexFileHeader {
            table_size: table.size(),
            overflow_buckets: chained.len() as u64,
            log_start,
            log_end: log_end(),
        };
        drop(chained);
        drop(overflow);
        let header_bytes = header.encode();
        let trailer = checksum(&header_bytes, &chunk_hashes);
        out.write_all(&trailer.to_le_bytes())?;
        Ok((header, header_bytes))
    }

    /// Loads an index checkpoint, checking its checksum and structure. The
    /// file is never trusted: sizes are checked against the file length
    /// before anything is allocated.
    pub fn read_checkpoint(path: &Path) -> Result<(HashIndex, IndexFileHeader)> {
        let display = path.display().to_string();
        let io = |source| Error::Io { context: format!("reading {display}"), source };
        let file = File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        Self::read_checkpoint_from(&file, len, path)
    }

    /// [`Self::read_checkpoint`] of a file image held in memory (for
    /// fuzzing); `path` names it in errors.
    pub(crate) fn read_checkpoint_bytes(
        bytes: &[u8],
        path: &Path,
    ) -> Result<(HashIndex, IndexFileHeader)> {
        Self::read_checkpoint_from(&Bytes(bytes), bytes.len() as u64, path)
    }

    /// Under loom the table is not raw memory: index checkpoints are not
    /// modelled.
    #[cfg(oxifaster_loom)]
    fn read_checkpoint_from(
        _file: &impl ReadAt,
        _len: u64,
        path: &Path,
    ) -> Result<(HashIndex, IndexFileHeader)> {
        Err(Error::CheckpointCorrupt {
            path: path.to_path_buf(),
            what: "index checkpoints are not read under loom".into(),
        })
    }

    /// Loads an index checkpoint of `len` bytes from `file`.
    #[cfg(not(oxifaster_loom))]
    fn read_checkpoint_from(
        file: &impl ReadAt,
        len: u64,
        path: &Path,
    ) -> Result<(HashIndex, IndexFileHeader)> {
        let display = path.display().to_string();
        let io = |source| Error::Io { context: format!("reading {display}"), source };
        let corrupt =
            |what: String| Error::CheckpointCorrupt { path: path.to_path_buf(), what };
        if len < (HEADER_SIZE + 8) as u64 {
            return Err(corrupt(format!("{len} bytes is too short for an index checkpoint")));
        }
        let mut header_bytes = [0u8; HEADER_SIZE];
        file.read_exact_at(&mut header_bytes, 0).map_err(io)?;
        let header = IndexFileHeader::decode(&header_bytes, path)?;
        let buckets = header.table_size + header.overflow_buckets;
        let expected = buckets
            .checked_mul(BUCKET_SIZE as u64)
            .and_then(|b| b.checked_add((HEADER_SIZE + 8) as u64));
        if expected != Some(len) {
            return Err(corrupt(format!(
                "{len} bytes, but the header describes {buckets} buckets (truncated or damaged)"
            )));
        }
        let index = HashIndex::new(header.table_size)?;
        let body_len = (buckets as usize) * BUCKET_SIZE;
        let mut chunk_hashes = vec![0u64; body_len.div_ceil(CHUNK)];
        // The main buckets are read straight into the table (the file's
        // bucket layout is the in-memory one, little-endian, except for the
        // overflow word, fixed below), whole chunks by two threads at once.
        let main_bytes = header.table_size as usize * BUCKET_SIZE;
        // SAFETY: the index was just created and is not shared, so nothing
        // else refers to its table; the table is `main_bytes` long, and any
        // bytes are a valid bucket (atomics only).
        let table = unsafe { std::slice::from_raw_parts_mut(index.table().buf.as_ptr(), main_bytes) };
        let whole = main_bytes / CHUNK;
        let (direct, partial) = table.split_at_mut(whole * CHUNK);
        let (hashes_direct, _) = chunk_hashes.split_at_mut(whole);
        std::thread::scope(|scope| -> std::io::Result<()> {
            let mut work: [Vec<(usize, &mut [u8], &mut u64)>; 2] = [Vec::new(), Vec::new()];
            for (k, (piece, hash)) in
                direct.chunks_mut(CHUNK).zip(hashes_direct.iter_mut()).enumerate()
            {
                work[k % 2].push((k, piece, hash));
            }
            let [even, odd] = work;
            let read = move |jobs: Vec<(usize, &mut [u8], &mut u64)>| -> std::io::Result<()> {
                for (k, piece, hash) in jobs {
                    file.read_exact_at(piece, (HEADER_SIZE + k * CHUNK) as u64)?;
                    *hash = xxhash_rust::xxh3::xxh3_64(piece);
                }
                Ok(())
            };
            let other = scope.spawn(move || read(odd));
            let mine = read(even);
            other.join().unwrap_or_else(|_| Err(std::io::Error::other("reader panicked")))?;
            mine
        })
        .map_err(io)?;
        // The rest of the body (a main region smaller than a chunk, and the
        // overflow buckets), chunk by chunk.
        let mut rest = vec![0u8; body_len - whole * CHUNK];
        let rest_at = HEADER_SIZE + whole * CHUNK;
        file.read_exact_at(&mut rest, rest_at as u64).map_err(io)?;
        for (k, piece) in rest.chunks(CHUNK).enumerate() {
            chunk_hashes[whole + k] = xxhash_rust::xxh3::xxh3_64(piece);
        }
        let (main_rest, overflow_bytes) = rest.split_at(partial.len());
        partial.copy_from_slice(main_rest);
        let mut overflow: Vec<Box<HashBucket>> =
            (0..header.overflow_buckets).map(|_| Box::new(HashBucket::default())).collect();
        let mut links: Vec<(u64, u64)> = Vec::new(); // (bucket number, next)
        let mut link = |number: u64, next: u64| {
            if next > header.overflow_buckets {
                return Err(corrupt(format!("bucket {number} links to overflow bucket {next}")));
            }
            links.push((number, next - 1));
            Ok(())
        };
        for number in 0..header.table_size {
            let bucket = index.bucket_at(number);
            for slot in &bucket.entries {
                if HashBucketEntry::from_raw(slot.load(Ordering::Relaxed)).is_tentative() {
                    slot.store(0, Ordering::Relaxed);
                }
            }
            let next = bucket.raw_next();
            if next != 0 {
                bucket.set_next(std::ptr::null());
                link(number, next)?;
            }
        }
        for (i, (bucket, bytes)) in
            overflow.iter().zip(overflow_bytes.chunks_exact(BUCKET_SIZE)).enumerate()
        {
            let number = header.table_size + i as u64;
            for (i, slot) in bucket.entries.iter().enumerate() {
                let raw = u64::from_le_bytes(bytes[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
                let raw = if HashBucketEntry::from_raw(raw).is_tentative() { 0 } else { raw };
                slot.store(raw, Ordering::Relaxed);
            }
            let next = u64::from_le_bytes(bytes[56..64].try_into().unwrap_or([0; 8]));
            if next != 0 {
                link(number, next)?;
            }
        }
        let mut trailer = [0u8; 8];
        file.read_exact_at(&mut trailer, (HEADER_SIZE + body_len) as u64).map_err(io)?;
        if checksum(&header_bytes, &chunk_hashes) != u64::from_le_bytes(trailer) {
            return Err(corrupt("checksum mismatch".into()));
        }
        // Every overflow bucket is linked from exactly one bucket, so no
        // chain can loop.
        let mut linked = vec![false; overflow.len()];
        for &(_, next) in &links {
            if std::mem::replace(&mut linked[next as usize], true) {
                return Err(corrupt(format!("overflow bucket {} is linked twice", next + 1)));
            }
        }
        for (number, next) in links {
            let target: *const HashBucket = &*overflow[next as usize];
            if number < header.table_size {
                index.bucket_at(number).set_next(target);
            } else {
                overflow[(number - header.table_size) as usize].set_next(target);
            }
        }
        let in_use = (0..overflow.len()).collect();
        *index.overflow.lock().unwrap_or_else(|p| p.into_inner()) =
            super::Overflow { owned: std::mem::take(&mut overflow), free: Vec::new(), in_use };
        Ok((index, header))
    }

    /// Calls `f` with every non-empty entry slot (main and overflow
    /// buckets). For recovery, before the index is shared.
    pub(crate) fn for_each_entry(&self, mut f: impl FnMut(&crate::sync::AtomicU64)) {
        let visit = |bucket: &HashBucket, f: &mut dyn FnMut(&crate::sync::AtomicU64)| {
            for slot in &bucket.entries {
                if slot.load(Ordering::Relaxed) != 0 {
                    f(slot);
                }
            }
        };
        let table = self.table();
        for index in 0..table.size() {
            visit(table.bucket_at(index), &mut f);
        }
        let overflow = self.overflow.lock().unwrap_or_else(|p| p.into_inner());
        for &i in &overflow.in_use {
            visit(&overflow.owned[i], &mut f);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::Address;

    fn write(index: &HashIndex, path: &Path, start: u64, end: u64) -> IndexFileHeader {
        let mut bytes = Vec::new();
        let (header, header_bytes) =
            index.write_checkpoint(&mut bytes, start, || end).expect("dump");
        bytes[..HEADER_SIZE].copy_from_slice(&header_bytes);
        std::fs::write(path, &bytes).expect("write");
        header
    }

    #[test]
    fn an_index_with_overflow_chains_round_trips() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("index");
        let index = HashIndex::new(4).expect("index");
        // 200 distinct tags in 4 buckets: long overflow chains.
        for i in 0..200u64 {
            let hash = (i << 48) | (i % 4);
            let slot = index.find_or_create_entry(hash);
            let entry = HashBucketEntry::new(
                Address::new(64 + i * 8).expect("address"),
                HashBucketEntry::tag_of(hash),
                false,
            );
            slot.slot.store(entry.raw(), Ordering::Release);
        }
        let header = write(&index, &path, 64, 4096);
        assert!(header.overflow_buckets > 0);
        let (back, read_header) = HashIndex::read_checkpoint(&path).expect("read");
        assert_eq!(read_header, header);
        for i in 0..200u64 {
            let hash = (i << 48) | (i % 4);
            let found = back.find_entry(hash).expect("entry survives");
            assert_eq!(found.entry.address().raw(), 64 + i * 8);
        }
    }

    #[test]
    fn a_table_of_many_chunks_is_read_in_parallel_and_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("index");
        // 2^15 buckets: 2 MiB, two chunks read by two threads, plus a
        // partial chunk of overflow buckets.
        let index = HashIndex::new(1 << 15).expect("index");
        for i in 0..300_000u64 {
            let hash = crate::record::hash_bytes(&i.to_le_bytes());
            let slot = index.find_or_create_entry(hash);
            let entry = HashBucketEntry::new(
                Address::new(64 + i * 8).expect("address"),
                HashBucketEntry::tag_of(hash),
                false,
            );
            slot.slot.store(entry.raw(), Ordering::Release);
        }
        assert!(index.overflow_buckets() > 0);
        write(&index, &path, 64, 1 << 30);
        let (back, _) = HashIndex::read_checkpoint(&path).expect("read");
        for i in 0..300_000u64 {
            let hash = crate::record::hash_bytes(&i.to_le_bytes());
            let found = back.find_entry(hash).expect("entry survives");
            let original = index.find_entry(hash).expect("entry");
            assert_eq!(found.entry.raw(), original.entry.raw(), "key {i}");
        }
        let mut bytes = std::fs::read(&path).expect("read");
        for at in [HEADER_SIZE + 5, HEADER_SIZE + CHUNK + 77, bytes.len() - 100] {
            bytes[at] ^= 4;
            std::fs::write(&path, &bytes).expect("write");
            assert!(
                matches!(HashIndex::read_checkpoint(&path), Err(Error::CheckpointCorrupt { .. })),
                "a flip at {at} is caught"
            );
            bytes[at] ^= 4;
        }
    }

    #[test]
    fn damaged_index_files_are_named_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("index");
        let index = HashIndex::new(8).expect("index");
        index.find_or_create_entry(12345);
        write(&index, &path, 64, 64);
        let good = std::fs::read(&path).expect("read");
        // Every single-bit flip is detected.
        for bit in 0..good.len() * 8 {
            let mut bad = good.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            std::fs::write(&path, &bad).expect("write");
            let err = HashIndex::read_checkpoint(&path).expect_err("flip detected");
            assert!(
                matches!(err, Error::CheckpointCorrupt { .. } | Error::UnsupportedFormat { .. }),
                "bit {bit}: {err}"
            );
        }
        // Truncations, too.
        for len in [0, 10, 64, good.len() - 1] {
            std::fs::write(&path, &good[..len]).expect("write");
            assert!(matches!(
                HashIndex::read_checkpoint(&path),
                Err(Error::CheckpointCorrupt { .. })
            ));
        }
    }
}
