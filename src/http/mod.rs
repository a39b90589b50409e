//! The HTTP listener (`http.addr`): what operators and reviewers read without
//! a gRPC client.
//!
//! - `/healthz`: the process answers (200, always);
//! - `/readyz`: 200 while NATS answers, the disks have room, the projector
//!   runs and is within its lag bound; else 503 naming each problem;
//! - `/metrics`: Prometheus text format ([`crate::observe`]);
//! - `/`: the read-only status page ([`page`]);
//! - `/checkpoint`, `/tile/…`: the log as a tlog-tiles read API ([`tiles`]),
//!   for standard tlog clients (role `auditor`).
//!
//! `/metrics` and the page expose ledger data, so they take the gRPC
//! listener's credentials: a bearer token (`Authorization: Bearer <token>`),
//! or, for a browser, HTTP Basic with the token as the password (any user
//! name); the role needed is `reader`. Health answers are open, like gRPC
//! health. Every refusal goes to the access log.
//!
//! Layout:
//! - this file: the router, the handlers, the readings of the ledger they
//!   render, the credentials check;
//! - [`page`]: the status page's HTML and SVG from a `PageData` (pure);
//! - [`tiles`]: tile paths (pure).

pub mod page;
pub mod tiles;

use std::{net::SocketAddr, sync::Arc};

use axum::{
    Router,
    extract::{Path, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use govledger_proto::v1::{ActionOutcome, Freshness, Verdict};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    api::queries::Queries,
    auth::{self, Principal, guard::ACCESS_LOG, identify::Authenticator},
    observe::{Metrics, Reading},
    serve::health::HealthState,
};

/// Days of run history the status page draws.
pub const HISTORY_DAYS: u32 = 7;
/// Runs per source the page reads for its history.
pub const HISTORY_RUNS_MAX: u32 = 500;
/// Newest actions per source the page counts by outcome.
pub const PAGE_ACTIONS_MAX: usize = 1_000;

/// What the handlers read.
pub struct HttpState {
    pub queries: Arc<Queries>,
    pub health: tokio::sync::watch::Receiver<HealthState>,
    pub metrics: Arc<Metrics>,
    pub auth: Arc<Authenticator>,
    /// One reading of the ledger at a time (scrapes and page loads queue).
    pub reading: tokio::sync::Mutex<()>,
}

/// Binds `addr`; the error names the key.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, crate::serve::ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| crate::serve::ServeError::Bind {
            addr: format!("{addr} (http.addr)"),
            source,
        })
}

/// Serves until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    state: Arc<HttpState>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/", get(status_page))
        .route("/checkpoint", get(checkpoint))
        .route("/tile/{*rest}", get(tile))
        .with_state(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(s): State<Arc<HttpState>>) -> Response {
    let h = s.health.borrow().clone();
    let problems = h.problems();
    let position = match h.stream_last_seq {
        Some(last) => format!("projected sequence {} of {last}", h.applied_seq),
        None => format!(
            "projected sequence {}; NATS has not answered yet",
            h.applied_seq
        ),
    };
    if problems.is_empty() {
        (StatusCode::OK, format!("ready: {position}\n")).into_response()
    } else {
        let mut body = format!("not ready: {position}\n");
        for p in problems {
            body.push_str("- ");
            body.push_str(&p);
            body.push('\n');
        }
        (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
    }
}

async fn metrics(State(s): State<Arc<HttpState>>, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&s.auth, &headers, auth::HTTP_METRICS) {
        return *r;
    }
    let _turn = s.reading.lock().await;
    let reading = match read(&s).await {
        Ok(r) => r,
        Err(e) => return unavailable(&e),
    };
    s.metrics.refresh(&reading);
    match s.metrics.encode() {
        Ok(text) => ([(header::CONTENT_TYPE, crate::observe::CONTENT_TYPE)], text).into_response(),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot encode the metrics\n",
        )
            .into_response(),
    }
}

async fn status_page(State(s): State<Arc<HttpState>>, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&s.auth, &headers, auth::HTTP_STATUS_PAGE) {
        return *r;
    }
    let _turn = s.reading.lock().await;
    match page_data(&s).await {
        Ok(d) => (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            page::render(&d),
        )
            .into_response(),
        Err(e) => unavailable(&e),
    }
}

/// The newest signed checkpoint note (tlog-tiles `/checkpoint`).
async fn checkpoint(State(s): State<Arc<HttpState>>, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&s.auth, &headers, auth::HTTP_TILES) {
        return *r;
    }
    match s.queries.newest_checkpoint().await {
        Ok(cp) => match cp {
            Some(cp) => (
                [
                    (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                    (header::CACHE_CONTROL, "no-cache"),
                ],
                cp.note,
            )
                .into_response(),
            None => (
                StatusCode::NOT_FOUND,
                "no signed checkpoint yet: make one with `govledger checkpoint --new`\n",
            )
                .into_response(),
        },
        Err(e) => unavailable(&e.to_string()),
    }
}

/// A tile's hashes (tlog-tiles `/tile/<L>/<N>[.p/<W>]`), read from the projector's tiles.
async fn tile(
    State(s): State<Arc<HttpState>>,
    headers: HeaderMap,
    Path(rest): Path<String>,
) -> Response {
    if let Err(r) = authorize(&s.auth, &headers, auth::HTTP_TILES) {
        return *r;
    }
    let req = match tiles::parse(&rest) {
        Ok(r) => r,
        Err(why) => return (StatusCode::NOT_FOUND, format!("{why}\n")).into_response(),
    };
    let size = match s.queries.store.meta() {
        Ok(m) => m.merkle_size,
        Err(e) => return unavailable(&e.to_string()),
    };
    if req.leaves_needed() > u128::from(size) {
        return (
            StatusCode::NOT_FOUND,
            format!(
                "tile {}/{} of width {} is past the tree the ledger holds ({size} leaves)\n",
                req.level,
                tiles::encode_index(req.n),
                req.width
            ),
        )
            .into_response();
    }
    let store = s.queries.store.clone();
    let read = tokio::task::spawn_blocking(move || {
        govledger_projector::tiles::Tiles::new(store.as_ref()).read(req.level, req.n, req.width)
    })
    .await;
    match read {
        Ok(Ok(hashes)) => (
            [
                (header::CONTENT_TYPE, "application/octet-stream"),
                (
                    header::CACHE_CONTROL,
                    if req.is_full() {
                        "public, max-age=31536000, immutable"
                    } else {
                        "no-cache"
                    },
                ),
            ],
            hashes,
        )
            .into_response(),
        Ok(Err(e)) => unavailable(&e.to_string()),
        Err(e) => unavailable(&e.to_string()),
    }
}

fn unavailable(why: &str) -> Response {
    tracing::warn!("an HTTP reading of the ledger failed: {why}");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        format!("cannot read the ledger now: {why}\n"),
    )
        .into_response()
}

/// The reading `/metrics` sets its gauges from.
async fn read(s: &HttpState) -> Result<Reading, String> {
    let q = &s.queries;
    let sources = q.list_sources().await.map_err(|e| e.to_string())?;
    let mut open_actions = Vec::new();
    for src in &sources {
        for (outcome, n) in q
            .open_action_outcomes(&src.source_id)
            .map_err(|e| e.to_string())?
        {
            open_actions.push((src.source_id.clone(), outcome, n));
        }
    }
    let meta = q.store.meta().map_err(|e| e.to_string())?;
    // The projection's position now (the watch's is up to a probe old).
    let health = s.health.borrow().clone().at_applied(meta.last_applied_seq);
    Ok(Reading {
        health,
        sources,
        open_actions,
        ledger_events: meta.events_applied,
        ledger_poison: meta.poison_events,
    })
}

/// A proto enum's name without its prefix.
fn short(name: &str, prefix: &str) -> String {
    name.strip_prefix(prefix).unwrap_or(name).to_owned()
}

/// What the status page shows, read now.
async fn page_data(s: &HttpState) -> Result<page::PageData, String> {
    let q = &s.queries;
    let e = |e: crate::api::queries::QueryError| e.to_string();
    let now_us = crate::api::queries::now_us();
    let h = s.health.borrow().clone();
    let problems = h.problems();
    let readiness = q.readiness(Vec::new(), &[]).await.map_err(e)?;
    let mut d = page::PageData {
        now_us,
        stream: q.stream.clone(),
        stream_last_seq: h.stream_last_seq,
        applied_seq: h.applied_seq,
        ready: problems.is_empty(),
        health_problems: problems,
        review_ready: readiness.ready,
        blockers: readiness
            .blockers
            .iter()
            .map(|b| page::Blocker {
                source_id: b.source_id.clone(),
                code: b.code.clone(),
                message: b.message.clone(),
            })
            .collect(),
        history_days: HISTORY_DAYS,
        ..Default::default()
    };
    for st in &readiness.sources {
        let state = st.state.clone().unwrap_or_default();
        let freshness = Freshness::try_from(st.freshness).map_or("UNKNOWN".to_owned(), |f| {
            short(f.as_str_name(), "FRESHNESS_")
        });
        let (last_verdict, reasons) = if state.last_finished_run_id.is_empty() {
            (String::new(), Vec::new())
        } else {
            let run = q.run(&state.last_finished_run_id).map_err(e)?;
            let verdict = Verdict::try_from(run.verdict)
                .map_or("UNKNOWN".to_owned(), |v| short(v.as_str_name(), "VERDICT_"));
            let reasons = run
                .reasons
                .iter()
                .map(|r| {
                    let code = govledger_proto::v1::ReasonCode::try_from(r.code)
                        .map_or("UNKNOWN".to_owned(), |c| {
                            short(c.as_str_name(), "REASON_CODE_")
                        });
                    format!("{code}: {}", r.message)
                })
                .collect();
            (verdict, reasons)
        };
        d.sources.push(page::SourceRow {
            source_id: st.source_id.clone(),
            freshness,
            last_complete_age_ms: (state.last_complete_at_us != 0)
                .then_some(st.last_complete_age_ms),
            freshness_objective_ms: st.freshness_objective_ms,
            last_verdict,
            last_run_id: state.last_finished_run_id.clone(),
            reasons,
            running_run_id: st.running_run_id.clone(),
        });
        for (outcome, count) in q.open_action_outcomes(&st.source_id).map_err(e)? {
            d.open_actions.push(page::ActionCount {
                source_id: st.source_id.clone(),
                outcome: short(outcome.as_str_name(), "ACTION_OUTCOME_"),
                count,
            });
        }
        let mut by_outcome: std::collections::BTreeMap<String, u64> = Default::default();
        for a in q
            .actions(&st.source_id, ActionOutcome::Unspecified, PAGE_ACTIONS_MAX)
            .map_err(e)?
        {
            let o = ActionOutcome::try_from(a.outcome).map_or("UNKNOWN".to_owned(), |o| {
                short(o.as_str_name(), "ACTION_OUTCOME_")
            });
            *by_outcome.entry(o).or_default() += 1;
        }
        for (outcome, count) in by_outcome {
            d.concluded_actions.push(page::ActionCount {
                source_id: st.source_id.clone(),
                outcome,
                count,
            });
        }
        let runs = if state.source_id.is_empty() {
            Vec::new()
        } else {
            q.runs(&st.source_id, HISTORY_RUNS_MAX).await.map_err(e)?
        };
        d.history.push(page::SourceHistory {
            source_id: st.source_id.clone(),
            freshness_objective_ms: st.freshness_objective_ms,
            runs: runs
                .into_iter()
                .map(|r| page::RunMark {
                    verdict: Verdict::try_from(r.verdict)
                        .map_or("UNKNOWN".to_owned(), |v| short(v.as_str_name(), "VERDICT_")),
                    run_id: r.run_id,
                    started_at_us: r.started_at_us,
                    finished_at_us: r.finished_at_us,
                })
                .collect(),
        });
    }
    Ok(d)
}

/// The caller of an HTTP data page, authorised for `page`; else the
/// refusal to send (401 asking for credentials, 403 naming the role).
fn authorize(
    auth: &Authenticator,
    headers: &HeaderMap,
    page: &str,
) -> Result<Principal, Box<Response>> {
    let p = match token_of(headers) {
        Ok(token) => auth.by_token(&token).ok_or_else(|| {
            "the token is not one this ledger knows (its SHA-256 must be in auth.tokens)".to_owned()
        }),
        Err(why) => Err(why),
    };
    let p = match p {
        Ok(p) => p,
        Err(why) => {
            tracing::warn!(target: ACCESS_LOG, principal = "-", method = page, result = "UNAUTHENTICATED", "refused: {why}");
            let mut r = (StatusCode::UNAUTHORIZED, format!("{why}\n")).into_response();
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"govledger\", charset=\"UTF-8\""),
            );
            return Err(Box::new(r));
        }
    };
    if let Err(denied) = auth::authorize(&p, page) {
        tracing::warn!(target: ACCESS_LOG, principal = %p.name, method = page, result = "PERMISSION_DENIED", "refused: {denied}");
        return Err(Box::new(
            (StatusCode::FORBIDDEN, format!("{denied}\n")).into_response(),
        ));
    }
    Ok(p)
}

/// The token of a request: `Bearer <token>`, or Basic with the token as
/// the password.
fn token_of(headers: &HeaderMap) -> Result<String, String> {
    use base64::Engine as _;
    let Some(v) = headers.get(header::AUTHORIZATION) else {
        return Err("no credentials: send `Authorization: Bearer <token>`, or sign in with the token as the password".into());
    };
    let v = v
        .to_str()
        .map_err(|_| "the authorization header is not text".to_owned())?;
    if let Some(t) = v
        .strip_prefix("Bearer ")
        .or_else(|| v.strip_prefix("bearer "))
    {
        return Ok(t.trim().to_owned());
    }
    if let Some(b) = v
        .strip_prefix("Basic ")
        .or_else(|| v.strip_prefix("basic "))
    {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b.trim())
            .map_err(|_| "the Basic credentials are not base64".to_owned())?;
        let text =
            String::from_utf8(raw).map_err(|_| "the Basic credentials are not UTF-8".to_owned())?;
        return match text.split_once(':') {
            Some((_, password)) if !password.is_empty() => Ok(password.to_owned()),
            _ => Err("sign in with the token as the password".into()),
        };
    }
    Err("the authorization header is neither `Bearer <token>` nor Basic".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn tokens_come_from_bearer_or_the_basic_password() {
        assert_eq!(token_of(&with("Bearer abc")).unwrap(), "abc");
        // "reviewer:abc"
        assert_eq!(token_of(&with("Basic cmV2aWV3ZXI6YWJj")).unwrap(), "abc");
        // "reviewer:" has no password.
        assert!(token_of(&with("Basic cmV2aWV3ZXI6")).is_err());
        assert!(token_of(&with("Digest x")).is_err());
        assert!(
            token_of(&HeaderMap::new())
                .unwrap_err()
                .contains("no credentials")
        );
    }
}
