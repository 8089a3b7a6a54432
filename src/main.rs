//! The `oxifaster` command-line tool.
//!
//! `oxifaster bench` runs YCSB-style workloads on a typed `Store<u64, V>`
//! in a temporary directory (or `--dir`) and prints throughput, checking
//! every result: reads must find every loaded key, and after read/RMW
//! workloads the sum of all counters must equal the increments issued.
//! `oxifaster info`, `verify` and `checkpoints` inspect, check and prune a
//! store directory of any types; `oxifaster compact` compacts a closed
//! store of the types it knows.

mod bench;
mod compact;
mod config_cmd;
mod dump;
mod durability;
mod inspect;
mod log_bench;
mod raft;

use clap::{Parser, Subcommand};

use bench::BenchArgs;

/// oxifaster: a typed, embedded, concurrent key-value store and log engine.
#[derive(Debug, Parser)]
#[command(name = "oxifaster", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run YCSB-style workloads on a Store<u64, u64> and report throughput.
    Bench(BenchArgs),
    /// Measure checkpoints (time, throughput dip) and recovery against the
    /// disk's sequential bandwidth.
    Durability(durability::DurabilityArgs),
    /// Measure FasterLog append throughput and commit latency against the
    /// disk's sequential write bandwidth.
    LogBench(log_bench::LogBenchArgs),
    /// Describe a store directory: checkpoints, layout, log regions and
    /// sizes (any key and value types; records shown as hex).
    Info(inspect::InfoArgs),
    /// Check every checksum of a store directory (checkpoint files and the
    /// log pages each checkpoint needs); exits non-zero on damage.
    Verify(inspect::VerifyArgs),
    /// List a store's checkpoints, or keep only the newest N.
    Checkpoints(inspect::CheckpointsArgs),
    /// Compact a closed store: keep only its live records, checkpoint,
    /// and delete the log segments nothing needs.
    Compact(compact::CompactArgs),
    /// Print a store's live records (any key and value types; integers
    /// and strings decoded, anything else as hex), as a checkpoint holds
    /// them.
    Dump(dump::DumpArgs),
    /// Print the default configuration file (`--print-default`), or check
    /// one with the `OXIFASTER_` environment over it (`--check FILE`).
    Config(config_cmd::ConfigArgs),
    /// Run one node of a replicated Store<u64, u64> (Raft over TCP).
    RaftNode(raft::RaftNodeArgs),
    /// Start a cluster of raft-node processes on 127.0.0.1 and measure
    /// replicated writes (and, with --failover, a leader's failover).
    RaftBench(raft::RaftBenchArgs),
}

/// A failure with its exit status: 1 for damage found (or a failed run),
/// 2 for a request that cannot be carried out (no such directory or
/// checkpoint, not a store).
#[derive(Debug)]
pub(crate) struct Exit {
    pub(crate) code: i32,
    pub(crate) message: String,
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Exit {}

/// A request that cannot be carried out (exit status 2).
pub(crate) fn usage(message: impl Into<String>) -> Box<dyn std::error::Error> {
    Box::new(Exit { code: 2, message: message.into() })
}

fn main() {
    // Like every Unix tool: a closed pipe (`oxifaster info D | head -2`)
    // ends the process quietly instead of a panic in `println!`.
    #[cfg(unix)]
    // SAFETY: restores the default action of SIGPIPE before any thread
    // starts; no handler runs our code.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Bench(args)) => bench::bench(args),
        Some(Command::Durability(args)) => durability::run(args),
        Some(Command::LogBench(args)) => log_bench::run(args),
        Some(Command::Info(args)) => inspect::info(args),
        Some(Command::Verify(args)) => inspect::verify(args),
        Some(Command::Checkpoints(args)) => inspect::checkpoints(args),
        Some(Command::Compact(args)) => compact::compact(args),
        Some(Command::Dump(args)) => dump::dump(args),
        Some(Command::Config(args)) => config_cmd::run(args),
        Some(Command::RaftNode(args)) => raft::node(args),
        Some(Command::RaftBench(args)) => raft::bench(args),
        None => {
            println!(
                "oxifaster {}: run `oxifaster bench` or `oxifaster --help`",
                env!("CARGO_PKG_VERSION")
            );
            Ok(())
        }
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        let code = e.downcast_ref::<Exit>().map_or(1, |exit| exit.code);
        std::process::exit(code);
    }
}
