//! The guard in front of the ledger service: every call is authenticated
//! (`authorization: Bearer <token>`, else the TLS client certificate's
//! subject) and authorised by [`super::authorize`] before the handler runs.
//! No credentials or unknown ones → `UNAUTHENTICATED`; a role too small →
//! `PERMISSION_DENIED` naming the role needed. Refusals are written to the
//! access log (principal, method, code) — never the token.
//!
//! The handler finds the [`Principal`] in the request's extensions
//! ([`principal`]), so what it records is who called, not what the client wrote.

use std::{
    convert::Infallible,
    sync::Arc,
    task::{Context, Poll},
};

use futures::future::BoxFuture;
use tonic::{
    body::Body,
    server::NamedService,
    transport::server::{TcpConnectInfo, TlsConnectInfo},
};

use super::{Principal, authorize, identify::Authenticator, identify::subject_of};

/// The tracing target of the access log (one line per refused call and per
/// mutating call).
pub const ACCESS_LOG: &str = "govledger::access";

/// Wraps the ledger service `S` with authentication and authorisation.
#[derive(Clone)]
pub struct Guarded<S> {
    inner: S,
    auth: Arc<Authenticator>,
}

impl<S> Guarded<S> {
    pub fn new(inner: S, auth: Arc<Authenticator>) -> Self {
        Self { inner, auth }
    }
}

impl<S: NamedService> NamedService for Guarded<S> {
    const NAME: &'static str = S::NAME;
}

/// The method name of a gRPC path (`/govledger.v1.Ledger/TriggerSync` → `TriggerSync`).
pub fn method_of(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Who is calling, from the request's headers and its TLS connection.
fn authenticate(auth: &Authenticator, req: &http::Request<Body>) -> Result<Principal, String> {
    if let Some(v) = req.headers().get(http::header::AUTHORIZATION) {
        let Ok(v) = v.to_str() else {
            return Err("the authorization header is not text".into());
        };
        let Some(token) = v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
        else {
            return Err(
                "the authorization header is not `Bearer <token>` (send the token with --token-file or GOVLEDGER_TOKEN)"
                    .into(),
            );
        };
        return auth.by_token(token).ok_or_else(|| {
            "the bearer token is not one this ledger knows (check --token-file / GOVLEDGER_TOKEN; its SHA-256 must be in auth.tokens)"
                .into()
        });
    }
    let certs = req
        .extensions()
        .get::<TlsConnectInfo<TcpConnectInfo>>()
        .and_then(|i| i.peer_certs());
    if let Some(leaf) = certs.as_ref().and_then(|c| c.first()) {
        let Some(subject) = subject_of(leaf.as_ref()) else {
            return Err("the client certificate cannot be read".into());
        };
        return auth.by_subject(&subject).ok_or_else(|| {
            format!(
                "client certificate subject {subject:?} is not in auth.clients (add it with its roles, or send a bearer token)"
            )
        });
    }
    Err("no credentials: send a bearer token (--token-file, GOVLEDGER_TOKEN_FILE or GOVLEDGER_TOKEN; metadata `authorization: Bearer <token>`) or a client certificate".into())
}

impl<S> tower::Service<http::Request<Body>> for Guarded<S>
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

    fn call(&mut self, mut req: http::Request<Body>) -> Self::Future {
        let method = method_of(req.uri().path()).to_owned();
        let status = match authenticate(&self.auth, &req) {
            Err(why) => {
                tracing::warn!(target: ACCESS_LOG, principal = "-", method = %method, result = "UNAUTHENTICATED", "refused: {why}");
                tonic::Status::unauthenticated(why)
            }
            Ok(p) => match authorize(&p, &method) {
                Err(denied) => {
                    tracing::warn!(target: ACCESS_LOG, principal = %p.name, method = %method, result = "PERMISSION_DENIED", "refused: {denied}");
                    tonic::Status::permission_denied(denied.to_string())
                }
                Ok(()) => {
                    req.extensions_mut().insert(p);
                    // The service that was polled ready handles this call; a
                    // clone takes its place for the next one.
                    let clone = self.inner.clone();
                    let mut inner = std::mem::replace(&mut self.inner, clone);
                    return Box::pin(inner.call(req));
                }
            },
        };
        Box::pin(async move { Ok(status.into_http()) })
    }
}

/// The authenticated caller of a guarded request.
pub fn principal<T>(req: &tonic::Request<T>) -> Result<Principal, tonic::Status> {
    req.extensions()
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| tonic::Status::unauthenticated("no authenticated principal"))
}

/// One access-log line for a mutating call: who, what, on which target, and
/// how it ended (the gRPC code).
pub fn log_call<T>(p: &Principal, method: &str, target: &str, result: &Result<T, tonic::Status>) {
    let code = match result {
        Ok(_) => tonic::Code::Ok,
        Err(s) => s.code(),
    };
    tracing::info!(target: ACCESS_LOG, principal = %p.name, method, target, result = ?code, "call");
}
