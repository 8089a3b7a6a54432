//! An owned, 8-byte aligned byte buffer for encodings outside a store.

use super::sink::SliceWriter;

/// An owned encoding whose first byte is 8-byte aligned, as a record's key
/// and value are in a log page; [`crate::Value::view`] accepts it.
#[derive(Clone, PartialEq, Eq)]
pub struct AlignedBytes {
    words: Vec<u64>,
    len_bytes: usize,
}

impl std::fmt::Debug for AlignedBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("AlignedBytes").field(&self.as_slice()).finish()
    }
}

impl AlignedBytes {
    /// A zeroed buffer of `len_bytes` bytes.
    pub fn zeroed(len_bytes: usize) -> Self {
        Self { words: vec![0u64; len_bytes.div_ceil(8)], len_bytes }
    }

    /// Copies `bytes` into a new aligned buffer.
    pub fn copy_from(bytes: &[u8]) -> Self {
        let mut out = Self::zeroed(bytes.len());
        out.as_mut_slice().copy_from_slice(bytes);
        out
    }

    pub(crate) fn from_encoder(
        len_bytes: usize,
        encode: impl FnOnce(&mut SliceWriter<'_>),
    ) -> Self {
        let mut out = Self::zeroed(len_bytes);
        let mut writer = SliceWriter::new(out.as_mut_slice());
        encode(&mut writer);
        // An encoder that writes more or fewer bytes than it announced leaves
        // the excess dropped or the rest zeroed; `encode_into` reports it.
        let _ = writer.finish("");
        out
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        bytemuck::cast_slice::<u64, u8>(&self.words).get(..self.len_bytes).unwrap_or_default()
    }

    /// The bytes, mutably.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        let len = self.len_bytes;
        bytemuck::cast_slice_mut::<u64, u8>(&mut self.words).get_mut(..len).unwrap_or_default()
    }

    /// The length in bytes.
    pub fn len(&self) -> usize {
        self.len_bytes
    }

    /// Whether the buffer is empty.
    pub fn is_empty(&self) -> bool {
        self.len_bytes == 0
    }
}

impl std::ops::Deref for AlignedBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}
