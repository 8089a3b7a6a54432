//! The temporary map of scan compaction and live scans: the newest record
//! of each key met, by key.
//!
//! One flat allocation for the keys (an arena) and one for the slots (open
//! addressing with linear probing, at most half full), so collecting a
//! range of a million records costs no allocation per record. Keys are
//! compared by their encoded bytes, so the map is exact: a key is removed
//! only by a record of the same key. Removed keys leave a dead slot (the
//! map is built, then only shrinks) that later lookups probe past.

/// A slot's `address` when it holds no key.
const EMPTY: u64 = u64::MAX;
/// A slot's `address` once its key was removed.
const REMOVED: u64 = u64::MAX - 1;
/// The tombstone flag, in the top bit of a slot's `address` (log addresses
/// use 48 bits).
const TOMBSTONE: u64 = 1 << 63;

#[derive(Clone, Copy)]
struct Slot {
    hash: u64,
    key_at: u64,
    key_len: u64,
    /// The record's address (with [`TOMBSTONE`]), or [`EMPTY`] or
    /// [`REMOVED`].
    address: u64,
}

const FREE: Slot = Slot { hash: 0, key_at: 0, key_len: 0, address: EMPTY };

/// The newest record (address, tombstone) of each key inserted.
pub(crate) struct KeyTable {
    arena: Vec<u8>,
    slots: Vec<Slot>,
    /// Slots that hold a key or held one (removed keys keep theirs).
    used: usize,
    /// Keys present.
    live: usize,
}

impl KeyTable {
    pub(crate) fn new() -> Self {
        Self { arena: Vec::new(), slots: vec![FREE; 1024], used: 0, live: 0 }
    }

    /// Keys present.
    pub(crate) fn len(&self) -> usize {
        self.live
    }

    /// The slot of `key` (hash `hash`), or the free slot where it would go.
    #[inline]
    fn find(&self, hash: u64, key: &[u8]) -> usize {
        let mask = self.slots.len() - 1;
        let mut i = hash as usize & mask;
        loop {
            let slot = &self.slots[i];
            if slot.address == EMPTY {
                return i;
            }
            if slot.hash == hash
                && slot.address != REMOVED
                && &self.arena[slot.key_at as usize..(slot.key_at + slot.key_len) as usize] == key
            {
                return i;
            }
            i = (i + 1) & mask;
        }
    }

    /// Records that `key`'s newest record so far is at `address` (inserts
    /// come in address order: a later one replaces an earlier one).
    /// `hash` is the key's hash (`hash_bytes(key)`; any function of the
    /// key's bytes works, as long as it is the same for every call).
    pub(crate) fn insert(&mut self, hash: u64, key: &[u8], address: u64, tombstone: bool) {
        debug_assert!(address < TOMBSTONE);
        let flagged = address | if tombstone { TOMBSTONE } else { 0 };
        let i = self.find(hash, key);
        if self.slots[i].address != EMPTY {
            self.slots[i].address = flagged;
            return;
        }
        let key_at = self.arena.len() as u64;
        self.arena.extend_from_slice(key);
        self.slots[i] = Slot { hash, key_at, key_len: key.len() as u64, address: flagged };
        self.used += 1;
        self.live += 1;
        if self.used * 2 > self.slots.len() {
            self.grow();
        }
    }

    /// Removes `key` (hash `hash`, as for [`KeyTable::insert`]) if present.
    #[inline]
    pub(crate) fn remove(&mut self, hash: u64, key: &[u8]) {
        if self.live == 0 {
            return;
        }
        let i = self.find(hash, key);
        if self.slots[i].address != EMPTY {
            self.slots[i].address = REMOVED;
            self.live -= 1;
        }
    }

    /// Asks the CPU to start loading the slot where a lookup of `hash`
    /// starts.
    #[inline(always)]
    pub(crate) fn prefetch(&self, hash: u64) {
        crate::mem::prefetch(&self.slots[hash as usize & (self.slots.len() - 1)]);
    }

    /// The keys present, as (address, tombstone), in address order.
    pub(crate) fn into_sorted(self) -> Vec<(u64, bool)> {
        let mut out: Vec<(u64, bool)> = self
            .slots
            .iter()
            .filter(|s| s.address != EMPTY && s.address != REMOVED)
            .map(|s| (s.address & !TOMBSTONE, s.address & TOMBSTONE != 0))
            .collect();
        out.sort_unstable();
        out
    }

    /// Doubles the slots (dropping removed ones).
    fn grow(&mut self) {
        let doubled = vec![FREE; self.slots.len() * 2];
        let old = std::mem::replace(&mut self.slots, doubled);
        let mask = self.slots.len() - 1;
        self.used = 0;
        for slot in old.into_iter().filter(|s| s.address != EMPTY && s.address != REMOVED) {
            let mut i = slot.hash as usize & mask;
            while self.slots[i].address != EMPTY {
                i = (i + 1) & mask;
            }
            self.slots[i] = slot;
            self.used += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::hash_bytes;
    use std::collections::HashMap;

    #[test]
    fn matches_a_map_through_inserts_and_removes() {
        let mut table = KeyTable::new();
        let mut model: HashMap<Vec<u8>, (u64, bool)> = HashMap::new();
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for address in 1..20_000u64 {
            let n = next();
            // Variable-length keys, many repeated.
            let key = vec![(n % 251) as u8; 1 + (n % 3_000 % 17) as usize];
            let key = [key.as_slice(), &(n % 3_000).to_le_bytes()].concat();
            let tombstone = n % 5 == 0;
            table.insert(hash_bytes(&key), &key, address * 8, tombstone);
            model.insert(key, (address * 8, tombstone));
        }
        for _ in 0..5_000 {
            let n = next();
            let key = vec![(n % 251) as u8; 1 + (n % 3_000 % 17) as usize];
            let key = [key.as_slice(), &(n % 3_000).to_le_bytes()].concat();
            table.remove(hash_bytes(&key), &key);
            model.remove(&key);
        }
        assert_eq!(table.len(), model.len());
        let mut expected: Vec<(u64, bool)> = model.into_values().collect();
        expected.sort_unstable();
        assert_eq!(table.into_sorted(), expected);
    }

    #[test]
    fn equal_hashes_stay_apart() {
        // One hash for every key: the keys' bytes keep them exact, through
        // removals (dead slots) and growth.
        let mut table = KeyTable::new();
        for n in 0..3_000u64 {
            table.insert(7, &n.to_le_bytes(), 8 * (n + 1), n % 2 == 0);
        }
        for n in (0..3_000u64).filter(|n| n % 3 == 0) {
            table.remove(7, &n.to_le_bytes());
        }
        table.remove(7, b"absent");
        let expected: Vec<(u64, bool)> =
            (0..3_000u64).filter(|n| n % 3 != 0).map(|n| (8 * (n + 1), n % 2 == 0)).collect();
        assert_eq!(table.len(), expected.len());
        assert_eq!(table.into_sorted(), expected);
    }
}
