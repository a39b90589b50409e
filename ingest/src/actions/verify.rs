//! Read-backs: the GET of a step's target (a membership by the queries that
//! can prove it, `membership`), one read-back published as
//! `ActionVerified`, and the bounded verification window: read-backs with
//! backoff until the intent shows or `verify_window_ms` has passed, so a
//! target that applies writes after a short delay is not UNCONFIRMED.

use std::time::Duration;

use govledger_proto::v1::{ActionKind, ActionVerified, ErrorClass, event::Body};
use govledger_stream::backoff::Backoff;
use serde_json::Value;
use tokio::time::Instant;

use super::{
    ExecError, Executor, ReadBack, Shown, Step, in_effect,
    readback::{Listing, absence, absence_confirms, id_filter, id_listing},
};
use crate::{
    http::percent_encode,
    retry::{self, Decision, Failure},
};

/// Backoff between the read-backs of one verification window.
pub const VERIFY_BACKOFF_MIN_MS: u64 = 100;
pub const VERIFY_BACKOFF_MAX_MS: u64 = 1_000;

/// The read-backs of one verification window: the last one the target
/// answered (`None` = it could not be read back at all), how many were
/// tried and how many of them the target did not answer.
pub struct Window {
    pub last: Option<ReadBack>,
    pub reads: u32,
    pub unanswered: u32,
    pub elapsed_ms: u64,
}

impl Window {
    /// `n read-back(s) over T ms` (`, k unanswered`), for reason texts.
    pub fn span(&self) -> String {
        let unanswered = match self.unanswered {
            0 => String::new(),
            k if k == self.reads => ", none answered".to_owned(),
            k => format!(", {k} unanswered"),
        };
        format!(
            "{} read-back(s) over {} ms{unanswered}",
            self.reads, self.elapsed_ms
        )
    }
}

impl Executor<'_> {
    /// Reads the step's target back: what it shows, with the ETag to write
    /// with. A membership is read by the queries that can prove it
    /// (`membership`); anything else by a GET of the user. `Err` when the
    /// target could not be read.
    pub(super) async fn read(
        &mut self,
        step: &Step,
    ) -> Result<(ReadBack, Option<String>), Failure> {
        if let Some(spec) = self.target.ldap.clone() {
            return self.ldap_read(&spec, step).await.map(|rb| (rb, None));
        }
        if self.target.rest_actions.is_some() {
            return self.rest_read(step).await.map(|rb| (rb, None));
        }
        if matches!(
            step.kind,
            ActionKind::RemoveMembership | ActionKind::AddMembership
        ) {
            return self.read_membership(step).await;
        }
        let url = self.url(step);
        let (body, etag, status) = self.get(&url).await?;
        if body.is_none() {
            return Ok((self.not_found(step).await?, None));
        }
        let (shown, observed) = in_effect(step, body.as_ref());
        Ok((
            ReadBack {
                shown,
                absent: false,
                http_status: status,
                observed,
            },
            etag,
        ))
    }

    /// The read-back of a step whose single GET (of its user or group)
    /// answered 404. A 404 that would show the intent counts only when a
    /// filtered list of the target agrees, or the action accepts a 404 as
    /// proof (`absent_is_proof`); see [`super::readback::absence`].
    pub(super) async fn not_found(&mut self, step: &Step) -> Result<ReadBack, Failure> {
        let read_back = |(shown, observed, absent): (Shown, String, bool)| ReadBack {
            shown,
            absent,
            http_status: 404,
            observed,
        };
        if !absence_confirms(step) {
            let (shown, observed) = in_effect(step, None);
            return Ok(read_back((shown, observed, true)));
        }
        if step.absent_is_proof {
            let (shown, observed) = in_effect(step, None);
            return Ok(read_back((
                shown,
                format!("{observed}; the action accepts a 404 as proof"),
                true,
            )));
        }
        let listing = self.listed(step).await?;
        Ok(read_back(absence(
            step,
            &listing,
            self.target.member_list_cap,
        )))
    }

    /// `GET /Users?filter=id eq "U"` (or `/Groups`, for a membership step):
    /// what the target's own listing shows about `id`. `Err` only on a
    /// transient failure (retried like any read-back).
    async fn listed(&mut self, step: &Step) -> Result<Listing, Failure> {
        let (resource, what, id) = step.resource();
        let url = format!(
            "{}/{resource}?filter={}",
            self.target.base_url.trim_end_matches('/'),
            percent_encode(&id_filter(id))
        );
        Ok(match self.get(&url).await {
            Ok((Some(list), _, _)) => id_listing(id, &list, what),
            Ok((None, _, _)) => Listing::CannotTell("it answered 404 too".into()),
            Err(f) if super::membership::cannot_answer(&f) => {
                Listing::CannotTell(format!("it was refused ({})", f.message))
            }
            Err(f) if f.class == ErrorClass::Parse => {
                Listing::CannotTell("its answer is not JSON".into())
            }
            Err(f) => return Err(f),
        })
    }

    pub(super) async fn get(
        &mut self,
        url: &str,
    ) -> Result<(Option<Value>, Option<String>, u16), Failure> {
        self.limiter.acquire().await;
        match self.target.http.get(url).await {
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

    /// Reads back and publishes `ActionVerified`. Retries transient read
    /// failures; `None` when the target could not be read back.
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
                Ok((rb, _)) => {
                    self.emit(
                        attempt,
                        Body::ActionVerified(ActionVerified {
                            step: step_no,
                            in_effect: rb.shown == Shown::InEffect,
                            target_absent: rb.absent,
                            http_status: u32::from(rb.http_status),
                            observed: rb.observed.clone(),
                            unknown: matches!(rb.shown, Shown::Unknown | Shown::Uncorroborated),
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

    /// Read-backs until one shows the intent in effect, one shows the target
    /// cannot tell (unknown: asking again will not help), or the source's
    /// `verify_window_ms` has passed; backoff between them.
    pub async fn verify_window(&mut self, step_no: u32, step: &Step) -> Result<Window, ExecError> {
        let began = Instant::now();
        let window = Duration::from_millis(self.target.verify_window_ms);
        let backoff = Backoff::new(
            Duration::from_millis(VERIFY_BACKOFF_MIN_MS),
            Duration::from_millis(VERIFY_BACKOFF_MAX_MS),
            govledger_stream::backoff::DEFAULT_JITTER,
        )
        .unwrap_or_default();
        let mut reads: u32 = 0;
        let mut unanswered: u32 = 0;
        let mut last = None;
        loop {
            let this = self.verify(step_no, step).await?;
            reads += 1;
            // Settled when it shows the intent, or shows the target cannot
            // tell (asking again will not help).
            let settled = this
                .as_ref()
                .is_some_and(|rb| rb.shown != Shown::NotInEffect);
            match this {
                Some(rb) => last = Some(rb),
                None => unanswered += 1,
            }
            let left = window.saturating_sub(began.elapsed());
            if settled || left.is_zero() {
                return Ok(Window {
                    last,
                    reads,
                    unanswered,
                    elapsed_ms: began.elapsed().as_millis().min(u128::from(u64::MAX)) as u64,
                });
            }
            let pause = backoff.delay(reads - 1, &mut self.jitter).min(left);
            tokio::time::sleep(pause).await;
        }
    }
}
