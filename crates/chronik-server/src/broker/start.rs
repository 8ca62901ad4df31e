//! Opening a broker once it is assembled (`crate::wiring`): registration under a new
//! incarnation, the local partitions and the committed offsets, then the background work.

use std::sync::Arc;

use chronik_cluster::LivenessConfig;
use chronik_metadata::{BrokerInfo, BrokerState, Endpoint};

use super::{Broker, StartError};
use crate::startup::StartupPhase;

impl Broker {
    /// Registers a new incarnation, then opens the local partitions and the offsets.
    pub(crate) async fn register_and_open(
        self: &Arc<Self>,
        host: String,
        port: i32,
        endpoints: Vec<Endpoint>,
        phase: &StartupPhase,
        cluster_size: usize,
    ) -> Result<(), StartError> {
        // Every start registers a new incarnation: the partitions this broker led get a new
        // leader epoch before it leads them again (see `MetadataCommand::RegisterBroker`).
        self.partitions
            .set_registration(self.own_info(host, port, endpoints));
        self.partitions
            .register_new_incarnation()
            .await
            .map_err(|e| StartError::Register(e.message))?;
        self.partitions.remove_orphan_dirs();
        if let Some((user, password)) = self.config.security.bootstrap_user.clone() {
            self.ensure_bootstrap_user(&user, &password).await?;
        }
        phase.set(StartupPhase::WAL_RECOVERY);
        self.sync_partitions().await?;
        phase.set(StartupPhase::OFFSETS);
        self.open_offsets(cluster_size).await
    }

    /// Opens and closes local partitions to match the metadata applied now.
    pub(super) async fn sync_partitions(&self) -> Result<(), StartError> {
        self.partitions
            .sync(&self.metadata())
            .await
            .map_err(|(topic, partition, source)| StartError::Wal {
                topic,
                partition,
                source,
            })
    }

    /// This broker as it registers in the metadata (incarnation 0 until it registers).
    fn own_info(&self, host: String, port: i32, listeners: Vec<Endpoint>) -> BrokerInfo {
        BrokerInfo {
            node_id: self.node_id,
            host,
            port,
            listeners,
            rack: self.config.rack.clone(),
            rpc_addr: match &self.config.cluster {
                Some(c) => c
                    .peers
                    .0
                    .get(&(self.node_id as u64))
                    .cloned()
                    .unwrap_or_default(),
                None => String::new(),
            },
            state: BrokerState::Alive,
            incarnation: 0,
        }
    }

    /// The tasks that run until shutdown: the partition manager's (metadata following, ISR
    /// changes, HW checkpoints, heals), group timers and, on the Raft leader, the controller's
    /// liveness checks.
    pub(crate) fn start_background_work(self: &Arc<Self>) {
        self.partitions.start_background_work();
        match crate::cleaner::LogCleaner::start(
            self.config.cleaner.clone(),
            &self.partitions,
            self.shutdown.clone(),
        ) {
            Ok(threads) => *self.cleaner.lock().unwrap_or_else(|e| e.into_inner()) = Some(threads),
            // Without threads no topic is compacted; the broker still serves.
            Err(e) => tracing::error!(error = %e, "cannot start the log cleaner threads"),
        }
        self.groups.start_timer();
        self.txns.start_timer();
        let session = self.config.broker_session_timeout;
        self.meta.node.start_liveness(LivenessConfig {
            heartbeat_interval: (session / 4).min(std::time::Duration::from_millis(500)),
            session_timeout: session,
            auto_leader_rebalance: self.config.auto_leader_rebalance,
        });
    }
}
