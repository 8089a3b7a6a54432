//! The store's log pages are sealed (a CRC-32C over each page's address and
//! bytes): flipped bits and misdirected pages on the device are found by
//! recovery (in the range it replays) and by `checkpoint::verify_log` (in
//! the whole log a checkpoint needs), and the dead ranges a recovery leaves
//! behind are not mistaken for damage.

mod common;

use std::path::Path;

use oxifaster::checkpoint::{self, CheckpointKind};
use oxifaster::device::{DEFAULT_SEGMENT_SIZE_BITS, Device, FileDevice};
use oxifaster::{Error, Store, StoreBuilder};
use oxifaster_cli::workload::Rng;

const PAGE_BITS: u32 = 12;
const PAGE: u64 = 1 << PAGE_BITS;

fn builder(dir: &Path) -> StoreBuilder<u64, u64> {
    Store::<u64, u64>::builder()
        .dir(dir)
        .page_size_bits(PAGE_BITS)
        .log_memory_size_bytes(64 << 10)
        .table_size(1 << 10)
}

fn device(dir: &Path) -> FileDevice {
    FileDevice::open(dir, DEFAULT_SEGMENT_SIZE_BITS).expect("device")
}

/// A store whose first fold-over checkpoint is taken early (so its index
/// starts low) and whose log-only checkpoint then covers many pages: the
/// returned token's recovery replays `[low, final)`.
fn build(dir: &Path, keys: u64) -> String {
    let store = builder(dir).open().expect("open");
    let mut session = store.start_session().expect("session");
    session.upsert(&0, &0).expect("upsert");
    store.checkpoint_and_wait(CheckpointKind::FoldOver).expect("fold-over");
    for key in 0..keys {
        session.upsert(&key, &(key * 3)).expect("upsert");
    }
    let info = store.checkpoint_and_wait(CheckpointKind::LogOnly).expect("log-only");
    info.token.to_string()
}

/// The final address of checkpoint `token`.
fn final_address(dir: &Path, token: &str) -> u64 {
    checkpoint::list(dir)
        .expect("list")
        .into_iter()
        .find(|c| c.token.as_str() == token)
        .expect("checkpoint")
        .final_address
}

fn flip(dir: &Path, address: u64, bit: u8) {
    common::flip_bit(&device(dir), address, bit);
}

#[test]
fn a_healthy_log_verifies_and_recovers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = build(dir.path(), 3000);
    let report = checkpoint::verify_log(dir.path(), &token, &device(dir.path())).expect("verify");
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert!(report.pages >= 3000 * 16 / PAGE, "only {} pages checked", report.pages);
    let store = builder(dir.path()).recover(&token).expect("recover");
    let mut session = store.start_session().expect("session");
    for key in (0..3000).step_by(7) {
        assert_eq!(session.read_blocking(&key).expect("read"), Some(key * 3));
    }
}

#[test]
fn sampled_bit_flips_in_log_pages_are_all_detected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = build(dir.path(), 3000);
    let end = final_address(dir.path(), &token);
    let mut rng = Rng::new(0x5ea1);
    for _ in 0..60 {
        // Any byte of the log below the final address: records, free space
        // at a page's end, or the seal itself.
        let address = 64 + rng.below(end - 64);
        let page = address & !(PAGE - 1);
        let bit = rng.below(8) as u8;
        flip(dir.path(), address, bit);
        let report =
            checkpoint::verify_log(dir.path(), &token, &device(dir.path())).expect("verify");
        let found: Vec<u64> = report.problems.iter().map(|(a, _)| *a).collect();
        assert_eq!(found, vec![page], "flip at {address:#x} (bit {bit})");
        flip(dir.path(), address, bit);
    }
    // Recovery replays the pages after the first checkpoint's index: a flip
    // there fails it with the page's address.
    let address = end - 40;
    flip(dir.path(), address, 3);
    match builder(dir.path()).recover(&token) {
        Err(Error::Corruption { address: at, what }) => {
            assert_eq!(at, address & !(PAGE - 1), "{what}");
            assert!(what.contains("checksum"), "{what}");
        }
        other => panic!("recovery of a damaged page: {:?}", other.map(|_| ())),
    }
}

#[test]
fn a_page_written_at_the_wrong_address_is_detected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = build(dir.path(), 3000);
    let device = device(dir.path());
    let mut page = vec![0u8; PAGE as usize];
    device.read_at(3 * PAGE, &mut page).expect("read");
    device.write_at(5 * PAGE, &page).expect("write");
    device.sync().expect("sync");
    let report = checkpoint::verify_log(dir.path(), &token, &device).expect("verify");
    let found: Vec<u64> = report.problems.iter().map(|(a, _)| *a).collect();
    assert_eq!(found, vec![5 * PAGE]);
}

#[test]
fn dead_ranges_left_by_a_recovery_are_not_damage() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = build(dir.path(), 1000);
    let end = final_address(dir.path(), &token);
    {
        // More writes after the checkpoint, flushed but never checkpointed.
        let store = builder(dir.path()).recover(&token).expect("recover");
        let mut session = store.start_session().expect("session");
        for key in 0..3000u64 {
            session.upsert(&key, &(key + 1)).expect("upsert");
        }
    }
    // The dead pages past the first checkpoint's end are torn.
    let device = device(dir.path());
    let dead_end = device.end_offset().expect("end");
    for address in (end.next_multiple_of(PAGE)..dead_end).step_by(PAGE as usize / 2) {
        flip(dir.path(), address + 9, 1);
    }
    // Recovering the old checkpoint again, then checkpointing: the new
    // checkpoint's log spans the dead range, which verify skips.
    let store = builder(dir.path()).recover(&token).expect("recover again");
    let mut session = store.start_session().expect("session");
    session.upsert(&7, &70).expect("upsert");
    let info = store.checkpoint_and_wait(CheckpointKind::FoldOver).expect("fold-over");
    drop(session);
    drop(store);
    let report = checkpoint::verify_log(dir.path(), info.token.as_str(), &device).expect("verify");
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    // And the pages before the dead range still count: damage there is found.
    flip(dir.path(), end - 40, 0);
    let report = checkpoint::verify_log(dir.path(), info.token.as_str(), &device).expect("verify");
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
}
