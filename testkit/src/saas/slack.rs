//! Slack's `users.list` Web API method, as `https://slack.com/api` answers it:
//!
//! `GET /api/users.list?limit=N[&cursor=C]` — `N` default 100, capped at
//! 200 (Slack serves fewer than asked when it likes; not a positive number:
//! `invalid_limit`). 200 `application/json`:
//! `{"ok":true,"members":[{"id":"U00000007","team_id":"T0GOVLEDG","name":"user7",
//! "deleted":false,"is_bot":false,"profile":{"email":"user7@acme.test",
//! "real_name":..}},..],"cache_ts":..,"response_metadata":{"next_cursor":"dXNlcjpV.."}}`;
//! `next_cursor` is `""` on the last page, and a cursor is base64 (with
//! `=`), to be percent-encoded when sent back; an unknown one is
//! `{"ok":false,"error":"invalid_cursor"}` (HTTP 200, as Slack answers its
//! errors). Bots (`is_bot: true`, no email) are users too. A user is
//! `deleted: true` by ordinal ([`deleted`]) or when deprovisioned (Slack
//! keeps deactivated users in the list). Rate limiting: HTTP 429 with
//! `Retry-After` (seconds) and `{"ok":false,"error":"ratelimited"}`.

use std::collections::HashMap;

use axum::{
    Router,
    extract::{Query, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use serde_json::{Value, json};

use super::{Shared, Window, base64, lock, positive, set, unbase64};

pub(super) fn routes() -> Router<Shared> {
    Router::new().route("/api/users.list", get(users_list))
}

/// User `n`'s id.
pub(super) fn id(n: usize) -> String {
    format!("U{n:08}")
}

/// Whether user `n` starts deactivated.
pub(super) fn deleted(n: usize) -> bool {
    n % 60 == 9
}

fn answer(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

async fn users_list(State(s): State<Shared>, Query(q): Query<HashMap<String, String>>) -> Response {
    let limit = match positive(&q, "limit", 100, 200) {
        Ok(n) => n,
        Err(_) => {
            return answer(
                StatusCode::OK,
                json!({"ok": false, "error": "invalid_limit"}),
            );
        }
    };
    let mut g = lock(&s);
    let listed = g.listed();
    let from = match q.get("cursor").map(String::as_str) {
        None | Some("") => 0,
        Some(c) => {
            let at = unbase64(c)
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(|s| s.strip_prefix("user:").map(str::to_owned))
                .and_then(|uid| listed.iter().position(|u| id(u.n) == uid));
            match at {
                Some(i) => i,
                None => {
                    return answer(
                        StatusCode::OK,
                        json!({"ok": false, "error": "invalid_cursor"}),
                    );
                }
            }
        }
    };
    if let Window::Refused { wait_s, .. } = g.admit() {
        let mut r = answer(
            StatusCode::TOO_MANY_REQUESTS,
            json!({"ok": false, "error": "ratelimited"}),
        );
        set(r.headers_mut(), "retry-after", wait_s);
        return r;
    }
    drop(g);
    let to = (from + limit).min(listed.len());
    let members: Vec<Value> = listed[from..to]
        .iter()
        .map(|u| {
            let n = u.n;
            let mut profile = json!({
                "real_name": format!("User {n}"),
                "display_name": format!("user{n}"),
            });
            if !u.bot {
                profile["email"] = json!(format!("user{n}@acme.test"));
            }
            json!({
                "id": id(n),
                "team_id": "T0GOVLEDG",
                "name": if u.bot { format!("bot{n}") } else { format!("user{n}") },
                "deleted": u.deprovisioned || deleted(n),
                "is_bot": u.bot,
                "is_admin": n == 0,
                "updated": 1_700_000_000 + n,
                "profile": profile,
            })
        })
        .collect();
    let next = match listed.get(to) {
        Some(u) => base64(format!("user:{}", id(u.n)).as_bytes()),
        None => String::new(),
    };
    answer(
        StatusCode::OK,
        json!({
            "ok": true,
            "members": members,
            "cache_ts": 1_700_000_000,
            "response_metadata": {"next_cursor": next},
        }),
    )
}
