//! Variable-length values: every tail type, named and tuple structs.
use oxifaster::record::{Merge, Value};
use oxifaster::FasterValue;

#[derive(FasterValue, Clone, PartialEq, Debug)]
struct Document {
    #[faster(merge = "sum")]
    version: u32,
    deleted: bool,
    title: String,
    body: Vec<u8>,
    scores: Vec<u32>,
    blob: Box<[u8]>,
}

#[derive(FasterValue, Clone, PartialEq, Debug)]
struct Pair(u64, String);

fn main() {
    let doc = Document {
        version: 1,
        deleted: false,
        title: "hello".into(),
        body: vec![1, 2, 3],
        scores: vec![10, 20],
        blob: vec![9u8; 4].into_boxed_slice(),
    };
    let bytes = doc.to_aligned_bytes();
    let view: DocumentRef<'_> = Document::view(&bytes).unwrap();
    assert_eq!(view.title, "hello");
    assert_eq!(view.body, &[1, 2, 3]);
    assert_eq!(view.scores.to_vec(), vec![10, 20]);
    assert_eq!(view.blob, &[9, 9, 9, 9]);
    assert_eq!(view.into_owned(), doc);
    let merged = Document::copy_update(Document::view(&bytes).unwrap(), &doc);
    assert_eq!(merged.version, 2);

    let pair = Pair(3, "three".into());
    let bytes = pair.to_aligned_bytes();
    let PairRef(n, s) = Pair::view(&bytes).unwrap();
    assert_eq!((n, s), (3, "three"));
    assert_eq!(Pair::decode(&bytes).unwrap(), pair);
}
