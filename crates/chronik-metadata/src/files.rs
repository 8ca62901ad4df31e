//! Small durable files: JSON read with a size bound, and atomic durable replacement.

use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::MetadataError;

/// A metadata file larger than this is refused as corrupt rather than read into memory.
pub(crate) const MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;

pub(crate) fn io_err(path: &Path, source: std::io::Error) -> MetadataError {
    MetadataError::Io {
        path: path.display().to_string(),
        source,
    }
}

pub(crate) fn corrupt(path: &Path, reason: String) -> MetadataError {
    MetadataError::Corrupt {
        path: path.display().to_string(),
        reason,
    }
}

pub(crate) fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, MetadataError> {
    let len = fs::metadata(path).map_err(|e| io_err(path, e))?.len();
    if len > MAX_FILE_BYTES {
        return Err(corrupt(
            path,
            format!("{len} bytes is over the {MAX_FILE_BYTES} limit"),
        ));
    }
    let bytes = fs::read(path).map_err(|e| io_err(path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| corrupt(path, e.to_string()))
}

/// Replaces `dir/name` atomically and durably: temp file, fsync, rename, fsync directory.
pub(crate) fn write_json_atomic<T: Serialize>(
    dir: &Path,
    name: &str,
    value: &T,
) -> Result<(), MetadataError> {
    let dst = dir.join(name);
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| corrupt(&dst, e.to_string()))?;
    chronik_durable::replace(dir, name, &bytes).map_err(|e| io_err(&dst, e))
}
