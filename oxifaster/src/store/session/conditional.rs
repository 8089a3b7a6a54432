//! Conditional operations: an update that decides, seeing the key's
//! current value, to set a new value, keep the old one, delete the key or
//! abort — and insert-if-absent, compare-and-swap and delete-if on it.
//!
//! ## Protocol and invariant
//!
//! A decision is taken on the value the key holds at one instant, and what
//! it decided is written only if nothing changed the key since:
//!
//! - **In place** (the key's newest record is mutable, live or a tombstone,
//!   at the session's version): for a value of more than one word, under
//!   the record's seqlock (`RecordPtr::decide_in_place`). Every in-place
//!   writer takes the same lock and checks the sealed and tombstone bits
//!   under it, so the value decided on is the value replaced, and no
//!   update lands in a record deleted after its writer looked. A new value
//!   of another size seals the record under the lock and is appended.
//! - **One-word values** are decided on a load and written with a CAS of
//!   the word from the value decided on. A decision to delete seals the
//!   record (`RecordPtr::seal_atomic`) and waits for an epoch drain: the
//!   one-word writers check the sealed bit before they store, so after the
//!   drain the value is frozen; the decision is then taken again on it and
//!   its tombstone appended.
//! - **Otherwise** (the record is immutable, sealed, of an older version,
//!   on the device or absent) the decision's record is appended with a CAS
//!   of the key's index entry from the entry the decision's walk started
//!   at, as for a read-modify-write: if the CAS fails, a record was added
//!   to the chain since, and the operation runs again from the index. The
//!   fuzzy region (between the safe read-only and the read-only address)
//!   is waited out as the read-modify-write does.
//!
//! So a decision that keeps or aborts wrote nothing, and a decision that
//! writes is linearized at the lock, CAS or entry CAS that publishes it,
//! where the value decided on is still the key's value. The closure may run
//! more than once when other sessions race on the key; only the run whose
//! decision is published (or the last one, for keep and abort) counts.
//! Stressed in `tests/conditional.rs` (compare-and-swap counters and
//! delete-if races from several sessions, sums exact).

use super::{Location, PendingKind, PendingOp, Session};
use crate::device::Device;
use crate::record::{AlignedBytes, ByteComparer, Key, KeyArg, Sink, Value, ValueArg};
use crate::store::record::{InPlace, RecordPtr};
use crate::{Error, Result};

/// What a conditional update ([`Session::update`]) does with a key, decided
/// from its current value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision<V> {
    /// Store this value.
    Set(V),
    /// Leave the key as it is: the update succeeded and wrote nothing.
    Keep,
    /// Delete the key.
    Delete,
    /// Give up: nothing is written, and the update reports
    /// [`Outcome::Aborted`].
    Abort,
}

/// What a conditional operation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// A new value was stored (inserted, swapped, or set by the closure).
    Set,
    /// The closure kept the value: nothing was written.
    Kept,
    /// The key is deleted (a key that had no value stays absent, and
    /// nothing is written).
    Deleted,
    /// The condition failed (insert-if-absent of a present key,
    /// compare-and-swap of another value, delete-if whose predicate said
    /// no, a closure that aborted): nothing was written.
    Aborted,
}

/// The outcome of a conditional operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum UpdateStatus {
    /// The operation is done.
    Done(Outcome),
    /// The key's value is on the device: `complete_pending` decides and
    /// reports it ([`super::CompletedOp::Update`]) under this serial.
    Pending {
        /// The operation's serial number in this session.
        serial: u64,
    },
}

/// A decision without its value (which the decider keeps).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Set,
    Keep,
    Delete,
    Abort,
}

impl Verdict {
    fn outcome(self) -> Outcome {
        match self {
            Verdict::Set => Outcome::Set,
            Verdict::Keep => Outcome::Kept,
            Verdict::Delete => Outcome::Deleted,
            Verdict::Abort => Outcome::Aborted,
        }
    }

    /// The verdict of `decision`, its value moved into `slot`.
    fn of<V>(decision: Decision<V>, slot: &mut Option<V>) -> Self {
        match decision {
            Decision::Set(value) => {
                *slot = Some(value);
                Verdict::Set
            }
            Decision::Keep => Verdict::Keep,
            Decision::Delete => Verdict::Delete,
            Decision::Abort => Verdict::Abort,
        }
    }
}

/// How a conditional operation decides.
pub(crate) trait Decide<V: Value> {
    /// The type of the value a `Set` stores.
    type New: ValueArg<V> + ?Sized;
    /// Decides from the current value's bytes (8-byte aligned; `None`: the
    /// key has no value).
    fn decide(&mut self, old: Option<&[u8]>) -> Result<Verdict>;
    /// The value of the last `Set` verdict.
    fn new_value(&self) -> Option<&Self::New>;
    /// This decision, owned, to park while its key's value is read from
    /// the device.
    fn park(&mut self) -> Result<Parked<V>>;
}

/// The owned form of a parked decision: it decides on the old value's
/// bytes and gives a new value as its encoding.
pub(crate) type ParkedFn = Box<dyn FnMut(Option<&[u8]>) -> Result<Decision<AlignedBytes>> + Send>;

/// A value reached only through `&mut`: so it can be shared (`Sync`)
/// whatever it is, which a session's `&self` futures need (the standard
/// library's unstable `Exclusive`).
struct Exclusive<T>(T);

// SAFETY: `Exclusive` has no method taking `&self` and its field is
// private: a shared reference to it gives access to nothing, so sharing one
// across threads cannot race. Moving it to another thread moves the `T`,
// hence `T: Send`.
unsafe impl<T: Send> Sync for Exclusive<T> {}

/// A decision parked with a pending operation.
pub(crate) struct Parked<V> {
    decide: Exclusive<Option<ParkedFn>>,
    value: Option<Encoded>,
    _value: std::marker::PhantomData<fn() -> V>,
}

impl<V> Parked<V> {
    pub(super) fn new(decide: ParkedFn) -> Self {
        Self { decide: Exclusive(Some(decide)), value: None, _value: std::marker::PhantomData }
    }
}

/// A value given as its encoding (made by `V`'s own encoder).
pub(crate) struct Encoded(AlignedBytes);

impl<V: Value> ValueArg<V> for Encoded {
    fn value_arg_size(&self) -> usize {
        self.0.as_slice().len()
    }
    fn encode_value_arg<S: Sink + ?Sized>(&self, sink: &mut S) {
        sink.put(self.0.as_slice())
    }
}

fn gone() -> Error {
    Error::Corruption { address: 0, what: "a conditional update lost its decision".into() }
}

impl<V: Value> Decide<V> for Parked<V> {
    type New = Encoded;
    fn decide(&mut self, old: Option<&[u8]>) -> Result<Verdict> {
        let decide = self.decide.0.as_mut().ok_or_else(gone)?;
        let decision = match decide(old)? {
            Decision::Set(bytes) => Decision::Set(Encoded(bytes)),
            Decision::Keep => Decision::Keep,
            Decision::Delete => Decision::Delete,
            Decision::Abort => Decision::Abort,
        };
        Ok(Verdict::of(decision, &mut self.value))
    }
    fn new_value(&self) -> Option<&Encoded> {
        self.value.as_ref()
    }
    fn park(&mut self) -> Result<Parked<V>> {
        Ok(Parked::new(self.decide.0.take().ok_or_else(gone)?))
    }
}

/// A user's closure over a view of the value.
pub(super) struct ViewClosure<F, V> {
    f: Option<F>,
    value: Option<V>,
}

impl<V, F> Decide<V> for ViewClosure<F, V>
where
    V: Value,
    F: FnMut(Option<V::View<'_>>) -> Decision<V> + Send + 'static,
{
    type New = V;
    fn decide(&mut self, old: Option<&[u8]>) -> Result<Verdict> {
        let f = self.f.as_mut().ok_or_else(gone)?;
        let view = old.map(V::view).transpose()?;
        Ok(Verdict::of(f(view), &mut self.value))
    }
    fn new_value(&self) -> Option<&V> {
        self.value.as_ref()
    }
    fn park(&mut self) -> Result<Parked<V>> {
        let mut f = self.f.take().ok_or_else(gone)?;
        Ok(Parked::new(Box::new(move |old| {
            Ok(match f(old.map(V::view).transpose()?) {
                Decision::Set(value) => Decision::Set(value.to_aligned_bytes()),
                Decision::Keep => Decision::Keep,
                Decision::Delete => Decision::Delete,
                Decision::Abort => Decision::Abort,
            })
        })))
    }
}

impl<F, V> ViewClosure<F, V> {
    pub(super) fn new(f: F) -> Self {
        Self { f: Some(f), value: None }
    }
}

/// The decision of `delete_if`.
pub(super) fn delete_if<V: Value>(
    mut predicate: impl FnMut(V::View<'_>) -> bool + Send + 'static,
) -> impl FnMut(Option<V::View<'_>>) -> Decision<V> + Send + 'static {
    move |old| match old.map(&mut predicate) {
        Some(true) => Decision::Delete,
        _ => Decision::Abort,
    }
}

/// Whether `stored` is exactly `value`'s encoding.
fn encodes_as<V: Value, W: ValueArg<V> + ?Sized>(value: &W, stored: &[u8]) -> bool {
    if stored.len() != value.value_arg_size() {
        return false;
    }
    let mut comparer = ByteComparer::new(stored);
    value.encode_value_arg(&mut comparer);
    comparer.is_equal()
}

/// `value`'s encoding, owned.
fn encoding<V: Value, W: ValueArg<V> + ?Sized>(value: &W) -> AlignedBytes {
    AlignedBytes::from_encoder(value.value_arg_size(), |s| value.encode_value_arg(s))
}

/// Compare-and-swap: set `new` if the value's bytes are `expected`'s.
pub(super) struct Cas<'a, E: ?Sized, N: ?Sized> {
    pub(super) expected: &'a E,
    pub(super) new: &'a N,
}

impl<V, E, N> Decide<V> for Cas<'_, E, N>
where
    V: Value,
    E: ValueArg<V> + ?Sized,
    N: ValueArg<V> + ?Sized,
{
    type New = N;
    fn decide(&mut self, old: Option<&[u8]>) -> Result<Verdict> {
        Ok(match old {
            Some(stored) if encodes_as::<V, E>(self.expected, stored) => Verdict::Set,
            _ => Verdict::Abort,
        })
    }
    fn new_value(&self) -> Option<&N> {
        Some(self.new)
    }
    fn park(&mut self) -> Result<Parked<V>> {
        let expected = encoding::<V, E>(self.expected);
        let new = encoding::<V, N>(self.new);
        Ok(Parked::new(Box::new(move |old| {
            Ok(match old {
                Some(stored) if stored == expected.as_slice() => Decision::Set(new.clone()),
                _ => Decision::Abort,
            })
        })))
    }
}

/// Insert-if-absent: set `value` if the key has none.
pub(super) struct InsertIfAbsent<'a, W: ?Sized> {
    pub(super) value: &'a W,
}

impl<V, W> Decide<V> for InsertIfAbsent<'_, W>
where
    V: Value,
    W: ValueArg<V> + ?Sized,
{
    type New = W;
    fn decide(&mut self, old: Option<&[u8]>) -> Result<Verdict> {
        Ok(if old.is_none() { Verdict::Set } else { Verdict::Abort })
    }
    fn new_value(&self) -> Option<&W> {
        Some(self.value)
    }
    fn park(&mut self) -> Result<Parked<V>> {
        let value = encoding::<V, W>(self.value);
        Ok(Parked::new(Box::new(move |old| {
            Ok(if old.is_none() { Decision::Set(value.clone()) } else { Decision::Abort })
        })))
    }
}

/// What the one-word in-place step did.
enum WordStep {
    Done(Outcome),
    /// The record is sealed: wait for the drain, then decide on the copy.
    Sealed,
    /// The record is a tombstone and the decision sets a value: append it.
    Append,
}

impl<K: Key, V: Value, D: Device> Session<K, V, D> {
    /// Updates `key` conditionally: `decide` gets a view of the current
    /// value (`None` if the key has none) and returns a [`Decision`]: set a
    /// new value, keep the old one, delete the key, or abort with nothing
    /// written. Atomic with respect to every other operation on the key:
    /// what is written is written only if the value decided on is still the
    /// key's value (else `decide` runs again on the new one, so it may run
    /// more than once; make it free of side effects).
    ///
    /// If the value is on the device the operation is parked and returns
    /// [`UpdateStatus::Pending`]; `complete_pending` decides and reports it
    /// as [`super::CompletedOp::Update`]. (Parking keeps the closure: hence
    /// `Send + 'static`.) [`Session::update_async`] awaits instead.
    ///
    /// ```
    /// use oxifaster::Store;
    /// use oxifaster::store::{Decision, Outcome, UpdateStatus};
    ///
    /// let store = Store::<u64, u64>::builder().open()?;
    /// let mut session = store.start_session()?;
    /// session.upsert(&1, &10)?;
    /// // Double the value while it is below 15, else leave it.
    /// let double = |old: Option<&u64>| match old {
    ///     Some(&v) if v < 15 => Decision::Set(v * 2),
    ///     Some(_) => Decision::Keep,
    ///     None => Decision::Abort,
    /// };
    /// assert_eq!(session.update(&1, double)?, UpdateStatus::Done(Outcome::Set));
    /// assert_eq!(session.update(&1, double)?, UpdateStatus::Done(Outcome::Kept));
    /// assert_eq!(session.update(&2, double)?, UpdateStatus::Done(Outcome::Aborted));
    /// assert_eq!(session.read_blocking(&1)?, Some(20));
    /// # Ok::<(), oxifaster::Error>(())
    /// ```
    pub fn update<Q, F>(&mut self, key: &Q, decide: F) -> Result<UpdateStatus>
    where
        Q: KeyArg<K> + ?Sized,
        F: FnMut(Option<V::View<'_>>) -> Decision<V> + Send + 'static,
    {
        self.conditional(key, &mut ViewClosure::new(decide))
    }

    /// Stores `value` if `key` has none: [`Outcome::Set`] if it did,
    /// [`Outcome::Aborted`] if the key has a value (left as it is).
    /// Pending and atomic as [`Session::update`].
    pub fn insert_if_absent<Q, W>(&mut self, key: &Q, value: &W) -> Result<UpdateStatus>
    where
        Q: KeyArg<K> + ?Sized,
        W: ValueArg<V> + ?Sized,
    {
        self.conditional(key, &mut InsertIfAbsent { value })
    }

    /// Replaces `key`'s value with `new` if its bytes are exactly
    /// `expected`'s encoding: [`Outcome::Set`] if it did,
    /// [`Outcome::Aborted`] if the value differs or the key has none.
    /// Pending and atomic as [`Session::update`].
    ///
    /// ```
    /// use oxifaster::Store;
    /// use oxifaster::store::{Outcome, UpdateStatus};
    ///
    /// let store = Store::<u64, String>::builder().open()?;
    /// let mut session = store.start_session()?;
    /// session.upsert(&7, "draft")?;
    /// let swap = session.compare_and_swap(&7, "draft", "final")?;
    /// assert_eq!(swap, UpdateStatus::Done(Outcome::Set));
    /// let again = session.compare_and_swap(&7, "draft", "other")?;
    /// assert_eq!(again, UpdateStatus::Done(Outcome::Aborted));
    /// assert_eq!(session.read_blocking(&7)?.as_deref(), Some("final"));
    /// # Ok::<(), oxifaster::Error>(())
    /// ```
    pub fn compare_and_swap<Q, E, N>(
        &mut self,
        key: &Q,
        expected: &E,
        new: &N,
    ) -> Result<UpdateStatus>
    where
        Q: KeyArg<K> + ?Sized,
        E: ValueArg<V> + ?Sized,
        N: ValueArg<V> + ?Sized,
    {
        self.conditional(key, &mut Cas { expected, new })
    }

    /// Deletes `key` if `predicate` holds for its value:
    /// [`Outcome::Deleted`] if it did, [`Outcome::Aborted`] if the
    /// predicate said no or the key has no value. Pending and atomic as
    /// [`Session::update`].
    pub fn delete_if<Q, P>(&mut self, key: &Q, predicate: P) -> Result<UpdateStatus>
    where
        Q: KeyArg<K> + ?Sized,
        P: FnMut(V::View<'_>) -> bool + Send + 'static,
    {
        self.update(key, delete_if(predicate))
    }

    /// [`Session::update`] decided on the value's encoding: `decide` gets
    /// the stored encoding (`None`: no value) and gives the new value as
    /// an encoding of `V`. For the F2 store's protocol, which decides on
    /// the `Tiered` encodings of its hot tier.
    pub(crate) fn update_encoded<Q: KeyArg<K> + ?Sized>(
        &mut self,
        key: &Q,
        decide: ParkedFn,
    ) -> Result<UpdateStatus> {
        self.conditional(key, &mut Parked::<V>::new(decide))
    }

    /// Runs a conditional operation as one operation of the session.
    pub(super) fn conditional<Q: KeyArg<K> + ?Sized, U: Decide<V>>(
        &mut self,
        key: &Q,
        update: &mut U,
    ) -> Result<UpdateStatus> {
        let serial = self.next_serial();
        self.count(crate::stats::Count::Conditional);
        self.begin();
        let result = self.conditional_core(key, key.key_arg_hash(), update, serial);
        match result {
            // Nothing written: the write count (what the checkpoint
            // policy reads) stays.
            Ok(UpdateStatus::Done(Outcome::Kept | Outcome::Aborted)) => self.end(),
            _ => self.end_write(),
        }
        result
    }

    /// The conditional protocol (see the module's comment). Protected.
    pub(super) fn conditional_core<Q: KeyArg<K> + ?Sized, U: Decide<V>>(
        &mut self,
        key: &Q,
        hash: u64,
        update: &mut U,
        serial: u64,
    ) -> Result<UpdateStatus> {
        self.store.log.check_poisoned()?;
        // The sealed one-word record this operation waited on.
        let mut drained = None;
        loop {
            let slot = match self.store.index.find_entry(hash) {
                Some(slot) => slot,
                None => {
                    let verdict = update.decide(None)?;
                    if verdict != Verdict::Set {
                        return Ok(UpdateStatus::Done(verdict.outcome()));
                    }
                    self.store.index.find_or_create_entry(hash)
                }
            };
            let start = self.log_start(slot.entry.address());
            let location =
                if start.is_valid() { self.locate(key, start) } else { Location::Absent };
            let address = match location {
                Location::Memory(address) => address,
                Location::Disk(address) => {
                    self.check_pending_room()?;
                    let parked = update.park()?;
                    self.slot.parked(serial);
                    self.pending.push_back(PendingOp {
                        serial,
                        hash,
                        key: key.key_arg_to_aligned_bytes(),
                        address,
                        kind: PendingKind::Update {
                            update: parked,
                            expected_entry: slot.entry.raw(),
                        },
                        parked_at: std::time::Instant::now(),
                    });
                    return Ok(UpdateStatus::Pending { serial });
                }
                // Below the begin address: no record, or compaction just
                // moved it to the tail, which changed the entry: then the
                // CAS from `slot` fails and the operation runs again.
                Location::Absent | Location::BelowBegin => {
                    let verdict = update.decide(None)?;
                    match self.publish(&slot, hash, key, update, verdict, false)? {
                        Some(outcome) => return Ok(UpdateStatus::Done(outcome)),
                        None => continue,
                    }
                }
            };
            let log = &self.store.log;
            // SAFETY: found at or above head while protected.
            let record = unsafe { self.record(address) };
            let info = record.info();
            let Some(current) = self.current_or_retry(info) else { continue };
            let atomic = self.format().atomic_value();
            let (key_len, value_len) = record.lengths();
            if current && address >= log.read_only_address() && !info.is_sealed() {
                if atomic {
                    match self.decide_word(&record, key_len, update)? {
                        WordStep::Done(outcome) => return Ok(UpdateStatus::Done(outcome)),
                        WordStep::Sealed => continue,
                        WordStep::Append => {
                            match self.publish(&slot, hash, key, update, Verdict::Set, false)? {
                                Some(outcome) => return Ok(UpdateStatus::Done(outcome)),
                                None => continue,
                            }
                        }
                    }
                }
                let mut verdict = Verdict::Abort;
                let step =
                    record.decide_in_place(key_len, value_len, &mut self.scratch, |bytes| {
                        let live = bytes.is_some();
                        verdict = update.decide(bytes.as_deref())?;
                        Ok::<_, Error>(match verdict {
                            Verdict::Keep | Verdict::Abort => InPlace::Keep,
                            Verdict::Delete if live => InPlace::Tombstone,
                            Verdict::Delete => InPlace::Keep,
                            Verdict::Set => match (bytes, update.new_value()) {
                                (Some(bytes), Some(new)) if new.value_arg_size() == bytes.len() => {
                                    // A broken encoder is an error, and nothing
                                    // is written back.
                                    new.encode_value_arg_into(bytes)?;
                                    InPlace::Write
                                }
                                _ => InPlace::Seal,
                            },
                        })
                    })?;
                match step {
                    InPlace::Write | InPlace::Keep | InPlace::Tombstone => {
                        return Ok(UpdateStatus::Done(verdict.outcome()));
                    }
                    // Sealed under the lock with this decision: its value
                    // is frozen, so the decision stands if the append wins.
                    InPlace::Seal => match self.publish(&slot, hash, key, update, verdict, true)? {
                        Some(outcome) => return Ok(UpdateStatus::Done(outcome)),
                        None => continue,
                    },
                    // Sealed by someone else: decide on the frozen copy.
                    InPlace::Sealed => {}
                }
            } else if current && address >= log.safe_read_only_address() && !info.is_sealed() {
                // The fuzzy region: wait it out (see `rmw_core`).
                self.refresh_in_op();
                crate::sync::yield_now();
                continue;
            }
            if atomic
                && info.is_sealed()
                && address >= log.safe_read_only_address()
                && drained != Some(address)
            {
                // One-word writers that looked before the seal may still
                // store: wait until they are done.
                self.wait_for_drain();
                drained = Some(address);
                continue;
            }
            let tombstone = record.info().is_tombstone();
            let old =
                (!tombstone).then(|| record.copy_value(key_len, value_len, &mut self.scratch));
            let verdict = update.decide(old)?;
            match self.publish(&slot, hash, key, update, verdict, !tombstone)? {
                Some(outcome) => return Ok(UpdateStatus::Done(outcome)),
                None => continue,
            }
        }
    }

    /// Decides on a one-word value in place (see the module's comment).
    fn decide_word<U: Decide<V>>(
        &mut self,
        record: &RecordPtr<K, V>,
        key_len: usize,
        update: &mut U,
    ) -> Result<WordStep> {
        let cell = record.atomic_value(key_len);
        loop {
            let info = record.info();
            if info.is_sealed() {
                return Ok(WordStep::Sealed);
            }
            let word = cell.load(std::sync::atomic::Ordering::Acquire);
            let bytes = word.to_ne_bytes();
            let live = !info.is_tombstone();
            let verdict = update.decide(live.then_some(&bytes[..]))?;
            match verdict {
                Verdict::Keep | Verdict::Abort => return Ok(WordStep::Done(verdict.outcome())),
                Verdict::Delete if !live => return Ok(WordStep::Done(Outcome::Deleted)),
                Verdict::Set if !live => return Ok(WordStep::Append),
                Verdict::Delete => {
                    // Freeze the value, then decide again on it and append
                    // the tombstone (or whatever the decision is then).
                    record.seal_atomic();
                    return Ok(WordStep::Sealed);
                }
                Verdict::Set => {
                    let mut new = 0u64;
                    let new_value = update.new_value().ok_or_else(gone)?;
                    new_value
                        .encode_value_arg_into(bytemuck::bytes_of_mut(&mut new))
                        .map_err(Error::from)?;
                    if cell
                        .compare_exchange(
                            word,
                            new,
                            std::sync::atomic::Ordering::AcqRel,
                            std::sync::atomic::Ordering::Acquire,
                        )
                        .is_ok()
                    {
                        return Ok(WordStep::Done(Outcome::Set));
                    }
                }
            }
        }
    }

    /// Writes a decision taken on the chain `slot` held: appends its value
    /// (or a tombstone, if `live`: the key has a value to delete) with a
    /// CAS of the entry. `Some(outcome)` when done, `None` when the entry
    /// changed and the operation must run again.
    fn publish<Q: KeyArg<K> + ?Sized, U: Decide<V>>(
        &mut self,
        slot: &crate::index::EntrySlot<'_>,
        hash: u64,
        key: &Q,
        update: &U,
        verdict: Verdict,
        live: bool,
    ) -> Result<Option<Outcome>> {
        let won = match verdict {
            Verdict::Keep | Verdict::Abort => true,
            Verdict::Delete if !live => true,
            Verdict::Delete => self.append(slot, hash, key, None::<&V>, true)?,
            Verdict::Set => {
                let value = update.new_value().ok_or_else(gone)?;
                self.append(slot, hash, key, Some(value), false)?
            }
        };
        Ok(won.then(|| verdict.outcome()))
    }

    /// Finishes a parked conditional operation whose old value the device
    /// returned (`None`: the key has none): decides, and writes the
    /// decision if the key's entry is still `expected_entry`; else runs the
    /// operation again. Protected.
    pub(super) fn finish_parked_update<Q: KeyArg<K> + ?Sized>(
        &mut self,
        key: &Q,
        hash: u64,
        update: &mut Parked<V>,
        old: Option<&[u8]>,
        expected_entry: u64,
        serial: u64,
    ) -> Result<UpdateStatus> {
        if let Some(slot) = self.store.index.find_entry(hash)
            && slot.entry.raw() == expected_entry
        {
            let verdict = update.decide(old)?;
            if let Some(outcome) = self.publish(&slot, hash, key, update, verdict, old.is_some())? {
                // Keep and abort are linearized at the entry check above:
                // the value decided on was still the key's.
                return Ok(UpdateStatus::Done(outcome));
            }
        }
        // The chain changed while we read: run the operation again.
        self.conditional_core(key, hash, update, serial)
    }
}
