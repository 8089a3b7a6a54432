//! Batched operations: many keys in one call, with the two dependent cache
//! misses of each operation (its hash bucket, then the record the bucket's
//! entry points to) overlapped across keys.
//!
//! Each operation of a batch is exactly the single operation: its own
//! serial number, its own protection of the session, the same protocol,
//! the same statistics, pending I/O parked in the session's queue for
//! `complete_pending`. They run in slice order, so two operations on one
//! key apply in that order, as if issued one by one. Only loads move:
//! while operation `i` runs, the CPU is already loading the bucket of key
//! `i + 2·AHEAD` and the record of key `i + AHEAD`. Those are software
//! prefetches, hints that read nothing the program sees and change nothing:
//! an entry that changes between its prefetch and its operation costs at
//! most one useless load, never a wrong result.

use super::{ReadStatus, RmwStatus, Session};
use crate::Result;
use crate::device::Device;
use crate::readcache;
use crate::record::{Key, KeyArg, Merge, Value, ValueArg};

/// How many keys ahead of the running operation its record is loaded (and
/// twice that, its bucket). A record load started `AHEAD` operations early
/// has about `AHEAD` operations' time (~30 ns each in memory) to arrive;
/// a main-memory miss takes ~100 ns.
const AHEAD: usize = 4;
/// The ring of hashes computed ahead: a power of two above `2 * AHEAD`.
const RING: usize = 16;
const _: () = assert!(RING.is_power_of_two() && RING > 2 * AHEAD);

impl<K: Key, V: Value, D: Device> Session<K, V, D> {
    /// Reads every key of `keys`. `out` is cleared, then receives one
    /// status per key, in the order of `keys`; a `Pending` read finishes
    /// in [`complete_pending`](Self::complete_pending) under its serial
    /// number, as for [`read`](Self::read).
    ///
    /// The same reads as calling `read` for each key in turn, but the
    /// memory loads of the next keys overlap the current one: on a store
    /// larger than the CPU's caches this is several times the throughput
    /// of single reads (BENCHMARKS.md, "Batched operations"). Batches of
    /// 16 to 64 keys get most of it.
    ///
    /// On an error (a value that does not decode, too many pending
    /// operations) the batch stops: `out` holds the statuses of the keys
    /// before the failed one, and the keys after it were not read.
    ///
    /// ```
    /// use oxifaster::store::ReadStatus;
    /// let store = oxifaster::Store::<u64, u64>::builder().open()?;
    /// let mut session = store.start_session()?;
    /// session.upsert_batch(&[(1, 10), (2, 20)])?;
    /// let mut found = Vec::new();
    /// session.read_batch(&[1, 2, 3], &mut found)?;
    /// assert_eq!(found, [ReadStatus::Found(10), ReadStatus::Found(20), ReadStatus::NotFound]);
    /// # Ok::<(), oxifaster::Error>(())
    /// ```
    pub fn read_batch<Q: KeyArg<K>>(
        &mut self,
        keys: &[Q],
        out: &mut Vec<ReadStatus<V>>,
    ) -> Result<()> {
        out.clear();
        out.reserve(keys.len());
        self.run_batch(
            keys.len(),
            |i| keys[i].key_arg_hash(),
            |session, i, hash, serial| {
                let status = session.read_inner(&keys[i], hash, serial);
                session.end();
                out.push(status?);
                Ok(())
            },
        )
    }

    /// Reads every key of `keys` and calls `f` with each key's index in
    /// `keys` and a zero-copy view of its value: `Found(view)`, `NotFound`,
    /// or `Pending { serial }` for a record on the device, whose value
    /// [`complete_pending`](Self::complete_pending) returns (owned) under
    /// that serial number. Calls come in the order of `keys`. Values in the
    /// log's immutable region are viewed where they lie; mutable ones (which
    /// other sessions may update in place) are first copied consistently,
    /// as for [`read_with`](Self::read_with).
    ///
    /// Errors stop the batch as for [`read_batch`](Self::read_batch):
    /// `f` has been called for the keys before the failed one.
    ///
    /// ```
    /// use oxifaster::store::ReadStatus;
    /// let store = oxifaster::Store::<u64, String>::builder().open()?;
    /// let mut session = store.start_session()?;
    /// session.upsert_batch(&[(1, "one".to_string()), (2, "two".to_string())])?;
    /// let mut total_len = 0;
    /// session.read_batch_with(&[1, 2, 3], |_, status| {
    ///     if let ReadStatus::Found(text) = status {
    ///         total_len += text.len();
    ///     }
    /// })?;
    /// assert_eq!(total_len, 6);
    /// # Ok::<(), oxifaster::Error>(())
    /// ```
    pub fn read_batch_with<Q: KeyArg<K>>(
        &mut self,
        keys: &[Q],
        mut f: impl FnMut(usize, ReadStatus<V::View<'_>>),
    ) -> Result<()> {
        self.run_batch(
            keys.len(),
            |i| keys[i].key_arg_hash(),
            |session, i, hash, serial| {
                let viewed = session.read_with_protected(&keys[i], hash, Some(serial), |status| {
                    let status = match status {
                        ReadStatus::Found(bytes) => ReadStatus::Found(V::view(bytes)?),
                        ReadStatus::NotFound => ReadStatus::NotFound,
                        ReadStatus::Pending { serial } => ReadStatus::Pending { serial },
                    };
                    f(i, status);
                    Ok::<_, crate::record::CodecError>(())
                });
                session.end();
                Ok(viewed??)
            },
        )
    }

    /// Upserts every `(key, value)` of `entries`, in order (a key that
    /// appears twice ends with its last value), with the memory loads of
    /// the next keys overlapping the current one, as
    /// [`read_batch`](Self::read_batch) does. The same upserts as calling
    /// [`upsert`](Self::upsert) for each pair in turn. An error stops the
    /// batch: the pairs before the failed one are written, the failed one
    /// and those after it are not.
    pub fn upsert_batch<Q: KeyArg<K>, W: ValueArg<V>>(&mut self, entries: &[(Q, W)]) -> Result<()> {
        self.run_batch(
            entries.len(),
            |i| entries[i].0.key_arg_hash(),
            |session, i, hash, _| {
                let (key, value) = &entries[i];
                session.upsert_begun(key, hash, value)
            },
        )
    }

    /// Read-modify-writes every `(key, input)` of `entries`, in order (two
    /// inputs for one key are both merged, the first first), with the
    /// memory loads of the next keys overlapping the current one, as
    /// [`read_batch`](Self::read_batch) does. `out` is cleared, then
    /// receives one status per pair: `Done`, or `Pending` for an old value
    /// on the device, finished by [`complete_pending`](Self::complete_pending).
    /// The same updates as calling [`rmw`](Self::rmw) for each pair in
    /// turn; an error stops the batch with `out` holding the statuses of
    /// the pairs before the failed one.
    pub fn rmw_batch<Q: KeyArg<K>>(
        &mut self,
        entries: &[(Q, V)],
        out: &mut Vec<RmwStatus>,
    ) -> Result<()>
    where
        V: Merge + Clone,
    {
        out.clear();
        out.reserve(entries.len());
        self.run_batch(
            entries.len(),
            |i| entries[i].0.key_arg_hash(),
            |session, i, hash, serial| {
                let (key, input) = &entries[i];
                out.push(session.rmw_begun(key, hash, input, serial)?);
                Ok(())
            },
        )
    }

    /// Runs `op(session, i, hash, serial)` for `i` in `0..n` in order, each
    /// with a fresh serial number and the session protected (`op` ends the
    /// operation), while prefetching ahead: the bucket of key `i + 2·AHEAD`
    /// (hashed by `hash_of`, once) and the record its entry points to at
    /// `i + AHEAD`. Stops at the first error.
    #[inline(always)]
    fn run_batch(
        &mut self,
        n: usize,
        hash_of: impl Fn(usize) -> u64,
        mut op: impl FnMut(&mut Self, usize, u64, u64) -> Result<()>,
    ) -> Result<()> {
        let mut hashes = [0u64; RING];
        for i in 0..n {
            let serial = self.next_serial();
            // Prefetching reads the index: protected, as the operation.
            self.begin();
            if i == 0 {
                for (j, slot) in hashes.iter_mut().enumerate().take(n.min(2 * AHEAD)) {
                    *slot = hash_of(j);
                    self.store.index.prefetch(*slot);
                }
                for &hash in &hashes[..n.min(AHEAD)] {
                    self.prefetch_record(hash);
                }
            }
            let far = i + 2 * AHEAD;
            if far < n {
                let hash = hash_of(far);
                hashes[far % RING] = hash;
                self.store.index.prefetch(hash);
            }
            let near = i + AHEAD;
            if near < n {
                self.prefetch_record(hashes[near % RING]);
            }
            op(self, i, hashes[i % RING], serial)?;
        }
        Ok(())
    }

    /// Starts loading the log record `hash`'s index entry points to (its
    /// bucket should be on its way already). Protected.
    #[inline(always)]
    fn prefetch_record(&self, hash: u64) {
        if let Some(slot) = self.store.index.find_entry(hash) {
            let address = slot.entry.address();
            if !readcache::is_cached(address) {
                self.store.log.prefetch(address);
            }
        }
    }
}
