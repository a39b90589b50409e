//! Test servers that behave like the users APIs of four big SaaS directories,
//! for the worked examples in `examples/` and the REST paging tests: each
//! speaks its API's real paging, page-size caps, field names, rate-limit
//! headers and refusals, in process on axum, bound to 127.0.0.1:0, over one
//! directory of [`User`]s a test can change between syncs.
//!
//! - [`Api::GitHub`] (`github`): `GET /orgs/{org}/members?per_page=N&page=P`;
//! - [`Api::Okta`] (`okta`): `GET /api/v1/users?limit=N[&after=ID][&search=..]`;
//! - [`Api::Graph`] (`graph`): `GET /v1.0/users?$top=N[&$skiptoken=T]..`;
//! - [`Api::Slack`] (`slack`): `GET /api/users.list?limit=N[&cursor=C]`.
//!
//! Each module's doc says exactly what its API answers. Every answer is
//! logged ([`Saas::requests`]). A rate window ([`SaasConfig::rate_window`])
//! counts list requests and refuses the ones over it the way the API does
//! (GitHub 403, Okta / Graph / Slack 429); [`SaasConfig::throttle_at`] refuses
//! chosen list requests once each, whatever the window.
//!
//! The server runs on its own thread with its own tokio runtime (it keeps
//! answering while a test blocks its thread); dropping [`Saas`] stops it.
//!
//! Layout: here the directory, the rate window, the request log and the
//! server; `github`, `okta`, `graph`, `slack`: one API each.

mod github;
mod graph;
mod okta;
mod slack;

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard},
};

use axum::{
    Router,
    extract::{Request, State},
    http::{HeaderMap, HeaderValue},
    middleware::{self, Next},
    response::Response,
};

/// Which API the server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    GitHub,
    Okta,
    Graph,
    Slack,
}

/// `requests` list requests per window of `window_s` seconds; a window starts
/// with its first request and ends at a whole epoch second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateWindow {
    pub requests: usize,
    pub window_s: u64,
}

#[derive(Debug, Clone)]
pub struct SaasConfig {
    pub api: Api,
    /// Users in the directory (Slack: people; see `bots`).
    pub users: usize,
    /// Slack: bot users besides the people (`is_bot: true`, no email).
    pub bots: usize,
    pub rate_window: Option<RateWindow>,
    /// List requests (1-based, in arrival order) refused once each with the
    /// API's rate-limit answer, asking to wait `throttle_wait_s`.
    pub throttle_at: Vec<usize>,
    pub throttle_wait_s: u64,
    /// GitHub: `Link` targets relative to the request URI, not absolute.
    pub relative_links: bool,
}

impl SaasConfig {
    pub fn new(api: Api, users: usize) -> Self {
        Self {
            api,
            users,
            bots: 0,
            rate_window: None,
            throttle_at: Vec::new(),
            throttle_wait_s: 1,
            relative_links: false,
        }
    }
}

/// One user of the directory; each API renders it in its own shape.
#[derive(Debug, Clone)]
pub struct User {
    /// Its ordinal: ids, logins and emails derive from it.
    pub n: usize,
    /// Deprovisioned: GitHub removed from the org, Okta `DEPROVISIONED`,
    /// Graph `accountEnabled: false`, Slack `deleted: true`.
    pub deprovisioned: bool,
    /// Slack: a bot user.
    pub bot: bool,
}

/// One answered request.
#[derive(Debug, Clone)]
pub struct Logged {
    pub path_and_query: String,
    pub status: u16,
}

pub(crate) struct Inner {
    cfg: SaasConfig,
    users: Vec<User>,
    log: Vec<Logged>,
    /// (requests used, window end in epoch seconds).
    window: Option<(usize, u64)>,
    list_requests: usize,
    origin: String,
}

type Shared = Arc<Mutex<Inner>>;

fn lock(s: &Shared) -> MutexGuard<'_, Inner> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

/// What the rate window says about one list request.
pub(crate) enum Window {
    /// Served; `(limit, remaining, reset epoch s)` when a window is set.
    Served(Option<(usize, usize, u64)>),
    /// Refused: wait this many seconds (until the reset).
    Refused { wait_s: u64, reset_s: u64 },
}

impl Inner {
    /// The users the list shows, in order (GitHub leaves removed members out).
    fn listed(&self) -> Vec<User> {
        self.users
            .iter()
            .filter(|u| !(self.cfg.api == Api::GitHub && u.deprovisioned))
            .cloned()
            .collect()
    }

    /// Counts one list request against the throttle list and the window.
    fn admit(&mut self) -> Window {
        self.list_requests += 1;
        let now_ms = epoch_ms();
        if let Some(i) = self
            .cfg
            .throttle_at
            .iter()
            .position(|k| *k == self.list_requests)
        {
            self.cfg.throttle_at.remove(i);
            let wait_s = self.cfg.throttle_wait_s;
            return Window::Refused {
                wait_s,
                reset_s: (now_ms / 1000) + wait_s,
            };
        }
        let Some(w) = self.cfg.rate_window else {
            return Window::Served(None);
        };
        let (used, end_s) = match self.window {
            Some((used, end_s)) if now_ms < end_s * 1000 => (used, end_s),
            _ => (0, (now_ms + w.window_s * 1000).div_ceil(1000)),
        };
        if used >= w.requests {
            self.window = Some((used, end_s));
            return Window::Refused {
                wait_s: (end_s * 1000 - now_ms).div_ceil(1000),
                reset_s: end_s,
            };
        }
        self.window = Some((used + 1, end_s));
        Window::Served(Some((w.requests, w.requests - used - 1, end_s)))
    }
}

/// Now, in epoch milliseconds.
fn epoch_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn set(h: &mut HeaderMap, name: &'static str, v: impl ToString) {
    if let Ok(v) = HeaderValue::from_str(&v.to_string()) {
        h.insert(name, v);
    }
}

/// A running API server. Dropping it stops the server.
pub struct Saas {
    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub origin: String,
    pub addr: SocketAddr,
    inner: Shared,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Saas {
    /// `users` users of `api`, nothing else set.
    pub async fn start(api: Api, users: usize) -> Saas {
        Self::start_with(SaasConfig::new(api, users)).await
    }

    pub async fn start_with(cfg: SaasConfig) -> Saas {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let addr = listener.local_addr().expect("local addr");
        let origin = format!("http://{addr}");
        let mut users: Vec<User> = (0..cfg.users)
            .map(|n| User {
                n,
                deprovisioned: false,
                bot: false,
            })
            .collect();
        if cfg.api == Api::Slack {
            users.extend((0..cfg.bots).map(|b| User {
                n: cfg.users + b,
                deprovisioned: false,
                bot: true,
            }));
        }
        let api = cfg.api;
        let inner: Shared = Arc::new(Mutex::new(Inner {
            cfg,
            users,
            log: Vec::new(),
            window: None,
            list_requests: 0,
            origin: origin.clone(),
        }));
        let routes = match api {
            Api::GitHub => github::routes(),
            Api::Okta => okta::routes(),
            Api::Graph => graph::routes(),
            Api::Slack => slack::routes(),
        };
        let app: Router = routes
            .layer(middleware::from_fn_with_state(inner.clone(), track))
            .with_state(inner.clone());
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name(format!("saas-{}", addr.port()))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("saas runtime");
                rt.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                    let _ = ready_tx.send(());
                    tokio::select! {
                        r = axum::serve(listener, app) => r.expect("saas serve"),
                        _ = stop_rx => {}
                    }
                });
            })
            .expect("spawn saas thread");
        ready_rx.await.expect("saas thread died");
        Saas {
            origin,
            addr,
            inner,
            stop: Some(stop_tx),
        }
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Logged> {
        lock(&self.inner).log.clone()
    }

    /// Statuses of the list requests answered so far.
    pub fn statuses(&self) -> Vec<u16> {
        self.requests().iter().map(|r| r.status).collect()
    }

    /// Deprovisions user `n` (see [`User::deprovisioned`]).
    pub fn deprovision(&self, n: usize) {
        if let Some(u) = lock(&self.inner).users.iter_mut().find(|u| u.n == n) {
            u.deprovisioned = true;
        }
    }

    /// The directory as it stands.
    pub fn users(&self) -> Vec<User> {
        lock(&self.inner).users.clone()
    }

    /// The id govledger records for user `n` (the example's `id_field`).
    pub fn external_id(&self, n: usize) -> String {
        match lock(&self.inner).cfg.api {
            Api::GitHub => github::id(n).to_string(),
            Api::Okta => okta::id(n),
            Api::Graph => graph::id(n),
            Api::Slack => slack::id(n),
        }
    }

    /// Okta: user `n`'s status as the API shows it.
    pub fn okta_status(&self, n: usize) -> &'static str {
        let g = lock(&self.inner);
        let deprovisioned = g.users.iter().any(|u| u.n == n && u.deprovisioned);
        okta::status(n, deprovisioned)
    }

    /// Graph: user `n`'s `accountEnabled`.
    pub fn graph_enabled(&self, n: usize) -> bool {
        let g = lock(&self.inner);
        !g.users.iter().any(|u| u.n == n && u.deprovisioned) && graph::enabled(n)
    }

    /// Slack: user `n`'s `deleted`.
    pub fn slack_deleted(&self, n: usize) -> bool {
        let g = lock(&self.inner);
        g.users.iter().any(|u| u.n == n && u.deprovisioned) || slack::deleted(n)
    }
}

impl Drop for Saas {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// Logs every request with its final status.
async fn track(State(s): State<Shared>, req: Request, next: Next) -> Response {
    let path_and_query = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let resp = next.run(req).await;
    lock(&s).log.push(Logged {
        path_and_query,
        status: resp.status().as_u16(),
    });
    resp
}

/// A query parameter as a positive integer: absent → `default`, capped at
/// `max`; anything else is `Err(the value)`.
fn positive(
    q: &std::collections::HashMap<String, String>,
    name: &str,
    default: usize,
    max: usize,
) -> Result<usize, String> {
    match q.get(name) {
        None => Ok(default),
        Some(v) => match v.trim().parse::<usize>() {
            Ok(n) if n >= 1 => Ok(n.min(max)),
            _ => Err(v.clone()),
        },
    }
}

/// `base64` (standard alphabet, padded): Slack's cursors and Graph's skip
/// tokens carry `=`, `+` and `/`, which a client must percent-encode.
pub(crate) fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn unbase64(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let s = s.trim_end_matches('=').as_bytes();
    let mut out = Vec::new();
    for c in s.chunks(4) {
        let mut n: u32 = 0;
        for (i, ch) in c.iter().enumerate() {
            n |= u32::from(val(*ch)?) << (18 - 6 * i);
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..c.len().saturating_sub(1)]);
    }
    Some(out)
}

/// `s` percent-encoded for a query value.
fn enc(s: &str) -> String {
    govledger_ingest::http::percent_encode(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips() {
        for s in ["", "a", "ab", "abc", "user:U00000042", "offset:260?"] {
            let e = base64(s.as_bytes());
            assert_eq!(unbase64(&e).as_deref(), Some(s.as_bytes()), "{e}");
        }
        assert_eq!(base64(b"user:U0G9WFXNZ"), "dXNlcjpVMEc5V0ZYTlo=");
    }
}
