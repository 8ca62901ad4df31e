//! Size-prefixed frames: `[size: i32 BE][size bytes]`.
//!
//! Reading is two-step like mini-redis: first the 4-byte size (checked against the bound
//! before any allocation), then exactly that many bytes. A bad size closes only the
//! connection that sent it.

use bytes::BytesMut;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Kafka's `socket.request.max.bytes` default: 100 MiB.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 100 * 1024 * 1024;

#[derive(Debug, Error)]
pub enum FrameError {
    #[error("frame size {size} is outside 0..={max} bytes")]
    BadSize { size: i64, max: usize },
    #[error("connection closed in the middle of a frame")]
    Truncated,
    #[error("socket error: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads one frame. `Ok(None)` means the peer closed cleanly between frames.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    max_bytes: usize,
) -> Result<Option<BytesMut>, FrameError> {
    let mut size_buf = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = reader.read(&mut size_buf[got..]).await?;
        if n == 0 {
            return if got == 0 {
                Ok(None)
            } else {
                Err(FrameError::Truncated)
            };
        }
        got += n;
    }
    let size = i32::from_be_bytes(size_buf);
    if size < 0 || size as usize > max_bytes {
        return Err(FrameError::BadSize {
            size: size as i64,
            max: max_bytes,
        });
    }
    // Read into uninitialised capacity: zeroing a large produce frame first would cost as
    // much as copying it.
    let size = size as usize;
    let mut buf = BytesMut::with_capacity(size);
    while buf.len() < size {
        let want = (size - buf.len()) as u64;
        if (&mut *reader).take(want).read_buf(&mut buf).await? == 0 {
            return Err(FrameError::Truncated);
        }
    }
    Ok(Some(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_frames_and_rejects_bad_sizes() {
        let mut data: &[u8] = &[0, 0, 0, 2, 7, 8, 0, 0, 0, 0];
        assert_eq!(
            &read_frame(&mut data, 10).await.unwrap().unwrap()[..],
            &[7, 8]
        );
        assert_eq!(read_frame(&mut data, 10).await.unwrap().unwrap().len(), 0);
        assert!(read_frame(&mut data, 10).await.unwrap().is_none());

        let mut big: &[u8] = &[0x7f, 0xff, 0xff, 0xff];
        assert!(matches!(
            read_frame(&mut big, 10).await,
            Err(FrameError::BadSize { .. })
        ));
        let mut neg: &[u8] = &[0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            read_frame(&mut neg, 10).await,
            Err(FrameError::BadSize { .. })
        ));
        let mut short: &[u8] = &[0, 0, 0, 5, 1, 2];
        assert!(matches!(
            read_frame(&mut short, 10).await,
            Err(FrameError::Truncated)
        ));
        let mut half_size: &[u8] = &[0, 0];
        assert!(matches!(
            read_frame(&mut half_size, 10).await,
            Err(FrameError::Truncated)
        ));
    }
}
