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
