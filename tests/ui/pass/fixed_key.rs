use oxifaster::record::Key;
use oxifaster::FasterKey;

#[derive(FasterKey, Clone, Copy, PartialEq, Debug)]
#[repr(C)]
struct Region {
    id: u32,
    shard: u16,
    zone: [u8; 2],
}

#[derive(FasterKey, Clone, Copy, PartialEq, Debug)]
#[repr(C)]
struct OrderKey {
    region: Region,
    order: u64,
}

fn main() {
    let key = OrderKey { region: Region { id: 7, shard: 2, zone: *b"eu" }, order: 99 };
    assert_eq!(key.key_size(), 16);
    let bytes = key.key_to_aligned_bytes();
    assert_eq!(OrderKey::decode_key(&bytes).unwrap(), key);
    assert!(key.matches(&bytes));
    assert_eq!(key.hash64(), oxifaster::record::hash_bytes(&bytes));
}
