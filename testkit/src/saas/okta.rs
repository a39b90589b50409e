//! Okta's Users API, as an org's `https://ORG.okta.com` answers it:
//!
//! `GET /api/v1/users?limit=N[&after=ID][&search=EXPR]` — `N` default 200,
//! capped at 200 (not a positive number: 400 `E0000001`). 200
//! `application/json`: a bare array of
//! `{"id":"00u..","status":"ACTIVE","created":..,"profile":{"login":"user7@acme.test",
//! "email":..,"firstName":..,"lastName":..},"_links":{..}}`. No total. The
//! statuses are Okta's: most users `ACTIVE`, and by ordinal also `STAGED`,
//! `PROVISIONED`, `RECOVERY`, `LOCKED_OUT`, `PASSWORD_EXPIRED`, `SUSPENDED`
//! ([`status`]); a deprovisioned user is `DEPROVISIONED`. As Okta documents,
//! a list without `search` leaves `DEPROVISIONED` users out; `search` takes
//! `status eq "X"` terms joined by ` or ` (anything else: 400 `E0000031`)
//! and lists the users whose status is named. Paging: `Link` header lines
//! `<https://../api/v1/users?limit=N>; rel="self"` and, unless it is the last
//! page, `<https://../api/v1/users?after=ID&limit=N[&search=..]>; rel="next"`
//! (absolute; `after` is the id of the page's last user). With a window set
//! every answer carries `X-Rate-Limit-Limit`, `X-Rate-Limit-Remaining` and
//! `X-Rate-Limit-Reset` (epoch seconds; Okta's names have a dash more than
//! GitHub's); a request over it is a 429 `E0000047` with the same headers and
//! no `Retry-After`.

use std::collections::HashMap;

use axum::{
    Router,
    extract::{Query, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use serde_json::json;

use super::{Shared, Window, enc, lock, positive, set};

pub(super) fn routes() -> Router<Shared> {
    Router::new().route("/api/v1/users", get(users))
}

/// User `n`'s id (20 characters, as Okta's are).
pub(super) fn id(n: usize) -> String {
    format!("00u{:017}", n * 7 + 3)
}

/// User `n`'s status.
pub(super) fn status(n: usize, deprovisioned: bool) -> &'static str {
    if deprovisioned {
        return "DEPROVISIONED";
    }
    match n % 50 {
        3 => "STAGED",
        7 => "PROVISIONED",
        11 => "RECOVERY",
        13 => "LOCKED_OUT",
        17 => "PASSWORD_EXPIRED",
        19 => "SUSPENDED",
        _ => "ACTIVE",
    }
}

fn error(status: StatusCode, code: &str, summary: &str) -> Response {
    let body = json!({
        "errorCode": code,
        "errorSummary": summary,
        "errorLink": code,
        "errorId": "oae0000000000000000000",
        "errorCauses": [],
    });
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// The statuses a `search` names, or `None` when it is not `status eq "X"`
/// terms joined by ` or `.
fn statuses_of(search: &str) -> Option<Vec<String>> {
    search
        .split(" or ")
        .map(|term| {
            let v = term.trim().strip_prefix("status eq ")?.trim();
            let v = v.strip_prefix('"')?.strip_suffix('"')?;
            Some(v.to_owned())
        })
        .collect()
}

async fn users(State(s): State<Shared>, Query(q): Query<HashMap<String, String>>) -> Response {
    let limit = match positive(&q, "limit", 200, 200) {
        Ok(n) => n,
        Err(v) => {
            return error(
                StatusCode::BAD_REQUEST,
                "E0000001",
                &format!("Api validation failed: limit {v:?}"),
            );
        }
    };
    let wanted = match q.get("search") {
        None => None,
        Some(expr) => match statuses_of(expr) {
            Some(st) => Some(st),
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "E0000031",
                    "Invalid search criteria.",
                );
            }
        },
    };
    let mut g = lock(&s);
    let window = match g.admit() {
        Window::Served(w) => w,
        Window::Refused { reset_s, .. } => {
            let mut r = error(
                StatusCode::TOO_MANY_REQUESTS,
                "E0000047",
                "API call exceeded rate limit due to too many requests.",
            );
            let h = r.headers_mut();
            let limit = g.cfg.rate_window.map_or(600, |w| w.requests);
            set(h, "x-rate-limit-limit", limit);
            set(h, "x-rate-limit-remaining", 0);
            set(h, "x-rate-limit-reset", reset_s);
            return r;
        }
    };
    let listed: Vec<(usize, &'static str)> = g
        .listed()
        .iter()
        .map(|u| (u.n, status(u.n, u.deprovisioned)))
        .filter(|(_, st)| match &wanted {
            None => *st != "DEPROVISIONED",
            Some(w) => w.iter().any(|x| x == st),
        })
        .collect();
    let from = match q.get("after") {
        None => 0,
        Some(after) => match listed.iter().position(|(n, _)| id(*n) == *after) {
            Some(i) => i + 1,
            None => listed.iter().take_while(|(n, _)| id(*n) < *after).count(),
        },
    };
    let to = (from + limit).min(listed.len());
    let origin = g.origin.clone();
    drop(g);
    let items: Vec<_> = listed[from..to]
        .iter()
        .map(|(n, st)| {
            json!({
                "id": id(*n),
                "status": st,
                "created": "2024-01-02T03:04:05.000Z",
                "lastUpdated": "2025-01-02T03:04:05.000Z",
                "profile": {
                    "login": format!("user{n}@acme.test"),
                    "email": format!("user{n}@acme.test"),
                    "firstName": "User",
                    "lastName": format!("{n}"),
                },
                "_links": {"self": {"href": format!("{origin}/api/v1/users/{}", id(*n))}},
            })
        })
        .collect();
    let search = q
        .get("search")
        .map(|e| format!("&search={}", enc(e)))
        .unwrap_or_default();
    let mut links = vec![format!(
        "<{origin}/api/v1/users?limit={limit}{search}>; rel=\"self\""
    )];
    if to < listed.len() {
        let after = id(listed[to - 1].0);
        links.push(format!(
            "<{origin}/api/v1/users?after={after}&limit={limit}{search}>; rel=\"next\""
        ));
    }
    let mut r = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
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
        set(h, "x-rate-limit-limit", limit);
        set(h, "x-rate-limit-remaining", remaining);
        set(h, "x-rate-limit-reset", reset_s);
    }
    r
}
