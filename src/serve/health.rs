//! The NATS watch: `serve` asks NATS every [`NATS_PROBE_INTERVAL_MS`] whether
//! it answers (the ledger stream's info: a JetStream round trip the
//! `govledger` user may make, bounded by [`NATS_PROBE_TIMEOUT_MS`]).
//! While it does not, gRPC health says NOT_SERVING (the ledger service and the
//! overall status), one warning is logged and one alert sent; when it answers
//! again, SERVING, a log line and an alert. Nothing here waits on NATS longer
//! than the probe's bound.

use std::time::Duration;

use govledger_proto::v1::{Alert, alert, ledger_server::LedgerServer};
use tokio_util::sync::CancellationToken;
use tonic_health::{ServingStatus, server::HealthReporter};

use crate::api::LedgerApi;
use govledger_projector::store::identity::{StreamIdentity, StreamMismatch};

/// How often NATS is asked (and the stores' free space looked at).
pub const NATS_PROBE_INTERVAL_MS: u64 = 1_000;
/// How long an answer may take before NATS counts as not answering.
pub const NATS_PROBE_TIMEOUT_MS: u64 = 2_000;

/// The stores whose disks the watch looks at, and what it tells.
pub struct StorageWatch {
    /// Folders on the stores' disks (statvfs of each).
    pub paths: Vec<std::path::PathBuf>,
    /// `Some(why)` while a disk is full: writes answer UNAVAILABLE with it.
    pub full: tokio::sync::watch::Sender<Option<String>>,
    /// Restarts the embedded nats-server (it keeps a store's write error
    /// until it restarts); `None` for an external server.
    pub restart_nats: Option<std::sync::Arc<tokio::sync::Notify>>,
}

impl StorageWatch {
    /// Looks at the stores' disks once; reports a change (log, alert,
    /// health, the API's write refusal) and, when space returns, restarts
    /// the embedded nats-server. `was_ok`: the disks had room last time;
    /// `else_serving`: nothing else keeps health NOT_SERVING. Returns
    /// whether they have room now.
    async fn look(
        &self,
        was_ok: bool,
        else_serving: bool,
        health: &HealthReporter,
        alerts: &tokio::sync::broadcast::Sender<Alert>,
    ) -> bool {
        match (was_ok, govledger_stream::room::full_disk(&self.paths)) {
            (true, Some(why)) => {
                let message = format!(
                    "{why}: NATS cannot store events and sled cannot commit; health is NOT_SERVING and writes \
                 answer UNAVAILABLE until space returns; nothing is dropped (unacknowledged events are kept \
                 and sent again). Free space on that disk"
                );
                tracing::error!("{message}");
                set(health, ServingStatus::NotServing).await;
                self.full.send_replace(Some(message.clone()));
                let _ = alerts.send(Alert {
                    kind: alert::Kind::StorageFull as i32,
                    message,
                    ..Default::default()
                });
            }
            (false, None) => {
                let restart = if let Some(r) = &self.restart_nats {
                    // Its store may hold a write error from the full disk.
                    r.notify_one();
                    "; the embedded nats-server is restarted to clear its store's write error"
                } else {
                    "; if the NATS server's store was full too, restart it (it keeps a write error until then)"
                };
                let message = format!("storage has room again{restart}");
                tracing::info!("{message}");
                self.full.send_replace(None);
                if else_serving {
                    set(health, ServingStatus::Serving).await;
                }
                let _ = alerts.send(Alert {
                    kind: alert::Kind::StorageRecovered as i32,
                    message,
                    ..Default::default()
                });
            }
            (ok, _) => return ok,
        }
        !was_ok
    }
}

/// Runs until `shutdown`; see the module doc.
/// Ends early only when the stream became another one (deleted and created
/// again): then it reports that, cancels `shutdown` and returns the mismatch,
/// so `serve` stops instead of folding a second history onto the first.
/// A projector that stopped on its own (`projector_stopped` holds why) makes
/// health NOT_SERVING for good: NATS answering again does not change that.
pub async fn watch_nats(
    js: async_nats::jetstream::Context,
    folded: StreamIdentity,
    health: HealthReporter,
    alerts: tokio::sync::broadcast::Sender<Alert>,
    mut projector_stopped: tokio::sync::watch::Receiver<Option<String>>,
    storage: StorageWatch,
    shutdown: CancellationToken,
) -> Option<StreamMismatch> {
    let mut up = true;
    let mut disk_ok = true;
    // Whether the projector's channel can still change (its task may end).
    let mut projector_live = true;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            _ = tokio::time::sleep(Duration::from_millis(NATS_PROBE_INTERVAL_MS)) => {}
            changed = projector_stopped.changed(), if projector_live => {
                projector_live = changed.is_ok();
            }
        }
        let stopped = projector_stopped.borrow().is_some();
        if stopped {
            // Idempotent: the reporter tells watchers only of changes.
            set(&health, ServingStatus::NotServing).await;
        }
        disk_ok = storage
            .look(disk_ok, up && !stopped, &health, &alerts)
            .await;
        let answer = tokio::time::timeout(
            Duration::from_millis(NATS_PROBE_TIMEOUT_MS),
            js.get_stream(&folded.name),
        )
        .await;
        if let Ok(Ok(s)) = &answer {
            let found = super::nats::identity_of(s.cached_info());
            if found.created_us != folded.created_us {
                let m = StreamMismatch::Replaced {
                    name: folded.name.clone(),
                    recorded_us: folded.created_us,
                    found_us: found.created_us,
                };
                tracing::error!("{m}; stopping");
                set(&health, ServingStatus::NotServing).await;
                let _ = alerts.send(Alert {
                    kind: alert::Kind::NatsUnavailable as i32,
                    message: m.to_string(),
                    ..Default::default()
                });
                shutdown.cancel();
                return Some(m);
            }
        }
        let why = match answer {
            Ok(Ok(_)) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some(format!("no answer within {NATS_PROBE_TIMEOUT_MS} ms")),
        };
        match (up, why) {
            (true, Some(why)) => {
                up = false;
                let message = format!(
                    "NATS does not answer ({why}): health is NOT_SERVING; calls that need the stream answer UNAVAILABLE; \
                     nothing is lost (unacknowledged events are sent again)"
                );
                tracing::warn!("{message}");
                set(&health, ServingStatus::NotServing).await;
                let _ = alerts.send(Alert {
                    kind: alert::Kind::NatsUnavailable as i32,
                    message,
                    ..Default::default()
                });
            }
            (false, None) => {
                up = true;
                tracing::info!("NATS answers again");
                if !stopped && disk_ok {
                    set(&health, ServingStatus::Serving).await;
                }
                let _ = alerts.send(Alert {
                    kind: alert::Kind::NatsRecovered as i32,
                    message: "NATS answers again".into(),
                    ..Default::default()
                });
            }
            _ => {}
        }
    }
}

async fn set(health: &HealthReporter, status: ServingStatus) {
    health.set_service_status("", status).await;
    match status {
        ServingStatus::Serving => health.set_serving::<LedgerServer<LedgerApi>>().await,
        _ => health.set_not_serving::<LedgerServer<LedgerApi>>().await,
    }
}
