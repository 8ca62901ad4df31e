//! What a starting broker is doing, for `/health/ready` to say while it is not ready yet:
//! [`crate::wiring::start`] sets each step as it begins it, the HTTP endpoint reads it.

use std::sync::{Arc, Mutex};

/// The current start-up step, shared between the broker being started and the HTTP endpoint.
#[derive(Clone, Debug)]
pub struct StartupPhase(Arc<Mutex<&'static str>>);

impl Default for StartupPhase {
    fn default() -> Self {
        StartupPhase(Arc::new(Mutex::new("starting")))
    }
}

impl StartupPhase {
    pub const METADATA: &'static str = "joining the metadata cluster";
    pub const METADATA_CATCH_UP: &'static str =
        "catching up with the metadata leader (applying its log up to the leader's commit index)";
    pub const WAL_RECOVERY: &'static str = "recovering the WAL of this node's partitions";
    pub const OFFSETS: &'static str = "replaying committed offsets";

    pub fn set(&self, phase: &'static str) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = phase;
    }

    pub fn get(&self) -> &'static str {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}
