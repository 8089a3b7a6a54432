//! `oxifaster compact DIR`: one compaction of a closed store.
//!
//! The tool opens the store (recovering its newest checkpoint), compacts
//! the log up to the safe read-only address (after a recovery, everything
//! on the device: only the live records remain), takes `--keep`
//! checkpoints at the new begin address, prunes the older ones and deletes
//! the log nothing needs, then closes it.
//!
//! A store is typed: the tool opens the types it knows (integer, string
//! and byte keys and values, and the bench's values), found by the type
//! names the checkpoints record. A store of other types says so; its
//! program calls `Store::compact` itself.

use std::path::PathBuf;

use oxifaster::checkpoint::{self, CheckpointInfo, CheckpointKind};
use oxifaster::compaction::{CompactionKind, directory_bytes};
use oxifaster::record::{Key, Value};
use oxifaster::{Error, Store};

use crate::bench::value::Payload;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Arguments of `oxifaster compact`.
#[derive(Debug, clap::Args)]
pub struct CompactArgs {
    /// The store directory (closed: no process may have it open).
    dir: PathBuf,
    /// Compact up to this log address (default: the safe read-only
    /// address, which after opening is the end of the log on the device).
    #[arg(long, value_parser = parse_address)]
    until: Option<u64>,
    /// Walk each record's chain instead of scanning (see `CompactionKind`).
    #[arg(long)]
    lookup: bool,
    /// How many checkpoints to keep afterwards (at least 1).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..))]
    keep: u64,
    /// Log memory while compacting, e.g. 256MiB (copies gather there
    /// before the checkpoint writes them).
    #[arg(long, value_parser = crate::bench::parse_bytes, default_value = "64MiB")]
    log_memory: u64,
}

fn parse_address(s: &str) -> std::result::Result<u64, String> {
    let parsed = match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => s.parse(),
    };
    parsed.map_err(|_| format!("`{s}` is not an address (decimal or 0x hex)"))
}

/// `oxifaster compact DIR`.
pub fn compact(args: CompactArgs) -> Result<()> {
    if !args.dir.is_dir() {
        return Err(crate::usage(format!("{} is not a directory", args.dir.display())));
    }
    let newest = checkpoint::list(&args.dir)?.into_iter().max_by_key(|c| c.version);
    let Some(newest) = newest else {
        return Err(crate::usage(format!(
            "{} has no complete checkpoint to open (not a store, or never checkpointed)",
            args.dir.display()
        )));
    };
    /// Runs `$run::<K, V>` for the first pair of known types that matches
    /// the recorded names.
    macro_rules! dispatch {
        ($($k:ty),+ ; $vs:tt) => {{
            $( dispatch!(@values $k ; $vs); )+
        }};
        (@values $k:ty ; [$($v:ty),+]) => {{
            $(
                if newest.key_type == std::any::type_name::<$k>()
                    && newest.value_type == std::any::type_name::<$v>()
                {
                    return run::<$k, $v>(&args, &newest);
                }
            )+
        }};
    }
    dispatch!(u64, String, Vec<u8> ; [u64, String, Vec<u8>, Payload]);
    Err(crate::usage(format!(
        "the store's types ({} → {}) are not ones this tool opens (integer, string and byte \
         keys and values): compact it from its program with Store::compact",
        newest.key_type, newest.value_type
    )))
}

fn run<K: Key, V: Value>(args: &CompactArgs, newest: &CheckpointInfo) -> Result<()> {
    let before = directory_bytes(&args.dir);
    let store = Store::<K, V>::builder()
        .dir(&args.dir)
        .page_size_bits(newest.page_size_bits)
        .table_size(newest.table_size)
        .log_memory_size_bytes(args.log_memory)
        .checkpoint_every(None)
        .checkpoint_on_close(false)
        .open()
        .map_err(|e| match e {
            Error::Locked { .. } => crate::usage(format!("{e} (compact a closed store)")),
            other => other.into(),
        })?;
    let regions = store.log_regions();
    let page = regions.page_size_bytes;
    let until = args.until.unwrap_or(regions.safe_read_only_address / page * page);
    let kind = if args.lookup { CompactionKind::Lookup } else { CompactionKind::Scan };
    let report = store.compact_with(until, kind)?;
    // `--keep` checkpoints at the new begin address (the first with a
    // fresh index, the others log-only on it): then none of those kept
    // needs the log below it.
    let taken = store.checkpoint_and_wait(CheckpointKind::FoldOver)?;
    for _ in 1..args.keep {
        store.checkpoint_and_wait(CheckpointKind::LogOnly)?;
    }
    checkpoint::retain(&args.dir, args.keep as usize)?;
    let freed = store.reclaim()?;
    store.close()?;
    let after = directory_bytes(&args.dir);
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    println!(
        "compacted {:#x}..{:#x} ({:?}): {} records, {} copied ({:.1} MiB), {} tombstones dropped, \
         in {:.2} s",
        report.from,
        report.until,
        kind,
        report.records,
        report.copied,
        mib(report.copied_bytes),
        report.tombstones_dropped,
        report.duration.as_secs_f64()
    );
    println!(
        "checkpoint {}; deleted {:.1} MiB of segments; directory {:.1} MiB -> {:.1} MiB",
        taken.token.as_str(),
        mib(report.reclaimed_bytes + freed),
        mib(before),
        mib(after)
    );
    Ok(())
}
