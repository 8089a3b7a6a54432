//! oxifaster: a typed, embedded, concurrent key-value store and log engine
//! in the FASTER family.
//!
//! Users describe their keys and values as ordinary Rust structs and derive
//! the storage traits:
//!
//! ```
//! use oxifaster::{FasterKey, FasterValue};
//! use oxifaster::record::{Key, Merge, Value};
//!
//! #[derive(FasterKey, Clone, Copy, PartialEq, Debug)]
//! #[repr(C)]
//! struct UserId(u64);
//!
//! #[derive(FasterValue, Clone, PartialEq, Debug)]
//! struct Profile {
//!     #[faster(merge = "sum")]
//!     visits: u64,
//!     #[faster(merge = "max")]
//!     last_seen: u64,
//!     name: String,
//! }
//!
//! let stored = Profile { visits: 1, last_seen: 10, name: "ada".into() };
//! let bytes = stored.to_aligned_bytes();
//! let view = Profile::view(bytes.as_slice()).unwrap(); // zero-copy
//! assert_eq!(view.name, "ada");
//!
//! let update = Profile { visits: 2, last_seen: 7, name: "ada".into() };
//! let merged = Profile::copy_update(view, &update);
//! assert_eq!((merged.visits, merged.last_seen), (3, 10));
//! assert_ne!(UserId(1).hash64(), UserId(2).hash64());
//! ```
//!
//! The crate is organised in layers, each calling only the ones below it
//! (see `docs/FORMAT.md` for every byte written):
//!
//! | module | owns |
//! |---|---|
//! | [`address`] | 48-bit log addresses |
//! | [`epoch`] | epoch protection, bump-with-action, drain list |
//! | [`device`] | file, io_uring, memory and null devices |
//! | [`hlog`] | the hybrid log: page ring, tail, regions, flush, eviction |
//! | [`record`] | the `Key`/`Value`/`Merge` traits and codecs |
//! | [`index`] | the latch-free hash index |
//! | [`store`] | `Store<K, V>`, sessions, pending I/O, the async API |
//! | [`checkpoint`] | CPR checkpoints, recovery, session commit points |
//! | [`log`] | `FasterLog`: a durable, concurrent append-only log |

#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(target_endian = "big")]
compile_error!(
    "oxifaster stores records in little-endian byte order and supports little-endian targets only"
);

pub mod address;
pub mod checkpoint;
pub mod device;
pub mod epoch;
mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod hlog;
pub mod index;
mod lock;
pub mod log;
mod mem;
pub mod record;
pub mod store;
#[doc(hidden)]
pub mod sync;

pub use error::{Error, Result};
pub use oxifaster_derive::{FasterKey, FasterValue};
pub use record::{Key, Merge, Value};
pub use store::{FasterKv, Session, Store, StoreBuilder, StoreConfig};

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

/// Implementation details used by the code that `#[derive(FasterKey)]` and
/// `#[derive(FasterValue)]` generate. Not a public API: anything here may
/// change in any release.
#[doc(hidden)]
pub mod __private {
    pub use crate::record::pod;
    pub use crate::record::varlen;
    pub use ::core;
    pub use ::std::{borrow::ToOwned, boxed::Box, string::String, vec, vec::Vec};
}
