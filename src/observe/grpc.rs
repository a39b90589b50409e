//! gRPC calls by method and status code: a tower wrapper in front of the
//! guarded ledger service, so refusals (UNAUTHENTICATED, PERMISSION_DENIED)
//! count too. A call's code is its `grpc-status`: in the response headers
//! when it failed before answering, else in the body's trailers (a stream
//! that ends in an error counts with that error); a body dropped before its
//! trailers (the client went away) counts as CANCELLED.

use std::{
    convert::Infallible,
    pin::Pin,
    task::{Context, Poll},
};

use futures::future::BoxFuture;
use http_body::Frame;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};
use tonic::{body::Body, server::NamedService};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    pub method: String,
    pub code: String,
}

/// The calls counted by method and code.
#[derive(Clone, Debug, Default)]
pub struct GrpcMetrics {
    pub calls: Family<CallLabels, Counter>,
}

impl GrpcMetrics {
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "govledger_grpc_requests",
            "gRPC calls to the ledger service, by method and status code",
            self.calls.clone(),
        );
    }

    fn count(&self, method: &str, code: tonic::Code) {
        self.calls
            .get_or_create(&CallLabels {
                method: method.to_owned(),
                code: code_name(code).to_owned(),
            })
            .inc();
    }
}

/// The code's canonical name (`OK`, `NOT_FOUND`, ...).
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

/// The method label of a request path: a method of the ledger service, or
/// `unknown` (the label set stays bounded whatever a client sends).
fn method_label(path: &str) -> String {
    let m = crate::auth::guard::method_of(path);
    if crate::auth::ledger_methods().iter().any(|k| k == m) {
        m.to_owned()
    } else {
        "unknown".to_owned()
    }
}

fn status_of(headers: &http::HeaderMap) -> Option<tonic::Code> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map(tonic::Code::from_i32)
}

/// Wraps a service with the call count.
#[derive(Clone)]
pub struct Metered<S> {
    inner: S,
    metrics: GrpcMetrics,
}

impl<S> Metered<S> {
    pub fn new(inner: S, metrics: GrpcMetrics) -> Self {
        Self { inner, metrics }
    }
}

impl<S: NamedService> NamedService for Metered<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> tower::Service<http::Request<Body>> for Metered<S>
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
        let method = method_label(req.uri().path());
        let metrics = self.metrics.clone();
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let resp = inner.call(req).await?;
            if let Some(code) = status_of(resp.headers()) {
                metrics.count(&method, code);
                return Ok(resp);
            }
            let (parts, body) = resp.into_parts();
            let counted = Counted {
                inner: body,
                pending: Some((metrics, method)),
            };
            Ok(http::Response::from_parts(parts, Body::new(counted)))
        })
    }
}

/// A response body that counts its call when its trailers pass (or when it
/// is dropped without them).
struct Counted {
    inner: Body,
    /// Until counted.
    pending: Option<(GrpcMetrics, String)>,
}

impl Counted {
    fn settle(&mut self, code: tonic::Code) {
        if let Some((m, method)) = self.pending.take() {
            m.count(&method, code);
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.settle(tonic::Code::Cancelled);
    }
}

impl http_body::Body for Counted {
    type Data = axum::body::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(code) = frame.trailers_ref().and_then(status_of) {
                    self.settle(code);
                }
            }
            Poll::Ready(Some(Err(s))) => {
                let code = s.code();
                self.settle(code);
            }
            Poll::Ready(None) => self.settle(tonic::Code::Ok),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_paths_share_one_label() {
        assert_eq!(
            method_label("/govledger.v1.Ledger/ListSources"),
            "ListSources"
        );
        assert_eq!(method_label("/govledger.v1.Ledger/NoSuchThing"), "unknown");
        assert_eq!(method_label("/x/y/z"), "unknown");
    }

    #[test]
    fn codes_have_canonical_names() {
        assert_eq!(code_name(tonic::Code::Ok), "OK");
        assert_eq!(
            code_name(tonic::Code::PermissionDenied),
            "PERMISSION_DENIED"
        );
    }
}
