//! The action executor: performs lifecycle writes on a SCIM target through the
//! shared engine (auth, rate limit, retries, timeouts) and proves each one by
//! reading the target back.
//!
//! **Architecture Invariant:** a write is never retried blindly. After an
//! ambiguous failure (5xx, timeout, connection lost) the target is read back
//! first; if the intent is already in effect the step is CONFIRMED and no second
//! write is sent (W2). Every attempt and every read-back is an event.
//!
//! Outcomes per step, each saying only what the evidence shows:
//! - CONFIRMED: a read-back shows the intent (a 404 on a deactivate/delete
//!   means "already absent" only when a filtered list of the target agrees,
//!   or the action accepts a 404 as proof: `readback::absence`);
//! - UNCONFIRMED (W1): the write answered 2xx but the read-backs within the
//!   source's `verify_window_ms` show no change;
//! - FAILED: attempts exhausted and the last answered read-back shows it not
//!   in effect;
//! - UNVERIFIABLE: the target answered, but no query it supports can show
//!   whether the intent is in effect (memberships shown by no means, see
//!   `membership`); the detail names what was tried;
//! - UNVERIFIED: the target could not be read back at all within the window
//!   (down, timeouts), or answered a 404 no listing agrees with, whether the
//!   write was accepted or failed ambiguously.
//!
//! The action concludes with the worst step outcome, in the order an auditor
//! must look at them: FAILED (refused, and shown not in effect) > UNCONFIRMED
//! (accepted, and shown not in effect: the target's word is false) >
//! UNVERIFIED (nothing known; OVERDUE at its deadline) > UNVERIFIABLE (the
//! target cannot show it; someone must check by other means) > CONFIRMED,
//! with every step's outcome (W6). A CONFIRMED action carries its watches for
//! drift; an UNCONFIRMED, UNVERIFIED or UNVERIFIABLE one carries them too, so
//! the ledger confirms it late when a sync shows the intent.
//!
//! Layout:
//! - `readback`: what a read-back shows (in effect, not, unknown), pure;
//! - `membership`: the queries that can prove a membership, in order;
//! - `outcome`: a step's outcome from its write and read-backs, and the
//!   severity order, pure;
//! - `verify`: the GETs, one published read-back, the verification window;
//! - `ldap`: the same writes and read-backs on a directory (a target with
//!   [`Target::ldap`]);
//! - `rest`: the same on a REST source, by its configured templates
//!   ([`Target::rest_actions`]);
//! - here: [`Target`], [`Step`], the [`Executor`] (steps, writes, the run).

use std::sync::Arc;

use govledger_proto::v1::{
    ActionAttempted, ActionConcluded, ActionKind, ActionOutcome, EntityType, ErrorClass,
    StepOutcome, WatchIntent, event::Body,
};
use reqwest::Method;
use serde_json::{Value, json};

mod ldap;
mod membership;
mod outcome;
mod readback;
mod rest;
mod verify;

pub use self::{
    outcome::{after_failure, after_success, severity},
    readback::{Shown, filter_shows, in_effect, member_filter, members_show, user_groups_show},
    rest::{RestAction, RestActions, RestCheck},
    verify::{VERIFY_BACKOFF_MAX_MS, VERIFY_BACKOFF_MIN_MS, Window},
};
use tokio::time::Instant;

use crate::{
    Publisher,
    event::{ProducerId, Scope, stamp},
    http::{HttpSource, percent_encode},
    publisher::PublishError,
    ratelimit::RateLimiter,
    retry::{self, Decision, Failure, RetryPolicy},
};

const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// How a SCIM target wants a member removed from a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberRemoval {
    /// `{"op":"remove","path":"members[value eq \"ID\"]"}` (RFC 7644 §3.5.2.2).
    FilterPath,
    /// `{"op":"remove","path":"members","value":[{"value":"ID"}]}` (some servers require it).
    ValueList,
}

/// Where and how to write.
pub struct Target {
    pub source_id: String,
    pub base_url: String,
    pub http: Arc<HttpSource>,
    pub retry: RetryPolicy,
    pub member_removal: MemberRemoval,
    pub rate_per_s: f64,
    pub burst: u32,
    /// How long read-backs may wait for a write to show before the step is
    /// UNCONFIRMED, or UNVERIFIED when none was answered (backoff between
    /// them).
    pub verify_window_ms: u64,
    /// The source's `member_list_cap`: a group member list this long may be
    /// capped, so a user it does not show is not proved a non-member.
    pub member_list_cap: Option<u32>,
    /// A directory target: writes and read-backs go over LDAP, not HTTP.
    pub ldap: Option<Arc<crate::ldap::LdapSpec>>,
    /// A REST target: writes and read-backs by these templates.
    pub rest_actions: Option<Arc<RestActions>>,
}

/// The default verification window.
pub const DEFAULT_VERIFY_WINDOW_MS: u64 = 5_000;

/// One step of an action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub kind: ActionKind,
    pub user_id: String,
    pub group_id: String,
    pub attribute: String,
    pub value: String,
    /// The action accepts a 404 of the single GET as proof of absence
    /// (`ActionRequested.absent_is_proof`); otherwise a filtered list must agree.
    pub absent_is_proof: bool,
}

impl Step {
    /// The resource a step reads back and writes: (SCIM collection, what
    /// it holds, id) — the group for a membership step, else the user.
    pub fn resource(&self) -> (&'static str, &'static str, &str) {
        match self.kind {
            ActionKind::RemoveMembership | ActionKind::AddMembership => {
                ("Groups", "group", &self.group_id)
            }
            _ => ("Users", "user", &self.user_id),
        }
    }

    pub fn label(&self) -> String {
        match self.kind {
            ActionKind::Deactivate => format!("deactivate {}", self.user_id),
            ActionKind::Delete => format!("delete {}", self.user_id),
            ActionKind::RemoveMembership => {
                format!("remove {} from group {}", self.user_id, self.group_id)
            }
            ActionKind::AddMembership => format!("add {} to group {}", self.user_id, self.group_id),
            ActionKind::SetAttribute => format!("set {} of {}", self.attribute, self.user_id),
            ActionKind::Unspecified => "unspecified".into(),
        }
    }

    /// The identity later observations must keep showing this step on.
    pub fn watch(&self) -> Option<WatchIntent> {
        let (entity_type, external_id, member) = match self.kind {
            ActionKind::Deactivate | ActionKind::Delete => {
                (EntityType::User, self.user_id.clone(), String::new())
            }
            ActionKind::RemoveMembership | ActionKind::AddMembership => (
                EntityType::Group,
                self.group_id.clone(),
                self.user_id.clone(),
            ),
            _ => return None,
        };
        Some(WatchIntent {
            entity_type: entity_type as i32,
            external_id,
            kind: self.kind as i32,
            member_external_id: member,
        })
    }
}

/// What a read-back showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadBack {
    pub shown: Shown,
    pub absent: bool,
    pub http_status: u16,
    pub observed: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("events of action {action_id} could not be stored: {source}")]
    Publish {
        action_id: String,
        #[source]
        source: PublishError,
    },
}

pub struct Executor<'a> {
    pub target: &'a Target,
    pub publisher: &'a Publisher,
    pub producer: &'a ProducerId,
    pub action_id: &'a str,
    limiter: RateLimiter,
    jitter: rand::rngs::StdRng,
}

impl<'a> Executor<'a> {
    pub fn new(
        target: &'a Target,
        publisher: &'a Publisher,
        producer: &'a ProducerId,
        action_id: &'a str,
    ) -> Self {
        use rand::SeedableRng as _;
        Self {
            target,
            publisher,
            producer,
            action_id,
            limiter: RateLimiter::new(target.rate_per_s, target.burst),
            jitter: rand::rngs::StdRng::from_os_rng(),
        }
    }

    async fn emit(&self, attempt: u32, body: Body) -> Result<(), ExecError> {
        let ev = stamp(
            self.producer,
            &Scope::action(&self.target.source_id, self.action_id),
            attempt,
            body,
        );
        self.publisher
            .publish_wait(&ev)
            .await
            .map(|_| ())
            .map_err(|source| ExecError::Publish {
                action_id: self.action_id.to_owned(),
                source,
            })
    }

    fn url(&self, step: &Step) -> String {
        let base = self.target.base_url.trim_end_matches('/');
        let (collection, _, id) = step.resource();
        format!("{base}/{collection}/{}", percent_encode(id))
    }

    /// Performs one step: read, write (unless already in effect), read back.
    pub async fn run_step(&mut self, step_no: u32, step: &Step) -> Result<StepOutcome, ExecError> {
        let out = |outcome: ActionOutcome, detail: String| StepOutcome {
            step: step_no,
            kind: step.kind as i32,
            outcome: outcome as i32,
            detail,
        };
        // Current state first: nothing to write if the intent already holds.
        // Only a read that shows it counts; "unknown" is written.
        let mut etag = match self.read(step).await {
            Ok((first, etag)) => {
                if first.shown == Shown::InEffect
                    && let Some(rb) = self.verify(step_no, step).await?
                    && rb.shown == Shown::InEffect
                {
                    return Ok(out(
                        ActionOutcome::Confirmed,
                        format!(
                            "{}: already in effect ({}); nothing written",
                            step.label(),
                            rb.observed
                        ),
                    ));
                }
                etag
            }
            Err(_) => None,
        };
        let began = Instant::now();
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let f = match self
                .attempt_write(step_no, step, attempt, etag.as_deref())
                .await?
            {
                Ok(status) => {
                    // 2xx: the target says done. Believe the read-back only,
                    // within the source's verification window.
                    let w = self.verify_window(step_no, step).await?;
                    let (o, d) = after_success(step, status, &w);
                    return Ok(out(o, d));
                }
                Err(f) => f,
            };
            // Any failure: read back before deciding anything (the write may have landed).
            let rb = self.verify(step_no, step).await?;
            if let Some(rb) = &rb
                && rb.shown == Shown::InEffect
            {
                return Ok(out(
                    ActionOutcome::Confirmed,
                    format!(
                        "{}: confirmed by read-back after {} ({})",
                        step.label(),
                        f.message,
                        rb.observed
                    ),
                ));
            }
            if f.http_status == 412 {
                // Stale ETag: take the current one and try again (counts as an attempt).
                etag = self.read(step).await.ok().and_then(|(_, e)| e);
            }
            let retriable = retry::retriable(f.class) || f.http_status == 412;
            let decision = if retriable {
                let f2 = Failure {
                    class: if f.http_status == 412 {
                        ErrorClass::ServerError
                    } else {
                        f.class
                    },
                    ..f.clone()
                };
                retry::decide(
                    &self.target.retry,
                    attempt,
                    began.elapsed(),
                    &f2,
                    &mut self.jitter,
                )
            } else {
                Decision::GiveUp
            };
            match decision {
                Decision::Retry(d) => tokio::time::sleep(d).await,
                Decision::GiveUp => {
                    // An ambiguous failure may still land: the window decides.
                    let w = if retriable {
                        self.verify_window(step_no, step).await?
                    } else {
                        Window {
                            unanswered: u32::from(rb.is_none()),
                            last: rb,
                            reads: 1,
                            elapsed_ms: 0,
                        }
                    };
                    let (o, d) = after_failure(step, &f.message, attempt, &w);
                    return Ok(out(o, d));
                }
            }
        }
    }

    /// One write attempt: sends the step's request and publishes its
    /// `ActionAttempted` (then the `executor-after-write` failpoint).
    /// `Ok(Ok(status))` on 2xx, `Ok(Err(failure))` when the write failed.
    async fn attempt_write(
        &mut self,
        step_no: u32,
        step: &Step,
        attempt: u32,
        etag: Option<&str>,
    ) -> Result<Result<u16, Failure>, ExecError> {
        let started = Instant::now();
        let (summary, r) = match self.target.ldap.clone() {
            Some(spec) => self.ldap_write(&spec, step).await,
            None if self.target.rest_actions.is_some() => self.rest_write(step).await,
            None => {
                let (method, body) = self.request(step);
                let summary = format!("{method} {} ({})", self.url(step), step.label());
                self.limiter.acquire().await;
                let r = self
                    .target
                    .http
                    .send(method, &self.url(step), body, etag)
                    .await
                    .map(|f| f.status);
                (summary, r)
            }
        };
        let latency_ms = started.elapsed().as_millis().min(u128::from(u32::MAX)) as u32;
        let (status, class, failure) = match &r {
            Ok(status) => (*status, ErrorClass::Unspecified, None),
            Err(f) => (f.http_status, f.class, Some(f.clone())),
        };
        self.emit(
            attempt,
            Body::ActionAttempted(ActionAttempted {
                step: step_no,
                request_summary: summary,
                http_status: u32::from(status),
                error_class: class as i32,
                latency_ms,
                external: false,
                reported_by: String::new(),
            }),
        )
        .await?;
        govledger_stream::failpoint::hit("executor-after-write");
        Ok(match failure {
            None => Ok(status),
            Some(f) => Err(f),
        })
    }

    fn request(&self, step: &Step) -> (Method, Option<Vec<u8>>) {
        let patch = |ops: Value| {
            Some(
                serde_json::to_vec(&json!({"schemas": [PATCH_OP], "Operations": ops}))
                    .unwrap_or_default(),
            )
        };
        match step.kind {
            ActionKind::Deactivate => (
                Method::PATCH,
                patch(json!([{"op": "replace", "path": "active", "value": false}])),
            ),
            ActionKind::Delete => (Method::DELETE, None),
            ActionKind::RemoveMembership => (
                Method::PATCH,
                match self.target.member_removal {
                    MemberRemoval::FilterPath => patch(json!([{
                        "op": "remove",
                        "path": format!("members[value eq \"{}\"]", step.user_id.replace('"', "\\\""))
                    }])),
                    MemberRemoval::ValueList => patch(json!([{
                        "op": "remove", "path": "members", "value": [{"value": step.user_id}]
                    }])),
                },
            ),
            ActionKind::AddMembership => (
                Method::PATCH,
                patch(
                    json!([{"op": "add", "path": "members", "value": [{"value": step.user_id}]}]),
                ),
            ),
            ActionKind::SetAttribute => {
                let value = match step.value.as_str() {
                    "true" => Value::Bool(true),
                    "false" => Value::Bool(false),
                    v => Value::String(v.to_owned()),
                };
                (
                    Method::PATCH,
                    patch(json!([{"op": "replace", "path": step.attribute, "value": value}])),
                )
            }
            ActionKind::Unspecified => (Method::GET, None),
        }
    }

    /// Runs every step (or, with `verify_only`, only reads each back: used for
    /// external writes and after a crash between write and read-back), then
    /// publishes `ActionConcluded` with the worst step outcome.
    pub async fn run(
        &mut self,
        steps: &[Step],
        verify_only: bool,
    ) -> Result<ActionOutcome, ExecError> {
        let mut outcomes = Vec::with_capacity(steps.len());
        for (i, step) in steps.iter().enumerate() {
            let n = i as u32 + 1;
            let o = if verify_only {
                let w = self.verify_window(n, step).await?;
                let (outcome, detail) = after_success(step, 0, &w);
                StepOutcome {
                    step: n,
                    kind: step.kind as i32,
                    outcome: outcome as i32,
                    detail,
                }
            } else {
                self.run_step(n, step).await?
            };
            outcomes.push(o);
        }
        let worst = outcomes
            .iter()
            .map(|o| ActionOutcome::try_from(o.outcome).unwrap_or_default())
            .max_by_key(|o| severity(*o))
            .unwrap_or(ActionOutcome::Unverified);
        let detail = outcomes
            .iter()
            .map(|o| format!("step {} {}", o.step, o.detail))
            .collect::<Vec<_>>()
            .join("; ");
        // An action not shown in effect (and not shown failed) is watched
        // too: a later observation showing the intent confirms it late (the
        // ledger's fold decides).
        let watch = if matches!(
            worst,
            ActionOutcome::Confirmed
                | ActionOutcome::Unconfirmed
                | ActionOutcome::Unverified
                | ActionOutcome::Unverifiable
        ) {
            steps.iter().filter_map(Step::watch).collect()
        } else {
            Vec::new()
        };
        self.emit(
            1,
            Body::ActionConcluded(ActionConcluded {
                outcome: worst as i32,
                detail,
                steps: outcomes,
                watch,
            }),
        )
        .await?;
        Ok(worst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::readback::tests::step;

    #[test]
    fn watches_follow_the_intent() {
        let w = step(ActionKind::RemoveMembership).watch().unwrap();
        assert_eq!(
            (
                w.entity_type,
                w.external_id.as_str(),
                w.member_external_id.as_str()
            ),
            (EntityType::Group as i32, "g1", "u1")
        );
        let w = step(ActionKind::Deactivate).watch().unwrap();
        assert_eq!(
            (w.entity_type, w.external_id.as_str()),
            (EntityType::User as i32, "u1")
        );
        assert!(step(ActionKind::SetAttribute).watch().is_none());
    }
}
