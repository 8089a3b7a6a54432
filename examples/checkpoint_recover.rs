//! Checkpoint and recover: sessions keep writing while a checkpoint is
//! taken; the store is dropped (a restart); recovery restores exactly what
//! the checkpoint's commit points say, and the session continues.
//!
//! Run it with `cargo run --example checkpoint_recover`.

use oxifaster::Store;
use oxifaster::checkpoint::{self, CheckpointKind};
use oxifaster::store::RmwStatus;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let builder = || {
        Store::<u64, u64>::builder()
            .dir(dir.path())
            .log_memory_size_bytes(1 << 20)
            .page_size_bits(16)
            .table_size(1 << 14)
    };

    // A store with a session that counts page views, and a checkpoint taken
    // while a second session keeps writing on another thread.
    let (id, info) = {
        let store = builder().open()?;
        let mut views = store.start_session()?;
        for page in 0..50_000u64 {
            views.rmw(&(page % 1000), &1)?; // u64 merges by adding
        }
        views.complete_pending()?;
        let info = std::thread::scope(|scope| {
            scope.spawn(|| -> oxifaster::Result<()> {
                let mut writer = store.start_session()?;
                for key in 1_000_000..1_100_000u64 {
                    writer.upsert(&key, &key)?;
                }
                Ok(())
            });
            store.checkpoint_and_wait(CheckpointKind::FoldOver)
        })?;
        let point = info.commit_point(views.id()).expect("every session has one");
        println!(
            "checkpoint {} (version {}): session {} durable up to serial {}",
            info.token,
            info.version,
            views.id(),
            point.until
        );
        // Work after the checkpoint is not in it.
        views.upsert(&7, &0)?;
        (views.id(), info)
        // The store is dropped here: a restart.
    };

    // Recover it, continue the session, and check.
    let store = builder().recover(info.token.as_str())?;
    let (mut views, point) = store.continue_session(id)?;
    println!("recovered; session {id} resumes after serial {}", point.until);
    assert_eq!(views.read_blocking(&7)?, Some(50)); // 50 views, not the later 0
    // Recovered records start on disk: the RMW reads the old value (pending).
    if let RmwStatus::Pending { .. } = views.rmw(&7, &1)? {
        views.complete_pending()?;
    }
    assert_eq!(views.read_blocking(&7)?, Some(51));

    // Checkpoints in the directory, and retention.
    let again = store.checkpoint_and_wait(CheckpointKind::Snapshot)?;
    drop(views);
    drop(store);
    for c in checkpoint::list(dir.path())? {
        println!(
            "  {} version {} {:?} final address {:#x}",
            c.token, c.version, c.kind, c.final_address
        );
    }
    checkpoint::retain(dir.path(), 1)?;
    let latest = Store::<u64, u64>::recover_latest(dir.path())?;
    assert_eq!(latest.recovered().map(|r| r.token), Some(again.token));
    println!("ok");
    Ok(())
}
