//! What the workers of one process share: the publisher, the projection and
//! its progress, and the shutdown token.

use std::sync::Arc;

use govledger_ingest::{Publisher, event::ProducerId};
use govledger_projector::Store;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// What a worker (sync or action) needs from the process.
#[derive(Clone)]
pub struct WorkerDeps {
    pub publisher: Publisher,
    pub producer: ProducerId,
    pub store: Arc<Store>,
    /// The projector's last applied sequence.
    pub applied: watch::Receiver<u64>,
    /// The stream's last sequence when the process started.
    pub stream_last_seq_at_start: u64,
    pub cancel: CancellationToken,
}

impl WorkerDeps {
    /// Waits until the projection holds everything the stream held when the
    /// process started. False on shutdown.
    pub async fn caught_up(&self) -> bool {
        let mut applied = self.applied.clone();
        let target = self.stream_last_seq_at_start;
        tokio::select! {
            r = applied.wait_for(|s| *s >= target) => r.is_ok(),
            _ = self.cancel.cancelled() => false,
        }
    }
}
