//! A linearizability checker for histories of reads and writes on
//! registers: Wing and Gong's search, with Lowe's memo of the (linearized
//! set, register value) pairs already tried. Registers are independent
//! objects, so a history is checked one key at a time (linearizability is
//! compositional).
//!
//! An operation is known by when it was invoked and when its response came
//! back (any clock that orders events in one process: the checker compares
//! them only). It is linearizable if some order of the operations respects
//! real time (an operation that responded before another was invoked comes
//! first) and register semantics (a read returns the last value written
//! before it, or the initial value).

use std::collections::{BTreeMap, HashSet};

/// One operation on one register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Op {
    /// The register (key).
    pub key: u64,
    /// When it was invoked.
    pub call: u64,
    /// When its response arrived.
    pub ret: u64,
    /// What it did.
    pub kind: OpKind,
}

/// A write or a read, with its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    /// Wrote the value.
    Write(u64),
    /// Read the value (`None`: the register had none).
    Read(Option<u64>),
}

/// The first register whose history is not linearizable, if any.
pub fn check(history: &[Op]) -> Result<(), u64> {
    let mut by_key: BTreeMap<u64, Vec<Op>> = BTreeMap::new();
    for op in history {
        by_key.entry(op.key).or_default().push(*op);
    }
    for (key, ops) in by_key {
        if !check_register(&ops, None) {
            return Err(key);
        }
    }
    Ok(())
}

/// Whether `ops` (one register's, starting at `initial`) is linearizable.
pub fn check_register(ops: &[Op], initial: Option<u64>) -> bool {
    let mut ops = ops.to_vec();
    ops.sort_by_key(|op| op.call);
    let mut search =
        Search { ops: &ops, done: vec![0; ops.len().div_ceil(64)], seen: HashSet::new() };
    search.run(initial, ops.len())
}

struct Search<'a> {
    ops: &'a [Op],
    /// The linearized operations (a bit per operation).
    done: Vec<u64>,
    /// (linearized set, value) pairs known to lead nowhere.
    seen: HashSet<(Vec<u64>, Option<u64>)>,
}

impl Search<'_> {
    fn is_done(&self, i: usize) -> bool {
        self.done[i / 64] & (1 << (i % 64)) != 0
    }

    fn flip(&mut self, i: usize) {
        self.done[i / 64] ^= 1 << (i % 64);
    }

    /// Whether the operations not yet linearized (`left` of them) can be,
    /// from register value `value`.
    fn run(&mut self, value: Option<u64>, left: usize) -> bool {
        if left == 0 {
            return true;
        }
        if !self.seen.insert((self.done.clone(), value)) {
            return false;
        }
        // An operation can go next only if it was invoked before every
        // pending operation's response (else that one must come first).
        let first_ret = (0..self.ops.len())
            .filter(|&i| !self.is_done(i))
            .map(|i| self.ops[i].ret)
            .min()
            .unwrap_or(u64::MAX);
        for i in 0..self.ops.len() {
            let op = self.ops[i];
            if op.call > first_ret {
                // Sorted by invocation: no later one qualifies either.
                break;
            }
            if self.is_done(i) {
                continue;
            }
            let next = match op.kind {
                OpKind::Write(v) => Some(v),
                OpKind::Read(r) if r == value => value,
                OpKind::Read(_) => continue,
            };
            self.flip(i);
            if self.run(next, left - 1) {
                return true;
            }
            self.flip(i);
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(call: u64, ret: u64, v: u64) -> Op {
        Op { key: 1, call, ret, kind: OpKind::Write(v) }
    }
    fn r(call: u64, ret: u64, v: Option<u64>) -> Op {
        Op { key: 1, call, ret, kind: OpKind::Read(v) }
    }

    #[test]
    fn sequential_histories() {
        assert!(check_register(&[w(0, 1, 5), r(2, 3, Some(5))], None));
        assert!(check_register(&[r(0, 1, None), w(2, 3, 5)], None));
        // A stale read after the write responded.
        assert!(!check_register(&[w(0, 1, 5), r(2, 3, None)], None));
        // A read of a value never written.
        assert!(!check_register(&[w(0, 1, 5), r(2, 3, Some(6))], None));
    }

    #[test]
    fn concurrent_operations_may_order_either_way() {
        // The read overlaps the write: both values are fine.
        assert!(check_register(&[w(0, 10, 5), r(1, 2, None)], None));
        assert!(check_register(&[w(0, 10, 5), r(1, 2, Some(5))], None));
        // Two overlapping writes, then reads that must agree on the last.
        let ok = [w(0, 10, 1), w(1, 11, 2), r(12, 13, Some(1)), r(14, 15, Some(1))];
        assert!(check_register(&ok, None));
        let flip_flop = [w(0, 10, 1), w(1, 11, 2), r(12, 13, Some(1)), r(14, 15, Some(2))];
        assert!(!check_register(&flip_flop, None));
    }

    #[test]
    fn a_read_cannot_see_a_write_invoked_after_it_responded() {
        assert!(!check_register(&[r(0, 1, Some(5)), w(2, 3, 5)], None));
    }

    #[test]
    fn keys_are_checked_apart() {
        let mut a = w(0, 1, 5);
        a.key = 1;
        let mut b = r(2, 3, Some(5));
        b.key = 2;
        assert_eq!(check(&[a, b]), Err(2));
        b.key = 1;
        assert_eq!(check(&[a, b]), Ok(()));
    }

    #[test]
    fn a_long_concurrent_history_is_checked_quickly() {
        // 1,200 operations on one register: each write overlapped by a read
        // of its value (linearizable: the write first).
        let mut ops = Vec::new();
        let mut t = 0;
        for i in 0..600u64 {
            ops.push(w(t, t + 3, i));
            ops.push(r(t + 1, t + 4, Some(i)));
            t += 5;
        }
        let start = std::time::Instant::now();
        assert!(check_register(&ops, None));
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
    }
}
