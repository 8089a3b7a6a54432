//! TCP between nodes and from clients: length-prefixed postcard frames.
//!
//! A connection opens with a [`Hello`] (magic, protocol version, cluster
//! name) that the server answers before anything else; a peer speaking
//! another version or belonging to another cluster is refused with a named
//! reason, and the connection is closed. Then each frame the client sends
//! is answered by one frame. A frame is `u32 length (LE) ‖ postcard bytes`;
//! a length above the configured limit is refused before anything is
//! allocated, and the connection is closed.

use std::collections::BTreeSet;
use std::time::Duration;

use openraft::BasicNode;
use openraft::error::{
    ClientWriteError, InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError,
    Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::types::{NodeId, Request, Response, TypeConfig};
use crate::{Error, Result};

/// The protocol's version: a peer with another one is refused.
pub const PROTOCOL_VERSION: u32 = 1;
const MAGIC: [u8; 8] = *b"OXRAFT\0\0";
/// The default largest frame (bytes).
pub const DEFAULT_MAX_FRAME: usize = 64 << 20;

/// The first frame of a connection.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hello {
    /// `"OXRAFT\0\0"`.
    pub magic: [u8; 8],
    /// The sender's [`PROTOCOL_VERSION`].
    pub version: u32,
    /// The cluster the sender belongs to (or wants to talk to).
    pub cluster: String,
}

/// The answer to a [`Hello`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum HelloReply {
    /// Go on.
    Welcome,
    /// Refused, and why; the connection is closed.
    Refused(String),
}

/// A request on a connection.
#[derive(Debug, Serialize, Deserialize)]
pub enum Message {
    /// Raft: replicate entries (or a heartbeat).
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    /// Raft: ask for a vote.
    Vote(VoteRequest<NodeId>),
    /// Raft: a chunk of a snapshot.
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// Client: apply a command (on the leader), answered once applied.
    Write(Request),
    /// Client: a linearizable read of an encoded key (on the leader).
    Read(Vec<u8>),
    /// Client: this node's own view of a key (no consensus; for checks).
    ReadLocal(Vec<u8>),
    /// Admin: add a learner (waits until it caught up).
    AddLearner {
        /// Its node id.
        id: NodeId,
        /// Its address.
        addr: String,
    },
    /// Admin: make `members` the voters (learners not in it stay learners).
    ChangeMembership {
        /// The new voter set.
        members: BTreeSet<NodeId>,
    },
    /// Admin: the node's Raft state.
    Status,
}

/// A node's Raft state, as [`Message::Status`] reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The node's id.
    pub id: NodeId,
    /// The leader it knows of.
    pub leader: Option<NodeId>,
    /// Its term.
    pub term: u64,
    /// Its last applied log index.
    pub applied: Option<u64>,
    /// Its last log index.
    pub last_log: Option<u64>,
    /// Its last purged log index.
    pub purged: Option<u64>,
    /// Its newest snapshot's last log index.
    pub snapshot: Option<u64>,
    /// The voters of its membership.
    pub voters: BTreeSet<NodeId>,
}

/// What a client asked for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ClientReply {
    /// A command's response.
    Written(Response),
    /// A read's value (encoded), if the key has one.
    Value(Option<Vec<u8>>),
    /// A membership change is done.
    Done,
    /// The node's state.
    Status(Status),
}

/// Why a client request was not served.
#[derive(Debug, Clone, Serialize, Deserialize, thiserror::Error)]
pub enum ClientError {
    /// This node is not the leader; the leader, if known.
    #[error("not the leader (the leader is {leader:?})")]
    NotLeader {
        /// The leader's id and address.
        leader: Option<(NodeId, String)>,
    },
    /// Anything else (the node's reason).
    #[error("{0}")]
    Failed(String),
}

/// An answer on a connection.
#[derive(Debug, Serialize, Deserialize)]
pub enum Reply {
    /// To [`Message::AppendEntries`].
    AppendEntries(std::result::Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    /// To [`Message::Vote`].
    Vote(std::result::Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    /// To [`Message::InstallSnapshot`].
    InstallSnapshot(
        std::result::Result<
            InstallSnapshotResponse<NodeId>,
            RaftError<NodeId, InstallSnapshotError>,
        >,
    ),
    /// To a client's or an admin's message.
    Client(std::result::Result<ClientReply, ClientError>),
}

/// Writes one frame.
pub async fn write_frame<W: AsyncWrite + Unpin, T: Serialize>(
    w: &mut W,
    value: &T,
    max: usize,
) -> Result<()> {
    let bytes = postcard::to_allocvec(value)
        .map_err(|e| Error::Protocol(format!("encoding a frame: {e}")))?;
    if bytes.len() > max {
        return Err(Error::Protocol(format!(
            "a frame of {} bytes; the limit is {max}",
            bytes.len()
        )));
    }
    w.write_all(&(bytes.len() as u32).to_le_bytes())
        .await
        .map_err(|e| Error::io("writing a frame", e))?;
    w.write_all(&bytes).await.map_err(|e| Error::io("writing a frame", e))?;
    w.flush().await.map_err(|e| Error::io("writing a frame", e))
}

/// Reads one frame; `Ok(None)` at a clean end of the stream.
pub async fn read_frame<R: AsyncRead + Unpin, T: DeserializeOwned>(
    r: &mut R,
    max: usize,
) -> Result<Option<T>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(Error::io("reading a frame", e)),
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > max {
        return Err(Error::Protocol(format!("a frame of {len} bytes; the limit is {max}")));
    }
    let mut bytes = vec![0u8; len];
    r.read_exact(&mut bytes).await.map_err(|e| Error::io("reading a frame", e))?;
    postcard::from_bytes(&bytes)
        .map(Some)
        .map_err(|e| Error::Protocol(format!("a frame that does not decode: {e}")))
}

/// Checks a [`Hello`] against this node's cluster.
pub fn check_hello(hello: &Hello, cluster: &str) -> std::result::Result<(), String> {
    if hello.magic != MAGIC {
        return Err("not an oxifaster-raft peer".into());
    }
    if hello.version != PROTOCOL_VERSION {
        return Err(format!(
            "protocol version {} (this node speaks {PROTOCOL_VERSION})",
            hello.version
        ));
    }
    if hello.cluster != cluster {
        return Err(format!("cluster {:?} (this node is in {cluster:?})", hello.cluster));
    }
    Ok(())
}

/// One connection to a node, request after request.
#[derive(Debug)]
pub struct Connection {
    addr: String,
    cluster: String,
    max_frame: usize,
    version: u32,
    stream: Option<TcpStream>,
}

impl Connection {
    /// A connection to `addr` (opened at the first call) in `cluster`.
    pub fn new(addr: impl Into<String>, cluster: impl Into<String>, max_frame: usize) -> Self {
        Self {
            addr: addr.into(),
            cluster: cluster.into(),
            max_frame,
            version: PROTOCOL_VERSION,
            stream: None,
        }
    }

    /// Speaks `version` in its hello instead of this build's (to test a
    /// peer's refusal).
    pub fn with_version(mut self, version: u32) -> Self {
        self.version = version;
        self
    }

    /// The address it connects to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    async fn connect(&mut self) -> Result<&mut TcpStream> {
        if self.stream.is_none() {
            let mut stream = TcpStream::connect(&self.addr)
                .await
                .map_err(|e| Error::io(format!("connecting to {}", self.addr), e))?;
            let _ = stream.set_nodelay(true);
            let hello =
                Hello { magic: MAGIC, version: self.version, cluster: self.cluster.clone() };
            write_frame(&mut stream, &hello, self.max_frame).await?;
            match read_frame::<_, HelloReply>(&mut stream, self.max_frame).await? {
                Some(HelloReply::Welcome) => {}
                Some(HelloReply::Refused(why)) => {
                    return Err(Error::Protocol(format!("{} refused us: {why}", self.addr)));
                }
                None => {
                    return Err(Error::Protocol(format!("{} closed the connection", self.addr)));
                }
            }
            self.stream = Some(stream);
        }
        // Set just above.
        self.stream.as_mut().ok_or_else(|| Error::Protocol("no connection".into()))
    }

    /// Sends `message` and waits for its reply (at most `timeout`). Any
    /// failure closes the connection (the next call opens a new one).
    pub async fn call(&mut self, message: &Message, timeout: Duration) -> Result<Reply> {
        let max = self.max_frame;
        let exchange = async {
            let stream = self.connect().await?;
            write_frame(stream, message, max).await?;
            read_frame::<_, Reply>(stream, max)
                .await?
                .ok_or_else(|| Error::Protocol("the peer closed the connection".into()))
        };
        let result = match tokio::time::timeout(timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(Error::io(
                format!("calling {}", self.addr),
                std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no reply in {timeout:?}"),
                ),
            )),
        };
        if result.is_err() {
            self.stream = None;
        }
        result
    }
}

/// Makes a [`Connection`] per peer for openraft.
#[derive(Debug, Clone)]
pub struct Network {
    /// The cluster's name (in every hello).
    pub cluster: String,
    /// The largest frame.
    pub max_frame: usize,
}

/// A peer, for openraft.
#[derive(Debug)]
pub struct Peer {
    target: NodeId,
    conn: Connection,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Peer {
        Peer { target, conn: Connection::new(node.addr.clone(), &self.cluster, self.max_frame) }
    }
}

type RpcErr<E = openraft::error::Infallible> = RPCError<NodeId, BasicNode, RaftError<NodeId, E>>;

impl Peer {
    async fn call<E: std::error::Error>(
        &mut self,
        message: Message,
        option: &RPCOption,
    ) -> std::result::Result<Reply, RpcErr<E>> {
        self.conn.call(&message, option.hard_ttl()).await.map_err(|e| match e {
            Error::Io { .. } => RPCError::Unreachable(Unreachable::new(&e)),
            e => RPCError::Network(NetworkError::new(&e)),
        })
    }

    fn unexpected<E: std::error::Error>(&self, reply: &Reply) -> RpcErr<E> {
        let e = Error::Protocol(format!("node {} answered with {reply:?}", self.target));
        RPCError::Network(NetworkError::new(&e))
    }
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> std::result::Result<AppendEntriesResponse<NodeId>, RpcErr> {
        match self.call(Message::AppendEntries(rpc), &option).await? {
            Reply::AppendEntries(Ok(r)) => Ok(r),
            Reply::AppendEntries(Err(e)) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            other => Err(self.unexpected(&other)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> std::result::Result<InstallSnapshotResponse<NodeId>, RpcErr<InstallSnapshotError>> {
        match self.call(Message::InstallSnapshot(rpc), &option).await? {
            Reply::InstallSnapshot(Ok(r)) => Ok(r),
            Reply::InstallSnapshot(Err(e)) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            other => Err(self.unexpected(&other)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> std::result::Result<VoteResponse<NodeId>, RpcErr> {
        match self.call(Message::Vote(rpc), &option).await? {
            Reply::Vote(Ok(r)) => Ok(r),
            Reply::Vote(Err(e)) => Err(RPCError::RemoteError(RemoteError::new(self.target, e))),
            other => Err(self.unexpected(&other)),
        }
    }
}

/// The leader a client-write error names, if it names one.
pub(crate) fn not_leader(
    e: &RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>,
) -> Option<ClientError> {
    e.forward_to_leader::<BasicNode>().map(|f| ClientError::NotLeader {
        leader: f.leader_id.zip(f.leader_node.as_ref().map(|n| n.addr.clone())),
    })
}
