//! Device failures surface as errors, never as panics, hangs or wrong
//! values: a failed read is reported for its operation (not applied, not
//! retried);
//! a failed page write poisons the store, and every later operation that
//! needs the log says so.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use oxifaster::Error;
use oxifaster::device::{Device, MemoryDevice};
use oxifaster::store::{ReadStatus, Store};

/// A memory device whose reads or writes fail while a switch is on.
#[derive(Default, Clone)]
struct Flaky {
    inner: Arc<MemoryDevice>,
    fail_reads: Arc<AtomicBool>,
    fail_writes: Arc<AtomicBool>,
}

impl Device for Flaky {
    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        if self.fail_writes.load(Ordering::SeqCst) {
            return Err(io::Error::other("injected write failure"));
        }
        self.inner.write_at(offset, buf)
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        if self.fail_reads.load(Ordering::SeqCst) {
            return Err(io::Error::other("injected read failure"));
        }
        self.inner.read_at(offset, buf)
    }
    fn sync(&self) -> io::Result<()> {
        Ok(())
    }
    fn truncate_before(&self, _offset: u64) -> io::Result<()> {
        Ok(())
    }
    fn end_offset(&self) -> io::Result<u64> {
        Ok(0)
    }
}

fn store(device: Flaky) -> Store<u64, u64, Flaky> {
    Store::<u64, u64>::builder()
        .table_size(256)
        .page_size_bits(10)
        .log_memory_size_bytes(4 << 10)
        .open_with_device(device)
        .expect("store")
}

#[test]
fn a_failed_read_is_reported_for_its_operation() {
    let device = Flaky::default();
    let store = store(device.clone());
    let mut session = store.start_session().expect("session");
    for k in 0..2000u64 {
        session.upsert(&k, &(k * 3)).expect("upsert");
    }
    let ReadStatus::Pending { serial } = session.read(&0).expect("read") else {
        panic!("key 0 should be on the device");
    };
    device.fail_reads.store(true, Ordering::SeqCst);
    let done = session.complete_pending().expect("complete");
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].serial, serial);
    match &done[0].op {
        oxifaster::store::CompletedOp::Failed(e) => {
            assert!(matches!(*e.0, Error::Io { .. }), "{e}");
        }
        other => panic!("a failed read: {other:?}"),
    }
    assert_eq!(session.pending_count(), 0, "reported once, not kept");
    assert!(session.read_blocking(&1).is_err());
    device.fail_reads.store(false, Ordering::SeqCst);
    assert_eq!(session.read_blocking(&0).expect("read"), Some(0));
    assert!(session.complete_pending().expect("complete").is_empty(), "reported once");
}

#[test]
fn a_failed_page_write_poisons_the_store_without_hanging() {
    let device = Flaky::default();
    let store = store(device.clone());
    let mut session = store.start_session().expect("session");
    device.fail_writes.store(true, Ordering::SeqCst);
    let mut first_error = None;
    for k in 0..10_000u64 {
        if let Err(e) = session.upsert(&k, &k) {
            first_error = Some((k, e));
            break;
        }
    }
    let (k, err) = first_error.expect("writes past the memory budget must fail");
    assert!(matches!(err, Error::Poisoned { .. }), "key {k}: {err}");
    assert!(err.to_string().contains("injected write failure"), "{err}");
    assert_eq!(err.io_kind(), Some(io::ErrorKind::Other), "the cause's kind is kept");
    assert!(!err.is_disk_full());
    // Every later write reports the poisoning; none hangs or panics.
    assert!(matches!(session.upsert(&1, &1), Err(Error::Poisoned { .. })));
    // Reads still answer: from memory, and from what reached the device.
    assert_eq!(session.read_blocking(&1).expect("a read of a poisoned store"), Some(1));
    assert_eq!(session.read_blocking(&(k + 1)).expect("read"), None);
    let mut other = store.start_session().expect("session");
    assert!(matches!(other.rmw(&5, &1), Err(Error::Poisoned { .. })));
    // Compaction of a poisoned store is refused and moves nothing.
    let begin = store.log_regions().begin_address;
    let until = store.log_regions().safe_read_only_address;
    assert!(matches!(store.compact(until), Err(Error::Poisoned { .. })));
    assert_eq!(store.log_regions().begin_address, begin);
}
