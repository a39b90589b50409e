//! Lifecycle actions, the executor side: one worker per writable source runs
//! the jobs [`super::action_intake`] queues, one at a time, and recovers after a
//! crash.
//!
//! Recovery: at start, once the projection holds everything the stream held, a
//! worker re-examines its source's open actions: one with attempts recorded is
//! read back first (never re-executed blindly); one without attempts is executed.
//!
//! In a cluster the work comes from the projection, not a queue: each ingest
//! process's worker of a source looks at the source's open actions as the
//! projection grows, and runs them only while it holds the source's lease
//! (`actions.<source>`), after catching up with the stream's tip. The same
//! rule as recovery applies to every action it takes: one with attempts
//! recorded (a dead holder's) is read back before any new write.

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use govledger_ingest::actions::{Executor, Step, Target};
use tokio::{sync::mpsc, task::JoinHandle, time::Instant};
use tokio_util::sync::CancellationToken;

use super::{action_intake::steps_of, deps::WorkerDeps};

/// Jobs queued per source at most; a full queue answers `Unavailable`.
pub const ACTION_QUEUE_MAX: usize = 1_024;
/// Open actions examined per source at start.
pub const RECOVERY_MAX: usize = 10_000;

/// One action to run (or, `verify_only`, to read back).
pub(super) struct Job {
    pub(super) action_id: String,
    pub(super) steps: Vec<Step>,
    pub(super) verify_only: bool,
}

/// Spawns the executor worker of `target`; returns its job queue and its task.
pub(super) fn spawn(target: Target, deps: WorkerDeps) -> (mpsc::Sender<Job>, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(ACTION_QUEUE_MAX);
    let task = if deps.cluster.is_some() {
        tokio::spawn(leased(target, deps, rx))
    } else {
        tokio::spawn(worker(target, deps, rx))
    };
    (tx, task)
}

/// The lease a source's actions run under, in a cluster.
pub fn lease_key(source_id: &str) -> String {
    format!("actions.{source_id}")
}

/// The projection is looked at no more often than this, in milliseconds.
const SCAN_SPACING_MS: u64 = 200;
/// Nor less often (work a dead holder left shows up without new events).
const SCAN_IDLE_MS: u64 = 2_000;
/// An action whose run did not conclude is taken again after this long.
const RETRY_AFTER_MS: u64 = 2_000;

/// The work of `target` the projection shows: open actions to run (or read
/// back), minus those concluded here or waiting for a retry.
fn pending(
    target: &Target,
    deps: &WorkerDeps,
    concluded: &HashSet<String>,
    retry_at: &HashMap<String, Instant>,
) -> Vec<Job> {
    let now = Instant::now();
    deps.store
        .open_actions(&target.source_id, RECOVERY_MAX)
        .unwrap_or_default()
        .into_iter()
        .filter(|a| a.concluded_seq == 0 && !concluded.contains(&a.action_id))
        .filter(|a| retry_at.get(&a.action_id).is_none_or(|t| *t <= now))
        .filter_map(|a| {
            let req = a.request.as_ref()?;
            if req.external && a.attempts == 0 {
                return None; // waiting for the other system's report
            }
            Some(Job {
                action_id: a.action_id.clone(),
                steps: steps_of(req),
                verify_only: a.attempts > 0 || req.external,
            })
        })
        .collect()
}

/// The cluster executor of one source: work from the projection, run under
/// the source's lease.
async fn leased(target: Target, deps: WorkerDeps, mut rx: mpsc::Receiver<Job>) {
    if !deps.caught_up().await {
        return;
    }
    let mut applied = deps.applied.clone();
    let mut concluded: HashSet<String> = HashSet::new();
    let mut retry_at: HashMap<String, Instant> = HashMap::new();
    loop {
        tokio::select! {
            _ = deps.cancel.cancelled() => return,
            r = applied.changed() => if r.is_err() { return },
            j = rx.recv() => if j.is_none() { return },
            _ = tokio::time::sleep(Duration::from_millis(SCAN_IDLE_MS)) => {}
        }
        tokio::time::sleep(Duration::from_millis(SCAN_SPACING_MS)).await;
        if pending(&target, &deps, &concluded, &retry_at).is_empty() {
            continue;
        }
        let lost = deps.cancel.child_token();
        let Ok(holding) = deps.lease(&lease_key(&target.source_id), &lost).await else {
            continue; // another process runs them
        };
        if deps.caught_up_now().await {
            for job in pending(&target, &deps, &concluded, &retry_at) {
                if lost.is_cancelled() {
                    break;
                }
                if job.verify_only {
                    tracing::warn!(action = %job.action_id,
                        "reading back an action another worker attempted before any new write");
                }
                let id = job.action_id.clone();
                if run_job(&target, &deps, job, &lost).await {
                    if concluded.len() >= CONCLUDED_REMEMBERED_MAX {
                        concluded.clear();
                    }
                    concluded.insert(id);
                } else {
                    if retry_at.len() >= CONCLUDED_REMEMBERED_MAX {
                        retry_at.clear();
                    }
                    retry_at.insert(id, Instant::now() + Duration::from_millis(RETRY_AFTER_MS));
                }
            }
        }
        if let Some(h) = holding {
            h.release().await;
        }
    }
}

async fn worker(target: Target, deps: WorkerDeps, mut rx: mpsc::Receiver<Job>) {
    // Recovery first, once the projection holds what the stream held at start.
    if !deps.caught_up().await {
        return;
    }
    let open = deps
        .store
        .open_actions(&target.source_id, RECOVERY_MAX)
        .unwrap_or_default();
    for a in open {
        let Some(req) = &a.request else { continue };
        if a.concluded_seq != 0 {
            continue; // concluded UNVERIFIED: open only for its deadline
        }
        if req.external && a.attempts == 0 {
            continue; // waiting for the other system's report
        }
        let verify_only = a.attempts > 0 || req.external;
        tracing::warn!(action = %a.action_id, attempts = a.attempts, verify_only,
            "resuming an action a previous worker left open");
        run_job(
            &target,
            &deps,
            Job {
                action_id: a.action_id.clone(),
                steps: steps_of(req),
                verify_only,
            },
            &deps.cancel,
        )
        .await;
    }
    // Actions this worker concluded: a job queued for one of them before its
    // conclusion was folded (two external reports in a row) is not run again,
    // so an action is concluded once.
    let mut concluded: HashSet<String> = HashSet::new();
    loop {
        let job = tokio::select! {
            j = rx.recv() => match j { Some(j) => j, None => return },
            _ = deps.cancel.cancelled() => return,
        };
        let folded = deps
            .store
            .action(&job.action_id)
            .ok()
            .flatten()
            .is_some_and(|a| a.concluded_seq != 0);
        if folded || concluded.contains(&job.action_id) {
            tracing::info!(action = %job.action_id,
                "action already concluded; a second conclusion is refused (submit a new action for a new write)");
            continue;
        }
        let id = job.action_id.clone();
        if run_job(&target, &deps, job, &deps.cancel).await {
            if concluded.len() >= CONCLUDED_REMEMBERED_MAX {
                // The projection holds older conclusions by now.
                concluded.clear();
            }
            concluded.insert(id);
        }
    }
}

/// Conclusions a worker remembers itself (beyond them the projection answers).
const CONCLUDED_REMEMBERED_MAX: usize = 10_000;

/// Runs one job until `cancel`; whether it concluded the action.
async fn run_job(target: &Target, deps: &WorkerDeps, job: Job, cancel: &CancellationToken) -> bool {
    let mut ex = Executor::new(target, &deps.publisher, &deps.producer, &job.action_id);
    let r = tokio::select! {
        r = ex.run(&job.steps, job.verify_only) => r,
        _ = cancel.cancelled() => return false,
    };
    match r {
        Ok(outcome) => {
            tracing::info!(action = %job.action_id, ?outcome, "action concluded");
            true
        }
        Err(e) => {
            tracing::warn!(action = %job.action_id, error = %e,
                "action not concluded; the next start verifies it");
            false
        }
    }
}
