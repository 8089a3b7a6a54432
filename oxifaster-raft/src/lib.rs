//! A replicated oxifaster store: [openraft] drives Raft, a [`FasterLog`]
//! holds the Raft log ([`LogStore`]) and a typed [`Store<K,
//! V>`](oxifaster::Store) is the state machine ([`StateMachine`]),
//! snapshotted by its checkpoints.
//!
//! [`FasterLog`]: oxifaster::log::FasterLog
//!
#![doc = include_str!("../README.md")]
// openraft's storage traits return its `StorageError` (224 bytes); the
// helpers behind them return the same rather than convert at every call.
#![allow(clippy::result_large_err)]

pub mod archive;
pub mod client;
mod error;
pub mod linearizability;
pub mod log_store;
pub mod network;
pub mod node;
pub mod state_machine;
pub mod types;

pub use client::Client;
pub use error::{Error, Result};
pub use log_store::LogStore;
pub use node::{Node, NodeConfig};
pub use state_machine::StateMachine;
pub use types::{Command, Request, Response, TypeConfig};
