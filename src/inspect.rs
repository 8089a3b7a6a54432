//! `oxifaster info`, `oxifaster verify` and `oxifaster checkpoints`: look
//! into a store directory of any key and value types. Everything comes
//! from the checkpoints' metadata (type names, layout fingerprints, record
//! shape) and the log's segment files, so no types are needed; keys and
//! values are shown as hex.

use std::path::{Path, PathBuf};

use oxifaster::checkpoint::{self, CheckpointInfo};
use oxifaster::device::FileDevice;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Arguments of `oxifaster info`.
#[derive(Debug, clap::Args)]
pub struct InfoArgs {
    /// The store directory.
    dir: PathBuf,
    /// The checkpoint to describe in detail (default: the newest).
    #[arg(long)]
    token: Option<String>,
    /// Show the first N records of that checkpoint's log (keys and values
    /// in hex).
    #[arg(long, default_value_t = 0)]
    records: usize,
}

/// Arguments of `oxifaster verify`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The store directory.
    dir: PathBuf,
    /// Verify only this checkpoint (default: every checkpoint directory).
    #[arg(long)]
    token: Option<String>,
}

/// Arguments of `oxifaster checkpoints`.
#[derive(Debug, clap::Args)]
pub struct CheckpointsArgs {
    /// The store directory.
    dir: PathBuf,
    /// Keep the newest N intact checkpoints (and what they use), verified
    /// with their log pages; delete the older checkpoint directories (never
    /// a newer one, which may be being written).
    #[arg(long)]
    keep: Option<usize>,
}

/// The store's log device (its segment files), opened only if the
/// directory holds a store (opening never creates one).
pub(crate) fn log_device(dir: &Path) -> Result<FileDevice> {
    require_store(dir)?;
    Ok(FileDevice::open_existing(dir)?)
}

/// Refuses (exit status 2) a path that does not exist, is not a directory,
/// or holds no store (neither `checkpoints/` nor `log.N` segment files).
fn require_store(dir: &Path) -> Result<()> {
    if !dir.exists() {
        return Err(crate::usage(format!("{} does not exist", dir.display())));
    }
    if !dir.is_dir() {
        return Err(crate::usage(format!("{} is not a directory", dir.display())));
    }
    let (segment_files, _) = segments(dir);
    if segment_files == 0 && !dir.join("checkpoints").is_dir() {
        return Err(crate::usage(format!(
            "{} is not a store directory (it has no checkpoints/ and no log.N files)",
            dir.display()
        )));
    }
    Ok(())
}

/// The log's segment files: count and bytes.
fn segments(dir: &Path) -> (usize, u64) {
    let all = segment_files(dir);
    (all.len(), all.iter().map(|(_, bytes)| bytes).sum())
}

/// Each segment file's number and size.
fn segment_files(dir: &Path) -> Vec<(u64, u64)> {
    let mut files = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if let Some(n) = name.strip_prefix("log.").and_then(|n| {
                n.chars().all(|c| c.is_ascii_digit()).then(|| n.parse::<u64>().ok()).flatten()
            }) {
                files.push((n, entry.metadata().map(|m| m.len()).unwrap_or(0)));
            }
        }
    }
    files
}

/// The segment files below the lowest begin address any checkpoint
/// needs: what a compaction's reclaim (or a store's `reclaim`) would
/// delete once the store's own begin address is past them.
fn print_reclaimable(dir: &Path, all: &[checkpoint::CheckpointInfo]) {
    let bits = oxifaster::device::recorded_segment_bits(dir)
        .ok()
        .flatten()
        .unwrap_or(oxifaster::device::DEFAULT_SEGMENT_SIZE_BITS);
    let pinned = all
        .iter()
        .filter(|c| c.kind != checkpoint::CheckpointKind::IndexOnly)
        .map(|c| (c.begin_address, c.token.as_str()))
        .min();
    let Some((lowest, token)) = pinned else { return };
    let below: Vec<(u64, u64)> =
        segment_files(dir).into_iter().filter(|(n, _)| (n + 1) << bits <= lowest).collect();
    println!(
        "pins         the lowest begin address a checkpoint needs is {lowest:#x} ({token}); \
         segments of 2^{bits} bytes"
    );
    println!(
        "reclaimable  {} segment files, {} below it (deleted by the store's reclaim once \
         its own begin address has passed them)",
        below.len(),
        size(below.iter().map(|(_, b)| b).sum())
    );
}

fn size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

fn hex(bytes: &[u8], max: usize) -> String {
    let mut out: String = bytes.iter().take(max).map(|b| format!("{b:02x}")).collect();
    if bytes.len() > max {
        out.push_str(&format!("… ({} bytes)", bytes.len()));
    }
    out
}

fn shape(size: Option<u32>) -> String {
    size.map_or_else(|| "variable length".into(), |n| format!("{n} bytes"))
}

fn kind(info: &CheckpointInfo) -> String {
    format!("{:?}", info.kind)
}

/// `oxifaster info DIR`.
pub fn info(args: InfoArgs) -> Result<()> {
    let device = log_device(&args.dir)?;
    let (files, bytes) = segments(&args.dir);
    println!("store        {}", args.dir.display());
    println!("log files    {files} segment files, {}", size(bytes));
    let all = checkpoint::list(&args.dir)?;
    let incomplete = checkpoint_dirs(&args.dir)?.len().saturating_sub(all.len());
    if incomplete > 0 {
        println!(
            "checkpoints  {} complete, {incomplete} damaged or incomplete (`oxifaster verify` says which)",
            all.len()
        );
    } else {
        println!("checkpoints  {}", all.len());
    }
    if !all.is_empty() {
        println!(
            "  {:<28} {:<20} {:>8} {:>14} {:>14} {:>8}",
            "token", "kind", "version", "final", "replay from", "sessions"
        );
    }
    for c in &all {
        println!(
            "  {:<28} {:<20} {:>8} {:>#14x} {:>#14x} {:>8}",
            c.token.as_str(),
            kind(c),
            c.version,
            c.final_address,
            c.log_start,
            c.sessions.len()
        );
    }
    print_reclaimable(&args.dir, &all);
    let chosen = match &args.token {
        Some(token) => match all.iter().find(|c| c.token.as_str() == token) {
            Some(c) => c.clone(),
            None => {
                return Err(crate::usage(format!(
                    "no complete checkpoint {token} in {}",
                    args.dir.display()
                )));
            }
        },
        None => match all.iter().rev().find(|c| c.kind != checkpoint::CheckpointKind::IndexOnly) {
            Some(c) => c.clone(),
            None => return Ok(()),
        },
    };
    println!("checkpoint   {} ({})", chosen.token, kind(&chosen));
    println!(
        "  key        {} ({}, layout fingerprint {:#018x})",
        chosen.key_type,
        shape(chosen.key_size),
        chosen.key_fingerprint
    );
    println!(
        "  value      {} ({}, layout fingerprint {:#018x})",
        chosen.value_type,
        shape(chosen.value_size),
        chosen.value_fingerprint
    );
    println!(
        "  pages      {} (2^{}); index of {} buckets (from {})",
        size(1 << chosen.page_size_bits),
        chosen.page_size_bits,
        chosen.table_size,
        chosen.index_token
    );
    let index = checkpoint::index_stats(&args.dir, chosen.token.as_str())?;
    println!(
        "  index      {} buckets and {} overflow buckets ({}), {} entries: {:.1}% of the slots, {:.2} per bucket",
        index.buckets,
        index.overflow_buckets,
        size(index.bytes),
        index.entries,
        100.0 * index.entries as f64 / index.slots.max(1) as f64,
        index.entries as f64 / index.buckets.max(1) as f64
    );
    println!(
        "  log        begin {:#x}, replay from {:#x}, final {:#x} ({} of log)",
        chosen.begin_address,
        chosen.log_start,
        chosen.final_address,
        size(chosen.final_address.saturating_sub(chosen.begin_address))
    );
    if let Some(from) = chosen.snapshot_from {
        println!(
            "  snapshot   {:#x}..{:#x} in {}",
            from,
            chosen.final_address,
            chosen.snapshot_token.as_deref().unwrap_or("?")
        );
    }
    for (from, to) in &chosen.gaps {
        println!("  dead range {from:#x}..{to:#x} (left by a recovery)");
    }
    for (id, point) in &chosen.sessions {
        println!(
            "  session    {id}: serials up to {} ({} excluded)",
            point.until,
            point.excluded.len()
        );
    }
    if args.records > 0 {
        println!("records (first {}, oldest first)", args.records);
        let mut shown = 0;
        checkpoint::scan_log(&args.dir, chosen.token.as_str(), &device, |r| {
            let flags = match (r.tombstone, r.invalid) {
                (_, true) => " invalid",
                (true, _) => " tombstone",
                _ => "",
            };
            println!(
                "  {:#014x} v{:<4} key {} value {}{flags}",
                r.address,
                r.version,
                hex(&r.key, 32),
                hex(&r.value, 32)
            );
            shown += 1;
            shown < args.records
        })?;
    }
    Ok(())
}

/// The checkpoint directories under `dir`, complete or not.
fn checkpoint_dirs(dir: &Path) -> Result<Vec<String>> {
    let root = dir.join("checkpoints");
    let mut tokens = Vec::new();
    match std::fs::read_dir(&root) {
        Ok(entries) => {
            for entry in entries {
                let entry = entry?;
                if entry.path().is_dir() {
                    tokens.push(entry.file_name().to_string_lossy().into_owned());
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("listing {}: {e}", root.display()).into()),
    }
    tokens.sort();
    Ok(tokens)
}

/// `oxifaster verify DIR`: every checksum of every checkpoint (metadata,
/// index, snapshot and delta files) and of every log page each needs.
/// Returns an error (a non-zero exit) if anything is damaged.
pub fn verify(args: VerifyArgs) -> Result<()> {
    let device = log_device(&args.dir)?;
    let tokens = match &args.token {
        Some(token) => {
            if !checkpoint_dirs(&args.dir)?.contains(token) {
                return Err(crate::usage(format!(
                    "no checkpoint {token} in {} (`oxifaster checkpoints {}` lists them)",
                    args.dir.display(),
                    args.dir.display()
                )));
            }
            vec![token.clone()]
        }
        None => checkpoint_dirs(&args.dir)?,
    };
    if tokens.is_empty() {
        println!("{}: no checkpoints", args.dir.display());
    }
    let mut damaged = 0usize;
    for token in &tokens {
        match checkpoint::verify_log(&args.dir, token, &device) {
            Ok(report) if report.problems.is_empty() => println!(
                "ok       {token} ({:?}): {} log pages, {} checked",
                report.checkpoint.kind,
                report.pages,
                size(report.bytes)
            ),
            Ok(report) => {
                damaged += 1;
                println!(
                    "DAMAGED  {token}: {} of {} log pages",
                    report.problems.len(),
                    report.pages
                );
                for (address, what) in &report.problems {
                    println!("         page at {address:#x}: {what}");
                }
            }
            Err(oxifaster::Error::Io { context, source })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                damaged += 1;
                println!("DAMAGED  {token}: missing file ({context})");
            }
            Err(e) => {
                damaged += 1;
                println!("DAMAGED  {token}: {e}");
            }
        }
    }
    if damaged > 0 {
        println!(
            "next: a damaged checkpoint is skipped when the store opens (the newest intact one \
             is recovered); `oxifaster checkpoints {} --keep N` prunes around the intact ones; \
             restore the directory from a backup if none is intact",
            args.dir.display()
        );
        return Err(format!("{damaged} of {} checkpoints damaged", tokens.len()).into());
    }
    Ok(())
}

/// `oxifaster checkpoints DIR [--keep N]`.
pub fn checkpoints(args: CheckpointsArgs) -> Result<()> {
    require_store(&args.dir)?;
    if let Some(keep) = args.keep {
        if keep == 0 {
            return Err("--keep must be at least 1 (a store needs a checkpoint to recover)".into());
        }
        for token in checkpoint::retain(&args.dir, keep)? {
            println!("deleted  {token}");
        }
    }
    for c in checkpoint::list(&args.dir)? {
        println!(
            "{:<28} {:<20} version {:<6} final {:#x}",
            c.token.as_str(),
            kind(&c),
            c.version,
            c.final_address
        );
    }
    Ok(())
}
