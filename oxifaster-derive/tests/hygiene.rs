//! The derives' output is hygienic: it works where the prelude is gone
//! (`#![no_implicit_prelude]`) and where the engine crate has another name
//! (`#[faster(crate = "...")]`). Here the engine is only reachable as
//! `renamed_faster`, so any stray `::oxifaster::` path would fail to compile.

#![no_implicit_prelude]

mod user_types {
    #![no_implicit_prelude]

    use ::renamed_faster::{FasterKey, FasterValue};

    #[derive(FasterKey, FasterValue, Clone, Copy, Debug, PartialEq)]
    #[faster(crate = "::renamed_faster")]
    #[repr(C)]
    pub struct Point {
        #[faster(merge = "sum")]
        pub x: u64,
        #[faster(merge = "max")]
        pub y: u64,
    }

    #[derive(FasterKey, FasterValue, Clone, Debug, PartialEq)]
    #[faster(crate = "::renamed_faster")]
    pub struct Named {
        #[faster(merge = "sum")]
        pub count: u32,
        pub flag: bool,
        pub name: ::std::string::String,
        pub data: ::std::vec::Vec<u16>,
    }

    #[derive(FasterKey, FasterValue, Clone, Copy, Debug, PartialEq)]
    #[faster(crate = "::renamed_faster")]
    #[repr(u8)]
    pub enum Mode {
        Read,
        Write,
    }

    fn keep(stored: &mut Wrapped, input: &Wrapped) {
        stored.0 = stored.0.wrapping_add(input.0);
    }

    #[derive(FasterValue, Clone, Copy, Debug, PartialEq)]
    #[faster(crate = "::renamed_faster", merge_with = "keep")]
    #[repr(C)]
    pub struct Wrapped(pub u64);
}

use ::renamed_faster::record::{Key, Merge, Value};
use ::std::assert_eq;
use ::std::result::Result::Ok;
use user_types::{Mode, Named, Point, Wrapped};

#[test]
fn derives_work_without_prelude_and_with_a_renamed_crate() {
    let p = Point { x: 1, y: 2 };
    assert_eq!(*Point::view(&p.to_aligned_bytes()).expect("view"), p);
    assert_eq!(Point::decode_key(&p.key_to_aligned_bytes()), Ok(p));
    assert_eq!(Point::copy_update(&p, &Point { x: 1, y: 1 }), Point { x: 2, y: 2 });

    let n = Named {
        count: 1,
        flag: true,
        name: ::std::borrow::ToOwned::to_owned("n"),
        data: ::std::vec![1, 2],
    };
    let bytes = n.to_aligned_bytes();
    assert_eq!(Named::view(&bytes).expect("view").into_owned(), ::std::clone::Clone::clone(&n));
    assert_eq!(Named::copy_update(Named::view(&bytes).expect("view"), &n).count, 2);
    assert_eq!(n.hash64(), ::renamed_faster::record::hash_bytes(&n.key_to_aligned_bytes()));

    assert_eq!(Mode::decode(&Mode::Write.to_aligned_bytes()), Ok(Mode::Write));
    assert_eq!(Wrapped::copy_update(&Wrapped(1), &Wrapped(2)), Wrapped(3));
}
