//! openraft's own storage test suite, against the log on FasterLog and the
//! state machine on a `Store<u64, u64>`.

use openraft::testing::{StoreBuilder, Suite};
use oxifaster_raft::types::StorageError;
use oxifaster_raft::{LogStore, StateMachine, TypeConfig};

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine<u64, u64>, tempfile::TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachine<u64, u64>), StorageError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let fail = |e: oxifaster_raft::Error| {
            StorageError::from(openraft::StorageIOError::write(openraft::AnyError::new(&e)))
        };
        let log = LogStore::open(dir.path().join("log")).map_err(fail)?;
        let sm = StateMachine::open(dir.path().join("sm")).map_err(fail)?;
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite() {
    Suite::test_all(Builder).expect("the suite");
}
