//! A cluster of `oxifaster raft-node` processes on 127.0.0.1, for
//! `oxifaster raft-bench` and the cluster tests: start, kill with SIGKILL,
//! restart, find the leader.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use oxifaster_raft::Client;
use oxifaster_raft::network::Status;

/// The cluster name the processes and clients use.
pub const CLUSTER: &str = "oxifaster-local";

/// Node processes, one per id (1-based), with their addresses and
/// directories.
#[derive(Debug)]
pub struct ProcessCluster {
    exe: PathBuf,
    /// Node `i + 1`'s address.
    pub addrs: Vec<String>,
    dirs: Vec<PathBuf>,
    procs: Vec<Option<Child>>,
    extra: Vec<String>,
}

/// Free ports on 127.0.0.1 (bound and released: another process could
/// take one meanwhile, which the node's start then reports).
fn free_ports(n: usize) -> std::io::Result<Vec<u16>> {
    let listeners: Vec<_> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<_>>()?;
    listeners.iter().map(|l| l.local_addr().map(|a| a.port())).collect()
}

impl ProcessCluster {
    /// Starts `n` nodes of the `oxifaster` binary `exe` in directories
    /// under `base`, node 1 initializing the cluster; `extra` arguments go
    /// to every node (e.g. `--snapshot-every 500`).
    pub fn start(exe: &Path, base: &Path, n: usize, extra: &[&str]) -> std::io::Result<Self> {
        let ports = free_ports(n)?;
        let addrs: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let dirs = (1..=n).map(|id| base.join(format!("node{id}"))).collect();
        let mut cluster = Self {
            exe: exe.to_path_buf(),
            addrs,
            dirs,
            procs: (0..n).map(|_| None).collect(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        for i in 0..n {
            cluster.spawn(i, i == 0)?;
        }
        Ok(cluster)
    }

    fn peers(&self) -> String {
        self.addrs
            .iter()
            .enumerate()
            .map(|(i, a)| format!("{}={a}", i + 1))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn spawn(&mut self, i: usize, init: bool) -> std::io::Result<()> {
        let mut cmd = Command::new(&self.exe);
        cmd.arg("raft-node")
            .args(["--id", &(i + 1).to_string()])
            .args(["--addr", &self.addrs[i]])
            .arg("--dir")
            .arg(&self.dirs[i])
            .args(["--peers", &self.peers()])
            .args(["--cluster", CLUSTER])
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        if init {
            cmd.arg("--init");
        }
        self.procs[i] = Some(cmd.spawn()?);
        Ok(())
    }

    /// Kills node `i` (0-based) with SIGKILL and reaps it.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.procs[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts node `i` again on its directory and address.
    pub fn restart(&mut self, i: usize) -> std::io::Result<()> {
        self.kill(i);
        self.spawn(i, false)
    }

    /// Whether node `i` runs.
    pub fn is_up(&self, i: usize) -> bool {
        self.procs[i].is_some()
    }

    /// Node `i`'s status, if it answers.
    pub async fn status(&self, i: usize) -> Option<Status> {
        let mut c = Client::<u64, u64>::new(0, CLUSTER, &self.addrs);
        tokio::time::timeout(Duration::from_secs(2), c.status(i)).await.ok()?.ok()
    }

    /// Waits (at most `limit`) until a running node reports a leader that
    /// is running and agrees it leads; returns its index (0-based).
    pub async fn leader(&self, limit: Duration) -> Option<usize> {
        let start = Instant::now();
        while start.elapsed() < limit {
            for i in 0..self.addrs.len() {
                if !self.is_up(i) {
                    continue;
                }
                if let Some(s) = self.status(i).await
                    && let Some(leader) = s.leader
                {
                    let l = (leader - 1) as usize;
                    if self.is_up(l)
                        && self.status(l).await.is_some_and(|s| s.leader == Some(leader))
                    {
                        return Some(l);
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }
}

impl Drop for ProcessCluster {
    fn drop(&mut self) {
        for i in 0..self.procs.len() {
            self.kill(i);
        }
    }
}
