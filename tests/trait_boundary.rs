//! The engine never trusts a user's `Key`/`Value` implementation for memory
//! safety: sizes that change between calls, a `FIXED_SIZE` that lies, and
//! encoders that write more or fewer bytes than they announced are errors
//! (the record is never published), never an out-of-bounds write or read;
//! and a merge that panics leaves its key readable and writable from every
//! session.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use oxifaster::record::{CodecError, Layout, Sink};
use oxifaster::store::ReadStatus;
use oxifaster::{Error, FasterValue, Key, Store, Value};

/// Calls of `key_size` so far, for the key that lies on its second call.
static KEY_SIZE_CALLS: AtomicUsize = AtomicUsize::new(0);

/// A key whose size is 8 on the first call and 64 MiB on every later one.
#[derive(Debug, Clone, Copy, PartialEq)]
struct ShapeShiftingKey(u64);

impl Key for ShapeShiftingKey {
    const FIXED_KEY_SIZE: Option<usize> = None;
    fn key_size(&self) -> usize {
        if KEY_SIZE_CALLS.fetch_add(1, Ordering::Relaxed).is_multiple_of(2) { 8 } else { 64 << 20 }
    }
    fn encode_key<S: Sink + ?Sized>(&self, sink: &mut S) {
        sink.put(&self.0.to_le_bytes());
    }
    fn decode_key(bytes: &[u8]) -> Result<Self, CodecError> {
        let bytes: [u8; 8] = bytes.try_into().map_err(|_| CodecError::Size {
            type_name: "ShapeShiftingKey",
            expected: 8,
            found: bytes.len(),
        })?;
        Ok(Self(u64::from_le_bytes(bytes)))
    }
    fn key_layout() -> Layout {
        Layout::primitive("ShapeShiftingKey", 8, 8)
    }
}

/// A value that announces `announced` bytes and writes `written`, and
/// declares `FIXED` as its fixed size.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Liar<const FIXED: usize, const ANNOUNCED: usize, const WRITTEN: usize>(u64);

impl<const FIXED: usize, const ANNOUNCED: usize, const WRITTEN: usize> Value
    for Liar<FIXED, ANNOUNCED, WRITTEN>
{
    const FIXED_SIZE: Option<usize> = if FIXED == 0 { None } else { Some(FIXED) };
    type View<'a> = &'a [u8];
    fn encoded_size(&self) -> usize {
        ANNOUNCED
    }
    fn encode<S: Sink + ?Sized>(&self, sink: &mut S) {
        let mut left = WRITTEN;
        while left > 0 {
            let n = left.min(8);
            sink.put(&self.0.to_le_bytes()[..n]);
            left -= n;
        }
    }
    fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        let mut word = [0u8; 8];
        let n = bytes.len().min(8);
        word[..n].copy_from_slice(&bytes[..n]);
        Ok(Self(u64::from_le_bytes(word)))
    }
    fn view(bytes: &[u8]) -> Result<&[u8], CodecError> {
        Ok(bytes)
    }
    fn layout() -> Layout {
        Layout::primitive("Liar", 8, 8)
    }
}

fn small_store<K: Key, V: Value>() -> oxifaster::Result<Store<K, V>> {
    Store::<K, V>::builder().page_size_bits(16).log_memory_size_bytes(1 << 20).table_size(64).open()
}

#[test]
fn a_key_size_that_changes_between_calls_is_bounded() {
    let store = small_store::<ShapeShiftingKey, u64>().expect("open");
    let mut session = store.start_session().expect("session");
    // Whichever call sees which size, nothing is written past the record:
    // the upsert either stores the key or fails by name.
    for k in 0..64u64 {
        match session.upsert(&ShapeShiftingKey(k), &k) {
            Ok(()) | Err(Error::Codec(_)) | Err(Error::RecordTooLarge { .. }) => {}
            Err(e) => panic!("key {k}: unexpected {e}"),
        }
    }
    // The store still works for honest keys and values.
    let honest = small_store::<u64, u64>().expect("open");
    let mut session = honest.start_session().expect("session");
    session.upsert(&1, &2).expect("upsert");
    assert_eq!(session.read_blocking(&1).expect("read"), Some(2));
}

#[test]
fn a_log_memory_that_overflows_the_address_space_is_refused() {
    let result =
        Store::<u64, u64>::builder().page_size_bits(30).log_memory_size_bytes(u64::MAX).open();
    assert!(matches!(result, Err(Error::InvalidConfig { what: "log_memory_size_bytes", .. })));
}

#[test]
fn a_fixed_size_larger_than_a_page_is_refused_at_open() {
    match small_store::<u64, Liar<{ 64 << 20 }, 8, 8>>() {
        Err(Error::RecordTooLarge { size, max }) => assert!(size > max),
        other => panic!("a 64 MiB fixed value: {:?}", other.map(|_| ())),
    }
}

#[test]
fn an_instance_that_disagrees_with_its_fixed_size_is_an_error() {
    // FIXED_SIZE says 8, the instance announces 16 (and writes 16).
    let store = small_store::<u64, Liar<8, 16, 16>>().expect("open");
    let mut session = store.start_session().expect("session");
    match session.upsert(&1, &Liar(7)) {
        Err(Error::Codec(CodecError::FixedSizeMismatch { fixed: 8, announced: 16, .. })) => {}
        other => panic!("a lying FIXED_SIZE: {other:?}"),
    }
    assert_eq!(session.read(&1).expect("read"), ReadStatus::NotFound, "nothing was published");
    // FIXED_SIZE says 64, the instance announces 8 (the engine would read
    // 64 bytes of an 8-byte record).
    let store = small_store::<u64, Liar<64, 8, 8>>().expect("open");
    let mut session = store.start_session().expect("session");
    assert!(matches!(
        session.upsert(&1, &Liar(7)),
        Err(Error::Codec(CodecError::FixedSizeMismatch { fixed: 64, announced: 8, .. }))
    ));
    assert!(matches!(
        session.rmw_with(&1, |_| Liar(7)),
        Err(Error::Codec(CodecError::FixedSizeMismatch { .. }))
    ));
}

#[test]
fn short_and_long_encoders_are_errors_and_publish_nothing() {
    // Announces 16, writes 8.
    let store = small_store::<u64, Liar<0, 16, 8>>().expect("open");
    let mut session = store.start_session().expect("session");
    match session.upsert(&1, &Liar(5)) {
        Err(Error::Codec(CodecError::EncoderMismatch { announced: 16, written: 8, .. })) => {}
        other => panic!("a short encoder: {other:?}"),
    }
    assert_eq!(session.read_blocking(&1).expect("read"), None);
    // Announces 16, writes 4 KiB: the excess is dropped, never written.
    let store = small_store::<u64, Liar<0, 16, 4096>>().expect("open");
    let mut session = store.start_session().expect("session");
    for k in 0..1_000u64 {
        match session.upsert(&k, &Liar(k)) {
            Err(Error::Codec(CodecError::EncoderMismatch {
                announced: 16, written: 4096, ..
            })) => {}
            other => panic!("a long encoder: {other:?}"),
        }
    }
    assert_eq!(session.read_blocking(&3).expect("read"), None);
}

/// A value updated under the per-record lock (16 bytes), whose merge
/// panics when `poison` is set.
#[derive(FasterValue, Clone, Copy, Debug, PartialEq)]
#[repr(C)]
#[faster(merge_with = "explosive")]
struct Pair {
    count: u64,
    poison: u64,
}

fn explosive(stored: &mut Pair, input: &Pair) {
    if input.poison != 0 {
        panic!("the merge exploded");
    }
    stored.count += input.count;
}

/// A variable-length value (also under the lock), same merge behaviour.
#[derive(FasterValue, Clone, Debug, PartialEq)]
#[faster(merge_with = "explosive_tagged")]
struct Tagged {
    count: u64,
    poison: u64,
    tag: String,
}

fn explosive_tagged(stored: &mut Tagged, input: &Tagged) {
    if input.poison != 0 {
        panic!("the merge exploded");
    }
    stored.count += input.count;
}

/// Runs `f` on another thread with a session of its own, failing the test
/// if it does not finish in 10 s (a record lock left held would spin for
/// ever).
fn within_bounded_time<S: Send + 'static>(mut session: S, f: impl FnOnce(&mut S) + Send + 'static) {
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        f(&mut session);
        let _ = done_tx.send(());
    });
    let start = Instant::now();
    done_rx.recv_timeout(Duration::from_secs(10)).expect("the key hangs after a panicking merge");
    assert!(start.elapsed() < Duration::from_secs(10));
}

#[test]
fn a_panicking_merge_leaves_its_key_usable() {
    // Fixed-size, two words (the seqlock path).
    let store = small_store::<u64, Pair>().expect("open");
    let mut session = store.start_session().expect("session");
    session.upsert(&1, &Pair { count: 10, poison: 0 }).expect("upsert");
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        session.rmw(&1, &Pair { count: 1, poison: 1 })
    }));
    assert!(panicked.is_err(), "the merge panicked");
    drop(session);
    within_bounded_time(store.start_session().expect("session"), |other| {
        assert_eq!(other.read_blocking(&1).expect("read"), Some(Pair { count: 10, poison: 0 }));
        other.rmw(&1, &Pair { count: 5, poison: 0 }).expect("rmw");
        other.upsert(&2, &Pair { count: 1, poison: 0 }).expect("upsert");
        assert_eq!(other.read_blocking(&1).expect("read"), Some(Pair { count: 15, poison: 0 }));
    });

    // Variable-length (the seqlock path too), with the panicking session
    // kept and used again afterwards.
    let store = small_store::<u64, Tagged>().expect("open");
    let mut session = store.start_session().expect("session");
    let value = |count, poison| Tagged { count, poison, tag: "t".into() };
    session.upsert(&1, &value(10, 0)).expect("upsert");
    let panicked =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| session.rmw(&1, &value(1, 1))));
    assert!(panicked.is_err(), "the merge panicked");
    session.rmw(&1, &value(2, 0)).expect("the session is usable");
    within_bounded_time(store.start_session().expect("session"), move |other| {
        assert_eq!(other.read_blocking(&1).expect("read"), Some(value(12, 0)));
        other.upsert(&1, &value(3, 0)).expect("upsert");
    });
    drop(session);

    // A closure RMW that panics (8-byte values: no lock, but the closure
    // form runs under the seqlock for larger ones).
    let store = small_store::<u64, Pair>().expect("open");
    let mut session = store.start_session().expect("session");
    session.upsert(&1, &Pair { count: 1, poison: 0 }).expect("upsert");
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        session.rmw_with(&1, |_| panic!("the closure exploded"))
    }));
    assert!(panicked.is_err());
    drop(session);
    within_bounded_time(store.start_session().expect("session"), |other| {
        assert_eq!(other.read_blocking(&1).expect("read"), Some(Pair { count: 1, poison: 0 }));
        other
            .rmw_with(&1, |old| Pair { count: old.map_or(0, |p| p.count) + 1, poison: 0 })
            .expect("rmw");
    });
}
