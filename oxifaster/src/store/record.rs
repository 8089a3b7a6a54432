//! The record format in log pages, and safe-by-protocol access to it.
//!
//! ```text
//! [RecordInfo: u64]
//! [seqlock: u64]              unless the value is fixed-size and 8 bytes
//! [key_len: u32 | value_len: u32]  unless key and value are both fixed-size
//! [key, padded to 8] [value, padded to 8]
//! ```
//!
//! `RecordInfo` packs the previous address of the chain (48 bits), the
//! checkpoint version (13 bits, starting at 1 so that a written header is
//! never 0), and the invalid, tombstone and sealed bits.
//!
//! ## Concurrency invariant
//!
//! A record's key, lengths and previous address never change after the CAS
//! that publishes it. Its value and its tombstone/invalid bits may change in
//! place while it is in the mutable region, concurrently with readers:
//! 8-byte values with single atomic loads, stores and CASes; every other
//! value under the record's seqlock (odd while a writer holds it), with
//! readers copying the value word by word and retrying if the sequence
//! moved. So no reader ever sees a torn value, of any size.
//!
//! A variable-length value that must grow is copied to the tail. The copier
//! first *seals* the record under its seqlock (the sealed bit), then copies;
//! every in-place writer checks the sealed bit under the same seqlock and
//! falls back to appending. So no in-place update can slip in between the
//! copy and the CAS that publishes it, and none is lost. (Fixed-size values
//! never need a copy in the mutable region: their merge result has the same
//! size and is written in place.)

use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering, fence};

use crate::address::Address;
use crate::record::{CodecError, Key, KeyArg, Value, ValueArg};

const PREVIOUS_MASK: u64 = (1 << Address::BITS) - 1;
const VERSION_SHIFT: u32 = 48;
const VERSION_BITS: u32 = 13;
const VERSION_MASK: u64 = (1 << VERSION_BITS) - 1;
const INVALID_BIT: u64 = 1 << 61;
const TOMBSTONE_BIT: u64 = 1 << 62;
const SEALED_BIT: u64 = 1 << 63;

const _: () = assert!(VERSION_SHIFT + VERSION_BITS <= 61);

/// A record header.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct RecordInfo(u64);

impl std::fmt::Debug for RecordInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordInfo")
            .field("previous", &self.previous())
            .field("version", &self.version())
            .field("invalid", &self.is_invalid())
            .field("tombstone", &self.is_tombstone())
            .finish()
    }
}

impl RecordInfo {
    /// A header.
    #[inline(always)]
    pub fn new(previous: Address, version: u32, tombstone: bool) -> Self {
        let version = u64::from(version).clamp(1, VERSION_MASK);
        let tombstone = if tombstone { TOMBSTONE_BIT } else { 0 };
        Self(previous.raw() | (version << VERSION_SHIFT) | tombstone)
    }
    /// From raw bits.
    #[inline(always)]
    pub fn from_raw(raw: u64) -> Self {
        Self(raw)
    }
    /// The raw bits.
    #[inline(always)]
    pub fn raw(self) -> u64 {
        self.0
    }
    /// The previous record of the chain.
    #[inline(always)]
    pub fn previous(self) -> Address {
        Address::new(self.0 & PREVIOUS_MASK).unwrap_or(Address::INVALID)
    }
    /// The checkpoint version.
    #[inline(always)]
    pub fn version(self) -> u32 {
        ((self.0 >> VERSION_SHIFT) & VERSION_MASK) as u32
    }
    /// Whether the record was abandoned (its CAS failed).
    #[inline(always)]
    pub fn is_invalid(self) -> bool {
        self.0 & INVALID_BIT != 0
    }
    /// Whether the record deletes its key.
    #[inline(always)]
    pub fn is_tombstone(self) -> bool {
        self.0 & TOMBSTONE_BIT != 0
    }
    /// Whether the record was sealed for a copy: it takes no more in-place
    /// updates.
    #[inline(always)]
    pub fn is_sealed(self) -> bool {
        self.0 & SEALED_BIT != 0
    }
    /// Whether no header was ever written here (the rest of a page).
    #[inline(always)]
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    pub(crate) const INVALID_BIT: u64 = INVALID_BIT;
}

#[inline(always)]
pub const fn pad8(n: usize) -> usize {
    (n + 7) & !7
}

/// The shape of records whose keys and values have these fixed sizes
/// (`None`: variable length): what a reader needs to walk them without
/// knowing the types (recovery's replay, `checkpoint::scan_log`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordShape {
    /// The key size, if fixed.
    pub key_size: Option<usize>,
    /// The value size, if fixed.
    pub value_size: Option<usize>,
    /// Whether the value is one atomic word (no seqlock).
    pub atomic_value: bool,
    /// Whether the record stores its key and value lengths.
    pub has_lengths: bool,
    /// The header size in bytes.
    pub header_size: usize,
}

impl RecordShape {
    /// The shape for these sizes.
    pub const fn new(key_size: Option<usize>, value_size: Option<usize>) -> Self {
        let atomic_value = matches!(value_size, Some(8));
        let has_lengths = key_size.is_none() || value_size.is_none();
        let header_size = 8 + if atomic_value { 0 } else { 8 } + if has_lengths { 8 } else { 0 };
        Self { key_size, value_size, atomic_value, has_lengths, header_size }
    }

    /// The size of a record with these key and value lengths.
    #[inline(always)]
    pub fn record_size(&self, key_len: usize, value_len: usize) -> usize {
        self.header_size + pad8(key_len) + pad8(value_len)
    }

    /// The key and value lengths of the record whose first `header_size`
    /// bytes are `header`.
    pub fn lengths_in(&self, header: &[u8]) -> (usize, usize) {
        if self.has_lengths {
            let at = self.header_size - 8;
            let mut word = [0u8; 8];
            word.copy_from_slice(&header[at..at + 8]);
            let word = u64::from_le_bytes(word);
            ((word & 0xffff_ffff) as usize, (word >> 32) as usize)
        } else {
            (self.key_size.unwrap_or(0), self.value_size.unwrap_or(0))
        }
    }
}

/// The record format for a key type and a value type. Zero-sized: every
/// property is a constant of the types, so the hot paths branch on nothing
/// that the compiler cannot resolve.
#[derive(Debug)]
pub struct RecordFormat<K, V> {
    types: PhantomData<fn(K, V)>,
}

impl<K, V> Clone for RecordFormat<K, V> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<K, V> Copy for RecordFormat<K, V> {}

impl<K: Key, V: Value> Default for RecordFormat<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Key, V: Value> RecordFormat<K, V> {
    const SHAPE: RecordShape = Self::shape();

    /// The format for `K` and `V`.
    pub const fn new() -> Self {
        Self { types: PhantomData }
    }

    /// Whether the value is one atomic word (no seqlock).
    #[inline(always)]
    pub const fn atomic_value(&self) -> bool {
        Self::SHAPE.atomic_value
    }

    /// Whether the record stores its key and value lengths.
    #[inline(always)]
    pub const fn has_lengths(&self) -> bool {
        Self::SHAPE.has_lengths
    }

    /// The header size in bytes.
    #[inline(always)]
    pub const fn header_size(&self) -> usize {
        Self::SHAPE.header_size
    }

    /// The shape of `K`/`V` records.
    pub const fn shape() -> RecordShape {
        RecordShape::new(K::FIXED_KEY_SIZE, V::FIXED_SIZE)
    }

    /// The size of a record with these key and value lengths.
    #[inline(always)]
    pub fn record_size(&self, key_len: usize, value_len: usize) -> usize {
        self.header_size() + pad8(key_len) + pad8(value_len)
    }

    /// The key and value lengths of a new record for `key` and `value`
    /// (`None`: a tombstone), each asked of the user's types once: the
    /// record is allocated for exactly these, and every write into it is
    /// bounded by them. A length that disagrees with the type's fixed size
    /// is an error (records of a fixed-size type are read back with the
    /// fixed size, so it must be the truth).
    #[inline(always)]
    pub fn checked_lengths<Q: KeyArg<K> + ?Sized, W: ValueArg<V> + ?Sized>(
        &self,
        key: &Q,
        value: Option<&W>,
    ) -> Result<(usize, usize), CodecError> {
        let key_len = key.key_arg_size();
        if let Some(fixed) = K::FIXED_KEY_SIZE
            && key_len != fixed
        {
            return Err(CodecError::FixedSizeMismatch {
                type_name: std::any::type_name::<K>(),
                fixed,
                announced: key_len,
            });
        }
        let value_len = match value {
            Some(v) => v.value_arg_size(),
            None => return Ok((key_len, self.tombstone_value_len())),
        };
        if let Some(fixed) = V::FIXED_SIZE
            && value_len != fixed
        {
            return Err(CodecError::FixedSizeMismatch {
                type_name: std::any::type_name::<V>(),
                fixed,
                announced: value_len,
            });
        }
        // Lengths are stored as u32 (and a record fits in a page, which
        // `allocate` checks).
        for (len, name) in
            [(key_len, std::any::type_name::<K>()), (value_len, std::any::type_name::<V>())]
        {
            if len > crate::record::MAX_ENCODED_SIZE_BYTES {
                return Err(CodecError::TooLarge {
                    type_name: name,
                    size: len,
                    max: crate::record::MAX_ENCODED_SIZE_BYTES,
                });
            }
        }
        Ok((key_len, value_len))
    }

    /// The value length of a tombstone record.
    #[inline(always)]
    pub fn tombstone_value_len(&self) -> usize {
        V::FIXED_SIZE.unwrap_or(0)
    }

    /// The key and value lengths of the record whose first `header_size`
    /// bytes are `header` (read back from the device).
    pub fn lengths_in(&self, header: &[u8]) -> (usize, usize) {
        Self::shape().lengths_in(header)
    }

    #[inline(always)]
    fn lengths_offset(&self) -> usize {
        if self.atomic_value() { 8 } else { 16 }
    }
}

/// What [`RecordPtr::decide_in_place`] does with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InPlace {
    /// Write the changed value bytes back (ignored for a tombstone).
    Write,
    /// Leave the record as it is.
    Keep,
    /// Mark the record deleted.
    Tombstone,
    /// Seal the record: the caller appends the key's next record.
    Seal,
    /// The record was sealed already (nothing was decided).
    Sealed,
}

/// Releases a record's seqlock when dropped (see `RecordPtr::update_value`).
struct SeqUnlock<'a> {
    seq: &'a AtomicU64,
    locked: u64,
}

impl Drop for SeqUnlock<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        self.seq.store(self.locked + 1, Ordering::Release);
    }
}

/// A record in a frame, by raw pointer.
///
/// Every method's soundness rests on the caller's epoch protection and region
/// checks (see `hlog`): the pointer is valid for the record's size.
#[derive(Debug)]
pub struct RecordPtr<K, V> {
    ptr: *mut u8,
    format: RecordFormat<K, V>,
}

impl<K: Key, V: Value> RecordPtr<K, V> {
    /// # Safety
    ///
    /// `ptr` points at a record of this format (or at space allocated for
    /// one) that stays valid while the returned value is used.
    #[inline(always)]
    pub unsafe fn new(ptr: *mut u8, format: RecordFormat<K, V>) -> Self {
        Self { ptr, format }
    }

    #[inline(always)]
    fn word(&self, offset: usize) -> &AtomicU64 {
        // SAFETY: records are 8-byte aligned and `offset` is inside the
        // header; the memory is valid per `new`'s contract.
        unsafe { &*self.ptr.add(offset).cast::<AtomicU64>() }
    }

    /// The header word.
    #[inline(always)]
    pub fn info_word(&self) -> &AtomicU64 {
        self.word(0)
    }

    /// The header.
    #[inline(always)]
    pub fn info(&self) -> RecordInfo {
        RecordInfo(self.info_word().load(Ordering::Acquire))
    }

    /// The key and value lengths.
    #[inline(always)]
    pub fn lengths(&self) -> (usize, usize) {
        if self.format.has_lengths() {
            let word = self.word(self.format.lengths_offset()).load(Ordering::Relaxed);
            ((word & 0xffff_ffff) as usize, (word >> 32) as usize)
        } else {
            (K::FIXED_KEY_SIZE.unwrap_or(0), V::FIXED_SIZE.unwrap_or(0))
        }
    }

    /// The key bytes: immutable once the record is published.
    #[inline(always)]
    pub fn key_bytes(&self, key_len: usize) -> &[u8] {
        // SAFETY: the key follows the header inside the record.
        unsafe { std::slice::from_raw_parts(self.ptr.add(self.format.header_size()), key_len) }
    }

    #[inline(always)]
    fn value_ptr(&self, key_len: usize) -> *mut u8 {
        // SAFETY: the value follows the padded key inside the record.
        unsafe { self.ptr.add(self.format.header_size() + pad8(key_len)) }
    }

    /// The value bytes of an immutable record (below `safe_read_only`),
    /// where they lie.
    #[inline(always)]
    pub fn value_bytes_immutable(&self, key_len: usize, value_len: usize) -> &[u8] {
        // SAFETY: the value lies inside the record, and an immutable record
        // is never written again while the caller is protected.
        unsafe { std::slice::from_raw_parts(self.value_ptr(key_len), value_len) }
    }

    /// Writes a new record's header, lengths, key and value (not yet
    /// visible to anyone). `key_len` and `value_len` are the lengths the
    /// record was allocated for (`RecordFormat::checked_lengths`): every
    /// write is bounded by them, whatever the user's encoder does. An
    /// encoder that writes another number of bytes leaves the record
    /// marked invalid (never published) and is an error.
    pub fn initialize<Q: KeyArg<K> + ?Sized, W: ValueArg<V> + ?Sized>(
        &self,
        info: RecordInfo,
        key: &Q,
        key_len: usize,
        value: Option<&W>,
        value_len: usize,
    ) -> Result<(), CodecError> {
        if !self.format.atomic_value() {
            self.word(8).store(0, Ordering::Relaxed);
        }
        if self.format.has_lengths() {
            let word = (key_len as u64) | ((value_len as u64) << 32);
            self.word(self.format.lengths_offset()).store(word, Ordering::Relaxed);
        }
        // SAFETY: the record's space was allocated for these lengths and is
        // not yet shared: plain writes are fine.
        let key_dst = unsafe {
            std::slice::from_raw_parts_mut(self.ptr.add(self.format.header_size()), pad8(key_len))
        };
        let mut encoded = key.encode_key_arg_into(&mut key_dst[..key_len]);
        key_dst[key_len..].fill(0);
        // SAFETY: as above, for the value.
        let value_dst =
            unsafe { std::slice::from_raw_parts_mut(self.value_ptr(key_len), pad8(value_len)) };
        match value {
            Some(value) => {
                if encoded.is_ok() {
                    encoded = value.encode_value_arg_into(&mut value_dst[..value_len]);
                }
                value_dst[value_len..].fill(0);
            }
            None => value_dst.fill(0),
        }
        let info = if encoded.is_ok() { info.raw() } else { info.raw() | INVALID_BIT };
        self.info_word().store(info, Ordering::Release);
        encoded
    }

    /// The value word of a record whose value is one atomic word.
    #[inline(always)]
    pub fn atomic_value(&self, key_len: usize) -> &AtomicU64 {
        debug_assert!(self.format.atomic_value());
        // SAFETY: the value is one 8-byte aligned word inside the record,
        // valid per `new`'s contract.
        unsafe { &*self.value_ptr(key_len).cast::<AtomicU64>() }
    }

    /// The value of a record whose value is one atomic word.
    #[inline(always)]
    pub fn load_atomic_value(&self, key_len: usize) -> u64 {
        self.atomic_value(key_len).load(Ordering::Acquire)
    }

    /// Replaces the value of a record whose value is one atomic word.
    #[inline(always)]
    pub fn store_atomic_value(&self, key_len: usize, word: u64) {
        self.atomic_value(key_len).store(word, Ordering::Release)
    }

    /// Copies the value into `out` (whole 8-byte words), consistently with
    /// concurrent in-place writers. Returns the value's bytes in `out`.
    #[inline(always)]
    pub fn copy_value<'b>(
        &self,
        key_len: usize,
        value_len: usize,
        out: &'b mut Vec<u64>,
    ) -> &'b [u8] {
        let words = pad8(value_len) / 8;
        if out.len() != words {
            out.clear();
            out.resize(words, 0);
        }
        let src = self.value_ptr(key_len).cast::<AtomicU64>();
        if self.format.atomic_value() {
            // SAFETY: an 8-byte aligned word inside the record.
            out[0] = unsafe { &*src }.load(Ordering::Acquire);
        } else {
            let seq = self.word(8);
            let mut spins = 0u32;
            loop {
                let before = seq.load(Ordering::Acquire);
                if before & 1 == 0 {
                    for (i, word) in out.iter_mut().enumerate() {
                        // SAFETY: word `i` of the padded value, inside the record.
                        *word = unsafe { &*src.add(i) }.load(Ordering::Relaxed);
                    }
                    fence(Ordering::Acquire);
                    if seq.load(Ordering::Relaxed) == before {
                        break;
                    }
                }
                spins += 1;
                if spins > 64 {
                    std::thread::yield_now();
                } else {
                    std::hint::spin_loop();
                }
            }
        }
        &bytemuck::cast_slice::<u64, u8>(out)[..value_len]
    }

    /// Updates the value in place: `update` gets the current value's bytes
    /// (8-byte aligned) and changes them, or returns false to leave the
    /// record as it is. Returns what `update` returned.
    pub fn update_value(
        &self,
        key_len: usize,
        value_len: usize,
        scratch: &mut Vec<u64>,
        mut update: impl FnMut(&mut [u8]) -> bool,
    ) -> bool {
        let dst = self.value_ptr(key_len).cast::<AtomicU64>();
        if self.format.atomic_value() {
            // A sealed record takes no more in-place updates (see
            // `seal_atomic`); a deleted one neither (the caller appends).
            let info = self.info();
            if info.is_sealed() || info.is_tombstone() {
                return false;
            }
            // SAFETY: an 8-byte aligned word inside the record.
            let cell = unsafe { &*dst };
            let mut current = cell.load(Ordering::Acquire);
            loop {
                let mut new = current;
                if !update(bytemuck::bytes_of_mut(&mut new)) {
                    return false;
                }
                match cell.compare_exchange_weak(current, new, Ordering::AcqRel, Ordering::Acquire)
                {
                    Ok(_) => return true,
                    Err(actual) => current = actual,
                }
            }
        }
        // Released when this guard drops: on return, and also when `update`
        // (user code: a merge, a closure) panics. The update works on a copy
        // of the value, written back only after it returned, so a panic
        // leaves the old value in place and the record unlocked.
        let _unlock = SeqUnlock { seq: self.word(8), locked: self.lock() };
        fence(Ordering::Release);
        // Checked under the seqlock: a conditional delete decides on the
        // value and marks the record deleted under it too, so no update
        // lands in a record deleted after the caller looked.
        let info = self.info();
        if info.is_sealed() || info.is_tombstone() {
            return false;
        }
        let words = pad8(value_len) / 8;
        scratch.clear();
        scratch.extend((0..words).map(|i| {
            // SAFETY: word `i` of the padded value, inside the record.
            unsafe { &*dst.add(i) }.load(Ordering::Relaxed)
        }));
        let changed = update(&mut bytemuck::cast_slice_mut::<u64, u8>(scratch)[..value_len]);
        if changed {
            for (i, word) in scratch.iter().enumerate() {
                // SAFETY: as above; we hold the seqlock.
                unsafe { &*dst.add(i) }.store(*word, Ordering::Relaxed);
            }
        }
        changed
    }

    /// Takes the record's seqlock (non-atomic values only); returns the odd
    /// sequence value to release with `unlock`.
    fn lock(&self) -> u64 {
        let seq = self.word(8);
        let mut spins = 0u32;
        loop {
            let s = seq.load(Ordering::Relaxed);
            if s & 1 == 0
                && seq.compare_exchange_weak(s, s + 1, Ordering::Acquire, Ordering::Relaxed).is_ok()
            {
                fence(Ordering::Release);
                return s + 1;
            }
            spins += 1;
            if spins > 64 {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
    }

    fn unlock(&self, locked: u64) {
        self.word(8).store(locked + 1, Ordering::Release);
    }

    /// Seals the record and copies its value into `out`: after this no
    /// in-place update changes it. Returns whether it is a tombstone, and the
    /// value's bytes. For an atomic value (which is never copied in the
    /// mutable region) it only copies.
    pub fn seal_and_copy<'b>(
        &self,
        key_len: usize,
        value_len: usize,
        out: &'b mut Vec<u64>,
    ) -> (bool, &'b [u8]) {
        if self.format.atomic_value() {
            let tombstone = self.info().is_tombstone();
            return (tombstone, self.copy_value(key_len, value_len, out));
        }
        let locked = self.lock();
        self.info_word().fetch_or(SEALED_BIT, Ordering::AcqRel);
        let tombstone = self.info().is_tombstone();
        let src = self.value_ptr(key_len).cast::<AtomicU64>();
        out.clear();
        out.extend((0..pad8(value_len) / 8).map(|i| {
            // SAFETY: word `i` of the padded value, inside the record; we
            // hold the seqlock.
            unsafe { &*src.add(i) }.load(Ordering::Relaxed)
        }));
        self.unlock(locked);
        (tombstone, &bytemuck::cast_slice::<u64, u8>(out)[..value_len])
    }

    /// Marks the record a tombstone in place, unless it is sealed (then the
    /// caller appends a tombstone). Returns whether it did.
    pub fn tombstone_in_place(&self) -> bool {
        if self.format.atomic_value() {
            // One CAS: never on a record that `seal_atomic` sealed.
            let word = self.info_word();
            let mut current = word.load(Ordering::Acquire);
            loop {
                if current & SEALED_BIT != 0 {
                    return false;
                }
                match word.compare_exchange_weak(
                    current,
                    current | TOMBSTONE_BIT,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => return true,
                    Err(actual) => current = actual,
                }
            }
        }
        let locked = self.lock();
        let sealed = self.info().is_sealed();
        if !sealed {
            self.set_info_bits(TOMBSTONE_BIT);
        }
        self.unlock(locked);
        !sealed
    }

    /// Seals a record whose value is one atomic word. Its in-place
    /// writers check the sealed bit before they write, so once every
    /// session that may have checked before this call has finished its
    /// operation (an epoch drain, `Session::wait_for_drain`) the value is
    /// frozen and may be copied.
    pub fn seal_atomic(&self) {
        debug_assert!(self.format.atomic_value());
        self.set_info_bits(SEALED_BIT);
    }

    /// Decides on the value in place, under the record's seqlock (values
    /// that are not one atomic word). `decide` gets the value's bytes
    /// (8-byte aligned; `None` if the record is a tombstone) and says what
    /// to do: write the bytes it changed back, leave the record, mark it
    /// deleted, or seal it (no more in-place updates) so that the caller
    /// can append a value of another size. A record sealed already is left
    /// as it is and `decide` is not called ([`InPlace::Sealed`]).
    pub fn decide_in_place<E>(
        &self,
        key_len: usize,
        value_len: usize,
        scratch: &mut Vec<u64>,
        decide: impl FnOnce(Option<&mut [u8]>) -> Result<InPlace, E>,
    ) -> Result<InPlace, E> {
        debug_assert!(!self.format.atomic_value());
        // Released on return and if `decide` (user code) panics; the value
        // is written back only after `decide` returned.
        let _unlock = SeqUnlock { seq: self.word(8), locked: self.lock() };
        fence(Ordering::Release);
        let info = self.info();
        if info.is_sealed() {
            return Ok(InPlace::Sealed);
        }
        let dst = self.value_ptr(key_len).cast::<AtomicU64>();
        let step = if info.is_tombstone() {
            decide(None)?
        } else {
            scratch.clear();
            scratch.extend((0..pad8(value_len) / 8).map(|i| {
                // SAFETY: word `i` of the padded value, inside the record;
                // we hold the seqlock.
                unsafe { &*dst.add(i) }.load(Ordering::Relaxed)
            }));
            decide(Some(&mut bytemuck::cast_slice_mut::<u64, u8>(scratch)[..value_len]))?
        };
        match step {
            InPlace::Write if !info.is_tombstone() => {
                for (i, word) in scratch.iter().enumerate() {
                    // SAFETY: as above.
                    unsafe { &*dst.add(i) }.store(*word, Ordering::Relaxed);
                }
            }
            InPlace::Tombstone => self.set_info_bits(TOMBSTONE_BIT),
            InPlace::Seal => self.set_info_bits(SEALED_BIT),
            _ => {}
        }
        Ok(step)
    }

    /// Sets header bits (tombstone or invalid).
    #[inline]
    pub fn set_info_bits(&self, bits: u64) {
        self.info_word().fetch_or(bits, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_info_packs_its_fields() {
        let a = Address::new(0xabc_def0).expect("fits");
        let info = RecordInfo::new(a, 5, true);
        assert_eq!((info.previous(), info.version(), info.is_tombstone()), (a, 5, true));
        assert!(!info.is_invalid() && !info.is_empty());
        assert!(!RecordInfo::new(Address::INVALID, 0, false).is_empty(), "version is at least 1");
    }

    #[test]
    fn formats_follow_the_types() {
        let f = RecordFormat::<u64, u64>::new();
        assert!(f.atomic_value() && !f.has_lengths());
        assert_eq!(f.record_size(8, 8), 24);
        let f = RecordFormat::<u64, [u8; 16]>::new();
        assert_eq!(f.record_size(8, 16), 40);
        let f = RecordFormat::<Vec<u8>, u64>::new();
        assert_eq!(f.record_size(3, 8), 8 + 8 + 8 + 8);
    }
}
