//! The one shutdown path: SIGINT/SIGTERM cancel a single [`CancellationToken`];
//! then the workers stop (bounded), the publisher flushes, the projector
//! finishes its batch and the store is flushed.

use std::{sync::Arc, time::Duration};

use govledger_projector::{Store, runner::ProjectorError};
use tokio_util::sync::CancellationToken;

use super::roles::{Projector, Workers};

/// How long shutdown waits, in all, for the workers, unacknowledged events and
/// the projector's last batch (whatever NATS is doing).
pub const SHUTDOWN_GRACE_MS: u64 = 10_000;
/// How long open gRPC calls get to finish once shutdown begins.
pub const GRPC_DRAIN_MS: u64 = 5_000;
/// How long the final sled flush may take.
pub const FLUSH_GRACE_MS: u64 = 5_000;

/// Resolves SIGINT/SIGTERM into `token`.
pub fn cancel_on_signals(token: CancellationToken) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => tracing::info!("SIGINT: shutting down"),
            _ = term => tracing::info!("SIGTERM: shutting down"),
        }
        token.cancel();
    });
}

/// After the token is cancelled: waits for the workers, the publisher and the
/// projector, all within one [`SHUTDOWN_GRACE_MS`] (a NATS that does not
/// answer cannot hold shutdown up), then flushes the store (bounded by
/// [`FLUSH_GRACE_MS`]). Returns how the projector ended. A projector stopped
/// mid-batch loses nothing: the batch was neither committed nor acked, so it
/// is delivered again at the next start.
pub async fn drain(
    workers: Workers,
    mut projector: Projector,
    store: &Arc<Store>,
) -> Result<(), ProjectorError> {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(SHUTDOWN_GRACE_MS);
    if tokio::time::timeout_at(deadline, futures::future::join_all(workers.tasks))
        .await
        .is_err()
    {
        tracing::warn!("sync workers did not stop within {SHUTDOWN_GRACE_MS} ms");
    }
    if tokio::time::timeout_at(deadline, workers.publisher.flush())
        .await
        .is_err()
    {
        tracing::warn!(
            "events still unacknowledged at shutdown ({SHUTDOWN_GRACE_MS} ms); they are retried at the next start only if their run is"
        );
    }
    workers.publisher_stop.cancel();
    let projected = match tokio::time::timeout_at(deadline, &mut projector.task).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "projector task panicked");
            Ok(())
        }
        Err(_) => {
            tracing::warn!(
                "the projector did not finish its batch within {SHUTDOWN_GRACE_MS} ms (NATS not answering?); \
                 stopping it: the batch is delivered again at the next start"
            );
            projector.task.abort();
            Ok(())
        }
    };
    match tokio::time::timeout(Duration::from_millis(FLUSH_GRACE_MS), store.flush()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "final flush failed"),
        Err(_) => tracing::error!("final flush did not finish within {FLUSH_GRACE_MS} ms"),
    }
    projected
}
