//! Configuration and opening: [`StoreBuilder`] and the policies it starts
//! beside an open store. This is the top layer: it calls the store and the
//! checkpoint layer (recovery, the automatic and the final checkpoint),
//! and nothing below calls it.

mod auto;
mod builder;
#[cfg(feature = "serde")]
mod file;

pub use crate::store::{DEFAULT_CHECKPOINT_INTERVAL, StoreConfig};
pub use builder::StoreBuilder;
#[cfg(feature = "serde")]
pub use file::parse_size;
