//! Answer builders shared by every route: SCIM and REST JSON and error
//! bodies, `WWW-Authenticate` on a 401, and the rate-limit family's 429 with
//! `Retry-After` (seconds or an HTTP date) and `X-RateLimit-Remaining`.

use super::*;

pub(super) fn scim_json(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, SCIM_JSON)],
        body.to_string(),
    )
        .into_response()
}

pub(super) fn scim_error(status: StatusCode, scim_type: Option<&str>, detail: &str) -> Response {
    let mut body = json!({
        "schemas": [ERROR_SCHEMA],
        "status": status.as_u16().to_string(),
        "detail": detail,
    });
    if let Some(t) = scim_type {
        body["scimType"] = json!(t);
    }
    scim_json(status, &body)
}

/// A REST API error: `{"status":N,"error":"<reason>","message":detail}`.
pub(super) fn rest_error(status: StatusCode, detail: &str) -> Response {
    let body = json!({
        "status": status.as_u16(),
        "error": status.canonical_reason().unwrap_or("Error"),
        "message": detail,
    });
    (
        status,
        [(header::CONTENT_TYPE, REST_JSON)],
        body.to_string(),
    )
        .into_response()
}

pub(super) fn unauthorized(detail: &str, expired: bool) -> Response {
    with_www_authenticate(scim_error(StatusCode::UNAUTHORIZED, None, detail), expired)
}

pub(super) fn rest_unauthorized(detail: &str, expired: bool) -> Response {
    with_www_authenticate(rest_error(StatusCode::UNAUTHORIZED, detail), expired)
}

pub(super) fn with_www_authenticate(mut r: Response, expired: bool) -> Response {
    let www = if expired {
        "Bearer realm=\"fault-scim\", error=\"invalid_token\", error_description=\"The access token expired\""
    } else {
        "Bearer realm=\"fault-scim\""
    };
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(www));
    r
}

/// `Retry-After` as an RFC 7231 IMF-fixdate, `secs` from now.
pub fn http_date_in(secs: u64) -> String {
    let t = chrono::Utc::now() + chrono::Duration::seconds(secs as i64);
    t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

pub(super) fn rate_limited(r: RetryAfter) -> Response {
    let mut resp = scim_error(StatusCode::TOO_MANY_REQUESTS, None, "too many requests");
    add_rate_limit_headers(&mut resp, r);
    resp
}

/// `Retry-After` and `X-RateLimit-Remaining: 0`.
pub(super) fn add_rate_limit_headers(resp: &mut Response, r: RetryAfter) {
    let value = match r {
        RetryAfter::Seconds(s) => s.to_string(),
        RetryAfter::HttpDate(s) => http_date_in(s),
    };
    let h = resp.headers_mut();
    h.insert(header::RETRY_AFTER, HeaderValue::from_str(&value).unwrap());
    h.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
}
