//! A node: the Raft log, the state machine, openraft and the TCP server.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use openraft::{BasicNode, Raft, SnapshotPolicy};
use oxifaster::{Key, Merge, Value};
use tokio::net::{TcpListener, TcpStream};

use crate::network::{
    ClientError, ClientReply, Hello, HelloReply, Message, Network, Reply, Status, check_hello,
    not_leader, read_frame, write_frame,
};
use crate::state_machine::{Configure, Reader};
use crate::types::{NodeId, Proposal, Request, Response, TypeConfig};
use crate::{Error, LogStore, Result, StateMachine};

/// How to run a node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The node's id (unique in the cluster, not 0).
    pub id: NodeId,
    /// The address to listen on (`127.0.0.1:0` picks a port).
    pub listen: String,
    /// The node's data directory (the Raft log in `log/`, the state
    /// machine in `sm/`, the node's identity in `IDENTITY`).
    pub dir: PathBuf,
    /// The cluster's name: a directory or peer of another cluster is
    /// refused.
    pub cluster: String,
    /// The largest network frame (bytes).
    pub max_frame: usize,
    /// A snapshot after this many log entries since the last one.
    pub snapshot_every: u64,
    /// Log entries kept below the newest snapshot (0: purge them all).
    pub keep_logs: u64,
    /// The leader's heartbeat interval.
    pub heartbeat: Duration,
    /// The election timeout's range.
    pub election: (Duration, Duration),
}

impl NodeConfig {
    /// A node `id` in `dir`, listening on `listen`, with the defaults: cluster
    /// "oxifaster", 64 MiB frames, a snapshot every 10,000 entries keeping
    /// 1,000 below it, heartbeats every 100 ms, elections after 300–600 ms.
    pub fn new(id: NodeId, listen: impl Into<String>, dir: impl Into<PathBuf>) -> Self {
        Self {
            id,
            listen: listen.into(),
            dir: dir.into(),
            cluster: "oxifaster".into(),
            max_frame: crate::network::DEFAULT_MAX_FRAME,
            snapshot_every: 10_000,
            keep_logs: 1_000,
            heartbeat: Duration::from_millis(100),
            election: (Duration::from_millis(300), Duration::from_millis(600)),
        }
    }
}

/// A running node.
pub struct Node<K: Key, V: Value> {
    id: NodeId,
    raft: Raft<TypeConfig>,
    reader: Reader<K, V>,
    addr: SocketAddr,
    server: tokio::task::JoinHandle<()>,
    batcher: tokio::task::JoinHandle<()>,
}

/// A client's write waiting for the batcher, and where its answer goes.
type Pending = (Request, tokio::sync::oneshot::Sender<std::result::Result<Response, ClientError>>);

/// The most requests, and about the most bytes of keys and values, in one
/// proposal.
const MAX_BATCH: usize = 4096;
const MAX_BATCH_BYTES: usize = 1 << 20;

/// Proposes the waiting client writes: all that queued while the previous
/// proposal was replicated go in the next one (one Raft entry, one log
/// sync per node for all of them).
async fn batcher(raft: Raft<TypeConfig>, mut queue: tokio::sync::mpsc::Receiver<Pending>) {
    while let Some(first) = queue.recv().await {
        let mut bytes = request_bytes(&first.0);
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
            match queue.try_recv() {
                Ok(next) => {
                    bytes += request_bytes(&next.0);
                    batch.push(next);
                }
                Err(_) => break,
            }
        }
        let (requests, answers): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        match raft.client_write(Proposal(requests)).await {
            Ok(written) => {
                for (answer, response) in answers.into_iter().zip(written.data.0) {
                    let _ = answer.send(Ok(response));
                }
            }
            Err(e) => {
                let error = not_leader(&e).unwrap_or(ClientError::Failed(e.to_string()));
                for answer in answers {
                    let _ = answer.send(Err(error.clone()));
                }
            }
        }
    }
}

fn request_bytes(request: &Request) -> usize {
    use crate::types::Command::*;
    32 + match &request.command {
        Upsert { key, value } | InsertIfAbsent { key, value } => key.len() + value.len(),
        Rmw { key, input } => key.len() + input.len(),
        Delete { key } => key.len(),
        CompareAndSwap { key, expected, new } => key.len() + expected.len() + new.len(),
    }
}

impl<K: Key, V: Value> std::fmt::Debug for Node<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.id)
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// Checks (or, in a new directory, writes) the directory's identity.
fn check_identity(dir: &Path, cluster: &str, id: NodeId) -> Result<()> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let path = dir.join("IDENTITY");
    let expected = format!("cluster={cluster}\nnode={id}\n");
    match std::fs::read_to_string(&path) {
        Ok(found) if found == expected => Ok(()),
        Ok(found) => Err(Error::WrongIdentity {
            dir: dir.display().to_string(),
            found: found.trim().replace('\n', ", "),
            expected: expected.trim().replace('\n', ", "),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if std::fs::read_dir(dir).map(|mut d| d.next().is_some()).unwrap_or(false) {
                return Err(Error::WrongIdentity {
                    dir: dir.display().to_string(),
                    found: "files of something else (no IDENTITY)".into(),
                    expected: expected.trim().replace('\n', ", "),
                });
            }
            crate::state_machine::write_atomic(&path, expected.as_bytes())
        }
        Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
    }
}

impl<K: Key, V: Value + Merge + Clone> Node<K, V> {
    /// Starts a node (its store configured by `configure`): recovers its
    /// log and state machine, joins Raft and serves peers and clients.
    pub async fn start(config: NodeConfig, configure: Configure<K, V>) -> Result<Self> {
        check_identity(&config.dir, &config.cluster, config.id)?;
        let log = LogStore::open(config.dir.join("log"))?;
        let sm = StateMachine::open_with(config.dir.join("sm"), configure)?;
        log.limit_purges(sm.durable_snapshot());
        let reader = sm.reader();
        let raft_config = openraft::Config {
            cluster_name: config.cluster.clone(),
            heartbeat_interval: config.heartbeat.as_millis() as u64,
            election_timeout_min: config.election.0.as_millis() as u64,
            election_timeout_max: config.election.1.as_millis() as u64,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_every),
            max_in_snapshot_log_to_keep: config.keep_logs,
            // A chunk and its frame's envelope fit in a frame.
            snapshot_max_chunk_size: (config.max_frame / 2) as u64,
            ..Default::default()
        }
        .validate()
        .map_err(|e| Error::Raft(e.to_string()))?;
        let network = Network { cluster: config.cluster.clone(), max_frame: config.max_frame };
        let raft = Raft::new(config.id, Arc::new(raft_config), network, log, sm)
            .await
            .map_err(|e| Error::Raft(e.to_string()))?;
        let listener = TcpListener::bind(&config.listen)
            .await
            .map_err(|e| Error::io(format!("listening on {}", config.listen), e))?;
        let addr = listener.local_addr().map_err(|e| Error::io("the bound address", e))?;
        let (writes, queue) = tokio::sync::mpsc::channel(MAX_BATCH);
        let batcher = tokio::spawn(batcher(raft.clone(), queue));
        let server = tokio::spawn(serve(
            listener,
            raft.clone(),
            reader.clone(),
            writes,
            config.cluster.clone(),
            config.max_frame,
        ));
        Ok(Self { id: config.id, raft, reader, addr, server, batcher })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its Raft handle.
    pub fn raft(&self) -> &Raft<TypeConfig> {
        &self.raft
    }

    /// A read handle on its store.
    pub fn reader(&self) -> &Reader<K, V> {
        &self.reader
    }

    /// Makes `members` (id → address) the first membership of a new
    /// cluster. Harmless on a node already initialized.
    pub async fn initialize(&self, members: BTreeMap<NodeId, String>) -> Result<()> {
        let nodes: BTreeMap<NodeId, BasicNode> =
            members.into_iter().map(|(id, addr)| (id, BasicNode::new(addr))).collect();
        match self.raft.initialize(nodes).await {
            Ok(()) => Ok(()),
            Err(openraft::error::RaftError::APIError(
                openraft::error::InitializeError::NotAllowed(_),
            )) => Ok(()),
            Err(e) => Err(Error::Raft(e.to_string())),
        }
    }

    /// This node's state.
    pub fn status(&self) -> Status {
        status(self.id, &self.raft)
    }

    /// Stops serving and shuts Raft down.
    pub async fn shutdown(self) -> Result<()> {
        self.server.abort();
        let _ = self.server.await;
        self.batcher.abort();
        let _ = self.batcher.await;
        self.raft.shutdown().await.map_err(|e| Error::Raft(e.to_string()))
    }
}

fn status(id: NodeId, raft: &Raft<TypeConfig>) -> Status {
    let m = raft.metrics().borrow().clone();
    Status {
        id,
        leader: m.current_leader,
        term: m.current_term,
        applied: m.last_applied.map(|l| l.index),
        last_log: m.last_log_index,
        purged: m.purged.map(|l| l.index),
        snapshot: m.snapshot.map(|l| l.index),
        voters: m.membership_config.membership().voter_ids().collect::<BTreeSet<_>>(),
    }
}

async fn serve<K: Key, V: Value>(
    listener: TcpListener,
    raft: Raft<TypeConfig>,
    reader: Reader<K, V>,
    writes: tokio::sync::mpsc::Sender<Pending>,
    cluster: String,
    max_frame: usize,
) {
    // Owned here: when the server is aborted, its connections go with it
    // (and the store handles they hold).
    let mut connections = tokio::task::JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "accepting a connection");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let (raft, reader, writes, cluster) =
            (raft.clone(), reader.clone(), writes.clone(), cluster.clone());
        connections.spawn(async move {
            if let Err(e) = connection(stream, raft, reader, writes, &cluster, max_frame).await {
                tracing::debug!(error = %e, "a connection ended");
            }
        });
    }
}

async fn connection<K: Key, V: Value>(
    mut stream: TcpStream,
    raft: Raft<TypeConfig>,
    reader: Reader<K, V>,
    writes: tokio::sync::mpsc::Sender<Pending>,
    cluster: &str,
    max_frame: usize,
) -> Result<()> {
    let _ = stream.set_nodelay(true);
    let Some(hello) = read_frame::<_, Hello>(&mut stream, max_frame).await? else {
        return Ok(());
    };
    if let Err(why) = check_hello(&hello, cluster) {
        tracing::warn!(%why, "refusing a peer");
        write_frame(&mut stream, &HelloReply::Refused(why.clone()), max_frame).await?;
        return Err(Error::Protocol(why));
    }
    write_frame(&mut stream, &HelloReply::Welcome, max_frame).await?;
    let id = raft.metrics().borrow().id;
    while let Some(message) = read_frame::<_, Message>(&mut stream, max_frame).await? {
        let reply = handle(message, &raft, &reader, &writes, id).await;
        write_frame(&mut stream, &reply, max_frame).await?;
    }
    Ok(())
}

/// The encoding of `key` (what commands and reads carry).
pub fn key_bytes<K: Key>(key: &K) -> Result<Vec<u8>> {
    let mut bytes = vec![0u8; key.key_size()];
    key.encode_key_into(&mut bytes).map_err(|e| Error::Store(e.into()))?;
    Ok(bytes)
}

/// The encoding of `value`.
pub fn value_bytes<V: Value>(value: &V) -> Vec<u8> {
    value.to_aligned_bytes().as_slice().to_vec()
}

async fn handle<K: Key, V: Value>(
    message: Message,
    raft: &Raft<TypeConfig>,
    reader: &Reader<K, V>,
    writes: &tokio::sync::mpsc::Sender<Pending>,
    id: NodeId,
) -> Reply {
    let failed = |e: &dyn std::fmt::Display| Reply::Client(Err(ClientError::Failed(e.to_string())));
    let local_read = |key: Vec<u8>| async move {
        let key = match K::decode_key(&key) {
            Ok(key) => key,
            Err(e) => return Reply::Client(Err(ClientError::Failed(format!("the key: {e}")))),
        };
        match reader.read(&key).await {
            Ok(value) => Reply::Client(Ok(ClientReply::Value(value.map(|v| value_bytes(&v))))),
            Err(e) => Reply::Client(Err(ClientError::Failed(e.to_string()))),
        }
    };
    match message {
        Message::AppendEntries(rpc) => Reply::AppendEntries(raft.append_entries(rpc).await),
        Message::Vote(rpc) => Reply::Vote(raft.vote(rpc).await),
        Message::InstallSnapshot(rpc) => Reply::InstallSnapshot(raft.install_snapshot(rpc).await),
        Message::Write(request) => {
            let (answer, answered) = tokio::sync::oneshot::channel();
            if writes.send((request, answer)).await.is_err() {
                return failed(&"the node is shutting down");
            }
            match answered.await {
                Ok(result) => Reply::Client(result.map(ClientReply::Written)),
                Err(_) => failed(&"the node is shutting down"),
            }
        }
        Message::Read(key) => match raft.ensure_linearizable().await {
            Ok(_) => local_read(key).await,
            Err(e) => match e.forward_to_leader::<openraft::BasicNode>() {
                Some(f) => Reply::Client(Err(ClientError::NotLeader {
                    leader: f.leader_id.zip(f.leader_node.as_ref().map(|n| n.addr.clone())),
                })),
                None => failed(&e),
            },
        },
        Message::ReadLocal(key) => local_read(key).await,
        Message::AddLearner { id, addr } => {
            match raft.add_learner(id, BasicNode::new(addr), true).await {
                Ok(_) => Reply::Client(Ok(ClientReply::Done)),
                Err(e) => {
                    Reply::Client(Err(not_leader(&e).unwrap_or(ClientError::Failed(e.to_string()))))
                }
            }
        }
        Message::ChangeMembership { members } => match raft.change_membership(members, false).await
        {
            Ok(_) => Reply::Client(Ok(ClientReply::Done)),
            Err(e) => {
                Reply::Client(Err(not_leader(&e).unwrap_or(ClientError::Failed(e.to_string()))))
            }
        },
        Message::Status => Reply::Client(Ok(ClientReply::Status(status(id, raft)))),
    }
}
