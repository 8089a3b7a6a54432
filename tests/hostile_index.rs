//! A crafted index checkpoint (its trailer recomputed, as anyone can: the
//! checksums detect damage, not tampering) never makes the engine read a
//! fake record: an entry into the middle of a record or an unaligned entry
//! is a named error from recovery, not a crash or a ghost key.

use std::collections::BTreeSet;
use std::path::Path;

use oxifaster::checkpoint::{self, CheckpointKind};
use oxifaster::device::{DEFAULT_SEGMENT_SIZE_BITS, FileDevice};
use oxifaster::{Error, Store, StoreBuilder};

fn builder(dir: &Path) -> StoreBuilder<u64, Vec<u8>> {
    Store::<u64, Vec<u8>>::builder()
        .dir(dir)
        .page_size_bits(12)
        .log_memory_size_bytes(256 << 10)
        .table_size(1 << 8)
        .checkpoint_every(None)
        .checkpoint_on_close(false)
}

/// A store whose checkpoint `kind` holds 300 variable-length records; returns
/// the checkpoint's token and the addresses of its records.
fn checkpointed(dir: &Path, kind: CheckpointKind) -> (String, BTreeSet<u64>) {
    let token = {
        let store = builder(dir).open().expect("open");
        let mut session = store.start_session().expect("session");
        for k in 0..300u64 {
            session.upsert(&k, &vec![k as u8; 40]).expect("upsert");
        }
        store.checkpoint_and_wait(kind).expect("checkpoint").token.to_string()
    };
    let device = FileDevice::open(dir, DEFAULT_SEGMENT_SIZE_BITS).expect("device");
    let mut addresses = BTreeSet::new();
    checkpoint::scan_log(dir, &token, &device, |record| {
        addresses.insert(record.address);
        true
    })
    .expect("scan");
    (token, addresses)
}

/// Rewrites the first index entry that points at a record so that it points
/// `by` bytes further (and, with `retag`, under another tag: recovery's
/// replay re-indexes every record it replays, which heals a forged entry of
/// a replayed key's tag, but not one of a tag no record has), and fixes the
/// file's trailer.
fn shift_an_entry(dir: &Path, token: &str, records: &BTreeSet<u64>, by: u64, retag: bool) {
    let path = dir.join("checkpoints").join(token).join("index");
    let mut bytes = std::fs::read(&path).expect("read index");
    const ADDRESS: u64 = (1 << 48) - 1;
    let at = (0..bytes.len() - 8)
        .step_by(8)
        .find(|&i| {
            let word = u64::from_le_bytes(bytes[i..i + 8].try_into().expect("word"));
            word != 0 && records.contains(&(word & ADDRESS))
        })
        .expect("an entry");
    let word = u64::from_le_bytes(bytes[at..at + 8].try_into().expect("word"));
    let tag_flip = if retag { 1u64 << 50 } else { 0 };
    let shifted = ((word ^ tag_flip) & !ADDRESS) | ((word & ADDRESS) + by);
    bytes[at..at + 8].copy_from_slice(&shifted.to_le_bytes());
    std::fs::write(&path, oxifaster::index::fix_checkpoint_trailer(&bytes)).expect("write");
}

fn assert_refused(result: oxifaster::Result<Store<u64, Vec<u8>>>, what: &str) {
    match result {
        Err(Error::CheckpointCorrupt { what: why, .. } | Error::Corruption { what: why, .. }) => {
            assert!(why.contains("not a record") || why.contains("aligned"), "{what}: {why}");
        }
        Err(e) => panic!("{what}: unexpected {e}"),
        Ok(store) => {
            // Recovery accepted it: every read must still be a value or a
            // named error, never a ghost.
            let mut session = store.start_session().expect("session");
            for k in 0..300u64 {
                match session.read_blocking(&k) {
                    Ok(Some(v)) => assert_eq!(v, vec![k as u8; 40], "{what}: key {k}"),
                    Ok(None) | Err(Error::Corruption { .. }) => {}
                    Err(e) => panic!("{what}: key {k}: {e}"),
                }
            }
            panic!("{what}: recovery accepted a forged entry");
        }
    }
}

#[test]
fn entries_into_the_middle_of_records_are_refused() {
    // A snapshot comes back into memory: the entry would be followed there.
    for (by, what) in [(8, "mid-record"), (4, "unaligned"), (12, "unaligned mid-record")] {
        let dir = tempfile::tempdir().expect("tempdir");
        let (token, records) = checkpointed(dir.path(), CheckpointKind::Snapshot);
        shift_an_entry(dir.path(), &token, &records, by, true);
        assert_refused(builder(dir.path()).recover(&token), what);
    }
}

#[test]
fn unaligned_entries_into_the_device_are_refused() {
    // A fold-over's records are read from the device.
    let dir = tempfile::tempdir().expect("tempdir");
    let (token, records) = checkpointed(dir.path(), CheckpointKind::FoldOver);
    shift_an_entry(dir.path(), &token, &records, 4, false);
    assert_refused(builder(dir.path()).recover(&token), "unaligned, on the device");
}

#[test]
fn a_previous_pointer_into_the_middle_of_a_record_is_refused() {
    // A snapshot comes back into memory; one of its records' previous
    // pointer is moved 8 bytes into the record it names (its checksums then
    // recomputed, as a forger would).
    let dir = tempfile::tempdir().expect("tempdir");
    let token = {
        let store = builder(dir.path()).open().expect("open");
        let mut session = store.start_session().expect("session");
        for round in 0..2u8 {
            for k in 0..100u64 {
                session.upsert(&k, &vec![round; 40]).expect("upsert");
            }
        }
        store.checkpoint_and_wait(CheckpointKind::Snapshot).expect("checkpoint").token
    };
    let info = checkpoint::list(dir.path())
        .expect("list")
        .into_iter()
        .find(|c| c.token == token)
        .expect("the checkpoint");
    let from = info.snapshot_from.expect("a snapshot");
    let device = FileDevice::open(dir.path(), DEFAULT_SEGMENT_SIZE_BITS).expect("device");
    let mut target = None;
    checkpoint::scan_log(dir.path(), token.as_str(), &device, |r| {
        if r.previous >= from && r.address >= from && target.is_none() {
            target = Some((r.address, r.previous));
        }
        true
    })
    .expect("scan");
    let (address, previous) = target.expect("a record whose predecessor is in the snapshot");
    let path = dir.path().join("checkpoints").join(token.as_str()).join("snapshot");
    let mut bytes = std::fs::read(&path).expect("read snapshot");
    let at = (address - from) as usize;
    let word = u64::from_le_bytes(bytes[at..at + 8].try_into().expect("header"));
    const ADDRESS: u64 = (1 << 48) - 1;
    assert_eq!(word & ADDRESS, previous);
    let forged = (word & !ADDRESS) | (previous + 8);
    bytes[at..at + 8].copy_from_slice(&forged.to_le_bytes());
    std::fs::write(&path, &bytes).expect("write snapshot");
    checkpoint::snapshot_fix_checksum(dir.path(), token.as_str()).expect("fix checksums");
    match builder(dir.path()).recover(&token) {
        Err(Error::Corruption { what, .. }) => assert!(what.contains("not a record"), "{what}"),
        Err(e) => panic!("unexpected {e}"),
        Ok(_) => panic!("recovery accepted a forged previous pointer"),
    }
}
