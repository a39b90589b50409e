//! The health watch: `serve` asks NATS every [`NATS_PROBE_INTERVAL_MS`] whether
//! it answers (the ledger stream's info: a JetStream round trip the
//! `govledger` user may make, bounded by [`NATS_PROBE_TIMEOUT_MS`]), reads
//! the stream's last sequence from that answer and compares it with the
//! projector's last applied one. Each look yields a [`HealthState`]: gRPC
//! health (the ledger service and the overall status) and `/readyz` say
//! SERVING only while NATS answers, the disks have room, the projector runs
//! and its lag is within `projector.lag_bound_events`. A change of NATS or
//! disk is logged once and alerted once; the lag's crossing of its bound is
//! logged. Nothing here waits on NATS longer than the probe's bound.

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

/// What the last look found: the one source of gRPC health, `/readyz`, the
/// readiness gauges and the status page's health line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthState {
    /// `Some(why)` while NATS does not answer.
    pub nats_down: Option<String>,
    /// `Some(why)` while a store's disk is full.
    pub storage_full: Option<String>,
    /// `Some(why)` once the projector stopped on its own.
    pub projector_stopped: Option<String>,
    /// The stream's last sequence at the last answer (`None`: none yet).
    pub stream_last_seq: Option<u64>,
    /// The projector's last applied sequence.
    pub applied_seq: u64,
    /// The lag past which the ledger is not ready (0 = no bound).
    pub lag_bound_events: u64,
    /// An admin paused the projector.
    pub paused: bool,
}

impl HealthState {
    /// This state as seen from a projection read at `applied` (fresher than
    /// the probe's): the stream is never behind it.
    pub fn at_applied(mut self, applied: u64) -> Self {
        self.applied_seq = applied;
        self.stream_last_seq = self.stream_last_seq.map(|l| l.max(applied));
        self
    }

    /// Events stored but not yet applied (`None` before NATS first answered).
    pub fn lag(&self) -> Option<u64> {
        self.stream_last_seq
            .map(|s| s.saturating_sub(self.applied_seq))
    }

    /// The lag, when it is past its bound.
    pub fn lag_past_bound(&self) -> Option<u64> {
        self.lag()
            .filter(|l| self.lag_bound_events > 0 && *l > self.lag_bound_events)
    }

    /// Why the ledger is not ready, one sentence each; empty when it is.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if let Some(why) = &self.nats_down {
            p.push(format!("NATS does not answer: {why}"));
        }
        if let Some(why) = &self.storage_full {
            p.push(why.clone());
        }
        if let Some(why) = &self.projector_stopped {
            p.push(why.clone());
        }
        if let Some(lag) = self.lag_past_bound() {
            let paused = if self.paused {
                " (an admin paused it: `govledger projector resume`)"
            } else {
                ""
            };
            p.push(format!(
                "the projector is {lag} events behind the stream, past its bound of {} (projector.lag_bound_events); \
                 answers are as of sequence {} of {}{paused}",
                self.lag_bound_events,
                self.applied_seq,
                self.applied_seq + lag
            ));
        }
        p
    }
}

/// What the watch reads besides NATS: the projector's progress and pause,
/// and where it tells what it found.
pub struct Probes {
    /// `Some(why)` once the projector stopped on its own.
    pub projector_stopped: tokio::sync::watch::Receiver<Option<String>>,
    pub applied: tokio::sync::watch::Receiver<u64>,
    pub paused: tokio::sync::watch::Receiver<bool>,
    pub lag_bound_events: u64,
    pub state: tokio::sync::watch::Sender<HealthState>,
}

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
    /// Looks at the stores' disks once; reports a change (log, alert, the
    /// API's write refusal) and, when space returns, restarts the embedded
    /// nats-server. `was_ok`: the disks had room last time. Returns whether
    /// they have room now.
    async fn look(&self, was_ok: bool, alerts: &tokio::sync::broadcast::Sender<Alert>) -> bool {
        match (was_ok, govledger_stream::room::full_disk(&self.paths)) {
            (true, Some(why)) => {
                let message = format!(
                    "{why}: NATS cannot store events and sled cannot commit; health is NOT_SERVING and writes \
                 answer UNAVAILABLE until space returns; nothing is dropped (unacknowledged events are kept \
                 and sent again). Free space on that disk"
                );
                tracing::error!("{message}");
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
    storage: StorageWatch,
    mut probes: Probes,
    shutdown: CancellationToken,
) -> Option<StreamMismatch> {
    let mut up = true;
    let mut disk_ok = true;
    let mut serving = true;
    let mut lagging = false;
    let mut stream_last_seq = None;
    // Whether the projector's channel can still change (its task may end).
    let mut projector_live = true;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            _ = tokio::time::sleep(Duration::from_millis(NATS_PROBE_INTERVAL_MS)) => {}
            changed = probes.projector_stopped.changed(), if projector_live => {
                projector_live = changed.is_ok();
            }
        }
        disk_ok = storage.look(disk_ok, &alerts).await;
        let answer = tokio::time::timeout(
            Duration::from_millis(NATS_PROBE_TIMEOUT_MS),
            js.get_stream(&folded.name),
        )
        .await;
        if let Ok(Ok(s)) = &answer {
            stream_last_seq = Some(s.cached_info().state.last_sequence);
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
        let why = match &answer {
            Ok(Ok(_)) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some(format!("no answer within {NATS_PROBE_TIMEOUT_MS} ms")),
        };
        match (up, &why) {
            (true, Some(why)) => {
                up = false;
                let message = format!(
                    "NATS does not answer ({why}): health is NOT_SERVING; calls that need the stream answer UNAVAILABLE; \
                     nothing is lost (unacknowledged events are sent again)"
                );
                tracing::warn!("{message}");
                let _ = alerts.send(Alert {
                    kind: alert::Kind::NatsUnavailable as i32,
                    message,
                    ..Default::default()
                });
            }
            (false, None) => {
                up = true;
                tracing::info!("NATS answers again");
                let _ = alerts.send(Alert {
                    kind: alert::Kind::NatsRecovered as i32,
                    message: "NATS answers again".into(),
                    ..Default::default()
                });
            }
            _ => {}
        }
        let state = HealthState {
            nats_down: why,
            storage_full: storage.full.borrow().clone(),
            projector_stopped: probes.projector_stopped.borrow().clone(),
            stream_last_seq,
            applied_seq: *probes.applied.borrow(),
            lag_bound_events: probes.lag_bound_events,
            paused: *probes.paused.borrow(),
        };
        lagging = log_lag(lagging, &state);
        let ok = state.problems().is_empty();
        if ok != serving {
            serving = ok;
            let status = if ok {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            set(&health, status).await;
        }
        probes.state.send_replace(state);
    }
}

/// Logs the lag's crossing of its bound (either way); whether it is past it now.
fn log_lag(was_lagging: bool, state: &HealthState) -> bool {
    match (was_lagging, state.lag_past_bound()) {
        (false, Some(lag)) => {
            tracing::warn!(
                lag,
                bound = state.lag_bound_events,
                paused = state.paused,
                "the projector is behind the stream past its lag bound: health is NOT_SERVING and /readyz 503 until it catches up"
            );
            true
        }
        (true, None) => {
            tracing::info!("the projector is within its lag bound again");
            false
        }
        (_, now) => now.is_some(),
    }
}

async fn set(health: &HealthReporter, status: ServingStatus) {
    health.set_service_status("", status).await;
    match status {
        ServingStatus::Serving => health.set_serving::<LedgerServer<LedgerApi>>().await,
        _ => health.set_not_serving::<LedgerServer<LedgerApi>>().await,
    }
}
