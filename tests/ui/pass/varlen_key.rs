use oxifaster::record::Key;
use oxifaster::FasterKey;

#[derive(FasterKey, Clone, PartialEq, Debug)]
struct PathKey {
    tenant: u32,
    path: String,
    parts: Vec<u16>,
}

fn main() {
    let key = PathKey { tenant: 1, path: "/a/b".into(), parts: vec![1, 2] };
    let bytes = key.key_to_aligned_bytes();
    assert!(key.matches(&bytes));
    assert!(!PathKey { tenant: 2, ..key.clone() }.matches(&bytes));
    assert_eq!(key.hash64(), oxifaster::record::hash_bytes(&bytes));
    assert_eq!(PathKey::decode_key(&bytes).unwrap(), key);
}
