//! Statistics: what the store's sessions did, and where its log, index,
//! checkpoints, compaction and read cache stand ([`Store::stats`]).
//!
//! Operation counters are per session, on the session's own cache line,
//! written only by the session's thread (a relaxed load and store: no
//! locked instruction on the hot path), and summed on demand; a closed
//! session's counts are added to the store's. A snapshot is a plain value:
//! counters only grow, so two snapshots subtract to a rate.
//!
//! [`Store::stats`]: crate::Store::stats

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::store::CompactionTotals;

/// What a session counts, by position in [`SessionCounters`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub(crate) enum Count {
    ReadsFound,
    ReadsNotFound,
    ReadsPending,
    ReadsFromCache,
    UpsertsInPlace,
    UpsertsAppended,
    RmwsInPlace,
    RmwsCopyUpdate,
    RmwsInitial,
    RmwsPending,
    Deletes,
    Conditional,
    Retries,
    PendingCompleted,
    PendingNanos,
}

const COUNTS: usize = Count::PendingNanos as usize + 1;

/// log2 buckets of pending-operation latency, in microseconds: bucket `i`
/// holds latencies below 2^i µs (the last one everything longer).
pub const LATENCY_BUCKETS: usize = 24;

/// One session's counters: one writer (the session's thread), read by
/// [`Store::stats`](crate::Store::stats). Aligned to its own cache lines.
#[repr(align(64))]
#[derive(Debug, Default)]
pub(crate) struct SessionCounters {
    counts: [AtomicU64; COUNTS],
    latency: [AtomicU64; LATENCY_BUCKETS],
}

impl SessionCounters {
    /// Adds one to `count`. Only the session's own thread calls this (a
    /// relaxed load and store, not a read-modify-write: readers see some
    /// recent value, which is all a statistic needs).
    #[inline(always)]
    pub(crate) fn bump(&self, count: Count) {
        self.add(count, 1);
    }

    /// Adds `n` to `count` (single writer, as [`Self::bump`]).
    #[inline(always)]
    pub(crate) fn add(&self, count: Count, n: u64) {
        let c = &self.counts[count as usize];
        c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    }

    /// Records one pending operation's completion after `waited`.
    pub(crate) fn completed(&self, waited: Duration) {
        self.bump(Count::PendingCompleted);
        let nanos = u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX);
        self.add(Count::PendingNanos, nanos);
        let micros = nanos / 1_000;
        let bucket = (64 - micros.leading_zeros() as usize).min(LATENCY_BUCKETS - 1);
        let c = &self.latency[bucket];
        c.store(c.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
    }

    /// Adds this session's counts into `into` (any thread; a closed
    /// session's counts join the store's this way).
    pub(crate) fn add_into(&self, into: &SessionCounters) {
        for (from, to) in self.counts.iter().zip(&into.counts) {
            to.fetch_add(from.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        for (from, to) in self.latency.iter().zip(&into.latency) {
            to.fetch_add(from.load(Ordering::Relaxed), Ordering::Relaxed);
        }
    }

    /// Adds this session's counts to a snapshot.
    pub(crate) fn sum_into(&self, ops: &mut OperationStats, pending: &mut PendingStats) {
        let get = |c: Count| self.counts[c as usize].load(Ordering::Relaxed);
        ops.reads_found += get(Count::ReadsFound);
        ops.reads_not_found += get(Count::ReadsNotFound);
        ops.reads_pending += get(Count::ReadsPending);
        ops.reads_from_cache += get(Count::ReadsFromCache);
        ops.upserts_in_place += get(Count::UpsertsInPlace);
        ops.upserts_appended += get(Count::UpsertsAppended);
        ops.rmws_in_place += get(Count::RmwsInPlace);
        ops.rmws_copy_update += get(Count::RmwsCopyUpdate);
        ops.rmws_initial += get(Count::RmwsInitial);
        ops.rmws_pending += get(Count::RmwsPending);
        ops.deletes += get(Count::Deletes);
        ops.conditional += get(Count::Conditional);
        ops.retries += get(Count::Retries);
        pending.completed += get(Count::PendingCompleted);
        pending.total_wait += Duration::from_nanos(get(Count::PendingNanos));
        for (sum, c) in pending.latency_micros_log2.iter_mut().zip(&self.latency) {
            *sum += c.load(Ordering::Relaxed);
        }
    }
}

/// Operations by kind and outcome, summed over every session the store
/// has had in this process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct OperationStats {
    /// Reads that found a value in memory (the log's or the read cache's).
    pub reads_found: u64,
    /// Reads that found no value (no record, or a tombstone).
    pub reads_not_found: u64,
    /// Reads that went pending (the record is on the device); their
    /// completions are in [`PendingStats`].
    pub reads_pending: u64,
    /// Of the found reads, those served by the read cache.
    pub reads_from_cache: u64,
    /// Upserts that overwrote the key's mutable record in place.
    pub upserts_in_place: u64,
    /// Upserts that appended a record.
    pub upserts_appended: u64,
    /// RMWs merged into the key's mutable record in place.
    pub rmws_in_place: u64,
    /// RMWs that appended the merge of an older value (from memory or, on
    /// completion, from the device).
    pub rmws_copy_update: u64,
    /// RMWs that appended the initial value (the key had none).
    pub rmws_initial: u64,
    /// RMWs that went pending (the old value is on the device).
    pub rmws_pending: u64,
    /// Deletes.
    pub deletes: u64,
    /// Conditional operations (`insert_if_absent`, `compare_and_swap`,
    /// `delete_if`, `update_if`, ...).
    pub conditional: u64,
    /// Attempts an operation started again (a lost race for an index
    /// entry, a version change).
    pub retries: u64,
}

impl OperationStats {
    /// Every read.
    pub fn reads(&self) -> u64 {
        self.reads_found + self.reads_not_found + self.reads_pending
    }

    /// Every upsert.
    pub fn upserts(&self) -> u64 {
        self.upserts_in_place + self.upserts_appended
    }
}

/// Pending operations' completions, and how long they waited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PendingStats {
    /// Pending operations completed (by `complete_pending`, a blocking
    /// read or an async operation).
    pub completed: u64,
    /// Their waits, summed (from going pending to completion).
    pub total_wait: Duration,
    /// Their waits as a histogram: entry `i` counts waits below 2^i
    /// microseconds and at least half that (entry 0: below 1 µs; the last:
    /// everything longer).
    pub latency_micros_log2: [u64; LATENCY_BUCKETS],
}

/// The hash index, from counters (no walk of the table; see
/// [`Store::index_stats`](crate::Store::index_stats) for the entries).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct IndexCounts {
    /// Main buckets.
    pub buckets: u64,
    /// Overflow buckets in use.
    pub overflow_buckets: u64,
    /// Times the table doubled in this process.
    pub growths: u64,
}

/// The log's regions and bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LogStats {
    /// The first address still in the log.
    pub begin_address: u64,
    /// The first address in memory (below it: on the device only).
    pub head_address: u64,
    /// The first mutable address (below it: read-only).
    pub read_only_address: u64,
    /// Where the next record goes.
    pub tail_address: u64,
    /// Everything below it is on the device.
    pub flushed_until: u64,
    /// Bytes of log memory (the page frames).
    pub memory_bytes: u64,
    /// Bytes of the log in memory now (`tail - head`).
    pub in_memory_bytes: u64,
    /// Bytes of the log on the device (`flushed_until - begin`).
    pub on_device_bytes: u64,
}

/// Checkpoints and recoveries in this process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CheckpointStats {
    /// Checkpoints that completed.
    pub taken: u64,
    /// Checkpoints that failed.
    pub failed: u64,
    /// Time spent in completed checkpoints, summed.
    pub total_duration: Duration,
    /// The last completed checkpoint's duration.
    pub last_duration: Duration,
    /// Bytes completed checkpoints wrote (index, snapshot and metadata
    /// files), summed.
    pub bytes_written: u64,
    /// Recoveries that opened this store (0 or 1).
    pub recoveries: u64,
    /// How long the recovery took.
    pub recovery_duration: Duration,
}

/// The read cache, if the store has one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReadCacheStats {
    /// Its size in bytes.
    pub bytes: u64,
    /// Records copied in and linked.
    pub inserted: u64,
    /// Records not kept (the entry changed meanwhile, or no room while a
    /// frame drained).
    pub skipped: u64,
    /// Pages evicted (their records unlinked).
    pub evicted_pages: u64,
}

/// A snapshot of the store's statistics ([`Store::stats`](crate::Store::stats)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Operations by kind and outcome.
    pub operations: OperationStats,
    /// Pending operations' completions and latency.
    pub pending: PendingStats,
    /// Sessions open now.
    pub sessions_open: u64,
    /// The hash index.
    pub index: IndexCounts,
    /// The log.
    pub log: LogStats,
    /// Checkpoints and recovery.
    pub checkpoints: CheckpointStats,
    /// Compaction (zero without any).
    pub compaction: CompactionTotals,
    /// The read cache (`None` without one).
    pub read_cache: Option<ReadCacheStats>,
}

/// Checkpoint counters the checkpoint machine adds to.
#[derive(Debug, Default)]
pub(crate) struct CheckpointCounters {
    pub(crate) taken: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) nanos: AtomicU64,
    pub(crate) last_nanos: AtomicU64,
    pub(crate) bytes: AtomicU64,
    pub(crate) recoveries: AtomicU64,
    pub(crate) recovery_nanos: AtomicU64,
}

impl CheckpointCounters {
    /// A checkpoint ended after `took`, writing `bytes` (or failed).
    pub(crate) fn checkpoint(&self, ok: bool, took: Duration, bytes: u64) {
        if !ok {
            self.failed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.taken.fetch_add(1, Ordering::Relaxed);
        self.nanos.fetch_add(nanos, Ordering::Relaxed);
        self.last_nanos.store(nanos, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// The store was recovered, which took `took`.
    pub(crate) fn recovered(&self, took: Duration) {
        self.recoveries.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.recovery_nanos.store(nanos, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> CheckpointStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CheckpointStats {
            taken: get(&self.taken),
            failed: get(&self.failed),
            total_duration: Duration::from_nanos(get(&self.nanos)),
            last_duration: Duration::from_nanos(get(&self.last_nanos)),
            bytes_written: get(&self.bytes),
            recoveries: get(&self.recoveries),
            recovery_duration: Duration::from_nanos(get(&self.recovery_nanos)),
        }
    }
}

/// One exported number: its name (after `oxifaster_`), labels, kind
/// (`true`: a counter, which only grows; `false`: a gauge), help text and
/// value.
struct Metric {
    name: &'static str,
    labels: &'static [(&'static str, &'static str)],
    counter: bool,
    help: &'static str,
    value: f64,
}

impl Stats {
    /// Every number of the snapshot as a metric (counters end in
    /// `_total`; sizes in `_bytes`, durations in `_seconds`).
    fn metrics(&self) -> Vec<Metric> {
        let o = &self.operations;
        let m = |name, labels, counter, help, value: u64| Metric {
            name,
            labels,
            counter,
            help,
            value: value as f64,
        };
        let secs = |name, labels, counter, help, d: Duration| Metric {
            name,
            labels,
            counter,
            help,
            value: d.as_secs_f64(),
        };
        const OPS: &str = "Operations by kind and result.";
        let mut out = vec![
            m("operations_total", &[("op", "read"), ("result", "found")], true, OPS, o.reads_found),
            m(
                "operations_total",
                &[("op", "read"), ("result", "not_found")],
                true,
                OPS,
                o.reads_not_found,
            ),
            m(
                "operations_total",
                &[("op", "read"), ("result", "pending")],
                true,
                OPS,
                o.reads_pending,
            ),
            m(
                "operations_total",
                &[("op", "upsert"), ("result", "in_place")],
                true,
                OPS,
                o.upserts_in_place,
            ),
            m(
                "operations_total",
                &[("op", "upsert"), ("result", "appended")],
                true,
                OPS,
                o.upserts_appended,
            ),
            m(
                "operations_total",
                &[("op", "rmw"), ("result", "in_place")],
                true,
                OPS,
                o.rmws_in_place,
            ),
            m(
                "operations_total",
                &[("op", "rmw"), ("result", "copy_update")],
                true,
                OPS,
                o.rmws_copy_update,
            ),
            m(
                "operations_total",
                &[("op", "rmw"), ("result", "initial")],
                true,
                OPS,
                o.rmws_initial,
            ),
            m(
                "operations_total",
                &[("op", "rmw"), ("result", "pending")],
                true,
                OPS,
                o.rmws_pending,
            ),
            m("operations_total", &[("op", "delete"), ("result", "done")], true, OPS, o.deletes),
            m(
                "operations_total",
                &[("op", "conditional"), ("result", "done")],
                true,
                OPS,
                o.conditional,
            ),
            m(
                "read_cache_hits_total",
                &[],
                true,
                "Reads served by the read cache.",
                o.reads_from_cache,
            ),
            m("retries_total", &[], true, "Operation attempts started again.", o.retries),
            m(
                "pending_completed_total",
                &[],
                true,
                "Pending operations completed.",
                self.pending.completed,
            ),
            secs(
                "pending_wait_seconds_total",
                &[],
                true,
                "Pending operations' waits, summed.",
                self.pending.total_wait,
            ),
            m("sessions_open", &[], false, "Sessions open now.", self.sessions_open),
            m("index_buckets", &[], false, "Main buckets of the hash index.", self.index.buckets),
            m(
                "index_overflow_buckets",
                &[],
                false,
                "Overflow buckets in use.",
                self.index.overflow_buckets,
            ),
            m(
                "index_growths_total",
                &[],
                true,
                "Times the hash index doubled.",
                self.index.growths,
            ),
            m("log_memory_bytes", &[], false, "Bytes of log memory.", self.log.memory_bytes),
            m(
                "log_in_memory_bytes",
                &[],
                false,
                "Bytes of the log in memory now.",
                self.log.in_memory_bytes,
            ),
            m(
                "log_on_device_bytes",
                &[],
                false,
                "Bytes of the log on the device.",
                self.log.on_device_bytes,
            ),
            m(
                "log_tail_address_bytes",
                &[],
                false,
                "The log's tail address.",
                self.log.tail_address,
            ),
            m(
                "log_begin_address_bytes",
                &[],
                false,
                "The log's begin address.",
                self.log.begin_address,
            ),
            m(
                "checkpoints_total",
                &[("result", "ok")],
                true,
                "Checkpoints by result.",
                self.checkpoints.taken,
            ),
            m(
                "checkpoints_total",
                &[("result", "failed")],
                true,
                "Checkpoints by result.",
                self.checkpoints.failed,
            ),
            secs(
                "checkpoint_seconds_total",
                &[],
                true,
                "Time in completed checkpoints.",
                self.checkpoints.total_duration,
            ),
            secs(
                "checkpoint_last_seconds",
                &[],
                false,
                "The last checkpoint's duration.",
                self.checkpoints.last_duration,
            ),
            m(
                "checkpoint_written_bytes_total",
                &[],
                true,
                "Bytes checkpoints wrote.",
                self.checkpoints.bytes_written,
            ),
            m(
                "recoveries_total",
                &[],
                true,
                "Recoveries that opened the store.",
                self.checkpoints.recoveries,
            ),
            secs(
                "recovery_seconds",
                &[],
                false,
                "How long the recovery took.",
                self.checkpoints.recovery_duration,
            ),
            m("compactions_total", &[], true, "Compactions run.", self.compaction.compactions),
            m(
                "compaction_scanned_bytes_total",
                &[],
                true,
                "Log bytes compaction scanned.",
                self.compaction.scanned_bytes,
            ),
            m(
                "compaction_copied_bytes_total",
                &[],
                true,
                "Bytes compaction copied to the tail.",
                self.compaction.copied_bytes,
            ),
            m(
                "compaction_reclaimed_bytes_total",
                &[],
                true,
                "Log bytes compaction reclaimed.",
                self.compaction.reclaimed_bytes,
            ),
            secs(
                "compaction_seconds_total",
                &[],
                true,
                "Time in compaction.",
                self.compaction.duration,
            ),
        ];
        if let Some(c) = &self.read_cache {
            out.extend([
                m("read_cache_bytes", &[], false, "Bytes of the read cache.", c.bytes),
                m(
                    "read_cache_inserted_total",
                    &[],
                    true,
                    "Records copied into the read cache.",
                    c.inserted,
                ),
                m(
                    "read_cache_skipped_total",
                    &[],
                    true,
                    "Records the read cache did not keep.",
                    c.skipped,
                ),
                m(
                    "read_cache_evicted_pages_total",
                    &[],
                    true,
                    "Read-cache pages evicted.",
                    c.evicted_pages,
                ),
            ]);
        }
        out
    }

    /// The snapshot in the Prometheus text exposition format (version
    /// 0.0.4): every metric named `oxifaster_...`, with `# HELP` and
    /// `# TYPE` lines, and the pending-operation latency as the histogram
    /// `oxifaster_pending_wait_seconds` (buckets at powers of two of a
    /// microsecond).
    pub fn to_prometheus(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let mut last = "";
        for metric in self.metrics() {
            if metric.name != last {
                let kind = if metric.counter { "counter" } else { "gauge" };
                let _ = writeln!(out, "# HELP oxifaster_{} {}", metric.name, metric.help);
                let _ = writeln!(out, "# TYPE oxifaster_{} {kind}", metric.name);
                last = metric.name;
            }
            let labels: Vec<String> =
                metric.labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
            let labels =
                if labels.is_empty() { String::new() } else { format!("{{{}}}", labels.join(",")) };
            let _ = writeln!(out, "oxifaster_{}{labels} {}", metric.name, metric.value);
        }
        let name = "oxifaster_pending_wait_seconds";
        let _ = writeln!(out, "# HELP {name} How long pending operations waited.");
        let _ = writeln!(out, "# TYPE {name} histogram");
        let mut cumulative = 0u64;
        for (i, count) in self.pending.latency_micros_log2.iter().enumerate() {
            cumulative += count;
            if i + 1 < LATENCY_BUCKETS {
                let le = (1u64 << i) as f64 / 1e6;
                let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
            }
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let _ = writeln!(out, "{name}_sum {}", self.pending.total_wait.as_secs_f64());
        let _ = writeln!(out, "{name}_count {cumulative}");
        out
    }

    /// Records the snapshot through the `metrics` facade (feature
    /// `metrics`), so that any installed recorder (a Prometheus exporter,
    /// StatsD, ...) sees it: counters as absolute values, gauges set; the
    /// same names and labels as [`Self::to_prometheus`], without the
    /// histogram (its sum and count are the counters
    /// `oxifaster_pending_wait_seconds_total` and
    /// `oxifaster_pending_completed_total`). Call it periodically.
    #[cfg(feature = "metrics")]
    pub fn record_metrics(&self) {
        for metric in self.metrics() {
            let name = format!("oxifaster_{}", metric.name);
            let labels: Vec<metrics::Label> =
                metric.labels.iter().map(|&(k, v)| metrics::Label::new(k, v)).collect();
            if metric.counter {
                // Counters take whole numbers: durations in seconds are
                // rounded down (their `_seconds_total` gauges below keep
                // the fraction).
                if metric.name.ends_with("_seconds_total") {
                    metrics::gauge!(name, labels).set(metric.value);
                } else {
                    metrics::counter!(name, labels).absolute(metric.value as u64);
                }
            } else {
                metrics::gauge!(name, labels).set(metric.value);
            }
        }
    }
}

#[cfg(all(test, not(oxifaster_loom)))]
mod tests {
    use super::*;

    #[test]
    fn latencies_land_in_their_power_of_two_bucket() {
        let c = SessionCounters::default();
        for micros in [0u64, 1, 3, 1000, 1 << 40] {
            c.completed(Duration::from_micros(micros));
        }
        let (mut ops, mut pending) = (OperationStats::default(), PendingStats::default());
        c.sum_into(&mut ops, &mut pending);
        assert_eq!(pending.completed, 5);
        let h = pending.latency_micros_log2;
        assert_eq!((h[0], h[1], h[2], h[10], h[LATENCY_BUCKETS - 1]), (1, 1, 1, 1, 1));
        let other = SessionCounters::default();
        c.add_into(&other);
        other.bump(Count::Deletes);
        other.sum_into(&mut ops, &mut pending);
        assert_eq!((ops.deletes, pending.completed), (1, 10));
    }
}
