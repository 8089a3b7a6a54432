use oxifaster::record::Key;
use oxifaster::FasterKey;

#[derive(FasterKey, Clone, PartialEq, Debug)]
struct Path {
    name: String,
    parts: Vec<u32>,
    raw: Box<[u8]>,
}

fn main() {
    let p = Path { name: "a".into(), parts: vec![1, 2], raw: Box::new([7]) };
    let bytes = p.key_to_aligned_bytes();
    assert_eq!(Path::decode_key(bytes.as_slice()).unwrap(), p);
}
