//! Support code of the `oxifaster` command-line tool, shared with the
//! benches: YCSB-style key choosers and operation mixes.

pub mod workload;
