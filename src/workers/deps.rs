//! What the workers of one process share: the publisher, the projection and
//! its progress, the shutdown token, and (in a cluster) the leases.

use std::{sync::Arc, time::Duration};

use govledger_ingest::{Publisher, event::ProducerId};
use govledger_projector::Store;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::cluster::lease::{Acquired, Holding, Leases};

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
    /// In a cluster: the leases a worker takes before it runs anything, and
    /// the stream whose tip it catches up with after taking one.
    pub cluster: Option<Arc<Shared>>,
}

/// What the workers of several processes share: the lease bucket, the stream.
pub struct Shared {
    pub leases: Arc<Leases>,
    pub js: async_nats::jetstream::Context,
    pub stream: String,
}

/// Why a lease was not taken.
#[derive(Debug)]
pub enum NotTaken {
    /// Another process holds it (its holder name).
    Held(String),
    /// The lease bucket did not answer (NATS slow or down).
    Unreachable,
}

/// Tries of reading the stream's tip before a lease holder gives up its turn.
const TIP_TRIES: u32 = 5;
/// How long a lease holder waits for its projection to reach the stream's
/// tip before it gives up its turn (and the lease): a paused or stuck
/// projector must not hold a source's work hostage.
pub const CATCH_UP_MAX_MS: u64 = 30_000;

impl WorkerDeps {
    /// Waits until the projection holds everything the stream held when the
    /// process started. False on shutdown.
    pub async fn caught_up(&self) -> bool {
        self.caught_up_to(self.stream_last_seq_at_start).await
    }

    async fn caught_up_to(&self, target: u64) -> bool {
        let mut applied = self.applied.clone();
        tokio::select! {
            r = applied.wait_for(|s| *s >= target) => r.is_ok(),
            _ = self.cancel.cancelled() => false,
        }
    }

    /// Waits until the projection holds everything the stream holds now
    /// (what another process published included). False on shutdown, or
    /// when the stream's tip cannot be read (NATS down: try later), or the
    /// projection does not reach it within [`CATCH_UP_MAX_MS`].
    pub async fn caught_up_now(&self) -> bool {
        let Some(shared) = &self.cluster else {
            return self.caught_up().await;
        };
        let Some(target) = self.stream_tip(shared).await else {
            return false;
        };
        let bound = Duration::from_millis(CATCH_UP_MAX_MS);
        match tokio::time::timeout(bound, self.caught_up_to(target)).await {
            Ok(r) => r,
            Err(_) => {
                tracing::warn!(
                    target,
                    applied = *self.applied.borrow(),
                    "the projection did not reach the stream's tip in {CATCH_UP_MAX_MS} ms; giving up this turn"
                );
                false
            }
        }
    }

    /// The stream's last sequence, tried [`TIP_TRIES`] times with backoff
    /// (`get_stream` answers with the stream's info: one request a try).
    async fn stream_tip(&self, shared: &Shared) -> Option<u64> {
        let backoff = govledger_stream::backoff::Backoff::default();
        for attempt in 0..TIP_TRIES {
            match shared.js.get_stream(&shared.stream).await {
                Ok(s) => return Some(s.cached_info().state.last_sequence),
                Err(e) => tracing::debug!(error = %e, "reading the stream's tip"),
            }
            let d = backoff.delay(attempt, &mut rand::rng());
            tokio::select! {
                _ = self.cancel.cancelled() => return None,
                _ = tokio::time::sleep(d) => {}
            }
        }
        None
    }

    /// In a cluster, takes the lease `key` (renewed until released; `lost`
    /// cancelled if it is lost): `Ok(None)` outside a cluster (this process
    /// owns everything), `Err` when another process holds it or the bucket
    /// cannot be reached.
    pub async fn lease(
        &self,
        key: &str,
        lost: &CancellationToken,
    ) -> Result<Option<Holding>, NotTaken> {
        let Some(shared) = &self.cluster else {
            return Ok(None);
        };
        match shared.leases.try_acquire(key).await {
            Ok(Acquired::Held(lease)) => Ok(Some(Holding::start(
                shared.leases.clone(),
                lease,
                lost.clone(),
            ))),
            Ok(Acquired::Busy { holder, .. }) => Err(NotTaken::Held(holder)),
            Err(e) => {
                tracing::warn!(key, error = %e, "cannot take a lease; trying at the next turn");
                Err(NotTaken::Unreachable)
            }
        }
    }

    /// How often a cluster worker looks for work a dead holder left.
    pub fn sweep_every(&self) -> Option<Duration> {
        self.cluster
            .as_ref()
            .map(|s| Duration::from_millis(s.leases.ttl_ms.max(1_000)))
    }
}
