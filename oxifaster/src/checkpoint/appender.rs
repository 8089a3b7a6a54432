//! A sequential writer of checkpoint files, sparse where the bytes are
//! zero.

use std::io;

use crate::cpr::CheckpointFile;

/// A sequential writer over a [`CheckpointFile`] (for `BufWriter`).
pub(crate) struct Appender {
    pub(crate) file: Box<dyn CheckpointFile>,
    pub(crate) position: u64,
    /// Leave 4 KiB blocks of zeros as holes in the file: they read back as
    /// zeros and take no disk (an index of a million buckets that holds a
    /// few keys is a few KiB on disk); [`Appender::finish`] sets the
    /// file's length.
    pub(crate) sparse: bool,
    /// The end of the last bytes actually written.
    pub(crate) written_until: u64,
}

impl Appender {
    /// A writer at the start of `file`.
    pub(crate) fn new(file: Box<dyn CheckpointFile>, sparse: bool) -> Self {
        Self { file, position: 0, sparse, written_until: 0 }
    }

    /// Gives the file its full length when it ends in a hole (writes its
    /// last byte, a zero).
    pub(crate) fn finish(&mut self) -> io::Result<()> {
        if self.position > self.written_until {
            self.file.write_at(self.position - 1, &[0])?;
            self.written_until = self.position;
        }
        Ok(())
    }
}

impl io::Write for Appender {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if !self.sparse {
            self.file.write_at(self.position, buf)?;
            self.position += buf.len() as u64;
            self.written_until = self.position;
            return Ok(buf.len());
        }
        // Runs of non-zero 4 KiB blocks are written; zero blocks are
        // skipped (`finish` sets the file's length).
        const BLOCK: usize = 4096;
        let mut run: Option<usize> = None;
        for (i, block) in buf.chunks(BLOCK).enumerate() {
            let keep = !is_zero(block);
            match (keep, run) {
                (true, None) => run = Some(i * BLOCK),
                (false, Some(start)) => {
                    self.file.write_at(self.position + start as u64, &buf[start..i * BLOCK])?;
                    run = None;
                }
                _ => {}
            }
        }
        if let Some(start) = run {
            self.file.write_at(self.position + start as u64, &buf[start..])?;
            self.written_until = self.position + buf.len() as u64;
        }
        self.position += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Whether every byte is zero (a word at a time).
fn is_zero(bytes: &[u8]) -> bool {
    let (head, words, tail) = bytemuck::pod_align_to::<u8, u64>(bytes);
    head.iter().all(|b| *b == 0) && words.iter().all(|w| *w == 0) && tail.iter().all(|b| *b == 0)
}
