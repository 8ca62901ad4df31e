//! The five codecs of Kafka's record batches, with the bounds a broker needs: decompression
//! stops at a byte limit (a batch is hostile input: a few KiB of zstd or gzip can expand to
//! gigabytes), and compression takes the topic's `compression.<codec>.level`.
//!
//! No codec is written here: gzip, lz4 and zstd are the crates kafka-protocol uses, driven
//! through their streaming readers and writers; snappy in Kafka's xerial framing is
//! kafka-protocol's own, after its block lengths were checked against the limit.

use std::io::{Read, Write};

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::compression::{Compressor, Decompressor, Snappy};
use kafka_protocol::records::Compression;

/// Why a batch's records could not be decompressed or compressed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    #[error("{codec:?} data decompresses to more than {limit} bytes")]
    TooLarge { codec: Compression, limit: usize },
    #[error("{codec:?} data is corrupt: {reason}")]
    Corrupt { codec: Compression, reason: String },
    #[error("{codec:?} compression failed: {reason}")]
    Compress { codec: Compression, reason: String },
}

/// Compression levels of a topic (Kafka's `compression.gzip.level`, `compression.lz4.level`,
/// `compression.zstd.level`), already validated against Kafka's ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Levels {
    /// -1: the library's default (6).
    pub gzip: i32,
    pub lz4: i32,
    pub zstd: i32,
}

impl Default for Levels {
    /// Kafka's defaults.
    fn default() -> Self {
        Levels {
            gzip: -1,
            lz4: 9,
            zstd: 3,
        }
    }
}

/// Decompresses `data` written with `codec`, refusing to produce more than `limit` bytes.
pub fn decompress(codec: Compression, data: &[u8], limit: usize) -> Result<Bytes, CodecError> {
    let corrupt = |e: &dyn std::fmt::Display| CodecError::Corrupt {
        codec,
        reason: e.to_string(),
    };
    match codec {
        Compression::None => {
            if data.len() > limit {
                return Err(CodecError::TooLarge { codec, limit });
            }
            Ok(Bytes::copy_from_slice(data))
        }
        Compression::Gzip => read_bounded(codec, flate2::read::GzDecoder::new(data), limit),
        Compression::Lz4 => {
            let d = lz4::Decoder::new(data).map_err(|e| corrupt(&e))?;
            read_bounded(codec, d, limit)
        }
        Compression::Zstd => {
            let d = zstd::stream::read::Decoder::new(data).map_err(|e| corrupt(&e))?;
            read_bounded(codec, d, limit)
        }
        Compression::Snappy => {
            check_snappy_size(data, limit)?;
            let mut buf = Bytes::copy_from_slice(data);
            Snappy::decompress(&mut buf, |out: &mut Bytes| Ok(out.clone())).map_err(|e| corrupt(&e))
        }
    }
}

/// Reads a decompressing reader to its end, or fails once it yields more than `limit` bytes.
fn read_bounded(codec: Compression, r: impl Read, limit: usize) -> Result<Bytes, CodecError> {
    let mut out = Vec::new();
    // One byte past the limit tells "exactly at the limit" from "over it".
    r.take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| CodecError::Corrupt {
            codec,
            reason: e.to_string(),
        })?;
    if out.len() > limit {
        return Err(CodecError::TooLarge { codec, limit });
    }
    Ok(out.into())
}

/// Kafka's snappy framing (xerial: a 16-byte magic, then blocks of a u32 length and raw snappy
/// data; or one raw snappy block without the magic): sums the sizes the blocks announce, which
/// is what kafka-protocol allocates, before anything is allocated.
fn check_snappy_size(data: &[u8], limit: usize) -> Result<(), CodecError> {
    const MAGIC: &[u8] = b"\x82SNAPPY\x00";
    const HEADER: usize = 16;
    let codec = Compression::Snappy;
    let announced = |block: &[u8]| {
        snap::raw::decompress_len(block).map_err(|e| CodecError::Corrupt {
            codec,
            reason: e.to_string(),
        })
    };
    let mut total = 0usize;
    if data.len() < HEADER || !data.starts_with(MAGIC) {
        total = announced(data)?;
    } else {
        let mut rest = &data[HEADER..];
        while rest.has_remaining() {
            if rest.len() < 4 {
                return Err(CodecError::Corrupt {
                    codec,
                    reason: "truncated block length".into(),
                });
            }
            let len = rest.get_u32() as usize;
            let block = rest.get(..len).ok_or_else(|| CodecError::Corrupt {
                codec,
                reason: format!("block of {len} bytes, {} left", rest.len()),
            })?;
            total = total.saturating_add(announced(block)?);
            rest = &rest[len..];
            if total > limit {
                break;
            }
        }
    }
    if total > limit {
        return Err(CodecError::TooLarge { codec, limit });
    }
    Ok(())
}

/// Compresses `data` with `codec` at the topic's level, appending to `out`.
pub fn compress(
    codec: Compression,
    levels: Levels,
    data: &[u8],
    out: &mut BytesMut,
) -> Result<(), CodecError> {
    let fail = |e: &dyn std::fmt::Display| CodecError::Compress {
        codec,
        reason: e.to_string(),
    };
    let mut w = bytes::BufMut::writer(out);
    match codec {
        Compression::None => w.write_all(data).map_err(|e| fail(&e)),
        Compression::Gzip => {
            let level = match levels.gzip {
                -1 => flate2::Compression::default(),
                l => flate2::Compression::new(l.clamp(0, 9) as u32),
            };
            let mut e = flate2::write::GzEncoder::new(w, level);
            e.write_all(data).map_err(|e| fail(&e))?;
            e.finish().map(|_| ()).map_err(|e| fail(&e))
        }
        Compression::Lz4 => {
            // Kafka's lz4 frames use independent blocks.
            let mut e = lz4::EncoderBuilder::new()
                .level(levels.lz4.max(0) as u32)
                .block_mode(lz4::BlockMode::Independent)
                .build(w)
                .map_err(|e| fail(&e))?;
            e.write_all(data).map_err(|e| fail(&e))?;
            e.finish().1.map_err(|e| fail(&e))
        }
        Compression::Zstd => zstd::stream::copy_encode(data, w, levels.zstd).map_err(|e| fail(&e)),
        Compression::Snappy => {
            let out = w.into_inner();
            Snappy::compress(out, |tmp: &mut BytesMut| {
                tmp.extend_from_slice(data);
                Ok(())
            })
            .map_err(|e| fail(&e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    #[test]
    fn round_trip_every_codec() {
        let data: Vec<u8> = (0..100_000u32)
            .flat_map(|i| (i % 251).to_be_bytes())
            .collect();
        for codec in ALL {
            let mut out = BytesMut::new();
            compress(codec, Levels::default(), &data, &mut out).unwrap();
            let back = decompress(codec, &out, data.len()).unwrap();
            assert_eq!(&back[..], &data[..], "{codec:?}");
        }
    }

    #[test]
    fn a_bomb_stops_at_the_limit() {
        let zeros = vec![0u8; 4 << 20];
        for codec in ALL {
            let mut out = BytesMut::new();
            compress(codec, Levels::default(), &zeros, &mut out).unwrap();
            assert_eq!(
                decompress(codec, &out, 1 << 20),
                Err(CodecError::TooLarge {
                    codec,
                    limit: 1 << 20
                }),
                "{codec:?}"
            );
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let junk: Vec<u8> = (0..4096u32).map(|i| (i * 7919 % 256) as u8).collect();
        for codec in ALL.into_iter().skip(1) {
            for n in [0, 1, 5, 16, 17, 100, junk.len()] {
                let _ = decompress(codec, &junk[..n], 1 << 20);
            }
        }
        // A snappy block announcing 4 GiB is refused before anything is allocated.
        let mut framed = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01".to_vec();
        framed.extend_from_slice(&5u32.to_be_bytes());
        framed.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert!(matches!(
            decompress(Compression::Snappy, &framed, 1 << 20),
            Err(CodecError::TooLarge { .. })
        ));
    }
}
