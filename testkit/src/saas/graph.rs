//! Microsoft Graph's users API, as `https://graph.microsoft.com` answers it:
//!
//! `GET /v1.0/users?$top=N[&$select=a,b][&$count=true][&$skiptoken=T]` — `N`
//! default 100, capped at 999 (not a positive number: 400). 200
//! `application/json`: `{"@odata.context":..,"value":[..],
//! "@odata.nextLink":"http://../v1.0/users?$top=N&..&$skiptoken=T"}` (absolute,
//! every other parameter kept; absent on the last page; `T` is opaque base64,
//! an unknown one is a 400). Without `$select` a user has Graph's default
//! properties only — `id`, `displayName`, `userPrincipalName`, `mail`,
//! `givenName`, `surname`, `jobTitle`, `mobilePhone`, `officeLocation`,
//! `preferredLanguage`, `businessPhones` — so `accountEnabled` is there only
//! when `$select` names it (`id` always is). `$count=true` adds
//! `"@odata.count": TOTAL` to every page, and only with the header
//! `ConsistencyLevel: eventual` (without it: 400 `Request_BadRequest`). A
//! disabled account ([`enabled`], or a deprovisioned user) has
//! `accountEnabled: false`. Throttling: 429 `{"error":{"code":"TooManyRequests",..}}`
//! with `Retry-After` (seconds); no rate headers on a success.

use std::collections::HashMap;

use axum::{
    Router,
    extract::{Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use serde_json::{Map, Value, json};

use super::{Shared, Window, base64, enc, lock, positive, set, unbase64};

pub(super) fn routes() -> Router<Shared> {
    Router::new().route("/v1.0/users", get(users))
}

/// User `n`'s object id.
pub(super) fn id(n: usize) -> String {
    format!(
        "{:08x}-4f1c-4b7e-9d2a-{:012x}",
        n * 2654435761 % (1 << 32),
        n
    )
}

/// Whether user `n`'s account starts enabled.
pub(super) fn enabled(n: usize) -> bool {
    n % 40 != 5
}

const DEFAULT_PROPERTIES: [&str; 11] = [
    "businessPhones",
    "displayName",
    "givenName",
    "jobTitle",
    "mail",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "surname",
    "userPrincipalName",
    "id",
];

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({"error": {
        "code": code,
        "message": message,
        "innerError": {"date": "2025-01-02T03:04:05", "request-id": "00000000-0000-0000-0000-000000000000"},
    }});
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn users(
    State(s): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let top = match positive(&q, "$top", 100, 999) {
        Ok(n) => n,
        Err(v) => {
            return error(
                StatusCode::BAD_REQUEST,
                "Request_BadRequest",
                &format!(
                    "Invalid page size specified: '{v}'. Must be between 1 and 999 inclusive."
                ),
            );
        }
    };
    let count = q.get("$count").is_some_and(|v| v == "true");
    let eventual = headers
        .get("consistencylevel")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("eventual"));
    if count && !eventual {
        return error(
            StatusCode::BAD_REQUEST,
            "Request_BadRequest",
            "$count is not currently supported without the ConsistencyLevel: eventual header.",
        );
    }
    let offset = match q.get("$skiptoken") {
        None => 0,
        Some(t) => match unbase64(t)
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.strip_prefix("users:")?.parse::<usize>().ok())
        {
            Some(o) => o,
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "Directory_ExpiredPageToken",
                    "The specified page token value has expired and can no longer be included in your request.",
                );
            }
        },
    };
    let select: Vec<String> = match q.get("$select") {
        Some(s) => s.split(',').map(|p| p.trim().to_owned()).collect(),
        None => DEFAULT_PROPERTIES.iter().map(|p| (*p).to_owned()).collect(),
    };
    let mut g = lock(&s);
    if let Window::Refused { wait_s, .. } = g.admit() {
        let mut r = error(
            StatusCode::TOO_MANY_REQUESTS,
            "TooManyRequests",
            "Too many requests. Please try again later.",
        );
        set(r.headers_mut(), "retry-after", wait_s);
        return r;
    }
    let listed = g.listed();
    let origin = g.origin.clone();
    drop(g);
    let from = offset.min(listed.len());
    let to = (from + top).min(listed.len());
    let items: Vec<Value> = listed[from..to]
        .iter()
        .map(|u| {
            let n = u.n;
            let all = json!({
                "id": id(n),
                "businessPhones": [],
                "displayName": format!("User {n}"),
                "givenName": "User",
                "surname": format!("{n}"),
                "jobTitle": null,
                "mail": format!("user{n}@contoso.test"),
                "mobilePhone": null,
                "officeLocation": null,
                "preferredLanguage": "en-US",
                "userPrincipalName": format!("user{n}@contoso.test"),
                "accountEnabled": enabled(n) && !u.deprovisioned,
            });
            let mut out = Map::new();
            out.insert("id".into(), all["id"].clone());
            for p in &select {
                if let Some(v) = all.get(p) {
                    out.insert(p.clone(), v.clone());
                }
            }
            Value::Object(out)
        })
        .collect();
    let mut body = Map::new();
    body.insert(
        "@odata.context".into(),
        json!(format!("{origin}/v1.0/$metadata#users")),
    );
    if count {
        body.insert("@odata.count".into(), json!(listed.len()));
    }
    body.insert("value".into(), Value::Array(items));
    if to < listed.len() {
        let mut next = format!("{origin}/v1.0/users?$top={top}");
        for (k, v) in &q {
            if k != "$top" && k != "$skiptoken" {
                next.push_str(&format!("&{k}={}", enc(v)));
            }
        }
        let token = base64(format!("users:{to}").as_bytes());
        next.push_str(&format!("&$skiptoken={}", enc(&token)));
        body.insert("@odata.nextLink".into(), json!(next));
    }
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8",
        )],
        Value::Object(body).to_string(),
    )
        .into_response()
}
