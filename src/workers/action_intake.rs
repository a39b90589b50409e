//! Lifecycle actions, the submission side: requests are validated, recorded
//! with idempotency keys and handed to the executor worker of their source
//! ([`super::action_worker`]); external writes are reported here too.
//!
//! Idempotency: the action id is a UUID v5 of (source, idempotency key) and the
//! `ActionRequested` event id a UUID v5 of the action id, so any number of
//! submissions of the same key publish the same event; JetStream stores it once
//! and only the submission whose publish was not a duplicate enqueues the work.

use std::{collections::BTreeMap, sync::Arc};

use govledger_ingest::{
    Publisher,
    actions::{Step, Target},
    event::{ProducerId, Scope, stamp},
    publisher::PublishError,
};
use govledger_projector::Store;
use govledger_proto::v1::{
    ActionAttempted, ActionKind, ActionRequested, ActionState, ErrorClass, event::Body,
};
use tokio::sync::mpsc;

use super::{
    action_worker::{self, Job},
    deps::WorkerDeps,
};
use crate::config::{ConfigError, sources::Source};

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
        absent_is_proof: r.absent_is_proof,
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
        "source {0:?} is read only (an HR file, or a REST source without [sources.rest.actions] templates): \
         lifecycle actions need a SCIM or LDAP source, or a REST source with templates"
    )]
    NotWritable(String),
    #[error(
        "source {source_id:?} has no [sources.rest.actions.{kind}] template; it accepts: {accepts}"
    )]
    NoTemplate {
        source_id: String,
        kind: &'static str,
        accepts: String,
    },
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

/// An action kind as `[sources.rest.actions]` names it.
fn template_name(k: ActionKind) -> &'static str {
    match k {
        ActionKind::Deactivate => "deactivate",
        ActionKind::Delete => "delete",
        ActionKind::RemoveMembership => "remove_member",
        ActionKind::AddMembership => "add_member",
        ActionKind::SetAttribute => "set_attribute",
        ActionKind::Unspecified => "unspecified",
    }
}

/// The submission side of the per-source action workers of one process.
#[derive(Clone)]
pub struct ActionManager {
    /// The job queue of each writable source's executor worker.
    queues: Arc<BTreeMap<String, mpsc::Sender<Job>>>,
    /// Every configured source, and whether actions can write to it:
    /// `None` = no, `Some(None)` = every kind, `Some(Some(kinds))` = those
    /// (a REST source's templates).
    writable: Arc<BTreeMap<String, Option<Option<Vec<ActionKind>>>>>,
    publisher: Publisher,
    producer: ProducerId,
    /// In a cluster the executors find their work in the projection (and a
    /// node without executors has none to queue to): a submission is
    /// recorded, never queued.
    leased: bool,
}

impl ActionManager {
    /// Spawns an executor worker per writable source. Returns the manager and
    /// the join handles (awaited at shutdown).
    /// Without `executors` (an `api` node) nothing runs here: the ingest
    /// processes take the recorded requests.
    pub fn start(
        sources: &[Source],
        deps: WorkerDeps,
        executors: bool,
    ) -> Result<(Self, Vec<tokio::task::JoinHandle<()>>), ConfigError> {
        let mut queues = BTreeMap::new();
        let mut writable = BTreeMap::new();
        let mut joins = Vec::new();
        for source in sources {
            let spec = &source.spec;
            writable.insert(
                spec.source_id.clone(),
                source.writable().then(|| source.action_kinds()),
            );
            if !source.writable() || !executors {
                continue;
            }
            let target = Target {
                source_id: spec.source_id.clone(),
                base_url: spec.base_url.clone(),
                http: source.http()?,
                retry: spec.retry,
                member_removal: source.member_removal,
                rate_per_s: spec.rate_per_s,
                burst: spec.burst,
                verify_window_ms: source.verify_window_ms,
                member_list_cap: spec.member_list_cap,
                ldap: spec.ldap.clone(),
                rest_actions: source.rest_actions.clone(),
            };
            let (tx, join) = action_worker::spawn(target, deps.clone());
            joins.push(join);
            queues.insert(spec.source_id.clone(), tx);
        }
        Ok((
            Self {
                queues: Arc::new(queues),
                writable: Arc::new(writable),
                // Workers in a cluster, or none here: a submission is recorded only.
                leased: deps.cluster.is_some() || !executors,
                publisher: deps.publisher,
                producer: deps.producer,
            },
            joins,
        ))
    }

    /// Records the request and queues its execution. Returns (action id,
    /// created, the stream sequence of its request).
    pub async fn submit(
        &self,
        store: &Store,
        source_id: &str,
        mut req: ActionRequested,
    ) -> Result<(String, bool, u64), SubmitError> {
        let only = match self.writable.get(source_id) {
            None => return Err(SubmitError::NotConfigured(source_id.to_owned())),
            Some(None) => return Err(SubmitError::NotWritable(source_id.to_owned())),
            Some(Some(only)) => only.clone(),
        };
        validate(&req)?;
        if let Some(kinds) = &only
            && let Some(s) = steps_of(&req).iter().find(|s| !kinds.contains(&s.kind))
        {
            return Err(SubmitError::NoTemplate {
                source_id: source_id.to_owned(),
                kind: template_name(s.kind),
                accepts: kinds
                    .iter()
                    .map(|k| template_name(*k))
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        let id = action_id(source_id, &req.idempotency_key);
        if let Some(a) = store
            .action(&id)
            .map_err(|e| SubmitError::Invalid(e.to_string()))?
        {
            return Ok((id, false, a.first_seq));
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
                "source {source_id:?} never reported user {}; sync it first (govledger sync {source_id})",
                crate::api::validate::excerpt(&req.identity_external_id)
            )));
        }
        // A REST source reads one collection (users): the groups its
        // membership templates name need not be in the ledger.
        for s in steps.iter().filter(|_| only.is_none()) {
            if matches!(
                s.kind,
                ActionKind::AddMembership | ActionKind::RemoveMembership
            ) && !known(govledger_proto::v1::EntityType::Group as i32, &s.group_id)
            {
                return Err(SubmitError::NotFound(format!(
                    "source {source_id:?} never reported group {}; sync its Groups first",
                    crate::api::validate::excerpt(&s.group_id)
                )));
            }
        }
        req.steps = steps.len() as u32;
        let mut ev = stamp(
            &self.producer,
            &Scope::action(source_id, &id),
            1,
            Body::ActionRequested(req.clone()),
        );
        ev.event_id = requested_event_id(&id);
        let receipt = self.publisher.publish_wait(&ev).await?;
        // A duplicate on the first try is another submission's copy (it
        // queued the job). After a resend the first copy may be this call's
        // own, its ack lost: queue the job, or nothing runs the action until
        // the next start. The worker concludes an action once, so a second
        // job for one a racing submission queued too is skipped.
        if receipt.duplicate && receipt.attempts <= 1 {
            return Ok((id, false, receipt.seq));
        }
        if !req.external && !self.leased {
            self.enqueue(
                source_id,
                Job {
                    action_id: id.clone(),
                    steps,
                    verify_only: false,
                },
            )?;
        }
        Ok((id, true, receipt.seq))
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
        let ev = stamp(
            &self.producer,
            &Scope::action(&action.source_id, &action.action_id),
            action.attempts + 1,
            Body::ActionAttempted(ActionAttempted {
                external: true,
                ..attempt
            }),
        );
        self.publisher.publish_wait(&ev).await?;
        let _ = store;
        if self.leased {
            return Ok(()); // the source's lease holder reads it back
        }
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
        let tx = self
            .queues
            .get(source_id)
            .ok_or_else(|| SubmitError::NotConfigured(source_id.to_owned()))?;
        tx.try_send(job)
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

/// Error class of an external report, validated.
pub fn error_class(v: i32) -> Result<i32, SubmitError> {
    ErrorClass::try_from(v)
        .map(|c| c as i32)
        .map_err(|_| SubmitError::Invalid(format!("error_class {v} is not an ErrorClass")))
}
