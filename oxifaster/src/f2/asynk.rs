//! The async API of an F2 session (the `tokio` feature): reads await the
//! hot tier's device reads as `Session::read_async` does and run cold
//! lookups on tokio's blocking pool; writes never wait for the device. A
//! future never holds epoch protection while it waits.

use std::sync::atomic::Ordering;

use super::cold::{ColdProbe, IndexSession};
use super::protocol::{self, Steps};
use super::{F2Session, HotMiss, Tiered};
use super::{deleting_if, encoding, inserting, merging, on_encodings, swapping};
use crate::record::{AlignedBytes, Key, KeyArg, Merge, Value, ValueArg};
use crate::store::{Decision, Outcome, ParkedFn};
use crate::{Error, Result};

impl<K: Key, V: Value, D: crate::device::Device> F2Session<K, V, D> {
    /// Reads `key` (hot tier, then cold tier), awaiting device reads.
    ///
    /// Cancel safety: dropped at an `.await`, the read leaves nothing
    /// parked and no epoch protection held (a cold lookup already running
    /// finishes on the blocking pool and is discarded).
    ///
    /// ```
    /// use oxifaster::f2::F2Store;
    ///
    /// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
    /// let store = F2Store::<u64, u64>::builder().page_size_bits(12).open()?;
    /// let mut session = store.start_session()?;
    /// session.upsert_async(&1, &10).await?;
    /// store.migrate_all()?; // the value is cold now
    /// assert_eq!(session.read_async(&1).await?, Some(10));
    /// session.delete_async(&1).await?;
    /// assert_eq!(session.read_async(&1).await?, None);
    /// # Ok::<(), oxifaster::Error>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub async fn read_async<Q: KeyArg<K> + ?Sized>(&mut self, key: &Q) -> Result<Option<V>> {
        let seen = self.inner.migrations.load(Ordering::SeqCst);
        match self.hot.read_async(key).await? {
            Some(Tiered::Live(value)) => return Ok(Some(value)),
            Some(Tiered::Deleted) => return Ok(None),
            None => {}
        }
        let miss = HotMiss { entry: self.hot.last_miss_entry(), seen };
        let key_bytes = key.key_arg_to_aligned_bytes();
        let hash = key.key_arg_hash();
        match self.cold_lookup_async(key_bytes.clone(), hash).await? {
            Some(bytes) => self.cold_value(key_bytes.as_slice(), hash, bytes, Some(miss)),
            None => Ok(None),
        }
    }

    /// [`F2Session::upsert`] (it never waits for the device).
    pub async fn upsert_async<Q: KeyArg<K> + ?Sized, W: ValueArg<V> + ?Sized>(
        &mut self,
        key: &Q,
        value: &W,
    ) -> Result<()> {
        self.upsert(key, value)
    }

    /// [`F2Session::delete`] (it never waits for the device).
    pub async fn delete_async<Q: KeyArg<K> + ?Sized>(&mut self, key: &Q) -> Result<()> {
        self.delete(key)
    }

    /// [`F2Session::rmw`], awaiting device reads (the hot tier's as
    /// `Session::update_async` does, the cold lookup on tokio's blocking
    /// pool).
    ///
    /// Cancel safety: dropped at an `.await`, the merge is applied zero or
    /// one times (the hot tier's conditional updates are, and the cold
    /// lookup writes nothing), and nothing stays parked.
    ///
    /// ```
    /// use oxifaster::f2::F2Store;
    ///
    /// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
    /// let store = F2Store::<u64, u64>::builder().page_size_bits(12).open()?;
    /// let mut session = store.start_session()?;
    /// session.upsert_async(&1, &10).await?;
    /// store.migrate_all()?; // the value is cold now
    /// session.rmw_async(&1, &5).await?;
    /// assert_eq!(session.read_async(&1).await?, Some(15));
    /// # Ok::<(), oxifaster::Error>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub async fn rmw_async<Q: KeyArg<K> + ?Sized>(&mut self, key: &Q, input: &V) -> Result<()>
    where
        V: Merge + Clone,
    {
        self.update_async(key, merging(input.clone())).await?;
        Ok(())
    }

    /// [`F2Session::update`], awaiting device reads (cancel safety as for
    /// [`F2Session::rmw_async`]).
    pub async fn update_async<Q, F>(&mut self, key: &Q, decide: F) -> Result<Outcome>
    where
        Q: KeyArg<K> + ?Sized,
        F: FnMut(Option<V::View<'_>>) -> Decision<V> + Send + 'static,
        V: Merge + Clone,
    {
        self.update_encoded_async(key, on_encodings(decide)).await
    }

    /// [`F2Session::insert_if_absent`], awaiting device reads (cancel
    /// safety as for [`F2Session::rmw_async`]).
    pub async fn insert_if_absent_async<Q, W>(&mut self, key: &Q, value: &W) -> Result<Outcome>
    where
        Q: KeyArg<K> + ?Sized,
        W: ValueArg<V> + ?Sized,
        V: Merge + Clone,
    {
        self.update_encoded_async(key, inserting(encoding::<V, W>(value))).await
    }

    /// [`F2Session::compare_and_swap`], awaiting device reads (cancel
    /// safety as for [`F2Session::rmw_async`]).
    pub async fn compare_and_swap_async<Q, E, N>(
        &mut self,
        key: &Q,
        expected: &E,
        new: &N,
    ) -> Result<Outcome>
    where
        Q: KeyArg<K> + ?Sized,
        E: ValueArg<V> + ?Sized,
        N: ValueArg<V> + ?Sized,
        V: Merge + Clone,
    {
        let (expected, new) = (encoding::<V, E>(expected), encoding::<V, N>(new));
        self.update_encoded_async(key, swapping(expected, new)).await
    }

    /// [`F2Session::delete_if`], awaiting device reads (cancel safety as
    /// for [`F2Session::rmw_async`]).
    pub async fn delete_if_async<Q, P>(&mut self, key: &Q, predicate: P) -> Result<Outcome>
    where
        Q: KeyArg<K> + ?Sized,
        P: FnMut(V::View<'_>) -> bool + Send + 'static,
        V: Merge + Clone,
    {
        self.update_async(key, deleting_if::<V, P>(predicate)).await
    }

    /// The conditional update over both tiers (`protocol::update_steps`)
    /// with its device reads awaited.
    async fn update_encoded_async<Q, F>(&mut self, key: &Q, decide: F) -> Result<Outcome>
    where
        Q: KeyArg<K> + ?Sized,
        F: FnMut(Option<&[u8]>) -> Result<Decision<AlignedBytes>> + Send + 'static,
        V: Merge + Clone,
    {
        let migrations = self.inner.migrations.clone();
        let key_bytes = key.key_arg_to_aligned_bytes();
        let mut steps = Awaiting { session: self, key, key_bytes, hash: key.key_arg_hash() };
        protocol::update_steps::<V, _, _>(&mut steps, &migrations, decide).await
    }

    /// The key's newest cold value (a `Tiered` encoding), looked up on
    /// tokio's blocking pool with the session's async chunk-store session.
    async fn cold_lookup_async(
        &mut self,
        key: AlignedBytes,
        hash: u64,
    ) -> Result<Option<AlignedBytes>> {
        let mut index: IndexSession<D> = match self.async_index.take() {
            Some(index) => index,
            None => self.inner.cold.index.start_session()?,
        };
        let inner = self.inner.clone();
        let (index, probe, found) = tokio::task::spawn_blocking(move || {
            let mut probe = ColdProbe::default();
            let found = inner.cold.lookup(&mut index, key.as_slice(), hash, &mut probe);
            (index, probe, found)
        })
        .await
        .map_err(|e| Error::Io {
            context: "in a blocking cold lookup task".into(),
            source: std::io::Error::other(e),
        })?;
        self.async_index = Some(index);
        self.probe += probe;
        found
    }
}

/// The steps of the conditional update with their device reads awaited.
struct Awaiting<'a, K: Key, V: Value, D: crate::device::Device, Q: ?Sized> {
    session: &'a mut F2Session<K, V, D>,
    key: &'a Q,
    key_bytes: AlignedBytes,
    hash: u64,
}

impl<K, V, D, Q> Steps for Awaiting<'_, K, V, D, Q>
where
    K: Key,
    V: Value,
    D: crate::device::Device,
    Q: KeyArg<K> + ?Sized,
{
    async fn hot_update(&mut self, decide: ParkedFn) -> Result<Outcome> {
        self.session.hot.update_encoded_async(self.key, decide).await
    }
    async fn cold_lookup(&mut self) -> Result<Option<AlignedBytes>> {
        self.session.cold_lookup_async(self.key_bytes.clone(), self.hash).await
    }
    fn pause(&mut self) {
        #[cfg(feature = "testing")]
        if let Some(pause) = self.session.rmw_pause.as_mut() {
            pause();
        }
    }
}
