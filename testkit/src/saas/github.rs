//! GitHub's organization members API, as api.github.com answers it:
//!
//! `GET /orgs/{org}/members?per_page=N&page=P` — `N` default 30, capped at
//! 100; `P` 1-based, default 1 (0 and below read as 1; not a number: 422).
//! 200 `application/json`: a bare array of
//! `{"login":"user0007","id":1007,"node_id":..,"type":"User","site_admin":false,..}`
//! (user 0 is a site admin). No total anywhere. One `Link` header line per
//! relation (`rel="prev"`, `rel="next"`, `rel="last"`, `rel="first"`), targets
//! absolute or (with [`SaasConfig::relative_links`]) relative to the request
//! URI; no `next` on the last page; a page past the end is `[]`. Members have
//! no active flag: a removed member ([`super::Saas::deprovision`]) is simply
//! not listed. Every list answer carries `X-RateLimit-Limit`,
//! `X-RateLimit-Remaining`, `X-RateLimit-Reset` (epoch seconds),
//! `X-RateLimit-Used` and `X-RateLimit-Resource: core` when a window is set;
//! a request over it is a 403 `{"message":"API rate limit exceeded for
//! 127.0.0.1. ..","documentation_url":..}` with `X-RateLimit-Remaining: 0`.

use std::collections::HashMap;

use axum::{
    Router,
    extract::{Path, Query, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use serde_json::json;

use super::{SaasConfig, Shared, Window, lock, positive, set};

pub(super) fn routes() -> Router<Shared> {
    Router::new().route("/orgs/{org}/members", get(members))
}

/// Member `n`'s numeric id.
pub(super) fn id(n: usize) -> u64 {
    1000 + n as u64
}

fn error(status: StatusCode, message: &str) -> Response {
    let body = json!({
        "message": message,
        "documentation_url": "https://docs.github.com/rest/orgs/members#list-organization-members",
        "status": status.as_u16().to_string(),
    });
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

async fn members(
    State(s): State<Shared>,
    Path(org): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let per_page = match positive(&q, "per_page", 30, 100) {
        Ok(n) => n,
        Err(v) => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                &format!("per_page {v:?} is not a number"),
            );
        }
    };
    let page = match q.get("page").map(|v| v.trim().parse::<i64>()) {
        None => 1,
        Some(Ok(p)) => p.max(1) as usize,
        Some(Err(_)) => return error(StatusCode::UNPROCESSABLE_ENTITY, "page is not a number"),
    };
    let mut g = lock(&s);
    let window = match g.admit() {
        Window::Served(w) => w,
        Window::Refused { reset_s, .. } => {
            let mut r = error(
                StatusCode::FORBIDDEN,
                "API rate limit exceeded for 127.0.0.1. (But here's the good news: \
                 Authenticated requests get a higher rate limit. Check out the documentation \
                 for more details.)",
            );
            let h = r.headers_mut();
            set(h, "x-ratelimit-limit", 60);
            set(h, "x-ratelimit-remaining", 0);
            set(h, "x-ratelimit-reset", reset_s);
            set(h, "x-ratelimit-resource", "core");
            return r;
        }
    };
    let listed = g.listed();
    let from = (page - 1).saturating_mul(per_page).min(listed.len());
    let to = (from + per_page).min(listed.len());
    let items: Vec<_> = listed[from..to]
        .iter()
        .map(|u| {
            json!({
                "login": format!("user{:04}", u.n),
                "id": id(u.n),
                "node_id": format!("MDQ6VXNlcj{}", id(u.n)),
                "avatar_url": format!("https://avatars.githubusercontent.com/u/{}?v=4", id(u.n)),
                "url": format!("https://api.github.com/users/user{:04}", u.n),
                "type": "User",
                "site_admin": u.n == 0,
            })
        })
        .collect();
    let last = listed.len().div_ceil(per_page).max(1);
    let links = links(&g.cfg, &g.origin, &org, page, per_page, last);
    drop(g);
    let mut r = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        serde_json::Value::Array(items).to_string(),
    )
        .into_response();
    let h = r.headers_mut();
    for l in links {
        if let Ok(v) = l.parse() {
            h.append(header::LINK, v);
        }
    }
    if let Some((limit, remaining, reset_s)) = window {
        set(h, "x-ratelimit-limit", limit);
        set(h, "x-ratelimit-remaining", remaining);
        set(h, "x-ratelimit-reset", reset_s);
        set(h, "x-ratelimit-used", limit - remaining);
        set(h, "x-ratelimit-resource", "core");
    }
    r
}

/// One `Link` line per relation, as GitHub pages do.
fn links(
    cfg: &SaasConfig,
    origin: &str,
    org: &str,
    page: usize,
    per_page: usize,
    last: usize,
) -> Vec<String> {
    let url = |p: usize| {
        let q = format!("?per_page={per_page}&page={p}");
        match cfg.relative_links {
            true => format!("members{q}"),
            false => format!("{origin}/orgs/{org}/members{q}"),
        }
    };
    let mut out = Vec::new();
    if page > 1 {
        out.push(format!("<{}>; rel=\"prev\"", url(page - 1)));
    }
    if page < last {
        out.push(format!("<{}>; rel=\"next\"", url(page + 1)));
        out.push(format!("<{}>; rel=\"last\"", url(last)));
    }
    if page > 1 {
        out.push(format!("<{}>; rel=\"first\"", url(1)));
    }
    out
}
