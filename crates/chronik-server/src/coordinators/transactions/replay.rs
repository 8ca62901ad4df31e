//! Reading a `__transaction_state` partition back for the manager's `load`: every record from
//! the log start to the committed end, in log order, as (key, value).

use bytes::Bytes;
use chronik_wal::{BatchHeader, PartitionLog, WalError};
use kafka_protocol::records::RecordBatchDecoder;

/// Most bytes one read asks for.
const REPLAY_READ_BYTES: usize = 4 << 20;

/// The records of `log`. Memory: one entry per record still in the log; the topic is
/// compacted, so about one per live transactional id plus the uncleaned head.
pub fn read_records(log: &PartitionLog) -> Result<Vec<(Bytes, Option<Bytes>)>, WalError> {
    let mut out = Vec::new();
    let end = log.committed_offset();
    let mut next = log.log_start_offset();
    while next < end {
        let read = log.read(next, REPLAY_READ_BYTES, end)?;
        if read.batches == 0 {
            break;
        }
        let mut data = read.data;
        let before = next;
        while !data.is_empty() {
            if let Ok(h) = BatchHeader::parse(&data) {
                next = next.max(h.last_offset().saturating_add(1));
            }
            let set = match RecordBatchDecoder::decode(&mut data) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(partition = log.partition(), offset = next, error = %e,
                        "skipping an undecodable batch in the transaction log");
                    break;
                }
            };
            for r in set.records {
                next = next.max(r.offset + 1);
                if r.offset < before || r.control {
                    continue;
                }
                if let Some(key) = r.key {
                    out.push((key, r.value));
                }
            }
        }
        if next == before {
            break;
        }
    }
    Ok(out)
}
