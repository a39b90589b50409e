//! The plain REST JSON variants over the same users and faults: page-number
//! paging (`/api/users`, 1-based or with [`RestQuirks::zero_based_pages`]
//! 0-based), RFC 8288 `Link` paging (`/api/users-link`), offset/limit paging
//! (`/api/users-offset`) and a cursor in the body (`/api/users-cursor`), with
//! `X-Total-Count`, and the ways real APIs bend them ([`RestQuirks`]).

use super::*;

/// Which REST endpoint a list request came to.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum RestMode {
    /// `/api/users`: page numbers.
    Paged,
    /// `/api/users-link`: `Link` headers (or a next link in the body).
    Link,
    /// `/api/users-offset`: `offset` and `limit`.
    Offset,
    /// `/api/users-cursor`: `cursor` and `limit`, the next cursor in the body.
    Cursor,
}

pub(super) enum RestOutcome {
    Done(Response),
    Page {
        body: Value,
        /// `X-Total-Count`.
        total: u64,
        /// `Link` header lines.
        links: Vec<String>,
        malformed: Option<Malformed>,
    },
}

/// Where a REST list request starts and how many items it asks for.
pub(super) struct RestParams {
    pub(super) offset: usize,
    pub(super) per_page: usize,
    /// Page-number mode: the (effective) page number.
    pub(super) page: usize,
    /// `Link` mode: the offset the request asked for (its `after`), which
    /// the `next` link counts on from; `offset` unless a page past the end
    /// is answered with the last one.
    pub(super) asked: usize,
}

/// `per_page` of a REST list request: default [`DEFAULT_PAGE_SIZE`], capped
/// at `max`; not an integer or below 1 is a 400.
pub(super) fn rest_per_page(
    q: &HashMap<String, String>,
    max: usize,
) -> Result<usize, Box<Response>> {
    rest_size(q, "per_page", max)
}

/// The page size in query parameter `name` (see [`rest_per_page`]).
pub(super) fn rest_size(
    q: &HashMap<String, String>,
    name: &str,
    max: usize,
) -> Result<usize, Box<Response>> {
    let n = match q.get(name) {
        None => DEFAULT_PAGE_SIZE,
        Some(v) => match v.trim().parse::<i64>() {
            Ok(n) if n >= 1 => n as usize,
            _ => {
                return Err(Box::new(rest_error(
                    StatusCode::BAD_REQUEST,
                    &format!("{name} {v:?} is not an integer of at least 1"),
                )));
            }
        },
    };
    Ok(n.min(max.max(1)))
}

/// [`rest_per_page`] under this server's `max_page_size`.
fn per_page_of(s: &Shared, q: &HashMap<String, String>) -> Result<usize, Box<Response>> {
    let max = lock(s).cfg.max_page_size;
    rest_per_page(q, max)
}

/// `GET /api/users?page=P&per_page=N`: page-number paging (see module doc).
pub(super) async fn rest_users_paged(
    State(s): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let per_page = match per_page_of(&s, &q) {
        Ok(n) => n,
        Err(r) => return *r,
    };
    let first: i64 = if lock(&s).faults.rest.zero_based_pages {
        0
    } else {
        1
    };
    let page = match q.get("page") {
        None => first as usize,
        Some(v) => match v.trim().parse::<i64>() {
            Ok(n) => n.max(first) as usize,
            Err(_) => {
                return rest_error(
                    StatusCode::BAD_REQUEST,
                    &format!("page {v:?} is not an integer"),
                );
            }
        },
    };
    let mut offset = (page - first as usize).saturating_mul(per_page);
    {
        let g = lock(&s);
        let n = g.users.len();
        if g.faults.rest.past_end_repeats_last && n > 0 && offset >= n {
            offset = (n - 1) / per_page * per_page;
        }
    }
    let p = RestParams {
        offset,
        per_page,
        page,
        asked: offset,
    };
    rest_list(s, p, RestMode::Paged).await
}

/// `GET /api/users-offset?offset=O&limit=N`: offset/limit paging (see the
/// module doc of `fault_scim`).
pub(super) async fn rest_users_offset(
    State(s): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let max = lock(&s).cfg.max_page_size;
    let limit = match rest_size(&q, "limit", max) {
        Ok(n) => n,
        Err(r) => return *r,
    };
    let asked = match q.get("offset").map(|v| v.trim().parse::<usize>()) {
        None => 0,
        Some(Ok(o)) => o,
        Some(Err(_)) => {
            return rest_error(
                StatusCode::BAD_REQUEST,
                "offset is not a non-negative integer",
            );
        }
    };
    let offset = {
        let g = lock(&s);
        let n = g.users.len();
        match g.faults.rest.past_end_repeats_last && n > 0 && asked >= n {
            true => (n - 1) / limit * limit,
            false => asked,
        }
    };
    let p = RestParams {
        offset,
        per_page: limit,
        page: offset / limit + 1,
        asked,
    };
    rest_list(s, p, RestMode::Offset).await
}

/// `GET /api/users-cursor?limit=N[&cursor=C]`: the next cursor in the body
/// (see the module doc of `fault_scim`).
pub(super) async fn rest_users_cursor(
    State(s): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let max = lock(&s).cfg.max_page_size;
    let limit = match rest_size(&q, "limit", max) {
        Ok(n) => n,
        Err(r) => return *r,
    };
    let asked = match q.get("cursor").map(String::as_str) {
        None | Some("") => 0,
        Some(t) => match decode_after(t) {
            Some(o) => o,
            None => {
                return rest_error(StatusCode::BAD_REQUEST, &format!("unknown cursor {t:?}"));
            }
        },
    };
    let offset = {
        let g = lock(&s);
        let n = g.users.len();
        match g.faults.rest.past_end_repeats_last && n > 0 && asked >= n {
            true => (n - 1) / limit * limit,
            false => asked,
        }
    };
    let p = RestParams {
        offset,
        per_page: limit,
        page: offset / limit + 1,
        asked,
    };
    rest_list(s, p, RestMode::Cursor).await
}

/// `GET /api/users-link?[after=TOKEN&]per_page=N`: `Link`-header paging (see
/// module doc).
pub(super) async fn rest_users_link(
    State(s): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let per_page = match per_page_of(&s, &q) {
        Ok(n) => n,
        Err(r) => return *r,
    };
    let offset = match q.get("after").map(String::as_str) {
        None | Some("") => 0,
        Some(t) => match decode_after(t) {
            Some(o) => o,
            None => {
                return rest_error(
                    StatusCode::BAD_REQUEST,
                    &format!("unknown after token {t:?}"),
                );
            }
        },
    };
    let asked = offset;
    let offset = {
        let g = lock(&s);
        let n = g.users.len();
        match g.faults.rest.past_end_repeats_last && n > 0 && offset >= n {
            true => (n - 1) / per_page * per_page,
            false => offset,
        }
    };
    let p = RestParams {
        offset,
        per_page,
        page: offset / per_page + 1,
        asked,
    };
    rest_list(s, p, RestMode::Link).await
}

/// The URL of a `Link`-mode page: the first page without `after`.
pub(super) fn link_url(origin: &str, offset: Option<usize>, per_page: usize) -> String {
    match offset {
        None => format!("{origin}{REST_USERS_LINK_PATH}?per_page={per_page}"),
        Some(o) => format!(
            "{origin}{REST_USERS_LINK_PATH}?after={}&per_page={per_page}",
            encode_after(o)
        ),
    }
}

pub(super) async fn rest_list(s: Shared, p: RestParams, mode: RestMode) -> Response {
    let (delay, outcome, page_no, window) = {
        let mut g = lock(&s);
        if g.auth_expired() {
            return rest_unauthorized("the access token expired", true);
        }
        let window = match rate_window(&mut g) {
            Ok(w) => w,
            Err(refused) => return *refused,
        };
        let as_403 = g.faults.rest.rate_limit_as_403;
        let pg = g.serve_page(ResourceType::Users, p.offset, p.per_page, true);
        let outcome =
            match pg.injected {
                Some(Injected::Status(st)) => {
                    let st = StatusCode::from_u16(st).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                    RestOutcome::Done(rest_error(st, "injected page failure"))
                }
                Some(Injected::RateLimit(
                    RetryAfter::Seconds(secs) | RetryAfter::HttpDate(secs),
                )) if as_403 => RestOutcome::Done(github_rate_limited(epoch_s() + secs)),
                Some(Injected::RateLimit(r)) => {
                    let mut resp = rest_error(StatusCode::TOO_MANY_REQUESTS, "too many requests");
                    add_rate_limit_headers(&mut resp, r);
                    RestOutcome::Done(resp)
                }
                None if mode == RestMode::Cursor => {
                    let ordinal = p.offset / p.per_page + 1;
                    let next = match g.faults.link_cycle {
                        Some((a, b)) if pg.pf && ordinal == a => {
                            let b = b.max(1);
                            match b {
                                1 => String::new(),
                                _ => encode_after((b - 1).saturating_mul(p.per_page)),
                            }
                        }
                        _ if p.offset + p.per_page < pg.true_total
                            || g.faults.rest.past_end_repeats_last
                            || g.faults.rest.past_end_empty_with_next =>
                        {
                            encode_after(p.asked + p.per_page)
                        }
                        _ => String::new(),
                    };
                    RestOutcome::Page {
                        body: json!({"users": pg.items, "meta": {"next_cursor": next}}),
                        total: pg.total,
                        links: Vec::new(),
                        malformed: pg.malformed,
                    }
                }
                None if mode == RestMode::Link => {
                    let mut origin = g.base_url.trim_end_matches("/v2").to_owned();
                    if let Some(ui) = &g.faults.rest.link_userinfo {
                        origin = origin.replacen("://", &format!("://{ui}@"), 1);
                    }
                    let ordinal = p.offset / p.per_page + 1;
                    let next = match g.faults.link_cycle {
                        Some((a, b)) if pg.pf && ordinal == a => {
                            let b = b.max(1);
                            Some(link_url(
                                &origin,
                                (b > 1).then(|| (b - 1).saturating_mul(p.per_page)),
                                p.per_page,
                            ))
                        }
                        _ if p.offset + p.per_page < pg.true_total
                            || g.faults.rest.past_end_repeats_last =>
                        {
                            Some(link_url(&origin, Some(p.asked + p.per_page), p.per_page))
                        }
                        _ => None,
                    };
                    let q = &g.faults.rest;
                    let target = |url: String| match q.link_relative {
                        // Relative to the request URI `/api/users-link?...`.
                        true => url.rsplit('/').next().unwrap_or_default().to_owned(),
                        false => url,
                    };
                    let next = next.map(target);
                    let mut links = vec![format!(
                        "<{}>; rel=\"first\"",
                        target(link_url(&origin, None, p.per_page))
                    )];
                    if let Some(n) = &next {
                        links.push(format!("<{n}>; rel=\"next\""));
                    }
                    if !q.link_per_line {
                        links = vec![links.join(", ")];
                    }
                    let body = match q.next_in_body {
                        true => {
                            links.clear();
                            json!({"users": pg.items, "links": {"next": next}})
                        }
                        false => Value::Array(pg.items),
                    };
                    RestOutcome::Page {
                        body,
                        total: pg.total,
                        links,
                        malformed: pg.malformed,
                    }
                }
                None => {
                    let body = json!({
                        "users": pg.items,
                        "total": pg.total,
                        "page": p.page,
                        "per_page": p.per_page,
                    });
                    RestOutcome::Page {
                        body,
                        total: pg.total,
                        links: Vec::new(),
                        malformed: pg.malformed,
                    }
                }
            };
        (pg.delay, outcome, pg.page_no, window)
    };
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let mut resp = match outcome {
        RestOutcome::Done(r) => r,
        RestOutcome::Page {
            body,
            total,
            links,
            malformed,
        } => {
            let mut r = render_page(&body, malformed, REST_JSON);
            if malformed != Some(Malformed::NotJson) {
                let h = r.headers_mut();
                h.insert(TOTAL_COUNT_HEADER, HeaderValue::from(total));
                for l in links.iter().filter_map(|l| HeaderValue::from_str(l).ok()) {
                    h.append(header::LINK, l);
                }
            }
            r
        }
    };
    if let Some((limit, remaining, reset_s)) = window {
        let h = resp.headers_mut();
        h.insert("x-ratelimit-limit", HeaderValue::from(limit));
        h.insert("x-ratelimit-remaining", HeaderValue::from(remaining));
        h.insert("x-ratelimit-reset", HeaderValue::from(reset_s));
    }
    if let Some(n) = page_no {
        resp.extensions_mut().insert(PageNo(n));
    }
    resp
}

/// Now, in whole epoch seconds.
fn epoch_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `RestQuirks::rate_window`: takes one request from the current window and
/// returns `(limit, remaining, reset epoch s)` for the answer's headers, or
/// the 403 a request gets with none remaining; `Ok(None)` without a window.
fn rate_window(g: &mut Inner) -> Result<Option<(usize, usize, u64)>, Box<Response>> {
    let Some(w) = g.faults.rest.rate_window else {
        return Ok(None);
    };
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let (used, end_s) = match g.c.rate_window {
        Some((used, end_s)) if now_ms < end_s * 1000 => (used, end_s),
        _ => (0, (now_ms + w.window_s * 1000).div_ceil(1000)),
    };
    if used >= w.requests {
        g.c.rate_window = Some((used, end_s));
        return Err(Box::new(github_rate_limited(end_s)));
    }
    g.c.rate_window = Some((used + 1, end_s));
    Ok(Some((w.requests, w.requests - used - 1, end_s)))
}

/// GitHub's answer to a request over its rate limit: 403, not 429.
fn github_rate_limited(reset_s: u64) -> Response {
    let mut resp = rest_error(
        StatusCode::FORBIDDEN,
        "API rate limit exceeded for 127.0.0.1. (But here's the good news: Authenticated requests get a higher rate limit.)",
    );
    let h = resp.headers_mut();
    h.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
    h.insert("x-ratelimit-reset", HeaderValue::from(reset_s));
    resp
}
