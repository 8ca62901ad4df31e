//! Reading a `__transaction_state` partition back for the manager's `load`: every record from
//! the log start to the committed end, in log order, as (key, value).

use bytes::Bytes;
use chronik_wal::{PartitionLog, WalError};

/// The records of `log`. Memory: one entry per record still in the log; the topic is
/// compacted, so about one per live transactional id plus the uncleaned head.
pub fn read_records(log: &PartitionLog) -> Result<Vec<(Bytes, Option<Bytes>)>, WalError> {
    let mut out = Vec::new();
    chronik_groups::for_each_record(log, |r| {
        if let (false, Some(key)) = (r.control, r.key) {
            out.push((key, r.value));
        }
    })?;
    Ok(out)
}
