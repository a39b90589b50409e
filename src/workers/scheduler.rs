//! Sync workers: one task per configured source runs its syncs — on its schedule
//! and on demand (TriggerSync / `govledger sync`) — one at a time.
//!
//! At start, once the projection has caught up with the stream, a worker ends
//! any run of its source that a previous worker left unfinished with an explicit
//! `SyncRunFinished(ABANDONED)`: a crashed run never looks complete (R10).
//!
//! In a cluster (`[cluster] node`), every ingest process has a worker per
//! source and they share them through the source's lease: a worker runs only
//! while it holds `sync.<source>`. Having taken it, it first catches up with
//! the stream's tip, then decides a run the previous holder left unfinished
//! ABANDONED; a scheduled run starts only if none started within the
//! interval (so N workers make one run per interval), and a worker whose
//! lease is lost mid-run stops it. Every lease TTL a worker also looks for a
//! run left unfinished by a dead holder and decides it. On an `api` node
//! (no workers) a trigger is sent to the ingest processes
//! ([`crate::cluster::control`]).

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use govledger_ingest::{
    http::HttpSource,
    sync::{SyncContext, SyncProgress, SyncSpec, abandon_run, run_sync},
};
use govledger_projector::Store;
use govledger_proto::v1::SyncMode;
use tokio::sync::{Mutex, mpsc, oneshot, watch};

use super::deps::{NotTaken, WorkerDeps};
use crate::{
    cluster::control::Remote,
    config::{ConfigError, sources::Source},
};

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
    #[error(
        "no ingest process answered the trigger of {0}: start `govledger ingest` (or `serve`) with this \
         [cluster] config, or check that it reaches NATS"
    )]
    NoIngest(String),
}

/// A run started on request: its id and the stream sequence of its start
/// (a reader that asks for at least that sequence sees the run).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Triggered {
    pub run_id: String,
    pub seq: u64,
}

/// The lease a source's syncs run under, in a cluster.
pub fn lease_key(source_id: &str) -> String {
    format!("sync.{source_id}")
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
    reply: oneshot::Sender<Result<Triggered, TriggerError>>,
}

struct Handle {
    /// `None` on a node without workers (triggers go to [`SyncManager::remote`]).
    tx: Option<mpsc::Sender<Trigger>>,
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
    /// Where triggers go when this process runs no sync workers.
    remote: Option<Remote>,
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
                    tx: Some(tx),
                    running,
                    freshness_objective_ms: source.freshness_objective_ms,
                },
            );
        }
        Ok((
            Self {
                sources: Arc::new(map),
                store,
                remote: None,
            },
            joins,
        ))
    }

    /// The sources of a node that runs no sync workers (`govledger api`):
    /// triggers are sent to the ingest processes through `remote`.
    pub fn remote(sources: &[Source], store: Arc<Store>, remote: Remote) -> Self {
        let map = sources
            .iter()
            .map(|s| {
                (
                    s.spec.source_id.clone(),
                    Handle {
                        tx: None,
                        running: Arc::new(Mutex::new(None)),
                        freshness_objective_ms: s.freshness_objective_ms,
                    },
                )
            })
            .collect();
        Self {
            sources: Arc::new(map),
            store,
            remote: Some(remote),
        }
    }

    /// Starts a run of `source_id` now, recorded as triggered by `by` (the
    /// authenticated principal); answers once its start is stored.
    pub async fn trigger(
        &self,
        source_id: &str,
        mode: SyncMode,
        by: &str,
    ) -> Result<Triggered, TriggerError> {
        let h = self
            .sources
            .get(source_id)
            .ok_or_else(|| TriggerError::NotConfigured(source_id.to_owned()))?;
        let Some(tx) = &h.tx else {
            return match &self.remote {
                Some(r) => r.trigger(source_id, mode, by).await,
                None => Err(TriggerError::Stopped(source_id.to_owned())),
            };
        };
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
        tx.try_send(Trigger {
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
        if h.tx.is_none() {
            // No worker here: the projection's unfinished run, if any.
            return unfinished_run(&self.store, source_id);
        }
        h.running.lock().await.clone()
    }
}

/// The source's last run, if the projection holds it unfinished.
fn unfinished_run(store: &Store, source_id: &str) -> Option<String> {
    let last = store.source(source_id).ok()??.last_run_id;
    let run = store.run(&last).ok()??;
    (!run.finished).then_some(last)
}

/// What woke a worker up.
enum Why {
    Trigger(Trigger),
    Schedule,
    /// In a cluster: time to look for a run a dead holder left unfinished.
    Sweep,
}

/// Sleeps until `at`, or forever.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
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
        // Alone, this process owns the source: decide a leftover run now. In
        // a cluster that is done under the lease, by whoever takes it.
        if self.deps.cluster.is_none() && !self.abandon_leftover().await {
            return;
        }
        let now = tokio::time::Instant::now;
        let mut next_scheduled = self.interval.map(|_| now());
        let sweep = self.deps.sweep_every();
        let mut next_sweep = sweep.map(|d| now() + d);
        loop {
            let why = tokio::select! {
                _ = self.deps.cancel.cancelled() => return,
                t = rx.recv() => match t {
                    Some(t) => Why::Trigger(t),
                    None => return,
                },
                _ = sleep_until(next_scheduled) => Why::Schedule,
                _ = sleep_until(next_sweep) => Why::Sweep,
            };
            match why {
                Why::Schedule => next_scheduled = self.interval.map(|iv| now() + iv),
                Why::Sweep => next_sweep = sweep.map(|d| now() + d),
                Why::Trigger(_) => {}
            }
            if !self.turn(why).await {
                return;
            }
        }
    }

    /// One wake-up: under the source's lease in a cluster. False on shutdown.
    async fn turn(&self, why: Why) -> bool {
        let source = &self.spec.source_id;
        if matches!(why, Why::Sweep) && unfinished_run(&self.deps.store, source).is_none() {
            return true;
        }
        // Cancelled on shutdown, and when the lease is lost mid-run.
        let lost = self.deps.cancel.child_token();
        let holding = match self.deps.lease(&lease_key(source), &lost).await {
            Ok(h) => h,
            Err(not) => {
                if let Why::Trigger(t) = why {
                    let e = match not {
                        NotTaken::Held(holder) => TriggerError::AlreadyRunning {
                            source_id: source.clone(),
                            run_id: unfinished_run(&self.deps.store, source)
                                .unwrap_or_else(|| format!("held by {holder}")),
                        },
                        NotTaken::Unreachable => TriggerError::NotRecorded(source.clone()),
                    };
                    let _ = t.reply.send(Err(e));
                }
                return true;
            }
        };
        let go = self.under_lease(why, &lost).await;
        if let Some(h) = holding {
            h.release().await;
        }
        go
    }

    /// In a cluster, with the lease: catch up, decide what a dead holder left,
    /// then run if asked (or due). Alone: run. False on shutdown.
    async fn under_lease(&self, why: Why, lost: &tokio_util::sync::CancellationToken) -> bool {
        let source = &self.spec.source_id;
        if self.deps.cluster.is_some() {
            if !self.deps.caught_up_now().await {
                if let Why::Trigger(t) = why {
                    let _ = t.reply.send(Err(TriggerError::NotRecorded(source.clone())));
                }
                return !self.deps.cancel.is_cancelled();
            }
            if let Some(left) = unfinished_run(&self.deps.store, source) {
                tracing::warn!(source = %source, run_id = %left,
                    "deciding a run whose worker stopped renewing its lease (died or was cut off)");
                if !self
                    .abandon_until_recorded(
                        &left,
                        "the worker running it stopped renewing its lease (it died or lost NATS): \
                         the run was not resumed; a new run is needed",
                    )
                    .await
                {
                    return false;
                }
            }
            match &why {
                Why::Sweep => return true,
                Why::Schedule if !self.due() => return true,
                _ => {}
            }
        }
        let trigger = match why {
            Why::Trigger(t) => Some(t),
            _ => None,
        };
        self.one_run(trigger, lost).await
    }

    /// Whether a scheduled run is due: none started within the interval.
    fn due(&self) -> bool {
        let Some(iv) = self.interval else {
            return false;
        };
        let Some(src) = self.deps.store.source(&self.spec.source_id).ok().flatten() else {
            return true;
        };
        let Some(run) = self.deps.store.run(&src.last_run_id).ok().flatten() else {
            return true;
        };
        let now_us = chrono::Utc::now().timestamp_micros();
        now_us.saturating_sub(run.started_at_us) >= iv.as_micros() as i64
    }

    /// One run, on a trigger or the schedule; `cancel` stops it. False on shutdown.
    async fn one_run(
        &self,
        trigger: Option<Trigger>,
        cancel: &tokio_util::sync::CancellationToken,
    ) -> bool {
        let source = self.spec.source_id.clone();
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
                    return true;
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
            cancel: cancel.clone(),
        };
        let sync = run_sync(&self.spec, &ctx, &run_id, mode, since, &by);
        tokio::pin!(sync);
        let result = loop {
            tokio::select! {
                r = &mut sync => break r,
                changed = progress.changed(), if reply.is_some() => {
                    let stored = {
                        let p = progress.borrow_and_update();
                        (p.run_id == run_id && p.started_stored).then_some(p.started_seq)
                    };
                    if let Some(seq) = stored && let Some(tx) = reply.take() {
                        let _ = tx.send(Ok(Triggered { run_id: run_id.clone(), seq }));
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
                    return false;
                }
            }
        }
        *self.running.lock().await = None;
        true
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
