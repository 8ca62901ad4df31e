//! The bench's message values: self-describing and self-checking, so that a full verification
//! can tell which acknowledged message is missing and whether a stored one was damaged.
//!
//! Layout (big-endian):
//! `[crc32c of bytes 4.. : u32][task: u32][seq: u64][sent_us: u64][filler]`
//! The filler is a window of a fixed pseudo-random block chosen by (task, seq), so the CRC
//! covers content that differs between messages.

use bytes::{BufMut, Bytes, BytesMut};

pub const HEADER_BYTES: usize = 24;

/// What a stored value says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub task: u32,
    pub seq: u64,
    /// Microseconds since the bench's clock origin when the producer sent it.
    pub sent_us: u64,
}

/// Pseudo-random filler the payloads are cut from, so building one costs a copy, not a
/// random-number loop per byte. 64 KiB plus the largest offset used below.
fn filler() -> &'static [u8] {
    static FILLER: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    FILLER.get_or_init(|| {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        (0..FILLER_BYTES + FILLER_BYTES / 2)
            .map(|_| {
                // xorshift64
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    })
}

const FILLER_BYTES: usize = 64 * 1024;

pub fn build(size: usize, stamp: Stamp) -> Bytes {
    debug_assert!(size >= HEADER_BYTES);
    let mut b = BytesMut::with_capacity(size);
    b.put_u32(0);
    b.put_u32(stamp.task);
    b.put_u64(stamp.seq);
    b.put_u64(stamp.sent_us);
    // A different window of the filler for each (task, seq); messages over 64 KiB repeat it.
    let f = filler();
    let start = ((u64::from(stamp.task).wrapping_mul(7919) ^ stamp.seq.wrapping_mul(104_729))
        % (FILLER_BYTES as u64 / 2)) as usize;
    while b.len() < size {
        let n = (size - b.len()).min(FILLER_BYTES);
        b.put_slice(&f[start..start + n]);
    }
    let crc = crc32c::crc32c(&b[4..]);
    b[0..4].copy_from_slice(&crc.to_be_bytes());
    b.freeze()
}

/// Checks a stored value. `None` means it is not an intact bench message.
pub fn parse(value: &[u8]) -> Option<Stamp> {
    if value.len() < HEADER_BYTES {
        return None;
    }
    let crc = u32::from_be_bytes(value[0..4].try_into().ok()?);
    if crc != crc32c::crc32c(&value[4..]) {
        return None;
    }
    Some(Stamp {
        task: u32::from_be_bytes(value[4..8].try_into().ok()?),
        seq: u64::from_be_bytes(value[8..16].try_into().ok()?),
        sent_us: u64::from_be_bytes(value[16..24].try_into().ok()?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_detects_damage() {
        for size in [24, 25, 31, 256, 1024] {
            let s = Stamp {
                task: 7,
                seq: 123_456,
                sent_us: 99,
            };
            let v = build(size, s);
            assert_eq!(v.len(), size);
            assert_eq!(parse(&v), Some(s));
            let mut bad = v.to_vec();
            bad[size - 1] ^= 1;
            assert_eq!(parse(&bad), None);
        }
        assert_eq!(parse(&[0; 10]), None);
        assert_ne!(
            build(
                64,
                Stamp {
                    task: 1,
                    seq: 1,
                    sent_us: 0
                }
            ),
            build(
                64,
                Stamp {
                    task: 1,
                    seq: 2,
                    sent_us: 0
                }
            )
        );
    }
}
