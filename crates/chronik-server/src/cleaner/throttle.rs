//! The cleaner's I/O budget (Kafka's `log.cleaner.io.max.bytes.per.second`): every byte a
//! cleaner thread reads or writes is paid for here first, shared by all threads, so cleaning
//! never takes more of the disk than the operator allows. The rate limiter is `governor`'s
//! GCRA with a burst of [`BURST_DIVISOR`]th of a second of budget (at least [`MIN_BURST`]), so
//! the I/O is spread evenly rather than taken in bursts at the disk's full speed, which is what
//! produce latency feels; the cleaner threads are plain OS threads, so a thread waits by
//! sleeping.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// A byte budget per second, shared by the cleaner threads.
pub struct Throttle {
    limiter: DefaultDirectRateLimiter,
    clock: DefaultClock,
    /// The burst: the most bytes one check may take.
    burst: u32,
}

/// The burst is this fraction of a second's budget.
const BURST_DIVISOR: u32 = 20;
/// The smallest burst: a cold read's chunk (`chronik_wal::io_priority::COLD_CHUNK_BYTES`).
const MIN_BURST: u32 = 128 * 1024;

impl Throttle {
    /// `None` when `bytes_per_second` is unlimited (unset): nothing is throttled.
    pub fn new(bytes_per_second: Option<u64>) -> Option<Throttle> {
        // governor counts in u32 cells: a budget of 4 GiB/s or more is no budget on any disk.
        let rate = NonZeroU32::new(u32::try_from(bytes_per_second?).ok()?)?;
        let burst = NonZeroU32::new((rate.get() / BURST_DIVISOR).max(MIN_BURST).min(rate.get()))?;
        let clock = DefaultClock::default();
        let quota = Quota::per_second(rate).allow_burst(burst);
        Some(Throttle {
            limiter: RateLimiter::direct_with_clock(quota, clock.clone()),
            clock,
            burst: burst.get(),
        })
    }

    /// Blocks the calling (cleaner) thread until `bytes` fit the budget.
    pub fn take(&self, mut bytes: u64) {
        while bytes > 0 {
            let chunk = bytes.min(u64::from(self.burst)) as u32;
            bytes -= u64::from(chunk);
            let Some(n) = NonZeroU32::new(chunk) else {
                return;
            };
            loop {
                match self.limiter.check_n(n) {
                    Ok(Ok(())) => break,
                    Ok(Err(not_until)) => {
                        let wait = not_until.wait_time_from(self.clock.now());
                        std::thread::sleep(wait.max(Duration::from_millis(1)));
                    }
                    // A chunk is never above the burst; stop rather than spin if it were.
                    Err(_) => return,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlimited_is_none_and_a_budget_paces() {
        assert!(Throttle::new(None).is_none());
        let t = Throttle::new(Some(100_000)).unwrap();
        let start = std::time::Instant::now();
        // One burst free (MIN_BURST caps it at the whole second's 100_000), then 50_000 more
        // bytes at 100_000/s: about half a second.
        t.take(100_000);
        t.take(50_000);
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(400), "{took:?}");
        assert!(took < Duration::from_secs(5), "{took:?}");
    }

    #[test]
    fn the_burst_is_a_twentieth_of_a_second() {
        let t = Throttle::new(Some(10_000_000)).unwrap();
        assert_eq!(t.burst, 500_000);
        let start = std::time::Instant::now();
        // 500_000 bytes free, the other 1_500_000 at 10 MB/s: about 150 ms, not at once.
        t.take(2_000_000);
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(120), "{took:?}");
        assert!(took < Duration::from_secs(5), "{took:?}");
    }
}
