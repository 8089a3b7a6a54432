//! The protocols of the F2 store that run over the hot store's sessions
//! and internals: the conditional update over both tiers and the hot side
//! of a migration. They are generic over the hot store's device, so that
//! `tests/loom.rs` checks them, on a memory device with a model of the
//! cold tier, as the F2 store runs them.
//!
//! ## The conditional update's invariant
//!
//! An update of a key with no hot record decides on the key's cold value
//! and inserts its result in the hot tier only if the key *still* has no
//! hot record **and** the migration count has not moved since before the
//! cold read. The count moves after a migration's cold records are
//! visible and before the hot begin address moves; the hot index frees the
//! entries of migrated keys only after an epoch drain that follows the
//! count's move. So a hot record written after the update's first look and
//! migrated before its insert either still holds the key's index entry
//! (the insert's CAS, expecting no entry, fails) or the count moved (the
//! insert aborts and the update starts over): the insert never lands on a
//! value older than the one migrated.

use std::future::Future;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use super::{Tiered, tiered};
use crate::compaction::{CompactionKind, CompactionReport, Migrate};
use crate::device::Device;
use crate::record::{AlignedBytes, Key, KeyArg, Merge, Value};
use crate::store::{
    Completed, CompletedOp, Decision, Outcome, ParkedFn, Session, StoreInner, UpdateStatus,
};
use crate::sync::{AtomicU64, Ordering};
use crate::{Error, Result};

/// The hot tier as an update sees it: a session, and the completions of
/// other pending operations met while the update waited for its own (kept
/// for the session's `complete_pending`).
pub(crate) struct Hot<'a, K: Key, V: Value, D: Device> {
    pub session: &'a mut Session<K, Tiered<V>, D>,
    pub stash: &'a mut Vec<Completed<Tiered<V>>>,
}

/// Whether no migration published since the count was `seen`.
fn unchanged(migrations: &AtomicU64, seen: u64) -> bool {
    #[cfg(oxifaster_loom)]
    if crate::sync::broken::no_migration_check() {
        return true;
    }
    migrations.load(Ordering::SeqCst) == seen
}

/// The steps the conditional update takes on the tiers, blocking
/// ([`update`]) or awaiting the device (`F2Session::update_async`).
pub(crate) trait Steps {
    /// The hot store's conditional update of the key with `decide`, its
    /// device reads done.
    async fn hot_update(&mut self, decide: ParkedFn) -> Result<Outcome>;
    /// The key's cold value (a `Tiered` encoding).
    async fn cold_lookup(&mut self) -> Result<Option<AlignedBytes>>;
    /// Runs between the cold read and the hot insert (tests widen the
    /// race window with it).
    fn pause(&mut self) {}
}

/// The conditional update over both tiers (`F2Session::update` and the
/// operations made of it): `decide` sees the key's value as its encoding
/// (`None`: no value, or deleted) and gives the new value as an encoding
/// of `V`; `lookup` reads the key's cold value (a `Tiered` encoding),
/// `pause` runs between the cold read and the hot insert (tests widen the
/// race window with it). See the module's invariant.
pub(crate) fn update<K, V, D, Q, F>(
    hot_tier: &mut Hot<'_, K, V, D>,
    migrations: &Arc<AtomicU64>,
    lookup: &mut dyn FnMut() -> Result<Option<AlignedBytes>>,
    pause: Option<&mut dyn FnMut()>,
    key: &Q,
    decide: F,
) -> Result<Outcome>
where
    K: Key,
    V: Value + Merge + Clone,
    D: Device,
    Q: KeyArg<K> + ?Sized,
    F: FnMut(Option<&[u8]>) -> Result<Decision<AlignedBytes>> + Send + 'static,
{
    let mut steps = Blocking { hot: hot_tier, key, lookup, pause };
    // Blocking steps never wait: the future is ready at its first poll.
    let future = std::pin::pin!(update_steps::<V, _, _>(&mut steps, migrations, decide));
    match future.poll(&mut std::task::Context::from_waker(std::task::Waker::noop())) {
        std::task::Poll::Ready(outcome) => outcome,
        std::task::Poll::Pending => {
            Err(Error::Corruption { address: 0, what: "a blocking F2 update waited".into() })
        }
    }
}

/// The blocking steps: the hot session's device I/O done in line, the
/// cold lookup a blocking call.
struct Blocking<'a, 'b, K: Key, V: Value, D: Device, Q: ?Sized, L, P> {
    hot: &'a mut Hot<'b, K, V, D>,
    key: &'a Q,
    lookup: L,
    pause: Option<P>,
}

impl<K, V, D, Q, L, P> Steps for Blocking<'_, '_, K, V, D, Q, L, P>
where
    K: Key,
    V: Value + Merge + Clone,
    D: Device,
    Q: KeyArg<K> + ?Sized,
    L: FnMut() -> Result<Option<AlignedBytes>>,
    P: FnMut(),
{
    async fn hot_update(&mut self, decide: ParkedFn) -> Result<Outcome> {
        update_blocking(self.hot, self.key, decide)
    }
    async fn cold_lookup(&mut self) -> Result<Option<AlignedBytes>> {
        (self.lookup)()
    }
    fn pause(&mut self) {
        if let Some(pause) = self.pause.as_mut() {
            pause();
        }
    }
}

/// [`update`]'s protocol over any [`Steps`] (see the module's invariant).
pub(crate) async fn update_steps<V, S, F>(
    steps: &mut S,
    migrations: &Arc<AtomicU64>,
    decide: F,
) -> Result<Outcome>
where
    V: Value,
    S: Steps,
    F: FnMut(Option<&[u8]>) -> Result<Decision<AlignedBytes>> + Send + 'static,
{
    /// What the user decided last (its run is the one that counts).
    #[derive(Clone, Copy, PartialEq)]
    enum Last {
        Nothing,
        Delete,
        Other,
    }
    let decide = Arc::new(Mutex::new(decide));
    loop {
        let seen = migrations.load(Ordering::SeqCst);
        let last = Arc::new(Mutex::new(Last::Nothing));
        // Runs the user's decision on `old` (a `V` encoding) and maps it
        // onto the hot tier's `Tiered` encodings (`had` says whether
        // there was a value to delete).
        let run = {
            let (decide, last) = (decide.clone(), last.clone());
            move |old: Option<&[u8]>, had: bool| -> Result<Decision<AlignedBytes>> {
                let decision = (decide.lock().unwrap_or_else(|p| p.into_inner()))(old)?;
                *last.lock().unwrap_or_else(|p| p.into_inner()) =
                    if matches!(decision, Decision::Delete) { Last::Delete } else { Last::Other };
                Ok(match decision {
                    Decision::Set(v) => Decision::Set(tiered::live_bytes(v.as_slice())),
                    Decision::Keep => Decision::Keep,
                    Decision::Abort => Decision::Abort,
                    Decision::Delete if had => Decision::Set(tiered::deleted_bytes::<V>()),
                    Decision::Delete => Decision::Keep,
                })
            }
        };
        let report = |outcome: Outcome, last: &Mutex<Last>| match *last
            .lock()
            .unwrap_or_else(|p| p.into_inner())
        {
            Last::Delete => Outcome::Deleted,
            _ => outcome,
        };
        // Phase 1: the hot tier (its last run says whether it was absent).
        let absent = Arc::new(AtomicBool::new(false));
        let hot = {
            let (absent, run) = (absent.clone(), run.clone());
            move |old: Option<&[u8]>| {
                absent.store(old.is_none(), Ordering::Relaxed);
                match old {
                    Some(bytes) if tiered::state(bytes)? => run(Some(&bytes[tiered::HEAD..]), true),
                    Some(_) => run(None, false),
                    None => Ok(Decision::Abort),
                }
            }
        };
        let outcome = steps.hot_update(Box::new(hot)).await?;
        if !absent.load(Ordering::Relaxed) {
            return Ok(report(outcome, &last));
        }
        // Phase 2: the cold value, inserted only if the key is still
        // absent from the hot tier and no migration published.
        let cold = steps.cold_lookup().await?;
        let cold = cold.filter(|bytes| !tiered::is_deleted(bytes.as_slice()));
        steps.pause();
        let retry = Arc::new(AtomicBool::new(false));
        let insert = {
            let (retry, migrations) = (retry.clone(), migrations.clone());
            move |old: Option<&[u8]>| {
                let current = old.is_none() && (unchanged(&migrations, seen));
                retry.store(!current, Ordering::Relaxed);
                if !current {
                    return Ok(Decision::Abort);
                }
                match &cold {
                    Some(bytes) => run(Some(&bytes.as_slice()[tiered::HEAD..]), true),
                    None => run(None, false),
                }
            }
        };
        let outcome = steps.hot_update(Box::new(insert)).await?;
        if !retry.load(Ordering::Relaxed) {
            return Ok(report(outcome, &last));
        }
    }
}

/// A hot conditional update decided on `Tiered` encodings, its device I/O
/// done now (other pending operations' completions go to the stash).
fn update_blocking<K, V, D, Q>(
    hot: &mut Hot<'_, K, V, D>,
    key: &Q,
    decide: ParkedFn,
) -> Result<Outcome>
where
    K: Key,
    V: Value + Merge + Clone,
    D: Device,
    Q: KeyArg<K> + ?Sized,
{
    let serial = match hot.session.update_encoded(key, decide)? {
        UpdateStatus::Done(outcome) => return Ok(outcome),
        UpdateStatus::Pending { serial } => serial,
    };
    loop {
        for done in hot.session.complete_pending()? {
            if done.serial == serial {
                return match done.op {
                    CompletedOp::Update(outcome) => Ok(outcome),
                    CompletedOp::Failed(e) => Err(Error::Io {
                        context: format!("a pending update failed: {}", e.0),
                        source: std::io::Error::other(e.0.to_string()),
                    }),
                    _ => Err(Error::Corruption {
                        address: 0,
                        what: "an update completed as another operation".into(),
                    }),
                };
            }
            hot.stash.push(done);
        }
        crate::sync::yield_now();
    }
}

/// The hot side of a migration of the hot log's range below `until`:
/// compaction with `sink` as its target (which publishes the cold records
/// and moves the migration count before the begin address moves), then,
/// after an epoch drain (every operation that saw the count before it
/// moved has finished), the hot index frees the entries whose newest
/// record is below the new begin address. Without it the hot index would
/// keep an entry for every key ever written. Returns the compaction's
/// report and the entries freed.
pub(crate) fn migrate<K: Key, V: Value, D: Device>(
    hot: &Arc<StoreInner<K, Tiered<V>, D>>,
    until: u64,
    sink: &mut dyn Migrate,
) -> Result<(CompactionReport, u64)> {
    let report = crate::hlog::unthrottled(|| {
        crate::compaction::compact_to(hot, until, CompactionKind::Scan, Some(sink))
    })?;
    let mut session = Session::internal(hot.clone())?;
    session.drain_epoch();
    drop(session);
    let freed = hot.index.clear_below(hot.log.begin_address());
    Ok((report, freed))
}

/// Makes the whole hot log read-only and written, and returns the address
/// a migration of all of it goes to. (A fold-over checkpoint of the hot
/// store alone would do it too, but must not stand apart from the cold
/// tier's; the log's own flush does it without one.)
pub(crate) fn read_only_all<K: Key, V: Value, D: Device>(
    hot: &Arc<StoreInner<K, Tiered<V>, D>>,
) -> Result<u64> {
    let log = &hot.log;
    let mut session = Session::internal(hot.clone())?;
    let tail = log.tail_address();
    session.with_handle(|handle| {
        log.shift_read_only(tail, handle);
        log.flush_written(tail, handle)
    })?;
    drop(session);
    Ok(log.safe_read_only_address().raw())
}

/// Entry points for `tests/loom.rs`: the F2 protocols on a memory device,
/// with a cold tier of one value per key modelled by an atomic.
#[cfg(oxifaster_loom)]
#[doc(hidden)]
pub mod loom_model {
    use super::*;
    use crate::Store;
    use crate::device::MemoryDevice;

    /// The model's cold tier: one key's value (0: none; else value + 1)
    /// and the migration count.
    #[derive(Debug)]
    pub struct ModelTiers {
        cold: AtomicU64,
        migrations: Arc<AtomicU64>,
    }

    impl ModelTiers {
        /// A cold tier holding `cold` for the key.
        pub fn new(cold: Option<u64>) -> Self {
            Self {
                cold: AtomicU64::new(cold.map_or(0, |v| v + 1)),
                migrations: Arc::new(AtomicU64::new(0)),
            }
        }

        /// Records an event.
        pub fn note(&self, event: String) {
            crate::sync::note(|| event);
        }

        /// The events so far (and clears them).
        pub fn events(&self) -> Vec<String> {
            crate::sync::take_notes()
        }

        fn cold_value(&self) -> Option<u64> {
            match self.cold.load(Ordering::SeqCst) {
                0 => None,
                v => Some(v - 1),
            }
        }
    }

    /// The migration sink: the key's newest hot record becomes its cold
    /// value, then the count moves (as `ToCold`).
    struct ToModel<'a>(&'a ModelTiers);

    impl Migrate for ToModel<'_> {
        fn keep(&mut self, _key: &[u8], value: &[u8]) -> Result<()> {
            let value = match Tiered::<u64>::decode(value)? {
                Tiered::Live(v) => v + 1,
                Tiered::Deleted => 0,
            };
            self.0.note(format!("migration keeps {value} (value + 1)"));
            self.0.cold.store(value, Ordering::SeqCst);
            Ok(())
        }

        fn publish(&mut self) -> Result<()> {
            let n = self.0.migrations.fetch_add(1, Ordering::SeqCst);
            self.0.note(format!("migration publishes: count {n} -> {}", n + 1));
            Ok(())
        }
    }

    /// `F2Session::rmw` of `key` by `input` (`u64` merges by adding).
    pub fn rmw(
        session: &mut Session<u64, Tiered<u64>, MemoryDevice>,
        tiers: &ModelTiers,
        key: u64,
        input: u64,
    ) -> Result<()> {
        let mut stash = Vec::new();
        let mut hot = Hot { session, stash: &mut stash };
        let mut lookup = || {
            let value = tiers.cold_value();
            tiers.note(format!(
                "update reads cold {value:?} (count {})",
                tiers.migrations.load(Ordering::SeqCst)
            ));
            Ok(value.map(|v| Tiered::Live(v).to_aligned_bytes()))
        };
        let count = tiers.migrations.clone();
        let outcome = update(
            &mut hot,
            &tiers.migrations,
            &mut lookup,
            None,
            &key,
            move |old: Option<&[u8]>| {
                let old = old.map(u64::decode).transpose()?;
                let count = count.load(Ordering::SeqCst);
                crate::sync::note(|| format!("update decides on {old:?} (count {count})"));
                Ok(Decision::Set(old.map_or(input, |v| v + input).to_aligned_bytes()))
            },
        )?;
        tiers.note(format!("update done: {outcome:?}"));
        Ok(())
    }

    /// `F2Store::migrate_all` of the hot store into the model's cold tier.
    pub fn migrate_all(
        store: &Store<u64, Tiered<u64>, MemoryDevice>,
        tiers: &ModelTiers,
    ) -> Result<()> {
        let until = read_only_all(&store.inner)?;
        let (report, freed) = migrate(&store.inner, until, &mut ToModel(tiers))?;
        tiers.note(format!(
            "migration of [{:#x}, {:#x}) done: {} kept, {freed} hot entries freed",
            report.from, report.until, report.copied
        ));
        Ok(())
    }

    /// The key's value: hot, else cold.
    pub fn read(
        session: &mut Session<u64, Tiered<u64>, MemoryDevice>,
        tiers: &ModelTiers,
        key: u64,
    ) -> Result<Option<u64>> {
        match session.read_blocking(&key)? {
            Some(Tiered::Live(v)) => Ok(Some(v)),
            Some(Tiered::Deleted) => Ok(None),
            None => Ok(tiers.cold_value()),
        }
    }
}
