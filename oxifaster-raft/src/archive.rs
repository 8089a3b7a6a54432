//! Snapshot archives: the files of a store checkpoint (and the state
//! machine's metadata) in one file, each checked by its own checksum, so
//! that openraft streams a snapshot as one file in chunks and the receiver
//! verifies every byte before it recovers from it.
//!
//! ```text
//! "OXRSNAP\0" | u32 format (1) | u32 0 | u64 header length | header | u64 XXH3-64(header)
//! per file:   u16 name length | name (relative, '/'-separated) | u64 length | runs | u64 XXH3-64(name ‖ bytes)
//! a run:      u8 0 | u32 n (1..=64 KiB) | n bytes      (data)
//!           | u8 1 | u32 n (1..=64 KiB)                (n zero bytes, unpacked as a hole)
//! "OXRSEND\0" | u64 file count
//! ```
//!
//! The runs of a file cover exactly its length. Zero runs keep a store's
//! sparse files small (an index of a million buckets that holds a few keys
//! is 64 MiB of mostly holes), in the archive and once unpacked.
//!
//! Names are relative paths of `[A-Za-z0-9._-]` components (no `.` or `..`
//! component), at most 255 bytes. The header is the state machine's
//! (`state_machine::SnapshotHeader`, postcard), at most 64 MiB.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use xxhash_rust::xxh3::{Xxh3, xxh3_64};

use crate::{Error, Result};

const MAGIC: &[u8; 8] = b"OXRSNAP\0";
const END: &[u8; 8] = b"OXRSEND\0";
const FORMAT: u32 = 1;
const MAX_HEADER: u64 = 64 << 20;
const MAX_NAME: usize = 255;
/// The largest run.
const RUN: usize = 64 << 10;
const DATA: u8 = 0;
const ZEROS: u8 = 1;

/// Writes `files` (paths relative to `root`) with `header` to `out`, and
/// syncs it.
pub fn pack(root: &Path, files: &[String], header: &[u8], out: &Path) -> Result<()> {
    let file =
        File::create(out).map_err(|e| Error::io(format!("creating {}", out.display()), e))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let werr = |e| Error::io(format!("writing {}", out.display()), e);
    w.write_all(MAGIC).map_err(werr)?;
    w.write_all(&FORMAT.to_le_bytes()).map_err(werr)?;
    w.write_all(&0u32.to_le_bytes()).map_err(werr)?;
    w.write_all(&(header.len() as u64).to_le_bytes()).map_err(werr)?;
    w.write_all(header).map_err(werr)?;
    w.write_all(&xxh3_64(header).to_le_bytes()).map_err(werr)?;
    for name in files {
        check_name(name)?;
        let path = root.join(name);
        let mut src =
            File::open(&path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        let len =
            src.metadata().map_err(|e| Error::io(format!("reading {}", path.display()), e))?.len();
        w.write_all(&(name.len() as u16).to_le_bytes()).map_err(werr)?;
        w.write_all(name.as_bytes()).map_err(werr)?;
        w.write_all(&len.to_le_bytes()).map_err(werr)?;
        let mut hasher = Xxh3::new();
        hasher.update(name.as_bytes());
        let mut buf = vec![0u8; RUN];
        let mut left = len;
        while left > 0 {
            let n = buf.len().min(left as usize);
            src.read_exact(&mut buf[..n])
                .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
            hasher.update(&buf[..n]);
            if buf[..n].iter().all(|&b| b == 0) {
                w.write_all(&[ZEROS]).map_err(werr)?;
                w.write_all(&(n as u32).to_le_bytes()).map_err(werr)?;
            } else {
                w.write_all(&[DATA]).map_err(werr)?;
                w.write_all(&(n as u32).to_le_bytes()).map_err(werr)?;
                w.write_all(&buf[..n]).map_err(werr)?;
            }
            left -= n as u64;
        }
        w.write_all(&hasher.digest().to_le_bytes()).map_err(werr)?;
    }
    w.write_all(END).map_err(werr)?;
    w.write_all(&(files.len() as u64).to_le_bytes()).map_err(werr)?;
    let file = w.into_inner().map_err(|e| werr(e.into_error()))?;
    file.sync_all().map_err(|e| Error::io(format!("syncing {}", out.display()), e))?;
    Ok(())
}

/// Reads an archive's header (checked) without its files.
pub fn read_header(archive: &Path) -> Result<Vec<u8>> {
    let mut r = Reader::open(archive)?;
    r.header()
}

/// Checks every byte of `archive` and writes its files under `dest` (which
/// must not exist yet; it is created, and removed again on failure).
/// Returns the header. Every file and directory written is synced.
pub fn unpack(archive: &Path, dest: &Path) -> Result<Vec<u8>> {
    std::fs::create_dir_all(dest)
        .map_err(|e| Error::io(format!("creating {}", dest.display()), e))?;
    let result = unpack_into(archive, dest);
    if result.is_err() {
        let _ = std::fs::remove_dir_all(dest);
    }
    result
}

fn unpack_into(archive: &Path, dest: &Path) -> Result<Vec<u8>> {
    let mut r = Reader::open(archive)?;
    let header = r.header()?;
    let mut count = 0u64;
    let mut dirs = vec![dest.to_path_buf()];
    loop {
        let mut tag = [0u8; 2];
        r.exact(&mut tag, "a file's name length")?;
        // The end marker starts with "OX": no name is 0x584f bytes long
        // (the longest is 255).
        if tag == END[..2] {
            let mut rest = [0u8; 6];
            r.exact(&mut rest, "the end marker")?;
            if rest != END[2..] {
                return Err(r.corrupt("the end marker is damaged".into()));
            }
            let files = r.u64("the file count")?;
            if files != count {
                return Err(r.corrupt(format!("{count} files, the end marker says {files}")));
            }
            let mut extra = [0u8; 1];
            if r.inner.read(&mut extra).map_err(|e| r.io(e))? != 0 {
                return Err(r.corrupt("bytes after the end marker".into()));
            }
            break;
        }
        let name_len = u16::from_le_bytes(tag) as usize;
        if name_len == 0 || name_len > MAX_NAME {
            return Err(r.corrupt(format!("a file name of {name_len} bytes")));
        }
        let mut name = vec![0u8; name_len];
        r.exact(&mut name, "a file name")?;
        let name =
            String::from_utf8(name).map_err(|_| r.corrupt("a file name is not UTF-8".into()))?;
        check_name(&name)?;
        let len = r.u64("a file length")?;
        let path = dest.join(&name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
            if !dirs.iter().any(|d| d == parent) {
                dirs.push(parent.to_path_buf());
            }
        }
        let out = File::create_new(&path)
            .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
        let mut w = BufWriter::with_capacity(1 << 20, out);
        let mut hasher = Xxh3::new();
        hasher.update(name.as_bytes());
        let mut buf = vec![0u8; RUN];
        let zeros = vec![0u8; RUN];
        let mut left = len;
        let werr = |e| Error::io(format!("writing {}", path.display()), e);
        while left > 0 {
            let mut tag = [0u8; 1];
            r.exact(&mut tag, "a run's kind")?;
            let mut n = [0u8; 4];
            r.exact(&mut n, "a run's length")?;
            let n = u32::from_le_bytes(n) as usize;
            if n == 0 || n > RUN || n as u64 > left {
                return Err(r.corrupt(format!("{name}: a run of {n} bytes, {left} left")));
            }
            match tag[0] {
                DATA => {
                    r.exact(&mut buf[..n], "a file's bytes")?;
                    hasher.update(&buf[..n]);
                    w.write_all(&buf[..n]).map_err(werr)?;
                }
                ZEROS => {
                    hasher.update(&zeros[..n]);
                    w.flush().map_err(werr)?;
                    w.get_mut().seek(SeekFrom::Current(n as i64)).map_err(werr)?;
                }
                other => return Err(r.corrupt(format!("{name}: a run of kind {other}"))),
            }
            left -= n as u64;
        }
        let sum = r.u64("a file's checksum")?;
        if sum != hasher.digest() {
            return Err(r.corrupt(format!("{name} fails its checksum")));
        }
        let out = w.into_inner().map_err(|e| werr(e.into_error()))?;
        // A file that ends in a hole: its length, by the length.
        out.set_len(len).map_err(werr)?;
        out.sync_all().map_err(|e| Error::io(format!("syncing {}", path.display()), e))?;
        count += 1;
    }
    for dir in dirs.iter().rev() {
        sync_dir(dir)?;
    }
    Ok(header)
}

/// Syncs a directory (its entries' creation and renames).
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format!("syncing {}", dir.display()), e))
}

fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name.split('/').all(|part| {
            !part.is_empty()
                && part != "."
                && part != ".."
                && part.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        });
    if ok {
        Ok(())
    } else {
        Err(Error::Corrupt {
            what: "a snapshot archive".into(),
            why: format!("the file name {name:?} is not a plain relative path"),
        })
    }
}

struct Reader {
    inner: BufReader<File>,
    path: PathBuf,
    /// Bytes not read yet.
    left: u64,
}

impl Reader {
    fn open(path: &Path) -> Result<Self> {
        let file =
            File::open(path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        let left =
            file.metadata().map_err(|e| Error::io(format!("reading {}", path.display()), e))?.len();
        Ok(Self { inner: BufReader::with_capacity(1 << 20, file), path: path.into(), left })
    }

    fn corrupt(&self, why: String) -> Error {
        Error::Corrupt { what: format!("the snapshot archive {}", self.path.display()), why }
    }

    fn io(&self, e: std::io::Error) -> Error {
        Error::io(format!("reading {}", self.path.display()), e)
    }

    fn exact(&mut self, buf: &mut [u8], what: &str) -> Result<()> {
        if (buf.len() as u64) > self.left {
            return Err(self.corrupt(format!("it ends inside {what}")));
        }
        self.inner.read_exact(buf).map_err(|e| self.io(e))?;
        self.left -= buf.len() as u64;
        Ok(())
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        let mut b = [0u8; 8];
        self.exact(&mut b, what)?;
        Ok(u64::from_le_bytes(b))
    }

    fn header(&mut self) -> Result<Vec<u8>> {
        let mut magic = [0u8; 8];
        self.exact(&mut magic, "the magic")?;
        if &magic != MAGIC {
            return Err(self.corrupt("not a snapshot archive (magic)".into()));
        }
        let mut words = [0u8; 8];
        self.exact(&mut words, "the format")?;
        let format = u32::from_le_bytes([words[0], words[1], words[2], words[3]]);
        if format != FORMAT {
            return Err(self.corrupt(format!("format {format}; this build reads {FORMAT}")));
        }
        if words[4..] != [0; 4] {
            return Err(self.corrupt("the reserved word is not zero".into()));
        }
        let len = self.u64("the header length")?;
        if len > MAX_HEADER || len > self.left {
            return Err(self.corrupt(format!("a header of {len} bytes")));
        }
        let mut header = vec![0u8; len as usize];
        self.exact(&mut header, "the header")?;
        let sum = self.u64("the header checksum")?;
        if sum != xxh3_64(&header) {
            return Err(self.corrupt("the header fails its checksum".into()));
        }
        Ok(header)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(dir: &Path) -> Vec<String> {
        std::fs::create_dir_all(dir.join("a/b")).expect("mkdir");
        std::fs::write(dir.join("top"), b"hello").expect("write");
        std::fs::write(dir.join("a/b/deep"), vec![7u8; 3 << 20]).expect("write");
        std::fs::write(dir.join("empty"), b"").expect("write");
        vec!["top".into(), "a/b/deep".into(), "empty".into()]
    }

    #[test]
    fn round_trip() {
        let t = tempfile::tempdir().expect("tempdir");
        let files = sample(&t.path().join("src"));
        let archive = t.path().join("x.snap");
        pack(&t.path().join("src"), &files, b"head", &archive).expect("pack");
        assert_eq!(read_header(&archive).expect("header"), b"head");
        let dest = t.path().join("dest");
        assert_eq!(unpack(&archive, &dest).expect("unpack"), b"head");
        assert_eq!(std::fs::read(dest.join("top")).expect("read"), b"hello");
        assert_eq!(std::fs::read(dest.join("a/b/deep")).expect("read"), vec![7u8; 3 << 20]);
        assert_eq!(std::fs::read(dest.join("empty")).expect("read"), b"");
    }

    #[test]
    fn every_flipped_byte_and_every_truncation_is_refused() {
        let t = tempfile::tempdir().expect("tempdir");
        let src = t.path().join("src");
        std::fs::create_dir_all(&src).expect("mkdir");
        std::fs::write(src.join("f"), b"0123456789").expect("write");
        std::fs::write(src.join("g"), b"abc").expect("write");
        let archive = t.path().join("x.snap");
        pack(&src, &["f".into(), "g".into()], b"meta", &archive).expect("pack");
        let good = std::fs::read(&archive).expect("read");
        let bad = t.path().join("bad.snap");
        for i in 0..good.len() {
            let mut bytes = good.clone();
            bytes[i] ^= 0x40;
            std::fs::write(&bad, &bytes).expect("write");
            let dest = t.path().join(format!("flip{i}"));
            let err = unpack(&bad, &dest).expect_err("a flipped byte");
            assert!(matches!(err, Error::Corrupt { .. } | Error::Io { .. }), "byte {i}: {err}");
            assert!(!dest.exists(), "a failed unpack leaves nothing");
        }
        for len in 0..good.len() {
            std::fs::write(&bad, &good[..len]).expect("write");
            let err = unpack(&bad, &t.path().join(format!("cut{len}"))).expect_err("truncated");
            assert!(matches!(err, Error::Corrupt { .. }), "length {len}: {err}");
        }
    }

    #[test]
    fn zeros_stay_holes() {
        let t = tempfile::tempdir().expect("tempdir");
        let src = t.path().join("src");
        std::fs::create_dir_all(&src).expect("mkdir");
        // 64 MiB, almost all holes, a few bytes in the middle and at the end.
        let f = File::create(src.join("sparse")).expect("create");
        f.set_len(64 << 20).expect("set_len");
        use std::os::unix::fs::FileExt;
        f.write_all_at(b"middle", 32 << 20).expect("write");
        f.write_all_at(b"end", (64 << 20) - 3).expect("write");
        drop(f);
        let archive = t.path().join("x.snap");
        pack(&src, &["sparse".into()], b"", &archive).expect("pack");
        let size = std::fs::metadata(&archive).expect("stat").len();
        // Two 64 KiB runs of data, 1,022 zero runs of five bytes.
        assert!(size < 256 << 10, "an archive of {size} bytes");
        let dest = t.path().join("dest");
        unpack(&archive, &dest).expect("unpack");
        let bytes = std::fs::read(dest.join("sparse")).expect("read");
        assert_eq!(bytes.len(), 64 << 20);
        assert_eq!(&bytes[32 << 20..(32 << 20) + 6], b"middle");
        assert_eq!(&bytes[(64 << 20) - 3..], b"end");
        assert!(bytes[..32 << 20].iter().all(|&b| b == 0));
        use std::os::unix::fs::MetadataExt;
        let blocks = std::fs::metadata(dest.join("sparse")).expect("stat").blocks();
        assert!(blocks * 512 < 1 << 20, "unpacked as holes: {blocks} blocks");
    }

    #[test]
    fn names_that_escape_are_refused() {
        for name in ["../x", "/abs", "a/../b", "a//b", "", ".", "a b"] {
            assert!(check_name(name).is_err(), "{name:?}");
        }
        assert!(check_name("checkpoints/0000000001-00ff/meta").is_ok());
    }
}
