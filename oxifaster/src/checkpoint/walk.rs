//! Walking the records packed in a stretch of log bytes: shared by
//! recovery's replay, the log scan, and incremental snapshots.

use crate::hlog::FIRST_ADDRESS;
use crate::hlog::seal::TRAILER as PAGE_TRAILER;
use crate::store::record::{RecordInfo, RecordShape};
use crate::{Error, Result};

/// Calls `f(address, record bytes, header, key length)` for every record in
/// `chunk`, the log's bytes from `start` (a record boundary): records are
/// packed from a page's start (page 0: from `FIRST_ADDRESS`) until a zero
/// header, and never cross into the page's seal. A record that would cross its page or
/// the chunk's end is corruption.
pub(crate) fn for_each_record(
    format: &RecordShape,
    chunk: &mut [u8],
    start: u64,
    page_size: u64,
    mut f: impl FnMut(u64, &mut [u8], RecordInfo, usize),
) -> Result<()> {
    let end = start + chunk.len() as u64;
    let mut at = start;
    while at < end {
        let page_end = ((at / page_size) + 1) * page_size;
        // The page's seal follows its records.
        let body_end = page_end - PAGE_TRAILER;
        if at < FIRST_ADDRESS {
            // The reserved start of page 0.
            at = FIRST_ADDRESS;
            continue;
        }
        let limit = body_end.min(end);
        if at + 8 > limit {
            at = if end < body_end { end } else { page_end };
            continue;
        }
        let i = (at - start) as usize;
        let mut word = [0u8; 8];
        word.copy_from_slice(&chunk[i..i + 8]);
        let info = RecordInfo::from_raw(u64::from_le_bytes(word));
        if info.is_empty() {
            // A snapshot taken from page 0 and relocated by a recovery
            // brings page 0's reserved start along: that page of the new
            // incarnation opens with `FIRST_ADDRESS` zero bytes, then
            // records. Anywhere else, an empty header means the rest of the
            // page was never allocated (a record's header is never 0).
            let gap_end = at + FIRST_ADDRESS;
            let j = i + FIRST_ADDRESS as usize;
            let relocated_start = at.is_multiple_of(page_size)
                && gap_end + 8 <= limit
                && chunk[i..j].iter().all(|b| *b == 0)
                && chunk[j..j + 8].iter().any(|b| *b != 0);
            at = if relocated_start { gap_end } else { page_end };
            continue;
        }
        if at + format.header_size as u64 > limit {
            return Err(Error::Corruption {
                address: at,
                what: "record header crosses its page".into(),
            });
        }
        let (key_len, value_len) = format.lengths_in(&chunk[i..i + format.header_size]);
        let size = format.record_size(key_len, value_len) as u64;
        if at + size > body_end {
            return Err(Error::Corruption {
                address: at,
                what: format!("record of {size} bytes crosses its page"),
            });
        }
        if at + size > limit {
            // Cut by the chunk end (the final address ends a record).
            return Err(Error::Corruption {
                address: at,
                what: "record crosses the log's end".into(),
            });
        }
        f(at, &mut chunk[i..i + size as usize], info, key_len);
        at += size;
    }
    Ok(())
}
