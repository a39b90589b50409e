//! Lifecycle actions in one process: submission with idempotency keys, one
//! executor worker per writable source, and recovery after a crash.
//!
//! Idempotency: the action id is a UUID v5 of (source, idempotency key) and the
//! `ActionRequested` event id a UUID v5 of the action id, so any number of
//! submissions of the same key publish the same event; JetStream stores it once
//! and only the submission whose publish was not a duplicate enqueues the work.
//!
//! Recovery: at start, once the projection holds everything the stream held, a
//! worker re-examines its source's open actions: one with attempts recorded is
//! read back first (never re-executed blindly); one without attempts is executed.

use std::{collections::BTreeMap, sync::Arc};

use govledger_ingest::{
    Publisher,
    actions::{Executor, MemberRemoval, Step, Target},
    event::{ProducerId, Scope, stamp},
    publisher::PublishError,
};
use govledger_projector::Store;
use govledger_proto::v1::{
    ActionAttempted, ActionKind, ActionRequested, ActionState, ErrorClass, event::Body,
};
use tokio::sync::mpsc;

use crate::config::{ConfigError, sources::SecretSource};

/// Jobs queued per source at most; a full queue answers `Unavailable`.
pub const ACTION_QUEUE_MAX: usize = 1_024;
/// Open actions examined per source at start.
pub const RECOVERY_MAX: usize = 10_000;

/// Namespace of action ids (UUID v5 over "source\0idempotency key").
const ACTION_NS: uuid::Uuid = uuid::Uuid::from_u128(0x6f1d_5e0c_9a3b_4c2d_8e7f_1a2b_3c4d_5e6f);

pub fn action_id(source_id: &str, idempotency_key: &str) -> String {
    uuid::Uuid::new_v5(
        &ACTION_NS,
        format!("{source_id}\0{idempotency_key}").as_bytes(),
    )
    .to_string()
}

fn requested_event_id(action_id: &str) -> String {
    uuid::Uuid::new_v5(&ACTION_NS, format!("{action_id}\0requested").as_bytes()).to_string()
}

/// The steps of a request (its plan, or the single step its fields describe).
pub fn steps_of(r: &ActionRequested) -> Vec<Step> {
    let one = |kind: i32, group: &str, attribute: &str, value: &str| Step {
        kind: ActionKind::try_from(kind).unwrap_or_default(),
        user_id: r.identity_external_id.clone(),
        group_id: group.to_owned(),
        attribute: attribute.to_owned(),
        value: value.to_owned(),
    };
    if r.plan.is_empty() {
        vec![one(r.kind, &r.group_external_id, &r.attribute, &r.value)]
    } else {
        r.plan
            .iter()
            .map(|s| one(s.kind, &s.group_external_id, &s.attribute, &s.value))
            .collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("source {0:?} is not configured here; add it under [[sources]]")]
    NotConfigured(String),
    #[error(
        "source {0:?} is a REST source: its connector cannot write; lifecycle actions need a SCIM source"
    )]
    NotWritable(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("action {0} is not an external action: govledger performs its writes itself")]
    NotExternal(String),
    #[error("the action queue of {0} is full; retry shortly")]
    Busy(String),
    #[error("could not record the action: {0}")]
    Publish(#[from] PublishError),
}

struct Job {
    action_id: String,
    steps: Vec<Step>,
    verify_only: bool,
}

struct Handle {
    tx: mpsc::Sender<Job>,
}

/// The per-source action workers of one process.
#[derive(Clone, Default)]
pub struct ActionManager {
    sources: Arc<BTreeMap<String, Handle>>,
    writable: Arc<BTreeMap<String, bool>>,
    publisher: Option<Publisher>,
    producer: Option<ProducerId>,
}

/// What the workers need from the process: the same as the sync workers'.
pub type ActionDeps = crate::workers::scheduler::WorkerDeps;

impl ActionManager {
    pub fn start(
        cfg: &crate::config::Config,
        env: &dyn SecretSource,
        deps: ActionDeps,
    ) -> Result<(Self, Vec<tokio::task::JoinHandle<()>>), ConfigError> {
        let mut map = BTreeMap::new();
        let mut writable = BTreeMap::new();
        let mut joins = Vec::new();
        for (i, sc) in cfg.sources.iter().enumerate() {
            let (spec, auth) = sc.build(i, env)?;
            writable.insert(spec.source_id.clone(), spec.rest.is_none());
            if spec.rest.is_some() {
                continue;
            }
            let http = sc.http(i, auth)?;
            let target = Target {
                source_id: spec.source_id.clone(),
                base_url: spec.base_url.clone(),
                http,
                retry: spec.retry,
                member_removal: if sc.member_removal == "value-list" {
                    MemberRemoval::ValueList
                } else {
                    MemberRemoval::FilterPath
                },
                rate_per_s: spec.rate_per_s,
                burst: spec.burst,
            };
            let (tx, rx) = mpsc::channel(ACTION_QUEUE_MAX);
            joins.push(tokio::spawn(worker(target, deps.clone(), rx)));
            map.insert(spec.source_id.clone(), Handle { tx });
        }
        Ok((
            Self {
                sources: Arc::new(map),
                writable: Arc::new(writable),
                publisher: Some(deps.publisher.clone()),
                producer: Some(deps.producer.clone()),
            },
            joins,
        ))
    }

    fn publisher(&self) -> Result<(&Publisher, &ProducerId), SubmitError> {
        match (&self.publisher, &self.producer) {
            (Some(p), Some(q)) => Ok((p, q)),
            _ => Err(SubmitError::Invalid(
                "no action workers in this process".into(),
            )),
        }
    }

    /// Records the request and queues its execution. Returns (action id, created).
    pub async fn submit(
        &self,
        store: &Store,
        source_id: &str,
        mut req: ActionRequested,
    ) -> Result<(String, bool), SubmitError> {
        match self.writable.get(source_id) {
            None => return Err(SubmitError::NotConfigured(source_id.to_owned())),
            Some(false) => return Err(SubmitError::NotWritable(source_id.to_owned())),
            Some(true) => {}
        }
        validate(&req)?;
        let id = action_id(source_id, &req.idempotency_key);
        if store
            .action(&id)
            .map_err(|e| SubmitError::Invalid(e.to_string()))?
            .is_some()
        {
            return Ok((id, false));
        }
        // The identities the action names must be known to the ledger.
        let known =
            |et: i32, ext: &str| store.identity(source_id, et, ext).ok().flatten().is_some();
        let steps = steps_of(&req);
        if !known(
            govledger_proto::v1::EntityType::User as i32,
            &req.identity_external_id,
        ) {
            return Err(SubmitError::NotFound(format!(
                "source {source_id:?} never reported user {:?}; sync it first (govledger sync {source_id})",
                req.identity_external_id
            )));
        }
        for s in &steps {
            if matches!(
                s.kind,
                ActionKind::AddMembership | ActionKind::RemoveMembership
            ) && !known(govledger_proto::v1::EntityType::Group as i32, &s.group_id)
            {
                return Err(SubmitError::NotFound(format!(
                    "source {source_id:?} never reported group {:?}; sync its Groups first",
                    s.group_id
                )));
            }
        }
        req.steps = steps.len() as u32;
        let (publisher, producer) = self.publisher()?;
        let mut ev = stamp(
            producer,
            &Scope::action(source_id, &id),
            1,
            Body::ActionRequested(req.clone()),
        );
        ev.event_id = requested_event_id(&id);
        let receipt = publisher.publish_wait(&ev).await?;
        if receipt.duplicate {
            return Ok((id, false));
        }
        if !req.external {
            self.enqueue(
                source_id,
                Job {
                    action_id: id.clone(),
                    steps,
                    verify_only: false,
                },
            )?;
        }
        Ok((id, true))
    }

    /// Another system wrote; record its attempt and verify by reading back.
    pub async fn report_external(
        &self,
        store: &Store,
        action: &ActionState,
        attempt: ActionAttempted,
    ) -> Result<(), SubmitError> {
        if !action.external {
            return Err(SubmitError::NotExternal(action.action_id.clone()));
        }
        let (publisher, producer) = self.publisher()?;
        let ev = stamp(
            producer,
            &Scope::action(&action.source_id, &action.action_id),
            action.attempts + 1,
            Body::ActionAttempted(ActionAttempted {
                external: true,
                ..attempt
            }),
        );
        publisher.publish_wait(&ev).await?;
        let _ = store;
        let steps = action.request.as_ref().map(steps_of).unwrap_or_default();
        self.enqueue(
            &action.source_id,
            Job {
                action_id: action.action_id.clone(),
                steps,
                verify_only: true,
            },
        )
    }

    fn enqueue(&self, source_id: &str, job: Job) -> Result<(), SubmitError> {
        let h = self
            .sources
            .get(source_id)
            .ok_or_else(|| SubmitError::NotConfigured(source_id.to_owned()))?;
        h.tx.try_send(job)
            .map_err(|_| SubmitError::Busy(source_id.to_owned()))
    }
}

fn validate(r: &ActionRequested) -> Result<(), SubmitError> {
    let bad = |m: &str| Err(SubmitError::Invalid(m.to_owned()));
    if r.idempotency_key.trim().is_empty() {
        return bad("idempotency_key is required: the same key always means the same action");
    }
    if r.identity_external_id.trim().is_empty() {
        return bad("identity_external_id is required");
    }
    if r.plan.len() > 16 {
        return bad("a plan has at most 16 steps");
    }
    for s in steps_of(r) {
        match s.kind {
            ActionKind::Unspecified => {
                return bad(
                    "kind is required: DEACTIVATE, DELETE, REMOVE_MEMBERSHIP, ADD_MEMBERSHIP or SET_ATTRIBUTE",
                );
            }
            ActionKind::AddMembership | ActionKind::RemoveMembership
                if s.group_id.trim().is_empty() =>
            {
                return bad("group_external_id is required for membership actions");
            }
            ActionKind::SetAttribute if s.attribute.trim().is_empty() => {
                return bad("attribute is required for SET_ATTRIBUTE");
            }
            _ => {}
        }
    }
    Ok(())
}

async fn worker(target: Target, deps: ActionDeps, mut rx: mpsc::Receiver<Job>) {
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
    loop {
        let job = tokio::select! {
            j = rx.recv() => match j { Some(j) => j, None => return },
            _ = deps.cancel.cancelled() => return,
        };
        run_job(&target, &deps, job).await;
    }
}

async fn run_job(target: &Target, deps: &ActionDeps, job: Job) {
    let mut ex = Executor::new(target, &deps.publisher, &deps.producer, &job.action_id);
    let r = tokio::select! {
        r = ex.run(&job.steps, job.verify_only) => r,
        _ = deps.cancel.cancelled() => return,
    };
    match r {
        Ok(outcome) => tracing::info!(action = %job.action_id, ?outcome, "action concluded"),
        Err(e) => tracing::warn!(action = %job.action_id, error = %e,
            "action not concluded; the next start verifies it"),
    }
}

/// Error class of an external report, validated.
pub fn error_class(v: i32) -> Result<i32, SubmitError> {
    ErrorClass::try_from(v)
        .map(|c| c as i32)
        .map_err(|_| SubmitError::Invalid(format!("error_class {v} is not an ErrorClass")))
}
