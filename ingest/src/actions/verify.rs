//! Read-backs: the GET of a step's target (a group asked again for `members`
//! by name when its answer left them out), one read-back published as
//! `ActionVerified`, and the bounded verification window: read-backs with
//! backoff until the intent shows or `verify_window_ms` has passed, so a
//! target that applies writes after a short delay is not UNCONFIRMED.

use std::time::Duration;

use govledger_proto::v1::{ActionVerified, ErrorClass, event::Body};
use govledger_stream::backoff::Backoff;
use serde_json::Value;
use tokio::time::Instant;

use super::{ExecError, Executor, ReadBack, Shown, Step, in_effect, needs_members};
use crate::retry::{self, Decision, Failure};

/// Backoff between the read-backs of one verification window.
pub const VERIFY_BACKOFF_MIN_MS: u64 = 100;
pub const VERIFY_BACKOFF_MAX_MS: u64 = 1_000;

/// The read-backs of one verification window: the last one (`None` = the
/// target could not be read back) and how many were published.
pub struct Window {
    pub last: Option<ReadBack>,
    pub reads: u32,
    pub elapsed_ms: u64,
}

impl Window {
    /// `n read-back(s) over T ms`, for reason texts.
    pub fn span(&self) -> String {
        format!("{} read-back(s) over {} ms", self.reads, self.elapsed_ms)
    }
}

impl Executor<'_> {
    /// GET the step's target: `Ok(None)` on 404. A group answered without
    /// `members` is read again with `?attributes=members`; if that answer
    /// has none either, the first one stands (and shows nothing).
    pub(super) async fn read(
        &mut self,
        step: &Step,
    ) -> Result<(Option<Value>, Option<String>, u16), Failure> {
        let url = self.url(step);
        let (body, etag, status) = self.get(&url).await?;
        if needs_members(step, body.as_ref()) {
            let by_name = format!("{url}?attributes=members");
            if let Ok((Some(v), _, st)) = self.get(&by_name).await
                && v.get("members").is_some()
            {
                return Ok((Some(v), etag, st));
            }
        }
        Ok((body, etag, status))
    }

    async fn get(&mut self, url: &str) -> Result<(Option<Value>, Option<String>, u16), Failure> {
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
                Ok((body, _, status)) => {
                    let (shown, observed) = in_effect(step, body.as_ref());
                    let rb = ReadBack {
                        shown,
                        absent: body.is_none(),
                        http_status: status,
                        observed,
                    };
                    self.emit(
                        attempt,
                        Body::ActionVerified(ActionVerified {
                            step: step_no,
                            in_effect: rb.shown == Shown::InEffect,
                            target_absent: rb.absent,
                            http_status: u32::from(status),
                            observed: rb.observed.clone(),
                            unknown: rb.shown == Shown::Unknown,
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
        loop {
            let last = self.verify(step_no, step).await?;
            reads += 1;
            let settled = last
                .as_ref()
                .is_some_and(|rb| rb.shown != Shown::NotInEffect);
            let left = window.saturating_sub(began.elapsed());
            if settled || left.is_zero() {
                return Ok(Window {
                    last,
                    reads,
                    elapsed_ms: began.elapsed().as_millis().min(u128::from(u64::MAX)) as u64,
                });
            }
            let pause = backoff.delay(reads - 1, &mut self.jitter).min(left);
            tokio::time::sleep(pause).await;
        }
    }
}
