//! Commit records: what a commit makes durable besides the entries.
//!
//! The commit device holds two slots, at offsets 0 and [`SLOT_SIZE`];
//! commit number `n` overwrites slot `n % 2`, so the previous commit's slot
//! is intact while the new one is written. Recovery decodes both and takes
//! the valid one with the higher number: a torn or lost slot write (the
//! power failed during a commit, which was therefore never acknowledged)
//! falls back to the commit before it.
//!
//! ```text
//! slot:    magic "OXLOGCMT" | format u32 | payload len u32 | commit number u64
//!          | crc32c u32 | 0 u32 | payload
//! payload: begin u64 | committed until u64 | page bits u32 | segment bits u32
//!          | cookie len u32 | cookie
//!          | iterator count u32 | (name len u16 | name (UTF-8) | position u64)*
//!          | dropped-range count u32 | (from u64 | to u64)*
//!          | spilled-range count u32 | spilled crc32c u32        (format 2)
//! region:  (from u64 | to u64)*                                  (spilled ranges)
//! ```
//!
//! Up to [`MAX_INLINE_DROPPED`] ranges dropped by `truncate_after` are
//! kept in the record itself. A longer list (up to [`MAX_DROPPED`]) is
//! *spilled*: written to a region of the commit device after the slots,
//! one region per slot parity (`region_offset(seq % 2)`), before the
//! record that names it (count and CRC-32C of the region's bytes). A commit
//! writes only its own parity's slot and region, so the previous commit's
//! record and ranges stay intact while it is written, as for the slots.
//! Format 1 records (no spill fields) are still read.
//!
//! All integers are little-endian; the checksum covers the header (with the
//! checksum field zero) and the payload. Every length is checked against
//! the bytes that remain before anything is allocated.

use std::collections::BTreeMap;

/// The size of one slot; a commit record (cookie and iterators included)
/// must fit.
pub const SLOT_SIZE: u64 = 64 * 1024;
const MAGIC: &[u8; 8] = b"OXLOGCMT";
/// The format version written (1 and 2 are read).
pub const FORMAT: u32 = 2;
const HEADER: usize = 32;
/// The largest commit cookie.
pub const MAX_COOKIE: usize = 16 * 1024;
/// The longest iterator name.
pub const MAX_NAME: usize = 64;
/// The most named iterators.
pub const MAX_ITERATORS: usize = 256;
/// The most dropped ranges kept in the record itself; a longer list is
/// spilled to the slot's region.
pub const MAX_INLINE_DROPPED: usize = 1024;
/// The size of one spill region.
pub const REGION_SIZE: u64 = 16 << 20;
/// The most ranges dropped by `truncate_after` that are still above the
/// log's begin (a region's worth: 1,048,576).
pub const MAX_DROPPED: usize = (REGION_SIZE / 16) as usize;
// With these limits every record fits its slot.
const _: () = assert!(
    (HEADER + 40 + MAX_COOKIE + MAX_ITERATORS * (2 + MAX_NAME + 8) + MAX_INLINE_DROPPED * 16)
        as u64
        <= SLOT_SIZE
);

/// Where the spill region of records with commit number `seq` is on the
/// commit device.
pub fn region_offset(seq: u64) -> u64 {
    2 * SLOT_SIZE + (seq % 2) * REGION_SIZE
}

/// A record's spilled ranges: how many, and the CRC-32C of their bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spill {
    /// The number of ranges in the region.
    pub count: u32,
    /// CRC-32C of the region's `count * 16` bytes.
    pub crc: u32,
}

/// A committed state of the log.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CommitRecord {
    /// The commit's number (1 for the first).
    pub seq: u64,
    /// Entries below this address were released by `truncate_until`.
    pub begin: u64,
    /// Every entry below this address is durable.
    pub committed: u64,
    /// log2 of the page size the log was written with.
    pub page_bits: u32,
    /// log2 of the segment size the log was written with.
    pub segment_bits: u32,
    /// The user's bytes stored with the commit.
    pub cookie: Vec<u8>,
    /// Named iterators' positions.
    pub iterators: BTreeMap<String, u64>,
    /// Ranges `[from, to)` dropped by `truncate_after`, in order and
    /// disjoint.
    pub dropped: std::sync::Arc<[(u64, u64)]>,
    /// Set by [`CommitRecord::decode`] when the ranges are in the slot's
    /// region: [`CommitRecord::load_spill`] reads them into `dropped`.
    /// (Ignored by `encode`, which spills by the length of `dropped`.)
    pub spill: Option<Spill>,
}

/// Why a slot is not a valid commit record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotError {
    /// Never written (all zero or too short).
    Empty,
    /// Written, but damaged or torn.
    Corrupt(&'static str),
    /// Written by a newer format.
    Format(u32),
}

impl CommitRecord {
    /// Encodes the record as a slot's bytes, or says why it is too large.
    pub fn encode(&self) -> Result<Vec<u8>, String> {
        if self.cookie.len() > MAX_COOKIE {
            return Err(format!(
                "a commit cookie of {} bytes is larger than {MAX_COOKIE}",
                self.cookie.len()
            ));
        }
        let mut p = Vec::with_capacity(64 + self.cookie.len());
        p.extend_from_slice(&self.begin.to_le_bytes());
        p.extend_from_slice(&self.committed.to_le_bytes());
        p.extend_from_slice(&self.page_bits.to_le_bytes());
        p.extend_from_slice(&self.segment_bits.to_le_bytes());
        p.extend_from_slice(&(self.cookie.len() as u32).to_le_bytes());
        p.extend_from_slice(&self.cookie);
        p.extend_from_slice(&(self.iterators.len() as u32).to_le_bytes());
        for (name, position) in &self.iterators {
            if name.len() > MAX_NAME {
                return Err(format!("iterator name {name:?} is longer than {MAX_NAME} bytes"));
            }
            p.extend_from_slice(&(name.len() as u16).to_le_bytes());
            p.extend_from_slice(name.as_bytes());
            p.extend_from_slice(&position.to_le_bytes());
        }
        if self.dropped.len() > MAX_DROPPED {
            return Err(format!(
                "{} dropped ranges are more than the {MAX_DROPPED} a log keeps; truncate_until \
                 past some first",
                self.dropped.len()
            ));
        }
        match self.spill_bytes() {
            None => {
                p.extend_from_slice(&(self.dropped.len() as u32).to_le_bytes());
                for (from, to) in self.dropped.iter() {
                    p.extend_from_slice(&from.to_le_bytes());
                    p.extend_from_slice(&to.to_le_bytes());
                }
                p.extend_from_slice(&[0u8; 8]);
            }
            Some(spilled) => {
                p.extend_from_slice(&0u32.to_le_bytes());
                p.extend_from_slice(&(self.dropped.len() as u32).to_le_bytes());
                p.extend_from_slice(&crc32c::crc32c(&spilled).to_le_bytes());
            }
        }
        if (HEADER + p.len()) as u64 > SLOT_SIZE {
            return Err(format!(
                "the commit record ({} bytes: cookie, {} iterators, {} dropped ranges) does not \
                 fit its {SLOT_SIZE}-byte slot",
                HEADER + p.len(),
                self.iterators.len(),
                self.dropped.len()
            ));
        }
        let mut out = Vec::with_capacity(HEADER + p.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT.to_le_bytes());
        out.extend_from_slice(&(p.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.extend_from_slice(&[0u8; 8]);
        out.extend_from_slice(&p);
        let crc = slot_checksum(&out);
        out[24..28].copy_from_slice(&crc.to_le_bytes());
        Ok(out)
    }

    /// The bytes of the region this record spills its dropped ranges to
    /// (`None`: they fit the record).
    pub fn spill_bytes(&self) -> Option<Vec<u8>> {
        if self.dropped.len() <= MAX_INLINE_DROPPED {
            return None;
        }
        let mut bytes = Vec::with_capacity(self.dropped.len() * 16);
        for (from, to) in self.dropped.iter() {
            bytes.extend_from_slice(&from.to_le_bytes());
            bytes.extend_from_slice(&to.to_le_bytes());
        }
        Some(bytes)
    }

    /// Reads the spilled ranges from `region` (the bytes at
    /// `region_offset(self.seq)`, at least `spill.count * 16` of them),
    /// checking them against the record.
    pub fn load_spill(&mut self, region: &[u8]) -> Result<(), SlotError> {
        let Some(spill) = self.spill else {
            return Ok(());
        };
        let len = spill.count as usize * 16;
        let bytes = region.get(..len).ok_or(SlotError::Corrupt("the spill region is short"))?;
        if crc32c::crc32c(bytes) != spill.crc {
            return Err(SlotError::Corrupt("the spilled ranges do not match their checksum"));
        }
        let mut r = Reader { bytes, at: 0 };
        let mut dropped = Vec::with_capacity(spill.count as usize);
        for _ in 0..spill.count {
            dropped.push((r.u64()?, r.u64()?));
        }
        check_ranges(&dropped)?;
        self.dropped = dropped.into();
        self.spill = None;
        Ok(())
    }

    /// Decodes a slot's bytes (any length; bytes past the record are
    /// ignored). Never panics and allocates no more than `bytes.len()`.
    /// A record whose ranges were spilled comes back with `spill` set and
    /// `dropped` empty (see [`CommitRecord::load_spill`]).
    pub fn decode(bytes: &[u8]) -> Result<Self, SlotError> {
        if bytes.len() < HEADER || bytes[..HEADER].iter().all(|b| *b == 0) {
            return Err(SlotError::Empty);
        }
        if &bytes[..8] != MAGIC {
            return Err(SlotError::Corrupt("bad magic"));
        }
        let mut r = Reader { bytes, at: 8 };
        let format = r.u32()?;
        let len = r.u32()? as usize;
        let seq = r.u64()?;
        let crc = r.u32()?;
        if HEADER + len > bytes.len() {
            return Err(SlotError::Corrupt("the payload length runs past the slot"));
        }
        if slot_checksum(&bytes[..HEADER + len]) != crc {
            return Err(SlotError::Corrupt("checksum mismatch"));
        }
        // The header's layout is the same in every format version.
        if format > FORMAT {
            return Err(SlotError::Format(format));
        }
        let mut r = Reader { bytes: &bytes[..HEADER + len], at: HEADER };
        let begin = r.u64()?;
        let committed = r.u64()?;
        let page_bits = r.u32()?;
        let segment_bits = r.u32()?;
        let cookie_len = r.u32()? as usize;
        if cookie_len > MAX_COOKIE {
            return Err(SlotError::Corrupt("the cookie is longer than allowed"));
        }
        let cookie = r.take(cookie_len)?.to_vec();
        let mut iterators = BTreeMap::new();
        let count = r.u32()? as usize;
        if count > MAX_ITERATORS {
            return Err(SlotError::Corrupt("more named iterators than allowed"));
        }
        for _ in 0..count {
            let name_len = r.u16()? as usize;
            if name_len == 0 || name_len > MAX_NAME {
                return Err(SlotError::Corrupt("an iterator name's length is out of range"));
            }
            let name = std::str::from_utf8(r.take(name_len)?)
                .map_err(|_| SlotError::Corrupt("an iterator name is not UTF-8"))?
                .to_owned();
            if iterators.insert(name, r.u64()?).is_some() {
                return Err(SlotError::Corrupt("an iterator name appears twice"));
            }
        }
        let count = r.u32()? as usize;
        if count > MAX_INLINE_DROPPED || count > r.remaining() / 16 {
            return Err(SlotError::Corrupt("the dropped-range count runs past the slot"));
        }
        let mut dropped = Vec::with_capacity(count);
        for _ in 0..count {
            dropped.push((r.u64()?, r.u64()?));
        }
        let spill = match format {
            1 => None,
            _ => {
                let spilled = r.u32()?;
                let crc = r.u32()?;
                match spilled {
                    0 if crc == 0 => None,
                    n if count == 0
                        && n as usize > MAX_INLINE_DROPPED
                        && n as usize <= MAX_DROPPED =>
                    {
                        Some(Spill { count: n, crc })
                    }
                    _ => return Err(SlotError::Corrupt("the spilled-range count is out of range")),
                }
            }
        };
        if r.remaining() != 0 {
            return Err(SlotError::Corrupt("bytes after the record's fields"));
        }
        if begin > committed {
            return Err(SlotError::Corrupt("inconsistent addresses"));
        }
        check_ranges(&dropped)?;
        if !(9..=30).contains(&page_bits) || !(page_bits..=40).contains(&segment_bits) {
            return Err(SlotError::Corrupt("page or segment size out of range"));
        }
        Ok(Self {
            seq,
            begin,
            committed,
            page_bits,
            segment_bits,
            cookie,
            iterators,
            dropped: dropped.into(),
            spill,
        })
    }
}

/// Checks that dropped ranges are non-empty, in order and disjoint.
fn check_ranges(ranges: &[(u64, u64)]) -> Result<(), SlotError> {
    let mut previous_end = 0;
    for &(from, to) in ranges {
        if from >= to || from < previous_end {
            return Err(SlotError::Corrupt("inconsistent addresses"));
        }
        previous_end = to;
    }
    Ok(())
}

/// Sets the checksum of the record at the start of `bytes` (if its length
/// field fits) to match, so that a fuzzer reaches the payload checks.
#[doc(hidden)]
pub fn fix_checksum(bytes: &mut [u8]) {
    if bytes.len() < HEADER {
        return;
    }
    let len = u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]) as usize;
    if HEADER + len <= bytes.len() {
        let crc = slot_checksum(&bytes[..HEADER + len]);
        bytes[24..28].copy_from_slice(&crc.to_le_bytes());
    }
}

/// The checksum of a slot's record, its checksum field read as zero.
fn slot_checksum(record: &[u8]) -> u32 {
    let crc = crc32c::crc32c(&record[..24]);
    let crc = crc32c::crc32c_append(crc, &[0u8; 4]);
    crc32c::crc32c_append(crc, &record[28..])
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], SlotError> {
        if n > self.remaining() {
            return Err(SlotError::Corrupt("a length runs past the record"));
        }
        let out = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(out)
    }

    fn u16(&mut self) -> Result<u16, SlotError> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().unwrap_or_default()))
    }

    fn u32(&mut self) -> Result<u32, SlotError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap_or_default()))
    }

    fn u64(&mut self) -> Result<u64, SlotError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap_or_default()))
    }
}

/// Picks the newest valid record of the two slots. `Ok(None)`: no commit
/// was ever made durable. Both slots written but neither valid is
/// corruption (a single torn write can damage only one of them).
pub fn newest(a: &[u8], b: &[u8]) -> Result<Option<CommitRecord>, String> {
    let ra = CommitRecord::decode(a);
    let rb = CommitRecord::decode(b);
    for r in [&ra, &rb] {
        if let Err(SlotError::Format(found)) = r {
            return Err(format!("commit format version {found}; this build reads 1 to {FORMAT}"));
        }
    }
    match (ra, rb) {
        (Ok(a), Ok(b)) => Ok(Some(if a.seq >= b.seq { a } else { b })),
        (Ok(r), Err(_)) | (Err(_), Ok(r)) => Ok(Some(r)),
        // At most one commit was ever attempted, and it did not complete.
        (Err(_), Err(SlotError::Empty)) | (Err(SlotError::Empty), Err(_)) => Ok(None),
        (Err(SlotError::Corrupt(a)), Err(SlotError::Corrupt(b))) => {
            Err(format!("both commit slots are damaged ({a}; {b})"))
        }
        (Err(_), Err(_)) => Err("both commit slots are damaged".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CommitRecord {
        CommitRecord {
            seq: 7,
            begin: 64,
            committed: 1 << 20,
            page_bits: 12,
            segment_bits: 20,
            cookie: b"term=3 vote=2".to_vec(),
            iterators: [("apply".to_string(), 4096u64), ("ship".into(), 8192)].into(),
            dropped: vec![(10_000, 20_000)].into(),
            spill: None,
        }
    }

    #[test]
    fn round_trip_and_every_bit_flip_is_caught() {
        let record = sample();
        let bytes = record.encode().expect("encode");
        assert_eq!(CommitRecord::decode(&bytes), Ok(record.clone()));
        for bit in 0..bytes.len() * 8 {
            let mut bad = bytes.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(CommitRecord::decode(&bad).is_err(), "flip of bit {bit} went unnoticed");
        }
        // Every truncation is caught.
        for len in 0..bytes.len() {
            assert!(CommitRecord::decode(&bytes[..len]).is_err(), "truncated to {len}");
        }
    }

    /// Found by fuzzing: a record the encoder would refuse (here a
    /// 255-byte iterator name) must not decode either, or every later
    /// commit of the log would fail.
    #[test]
    fn records_beyond_the_limits_do_not_decode() {
        let mut long = sample();
        long.iterators = [("n".repeat(MAX_NAME), 1u64)].into();
        let bytes = long.encode().expect("encode");
        // The same record with the name one byte longer than allowed.
        let at = bytes.windows(MAX_NAME).position(|w| w.iter().all(|b| *b == b'n')).expect("name");
        let len_at = at - 2;
        let mut longer = bytes[..len_at].to_vec();
        longer.extend_from_slice(&((MAX_NAME + 1) as u16).to_le_bytes());
        longer.extend(std::iter::repeat_n(b'n', MAX_NAME + 1));
        longer.extend_from_slice(&bytes[at + MAX_NAME..]);
        let payload_len = (longer.len() - HEADER) as u32;
        longer[12..16].copy_from_slice(&payload_len.to_le_bytes());
        fix_checksum(&mut longer);
        assert!(CommitRecord::decode(&longer).is_err());
        // And the fuzzer's own find.
        let found = include_bytes!("../../../fuzz/corpus/log_commit/regression-long-name");
        let mut fixed = found.to_vec();
        fix_checksum(&mut fixed);
        if let Ok(record) = CommitRecord::decode(&fixed) {
            record.encode().expect("a decoded record re-encodes");
        }
    }

    #[test]
    fn newest_of_two_slots() {
        let old = sample();
        let new = CommitRecord { seq: 8, committed: 2 << 20, ..sample() };
        let (a, b) = (old.encode().expect("a"), new.encode().expect("b"));
        assert_eq!(newest(&a, &b), Ok(Some(new.clone())));
        assert_eq!(newest(&b, &a), Ok(Some(new.clone())));
        let mut torn = b.clone();
        torn[40..].fill(0);
        assert_eq!(newest(&a, &torn), Ok(Some(old.clone())));
        assert_eq!(newest(&[], &[]), Ok(None));
        assert_eq!(newest(&torn, &[]), Ok(None));
        let mut bad = a.clone();
        bad[50] ^= 1;
        assert!(newest(&bad, &torn).is_err());
        let mut future = a.clone();
        future[8] = 9;
        let crc = slot_checksum(&future);
        future[24..28].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(CommitRecord::decode(&future), Err(SlotError::Format(9)));
        assert!(newest(&future, &b).is_err());
    }

    #[test]
    fn oversized_records_are_refused() {
        let big = CommitRecord { cookie: vec![0; MAX_COOKIE + 1], ..sample() };
        assert!(big.encode().is_err());
        let long =
            CommitRecord { iterators: [("x".repeat(MAX_NAME + 1), 1u64)].into(), ..sample() };
        assert!(long.encode().is_err());
        let ranges = |n: u64| (0..n).map(|i| (i * 16 + 8, i * 16 + 16)).collect::<Vec<_>>();
        let too_many = CommitRecord { dropped: ranges(MAX_DROPPED as u64 + 1).into(), ..sample() };
        let most = CommitRecord {
            cookie: vec![7; MAX_COOKIE],
            iterators: (0..MAX_ITERATORS).map(|i| (format!("{i:0>64}"), i as u64)).collect(),
            dropped: ranges(MAX_INLINE_DROPPED as u64).into(),
            ..sample()
        };
        assert!(most.encode().is_ok(), "the largest record that keeps its ranges fits");
        assert!(most.spill_bytes().is_none());
        assert!(too_many.encode().is_err());
    }

    /// A list longer than a slot holds goes to the region; the record
    /// names it by count and checksum, and a damaged region is an error.
    #[test]
    fn long_range_lists_spill_to_the_region() {
        let dropped: Vec<(u64, u64)> = (0..5_000u64).map(|i| (i * 64 + 8, i * 64 + 40)).collect();
        let record = CommitRecord { dropped: dropped.clone().into(), ..sample() };
        let region = record.spill_bytes().expect("spills");
        let bytes = record.encode().expect("encode");
        let mut decoded = CommitRecord::decode(&bytes).expect("decode");
        assert_eq!(decoded.spill.map(|s| s.count), Some(5_000));
        assert!(decoded.dropped.is_empty());
        let mut damaged = decoded.clone();
        decoded.load_spill(&region).expect("load");
        assert_eq!(decoded, record);
        let mut bad = region.clone();
        bad[777] ^= 4;
        assert!(damaged.load_spill(&bad).is_err());
        assert!(damaged.load_spill(&region[..region.len() - 1]).is_err());
        // Ranges out of order are refused even with a matching checksum.
        let mut swapped = record.clone();
        let mut list = dropped;
        list.swap(0, 1);
        swapped.dropped = list.into();
        let region = swapped.spill_bytes().expect("spills");
        let mut decoded = CommitRecord::decode(&swapped.encode().expect("encode")).expect("decode");
        assert!(decoded.load_spill(&region).is_err());
        // A format 1 record (no spill fields) still decodes.
        let mut v1 = sample().encode().expect("encode");
        v1.truncate(v1.len() - 8);
        v1[8..12].copy_from_slice(&1u32.to_le_bytes());
        let len = (v1.len() - HEADER) as u32;
        v1[12..16].copy_from_slice(&len.to_le_bytes());
        fix_checksum(&mut v1);
        assert_eq!(CommitRecord::decode(&v1), Ok(sample()));
    }
}
