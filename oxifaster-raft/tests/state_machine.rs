//! The state machine alone: what survives a reopen, exactly-once client
//! serials, and a damaged snapshot refused with nothing changed.

use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, EntryPayload, LogId, RaftSnapshotBuilder};
use oxifaster_raft::types::{Proposal, Response};
use oxifaster_raft::{Command, Request, StateMachine, TypeConfig};

fn rmw(index: u64, client: u64, serial: u64, key: u64, by: u64) -> openraft::Entry<TypeConfig> {
    openraft::Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Proposal(vec![Request {
            client,
            serial,
            command: Command::Rmw {
                key: key.to_ne_bytes().to_vec(),
                input: by.to_ne_bytes().to_vec(),
            },
        }])),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reopen_recovers_the_snapshot_cut_and_serials_apply_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let mut sm = StateMachine::<u64, u64>::open(dir.path()).expect("open");
        for i in 1..=10 {
            sm.apply([rmw(i, 7, i, 1, 1)]).await.expect("apply");
        }
        let snapshot = sm.get_snapshot_builder().await.build_snapshot().await.expect("snapshot");
        assert_eq!(snapshot.meta.last_log_id.map(|l| l.index), Some(10));
        for i in 11..=20 {
            sm.apply([rmw(i, 7, i, 1, 1)]).await.expect("apply");
        }
        assert_eq!(sm.reader().read(&1).await.expect("read"), Some(20));
        // Dropped without a checkpoint of entries 11..=20 (as a crash).
    }
    let mut sm = StateMachine::<u64, u64>::open(dir.path()).expect("reopen");
    let (applied, _) = sm.applied_state().await.expect("state");
    assert_eq!(applied.map(|l| l.index), Some(10), "the snapshot's cut");
    assert_eq!(sm.reader().read(&1).await.expect("read"), Some(10));
    assert!(sm.get_current_snapshot().await.expect("current").is_some());
    // Raft applies 11..=20 again; a retry of serial 20 after that is not
    // applied twice, and an older serial is reported stale.
    for i in 11..=20 {
        sm.apply([rmw(i, 7, i, 1, 1)]).await.expect("apply");
    }
    let again = sm.apply([rmw(21, 7, 20, 1, 1)]).await.expect("apply");
    assert_eq!(again[0].0, vec![Response::Applied]);
    let stale = sm.apply([rmw(22, 7, 3, 1, 1)]).await.expect("apply");
    assert_eq!(stale[0].0, vec![Response::Stale { last: 20 }]);
    assert_eq!(sm.reader().read(&1).await.expect("read"), Some(20));
    // A command whose bytes are not the store's types is answered, not
    // applied.
    let mut bad = rmw(23, 8, 1, 1, 1);
    if let EntryPayload::Normal(p) = &mut bad.payload {
        p.0[0].command = Command::Rmw { key: vec![1, 2, 3], input: vec![1] };
    }
    let answer = sm.apply([bad]).await.expect("apply");
    assert!(matches!(answer[0].0[0], Response::Invalid(_)), "{answer:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_snapshot_is_refused_and_nothing_changes() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut leader = StateMachine::<u64, u64>::open(dir.path().join("a")).expect("open");
    for i in 1..=50 {
        leader.apply([rmw(i, 1, i, i % 5, i)]).await.expect("apply");
    }
    let built = leader.get_snapshot_builder().await.build_snapshot().await.expect("snapshot");
    let current = leader.get_current_snapshot().await.expect("current").expect("a snapshot");
    drop(current.snapshot);
    let path = std::fs::read_dir(dir.path().join("a/snapshots"))
        .expect("ls")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "snap"))
        .expect("the archive");
    let good = std::fs::read(&path).expect("read");

    let mut follower = StateMachine::<u64, u64>::open(dir.path().join("b")).expect("open");
    follower.apply([rmw(1, 9, 1, 0, 100)]).await.expect("apply");
    let before = follower.applied_state().await.expect("state");
    for at in [good.len() / 2, good.len() - 12, 20] {
        let mut bad = good.clone();
        bad[at] ^= 0x10;
        let mut file = follower.begin_receiving_snapshot().await.expect("receive");
        file.write_all(&bad).await.expect("write");
        let err = follower.install_snapshot(&built.meta, file).await.expect_err("damaged");
        let text = err.to_string();
        assert!(text.contains("corrupt") || text.contains("checksum"), "byte {at}: {text}");
        assert_eq!(follower.applied_state().await.expect("state"), before);
        assert_eq!(follower.reader().read(&0).await.expect("read"), Some(100));
    }
    let mut file = follower.begin_receiving_snapshot().await.expect("receive");
    file.write_all(&good).await.expect("write");
    follower.install_snapshot(&built.meta, file).await.expect("install");
    assert_eq!(follower.applied_state().await.expect("state").0, built.meta.last_log_id);
    for key in 0..5u64 {
        let expected: u64 = (1..=50).filter(|i| i % 5 == key).sum();
        assert_eq!(follower.reader().read(&key).await.expect("read"), Some(expected));
    }
    // And it survives a reopen.
    drop(follower);
    let mut follower = StateMachine::<u64, u64>::open(dir.path().join("b")).expect("reopen");
    assert_eq!(follower.applied_state().await.expect("state").0, built.meta.last_log_id);
    assert_eq!(
        follower.reader().read(&1).await.expect("read"),
        Some((1..=50).filter(|i| i % 5 == 1).sum())
    );
}
