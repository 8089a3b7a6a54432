//! The async API of an F2 session (the `tokio` feature): reads await the
//! hot tier's device reads as `Session::read_async` does and run cold
//! lookups on tokio's blocking pool; writes never wait for the device. A
//! future never holds epoch protection while it waits.

use std::sync::atomic::Ordering;

use super::cold::{ColdProbe, IndexSession};
use super::{F2Session, HotMiss, Tiered};
use crate::record::{AlignedBytes, Key, KeyArg, Value, ValueArg};
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
