//! Hooks for fuzzing and for tests that damage checkpoint files on
//! purpose (the `testing` feature).

use std::path::Path;

use super::meta::{self, Meta};
use super::root;
use crate::{Error, Result};

/// Decodes checkpoint metadata bytes (for fuzzing); the error, if any.
pub fn meta_decode(bytes: &[u8], path: &std::path::Path) -> Result<()> {
    meta::Meta::decode(bytes, path).map(|_| ())
}

/// See `meta::fix_checksum` (for fuzzing).
pub fn meta_fix_checksum(bytes: &mut [u8]) {
    meta::fix_checksum(bytes)
}

/// Recomputes the snapshot checksum that checkpoint `token`'s metadata
/// records (after a test changed the snapshot file on purpose), and the
/// metadata's own checksum.
pub fn snapshot_fix_checksum(dir: &Path, token: &str) -> Result<()> {
    let path = root(dir).join(token).join("meta");
    let mut meta = Meta::read(&path)?;
    if let Some(snapshot) = &mut meta.snapshot {
        let file = root(dir).join(&snapshot.token).join("snapshot");
        let bytes = std::fs::read(&file).map_err(|source| Error::Io {
            context: format!("reading {}", file.display()),
            source,
        })?;
        snapshot.checksum = xxhash_rust::xxh3::xxh3_64(&bytes);
    }
    std::fs::write(&path, meta.encode()?)
        .map_err(|source| Error::Io { context: format!("writing {}", path.display()), source })
}

/// A valid metadata file's bytes (a fuzzing seed).
pub fn meta_sample() -> Vec<u8> {
    meta::sample().encode().unwrap_or_default()
}
