//! A full disk, for real: the store lives on a small tmpfs filesystem and
//! writes until the filesystem says `ENOSPC`.
//!
//! - The failure is typed: [`Error::is_disk_full`] holds for it (the I/O
//!   error's kind is kept, not flattened into a string), and for every
//!   later write it refuses.
//! - The store stays readable: every acknowledged write reads back.
//! - Once space is freed, the store reopens with exactly its last
//!   checkpoint.
//! - With a disk budget below the free space, a run that writes many times
//!   the filesystem's size never meets `ENOSPC`.
//!
//! Mounting needs privileges (`.ci/run` runs as root). Where `mount` is
//! refused, the tests say so and pass without running, unless
//! `OXIFASTER_REQUIRE_MOUNT` is set (as `.ci/run` sets it), which makes
//! that a failure.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use oxifaster::checkpoint::CheckpointKind;
use oxifaster::{Error, Store};

/// A tmpfs mounted for the test's life.
struct Tmpfs {
    path: PathBuf,
    _parent: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `bytes`, or `None` where mounting is refused.
    fn mount(bytes: u64) -> Option<Self> {
        let parent = tempfile::tempdir().expect("tempdir");
        let path = parent.path().join("fs");
        std::fs::create_dir(&path).expect("mount point");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(&path)
            .stderr(std::process::Stdio::null())
            .status();
        if status.is_ok_and(|s| s.success()) {
            return Some(Self { path, _parent: parent });
        }
        assert!(
            std::env::var_os("OXIFASTER_REQUIRE_MOUNT").is_none(),
            "OXIFASTER_REQUIRE_MOUNT is set but mounting a tmpfs was refused"
        );
        eprintln!("skipped: mounting a tmpfs was refused (run as root to test a full disk)");
        None
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

fn builder(dir: &Path) -> oxifaster::StoreBuilder<u64, String> {
    Store::<u64, String>::builder()
        .dir(dir)
        .table_size(1024)
        .page_size_bits(16)
        .log_memory_size_bytes(1 << 20)
        .segment_size_bits(20)
        .checkpoint_every(None)
        .checkpoint_on_close(false)
}

fn value(key: u64, step: u64) -> String {
    format!("{key}:{step}:{}", "v".repeat(150 + (step % 50) as usize))
}

#[test]
fn a_full_disk_is_a_typed_error_the_store_stays_readable_and_reopens() {
    let Some(fs) = Tmpfs::mount(24 << 20) else { return };
    // Ballast: the space an operator frees afterwards.
    let ballast = fs.path.join("ballast");
    std::fs::write(&ballast, vec![1u8; 6 << 20]).expect("ballast");
    let dir = fs.path.join("store");
    let mut model: BTreeMap<u64, String> = BTreeMap::new();
    let mut checkpointed = BTreeMap::new();
    let failure = {
        let store = builder(&dir).open().expect("open");
        let mut session = store.start_session().expect("session");
        let mut failure = None;
        'writing: for step in 0u64.. {
            for i in 0..2_000u64 {
                let key = (step * 2_000 + i) % 5_000;
                let v = value(key, step);
                match session.upsert(&key, v.as_str()) {
                    Ok(()) => {
                        model.insert(key, v);
                    }
                    Err(e) => {
                        failure = Some(e);
                        break 'writing;
                    }
                }
            }
            match store.checkpoint_and_wait(CheckpointKind::FoldOver) {
                Ok(_) => checkpointed = model.clone(),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
            assert!(step < 10_000, "24 MiB never filled");
        }
        let failure = failure.expect("the filesystem fills");
        assert!(failure.is_disk_full(), "not typed as a full disk: {failure:?}");
        // Later writes are refused, typed the same way, and nothing hangs.
        let later = session.upsert(&1, "later").expect_err("a write after the disk filled");
        assert!(later.is_disk_full(), "{later:?}");
        assert!(matches!(later, Error::Poisoned { .. } | Error::Io { .. }), "{later:?}");
        // Every acknowledged write still reads back.
        for (key, v) in &model {
            assert_eq!(session.read_blocking(key).expect("read").as_ref(), Some(v), "key {key}");
        }
        failure
    };
    eprintln!("the disk filled: {failure}");
    // The operator frees space; the store reopens with its last checkpoint.
    std::fs::remove_file(&ballast).expect("free space");
    let store = builder(&dir).open().expect("reopen after freeing space");
    let mut session = store.start_session().expect("session");
    assert!(!checkpointed.is_empty(), "no checkpoint completed before the disk filled");
    for key in 0..5_000u64 {
        assert_eq!(
            session.read_blocking(&key).expect("read"),
            checkpointed.get(&key).cloned(),
            "key {key} after recovery"
        );
    }
    // And it writes again.
    session.upsert(&1, "again").expect("a write once space is free");
    store.checkpoint_and_wait(CheckpointKind::FoldOver).expect("checkpoint");
}

#[test]
fn a_budget_below_the_free_space_never_meets_a_full_disk() {
    let size = 24u64 << 20;
    let Some(fs) = Tmpfs::mount(size) else { return };
    let dir = fs.path.join("store");
    let budget = 10u64 << 20;
    let store =
        builder(&dir).disk_budget(Some(budget)).checkpoint_every(None).open().expect("open");
    let mut session = store.start_session().expect("session");
    let mut model: BTreeMap<u64, String> = BTreeMap::new();
    let (mut written, mut step) = (0u64, 0u64);
    let mut largest = 0;
    // Five times the filesystem, over 3,000 keys (about 0.6 MiB live).
    while written < 5 * size {
        let key = step % 3_000;
        let v = value(key, step);
        session.upsert(&key, v.as_str()).unwrap_or_else(|e| panic!("step {step}: {e:?}"));
        written += 24 + v.len() as u64;
        model.insert(key, v);
        step += 1;
        if step.is_multiple_of(200) {
            largest = largest.max(oxifaster::compaction::directory_bytes(&dir));
        }
        if step.is_multiple_of(20_000) {
            // The budget's rounds checkpoint too: one may be running.
            loop {
                match store.checkpoint_and_wait(CheckpointKind::FoldOver) {
                    Err(Error::CheckpointInProgress { .. }) => std::thread::yield_now(),
                    other => {
                        other.expect("checkpoint");
                        break;
                    }
                };
            }
        }
    }
    assert!(largest <= budget, "the directory reached {largest} bytes for a budget of {budget}");
    let totals = store.compaction_totals();
    assert!(totals.compactions > 0 && totals.reclaimed_bytes > 0, "{totals:?}");
    for (key, v) in &model {
        assert_eq!(session.read_blocking(key).expect("read").as_ref(), Some(v), "key {key}");
    }
}
