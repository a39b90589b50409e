//! The one shutdown path: SIGINT/SIGTERM cancel a single [`CancellationToken`];
//! then the workers stop (bounded), the publisher flushes, the projector
//! finishes its batch and the store is flushed.

use std::{sync::Arc, time::Duration};

use govledger_projector::{Store, runner::ProjectorError};
use tokio_util::sync::CancellationToken;

use super::roles::{Projector, Workers};

/// How long shutdown waits for sync workers and unacknowledged events.
pub const SHUTDOWN_GRACE_MS: u64 = 10_000;

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

/// After the token is cancelled: waits for the workers and the publisher (each
/// bounded by [`SHUTDOWN_GRACE_MS`]), then the projector, then flushes the
/// store. Returns how the projector ended.
pub async fn drain(
    workers: Workers,
    projector: Projector,
    store: &Arc<Store>,
) -> Result<(), ProjectorError> {
    let grace = Duration::from_millis(SHUTDOWN_GRACE_MS);
    if tokio::time::timeout(grace, futures::future::join_all(workers.tasks))
        .await
        .is_err()
    {
        tracing::warn!("sync workers did not stop within {} ms", grace.as_millis());
    }
    if tokio::time::timeout(grace, workers.publisher.flush())
        .await
        .is_err()
    {
        tracing::warn!(
            "events still unacknowledged after {} ms; they are retried at the next start only if their run is",
            grace.as_millis()
        );
    }
    workers.publisher_stop.cancel();
    let projected = match projector.task.await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "projector task panicked");
            Ok(())
        }
    };
    if let Err(e) = store.flush().await {
        tracing::error!(error = %e, "final flush failed");
    }
    projected
}
