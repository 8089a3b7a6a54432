//! Round trips of every codec: encode → view → owned equals the input, and
//! encode → decode equals the input, for the primitive implementations and
//! for derived fixed-size, variable-length and enum types; keys hash to the
//! stable hash of their encoding. Views must not allocate.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::fmt::Debug;

use oxifaster::record::{Key, Value, hash_bytes};
use oxifaster::{FasterKey, FasterValue};
use proptest::prelude::*;

/// Counts this thread's allocations, so a test can prove that a view does
/// not allocate.
struct CountingAllocator;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: delegates to the system allocator; the counter is a const-
// initialised thread local, which never allocates.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|a| a.set(a.get() + 1));
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller upholds `GlobalAlloc::dealloc`'s contract.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|a| a.set(a.get() + 1));
        // SAFETY: the caller upholds `GlobalAlloc::realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

/// encode → decode and encode → view → owned, with no allocation in `view`.
fn check_value<V: Value + PartialEq + Debug>(value: &V, owned: for<'a> fn(V::View<'a>) -> V) {
    let bytes = value.to_aligned_bytes();
    assert_eq!(bytes.len(), value.encoded_size());
    if let Some(size) = V::FIXED_SIZE {
        assert_eq!(size, bytes.len());
    }
    let mut exact = vec![0u8; value.encoded_size()];
    value.encode_into(&mut exact).expect("encode_into a buffer of the announced size");
    assert_eq!(exact, bytes.as_slice());
    assert_eq!(&V::decode(&bytes).expect("decode"), value);

    let before = allocations();
    let view = V::view(&bytes).expect("view");
    let after = allocations();
    assert_eq!(after, before, "Value::view allocated");
    assert_eq!(&owned(view), value);
}

fn check_key<K: Key + PartialEq + Debug>(key: &K) {
    let bytes = key.key_to_aligned_bytes();
    assert_eq!(bytes.len(), key.key_size());
    assert_eq!(&K::decode_key(&bytes).expect("decode_key"), key);
    assert_eq!(key.hash64(), hash_bytes(&bytes));
    assert!(key.matches(&bytes));
    let before = allocations();
    let _ = key.hash64();
    let _ = key.matches(&bytes);
    assert_eq!(allocations(), before, "hash64/matches allocated");
    if !bytes.is_empty() {
        let mut other = bytes.to_vec();
        other[0] ^= 1;
        assert!(!key.matches(&other));
        assert!(!key.matches(&bytes[..bytes.len() - 1]));
    }
}

#[derive(FasterKey, FasterValue, Clone, Copy, PartialEq, Debug)]
#[repr(C)]
struct Reading {
    sensor: u32,
    unit: [u8; 4],
    at: u64,
}

#[derive(FasterValue, Clone, Copy, PartialEq, Debug)]
#[repr(C)]
struct Sample {
    reading: Reading,
    value: f64,
    raw: [i16; 4],
}

#[derive(FasterKey, FasterValue, Clone, Copy, PartialEq, Debug)]
#[repr(u16)]
enum Kind {
    A = 3,
    B = 500,
    C,
}

#[derive(FasterKey, FasterValue, Clone, PartialEq, Debug)]
struct Event {
    id: u64,
    kind: Kind,
    urgent: bool,
    payload: Vec<u8>,
    message: String,
    samples: Vec<u32>,
    blob: Box<[u8]>,
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![Just(Kind::A), Just(Kind::B), Just(Kind::C)]
}

fn reading() -> impl Strategy<Value = Reading> {
    (any::<u32>(), any::<[u8; 4]>(), any::<u64>()).prop_map(|(sensor, unit, at)| Reading {
        sensor,
        unit,
        at,
    })
}

fn event() -> impl Strategy<Value = Event> {
    (
        any::<u64>(),
        kind(),
        any::<bool>(),
        proptest::collection::vec(any::<u8>(), 0..64),
        ".{0,24}",
        proptest::collection::vec(any::<u32>(), 0..16),
        proptest::collection::vec(any::<u8>(), 0..8),
    )
        .prop_map(|(id, kind, urgent, payload, message, samples, blob)| Event {
            id,
            kind,
            urgent,
            payload,
            message,
            samples,
            blob: blob.into_boxed_slice(),
        })
}

macro_rules! pod_roundtrips {
    ($($name:ident: $t:ty),*) => {$(
        proptest! {
            #[test]
            fn $name(v in any::<$t>()) {
                check_value(&v, |view| *view);
                check_key(&v);
            }
        }
    )*};
}
pod_roundtrips!(u8_roundtrip: u8, u16_roundtrip: u16, u32_roundtrip: u32, u64_roundtrip: u64,
    i8_roundtrip: i8, i16_roundtrip: i16, i32_roundtrip: i32, i64_roundtrip: i64,
    u8x16_roundtrip: [u8; 16], u64x3_roundtrip: [u64; 3]);

proptest! {
    #[test]
    fn wide_ints_roundtrip(a in any::<u128>(), b in any::<i128>()) {
        check_value(&a, |view| view);
        check_value(&b, |view| view);
        check_key(&a);
        check_key(&b);
    }

    #[test]
    fn floats_roundtrip(a in any::<f32>(), b in any::<f64>(), c in any::<[f64; 2]>()) {
        // Compare bits: NaN != NaN, but its bits must survive.
        let a2 = *f32::view(&a.to_aligned_bytes()).expect("view");
        prop_assert_eq!(a2.to_bits(), a.to_bits());
        let b2 = f64::decode(&b.to_aligned_bytes()).expect("decode");
        prop_assert_eq!(b2.to_bits(), b.to_bits());
        let c2 = *<[f64; 2]>::view(&c.to_aligned_bytes()).expect("view");
        prop_assert_eq!(c2.map(f64::to_bits), c.map(f64::to_bits));
    }

    #[test]
    fn bool_roundtrip(v in any::<bool>()) {
        check_value(&v, |view| view);
        check_key(&v);
    }

    #[test]
    fn byte_strings_roundtrip(bytes in proptest::collection::vec(any::<u8>(), 0..300), text in ".{0,40}") {
        check_value(&bytes, |view| view.to_vec());
        check_key(&bytes);
        check_value(&text, |view| view.to_owned());
        check_key(&text);
        let boxed: Box<[u8]> = bytes.clone().into_boxed_slice();
        check_value(&boxed, |view| view.into());
        check_key(&boxed);
    }

    #[test]
    fn sequences_roundtrip(
        words in proptest::collection::vec(any::<u32>(), 0..50),
        signed in proptest::collection::vec(any::<i64>(), 0..50),
        halves in proptest::collection::vec(any::<u16>(), 0..50),
    ) {
        check_value(&words, |view| view.to_vec());
        check_value(&signed, |view| view.to_vec());
        check_value(&halves, |view| view.to_vec());
    }

    #[test]
    fn derived_fixed_roundtrip(r in reading(), value in any::<f64>().prop_filter("not NaN", |v| !v.is_nan()), raw in any::<[i16; 4]>()) {
        check_value(&r, |view| *view);
        check_key(&r);
        let sample = Sample { reading: r, value, raw };
        check_value(&sample, |view| *view);
        prop_assert_eq!(Sample::FIXED_SIZE, Some(16 + 8 + 8));
    }

    #[test]
    fn derived_enum_roundtrip(k in kind()) {
        check_value(&k, |view| view);
        check_key(&k);
    }

    #[test]
    fn derived_varlen_roundtrip(e in event()) {
        check_value(&e, |view| view.into_owned());
        check_key(&e);
        let bytes = e.to_aligned_bytes();
        let view = Event::view(&bytes).expect("view");
        prop_assert_eq!(view.payload, &e.payload[..]);
        prop_assert_eq!(view.message, e.message.as_str());
        prop_assert_eq!(view.samples.to_vec(), e.samples.clone());
        prop_assert_eq!(view.kind, e.kind);
    }

    /// Any byte string given to a decoder is an error or a value, never a panic.
    #[test]
    fn decoders_survive_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..96)) {
        let aligned = oxifaster::record::AlignedBytes::copy_from(&bytes);
        let _ = Event::view(&aligned);
        let _ = Event::decode(&aligned);
        let _ = Event::decode_key(&aligned);
        let _ = Sample::view(&aligned);
        let _ = Kind::decode(&aligned);
        let _ = String::view(&aligned);
        let _ = <Vec<u32>>::view(&aligned);
        let _ = bool::view(&aligned);
        // Whatever decodes must encode back to the same bytes.
        if let Ok(event) = Event::decode(&aligned) {
            let again = event.to_aligned_bytes();
            prop_assert_eq!(again.as_slice(), &bytes[..]);
        }
    }
}

#[test]
fn truncated_and_corrupt_encodings_are_named_errors() {
    use oxifaster::record::CodecError;
    let e = Event {
        id: 1,
        kind: Kind::B,
        urgent: true,
        payload: vec![1, 2],
        message: "hi".into(),
        samples: vec![7],
        blob: Box::new([]),
    };
    let bytes = e.to_aligned_bytes();
    let mut corrupt = bytes.clone();
    // The `kind` discriminant sits right after `id`.
    corrupt.as_mut_slice()[8..10].copy_from_slice(&9u16.to_le_bytes());
    assert_eq!(
        Event::view(&corrupt).err(),
        Some(CodecError::InvalidDiscriminant { type_name: "Kind", value: 9 })
    );
    let mut corrupt = bytes.clone();
    corrupt.as_mut_slice()[10] = 7; // `urgent`
    assert_eq!(Event::decode(&corrupt).err(), Some(CodecError::InvalidBool { byte: 7 }));
    assert!(matches!(
        Event::view(&bytes[..bytes.len() - 1]),
        Err(CodecError::LengthMismatch { .. })
    ));
    assert!(matches!(Event::view(&bytes[..5]), Err(CodecError::Truncated { .. })));
    let mut corrupt = bytes.clone();
    let message_at = bytes.len() - 2 - 4; // "hi", then one u32 sample, blob empty
    corrupt.as_mut_slice()[message_at] = 0xff;
    assert!(matches!(Event::view(&corrupt), Err(CodecError::InvalidUtf8 { field: "message", .. })));
    // A ragged `Vec<u32>`: move one byte from `payload` to `samples`.
    let mut corrupt = bytes.clone();
    let lengths_at = 8 + 2 + 1;
    corrupt.as_mut_slice()[lengths_at..lengths_at + 4].copy_from_slice(&1u32.to_le_bytes());
    corrupt.as_mut_slice()[lengths_at + 8..lengths_at + 12].copy_from_slice(&5u32.to_le_bytes());
    assert!(matches!(
        Event::view(&corrupt),
        Err(CodecError::RaggedSequence { field: "samples", .. })
    ));
}

#[test]
fn misaligned_views_are_errors() {
    let r = Reading { sensor: 1, unit: *b"degC", at: 2 };
    let mut buf = oxifaster::record::AlignedBytes::zeroed(17);
    buf.as_mut_slice()[1..].copy_from_slice(&r.to_aligned_bytes());
    assert!(matches!(
        Reading::view(&buf[1..]),
        Err(oxifaster::record::CodecError::Misaligned { align: 8, .. })
    ));
    assert_eq!(Reading::decode(&buf[1..]).expect("decode reads unaligned"), r);
}
