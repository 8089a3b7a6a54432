//! Integrity on every read: a bit flipped on the device in a record's
//! header, key or value, after a fold-over checkpoint, is found by every
//! path that reads the record back — `read` + `complete_pending`,
//! `read_blocking`, `read_with`, `rmw` + `complete_pending`, `rmw_with`,
//! `read_async`, `rmw_async`, and the live and log scans — as
//! `Error::Corruption` (or a completion that failed with it), never a wrong
//! value.

mod common;

use std::path::Path;

use oxifaster::checkpoint::{self, CheckpointKind};
use oxifaster::device::{DEFAULT_SEGMENT_SIZE_BITS, FileDevice};
use oxifaster::store::{CompletedOp, ReadStatus, RmwStatus};
use oxifaster::{Error, Store, StoreBuilder};

fn builder(dir: &Path) -> StoreBuilder<u64, Vec<u8>> {
    Store::<u64, Vec<u8>>::builder()
        .dir(dir)
        .page_size_bits(12)
        .log_memory_size_bytes(64 << 10)
        .table_size(1 << 10)
        .checkpoint_every(None)
        .checkpoint_on_close(false)
}

const KEYS: u64 = 2_000;

fn value(k: u64) -> Vec<u8> {
    vec![(k % 251) as u8; 24]
}

/// A store of `KEYS` keys, fold-over checkpointed and closed (on reopen,
/// every record is on the device); returns the address of key `k`'s record.
fn build(dir: &Path, k: u64) -> u64 {
    let token = {
        let store = builder(dir).open().expect("open");
        let mut session = store.start_session().expect("session");
        for key in 0..KEYS {
            session.upsert(&key, &value(key)).expect("upsert");
        }
        store.checkpoint_and_wait(CheckpointKind::FoldOver).expect("checkpoint").token
    };
    let device = FileDevice::open(dir, DEFAULT_SEGMENT_SIZE_BITS).expect("device");
    let mut address = None;
    checkpoint::scan_log(dir, token.as_str(), &device, |record| {
        if record.key == k.to_le_bytes() {
            address = Some(record.address);
        }
        true
    })
    .expect("scan");
    address.expect("the key's record")
}

fn is_corruption(e: &Error) -> bool {
    matches!(e, Error::Corruption { .. })
}

/// Checks every read path on key `k`, whose record is damaged.
async fn every_path_fails(dir: &Path, k: u64, what: &str) {
    let store = builder(dir).open().expect("reopen");
    let mut session = store.start_session().expect("session");
    // An intact key still reads.
    let other = (k + KEYS / 2) % KEYS;
    assert_eq!(session.read_blocking(&other).expect("intact"), Some(value(other)), "{what}");

    let err = session.read_blocking(&k).expect_err("read_blocking");
    assert!(is_corruption(&err), "{what}: read_blocking: {err}");
    let err = session.read_with(&k, |v| v.map(|v| v.len())).expect_err("read_with");
    assert!(is_corruption(&err), "{what}: read_with: {err}");
    match session.read(&k) {
        Ok(ReadStatus::Pending { .. }) => {
            let done = session.complete_pending().expect("complete");
            assert!(
                matches!(&done[0].op, CompletedOp::Failed(e) if is_corruption(&e.0)),
                "{what}: pending read: {done:?}"
            );
        }
        other => panic!("{what}: read: {other:?}"),
    }
    let err = session.read_async(&k).await.expect_err("read_async");
    assert!(is_corruption(&err), "{what}: read_async: {err}");
    let err = session.rmw_with(&k, |old| old.unwrap_or_default()).expect_err("rmw_with");
    assert!(is_corruption(&err), "{what}: rmw_with: {err}");
    // The derived merge of Vec<u8> appends.
    match session.rmw(&k, &vec![1]) {
        Ok(RmwStatus::Pending { .. }) => {
            let done = session.complete_pending().expect("complete");
            assert!(
                matches!(&done[0].op, CompletedOp::Failed(e) if is_corruption(&e.0)),
                "{what}: pending rmw: {done:?}"
            );
        }
        other => panic!("{what}: rmw: {other:?}"),
    }
    let err = session.rmw_async(&k, &vec![1]).await.expect_err("rmw_async");
    assert!(is_corruption(&err), "{what}: rmw_async: {err}");
    // Scans read whole pages (a thread reading ahead of them) and check
    // each against its seal.
    let err = store.iter().expect("iter").find_map(Result::err).expect("the live scan fails");
    assert!(is_corruption(&err), "{what}: iter: {err}");
    let mut scan = store.scan_log(None, None).expect("scan_log");
    let err = scan.find_map(Result::err).expect("the log scan fails");
    assert!(is_corruption(&err), "{what}: scan_log: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_bit_in_a_record_on_the_device_is_an_error_on_every_read_path() {
    // Record layout (u64 key, Vec<u8> value): header 8, seqlock 8,
    // lengths 8, key 8, value 24.
    for (offset, what) in [(0, "header"), (16, "lengths"), (24, "key"), (40, "value")] {
        let dir = tempfile::tempdir().expect("tempdir");
        let k = 777;
        let address = build(dir.path(), k);
        let device = FileDevice::open(dir.path(), DEFAULT_SEGMENT_SIZE_BITS).expect("device");
        common::flip_bit(&device, address + offset, 2);
        every_path_fails(dir.path(), k, what).await;
    }
}
