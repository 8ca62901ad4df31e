//! The segment header (versions 1 and 2): layout in the parent module's docs and in
//! `docs/wal-format.md`.

/// Magic bytes opening every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"CHRNKWAL";
/// Format version of the segments the log creates.
pub const SEGMENT_VERSION: u16 = 1;
/// Size of the version-1 segment header.
pub const SEGMENT_HEADER_BYTES: u64 = 32;
/// Format version of a cleaned segment's header (see the `segment` module docs).
pub const CLEANED_SEGMENT_VERSION: u16 = 2;
/// Size of the version-2 (cleaned) segment header.
pub const CLEANED_HEADER_BYTES: u64 = 48;
/// Version-2 `flags` bit: the segment is cleaned (its batches may have gaps).
const FLAG_CLEANED: u32 = 1;

/// Decoded segment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    pub base_offset: i64,
    pub created_ms: i64,
    /// `Some(range_end)` for a cleaned segment (version 2): its batches may have gaps, and may
    /// end before the next segment's base if that base is at most `range_end`. `None` for a
    /// version-1 segment, whose offsets are contiguous.
    pub cleaned_to: Option<i64>,
}

impl SegmentHeader {
    /// A version-1 header.
    pub fn plain(base_offset: i64, created_ms: i64) -> Self {
        SegmentHeader {
            base_offset,
            created_ms,
            cleaned_to: None,
        }
    }

    /// Header length: where the first frame starts.
    pub fn data_start(&self) -> u64 {
        match self.cleaned_to {
            None => SEGMENT_HEADER_BYTES,
            Some(_) => CLEANED_HEADER_BYTES,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let len = self.data_start() as usize;
        let mut h = vec![0u8; len];
        h[0..8].copy_from_slice(&SEGMENT_MAGIC);
        let version = match self.cleaned_to {
            None => SEGMENT_VERSION,
            Some(_) => CLEANED_SEGMENT_VERSION,
        };
        h[8..10].copy_from_slice(&version.to_le_bytes());
        h[10..12].copy_from_slice(&(len as u16).to_le_bytes());
        h[12..20].copy_from_slice(&self.base_offset.to_le_bytes());
        h[20..28].copy_from_slice(&self.created_ms.to_le_bytes());
        if let Some(range_end) = self.cleaned_to {
            h[28..36].copy_from_slice(&range_end.to_le_bytes());
            h[36..40].copy_from_slice(&FLAG_CLEANED.to_le_bytes());
        }
        let crc = crc32fast::hash(&h[0..len - 4]);
        h[len - 4..].copy_from_slice(&crc.to_le_bytes());
        h
    }

    /// Decodes and checks a header from the start of a file (`buf` holds up to
    /// [`CLEANED_HEADER_BYTES`] of it). Never panics.
    pub fn decode(buf: &[u8]) -> Result<SegmentHeader, HeaderError> {
        if buf.len() < SEGMENT_HEADER_BYTES as usize {
            return Err(HeaderError::Damaged(format!(
                "file is {} bytes, shorter than the header",
                buf.len()
            )));
        }
        if buf[0..8] != SEGMENT_MAGIC {
            return Err(HeaderError::Damaged("bad magic".into()));
        }
        let version = le_u16(buf, 8);
        let header_len = le_u16(buf, 10);
        // Version 2 keeps its CRC at its end; every other header is read as version 1 (whose
        // CRC covers the version field, so a damaged version-2 header never passes as one).
        let len = if version == CLEANED_SEGMENT_VERSION
            && u64::from(header_len) == CLEANED_HEADER_BYTES
        {
            if buf.len() < CLEANED_HEADER_BYTES as usize {
                return Err(HeaderError::Damaged(format!(
                    "file is {} bytes, shorter than its version-2 header",
                    buf.len()
                )));
            }
            CLEANED_HEADER_BYTES as usize
        } else {
            SEGMENT_HEADER_BYTES as usize
        };
        let crc = u32::from_le_bytes([buf[len - 4], buf[len - 3], buf[len - 2], buf[len - 1]]);
        let computed = crc32fast::hash(&buf[0..len - 4]);
        if crc != computed {
            return Err(HeaderError::Damaged(format!(
                "header CRC mismatch (stored {crc:#010x}, computed {computed:#010x})"
            )));
        }
        // Magic and CRC are intact: anything unknown from here on was written on purpose by
        // another format version, not by a crash.
        let expected_len = match version {
            SEGMENT_VERSION => SEGMENT_HEADER_BYTES,
            CLEANED_SEGMENT_VERSION => CLEANED_HEADER_BYTES,
            _ => {
                return Err(HeaderError::Unsupported(format!(
                    "unsupported segment format version {version}"
                )))
            }
        };
        // Checked against the version too: the layout read above is the one `header_len` chose.
        if u64::from(header_len) != expected_len || len as u64 != expected_len {
            return Err(HeaderError::Unsupported(format!(
                "unexpected header length {header_len} for version {version}"
            )));
        }
        let base_offset = le_i64(buf, 12);
        let created_ms = le_i64(buf, 20);
        if base_offset < 0 {
            return Err(HeaderError::Unsupported(format!(
                "negative base offset {base_offset}"
            )));
        }
        let cleaned_to = if version == CLEANED_SEGMENT_VERSION {
            let range_end = le_i64(buf, 28);
            let flags = u32::from_le_bytes([buf[36], buf[37], buf[38], buf[39]]);
            if flags != FLAG_CLEANED || buf[40..44] != [0; 4] {
                return Err(HeaderError::Unsupported(format!(
                    "unknown segment header flags {flags:#x}"
                )));
            }
            if range_end < base_offset {
                return Err(HeaderError::Unsupported(format!(
                    "range end {range_end} below the base offset {base_offset}"
                )));
            }
            Some(range_end)
        } else {
            None
        };
        Ok(SegmentHeader {
            base_offset,
            created_ms,
            cleaned_to,
        })
    }
}

fn le_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le_i64(b: &[u8], at: usize) -> i64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    i64::from_le_bytes(x)
}

/// Why a segment header was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderError {
    /// Torn or garbage bytes (short file, bad magic, bad CRC): recovery rewrites the header.
    Damaged(String),
    /// An intact header this code does not understand (another format version): recovery refuses
    /// to touch the file.
    Unsupported(String),
}

impl std::fmt::Display for HeaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeaderError::Damaged(r) | HeaderError::Unsupported(r) => f.write_str(r),
        }
    }
}
