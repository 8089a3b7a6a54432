//! The README's shell commands, run as written: every `oxifaster …` and
//! `cargo run --release -- …` line of its `sh` blocks, taken from the
//! README itself (so an edit that breaks a command breaks this test), with
//! `DIR`, `T` and `N` filled in and each optional `[--flag X]` run both
//! without and with it. (The README's Rust snippets are doc tests of the
//! crate.)

mod common;

use std::path::Path;

use common::{oxifaster, text};

use oxifaster::Store;
use oxifaster::checkpoint::CheckpointKind;

const README: &str = include_str!("../README.md");

/// The tool invocations in the README's `sh` blocks: the arguments after
/// `oxifaster` or `cargo run --release --`, comments stripped.
fn readme_commands() -> Vec<String> {
    let mut commands = Vec::new();
    let mut in_sh = false;
    for line in README.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("```") {
            in_sh = trimmed == "```sh";
            continue;
        }
        if !in_sh {
            continue;
        }
        let code = trimmed.split('#').next().unwrap_or("").trim();
        for prefix in ["oxifaster ", "cargo run --release -- "] {
            if let Some(args) = code.strip_prefix(prefix) {
                commands.push(args.to_string());
            }
        }
    }
    commands
}

/// `command` without its optional parts, and with each optional part in
/// turn (`[--token T]` → `--token T`).
fn variants(command: &str) -> Vec<String> {
    let mut required = String::new();
    let mut optional = Vec::new();
    let mut rest = command;
    while let Some(open) = rest.find('[') {
        required.push_str(&rest[..open]);
        let close = rest[open..].find(']').map_or(rest.len(), |c| open + c);
        optional.push(rest[open + 1..close].to_string());
        rest = rest.get(close + 1..).unwrap_or("");
    }
    required.push_str(rest);
    let required = required.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut all = vec![required.clone()];
    for part in optional {
        all.push(format!("{required} {part}"));
    }
    all
}

/// A store with two checkpoints, as a user's would be after a first run.
fn make_store(dir: &Path) -> String {
    let store = Store::<u64, u64>::builder()
        .dir(dir)
        .page_size_bits(12)
        .log_memory_size_bytes(64 << 10)
        .table_size(1 << 8)
        .open()
        .expect("open");
    let mut session = store.start_session().expect("session");
    let mut token = String::new();
    for round in 0..2u64 {
        for k in 0..2_000u64 {
            session.upsert(&k, &(k + round)).expect("upsert");
        }
        let info = store.checkpoint_and_wait(CheckpointKind::FoldOver).expect("checkpoint");
        token = info.token.to_string();
    }
    token
}

#[test]
fn the_readme_lists_the_tool_commands() {
    let commands = readme_commands();
    let expected =
        ["bench", "info DIR", "verify DIR", "checkpoints DIR", "dump DIR", "compact DIR"];
    for expected in expected {
        assert!(
            commands.iter().any(|c| c.starts_with(expected)),
            "the README has no `{expected}` command: {commands:?}"
        );
    }
}

#[test]
fn every_readme_command_runs_as_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = make_store(dir.path());
    let dir_arg = dir.path().to_str().expect("utf-8");
    for command in readme_commands() {
        for variant in variants(&command) {
            let args: Vec<String> = variant
                .split_whitespace()
                .map(|word| match word {
                    "DIR" => dir_arg.to_string(),
                    "T" => token.clone(),
                    // `--keep N`, `--records N`: keep both checkpoints and
                    // show a few records.
                    "N" => "2".to_string(),
                    other => other.to_string(),
                })
                .collect();
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let output = oxifaster(&args);
            let shown = text(&output);
            assert!(
                output.status.success(),
                "`oxifaster {variant}` failed ({}): {shown}",
                output.status
            );
            assert!(!output.stdout.is_empty(), "`oxifaster {variant}` printed nothing");
            if args[0] == "bench" {
                // The main job: the three workloads, each checked.
                for workload in ["C", "A", "RMW"] {
                    assert!(shown.contains(workload), "no {workload} row: {shown}");
                }
            }
        }
    }
    // After all of it the store is still whole and reopens.
    let store = Store::<u64, u64>::open(dir.path()).expect("reopen");
    let mut session = store.start_session().expect("session");
    assert_eq!(session.read_blocking(&1_999).expect("read"), Some(2_000));
}
