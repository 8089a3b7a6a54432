//! Byte sinks: one `encode` method serves writing, hashing and comparing.
//!
//! A type's encoder writes its bytes piece by piece into a [`Sink`]. Writing
//! into a buffer, hashing the encoding and comparing it with stored bytes are
//! then the same code path, so the three can never disagree, and none of
//! them allocates.

use super::CodecError;

/// Receives the bytes of an encoding, in order.
pub trait Sink {
    /// Appends `bytes` to the encoding.
    fn put(&mut self, bytes: &[u8]);
}

/// Writes an encoding into a slice of exactly the right size.
///
/// Writing past the end is recorded (and the excess dropped), never a panic;
/// [`SliceWriter::finish`] reports it.
#[derive(Debug)]
pub struct SliceWriter<'a> {
    buf: &'a mut [u8],
    written_bytes: usize,
}

impl<'a> SliceWriter<'a> {
    /// A writer that fills `buf` from its start.
    #[inline]
    pub fn new(buf: &'a mut [u8]) -> Self {
        Self { buf, written_bytes: 0 }
    }

    /// Checks that the encoder wrote exactly `buf.len()` bytes.
    #[inline]
    pub fn finish(self, type_name: &'static str) -> Result<(), CodecError> {
        if self.written_bytes != self.buf.len() {
            return Err(CodecError::EncoderMismatch {
                type_name,
                announced: self.buf.len(),
                written: self.written_bytes,
            });
        }
        Ok(())
    }
}

impl Sink for SliceWriter<'_> {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        let start = self.written_bytes;
        let end = start.saturating_add(bytes.len());
        if let Some(dst) = self.buf.get_mut(start..end) {
            dst.copy_from_slice(bytes);
        }
        self.written_bytes = end;
    }
}

/// Computes [`super::hash_bytes`] of an encoding as it is written.
///
/// Streaming XXH3 gives the same result as the one-shot function over the
/// concatenated bytes.
#[derive(Clone)]
pub struct KeyHasher {
    state: xxhash_rust::xxh3::Xxh3Default,
}

impl std::fmt::Debug for KeyHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyHasher").finish_non_exhaustive()
    }
}

impl Default for KeyHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl KeyHasher {
    /// A hasher over the empty encoding.
    #[inline]
    pub fn new() -> Self {
        Self { state: xxhash_rust::xxh3::Xxh3Default::new() }
    }

    /// The hash of everything written so far.
    #[inline]
    pub fn finish(&self) -> u64 {
        self.state.digest()
    }
}

impl Sink for KeyHasher {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        self.state.update(bytes);
    }
}

/// Compares an encoding, as it is written, with stored bytes.
#[derive(Debug)]
pub struct ByteComparer<'a> {
    stored: &'a [u8],
    position: usize,
    equal: bool,
}

impl<'a> ByteComparer<'a> {
    /// A comparer against `stored`.
    #[inline]
    pub fn new(stored: &'a [u8]) -> Self {
        Self { stored, position: 0, equal: true }
    }

    /// Whether everything written equals `stored`, and covers all of it.
    #[inline]
    pub fn is_equal(&self) -> bool {
        self.equal && self.position == self.stored.len()
    }
}

impl Sink for ByteComparer<'_> {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        if !self.equal {
            return;
        }
        let end = self.position.saturating_add(bytes.len());
        self.equal = self.stored.get(self.position..end) == Some(bytes);
        self.position = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slice_writer_reports_short_and_long_encodings() {
        let mut buf = [0u8; 4];
        let mut w = SliceWriter::new(&mut buf);
        w.put(&[1, 2]);
        assert!(matches!(w.finish("t"), Err(CodecError::EncoderMismatch { written: 2, .. })));
        let mut w = SliceWriter::new(&mut buf);
        w.put(&[1, 2, 3]);
        w.put(&[4, 5]);
        assert!(matches!(w.finish("t"), Err(CodecError::EncoderMismatch { written: 5, .. })));
        let mut w = SliceWriter::new(&mut buf);
        w.put(&[9, 8]);
        w.put(&[7, 6]);
        assert!(w.finish("t").is_ok());
        assert_eq!(buf, [9, 8, 7, 6]);
    }

    #[test]
    fn streaming_hash_equals_one_shot_hash() {
        let mut h = KeyHasher::new();
        h.put(b"hello ");
        h.put(b"");
        h.put(b"world");
        assert_eq!(h.finish(), super::super::hash_bytes(b"hello world"));
    }

    #[test]
    fn comparer_needs_equal_bytes_and_equal_length() {
        let mut c = ByteComparer::new(b"abc");
        c.put(b"ab");
        assert!(!c.is_equal());
        c.put(b"c");
        assert!(c.is_equal());
        c.put(b"d");
        assert!(!c.is_equal());
        let mut c = ByteComparer::new(b"abc");
        c.put(b"abd");
        assert!(!c.is_equal());
    }
}
