//! Page seals: the checksums of a store's log pages on the device.
//!
//! A log built with [`LogGeometry::sealed`](super::LogGeometry) keeps the
//! last [`TRAILER`] bytes of every page out of allocation. Each flush that
//! writes part of a page also writes that trailer: two slots, each
//!
//! ```text
//! len u32 LE | crc u32 LE
//! crc = CRC-32C(page address u64 LE ‖ page bytes [0, len) ‖ len u32 LE)
//! ```
//!
//! so a flipped bit anywhere in the first `len` bytes of the page, or a
//! page written at the wrong address, fails the check. A slot with
//! `len == 0` is empty.
//!
//! ## Why two slots, and which one a flush writes
//!
//! A page can be flushed in parts (a checkpoint flushes up to the tail,
//! inside a page; the rest follows later). The bytes already written never
//! change, but the seal does, and a crash may keep a new seal without the
//! new bytes it covers (or the reverse). Invariant: **the slot holding the
//! page's last seal known to be durable (written before a completed sync)
//! is never overwritten with different content.** Flushes write the other
//! slot (the work slot); a completed sync promotes the work slot's seal to
//! durable, and the next flush writes the other slot. So after any crash,
//! the durable slot still seals the durable prefix, which is everything a
//! checkpoint taken before the crash can need. The trailer is written
//! whole (16 bytes inside one 512-byte sector), both slots each time, the
//! durable one unchanged.
//!
//! Readers that need the page's bytes `[0, need)` accept the page when any
//! slot with `len >= need` checks out ([`check_page`]).

/// The bytes at the end of every page of a sealed log that hold its seal.
pub const TRAILER: u64 = 16;

/// The seal (the CRC) of the first `bytes.len()` bytes of the page at
/// `page_address`.
pub fn seal_crc(page_address: u64, bytes: &[u8]) -> u32 {
    let running = crc32c::crc32c_append(crc32c::crc32c(&page_address.to_le_bytes()), bytes);
    finish(running, bytes.len() as u64)
}

/// Closes a running CRC over the address and `len` bytes.
fn finish(running: u32, len: u64) -> u32 {
    crc32c::crc32c_append(running, &(len as u32).to_le_bytes())
}

/// One slot as it is stored.
fn slot_bytes(len: u64, crc: u32) -> [u8; 8] {
    let mut out = [0u8; 8];
    out[..4].copy_from_slice(&(len as u32).to_le_bytes());
    out[4..].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Checks the page at `page_address` whose whole image (`page_size`
/// bytes, trailer included) is `page`: some slot must seal at least its
/// first `need` bytes. `strict` also requires every other slot to be empty
/// (all zeros) or valid, which holds for every page a crash cannot have
/// touched since its last sync (all but a log's last page). Returns what is
/// wrong otherwise.
pub fn check_page(page_address: u64, page: &[u8], need: u64, strict: bool) -> Result<(), String> {
    let size = page.len() as u64;
    if size <= TRAILER || need > size - TRAILER {
        return Err(format!("a page of {size} bytes cannot hold {need} sealed bytes"));
    }
    let trailer = &page[(size - TRAILER) as usize..];
    let mut lens = [0u64; 2];
    let mut covered = need == 0;
    let mut damaged = None;
    for (slot, len_out) in lens.iter_mut().enumerate() {
        let raw = &trailer[slot * 8..slot * 8 + 8];
        let len = u64::from(u32::from_le_bytes(raw[..4].try_into().unwrap_or_default()));
        let crc = u32::from_le_bytes(raw[4..].try_into().unwrap_or_default());
        *len_out = len;
        if raw.iter().all(|b| *b == 0) {
            continue;
        }
        let valid = len <= size - TRAILER && seal_crc(page_address, &page[..len as usize]) == crc;
        if valid {
            covered |= len >= need;
        } else {
            damaged.get_or_insert(slot);
        }
    }
    match (covered, damaged) {
        (true, None) => Ok(()),
        (true, Some(_)) if !strict => Ok(()),
        (true, Some(slot)) => Err(format!(
            "page checksum mismatch in seal slot {slot} (slots seal {} and {} bytes)",
            lens[0], lens[1]
        )),
        (false, _) => Err(format!(
            "page checksum mismatch: no seal covers its first {need} bytes \
             (slots seal {} and {} bytes)",
            lens[0], lens[1]
        )),
    }
}

/// Writes a fresh trailer into `page` (a whole page image): slot 0 seals
/// its first `len` bytes, slot 1 is empty. For pages written whole outside
/// the flush (a relocated snapshot).
pub fn seal_image(page_address: u64, page: &mut [u8], len: u64) {
    let size = page.len() as u64;
    debug_assert!(size > TRAILER && len <= size - TRAILER);
    let crc = seal_crc(page_address, &page[..len as usize]);
    let at = (size - TRAILER) as usize;
    page[at..at + 8].copy_from_slice(&slot_bytes(len, crc));
    page[at + 8..].fill(0);
}

/// The flush's seal of the page it is writing (kept under the flush lock).
#[derive(Debug)]
pub(super) struct SealState {
    /// The page this state belongs to.
    page: u64,
    /// CRC-32C over the page address and the `covered` bytes sealed so far.
    running: u32,
    covered: u64,
    /// The two slots' current content, as `(len, crc)`.
    slots: [(u64, u32); 2],
    /// The slot known durable (written before a completed sync).
    durable: Option<usize>,
    /// The slot written last.
    written: Option<usize>,
}

impl SealState {
    /// The state of page `page` (at `page_address`), before its first flush.
    pub(super) fn new(page: u64, page_address: u64) -> Self {
        Self {
            page,
            running: crc32c::crc32c(&page_address.to_le_bytes()),
            covered: 0,
            slots: [(0, 0); 2],
            durable: None,
            written: None,
        }
    }

    /// The page this state belongs to.
    pub(super) fn page(&self) -> u64 {
        self.page
    }

    /// How many bytes from the page's start are sealed already.
    pub(super) fn covered(&self) -> u64 {
        self.covered
    }

    /// Extends the seal over `more` (the page's next bytes) and returns the
    /// trailer to write.
    pub(super) fn extend(&mut self, more: &[u8]) -> [u8; TRAILER as usize] {
        self.running = crc32c::crc32c_append(self.running, more);
        self.covered += more.len() as u64;
        let work = if self.durable == Some(0) { 1 } else { 0 };
        self.slots[work] = (self.covered, finish(self.running, self.covered));
        self.written = Some(work);
        let mut out = [0u8; TRAILER as usize];
        for (slot, (len, crc)) in self.slots.iter().enumerate() {
            out[slot * 8..slot * 8 + 8].copy_from_slice(&slot_bytes(*len, *crc));
        }
        out
    }

    /// A sync completed after the last write: that seal is durable.
    pub(super) fn synced(&mut self) {
        if self.written.is_some() {
            self.durable = self.written;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page_with(len: usize, fill: u8) -> Vec<u8> {
        let mut page = vec![0u8; 512];
        page[..len].fill(fill);
        page
    }

    #[test]
    fn every_bit_flip_and_a_wrong_address_are_caught() {
        let mut page = page_with(300, 0xa5);
        seal_image(4096, &mut page, 300);
        check_page(4096, &page, 300, true).expect("sealed");
        check_page(4096, &page, 10, true).expect("a shorter need");
        assert!(check_page(4096, &page, 301, false).is_err(), "more than is sealed");
        assert!(check_page(8192, &page, 300, false).is_err(), "a misdirected page");
        for bit in 0..300 * 8 {
            let mut bad = page.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(check_page(4096, &bad, 300, false).is_err(), "flip of bit {bit}");
        }
        // The seal's own bytes: the covering slot always; the empty one
        // when strict.
        for bit in 0..128 {
            let mut bad = page.clone();
            bad[512 - 16 + bit / 8] ^= 1 << (bit % 8);
            assert!(check_page(4096, &bad, 300, true).is_err(), "flip of seal bit {bit}");
            assert_eq!(check_page(4096, &bad, 300, false).is_err(), bit < 64, "seal bit {bit}");
        }
    }

    #[test]
    fn a_seal_of_nothing_checks() {
        // Found by the `log_page` fuzz target: an empty seal is not damage.
        let mut page = page_with(0, 0);
        seal_image(0, &mut page, 0);
        check_page(0, &page, 0, true).expect("an empty seal");
    }

    #[test]
    fn the_durable_slot_survives_a_torn_later_flush() {
        let page = page_with(400, 7);
        let mut state = SealState::new(1, 512);
        let first = state.extend(&page[..100]);
        state.synced();
        // Two later flushes, not synced: both go to the other slot.
        let _ = state.extend(&page[100..200]);
        let third = state.extend(&page[200..400]);
        assert_eq!(first[..8], third[..8], "the durable slot is rewritten unchanged");
        // The device kept the new trailer but not the new bytes.
        let mut image = page_with(100, 7);
        image[512 - 16..].copy_from_slice(&third);
        check_page(512, &image, 100, false).expect("the durable prefix is still sealed");
        assert!(check_page(512, &image, 100, true).is_err(), "the torn slot is damage");
        assert!(check_page(512, &image, 101, false).is_err());
        // With the bytes too, the whole page checks.
        let mut whole = page.clone();
        whole[512 - 16..].copy_from_slice(&third);
        check_page(512, &whole, 400, true).expect("whole");
        // After the next sync the other slot is the work slot.
        state.synced();
        let fourth = state.extend(&[]);
        assert_eq!(fourth[8..], third[8..]);
    }
}
