//! Size-prefixed frames: `[size: i32 BE][size bytes]`.
//!
//! Reading is two-step like mini-redis: first the 4-byte size (checked against the bound
//! before any allocation), then exactly that many bytes. A bad size closes only the
//! connection that sent it.
//!
//! Before the body's buffer is allocated, its size is charged to the shared
//! [`RequestBudget`] (waiting while it is spent), and each step must finish within
//! [`FrameLimits::read_timeout`]: a client that announces a frame and then stalls or drips
//! cannot hold its buffer and its share of the budget for longer than that.

use std::future::Future;
use std::time::Duration;

use bytes::BytesMut;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::budget::{BudgetPermit, RequestBudget};

/// Kafka's `socket.request.max.bytes` default: 100 MiB.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 100 * 1024 * 1024;

/// What reading one frame may cost.
#[derive(Clone, Debug)]
pub struct FrameLimits {
    /// Largest frame accepted; a larger size closes the connection (Kafka's behaviour).
    pub max_bytes: usize,
    /// Shared budget of request bytes being received; `None`: unbounded.
    pub budget: Option<RequestBudget>,
    /// How long the size, and then (once the budget granted it) the body, may take to
    /// arrive; `None`: no deadline.
    pub read_timeout: Option<Duration>,
}

impl FrameLimits {
    /// Only the size bound: no budget, no deadline.
    pub fn max_bytes(max_bytes: usize) -> FrameLimits {
        FrameLimits {
            max_bytes,
            budget: None,
            read_timeout: None,
        }
    }
}

/// One received frame and its charge to the budget (given back when the permit drops).
#[derive(Debug)]
pub struct Frame {
    pub body: BytesMut,
    pub permit: BudgetPermit,
}

#[derive(Debug, Error)]
pub enum FrameError {
    #[error("frame size {size} is outside 0..={max} bytes")]
    BadSize { size: i64, max: usize },
    #[error("frame size {size} exceeds the whole request budget of {budget} bytes")]
    OverBudget { size: usize, budget: usize },
    #[error("connection closed in the middle of a frame")]
    Truncated,
    #[error("frame not received within {timeout_ms} ms ({got} of {size} bytes)")]
    ReadTimeout {
        timeout_ms: u128,
        got: usize,
        size: usize,
    },
    #[error("socket error: {0}")]
    Io(#[from] std::io::Error),
}

/// Runs `f` under the optional deadline; `Err(())` when it ran out.
async fn within<T>(limit: Option<Duration>, f: impl Future<Output = T>) -> Result<T, ()> {
    match limit {
        Some(d) => tokio::time::timeout(d, f).await.map_err(|_| ()),
        None => Ok(f.await),
    }
}

/// Reads one frame. `Ok(None)` means the peer closed cleanly between frames.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    limits: &FrameLimits,
) -> Result<Option<Frame>, FrameError> {
    let mut size_buf = [0u8; 4];
    let mut got = 0;
    let timed_out = |got, size| FrameError::ReadTimeout {
        timeout_ms: limits.read_timeout.unwrap_or_default().as_millis(),
        got,
        size,
    };
    let header = within(limits.read_timeout, async {
        while got < 4 {
            let n = reader.read(&mut size_buf[got..]).await?;
            if n == 0 {
                return if got == 0 {
                    Ok(false)
                } else {
                    Err(FrameError::Truncated)
                };
            }
            got += n;
        }
        Ok(true)
    })
    .await;
    match header {
        Err(()) => return Err(timed_out(got, 4)),
        Ok(Ok(false)) => return Ok(None),
        Ok(r) => r?,
    };
    let size = i32::from_be_bytes(size_buf);
    if size < 0 || size as usize > limits.max_bytes {
        return Err(FrameError::BadSize {
            size: size as i64,
            max: limits.max_bytes,
        });
    }
    let size = size as usize;
    // Charge the budget before allocating: while it is spent this waits, without a
    // deadline (the wait is the broker's, not the client's), and nothing is read.
    let permit = match &limits.budget {
        Some(budget) if size > 0 => budget.acquire(size).await.ok_or(FrameError::OverBudget {
            size,
            budget: budget.total_bytes(),
        })?,
        _ => BudgetPermit::none(),
    };
    // Read into uninitialised capacity: zeroing a large produce frame first would cost as
    // much as copying it.
    let mut body = BytesMut::with_capacity(size);
    let read = within(limits.read_timeout, async {
        while body.len() < size {
            let want = (size - body.len()) as u64;
            if (&mut *reader).take(want).read_buf(&mut body).await? == 0 {
                return Err(FrameError::Truncated);
            }
        }
        Ok(())
    })
    .await;
    match read {
        Err(()) => Err(timed_out(body.len(), size)),
        Ok(r) => r.map(|()| Some(Frame { body, permit })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_frames_and_rejects_bad_sizes() {
        let mut data: &[u8] = &[0, 0, 0, 2, 7, 8, 0, 0, 0, 0];
        assert_eq!(
            &read_frame(&mut data, &FrameLimits::max_bytes(10))
                .await
                .unwrap()
                .unwrap()
                .body[..],
            &[7, 8]
        );
        assert_eq!(
            read_frame(&mut data, &FrameLimits::max_bytes(10))
                .await
                .unwrap()
                .unwrap()
                .body
                .len(),
            0
        );
        assert!(read_frame(&mut data, &FrameLimits::max_bytes(10))
            .await
            .unwrap()
            .is_none());

        let mut big: &[u8] = &[0x7f, 0xff, 0xff, 0xff];
        assert!(matches!(
            read_frame(&mut big, &FrameLimits::max_bytes(10)).await,
            Err(FrameError::BadSize { .. })
        ));
        let mut neg: &[u8] = &[0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            read_frame(&mut neg, &FrameLimits::max_bytes(10)).await,
            Err(FrameError::BadSize { .. })
        ));
        let mut short: &[u8] = &[0, 0, 0, 5, 1, 2];
        assert!(matches!(
            read_frame(&mut short, &FrameLimits::max_bytes(10)).await,
            Err(FrameError::Truncated)
        ));
        let mut half_size: &[u8] = &[0, 0];
        assert!(matches!(
            read_frame(&mut half_size, &FrameLimits::max_bytes(10)).await,
            Err(FrameError::Truncated)
        ));
    }

    #[tokio::test]
    async fn stalled_frames_time_out_and_the_budget_bounds_bodies() {
        use tokio::io::AsyncWriteExt;
        let budget = RequestBudget::new(10);
        let limits = FrameLimits {
            max_bytes: 10,
            budget: Some(budget.clone()),
            read_timeout: Some(Duration::from_millis(100)),
        };
        let (mut client, mut server) = tokio::io::duplex(64);
        client
            .write_all(&[0, 0, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8])
            .await
            .unwrap();
        let first = read_frame(&mut server, &limits).await.unwrap().unwrap();
        assert_eq!(budget.used_bytes(), 8);

        // The next frame's body does not fit beside the first: reading waits (past the read
        // timeout, which does not run while the broker is the one waiting) until it drops.
        client.write_all(&[0, 0, 0, 4, 9, 9, 9, 9]).await.unwrap();
        let limits2 = limits.clone();
        let second = tokio::spawn(async move {
            read_frame(&mut server, &limits2)
                .await
                .map(|f| f.map(|f| f.body.len()))
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!second.is_finished());
        drop(first);
        assert_eq!(second.await.unwrap().unwrap(), Some(4));
        assert_eq!(budget.used_bytes(), 0);

        // Announced 8, sent 3, then nothing: closed after the read timeout, budget given back.
        let (mut client, mut server) = tokio::io::duplex(64);
        client.write_all(&[0, 0, 0, 8, 1, 2, 3]).await.unwrap();
        let err = read_frame(&mut server, &limits).await.unwrap_err();
        assert!(
            matches!(
                err,
                FrameError::ReadTimeout {
                    got: 3,
                    size: 8,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(budget.used_bytes(), 0);
        // Half a size, then nothing.
        drop(client);
        let (mut client, mut server) = tokio::io::duplex(64);
        client.write_all(&[0, 0]).await.unwrap();
        assert!(matches!(
            read_frame(&mut server, &limits).await,
            Err(FrameError::ReadTimeout {
                got: 2,
                size: 4,
                ..
            })
        ));
        // Larger than the whole budget (but within max_bytes): refused, not waited for.
        let small_budget = FrameLimits {
            budget: Some(RequestBudget::new(4)),
            ..limits
        };
        let mut five: &[u8] = &[0, 0, 0, 5, 1, 2, 3, 4, 5];
        assert!(matches!(
            read_frame(&mut five, &small_budget).await,
            Err(FrameError::OverBudget { size: 5, .. })
        ));
    }
}
