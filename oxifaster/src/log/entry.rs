//! The entry format: how one enqueued byte string sits in the log.
//!
//! ```text
//! [len | PRESENT: u32 LE][crc32c: u32 LE][payload: len bytes][zero padding to 8]
//! ```
//!
//! The checksum (CRC-32C, Castagnoli) covers the entry's own log address
//! (u64 LE), the length word, the payload and its padding, so that an entry
//! written to the wrong place, a torn write and any flipped bit in the
//! entry's bytes are all caught. Entries
//! are 8-byte aligned and never span a page. A zero header word means "no
//! entry here": the rest of the page is padding (the tail moved to the next
//! page) or was never written; the `PRESENT` bit keeps a zero-length entry
//! distinct from that.

/// The header's size in bytes.
pub const HEADER: u64 = 8;
/// Marks a header as an entry (so a zero-length entry is not zero).
const PRESENT: u32 = 1 << 31;

/// The bytes an entry of `len` payload bytes takes in the log.
#[inline]
pub fn entry_size(len: usize) -> u64 {
    HEADER + (len as u64).next_multiple_of(8)
}

/// The checksum of an entry whose padded body (payload and padding) is
/// `body`.
#[inline]
fn checksum(address: u64, word: u32, body: &[u8]) -> u32 {
    let crc = crc32c::crc32c(&address.to_le_bytes());
    let crc = crc32c::crc32c_append(crc, &word.to_le_bytes());
    crc32c::crc32c_append(crc, body)
}

/// Writes the entry for `payload` at log address `address` into `out`,
/// which is exactly `entry_size(payload.len())` bytes.
#[inline]
pub fn encode(address: u64, payload: &[u8], out: &mut [u8]) {
    debug_assert_eq!(out.len() as u64, entry_size(payload.len()));
    debug_assert!(payload.len() < PRESENT as usize);
    let word = payload.len() as u32 | PRESENT;
    let (header, body) = out.split_at_mut(HEADER as usize);
    body[..payload.len()].copy_from_slice(payload);
    body[payload.len()..].fill(0);
    header[..4].copy_from_slice(&word.to_le_bytes());
    header[4..].copy_from_slice(&checksum(address, word, body).to_le_bytes());
}

/// What the bytes at an entry position hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    /// A zero header: the rest of the page holds no entry.
    Empty,
    /// An entry of this many payload bytes (not yet checked against its
    /// checksum).
    Entry {
        /// The payload length.
        len: u32,
        /// The stored checksum.
        crc: u32,
    },
}

/// Why bytes are not a valid entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    /// The header's length word lacks the `PRESENT` bit but is not zero.
    BadHeader,
    /// The length runs past the end of the page.
    TooLong,
    /// The checksum does not match.
    Checksum,
}

impl Invalid {
    /// A description for error messages.
    pub fn describe(self) -> &'static str {
        match self {
            Invalid::BadHeader => "the entry header is malformed",
            Invalid::TooLong => "the entry's length runs past the end of its page",
            Invalid::Checksum => {
                "the entry's checksum does not match (corrupt, torn, misplaced, or not the address of an entry)"
            }
        }
    }
}

/// Decodes the 8 header bytes. `room` is how many bytes remain in the page
/// from the entry's start (header included): a length past it is invalid.
#[inline]
pub fn decode_header(bytes: [u8; 8], room: u64) -> Result<Header, Invalid> {
    let word = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let crc = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    if word == 0 && crc == 0 {
        return Ok(Header::Empty);
    }
    if word & PRESENT == 0 {
        return Err(Invalid::BadHeader);
    }
    let len = word & !PRESENT;
    if entry_size(len as usize) > room {
        return Err(Invalid::TooLong);
    }
    Ok(Header::Entry { len, crc })
}

/// Checks a decoded header's checksum against the entry's padded body
/// (`entry_size(len) - HEADER` bytes).
#[inline]
pub fn verify(address: u64, len: u32, crc: u32, body: &[u8]) -> Result<(), Invalid> {
    debug_assert_eq!(body.len() as u64, entry_size(len as usize) - HEADER);
    if checksum(address, len | PRESENT, body) != crc {
        return Err(Invalid::Checksum);
    }
    Ok(())
}

/// Decodes the entry at the start of `bytes` (which runs to the end of the
/// entry's page or further), located at `address`: `Ok(None)` for an empty
/// header, else the payload and the entry's size. This is the whole
/// decoder; it never reads past `bytes` and allocates nothing.
pub fn decode(address: u64, bytes: &[u8], room: u64) -> Result<Option<(&[u8], u64)>, Invalid> {
    let Some(head) = bytes.get(..HEADER as usize) else {
        return Err(Invalid::TooLong);
    };
    let mut header = [0u8; 8];
    header.copy_from_slice(head);
    match decode_header(header, room)? {
        Header::Empty => Ok(None),
        Header::Entry { len, crc } => {
            let size = entry_size(len as usize);
            let body = bytes.get(HEADER as usize..size as usize).ok_or(Invalid::TooLong)?;
            verify(address, len, crc, body)?;
            Ok(Some((&body[..len as usize], size)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_bit_flip_is_caught() {
        for len in [0usize, 1, 7, 8, 9, 100] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8 ^ 0x5a).collect();
            let mut buf = vec![0u8; entry_size(len) as usize];
            encode(4096, &payload, &mut buf);
            let (back, size) = decode(4096, &buf, 1 << 20).expect("valid").expect("entry");
            assert_eq!((back, size), (payload.as_slice(), buf.len() as u64));
            // The same bytes at another address are not an entry there.
            assert_eq!(decode(4104, &buf, 1 << 20), Err(Invalid::Checksum));
            // Every flip of a header, payload or padding bit is detected.
            for bit in 0..buf.len() * 8 {
                let mut bad = buf.clone();
                bad[bit / 8] ^= 1 << (bit % 8);
                assert!(
                    decode(4096, &bad, 1 << 20).is_err(),
                    "flip of bit {bit} (len {len}) went unnoticed"
                );
            }
        }
    }

    #[test]
    fn empty_header_and_bounds() {
        assert_eq!(decode(64, &[0u8; 16], 16), Ok(None));
        assert_eq!(decode(64, &[0u8; 4], 16), Err(Invalid::TooLong));
        let mut buf = vec![0u8; entry_size(40) as usize];
        encode(64, &[7u8; 40], &mut buf);
        // The page ends before the entry does.
        assert_eq!(decode(64, &buf, 32), Err(Invalid::TooLong));
        // The buffer ends before the entry does.
        assert_eq!(decode(64, &buf[..20], 1 << 20), Err(Invalid::TooLong));
        // A non-zero header without the present bit.
        assert_eq!(decode(64, &[1, 0, 0, 0, 0, 0, 0, 0], 64), Err(Invalid::BadHeader));
        // Zero-length entries are entries.
        let mut zero = [0u8; 8];
        encode(64, &[], &mut zero);
        assert_eq!(decode(64, &zero, 8), Ok(Some((&[][..], 8))));
    }
}
