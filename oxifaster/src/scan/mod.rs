//! Scans: the live records of a store ([`Store::iter`]), every record of a
//! range of its log ([`Store::scan_log`]), and the versions of one key
//! ([`crate::Session::history`]).
//!
//! Both scans read the log in address order a page at a time: pages still
//! in memory are copied out of their frames under epoch protection (values
//! that sessions may update in place copied consistently, each by itself);
//! older pages are read from the device whole, checked against their
//! seals. A thread reads those pages ahead of the scan (up to 32 MiB of
//! them, in 1 MiB requests; see `ahead`), so the device sees one
//! sequential stream while the scan settles records.
//!
//! ## Live records
//!
//! A live scan ends at the tail as it was when the scan started (`end`).
//! For each record below it, a walk of its key's chain in memory tells
//! whether it is its key's newest record below `end` (records at or above
//! `end` are skipped); a tombstone that is its key's newest says the key
//! is absent. Where the chain leaves memory above the record, the record is
//! noted in a table by key (the newest noted record of each key replaces
//! the older one, and a record the walk settles removes it); since the scan
//! meets every record below `end` in address order, what is left in the
//! table at the end are keys whose newest record below `end` is the one
//! noted, and those are read back and returned last.
//!
//! **Semantics under concurrent updates** (FASTER's): a key that has a
//! value for the whole scan is returned exactly once, with a value it held
//! during the scan; a key inserted or deleted during the scan may or may
//! not be returned. Records written during the scan (at or above `end`)
//! are not returned. Compaction waits while a scan runs (it would move
//! records the scan has not reached above `end`).
//!
//! Memory: a few page buffers (and up to 32 MiB read ahead), and one table entry per key whose older record
//! the scan meets while its chain leaves memory above it (keys with
//! several versions on the device); none for a log that fits in memory.

mod ahead;
pub(crate) mod keys;
pub(crate) mod pages;

use std::sync::{Arc, Condvar, Mutex};

use crate::address::Address;
use crate::device::Device;
use crate::record::{Key, Value};
use crate::store::record::{RecordInfo, RecordShape};
use crate::store::{Session, Settle, Store, StoreInner};
use crate::{Error, Result};
use ahead::ReadAhead;
use keys::KeyTable;
use pages::{Chunk, Pages, key_hashes, key_of, key_value};

pub use crate::store::KeyVersion;

/// The scans running on a store: compaction waits until there are none
/// (while it holds the maintenance lock, so no scan starts meanwhile).
#[derive(Debug, Default)]
pub(crate) struct ScanGate {
    running: Mutex<usize>,
    idle: Condvar,
}

impl ScanGate {
    fn enter(&self) {
        *self.running.lock().unwrap_or_else(|p| p.into_inner()) += 1;
    }

    /// Counts one more scan if others run (no compaction is past
    /// `wait_idle` then: only a scan holding the maintenance lock can take
    /// the count from zero); false if none runs.
    fn join(&self) -> bool {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if *running == 0 {
            return false;
        }
        *running += 1;
        true
    }

    fn leave(&self) {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        *running -= 1;
        if *running == 0 {
            self.idle.notify_all();
        }
    }

    /// Waits until no scan runs.
    pub(crate) fn wait_idle(&self) {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        while *running > 0 {
            running = self.idle.wait(running).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// A running scan's place in its store's [`ScanGate`].
struct ScanPin<K: Key, V: Value, D: Device> {
    inner: Arc<StoreInner<K, V, D>>,
}

impl<K: Key, V: Value, D: Device> ScanPin<K, V, D> {
    fn new(inner: &Arc<StoreInner<K, V, D>>) -> Self {
        // Beside running scans, no compaction runs (a scan started while
        // another runs — nested in the same thread — must not wait for a
        // compaction that waits for the outer one).
        if !inner.scans.join() {
            // No compaction is running once we hold this, and none starts
            // until the pin is dropped.
            let _one = inner.maintenance.lock().unwrap_or_else(|p| p.into_inner());
            inner.scans.enter();
        }
        Self { inner: inner.clone() }
    }
}

impl<K: Key, V: Value, D: Device> Drop for ScanPin<K, V, D> {
    fn drop(&mut self) {
        self.inner.scans.leave();
    }
}

/// A record of the log, as [`Store::scan_log`] returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LogRecord<K, V> {
    /// Its log address.
    pub address: u64,
    /// The store version (CPR) that wrote it.
    pub version: u32,
    /// Whether it deletes its key (then `value` is `None`).
    pub tombstone: bool,
    /// The key.
    pub key: K,
    /// The value, unless the record is a tombstone.
    pub value: Option<V>,
}

/// What a scan reads with: its session, its pages, where it is.
struct Reader<K: Key, V: Value, D: Device> {
    session: Session<K, V, D>,
    pages: Pages<D>,
    shape: RecordShape,
    at: u64,
    to: u64,
    /// A thread reading the pages on the device ahead of the scan.
    ahead: Option<ReadAhead>,
    _pin: ScanPin<K, V, D>,
}

impl<K: Key, V: Value, D: Device> Reader<K, V, D> {
    fn new(store: &Store<K, V, D>) -> Result<Self> {
        let pin = ScanPin::new(&store.inner);
        let session = Session::for_scan(store.open.clone())?;
        let pages = Pages::new(&store.inner)?;
        let shape = pages.shape;
        Ok(Self { session, pages, shape, at: 0, to: 0, ahead: None, _pin: pin })
    }

    /// Starts reading the pages of `[at, to)` that are only on the device
    /// ahead of the scan, if there are more than two.
    fn read_ahead(&mut self) {
        let page_size = self.pages.page_size;
        let from = self.at & !(page_size - 1);
        let to = self.to.min(self.pages.on_device);
        if to > from + 2 * page_size {
            // Without one (no thread), the scan reads every page itself.
            self.ahead = ReadAhead::start(self.pages.log_reader(), from, to, page_size).ok();
        }
    }

    /// The read-ahead's copy of `at`'s page, if it has one (taken in
    /// address order: pages below it that were not asked for are dropped).
    fn read_ahead_page(&mut self, at: u64) -> Option<(u64, pages::PageBuf)> {
        let page = at & !(self.pages.page_size - 1);
        let ahead = self.ahead.as_ref()?;
        ahead.take(page).map(|bytes| (page, bytes))
    }

    /// Hands the read-ahead's copy of `at`'s page to the pages reader.
    fn preload(&mut self, at: u64) {
        let page = at & !(self.pages.page_size - 1);
        if !self.pages.has_preloaded(page)
            && let Some((page, bytes)) = self.read_ahead_page(at)
        {
            self.pages.preload(page, bytes);
        }
    }

    /// Gives a page buffer back to the read-ahead.
    fn give_back(&mut self, bytes: Option<pages::PageBuf>) {
        if let (Some(ahead), Some(bytes)) = (&self.ahead, bytes) {
            ahead.give_back(bytes);
        }
    }

    /// Reads the next part of `[at, to)` (from `at`); false at the end.
    fn next_chunk(&mut self) -> Result<bool> {
        if self.at >= self.to {
            return Ok(false);
        }
        self.at = self.read(self.at, self.to)?;
        Ok(true)
    }

    /// Reads the part of `[from, to)` in `from`'s page, from memory where
    /// it still is; returns where the next part starts.
    fn read(&mut self, from: u64, to: u64) -> Result<u64> {
        self.preload(from);
        let (session, shape, page_size) = (&mut self.session, self.shape, self.pages.page_size);
        let mut memory = |at: u64, end: u64, out: &mut [u8]| {
            session.copy_from_memory(at, end, out, &shape, page_size)
        };
        let next = self.pages.read_chunk(from, to, &mut memory);
        let spent = self.pages.take_spent();
        self.give_back(spent);
        next
    }

    /// The bytes of the last chunk's record `i`, and its header.
    fn record(&self, i: usize) -> (u64, &[u8], RecordInfo) {
        let r = &self.pages.records[i];
        (r.address, r.bytes(self.pages.chunk()), r.info)
    }

    fn decode(&self, i: usize) -> Result<LogRecord<K, V>> {
        let (address, bytes, info) = self.record(i);
        let (key, value) = key_value(&self.shape, bytes);
        Ok(LogRecord {
            address,
            version: info.version(),
            tombstone: info.is_tombstone(),
            key: K::decode_key(key)?,
            value: if info.is_tombstone() { None } else { Some(V::decode(value)?) },
        })
    }
}

/// The records of a range of the log, oldest first (see
/// [`Store::scan_log`]).
pub struct LogScan<K: Key, V: Value, D: Device> {
    reader: Reader<K, V, D>,
    /// The next record of the last chunk to return.
    next: usize,
    /// The first address to return (the first chunk starts at its page).
    from: u64,
    failed: bool,
}

impl<K: Key, V: Value, D: Device> LogScan<K, V, D> {
    /// The address the scan ends at.
    pub fn end(&self) -> u64 {
        self.reader.to
    }
}

impl<K: Key, V: Value, D: Device> Iterator for LogScan<K, V, D> {
    type Item = Result<LogRecord<K, V>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        loop {
            if let Some(r) = self.reader.pages.records.get(self.next) {
                self.next += 1;
                if r.address < self.from {
                    continue;
                }
                return Some(self.reader.decode(self.next - 1));
            }
            let first = self.reader.at < self.from;
            match self.reader.next_chunk() {
                Ok(true) => {
                    self.next = 0;
                    if first && !self.starts_a_record() {
                        self.failed = true;
                        return Some(Err(Error::InvalidAddress {
                            address: self.from,
                            why: "a scan starts at a record boundary",
                        }));
                    }
                }
                Ok(false) => return None,
                Err(e) => {
                    self.failed = true;
                    return Some(Err(e));
                }
            }
        }
    }
}

impl<K: Key, V: Value, D: Device> LogScan<K, V, D> {
    /// Whether `from` is where a record of the first chunk starts, or past
    /// the chunk's records.
    fn starts_a_record(&self) -> bool {
        let records = &self.reader.pages.records;
        records.iter().any(|r| r.address == self.from)
            || records.last().is_none_or(|r| r.address + r.len as u64 <= self.from)
    }
}

impl<K: Key, V: Value, D: Device> std::fmt::Debug for LogScan<K, V, D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogScan")
            .field("from", &self.from)
            .field("at", &self.reader.at)
            .field("to", &self.reader.to)
            .finish_non_exhaustive()
    }
}

impl<K: Key, V: Value, D: Device> std::fmt::Debug for LiveScan<K, V, D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveScan")
            .field("at", &self.reader.at)
            .field("end", &self.end)
            .field("records", &self.records)
            .field("unsettled", &self.unsettled.len())
            .finish_non_exhaustive()
    }
}

/// The live records of a store: each key with its newest value (see
/// [`Store::iter`] and the module's semantics).
pub struct LiveScan<K: Key, V: Value, D: Device> {
    reader: Reader<K, V, D>,
    end: Address,
    /// The last chunk's records to return, by index, and the next one.
    ready: Vec<usize>,
    next: usize,
    hashes: Vec<u64>,
    settled: Vec<Settle>,
    unsettled: KeyTable,
    /// Once the log is read: the records left in the table (address
    /// order), and the next one to read back.
    survivors: Option<(Vec<u64>, usize)>,
    failed: bool,
    records: u64,
    /// A thread that reads and settles every other part of the log.
    helper: Option<Helper>,
}

impl<K: Key, V: Value, D: Device> LiveScan<K, V, D> {
    /// The tail address when the scan started: records written since (at
    /// or above it) are not returned.
    pub fn end(&self) -> u64 {
        self.end.raw()
    }

    /// How many records the scan has read so far (live or not).
    pub fn records_read(&self) -> u64 {
        self.records
    }

    /// The next live record with a zero-copy view of its value (borrowed
    /// from the scan's page buffer until the next call).
    pub fn next_view(&mut self) -> Option<Result<(K, V::View<'_>)>> {
        let i = match self.advance()? {
            Ok(i) => i,
            Err(e) => return Some(Err(e)),
        };
        let (_, bytes, _) = self.reader.record(i);
        let (key, value) = key_value(&self.reader.shape, bytes);
        Some(K::decode_key(key).and_then(|k| Ok((k, V::view(value)?))).map_err(Error::from))
    }

    /// The index of the next live record in the current chunk.
    fn advance(&mut self) -> Option<Result<usize>> {
        if self.failed {
            return None;
        }
        loop {
            if let Some(&i) = self.ready.get(self.next) {
                self.next += 1;
                return Some(Ok(i));
            }
            let more = match self.survivors.is_some() {
                false => self.scan_chunk(),
                true => self.survivor_chunk(),
            };
            match more {
                Ok(true) => self.next = 0,
                Ok(false) => return None,
                Err(e) => {
                    self.failed = true;
                    return Some(Err(e));
                }
            }
        }
    }

    /// Reads the next part of the log and settles its records: the newest
    /// of their key are ready, the unsettled go to the table. False at the
    /// log's end (then the table's survivors are next). With a helper,
    /// every other part is read and settled by the helper while this
    /// thread does the one before it.
    fn scan_chunk(&mut self) -> Result<bool> {
        self.ready.clear();
        let at = self.reader.at;
        if let Some(helper) = &mut self.helper
            && helper.in_flight == Some(at)
        {
            let mut batch = helper.receive()?;
            self.reader.pages.swap_chunk(&mut batch.chunk);
            helper.spare = Some(batch.chunk);
            let spent = batch.spent.take();
            self.reader.give_back(spent);
            self.reader.at = batch.next;
            self.hashes = batch.hashes;
            self.settled = batch.settled;
            self.apply_settled();
            return Ok(true);
        }
        if let Some(helper) = &mut self.helper {
            // The part after this one, for the helper (this one's page
            // taken from the read-ahead first: it hands pages out in
            // order).
            self.reader.preload(at);
            let next = self.reader.pages.chunk_end(at, self.reader.to);
            if next < self.reader.to {
                let preloaded = self.reader.read_ahead_page(next);
                let spare = match helper.spare.take() {
                    Some(spare) => spare,
                    None => self.reader.pages.spare_chunk()?,
                };
                helper.send(Request { at: next, to: self.reader.to, chunk: spare, preloaded });
            }
        }
        if !self.reader.next_chunk()? {
            let survivors = std::mem::replace(&mut self.unsettled, KeyTable::new()).into_sorted();
            let live = survivors.into_iter().filter(|(_, tombstone)| !tombstone);
            self.survivors = Some((live.map(|(address, _)| address).collect(), 0));
            return Ok(true);
        }
        let reader = &mut self.reader;
        let (shape, chunk, records) = (&reader.shape, reader.pages.chunk(), &reader.pages.records);
        key_hashes(shape, chunk, records, &mut self.hashes);
        reader.session.settle_page(
            shape,
            chunk,
            records,
            &self.hashes,
            self.end,
            &mut self.settled,
        );
        self.apply_settled();
        Ok(true)
    }

    /// Applies the current chunk's settlements, in address order: the
    /// newest records of their keys are ready, the unsettled go to the
    /// table (see the module's comment).
    fn apply_settled(&mut self) {
        let reader = &self.reader;
        let (shape, chunk, records) = (&reader.shape, reader.pages.chunk(), &reader.pages.records);
        self.records += records.len() as u64;
        for (i, r) in records.iter().enumerate() {
            let key = key_of(shape, r.bytes(chunk));
            let tombstone = r.info.is_tombstone();
            match self.settled[i] {
                Settle::Newest => {
                    self.unsettled.remove(self.hashes[i], key);
                    if !tombstone {
                        self.ready.push(i);
                    }
                }
                Settle::Older => self.unsettled.remove(self.hashes[i], key),
                Settle::Unsettled => {
                    self.unsettled.insert(self.hashes[i], key, r.address, tombstone)
                }
            }
        }
    }

    /// Reads back the page of the next survivors. False when none is left.
    fn survivor_chunk(&mut self) -> Result<bool> {
        self.ready.clear();
        let Some((survivors, at)) = &mut self.survivors else { return Ok(false) };
        let Some(&first) = survivors.get(*at) else { return Ok(false) };
        let page_size = self.reader.pages.page_size;
        let page = first & !(page_size - 1);
        let from = page.max(self.reader.pages.begin);
        let to = (page + page_size).min(self.end.raw());
        let (survivors, at) = (std::mem::take(survivors), *at);
        let result = self.reader.read(from, to);
        let mut next = at;
        if result.is_ok() {
            // Both in address order.
            for (i, r) in self.reader.pages.records.iter().enumerate() {
                if survivors.get(next) == Some(&r.address) {
                    self.ready.push(i);
                    next += 1;
                }
            }
            // A survivor this page does not hold (never: its record was
            // read there) is skipped rather than looped on.
            while survivors.get(next).is_some_and(|&a| a < to) {
                next += 1;
            }
        }
        self.survivors = Some((survivors, next));
        result.map(|_| true)
    }
}

/// A part of the log the helper read and settled.
struct Batch {
    chunk: Chunk,
    /// Where the next part starts.
    next: u64,
    hashes: Vec<u64>,
    settled: Vec<Settle>,
    /// A page buffer for the read-ahead.
    spent: Option<pages::PageBuf>,
}

/// What the helper is asked to read: `[at, to)`'s part from `at`, into a
/// spare chunk, with its page if the read-ahead has it.
struct Request {
    at: u64,
    to: u64,
    chunk: Chunk,
    preloaded: Option<(u64, pages::PageBuf)>,
}

/// A live scan's helper thread: it reads and settles the parts it is sent,
/// one at a time, with its own session and reader. The scan applies what
/// it returns in address order, so the result is the same as reading
/// every part itself.
struct Helper {
    requests: Option<std::sync::mpsc::SyncSender<Request>>,
    results: std::sync::mpsc::Receiver<Result<Batch>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Where the part the helper is working on starts.
    in_flight: Option<u64>,
    /// A chunk to send with the next request.
    spare: Option<Chunk>,
}

impl Helper {
    fn start<K: Key, V: Value, D: Device>(
        inner: &Arc<StoreInner<K, V, D>>,
        end: Address,
    ) -> Result<Self> {
        let (requests, inbox) = std::sync::mpsc::sync_channel::<Request>(1);
        let (outbox, results) = std::sync::mpsc::sync_channel(1);
        let mut session = Session::internal(inner.clone())?;
        let mut pages = Pages::new(inner)?;
        let thread = std::thread::Builder::new()
            .name("oxifaster-scan".into())
            .spawn(move || {
                let (shape, page_size) = (pages.shape, pages.page_size);
                for Request { at, to, mut chunk, preloaded } in inbox {
                    if let Some((page, bytes)) = preloaded {
                        pages.preload(page, bytes);
                    }
                    let mut memory = |at: u64, end: u64, out: &mut [u8]| {
                        session.copy_from_memory(at, end, out, &shape, page_size)
                    };
                    let batch = pages.read_chunk(at, to, &mut memory).map(|next| {
                        let mut hashes = Vec::new();
                        let mut settled = Vec::new();
                        let (bytes, records) = (pages.chunk(), &pages.records);
                        key_hashes(&shape, bytes, records, &mut hashes);
                        session.settle_page(&shape, bytes, records, &hashes, end, &mut settled);
                        pages.swap_chunk(&mut chunk);
                        Batch { chunk, next, hashes, settled, spent: pages.take_spent() }
                    });
                    if outbox.send(batch).is_err() {
                        return;
                    }
                }
            })
            .map_err(|source| Error::Io { context: "starting a scan thread".into(), source })?;
        Ok(Self {
            requests: Some(requests),
            results,
            thread: Some(thread),
            in_flight: None,
            spare: None,
        })
    }

    fn send(&mut self, request: Request) {
        let at = request.at;
        if let Some(requests) = &self.requests
            && requests.send(request).is_ok()
        {
            self.in_flight = Some(at);
        }
    }

    fn receive(&mut self) -> Result<Batch> {
        self.in_flight = None;
        self.results.recv().map_err(|_| Error::Io {
            context: "a scan thread ended".into(),
            source: std::io::Error::other("the scan's helper thread stopped"),
        })?
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        // Closing the requests ends the thread's loop (after the part it
        // may be reading; its result is dropped with the receiver).
        self.requests = None;
        while self.results.try_recv().is_ok() {}
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl<K: Key, V: Value, D: Device> Iterator for LiveScan<K, V, D> {
    type Item = Result<(K, V)>;

    fn next(&mut self) -> Option<Self::Item> {
        let i = match self.advance()? {
            Ok(i) => i,
            Err(e) => return Some(Err(e)),
        };
        let (_, bytes, _) = self.reader.record(i);
        let (key, value) = key_value(&self.reader.shape, bytes);
        Some(K::decode_key(key).and_then(|k| Ok((k, V::decode(value)?))).map_err(Error::from))
    }
}

impl<K: Key, V: Value, D: Device> Store<K, V, D> {
    /// Iterates over the store's live records: every key with a value, with
    /// its newest value, each once (tombstones and superseded versions
    /// skipped). The scan reads the whole log in address order (pages on
    /// the device in one sequential read each), so records come in no key
    /// order. Under concurrent updates a key that has a value for the
    /// whole scan is returned exactly once, with a value it held during the
    /// scan; keys inserted or deleted meanwhile may or may not be (see
    /// [`crate::scan`]). [`LiveScan::next_view`] gives zero-copy views of
    /// the values.
    ///
    /// A scan uses one of the store's sessions while it lives (on more than
    /// one core, a second one for a thread that reads and settles every
    /// other page beside it), and compaction waits until it is dropped:
    /// drop a scan before compacting on the same thread.
    ///
    /// ```
    /// use oxifaster::Store;
    ///
    /// let store = Store::<u64, String>::builder().open()?;
    /// let mut session = store.start_session()?;
    /// for key in 0..100u64 {
    ///     session.upsert(&key, format!("v{key}").as_str())?;
    /// }
    /// session.delete(&7)?;
    /// session.upsert(&8, "new")?;
    /// let mut live: Vec<(u64, String)> = store.iter()?.collect::<Result<_, _>>()?;
    /// live.sort();
    /// assert_eq!(live.len(), 99);
    /// assert_eq!(live[7], (8, "new".to_string()));
    /// # Ok::<(), oxifaster::Error>(())
    /// ```
    pub fn iter(&self) -> Result<LiveScan<K, V, D>> {
        let mut reader = Reader::new(self)?;
        let end = reader.session.scan_end();
        reader.at = reader.pages.begin;
        reader.to = end.raw();
        reader.read_ahead();
        let mut scan = LiveScan {
            reader,
            end,
            ready: Vec::new(),
            next: 0,
            hashes: Vec::new(),
            settled: Vec::new(),
            unsettled: KeyTable::new(),
            survivors: None,
            failed: false,
            records: 0,
            helper: None,
        };
        // On more than one core, and a log of more than a few pages.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let page_size = scan.reader.pages.page_size;
        if cores > 1 && scan.reader.to - scan.reader.at > 2 * page_size {
            // Without one (no epoch entry free for it), the scan reads
            // every part itself.
            scan.helper = Helper::start(&self.inner, end).ok();
        }
        Ok(scan)
    }

    /// Iterates over every record in `[from, to)` of the log, oldest first:
    /// each with its address, version, tombstone flag, key and value,
    /// superseded versions included (abandoned records are not). For change
    /// capture, replication and debugging. `from` must be a record
    /// boundary at or above the begin address (the begin address itself,
    /// a page boundary, or a record's address from an earlier scan), and
    /// `to` at most the tail: `None` scans from the begin address, or to
    /// the tail as it is when the scan starts. Records being updated in
    /// place are returned with a value they held during the scan.
    ///
    /// On a recovered store this reads the log the checkpoint left (see
    /// also [`crate::checkpoint::scan_log`], which reads a checkpoint's log
    /// without opening it).
    pub fn scan_log(&self, from: Option<u64>, to: Option<u64>) -> Result<LogScan<K, V, D>> {
        let mut reader = Reader::new(self)?;
        let end = reader.session.scan_end().raw();
        let begin = reader.pages.begin;
        let from = from.unwrap_or(begin);
        let to = to.unwrap_or(end);
        let bad = |address, why| Err(Error::InvalidAddress { address, why });
        if from < begin {
            return bad(from, "below the log's begin address");
        }
        if !from.is_multiple_of(8) {
            return bad(from, "a scan starts at a record boundary");
        }
        if to > end {
            return bad(to, "past the log's tail");
        }
        let page_size = reader.pages.page_size;
        reader.at = (from & !(page_size - 1)).max(begin).min(from);
        reader.to = to.max(from);
        reader.read_ahead();
        Ok(LogScan { reader, next: 0, from, failed: false })
    }
}
