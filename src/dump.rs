//! `oxifaster dump DIR`: the live records of a store of any key and value
//! types, as one of its checkpoints holds them.
//!
//! The tool reads the checkpoint's log (device pages, snapshot and delta
//! files) with the record shape the checkpoint records, keeps each key's
//! newest record (dropping keys whose newest record is a delete), and
//! prints them oldest first, one `key<TAB>value` line each. Keys and
//! values of the integer types (by the type names the checkpoint records)
//! are printed as numbers, strings as quoted text, anything else as hex.
//! It reads files only: the store may be open in another process (its
//! newest checkpoint is what is printed). Memory: every live key and value.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;

use oxifaster::checkpoint::{self, CheckpointKind};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Arguments of `oxifaster dump`.
#[derive(Debug, clap::Args)]
pub struct DumpArgs {
    /// The store directory.
    dir: PathBuf,
    /// The checkpoint to read (default: the newest).
    #[arg(long)]
    checkpoint: Option<String>,
    /// Print keys and values as hex, whatever their types.
    #[arg(long)]
    hex: bool,
}

/// How a key or value is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Show {
    Unsigned(usize),
    Signed(usize),
    Text,
    Hex,
}

impl Show {
    /// By the type name a checkpoint records.
    fn of(type_name: &str, hex: bool) -> Self {
        if hex {
            return Self::Hex;
        }
        match type_name {
            "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => Self::Unsigned(int_width(type_name)),
            "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => Self::Signed(int_width(type_name)),
            "alloc::string::String" | "str" | "&str" => Self::Text,
            _ => Self::Hex,
        }
    }

    fn format(self, bytes: &[u8]) -> String {
        let le = |n: usize| -> Option<u128> {
            (bytes.len() == n).then(|| {
                let mut word = [0u8; 16];
                word[..n].copy_from_slice(bytes);
                u128::from_le_bytes(word)
            })
        };
        match self {
            Self::Unsigned(n) => le(n).map_or_else(|| hex(bytes), |v| v.to_string()),
            Self::Signed(n) => le(n).map_or_else(
                || hex(bytes),
                |v| {
                    // Sign-extend from `n` bytes.
                    let shift = 128 - 8 * n as u32;
                    (((v << shift) as i128) >> shift).to_string()
                },
            ),
            Self::Text => match std::str::from_utf8(bytes) {
                Ok(text) => format!("{text:?}"),
                Err(_) => hex(bytes),
            },
            Self::Hex => hex(bytes),
        }
    }
}

fn int_width(name: &str) -> usize {
    match name.trim_start_matches(['u', 'i']) {
        "8" => 1,
        "16" => 2,
        "32" => 4,
        "128" => 16,
        _ => 8,
    }
}

fn hex(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "(empty)".into();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `oxifaster dump DIR`.
pub fn dump(args: DumpArgs) -> Result<()> {
    let device = crate::inspect::log_device(&args.dir)?;
    let all = checkpoint::list(&args.dir)?;
    let usable = |c: &&checkpoint::CheckpointInfo| c.kind != CheckpointKind::IndexOnly;
    let chosen = match &args.checkpoint {
        Some(token) => all.iter().find(|c| c.token.as_str() == token).ok_or_else(|| {
            crate::usage(format!("no complete checkpoint {token} in {}", args.dir.display()))
        })?,
        None => all.iter().rev().find(usable).ok_or_else(|| {
            crate::usage(format!(
                "{} has no checkpoint holding records (take one, or close the store)",
                args.dir.display()
            ))
        })?,
    };
    if chosen.kind == CheckpointKind::IndexOnly {
        return Err(crate::usage(format!("{} holds only an index, no records", chosen.token)));
    }
    let (show_key, show_value) =
        (Show::of(&chosen.key_type, args.hex), Show::of(&chosen.value_type, args.hex));
    // Each key's newest record: its address and value (`None`: deleted).
    let mut newest: HashMap<Vec<u8>, (u64, Option<Vec<u8>>)> = HashMap::new();
    checkpoint::scan_log(&args.dir, chosen.token.as_str(), &device, |r| {
        if !r.invalid {
            let value = (!r.tombstone).then_some(r.value);
            newest.insert(r.key, (r.address, value));
        }
        true
    })?;
    let mut live: Vec<(u64, Vec<u8>, Vec<u8>)> = newest
        .into_iter()
        .filter_map(|(key, (address, value))| value.map(|v| (address, key, v)))
        .collect();
    live.sort_unstable_by_key(|(address, _, _)| *address);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for (_, key, value) in &live {
        writeln!(out, "{}\t{}", show_key.format(key), show_value.format(value))?;
    }
    out.flush()?;
    eprintln!(
        "{} live records in checkpoint {} (key {}, value {})",
        live.len(),
        chosen.token,
        chosen.key_type,
        chosen.value_type
    );
    Ok(())
}
