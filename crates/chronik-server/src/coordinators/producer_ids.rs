//! Producer ids (InitProducerId): handed out from blocks this broker reserves through the
//! metadata, so ids are unique across the cluster without a round trip per producer.

use chronik_metadata::MetadataCommand;

use crate::meta::{Meta, TopicError};

/// How many producer ids one metadata command reserves for this broker.
const PRODUCER_ID_BLOCK: i64 = 1000;

pub struct ProducerIds {
    meta: Meta,
    /// `[next, end)` of the block this broker owns.
    block: tokio::sync::Mutex<(i64, i64)>,
}

impl ProducerIds {
    pub fn new(meta: Meta) -> Self {
        ProducerIds {
            meta,
            block: tokio::sync::Mutex::new((0, 0)),
        }
    }

    /// The next producer id, reserving a new block through the metadata when one runs out.
    pub async fn next(&self) -> Result<i64, TopicError> {
        let mut ids = self.block.lock().await;
        if ids.0 >= ids.1 {
            let (first, count) = self
                .meta
                .apply(MetadataCommand::AllocateProducerIds {
                    count: PRODUCER_ID_BLOCK,
                })
                .await?
                .into_producer_ids()?;
            *ids = (first, first + count);
        }
        let id = ids.0;
        ids.0 += 1;
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ids are unique and consecutive within a block; a new block is reserved through the
    /// metadata when one runs out, and a second allocator (another broker) gets another block.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ids_come_from_reserved_blocks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let meta = crate::partitions::test_support::meta(dir.path()).await;
        let ids = ProducerIds::new(meta.clone());
        let mut got = Vec::new();
        for _ in 0..PRODUCER_ID_BLOCK + 2 {
            got.push(ids.next().await.expect("id"));
        }
        let first = got[0];
        let want: Vec<i64> = (first..first + PRODUCER_ID_BLOCK + 2).collect();
        assert_eq!(got, want, "two blocks back to back, nothing skipped");
        let other = ProducerIds::new(meta).next().await.expect("id");
        assert!(
            !got.contains(&other),
            "another allocator's block is disjoint"
        );
    }
}
