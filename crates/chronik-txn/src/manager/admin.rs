//! DescribeTransactions and ListTransactions (KIP-664, with KIP-994's duration filter and
//! KIP-1152's transactional id pattern): what an operator sees, by Kafka's state names.

use kafka_protocol::ResponseError::*;

use crate::record::TxnState;

use super::TxnManager;

/// DescribeTransactions' answer for one transactional id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnDescription {
    pub transactional_id: String,
    pub state: &'static str,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub transaction_timeout_ms: i32,
    pub transaction_start_time_ms: i64,
    /// Partitions by topic, in order.
    pub topics: Vec<(String, Vec<i32>)>,
}

/// ListTransactions' filters; the default matches everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListFilter {
    /// Only these producer ids (empty: all).
    pub producer_ids: Vec<i64>,
    /// Only these states, by Kafka's names (empty: all).
    pub states: Vec<String>,
    /// >= 0: only transactions started longer ago than this (KIP-994); -1: no filter.
    pub min_duration_ms: i64,
    /// Only transactional ids the whole of which this regular expression matches (KIP-1152;
    /// Kafka compiles it with RE2/J, this with Rust's regex, whose syntax is RE2's). None or
    /// empty: no filter.
    pub transactional_id_pattern: Option<String>,
}

impl Default for ListFilter {
    fn default() -> Self {
        ListFilter {
            producer_ids: Vec::new(),
            states: Vec::new(),
            min_duration_ms: -1,
            transactional_id_pattern: None,
        }
    }
}

/// One entry of ListTransactions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedTxn {
    pub transactional_id: String,
    pub producer_id: i64,
    pub state: &'static str,
}

/// ListTransactions' answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListedTxns {
    /// COORDINATOR_LOAD_IN_PROGRESS while a partition loads, INVALID_REGULAR_EXPRESSION for a
    /// pattern that does not compile, as Kafka.
    pub error: i16,
    /// State filters that name no state, reported back as Kafka does.
    pub unknown_state_filters: Vec<String>,
    /// In transactional id order.
    pub transactions: Vec<ListedTxn>,
}

impl TxnManager {
    /// DescribeTransactions for one id: Kafka's errors are INVALID_REQUEST (empty id),
    /// NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS and TRANSACTIONAL_ID_NOT_FOUND.
    pub fn describe(&mut self, transactional_id: &str) -> Result<TxnDescription, i16> {
        let not_found = TransactionalIdNotFound.code();
        let (_, meta) = self.existing(transactional_id, not_found)?;
        if meta.fields.state == TxnState::Dead {
            return Err(not_found);
        }
        let f = &meta.fields;
        let mut topics: Vec<(String, Vec<i32>)> = Vec::new();
        for tp in &f.partitions {
            match topics.last_mut() {
                Some((t, parts)) if *t == tp.topic => parts.push(tp.partition),
                _ => topics.push((tp.topic.clone(), vec![tp.partition])),
            }
        }
        Ok(TxnDescription {
            transactional_id: transactional_id.to_string(),
            state: f.state.name(),
            producer_id: f.producer_id,
            producer_epoch: f.producer_epoch,
            transaction_timeout_ms: f.timeout_ms,
            transaction_start_time_ms: f.start_ms,
            topics,
        })
    }

    /// ListTransactions over every partition this node leads (Kafka's listTransactionStates).
    pub fn list(&self, filter: &ListFilter, now_ms: i64) -> ListedTxns {
        let mut out = ListedTxns::default();
        if self.partitions.values().any(|o| o.loading) {
            out.error = CoordinatorLoadInProgress.code();
            return out;
        }
        let pattern = match filter.transactional_id_pattern.as_deref() {
            None | Some("") => None,
            Some(p) => match regex::Regex::new(&format!("^(?:{p})$")) {
                Ok(re) => Some(re),
                Err(_) => {
                    out.error = InvalidRegularExpression.code();
                    return out;
                }
            },
        };
        let mut wanted = Vec::new();
        for name in &filter.states {
            match TxnState::from_name(name) {
                Some(s) => wanted.push(s),
                None => out.unknown_state_filters.push(name.clone()),
            }
        }
        let min_ms = filter.min_duration_ms;
        for (id, meta) in self.partitions.values().flat_map(|o| o.txns.iter()) {
            let f = &meta.fields;
            let keep = f.state != TxnState::Dead
                && (filter.producer_ids.is_empty() || filter.producer_ids.contains(&f.producer_id))
                && (filter.states.is_empty() || wanted.contains(&f.state))
                && (min_ms < 0 || now_ms.saturating_sub(f.start_ms) > min_ms)
                && pattern.as_ref().is_none_or(|re| re.is_match(id));
            if keep {
                out.transactions.push(ListedTxn {
                    transactional_id: id.clone(),
                    producer_id: f.producer_id,
                    state: f.state.name(),
                });
            }
        }
        out.transactions
            .sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
        out
    }
}
