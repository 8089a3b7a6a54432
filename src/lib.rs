//! Support code of the `oxifaster` command-line tool, shared with the
//! benches and tests: YCSB-style key choosers and operation mixes, and the
//! child-process runner of the kill -9 tests, and a cluster of Raft node
//! processes.

pub mod kill9;
pub mod raft_cluster;
pub mod workload;
