//! Lifecycle actions, the executor side: one worker per writable source runs
//! the jobs [`super::action_intake`] queues, one at a time, and recovers after a
//! crash.
//!
//! Recovery: at start, once the projection holds everything the stream held, a
//! worker re-examines its source's open actions: one with attempts recorded is
//! read back first (never re-executed blindly); one without attempts is executed.

use std::collections::HashSet;

use govledger_ingest::actions::{Executor, Step, Target};
use tokio::{sync::mpsc, task::JoinHandle};

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
    (tx, tokio::spawn(worker(target, deps, rx)))
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
        if run_job(&target, &deps, job).await {
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

/// Runs one job; whether it concluded the action.
async fn run_job(target: &Target, deps: &WorkerDeps, job: Job) -> bool {
    let mut ex = Executor::new(target, &deps.publisher, &deps.producer, &job.action_id);
    let r = tokio::select! {
        r = ex.run(&job.steps, job.verify_only) => r,
        _ = deps.cancel.cancelled() => return false,
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
