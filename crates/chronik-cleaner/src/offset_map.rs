//! The key → latest offset map of one cleaning pass, in a fixed byte budget (Kafka's
//! `SkimpyOffsetMap`, sized by `--log-cleaner-dedupe-buffer-size` divided among the cleaner
//! threads).
//!
//! A key is stored as a 128-bit digest (the first 16 bytes of its SHA-256; Kafka stores the
//! 16-byte MD5), so an entry costs 24 bytes whatever the key's length. Two keys with the
//! same digest would be taken for one key (the older record of the other would be dropped);
//! at 2^-128 per pair that is never expected, as in Kafka.
//!
//! The table is open addressing with linear probing, filled to at most 90% of its slots
//! (Kafka's `log.cleaner.io.buffer.load.factor` default), so a probe always ends. When a new
//! key finds the map at that bound, [`OffsetMap::index_batch`] reports [`Indexed::Full`]: the
//! pass cleans up to [`OffsetMap::end_offset`] and the next pass starts there.

use sha2::{Digest, Sha256};

use crate::batch::{decode, BatchHeader, CleanError};
use crate::txn::{ControlType, TxnTracker};

/// Bytes per entry: a 16-byte key digest and an 8-byte offset.
pub const ENTRY_BYTES: usize = 24;
/// Largest share of the slots filled (Kafka's `log.cleaner.io.buffer.load.factor`).
pub const LOAD_FACTOR: f64 = 0.9;
const EMPTY: i64 = -1;

/// Why an offset map could not be made.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MapError {
    #[error("a dedupe buffer of {budget_bytes} bytes holds no key; at least {needed_bytes} bytes are needed")]
    TooSmall {
        budget_bytes: usize,
        needed_bytes: usize,
    },
}

/// Whether indexing may go on after a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Indexed {
    /// The batch is fully in the map.
    Continue,
    /// The map met a new key with no room left: the batch is indexed up to
    /// [`OffsetMap::end_offset`] and this pass stops there.
    Full,
}

/// A new key with the map at its bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

/// Key digest → the latest offset seen for it, in a fixed number of slots.
pub struct OffsetMap {
    digests: Vec<[u8; 16]>,
    offsets: Vec<i64>,
    len: usize,
    max_entries: usize,
    /// The largest offset indexed so far (Kafka's `latestOffset`), -1 before any.
    latest: i64,
}

impl std::fmt::Debug for OffsetMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OffsetMap")
            .field("slots", &self.slots())
            .field("len", &self.len)
            .field("max_entries", &self.max_entries)
            .field("latest", &self.latest)
            .finish()
    }
}

impl OffsetMap {
    /// A map using at most `budget_bytes` (its whole table is allocated now).
    pub fn new(budget_bytes: usize) -> Result<OffsetMap, MapError> {
        let slots = budget_bytes / ENTRY_BYTES;
        let max_entries = (slots as f64 * LOAD_FACTOR) as usize;
        if max_entries == 0 {
            return Err(MapError::TooSmall {
                budget_bytes,
                needed_bytes: 2 * ENTRY_BYTES,
            });
        }
        Ok(OffsetMap {
            digests: vec![[0; 16]; slots],
            offsets: vec![EMPTY; slots],
            len: 0,
            max_entries,
            latest: EMPTY,
        })
    }

    /// Empties the map for the next pass, keeping its memory.
    pub fn clear(&mut self) {
        self.offsets.fill(EMPTY);
        self.len = 0;
        self.latest = EMPTY;
    }

    pub fn slots(&self) -> usize {
        self.offsets.len()
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Most keys the map takes before it reports [`Indexed::Full`].
    pub fn max_entries(&self) -> usize {
        self.max_entries
    }

    /// Share of the slots in use (Kafka's `max-buffer-utilization-percent` / 100).
    pub fn utilization(&self) -> f64 {
        self.len as f64 / self.slots() as f64
    }

    /// The largest offset indexed (Kafka's `OffsetMap.latestOffset`), `None` before any.
    pub fn latest_offset(&self) -> Option<i64> {
        (self.latest >= 0).then_some(self.latest)
    }

    /// Where the pass built on this map ends: every record below this offset was indexed
    /// (Kafka's `endOffset = offsetMap.latestOffset + 1`); the next pass starts here.
    pub fn end_offset(&self) -> Option<i64> {
        self.latest_offset().map(|o| o + 1)
    }

    /// The latest offset recorded for `key`.
    pub fn get(&self, key: &[u8]) -> Option<i64> {
        let d = digest(key);
        match self.find(&d) {
            Slot::Found(i) => Some(self.offsets[i]),
            Slot::Empty(_) => None,
        }
    }

    /// Records `offset` as the latest for `key`. A key already held is updated even when the
    /// map is at its bound (no room is needed); a new key then gets [`Full`].
    pub fn put(&mut self, key: &[u8], offset: i64) -> Result<(), Full> {
        debug_assert!(offset >= 0, "offsets are never negative");
        let d = digest(key);
        match self.find(&d) {
            Slot::Found(i) => self.offsets[i] = offset,
            Slot::Empty(i) => {
                if self.len >= self.max_entries {
                    return Err(Full);
                }
                self.digests[i] = d;
                self.offsets[i] = offset;
                self.len += 1;
            }
        }
        self.latest = self.latest.max(offset);
        Ok(())
    }

    /// Raises the latest offset to the end of a batch read in full (Kafka's
    /// `updateLatestOffset`): its keyless records are covered too.
    fn cover(&mut self, offset: i64) {
        self.latest = self.latest.max(offset);
    }

    fn find(&self, d: &[u8; 16]) -> Slot {
        let slots = self.slots();
        let mut h = [0u8; 8];
        h.copy_from_slice(&d[..8]);
        let mut i = (u64::from_be_bytes(h) % slots as u64) as usize;
        // The load bound leaves at least one empty slot, so this loop ends.
        loop {
            if self.offsets[i] == EMPTY {
                return Slot::Empty(i);
            }
            if &self.digests[i] == d {
                return Slot::Found(i);
            }
            i = (i + 1) % slots;
        }
    }

    /// Indexes one batch of the dirty section (Kafka's `Cleaner.buildOffsetMapForSegment`):
    /// each keyed record at or past `start_offset` becomes its key's latest offset. Control
    /// batches are skipped, and so are the batches of aborted transactions (`txns`, the walk
    /// of this build from `start_offset`, tells them): an aborted record must never supersede
    /// a committed one. A committed transaction's records are indexed like any. Records
    /// decompress to at most `max_decompressed_bytes`.
    pub fn index_batch(
        &mut self,
        batch: &[u8],
        start_offset: i64,
        max_decompressed_bytes: usize,
        txns: &mut TxnTracker,
    ) -> Result<Indexed, CleanError> {
        let header = BatchHeader::parse(batch)?;
        let skip = if header.is_control() {
            let decoded = decode(batch, &header, max_decompressed_bytes)?;
            let control = decoded
                .records
                .first()
                .map(|r| ControlType::from_key(r.key.as_deref()));
            txns.on_control(&header, control);
            true
        } else {
            txns.on_batch(&header) || header.record_count == 0
        };
        if skip {
            if header.last_offset() >= start_offset {
                self.cover(header.last_offset());
            }
            return Ok(Indexed::Continue);
        }
        let decoded = decode(batch, &header, max_decompressed_bytes)?;
        for record in &decoded.records {
            let Some(key) = &record.key else { continue };
            if record.offset < start_offset {
                continue;
            }
            if self.put(key, record.offset).is_err() {
                return Ok(Indexed::Full);
            }
        }
        if header.last_offset() >= start_offset {
            self.cover(header.last_offset());
        }
        Ok(Indexed::Continue)
    }
}

enum Slot {
    Found(usize),
    Empty(usize),
}

fn digest(key: &[u8]) -> [u8; 16] {
    let full = Sha256::digest(key);
    let mut d = [0u8; 16];
    d.copy_from_slice(&full[..16]);
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_bounds_the_slots() {
        let m = OffsetMap::new(24 * 1000).unwrap();
        assert_eq!(m.slots(), 1000);
        assert_eq!(m.max_entries(), 900);
        assert_eq!(
            OffsetMap::new(24).unwrap_err(),
            MapError::TooSmall {
                budget_bytes: 24,
                needed_bytes: 48
            }
        );
    }

    #[test]
    fn latest_offset_wins_and_full_refuses_only_new_keys() {
        let mut m = OffsetMap::new(24 * 10).unwrap();
        for i in 0..9u8 {
            m.put(&[i], i64::from(i)).unwrap();
        }
        assert_eq!(m.len(), 9);
        assert_eq!(m.put(b"new", 100), Err(Full));
        // An existing key still moves on.
        m.put(&[3], 50).unwrap();
        assert_eq!(m.get(&[3]), Some(50));
        assert_eq!(m.get(&[4]), Some(4));
        assert_eq!(m.get(b"new"), None);
        assert_eq!(m.latest_offset(), Some(50));
        m.clear();
        assert!(m.is_empty());
        assert_eq!(m.get(&[3]), None);
        assert_eq!(m.end_offset(), None);
    }
}
