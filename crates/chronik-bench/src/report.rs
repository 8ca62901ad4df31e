//! Results: latency histograms that keep every sample, the final report, and how it is printed.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::Serialize;

/// 1 µs to 10 minutes at 3 significant digits; values above are clamped, never dropped.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("constant bounds are valid")
}

pub fn record(h: &mut Histogram<u64>, us: u64) {
    h.saturating_record(us.max(1));
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct Latency {
    pub count: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        Latency {
            count: h.len(),
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            mean: h.mean(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct VerifyReport {
    pub mode: String,
    pub ok: bool,
    /// Messages the partitions' high watermarks advanced by during the run.
    pub stored: Option<u64>,
    /// Acknowledged messages not found (full) or not accounted for (count).
    pub missing: u64,
    pub duplicates: u64,
    pub corrupt: u64,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct Report {
    pub mode: String,
    pub topic: String,
    pub partitions: usize,
    pub concurrency: u32,
    pub message_size: usize,
    pub acks: String,
    /// Messages handed to the broker, acknowledged, and failed, over the whole run (warm-up too).
    pub sent: u64,
    pub acked: u64,
    pub failed: u64,
    /// Messages acknowledged (or, when consuming, received) within the measured window.
    pub measured: u64,
    pub warmup_s: f64,
    /// The measured window as measured: from the end of warm-up to the last completion.
    pub duration_s: f64,
    pub msgs_per_s: f64,
    /// Value bytes per second, MB = 10^6 bytes.
    pub mb_per_s: f64,
    /// Produce: send to acknowledgement. Roundtrip: send to a consumer's fetch returning it.
    /// Consume: one Fetch request's round trip.
    pub latency_us: Latency,
    /// Roundtrip only: send to acknowledgement.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ack_latency_us: Option<Latency>,
    /// `--transactional-id` only: what the transactions did and what their requests took.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transactions: Option<crate::txn::TxnReport>,
    pub errors: BTreeMap<String, u64>,
    pub verify: VerifyReport,
}

impl Report {
    pub fn print_text(&self) {
        let l = &self.latency_us;
        let ms = |us: u64| us as f64 / 1000.0;
        println!(
            "chronik-bench {} on {} ({} partitions, c={}, {} B, acks={})",
            self.mode, self.topic, self.partitions, self.concurrency, self.message_size, self.acks
        );
        if self.mode != "consume" {
            println!(
                "  sent {}  acknowledged {}  failed {}",
                self.sent, self.acked, self.failed
            );
        }
        println!(
            "  measured {} messages in {:.3} s: {:.0} msg/s, {:.2} MB/s",
            self.measured, self.duration_s, self.msgs_per_s, self.mb_per_s
        );
        println!(
            "  latency ms: p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}  ({} samples)",
            ms(l.p50),
            ms(l.p90),
            ms(l.p99),
            ms(l.p999),
            ms(l.max),
            l.count
        );
        if let Some(a) = &self.ack_latency_us {
            println!(
                "  ack latency ms: p50 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
                ms(a.p50),
                ms(a.p99),
                ms(a.p999),
                ms(a.max)
            );
        }
        if let Some(t) = &self.transactions {
            println!(
                "  transactions of {} messages: {} committed, {} aborted, {} failed to end; \
                 AddPartitionsToTxn p50 {:.3} ms p99 {:.3} ms, EndTxn p50 {:.3} ms p99 {:.3} ms, \
                 {} CONCURRENT_TRANSACTIONS retries",
                t.messages_per_transaction,
                t.committed,
                t.aborted,
                t.end_failed,
                ms(t.add_partitions_us.p50),
                ms(t.add_partitions_us.p99),
                ms(t.end_txn_us.p50),
                ms(t.end_txn_us.p99),
                t.concurrent_retries
            );
        }
        for (e, n) in &self.errors {
            println!("  error {e}: {n}");
        }
        let v = &self.verify;
        if v.ok {
            println!("  verification ({}): OK. {}", v.mode, v.detail);
        } else {
            println!();
            println!("  !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!");
            println!("  !!! VERIFICATION FAILED ({}): {}", v.mode, v.detail);
            println!(
                "  !!! missing {}  duplicates {}  corrupt {}",
                v.missing, v.duplicates, v.corrupt
            );
            println!("  !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!");
        }
    }
}

/// Kafka's name for an error code, as its docs spell it: `NOT_LEADER_OR_FOLLOWER(6)`.
pub fn error_name(code: i16) -> String {
    use heck::ToShoutySnakeCase;
    let name = match kafka_protocol::ResponseError::try_from_code(code) {
        None => "NONE".to_string(),
        Some(kafka_protocol::ResponseError::Unknown(_)) => String::new(),
        Some(e) => e.to_string().to_shouty_snake_case(),
    };
    format!("{name}({code})")
}

#[cfg(test)]
mod tests {
    use super::error_name;

    #[test]
    fn error_names_are_kafkas() {
        assert_eq!(error_name(6), "NOT_LEADER_OR_FOLLOWER(6)");
        assert_eq!(error_name(20), "NOT_ENOUGH_REPLICAS_AFTER_APPEND(20)");
        assert_eq!(error_name(-1), "UNKNOWN_SERVER_ERROR(-1)");
        assert_eq!(error_name(0), "NONE(0)");
        assert_eq!(error_name(9999), "(9999)");
    }
}
