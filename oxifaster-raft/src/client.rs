//! A typed client of a replicated store.
//!
//! A client has an id (unique among the cluster's clients) and numbers its
//! commands; it sends one at a time, to the leader it knows of, and retries
//! a command with the same serial on the next node when a node fails,
//! times out or names another leader, so that a command is applied exactly
//! once however often it is sent (the state machine's client table).

use std::collections::BTreeSet;
use std::marker::PhantomData;
use std::time::{Duration, Instant};

use oxifaster::{Key, Value};

use crate::network::{ClientError, ClientReply, Connection, Message, Reply, Status};
use crate::node::{key_bytes, value_bytes};
use crate::types::{Command, NodeId, Request, Response};
use crate::{Error, Result};

/// A client of the cluster at `addrs`.
#[derive(Debug)]
pub struct Client<K, V> {
    id: u64,
    serial: u64,
    conns: Vec<Connection>,
    /// Where the next request goes.
    target: usize,
    /// Per attempt.
    timeout: Duration,
    /// For a whole command, retries included.
    deadline: Duration,
    _types: PhantomData<fn(K, V)>,
}

impl<K: Key, V: Value> Client<K, V> {
    /// A client with id `id` of the cluster `cluster` whose nodes listen at
    /// `addrs`.
    pub fn new(id: u64, cluster: &str, addrs: &[String]) -> Self {
        let conns = addrs
            .iter()
            .map(|a| Connection::new(a.clone(), cluster, crate::network::DEFAULT_MAX_FRAME))
            .collect();
        Self {
            id,
            serial: 0,
            conns,
            target: 0,
            timeout: Duration::from_secs(2),
            deadline: Duration::from_secs(30),
            _types: PhantomData,
        }
    }

    /// Gives up on a command after `deadline` of retries (default 30 s).
    pub fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// The client's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The serial of the last command sent.
    pub fn serial(&self) -> u64 {
        self.serial
    }

    /// Sends `message` to the leader until a node answers it, following
    /// redirects, for at most the deadline.
    async fn leader_call(&mut self, message: &Message) -> Result<ClientReply> {
        let start = Instant::now();
        let mut last_error = String::from("no node answered");
        while start.elapsed() < self.deadline {
            let target = self.target % self.conns.len();
            let reply = self.conns[target].call(message, self.timeout).await;
            match reply {
                Ok(Reply::Client(Ok(reply))) => return Ok(reply),
                Ok(Reply::Client(Err(ClientError::NotLeader { leader: Some((_, addr)) }))) => {
                    match self.conns.iter().position(|c| c.addr() == addr) {
                        Some(i) if i != target => self.target = i,
                        _ => {
                            self.target += 1;
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                    last_error = format!("redirected to {addr}");
                    continue;
                }
                Ok(Reply::Client(Err(e))) => last_error = e.to_string(),
                Ok(other) => last_error = format!("an unexpected reply {other:?}"),
                Err(e @ Error::Protocol(_)) if e.to_string().contains("refused") => return Err(e),
                Err(e) => last_error = e.to_string(),
            }
            self.target += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(Error::Raft(format!("gave up after {:?}: {last_error}", self.deadline)))
    }

    /// Applies `command` (exactly once) and returns its response.
    pub async fn write(&mut self, command: Command) -> Result<Response> {
        self.serial += 1;
        let message = Message::Write(Request { client: self.id, serial: self.serial, command });
        match self.leader_call(&message).await? {
            ClientReply::Written(response) => Ok(response),
            other => Err(Error::Protocol(format!("a write answered with {other:?}"))),
        }
    }

    /// Inserts or replaces `key`'s value.
    pub async fn upsert(&mut self, key: &K, value: &V) -> Result<Response> {
        self.write(Command::Upsert { key: key_bytes(key)?, value: value_bytes(value) }).await
    }

    /// Merges `input` into `key`'s value.
    pub async fn rmw(&mut self, key: &K, input: &V) -> Result<Response> {
        self.write(Command::Rmw { key: key_bytes(key)?, input: value_bytes(input) }).await
    }

    /// Deletes `key`.
    pub async fn delete(&mut self, key: &K) -> Result<Response> {
        self.write(Command::Delete { key: key_bytes(key)? }).await
    }

    /// Replaces `key`'s value with `new` if it is `expected`: whether it
    /// did.
    pub async fn compare_and_swap(&mut self, key: &K, expected: &V, new: &V) -> Result<bool> {
        let command = Command::CompareAndSwap {
            key: key_bytes(key)?,
            expected: value_bytes(expected),
            new: value_bytes(new),
        };
        match self.write(command).await? {
            Response::Conditional { written } => Ok(written),
            other => Err(Error::Protocol(format!("a compare-and-swap answered {other:?}"))),
        }
    }

    /// A linearizable read of `key` (served by the leader once it has
    /// confirmed its leadership and applied everything committed before).
    pub async fn read(&mut self, key: &K) -> Result<Option<V>> {
        let message = Message::Read(key_bytes(key)?);
        match self.leader_call(&message).await? {
            ClientReply::Value(value) => decode_value(value),
            other => Err(Error::Protocol(format!("a read answered with {other:?}"))),
        }
    }

    /// Node `node`'s own value of `key` (no consensus).
    pub async fn read_local(&mut self, node: usize, key: &K) -> Result<Option<V>> {
        let message = Message::ReadLocal(key_bytes(key)?);
        match self.conns[node].call(&message, self.timeout).await? {
            Reply::Client(Ok(ClientReply::Value(value))) => decode_value(value),
            other => Err(Error::Protocol(format!("a local read answered with {other:?}"))),
        }
    }

    /// Node `node`'s Raft state.
    pub async fn status(&mut self, node: usize) -> Result<Status> {
        match self.conns[node].call(&Message::Status, self.timeout).await? {
            Reply::Client(Ok(ClientReply::Status(status))) => Ok(status),
            other => Err(Error::Protocol(format!("a status answered with {other:?}"))),
        }
    }

    /// Adds node `id` at `addr` as a learner (returns once it caught up).
    pub async fn add_learner(&mut self, id: NodeId, addr: &str) -> Result<()> {
        let message = Message::AddLearner { id, addr: addr.into() };
        self.leader_call(&message).await.map(|_| ())
    }

    /// Makes `members` the voters.
    pub async fn change_membership(&mut self, members: BTreeSet<NodeId>) -> Result<()> {
        self.leader_call(&Message::ChangeMembership { members }).await.map(|_| ())
    }
}

/// A value a node sent (the store's encoding of `V`), if any.
fn decode_value<V: Value>(value: Option<Vec<u8>>) -> Result<Option<V>> {
    value
        .map(|b| V::decode(&b))
        .transpose()
        .map_err(|e| Error::Corrupt { what: "a value read".into(), why: e.to_string() })
}
