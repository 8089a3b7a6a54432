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
//! | `epoch` (internal) | epoch protection, bump-with-action, drain list |
//! | [`device`] | file, io_uring, memory and null devices |
//! | `hlog` (internal) | the hybrid log: page ring, tail, regions, flush, eviction |
//! | [`record`] | the `Key`/`Value`/`Merge` traits and codecs |
//! | `index` (internal) | the latch-free hash index |
//! | [`store`] | `Store<K, V>`, sessions, pending I/O, the async API |
//! | [`checkpoint`] | CPR checkpoints, recovery, session commit points |
//! | [`log`] | `FasterLog`: a durable, concurrent append-only log |

//!
//! # Features
//!
//! - `tokio`: the async API (`read_async`, `rmw_async`, `checkpoint_async`,
//!   FasterLog's commit futures) on tokio.
//! - `io_uring` (Linux): the io_uring device.
//! - `testing`: test doubles (fault-injecting devices and checkpoint I/O),
//!   fuzz entry points and the engine's internals, for this project's own
//!   tests. Not for applications: nothing under it is a stable API, and
//!   its internals can break the store's invariants.
//!
//! # Platform
//!
//! Linux (x86-64, aarch64) is what is built and tested. The file device
//! uses positional I/O and `flock`, and builds on other Unix systems; the
//! io_uring device and huge pages are Linux-only. Big-endian targets are
//! refused at compile time.

#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(target_endian = "big")]
compile_error!(
    "oxifaster stores records in little-endian byte order and supports little-endian targets only"
);

/// Declares an engine-internal module: crate-private, or public (hidden
/// from the docs) under the `testing` feature, for the project's own
/// tests, benches and fuzz targets. Nothing here is reachable from a
/// normal build's safe code (`tests/ui_internals` checks it).
macro_rules! internal_mod {
    ($(#[$meta:meta])* mod $name:ident;) => {
        #[cfg(feature = "testing")]
        #[doc(hidden)]
        $(#[$meta])*
        pub mod $name;
        #[cfg(not(feature = "testing"))]
        $(#[$meta])*
        #[allow(dead_code, unreachable_pub)]
        pub(crate) mod $name;
    };
}

pub mod address;
pub mod checkpoint;
pub mod compaction;
pub mod config;
mod cpr;
pub mod device;
internal_mod!(
    mod epoch;
);
mod error;
pub mod f2;
#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod fuzzing;
internal_mod!(
    mod hlog;
);
internal_mod!(
    mod index;
);
mod lock;
pub mod log;
mod mem;
mod readcache;
pub mod record;
pub mod scan;
pub mod stats;
pub mod store;
internal_mod!(
    mod sync;
);

pub use config::{StoreBuilder, StoreConfig};
pub use error::{ConfigError, Error, Result};
pub use oxifaster_derive::{FasterKey, FasterValue};
pub use record::{Key, KeyArg, Merge, Value, ValueArg};
pub use stats::Stats;
pub use store::{CloseReport, CompactionTotals, FasterKv, IndexStats, LogRegions, Session, Store};

// A store is shared across threads; a session moves to one.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    const fn send<T: Send + 'static>() {}
    send_sync::<Store<u64, u64>>();
    send_sync::<Store<Vec<u8>, String, device::MemoryDevice>>();
    send::<Session<u64, u64, device::FileDevice>>();
    send::<Session<String, Vec<u8>, device::NullDevice>>();
    send_sync::<log::FasterLog>();
};

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

    /// What a `merge` attribute on a `#[derive(FasterKey)]` type asks of
    /// it: to be a value too (keys are never merged).
    #[diagnostic::on_unimplemented(
        message = "a `merge` attribute applies to values, and `{Self}` does not derive `FasterValue`",
        label = "merge attribute on a key-only type",
        note = "keys are never merged: derive `FasterValue` on `{Self}` too, or remove the attribute"
    )]
    pub trait MergeNeedsValue {}
    impl<T: crate::Value> MergeNeedsValue for T {}
}
