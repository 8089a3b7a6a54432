//! Entry points for fuzzing: the targets in `fuzz/` (cargo fuzz) and the CI
//! smoke test that replays the committed seed corpora call these. Each
//! takes arbitrary bytes and must not panic, hang or allocate without
//! bound; where a decoder accepts its input, re-encoding must give back the
//! same value. Checksums are also fixed up before decoding, so that the
//! fuzzer explores the structure behind them, not only the checksum
//! comparison. Not a public API: anything here may change in any release.

use std::path::Path;

use crate::log::commit::CommitRecord;
use crate::log::entry;
use crate::record::{Key, Value};

fn word(bytes: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    let end = bytes.len().min(at + 8);
    if at < end {
        w[..end - at].copy_from_slice(&bytes[at..end]);
    }
    u64::from_le_bytes(w)
}

/// FasterLog entries: decoding arbitrary bytes at an arbitrary address
/// and page room, and encode → decode of arbitrary payloads.
pub fn log_entry(data: &[u8]) {
    let address = word(data, 0) & !7;
    let room = word(data, 8) & 0xffff_ffff;
    let bytes = data.get(16..).unwrap_or_default();
    if let Ok(Some((payload, size))) = entry::decode(address, bytes, room) {
        assert!(size <= room && size as usize <= bytes.len());
        assert_eq!(size, entry::entry_size(payload.len()));
    }
    let mut out = vec![0u8; entry::entry_size(bytes.len()) as usize];
    entry::encode(address, bytes, &mut out);
    let decoded = entry::decode(address, &out, out.len() as u64);
    assert_eq!(decoded, Ok(Some((bytes, out.len() as u64))), "an encoded entry must decode");
}

/// FasterLog commit slots: decoding, choosing the newest of two, and (with
/// the checksum fixed up) decode → encode → decode.
pub fn log_commit(data: &[u8]) {
    let _ = CommitRecord::decode(data);
    let half = data.len() / 2;
    let _ = crate::log::commit::newest(&data[..half], &data[half..]);
    let mut fixed = data.to_vec();
    crate::log::commit::fix_checksum(&mut fixed);
    if let Ok(record) = CommitRecord::decode(&fixed) {
        let again = record.encode().expect("a decoded record re-encodes");
        assert_eq!(CommitRecord::decode(&again).as_ref(), Ok(&record));
    }
}

/// Checkpoint metadata files: decoding, and (with the payload checksum
/// fixed up) validation of the rkyv archive behind it.
pub fn checkpoint_meta(data: &[u8]) {
    let path = Path::new("fuzz/meta");
    let _ = crate::checkpoint::meta_decode(data, path);
    let mut fixed = data.to_vec();
    crate::checkpoint::meta_fix_checksum(&mut fixed);
    let _ = crate::checkpoint::meta_decode(&fixed, path);
}

/// Index checkpoint files: whole small files (read from memory, through
/// the same code as from a file), as they are and with the trailer fixed
/// up.
pub fn index_checkpoint(data: &[u8]) {
    if data.len() > 1 << 16 {
        return;
    }
    let path = Path::new("fuzz/index");
    for bytes in [data.to_vec(), crate::index::fix_checkpoint_trailer(data)] {
        let _ = crate::index::HashIndex::read_checkpoint_bytes(&bytes, path);
    }
}

/// Store log pages: the seal check (strict and lenient) of arbitrary bytes
/// at an arbitrary page address and length, and the record walk recovery
/// does over them (fixed and variable-length records), once as they are
/// and once with a seal fixed up, which must then check.
///
/// Input: page address u64 ‖ sealed length u16 ‖ log2 page size (9..=12)
/// ‖ page bytes.
pub fn log_page(data: &[u8]) {
    use crate::hlog::seal;
    if data.len() < 11 {
        return;
    }
    let bits = 9 + u32::from(data[10] % 4);
    let page_size = 1u64 << bits;
    let address = u64::from_le_bytes(data[..8].try_into().unwrap_or_default())
        & ((1u64 << crate::address::Address::BITS) - 1)
        & !(page_size - 1);
    let need = u64::from(u16::from_le_bytes([data[8], data[9]])) % (page_size - seal::TRAILER + 1);
    let mut page = data[11..].to_vec();
    page.resize(page_size as usize, 0);
    for strict in [false, true] {
        let _ = seal::check_page(address, &page, need, strict);
    }
    let walk = |page: &mut [u8]| {
        let _ = crate::checkpoint::walk_page::<u64, u64>(page, address, page_size);
        let _ = crate::checkpoint::walk_page::<String, Vec<u8>>(page, address, page_size);
        let _ = crate::checkpoint::walk_page::<[u8; 16], String>(page, address, page_size);
    };
    walk(&mut page);
    seal::seal_image(address, &mut page, need);
    assert!(seal::check_page(address, &page, need, true).is_ok(), "a fresh seal checks");
    walk(&mut page);
}

/// Record encodings: keys and values of fixed and variable length decoded
/// from arbitrary bytes (owned and zero-copy), and re-encoded.
pub fn record(data: &[u8]) {
    let aligned = crate::record::AlignedBytes::copy_from(data);
    let bytes = aligned.as_slice();
    if let Ok(s) = <String as Value>::decode(bytes) {
        assert_eq!(<String as Value>::decode(s.to_aligned_bytes().as_slice()).ok(), Some(s));
    }
    let _ = <String as Value>::view(bytes);
    if let Ok(v) = <Vec<u64> as Value>::decode(bytes) {
        assert_eq!(<Vec<u64> as Value>::decode(v.to_aligned_bytes().as_slice()).ok(), Some(v));
    }
    let _ = <Vec<u8> as Value>::view(bytes);
    let _ = <u64 as Value>::decode(bytes);
    let _ = <[u8; 16] as Value>::view(bytes);
    if let Ok(k) = <String as Key>::decode_key(bytes) {
        assert!(k.matches(k.key_to_aligned_bytes().as_slice()));
    }
    let _ = <u64 as Key>::decode_key(bytes);
}

/// The crash mode an input byte picks.
fn crash_mode(byte: u8) -> crate::device::CrashMode {
    use crate::device::CrashMode;
    match byte % 3 {
        0 => CrashMode::Drop,
        1 => CrashMode::KeepSome,
        _ => CrashMode::Tear,
    }
}

/// The committed state a FasterLog may recover to: its live entries and
/// its cookie.
#[derive(Debug, Clone, PartialEq, Default)]
struct LogState {
    entries: Vec<Vec<u8>>,
    cookie: Vec<u8>,
}

/// FasterLog as a state machine: operation sequences (enqueue, commit with
/// a cookie, `truncate_until`, `truncate_after`, reads) read from `data`,
/// with the power cut at an operation count also read from it (unsynced
/// writes dropped, kept or torn), and at the end of the input. After every
/// power loss the reopened log must hold exactly the last acknowledged
/// commit's state, or the state of the commit that was cut short, and then
/// keep working. The model is a `Vec` of entries.
pub fn log_ops(data: &[u8]) {
    use crate::device::{CrashClock, FaultDevice};
    use crate::log::{FasterLog, LogAddress, LogConfig};

    let config = || LogConfig::default().page_size_bits(12).log_memory_size_bytes(16 << 10);
    let open = |data: Vec<u8>, commits: Vec<u8>, clock: &std::sync::Arc<CrashClock>| {
        FasterLog::with_devices(
            config(),
            FaultDevice::from_image(data, clock.clone()).with_write_alignment(512),
            FaultDevice::from_image(commits, clock.clone()),
        )
    };
    let mut input = data.iter().copied();
    let mut next = move || input.next();
    let mut clock = CrashClock::new();
    let mut log = open(Vec::new(), Vec::new(), &clock).expect("a new log opens");
    // Committed entries (with their addresses) and those enqueued since.
    let mut acked = LogState::default();
    let mut addresses: Vec<LogAddress> = Vec::new();
    let mut pending: Vec<(LogAddress, Vec<u8>)> = Vec::new();
    // The states the commit cut short may leave (`truncate_after` commits
    // twice: first everything, then the drop).
    let mut in_flight: Vec<LogState> = Vec::new();
    let mut cookie_counter = 0u32;
    if let Some(countdown) = next() {
        clock.arm(u64::from(countdown) * 2);
    }
    let mut steps = 0;
    loop {
        let op = next();
        steps += 1;
        let crash = clock.crashed() || op.is_none() || steps > 400;
        if !crash {
            let op = op.unwrap_or(0);
            let arg = next().unwrap_or(0);
            // The state a committing call leads to, and the call.
            let mut all: Vec<(LogAddress, Vec<u8>)> =
                addresses.iter().copied().zip(acked.entries.iter().cloned()).collect();
            all.extend(pending.iter().cloned());
            let committed: Option<(LogState, Vec<LogAddress>, crate::Result<()>)> = match op {
                0..=139 => {
                    let len = usize::from(arg) * usize::from(op % 8 + 1);
                    let payload: Vec<u8> = (0..len).map(|i| (i as u8) ^ op).collect();
                    if let Ok(a) = log.enqueue(&payload) {
                        pending.push((a, payload));
                    }
                    None
                }
                140..=179 => {
                    cookie_counter += 1;
                    let cookie = cookie_counter.to_le_bytes().to_vec();
                    let state = LogState {
                        entries: all.iter().map(|e| e.1.clone()).collect(),
                        cookie: cookie.clone(),
                    };
                    in_flight = vec![state.clone()];
                    let r = log.commit_with_cookie(&cookie).map(|_| ());
                    Some((state, all.iter().map(|e| e.0).collect(), r))
                }
                180..=199 if !all.is_empty() => {
                    let cut = usize::from(arg) % all.len();
                    let kept = &all[..cut];
                    let state = LogState {
                        entries: kept.iter().map(|e| e.1.clone()).collect(),
                        cookie: acked.cookie.clone(),
                    };
                    let everything = LogState {
                        entries: all.iter().map(|e| e.1.clone()).collect(),
                        cookie: acked.cookie.clone(),
                    };
                    in_flight = vec![state.clone(), everything];
                    let r = log.truncate_after(all[cut].0);
                    Some((state, kept.iter().map(|e| e.0).collect(), r))
                }
                200..=219 if !all.is_empty() => {
                    let from = usize::from(arg) % all.len().min(acked.entries.len() + 1);
                    let at = all.get(from).map(|e| e.0).unwrap_or(LogAddress::FIRST);
                    if from >= acked.entries.len() {
                        None
                    } else {
                        let rest = &all[from..];
                        let state = LogState {
                            entries: rest.iter().map(|e| e.1.clone()).collect(),
                            cookie: acked.cookie.clone(),
                        };
                        in_flight = vec![state.clone()];
                        let r = log.truncate_until(at);
                        Some((state, rest.iter().map(|e| e.0).collect(), r))
                    }
                }
                _ => {
                    if !acked.entries.is_empty() {
                        let i = usize::from(arg) % acked.entries.len();
                        if let Ok(bytes) = log.read(addresses[i]) {
                            assert_eq!(bytes, acked.entries[i], "a read returned other bytes");
                        }
                    }
                    None
                }
            };
            match committed {
                Some((state, new_addresses, Ok(()))) => {
                    acked = state;
                    addresses = new_addresses;
                    pending.clear();
                    in_flight.clear();
                }
                Some((_, _, Err(_))) | None => {}
            }
            if !clock.crashed() {
                continue;
            }
        }
        // The power goes out.
        let mode = crash_mode(next().unwrap_or(0));
        let seed = u64::from(next().unwrap_or(0));
        let data_image = log.data_device().power_loss(mode, seed);
        let commit_image = log.commit_device().power_loss(mode, seed ^ 1);
        drop(log);
        clock = CrashClock::new();
        log = open(data_image, commit_image, &clock).expect("recovery after a power loss");
        let recovered: Vec<(LogAddress, Vec<u8>)> = log
            .scan_all()
            .map(|e| e.map(|e| (e.address, e.data)))
            .collect::<crate::Result<_>>()
            .expect("a recovered log scans");
        let state = LogState {
            entries: recovered.iter().map(|e| e.1.clone()).collect(),
            cookie: log.cookie(),
        };
        assert!(
            state == acked || in_flight.contains(&state),
            "recovered {} entries; acknowledged {}, in flight {:?}",
            state.entries.len(),
            acked.entries.len(),
            in_flight.iter().map(|s| s.entries.len()).collect::<Vec<_>>()
        );
        log.verify().expect("a recovered log verifies");
        acked = state;
        addresses = recovered.into_iter().map(|e| e.0).collect();
        pending.clear();
        in_flight.clear();
        if op.is_none() || steps > 400 {
            return;
        }
        if let Some(countdown) = next() {
            clock.arm(u64::from(countdown) * 2);
        }
    }
}

/// The store as a state machine: one session's upserts, RMWs, deletes and
/// reads, and checkpoints of every kind, read from `data`, against a
/// `BTreeMap`, with the power cut at an operation count read from `data`
/// (the log on a [`crate::device::FaultDevice`], checkpoint files through
/// [`crate::checkpoint::FaultIo`]; unsynced writes dropped, kept or torn).
/// Recovery must give the model as of the last acknowledged checkpoint or
/// of the one cut short, or (when none completed) no checkpoint at all.
pub fn store_ops(data: &[u8]) {
    use std::collections::BTreeMap;

    use crate::checkpoint::{CheckpointKind, FaultIo};
    use crate::device::{CrashClock, FaultDevice};
    use crate::store::{RmwStatus, Store};

    let Ok(dir) = tempfile::tempdir() else { return };
    let builder = |io: FaultIo| {
        Store::<u64, u64>::builder()
            .dir(dir.path())
            .page_size_bits(10)
            .log_memory_size_bytes(8 << 10)
            .table_size(1 << 6)
            .checkpoint_io(io)
            // A drop here is a crash: no policy checkpoints behind its back.
            .checkpoint_every(None)
            .checkpoint_on_close(false)
    };
    let mut input = data.iter().copied();
    let mut next = move || input.next();
    let clock = CrashClock::new();
    let io = FaultIo::new(clock.clone());
    let store: Store<u64, u64, FaultDevice> =
        builder(io.clone()).open_with_device(FaultDevice::new(clock.clone())).expect("open");
    clock.arm(u64::from(next().unwrap_or(255)) * 2);
    let mut model: BTreeMap<u64, u64> = BTreeMap::new();
    let mut acked: Option<BTreeMap<u64, u64>> = None;
    let mut in_flight: Option<BTreeMap<u64, u64>> = None;
    {
        let mut session = store.start_session().expect("session");
        for _ in 0..300 {
            let (Some(op), Some(arg)) = (next(), next()) else { break };
            let key = u64::from(arg % 48);
            let ok = match op % 16 {
                0..=4 => session.upsert(&key, &u64::from(op)).map(|_| {
                    model.insert(key, u64::from(op));
                }),
                5..=9 => session
                    .rmw(&key, &u64::from(arg))
                    .and_then(|status| match status {
                        RmwStatus::Pending { .. } => session.complete_pending().map(|_| ()),
                        _ => Ok(()),
                    })
                    .map(|()| *model.entry(key).or_insert(0) += u64::from(arg)),
                10 | 11 => session.delete(&key).map(|_| {
                    model.remove(&key);
                }),
                12 | 13 => session.read_blocking(&key).map(|got| {
                    assert_eq!(got, model.get(&key).copied(), "a read disagrees with the model");
                }),
                _ => {
                    let kind = match arg % 4 {
                        0 => CheckpointKind::FoldOver,
                        1 => CheckpointKind::Snapshot,
                        2 => CheckpointKind::IncrementalSnapshot,
                        _ => CheckpointKind::LogOnly,
                    };
                    in_flight = Some(model.clone());
                    let r = store.checkpoint_and_wait(kind).map(|_| ());
                    if r.is_ok() {
                        acked = in_flight.take();
                    }
                    r
                }
            };
            if ok.is_err() {
                break;
            }
        }
    }
    let mode = crash_mode(next().unwrap_or(0));
    let seed = u64::from(next().unwrap_or(0));
    let image = store.device().power_loss(mode, seed);
    io.power_loss(mode, seed).expect("the simulated file system's loss");
    drop(store);
    let recovered: crate::Result<Store<u64, u64, FaultDevice>> =
        builder(FaultIo::new(CrashClock::new())).recover_latest_with_device(|| {
            FaultDevice::from_image(image.clone(), CrashClock::new())
        });
    let recovered = match recovered {
        Ok(store) => store,
        Err(crate::Error::CheckpointNotFound { .. }) => {
            assert!(acked.is_none(), "an acknowledged checkpoint was lost");
            return;
        }
        Err(e) => panic!("recovery failed: {e}"),
    };
    let mut session = recovered.start_session().expect("session");
    let state: BTreeMap<u64, u64> = (0..48u64)
        .filter_map(|k| session.read_blocking(&k).expect("read").map(|v| (k, v)))
        .collect();
    assert!(
        Some(&state) == acked.as_ref() || Some(&state) == in_flight.as_ref(),
        "recovered {} keys: neither the acknowledged checkpoint nor the interrupted one",
        state.len()
    );
}

/// A store directory whose files are mutated: a small store (variable-length
/// values, a fold-over and then a snapshot checkpoint) is written, then
/// `data` — triples of (file, offset, xor) over its files in name order —
/// flips bytes in them, and the checksums are fixed up afterwards (metadata,
/// index trailer, log page seals) so that the damage reaches the structure
/// behind them. Opening the store and reading every key must give values or
/// named errors: never a panic, a hang or an out-of-bounds access (run
/// under AddressSanitizer by `scripts/asan.sh`).
pub fn store_dir(data: &[u8]) {
    use crate::hlog::seal;
    use crate::store::Store;
    use std::path::PathBuf;

    let Ok(dir) = tempfile::tempdir() else { return };
    let builder = || {
        Store::<u64, Vec<u8>>::builder()
            .dir(dir.path())
            .page_size_bits(12)
            .log_memory_size_bytes(64 << 10)
            .table_size(1 << 6)
            .checkpoint_every(None)
            .checkpoint_on_close(false)
    };
    {
        let Ok(store) = builder().open() else { return };
        let Ok(mut session) = store.start_session() else { return };
        for k in 0..120u64 {
            let _ = session.upsert(&k, &vec![k as u8; (k % 40) as usize]);
        }
        let _ = store.checkpoint_and_wait(crate::checkpoint::CheckpointKind::FoldOver);
        for k in 60..160u64 {
            let _ = session.upsert(&k, &vec![!k as u8; (k % 24) as usize]);
        }
        let _ = store.checkpoint_and_wait(crate::checkpoint::CheckpointKind::Snapshot);
    }
    // The files, in a stable order.
    fn files(dir: &std::path::Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        for path in paths {
            if path.is_dir() {
                files(&path, out);
            } else if path.file_name().is_some_and(|n| n != "LOCK") {
                out.push(path);
            }
        }
    }
    let mut all = Vec::new();
    files(dir.path(), &mut all);
    if all.is_empty() {
        return;
    }
    let mut touched_pages: Vec<(PathBuf, u64)> = Vec::new();
    for triple in data.chunks_exact(6) {
        let path = &all[usize::from(triple[0]) % all.len()];
        let Ok(mut bytes) = std::fs::read(path) else { continue };
        if bytes.is_empty() {
            continue;
        }
        let offset =
            u32::from_le_bytes([triple[1], triple[2], triple[3], triple[4]]) as usize % bytes.len();
        bytes[offset] ^= triple[5] | 1;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if name == "meta" {
            crate::checkpoint::meta_fix_checksum(&mut bytes);
        } else if name == "index" {
            bytes = crate::index::fix_checkpoint_trailer(&bytes);
        } else if name.starts_with("log.") {
            touched_pages.push((path.clone(), (offset as u64) & !4095));
        }
        let _ = std::fs::write(path, &bytes);
    }
    // Log pages: seal them again over the length their seal covered.
    for (path, page) in touched_pages {
        let Ok(mut bytes) = std::fs::read(&path) else { continue };
        let Some(image) = bytes.get_mut(page as usize..page as usize + 4096) else { continue };
        let trailer = &image[4096 - seal::TRAILER as usize..];
        let len = (0..2)
            .map(|slot| {
                u64::from(u32::from_le_bytes(
                    trailer[slot * 8..slot * 8 + 4].try_into().unwrap_or_default(),
                ))
            })
            .max()
            .unwrap_or(0)
            .min(4096 - seal::TRAILER);
        seal::seal_image(page, image, len);
        let _ = std::fs::write(&path, &bytes);
    }
    let Ok(store) = builder().open() else { return };
    let Ok(mut session) = store.start_session() else { return };
    for k in 0..170u64 {
        let _ = session.read_blocking(&k);
        let _ = session.read_with(&k, |v| v.map(|v| v.len()));
    }
    let _ = session.upsert(&1, &vec![1, 2, 3]);
    let _ = session.rmw_with(&2, |old| old.unwrap_or_default());
}
