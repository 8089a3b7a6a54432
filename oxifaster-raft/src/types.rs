//! The Raft type configuration and the replicated commands.

use serde::{Deserialize, Serialize};

openraft::declare_raft_types!(
    /// The Raft types of a replicated store: commands and responses of
    /// this crate, `u64` node ids, nodes known by their address, snapshots
    /// as files (archives of store checkpoints, see `archive`).
    pub TypeConfig:
        D = Proposal,
        R = Responses,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = tokio::fs::File,
        AsyncRuntime = openraft::TokioRuntime,
);

/// A node's id.
pub type NodeId = u64;
/// A Raft log id of this configuration.
pub type LogId = openraft::LogId<NodeId>;
/// A Raft log entry of this configuration.
pub type Entry = openraft::Entry<TypeConfig>;
/// A storage error of this configuration.
pub type StorageError = openraft::StorageError<NodeId>;
/// A membership as the state machine stores it.
pub type StoredMembership = openraft::StoredMembership<NodeId, openraft::BasicNode>;
/// A snapshot's metadata.
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, openraft::BasicNode>;

/// One operation on the replicated store. Keys and values travel in the
/// store's own encodings (`Key::encode_key`, `Value::encode`), so that the
/// Raft types do not depend on the store's key and value types; the state
/// machine decodes them (a command that does not decode is answered with
/// [`Response::Invalid`], on every node alike).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Inserts or replaces the key's value.
    Upsert {
        /// The encoded key.
        key: Vec<u8>,
        /// The encoded value.
        value: Vec<u8>,
    },
    /// Merges `input` into the key's value (the value type's `Merge`).
    Rmw {
        /// The encoded key.
        key: Vec<u8>,
        /// The encoded input.
        input: Vec<u8>,
    },
    /// Deletes the key.
    Delete {
        /// The encoded key.
        key: Vec<u8>,
    },
    /// Stores the value if the key has none.
    InsertIfAbsent {
        /// The encoded key.
        key: Vec<u8>,
        /// The encoded value.
        value: Vec<u8>,
    },
    /// Replaces the value if it is exactly `expected`.
    CompareAndSwap {
        /// The encoded key.
        key: Vec<u8>,
        /// The encoded value expected.
        expected: Vec<u8>,
        /// The encoded new value.
        new: Vec<u8>,
    },
}

/// A command from a client. `client` and `serial` make retries safe: the
/// state machine applies a client's command only if its serial is above
/// the last one it applied for that client, and answers a retry of the
/// last one with the response it gave the first time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// The client's id (unique among the cluster's clients).
    pub client: u64,
    /// The command's serial number in the client (increasing, from 1).
    pub serial: u64,
    /// What to do.
    pub command: Command,
}

/// One Raft entry's commands: the requests a node gathered while its
/// previous proposal was being replicated (group commit across clients),
/// applied in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal(pub Vec<Request>);

/// The responses to a [`Proposal`]'s requests, in their order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Responses(pub Vec<Response>);

/// What a command did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// An upsert, RMW or delete was applied.
    Applied,
    /// A conditional command: whether its condition held (and it wrote).
    Conditional {
        /// True if the value was stored (insert-if-absent of an absent key,
        /// compare-and-swap of the expected value).
        written: bool,
    },
    /// A serial at or below one already applied for the client, other than
    /// the last: the command was applied before, and its response is no
    /// longer kept.
    Stale {
        /// The last serial applied for the client.
        last: u64,
    },
    /// The command's key or value does not decode as the store's types, or
    /// the store refused it (the reason): nothing was written.
    Invalid(String),
}
