//! The `oxifaster` tool at its edges: a closed pipe, unknown tokens,
//! directories that hold no store, checkpoints that are incomplete, and
//! bench flags that cannot run — each a clear message and an exit status
//! that tells them apart (0 ok, 1 damage or a failed run, 2 a request that
//! cannot be carried out), never a panic, a hang or a false "ok".

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use common::{oxifaster, text};

use oxifaster::Store;
use oxifaster::checkpoint::CheckpointKind;

fn make_store(dir: &Path) {
    let store = Store::<u64, u64>::builder()
        .dir(dir)
        .page_size_bits(12)
        .log_memory_size_bytes(64 << 10)
        .table_size(1 << 8)
        .open()
        .expect("open");
    let mut session = store.start_session().expect("session");
    for k in 0..2_000u64 {
        session.upsert(&k, &k).expect("upsert");
    }
    store.checkpoint_and_wait(CheckpointKind::FoldOver).expect("checkpoint");
}

#[test]
fn a_closed_pipe_ends_the_tool_quietly() {
    let dir = tempfile::tempdir().expect("tempdir");
    make_store(dir.path());
    let mut child = Command::new(env!("CARGO_BIN_EXE_oxifaster"))
        .args(["info", dir.path().to_str().expect("utf-8"), "--records", "2000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // `| head -1`: read one line, then close the pipe.
    let mut first = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut first).expect("read");
    assert!(first.starts_with("store"), "{first}");
    let output = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_ne!(output.status.code(), Some(101), "a panic's exit status: {stderr}");
}

#[test]
fn unknown_tokens_and_non_stores_are_requests_not_damage() {
    let dir = tempfile::tempdir().expect("tempdir");
    make_store(dir.path());
    let d = dir.path().to_str().expect("utf-8");
    let nope = oxifaster(&["verify", d, "--token", "nope"]);
    assert_eq!(nope.status.code(), Some(2), "{}", text(&nope));
    assert!(text(&nope).contains("no checkpoint nope"), "{}", text(&nope));
    assert!(!text(&nope).contains("DAMAGED"), "{}", text(&nope));

    let info = oxifaster(&["info", d, "--token", "nope"]);
    assert_eq!(info.status.code(), Some(2), "{}", text(&info));

    // A directory of other files, an empty one, and none at all.
    let other = tempfile::tempdir().expect("tempdir");
    std::fs::write(other.path().join("notes.txt"), b"hello").expect("write");
    for (path, says) in [
        (other.path().to_path_buf(), "not a store directory"),
        (tempfile::tempdir().expect("tempdir").keep(), "not a store directory"),
        (dir.path().join("missing"), "does not exist"),
        (other.path().join("notes.txt"), "not a directory"),
    ] {
        for command in ["verify", "info", "checkpoints"] {
            let out = oxifaster(&[command, path.to_str().expect("utf-8")]);
            assert_eq!(out.status.code(), Some(2), "{command} {}: {}", path.display(), text(&out));
            assert!(text(&out).contains(says), "{command} {}: {}", path.display(), text(&out));
        }
    }
}

#[test]
fn info_counts_the_checkpoints_verify_finds_damaged() {
    let dir = tempfile::tempdir().expect("tempdir");
    make_store(dir.path());
    // A checkpoint directory without its metadata (a crash while writing).
    let partial = dir.path().join("checkpoints").join("0000000099-0000000000000001");
    std::fs::create_dir_all(&partial).expect("mkdir");
    let d = dir.path().to_str().expect("utf-8");
    let info = oxifaster(&["info", d]);
    assert!(info.status.success(), "{}", text(&info));
    assert!(text(&info).contains("1 complete, 1 damaged or incomplete"), "{}", text(&info));
    let verify = oxifaster(&["verify", d]);
    assert_eq!(verify.status.code(), Some(1), "{}", text(&verify));
    assert!(text(&verify).contains("DAMAGED  0000000099"), "{}", text(&verify));
    assert!(text(&verify).contains("next:"), "a damaged store gets a next step: {}", text(&verify));
}

#[test]
fn bench_flags_that_cannot_run_are_refused_up_front() {
    for (args, says) in [
        (vec!["--threads", "0"], "at least 1"),
        (vec!["--keys", "0"], "not in 1.."),
        (vec!["--log-memory", "64"], "give a unit"),
        (vec!["--log-memory", "64KiB"], "--log-memory"),
        (vec!["--batch", "0"], "at least 1"),
        (vec!["--batch", "8", "--workload", "c,cas"], "not --workload cas"),
        (vec!["--keygen", "later"], "invalid value"),
    ] {
        let mut all = vec!["bench", "--device", "null", "--secs", "0.1"];
        if args[0] != "--keys" {
            all.extend(["--keys", "1000"]);
        }
        all.extend(args.iter().copied());
        let out = oxifaster(&all);
        assert!(!out.status.success(), "{args:?}: {}", text(&out));
        assert!(text(&out).contains(says), "{args:?}: {}", text(&out));
        assert!(!text(&out).contains("Mops"), "{args:?} ran: {}", text(&out));
    }
}

#[test]
fn raft_commands_refuse_what_cannot_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_str().expect("utf-8");
    for (args, says) in [
        (
            vec!["raft-node", "--id", "1", "--addr", "127.0.0.1:0", "--dir", d, "--peers", "x"],
            "ID=HOST:PORT",
        ),
        (
            vec!["raft-node", "--id", "1", "--addr", "127.0.0.1:0", "--dir", d, "--peers", "0=a:1"],
            "start at 1",
        ),
        (
            vec![
                "raft-node",
                "--id",
                "5",
                "--addr",
                "127.0.0.1:0",
                "--dir",
                d,
                "--peers",
                "1=a:1",
                "--init",
            ],
            "not in --peers",
        ),
        (vec!["raft-bench", "--nodes", "0"], "at least 1"),
        (vec!["raft-bench", "--nodes", "1", "--failover"], "at least 3 nodes"),
    ] {
        let out = oxifaster(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        assert!(text(&out).contains(says), "{args:?}: {}", text(&out));
    }
    // A node on another node's directory stops with a named error.
    std::fs::write(dir.path().join("IDENTITY"), "cluster=elsewhere\nnode=1\n").expect("write");
    let out = oxifaster(&[
        "raft-node",
        "--id",
        "1",
        "--addr",
        "127.0.0.1:0",
        "--dir",
        d,
        "--peers",
        "1=127.0.0.1:1",
    ]);
    assert!(!out.status.success());
    assert!(text(&out).contains("belongs to cluster=elsewhere"), "{}", text(&out));
}
