//! The action executor: performs lifecycle writes on a SCIM target through the
//! shared engine (auth, rate limit, retries, timeouts) and proves each one by
//! reading the target back.
//!
//! **Architecture Invariant:** a write is never retried blindly. After an
//! ambiguous failure (5xx, timeout, connection lost) the target is read back
//! first; if the intent is already in effect the step is CONFIRMED and no second
//! write is sent (W2). Every attempt and every read-back is an event.
//!
//! Outcomes per step: CONFIRMED (read-back shows the intent; a 404 on a
//! deactivate/delete means "already absent"), UNCONFIRMED (2xx but no change,
//! W1), FAILED (attempts exhausted, read-back shows it not in effect). The action
//! concludes with the worst step outcome and every step's outcome (W6).

use std::sync::Arc;

use govledger_proto::v1::{
    ActionAttempted, ActionConcluded, ActionKind, ActionOutcome, ActionVerified, EntityType,
    ErrorClass, StepOutcome, WatchIntent, event::Body,
};
use reqwest::Method;
use serde_json::{Value, json};
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
}

/// One step of an action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub kind: ActionKind,
    pub user_id: String,
    pub group_id: String,
    pub attribute: String,
    pub value: String,
}

impl Step {
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
    pub in_effect: bool,
    pub absent: bool,
    pub http_status: u16,
    pub observed: String,
}

/// Decides from a read-back body (`None` = 404) whether `step` is in effect. Pure.
pub fn in_effect(step: &Step, body: Option<&Value>) -> (bool, String) {
    let Some(b) = body else {
        return match step.kind {
            ActionKind::Deactivate | ActionKind::Delete => (true, "already absent (404)".into()),
            ActionKind::RemoveMembership => (true, "group absent (404): no membership".into()),
            _ => (false, "target absent (404)".into()),
        };
    };
    let members = || -> Vec<String> {
        b.get("members")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|m| m.get("value").and_then(Value::as_str).map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    match step.kind {
        ActionKind::Deactivate => match b.get("active") {
            Some(Value::Bool(false)) => (true, "active=false".into()),
            Some(v) => (false, format!("active={v}")),
            None => (false, "no active attribute".into()),
        },
        ActionKind::Delete => (false, "still exists".into()),
        ActionKind::RemoveMembership => {
            let is = members().contains(&step.user_id);
            (
                !is,
                if is { "still a member" } else { "not a member" }.into(),
            )
        }
        ActionKind::AddMembership => {
            let is = members().contains(&step.user_id);
            (is, if is { "a member" } else { "not a member" }.into())
        }
        ActionKind::SetAttribute => {
            let got = b.get(&step.attribute);
            let ok = match got {
                Some(Value::String(s)) => *s == step.value,
                Some(Value::Bool(v)) => v.to_string() == step.value,
                Some(Value::Number(n)) => n.to_string() == step.value,
                _ => false,
            };
            (
                ok,
                format!(
                    "{}={}",
                    step.attribute,
                    got.map_or("absent".into(), |v| v.to_string())
                ),
            )
        }
        ActionKind::Unspecified => (false, "nothing to check".into()),
    }
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
        match step.kind {
            ActionKind::RemoveMembership | ActionKind::AddMembership => {
                format!("{base}/Groups/{}", percent_encode(&step.group_id))
            }
            _ => format!("{base}/Users/{}", percent_encode(&step.user_id)),
        }
    }

    /// GET the step's target: `Ok(None)` on 404.
    async fn read(&mut self, step: &Step) -> Result<(Option<Value>, Option<String>, u16), Failure> {
        self.limiter.acquire().await;
        match self.target.http.get(&self.url(step)).await {
            Ok(f) => {
                let etag = f
                    .headers
                    .get("etag")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let v: Value = serde_json::from_slice(&f.body).map_err(|e| Failure {
                    class: ErrorClass::Parse,
                    http_status: f.status,
                    retry_after: None,
                    message: format!("read-back is not JSON: {e}"),
                })?;
                let etag = etag.or_else(|| {
                    v.get("meta")
                        .and_then(|m| m.get("version"))
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                });
                Ok((Some(v), etag, f.status))
            }
            Err(f) if f.class == ErrorClass::NotFound => Ok((None, None, 404)),
            Err(f) => Err(f),
        }
    }

    /// Reads back and publishes `ActionVerified`. Retries transient read failures.
    pub async fn verify(
        &mut self,
        step_no: u32,
        step: &Step,
    ) -> Result<Option<ReadBack>, ExecError> {
        let began = Instant::now();
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.read(step).await {
                Ok((body, _, status)) => {
                    let (ok, observed) = in_effect(step, body.as_ref());
                    let rb = ReadBack {
                        in_effect: ok,
                        absent: body.is_none(),
                        http_status: status,
                        observed,
                    };
                    self.emit(
                        attempt,
                        Body::ActionVerified(ActionVerified {
                            step: step_no,
                            in_effect: rb.in_effect,
                            target_absent: rb.absent,
                            http_status: u32::from(status),
                            observed: rb.observed.clone(),
                        }),
                    )
                    .await?;
                    return Ok(Some(rb));
                }
                Err(f) => {
                    match retry::decide(
                        &self.target.retry,
                        attempt,
                        began.elapsed(),
                        &f,
                        &mut self.jitter,
                    ) {
                        Decision::Retry(d) => tokio::time::sleep(d).await,
                        Decision::GiveUp => {
                            tracing::warn!(action = self.action_id, step = step_no, error = %f.message, "read-back failed");
                            return Ok(None);
                        }
                    }
                }
            }
        }
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
        let mut etag = match self.read(step).await {
            Ok((body, etag, _)) => {
                let (ok, observed) = in_effect(step, body.as_ref());
                if ok
                    && let Some(rb) = self.verify(step_no, step).await?
                    && rb.in_effect
                {
                    return Ok(out(
                        ActionOutcome::Confirmed,
                        format!(
                            "{}: already in effect ({observed}); nothing written",
                            step.label()
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
                    // 2xx: the target says done. Believe the read-back only.
                    return Ok(match self.verify(step_no, step).await? {
                        Some(rb) if rb.in_effect => out(
                            ActionOutcome::Confirmed,
                            format!("{}: confirmed by read-back ({})", step.label(), rb.observed),
                        ),
                        Some(rb) => out(
                            ActionOutcome::Unconfirmed,
                            format!(
                                "{}: the target answered HTTP {status} but the read-back shows no change ({})",
                                step.label(),
                                rb.observed
                            ),
                        ),
                        None => out(
                            ActionOutcome::Unconfirmed,
                            format!(
                                "{}: HTTP {status}, but the target could not be read back",
                                step.label()
                            ),
                        ),
                    });
                }
                Err(f) => f,
            };
            // Any failure: read back before deciding anything (the write may have landed).
            let rb = self.verify(step_no, step).await?;
            if let Some(rb) = &rb
                && rb.in_effect
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
                etag = self.read(step).await.ok().and_then(|(_, e, _)| e);
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
                    return Ok(out(
                        ActionOutcome::Failed,
                        format!(
                            "{}: {} after {attempt} attempt(s); read-back: {}",
                            step.label(),
                            f.message,
                            rb.map_or("unavailable".into(), |r| r.observed)
                        ),
                    ));
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
        let (method, body) = self.request(step);
        let summary = format!("{method} {} ({})", self.url(step), step.label());
        self.limiter.acquire().await;
        let started = Instant::now();
        let r = self
            .target
            .http
            .send(method, &self.url(step), body, etag)
            .await;
        let latency_ms = started.elapsed().as_millis().min(u128::from(u32::MAX)) as u32;
        let (status, class, failure) = match &r {
            Ok(f) => (f.status, ErrorClass::Unspecified, None),
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
                match self.verify(n, step).await? {
                    Some(rb) if rb.in_effect => StepOutcome {
                        step: n,
                        kind: step.kind as i32,
                        outcome: ActionOutcome::Confirmed as i32,
                        detail: format!(
                            "{}: confirmed by read-back ({})",
                            step.label(),
                            rb.observed
                        ),
                    },
                    Some(rb) => StepOutcome {
                        step: n,
                        kind: step.kind as i32,
                        outcome: ActionOutcome::Unconfirmed as i32,
                        detail: format!(
                            "{}: read-back shows no change ({})",
                            step.label(),
                            rb.observed
                        ),
                    },
                    None => StepOutcome {
                        step: n,
                        kind: step.kind as i32,
                        outcome: ActionOutcome::Unconfirmed as i32,
                        detail: format!("{}: the target could not be read back", step.label()),
                    },
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
            .unwrap_or(ActionOutcome::Unconfirmed);
        let detail = outcomes
            .iter()
            .map(|o| format!("step {} {}", o.step, o.detail))
            .collect::<Vec<_>>()
            .join("; ");
        let watch = if worst == ActionOutcome::Confirmed {
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

fn severity(o: ActionOutcome) -> u8 {
    match o {
        ActionOutcome::Confirmed => 0,
        ActionOutcome::Unconfirmed => 1,
        ActionOutcome::Failed => 2,
        _ => 3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(kind: ActionKind) -> Step {
        Step {
            kind,
            user_id: "u1".into(),
            group_id: "g1".into(),
            attribute: "title".into(),
            value: "Engineer".into(),
        }
    }

    #[test]
    fn read_back_rules() {
        let check = |kind, body: Option<Value>, want: bool| {
            let (ok, why) = in_effect(&step(kind), body.as_ref());
            assert_eq!(ok, want, "{kind:?} {body:?}: {why}");
        };
        check(ActionKind::Deactivate, Some(json!({"active": false})), true);
        check(ActionKind::Deactivate, Some(json!({"active": true})), false);
        check(ActionKind::Deactivate, Some(json!({})), false);
        check(ActionKind::Deactivate, None, true);
        check(ActionKind::Delete, None, true);
        check(ActionKind::Delete, Some(json!({"id": "u1"})), false);
        check(
            ActionKind::RemoveMembership,
            Some(json!({"members": [{"value": "u2"}]})),
            true,
        );
        check(
            ActionKind::RemoveMembership,
            Some(json!({"members": [{"value": "u1"}]})),
            false,
        );
        check(
            ActionKind::AddMembership,
            Some(json!({"members": [{"value": "u1"}]})),
            true,
        );
        check(
            ActionKind::AddMembership,
            Some(json!({"members": []})),
            false,
        );
        check(
            ActionKind::SetAttribute,
            Some(json!({"title": "Engineer"})),
            true,
        );
        check(
            ActionKind::SetAttribute,
            Some(json!({"title": "Intern"})),
            false,
        );
    }

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
