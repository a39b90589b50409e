//! Sync workers: one task per configured source runs its syncs — on its schedule
//! and on demand (TriggerSync / `govledger sync`) — one at a time.
//!
//! At start, once the projection has caught up with the stream, a worker ends
//! any run of its source that a previous worker left unfinished with an explicit
//! `SyncRunFinished(ABANDONED)`: a crashed run never looks complete (R10).

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use govledger_ingest::{
    http::HttpSource,
    sync::{SyncContext, SyncProgress, SyncSpec, abandon_run, run_sync},
};
use govledger_projector::Store;
use govledger_proto::v1::SyncMode;
use tokio::sync::{Mutex, mpsc, oneshot, watch};

use super::deps::WorkerDeps;
use crate::config::{ConfigError, sources::Source};

/// Triggers queued per source at most (a trigger while one runs is refused).
const TRIGGER_QUEUE_MAX: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    #[error("source {0:?} is not configured here; add it under [[sources]]")]
    NotConfigured(String),
    #[error(
        "a sync of {source_id} is already running (run {run_id}); wait for it or watch it with `govledger run {run_id}`"
    )]
    AlreadyRunning { source_id: String, run_id: String },
    #[error("the sync worker of {0} is shutting down")]
    Stopped(String),
    #[error(
        "source {0} has no COMPLETE run yet: a delta sync needs one to start from; run a full sync first"
    )]
    NoBaseline(String),
    #[error(
        "a sync of {0} was started but NATS has not stored its start within {TRIGGER_RECORDED_TIMEOUT_MS} ms \
         (NATS slow or down): it is recorded once NATS takes it; see `govledger runs {0}` before triggering again"
    )]
    NotRecorded(String),
}

/// How long TriggerSync waits for the run's start to be stored before it
/// answers UNAVAILABLE (the run goes on and is recorded when NATS takes it).
pub const TRIGGER_RECORDED_TIMEOUT_MS: u64 = 8_000;

/// Who a run on the source's interval names as its trigger.
pub const SCHEDULE_PRINCIPAL: &str = "schedule";

struct Trigger {
    mode: SyncMode,
    /// The authenticated principal that asked.
    by: String,
    reply: oneshot::Sender<Result<String, TriggerError>>,
}

struct Handle {
    tx: mpsc::Sender<Trigger>,
    running: Arc<Mutex<Option<String>>>,
    freshness_objective_ms: u64,
}

/// The per-source workers of one govledger process.
#[derive(Clone)]
pub struct SyncManager {
    sources: Arc<BTreeMap<String, Handle>>,
    /// The projection, to tell a run that is still running from one the
    /// ledger has decided while its worker wraps up.
    store: Arc<Store>,
}

impl SyncManager {
    /// Builds a worker per configured source and spawns it. Returns the manager
    /// and the join handles (awaited at shutdown).
    pub fn start(
        sources: &[Source],
        deps: WorkerDeps,
    ) -> Result<(Self, Vec<tokio::task::JoinHandle<()>>), ConfigError> {
        let mut map = BTreeMap::new();
        let mut joins = Vec::new();
        let store = deps.store.clone();
        for source in sources {
            let spec = source.spec.clone();
            let http = source.http()?;
            let (tx, rx) = mpsc::channel(TRIGGER_QUEUE_MAX);
            let running = Arc::new(Mutex::new(None));
            // Live progress for the engine; nothing in this process reads it yet.
            let (ptx, _) = watch::channel(SyncProgress::default());
            let worker = Worker {
                spec: spec.clone(),
                http,
                deps: deps.clone(),
                running: running.clone(),
                progress: ptx,
                interval: source.schedule_interval,
            };
            joins.push(tokio::spawn(worker.run(rx)));
            map.insert(
                spec.source_id.clone(),
                Handle {
                    tx,
                    running,
                    freshness_objective_ms: source.freshness_objective_ms,
                },
            );
        }
        Ok((
            Self {
                sources: Arc::new(map),
                store,
            },
            joins,
        ))
    }

    /// Starts a sync of `source_id` now; returns its run id.
    /// Starts a run of `source_id` now, recorded as triggered by `by` (the
    /// authenticated principal).
    pub async fn trigger(
        &self,
        source_id: &str,
        mode: SyncMode,
        by: &str,
    ) -> Result<String, TriggerError> {
        let h = self
            .sources
            .get(source_id)
            .ok_or_else(|| TriggerError::NotConfigured(source_id.to_owned()))?;
        if let Some(run_id) = h.running.lock().await.clone() {
            // A run the ledger has decided has published everything: its
            // worker is wrapping up and takes this trigger next (a client that
            // saw the run decided may trigger the next one at once).
            let decided = self
                .store
                .run(&run_id)
                .ok()
                .flatten()
                .is_some_and(|r| r.decided);
            if !decided {
                return Err(TriggerError::AlreadyRunning {
                    source_id: source_id.to_owned(),
                    run_id,
                });
            }
        }
        let (reply, rx) = oneshot::channel();
        h.tx.try_send(Trigger {
            mode,
            by: by.to_owned(),
            reply,
        })
        .map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => TriggerError::AlreadyRunning {
                source_id: source_id.to_owned(),
                run_id: "queued".into(),
            },
            mpsc::error::TrySendError::Closed(_) => TriggerError::Stopped(source_id.to_owned()),
        })?;
        match tokio::time::timeout(Duration::from_millis(TRIGGER_RECORDED_TIMEOUT_MS), rx).await {
            Ok(r) => r.map_err(|_| TriggerError::Stopped(source_id.to_owned()))?,
            Err(_) => Err(TriggerError::NotRecorded(source_id.to_owned())),
        }
    }

    pub fn is_configured(&self, source_id: &str) -> bool {
        self.sources.contains_key(source_id)
    }

    pub fn configured(&self) -> impl Iterator<Item = &str> {
        self.sources.keys().map(String::as_str)
    }

    pub fn freshness_objective_ms(&self, source_id: &str) -> Option<u64> {
        self.sources
            .get(source_id)
            .map(|h| h.freshness_objective_ms)
    }

    pub async fn running(&self, source_id: &str) -> Option<String> {
        let h = self.sources.get(source_id)?;
        h.running.lock().await.clone()
    }
}

struct Worker {
    spec: SyncSpec,
    http: Arc<HttpSource>,
    deps: WorkerDeps,
    running: Arc<Mutex<Option<String>>>,
    progress: watch::Sender<SyncProgress>,
    interval: Option<Duration>,
}

impl Worker {
    async fn run(self, mut rx: mpsc::Receiver<Trigger>) {
        let source = self.spec.source_id.clone();
        if !self.abandon_leftover().await {
            return;
        }
        let mut next_scheduled = self.interval.map(|_| tokio::time::Instant::now());
        loop {
            let sleep_until = next_scheduled;
            let trigger = tokio::select! {
                _ = self.deps.cancel.cancelled() => return,
                t = rx.recv() => match t {
                    Some(t) => Some(t),
                    None => return,
                },
                _ = async {
                    match sleep_until {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                } => None,
            };
            if let (Some(iv), None) = (self.interval, &trigger) {
                next_scheduled = Some(tokio::time::Instant::now() + iv);
            }
            let mode = trigger.as_ref().map_or(SyncMode::Full, |t| t.mode);
            let by = trigger
                .as_ref()
                .map_or_else(|| SCHEDULE_PRINCIPAL.to_owned(), |t| t.by.clone());
            let since = if mode == SyncMode::Delta {
                match self.delta_baseline() {
                    Some(us) => Some(us),
                    None => {
                        if let Some(t) = trigger {
                            let _ = t.reply.send(Err(TriggerError::NoBaseline(source.clone())));
                        }
                        continue;
                    }
                }
            } else {
                None
            };
            let run_id = uuid::Uuid::now_v7().to_string();
            *self.running.lock().await = Some(run_id.clone());
            // Told once the run's start is stored (see `started_stored`).
            let mut reply = trigger.map(|t| t.reply);
            let mut progress = self.progress.subscribe();
            tracing::info!(source = %source, run_id = %run_id, "sync started");
            let ctx = SyncContext {
                publisher: self.deps.publisher.clone(),
                producer: self.deps.producer.clone(),
                http: self.http.clone(),
                progress: self.progress.clone(),
                cancel: self.deps.cancel.clone(),
            };
            let sync = run_sync(&self.spec, &ctx, &run_id, mode, since, &by);
            tokio::pin!(sync);
            let result = loop {
                tokio::select! {
                    r = &mut sync => break r,
                    changed = progress.changed(), if reply.is_some() => {
                        let stored = {
                            let p = progress.borrow_and_update();
                            p.run_id == run_id && p.started_stored
                        };
                        if stored && let Some(tx) = reply.take() {
                            let _ = tx.send(Ok(run_id.clone()));
                        } else if changed.is_err() && let Some(tx) = reply.take() {
                            // No more news of this run (cannot happen while
                            // the worker holds the sender): do not wait on it.
                            let _ = tx.send(Err(TriggerError::NotRecorded(source.clone())));
                        }
                    }
                }
            };
            if let Some(tx) = reply.take() {
                // Ended before its start was stored: it is no run to name.
                let _ = tx.send(Err(TriggerError::NotRecorded(source.clone())));
            }
            match result {
                Ok(r) => tracing::info!(
                    source = %source, run_id = %run_id, unique = r.unique, pages = r.pages_ok,
                    pages_failed = r.pages_failed, events = r.events,
                    "sync finished (engine's view; the ledger decides the verdict)"
                ),
                Err(e) => {
                    tracing::warn!(source = %source, run_id = %run_id, error = %e,
                        "sync stopped before all its events were stored; recording it ABANDONED");
                    // Decided now, not at the next start: a run never stays
                    // RUNNING in a process that is still up.
                    if !self.deps.cancel.is_cancelled()
                        && !self
                            .abandon_until_recorded(
                                &run_id,
                                "the sync stopped before all its events were stored; a new run is needed",
                            )
                            .await
                    {
                        return;
                    }
                }
            }
            *self.running.lock().await = None;
        }
    }

    /// Start of the source's last COMPLETE run: what a delta sync reads from.
    fn delta_baseline(&self) -> Option<i64> {
        let src = self.deps.store.source(&self.spec.source_id).ok()??;
        if src.last_complete_run_id.is_empty() {
            return None;
        }
        let run = self.deps.store.run(&src.last_complete_run_id).ok()??;
        Some(run.started_at_us)
    }

    /// Waits until the projection holds everything that was in the stream at
    /// start, then abandons this source's unfinished run, if any. False on shutdown.
    async fn abandon_leftover(&self) -> bool {
        if !self.deps.caught_up().await {
            return false;
        }
        let source = &self.spec.source_id;
        let last = match self.deps.store.source(source) {
            Ok(Some(s)) => s.last_run_id,
            Ok(None) => return true,
            Err(e) => {
                tracing::error!(source = %source, error = %e, "cannot read the projection to check for unfinished runs");
                return true;
            }
        };
        if last.is_empty() {
            return true;
        }
        if let Ok(Some(run)) = self.deps.store.run(&last)
            && !run.finished
        {
            tracing::warn!(source = %source, run_id = %last, "abandoning a run a previous worker left unfinished");
            return self
                .abandon_until_recorded(
                    &last,
                    "worker restarted mid-run: the run was not resumed; a new run is needed",
                )
                .await;
        }
        true
    }

    /// Records `run_id` ABANDONED, trying again (with backoff) until NATS
    /// stores it: a run never stays RUNNING because NATS could not take its
    /// end at the first try (down, its disk full). False on shutdown.
    async fn abandon_until_recorded(&self, run_id: &str, why: &str) -> bool {
        let source = &self.spec.source_id;
        let backoff = govledger_stream::backoff::Backoff::default();
        let mut failures: u32 = 0;
        loop {
            match abandon_run(
                &self.deps.publisher,
                &self.deps.producer,
                source,
                run_id,
                why,
            )
            .await
            {
                Ok(()) => return true,
                Err(e) => {
                    failures = failures.saturating_add(1);
                    tracing::error!(source = %source, run_id = %run_id, error = %e, failures,
                        "could not record the abandonment; trying again (no new sync of this source starts before it is recorded)");
                    let d = backoff.delay(failures.min(20) - 1, &mut rand::rng());
                    tokio::select! {
                        _ = self.deps.cancel.cancelled() => return false,
                        _ = tokio::time::sleep(d) => {}
                    }
                }
            }
        }
    }
}
