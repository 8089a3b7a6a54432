//! The key hash and the layout fingerprints are part of the on-disk format:
//! the hash index stores bits of every key's hash, and checkpoints store the
//! fingerprints of the key and value types. These vectors pin both forever;
//! a change here is a format break and needs a new format version.
//!
//! The hash vectors were computed independently with the reference XXH3
//! implementation (the `xxhash` Python package, `xxh3_64_intdigest`).

use oxifaster::record::{Key, Value, hash_bytes};
use oxifaster::{FasterKey, FasterValue};

#[derive(FasterKey, Clone, Copy)]
#[repr(C)]
struct UserId(u64);

#[test]
fn key_hash_vectors() {
    assert_eq!(0u64.hash64(), 0xc77b3abb6f87acd9);
    assert_eq!(42u64.hash64(), 0xd5a6f8c838df27c8);
    assert_eq!(u64::MAX.hash64(), 0x5111c7e47d784413);
    assert_eq!(7u32.hash64(), 0x57ae44811628c14c);
    assert_eq!(Vec::<u8>::new().hash64(), 0x2d06800538d394c2);
    assert_eq!(String::from("oxifaster").hash64(), 0x6396de7180972f15);
    assert_eq!(b"oxifaster".to_vec().into_boxed_slice().hash64(), 0x6396de7180972f15);
    assert_eq!([1u8; 16].hash64(), 0xa74131e62938d20e);
    assert_eq!(hash_bytes(b"oxifaster"), 0x6396de7180972f15);
    // A derived key hashes its bytes: the same as the u64 it wraps.
    assert_eq!(UserId(42).hash64(), 0xd5a6f8c838df27c8);
}

#[derive(FasterKey, Clone)]
struct Composite {
    tenant: u32,
    name: String,
}

#[test]
fn streaming_hash_of_a_varlen_key_is_the_hash_of_its_encoding() {
    let key = Composite { tenant: 7, name: "oxifaster".into() };
    let mut encoding = 7u32.to_le_bytes().to_vec();
    encoding.extend_from_slice(&9u32.to_le_bytes());
    encoding.extend_from_slice(b"oxifaster");
    assert_eq!(key.key_to_aligned_bytes().as_slice(), &encoding[..]);
    assert_eq!(key.hash64(), hash_bytes(&encoding));
}

mod v1 {
    use super::*;

    #[derive(FasterValue, Clone, Copy)]
    #[repr(C)]
    pub struct Account {
        pub balance: u64,
        pub flags: u32,
        pub region: [u8; 4],
    }

    #[derive(FasterValue, Clone)]
    pub struct Profile {
        pub visits: u64,
        pub name: String,
    }
}

/// `Account` with a field's type changed.
mod changed_type {
    use super::*;
    #[derive(FasterValue, Clone, Copy)]
    #[repr(C)]
    pub struct Account {
        pub balance: i64,
        pub flags: u32,
        pub region: [u8; 4],
    }
}

/// `Account` with two fields swapped.
mod changed_order {
    use super::*;
    #[derive(FasterValue, Clone, Copy)]
    #[repr(C)]
    pub struct Account {
        pub balance: u64,
        pub region: [u8; 4],
        pub flags: u32,
    }
}

/// `Account` with a field's size changed.
mod changed_size {
    use super::*;
    #[derive(FasterValue, Clone, Copy)]
    #[repr(C)]
    pub struct Account {
        pub balance: u64,
        pub flags: u32,
        pub region: [u8; 12],
    }
}

/// `Account` with a field renamed.
mod changed_name {
    use super::*;
    #[derive(FasterValue, Clone, Copy)]
    #[repr(C)]
    pub struct Account {
        pub balance: u64,
        pub options: u32,
        pub region: [u8; 4],
    }
}

/// `Profile` with its tail's type changed.
mod changed_tail {
    use super::*;
    #[derive(FasterValue, Clone)]
    pub struct Profile {
        pub visits: u64,
        pub name: Vec<u8>,
    }
}

#[test]
fn fingerprints_are_pinned() {
    assert_eq!(<u64 as Value>::layout_fingerprint(), FINGERPRINT_U64);
    assert_eq!(<u64 as Key>::key_layout_fingerprint(), FINGERPRINT_U64);
    assert_eq!(<Vec<u8> as Value>::layout_fingerprint(), FINGERPRINT_BYTES);
    assert_eq!(v1::Account::layout_fingerprint(), FINGERPRINT_ACCOUNT);
    assert_eq!(v1::Profile::layout_fingerprint(), FINGERPRINT_PROFILE);
}

const FINGERPRINT_U64: u64 = 0x6cf0521a05938f61;
const FINGERPRINT_BYTES: u64 = 0x3e9da542888354c7;
const FINGERPRINT_ACCOUNT: u64 = 0x87a5d9b10e0b7500;
const FINGERPRINT_PROFILE: u64 = 0xe14cfc089872cf5e;

#[test]
fn fingerprints_change_with_the_layout() {
    let base = v1::Account::layout_fingerprint();
    for (what, other) in [
        ("a field's type", changed_type::Account::layout_fingerprint()),
        ("the field order", changed_order::Account::layout_fingerprint()),
        ("a field's size", changed_size::Account::layout_fingerprint()),
        ("a field's name", changed_name::Account::layout_fingerprint()),
    ] {
        assert_ne!(base, other, "changing {what} kept the fingerprint");
    }
    assert_ne!(v1::Profile::layout_fingerprint(), changed_tail::Profile::layout_fingerprint());
    // Same-sized primitives of different types differ.
    assert_ne!(<u64 as Value>::layout_fingerprint(), <i64 as Value>::layout_fingerprint());
    assert_ne!(<u64 as Value>::layout_fingerprint(), <f64 as Value>::layout_fingerprint());
    assert_ne!(<String as Value>::layout_fingerprint(), <Vec<u8> as Value>::layout_fingerprint());
    assert_ne!(<[u8; 16] as Value>::layout_fingerprint(), <[u8; 8] as Value>::layout_fingerprint());
    // The layout records what a reader needs.
    let layout = v1::Account::layout();
    assert_eq!(layout.size, Some(16));
    assert_eq!(
        layout.to_string(),
        "Account { balance: u64 @0, flags: u32 @8, region: [u8; 4] @12 }"
    );
}
