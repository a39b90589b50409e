//! Read-your-writes across nodes: a call that carries the metadata
//! `govledger-min-seq: N` is answered only once this node's projection has
//! applied stream sequence N. It waits for that at most `wait_ms`; past it the
//! call fails `UNAVAILABLE`, naming how far behind the node is — never a stale
//! answer (a "not found" for an action submitted a moment ago elsewhere).
//!
//! `SubmitAction` and `TriggerSync` answer with the sequence of what they
//! recorded; a client sends it to whichever node serves its next read. Every
//! answer carries `govledger-applied-seq`, the node's position when it answered.

use std::{
    convert::Infallible,
    task::{Context, Poll},
    time::Duration,
};

use futures::future::BoxFuture;
use tokio::sync::watch;
use tonic::{body::Body, server::NamedService};

/// The request metadata naming the sequence a call must see.
pub const MIN_SEQ_HEADER: &str = "govledger-min-seq";
/// The response metadata with the node's last applied sequence.
pub const APPLIED_SEQ_HEADER: &str = "govledger-applied-seq";
/// Default bound of the wait, in milliseconds (`api.min_seq_wait_ms`).
pub const DEFAULT_MIN_SEQ_WAIT_MS: u64 = 5_000;

/// What a call asked for, pure: `Ok(None)` no header, `Ok(Some(n))` a
/// sequence, `Err` a header that is not one.
pub fn requested(value: Option<&[u8]>) -> Result<Option<u64>, String> {
    let Some(v) = value else {
        return Ok(None);
    };
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map(Some)
        .ok_or_else(|| {
            format!(
                "metadata {MIN_SEQ_HEADER} must be a stream sequence (a decimal number, e.g. the `seq` SubmitAction answered)"
            )
        })
}

/// The refusal when the node did not reach `wanted` in time.
pub fn behind(wanted: u64, applied: u64, waited_ms: u64) -> tonic::Status {
    tonic::Status::unavailable(format!(
        "this node has applied the stream up to sequence {applied}; the call asked for {wanted} \
         ({} events behind after waiting {waited_ms} ms): retry, or ask another node",
        wanted.saturating_sub(applied)
    ))
}

/// Wraps the ledger service with the wait.
#[derive(Clone)]
pub struct Consistent<S> {
    inner: S,
    applied: watch::Receiver<u64>,
    wait: Duration,
}

impl<S> Consistent<S> {
    pub fn new(inner: S, applied: watch::Receiver<u64>, wait_ms: u64) -> Self {
        Self {
            inner,
            applied,
            wait: Duration::from_millis(wait_ms),
        }
    }
}

impl<S: NamedService> NamedService for Consistent<S> {
    const NAME: &'static str = S::NAME;
}

fn with_applied(mut resp: http::Response<Body>, applied: u64) -> http::Response<Body> {
    if let Ok(v) = http::HeaderValue::from_str(&applied.to_string()) {
        resp.headers_mut().insert(APPLIED_SEQ_HEADER, v);
    }
    resp
}

impl<S> tower::Service<http::Request<Body>> for Consistent<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let mut applied = self.applied.clone();
        let wait = self.wait;
        let wanted = requested(req.headers().get(MIN_SEQ_HEADER).map(|v| v.as_bytes()));
        Box::pin(async move {
            match wanted {
                Err(why) => return Ok(tonic::Status::invalid_argument(why).into_http()),
                Ok(Some(n)) if *applied.borrow() < n => {
                    let started = std::time::Instant::now();
                    let reached = matches!(
                        tokio::time::timeout(wait, applied.wait_for(|s| *s >= n)).await,
                        Ok(Ok(_))
                    );
                    if !reached {
                        let at = *applied.borrow();
                        let waited = started.elapsed().as_millis() as u64;
                        return Ok(with_applied(behind(n, at, waited).into_http(), at));
                    }
                }
                Ok(_) => {}
            }
            let resp = inner.call(req).await?;
            let at = *applied.borrow();
            Ok(with_applied(resp, at))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_is_a_sequence_or_a_clear_error() {
        assert_eq!(requested(None), Ok(None));
        assert_eq!(requested(Some(b"42")), Ok(Some(42)));
        assert_eq!(requested(Some(b" 7 ")), Ok(Some(7)));
        for bad in [&b"-1"[..], b"x", b"", b"\xff"] {
            let e = requested(Some(bad)).unwrap_err();
            assert!(e.contains(MIN_SEQ_HEADER), "{e}");
        }
    }

    #[test]
    fn the_refusal_names_the_lag() {
        let s = behind(120, 100, 5_000);
        assert_eq!(s.code(), tonic::Code::Unavailable);
        assert!(
            s.message().contains("up to sequence 100")
                && s.message().contains("asked for 120")
                && s.message().contains("20 events behind"),
            "{}",
            s.message()
        );
    }
}
