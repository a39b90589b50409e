//! The plain REST JSON variants over the same users and faults: page-number
//! paging (`/api/users`) and RFC 8288 `Link` paging (`/api/users-link`) with
//! `X-Total-Count`.

use super::*;

pub(super) enum RestOutcome {
    Done(Response),
    Page {
        body: Value,
        /// `X-Total-Count`.
        total: u64,
        link: Option<String>,
        malformed: Option<Malformed>,
    },
}

/// Where a REST list request starts and how many items it asks for.
pub(super) struct RestParams {
    pub(super) offset: usize,
    pub(super) per_page: usize,
    /// Page-number mode: the (effective) page number.
    pub(super) page: usize,
}

/// `per_page` of a REST list request: default [`DEFAULT_PAGE_SIZE`], capped
/// at `max`; not an integer or below 1 is a 400.
pub(super) fn rest_per_page(
    q: &HashMap<String, String>,
    max: usize,
) -> Result<usize, Box<Response>> {
    let n = match q.get("per_page") {
        None => DEFAULT_PAGE_SIZE,
        Some(v) => match v.trim().parse::<i64>() {
            Ok(n) if n >= 1 => n as usize,
            _ => {
                return Err(Box::new(rest_error(
                    StatusCode::BAD_REQUEST,
                    &format!("per_page {v:?} is not an integer of at least 1"),
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
    let page = match q.get("page") {
        None => 1,
        Some(v) => match v.trim().parse::<i64>() {
            Ok(n) => n.max(1) as usize,
            Err(_) => {
                return rest_error(
                    StatusCode::BAD_REQUEST,
                    &format!("page {v:?} is not an integer"),
                );
            }
        },
    };
    let p = RestParams {
        offset: (page - 1).saturating_mul(per_page),
        per_page,
        page,
    };
    rest_list(s, p, false).await
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
    let p = RestParams {
        offset,
        per_page,
        page: offset / per_page + 1,
    };
    rest_list(s, p, true).await
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

pub(super) async fn rest_list(s: Shared, p: RestParams, link_mode: bool) -> Response {
    let (delay, outcome, page_no) = {
        let mut g = lock(&s);
        if g.auth_expired() {
            return rest_unauthorized("the access token expired", true);
        }
        let pg = g.serve_page(ResourceType::Users, p.offset, p.per_page, true);
        let outcome = match pg.injected {
            Some(Injected::Status(st)) => {
                let st = StatusCode::from_u16(st).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                RestOutcome::Done(rest_error(st, "injected page failure"))
            }
            Some(Injected::RateLimit(r)) => {
                let mut resp = rest_error(StatusCode::TOO_MANY_REQUESTS, "too many requests");
                add_rate_limit_headers(&mut resp, r);
                RestOutcome::Done(resp)
            }
            None if link_mode => {
                let origin = g.base_url.trim_end_matches("/v2").to_owned();
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
                    _ if p.offset + p.per_page < pg.true_total => {
                        Some(link_url(&origin, Some(p.offset + p.per_page), p.per_page))
                    }
                    _ => None,
                };
                let mut link = format!("<{}>; rel=\"first\"", link_url(&origin, None, p.per_page));
                if let Some(n) = next {
                    link.push_str(&format!(", <{n}>; rel=\"next\""));
                }
                RestOutcome::Page {
                    body: Value::Array(pg.items),
                    total: pg.total,
                    link: Some(link),
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
                    link: None,
                    malformed: pg.malformed,
                }
            }
        };
        (pg.delay, outcome, pg.page_no)
    };
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let mut resp = match outcome {
        RestOutcome::Done(r) => r,
        RestOutcome::Page {
            body,
            total,
            link,
            malformed,
        } => {
            let mut r = render_page(&body, malformed, REST_JSON);
            if malformed != Some(Malformed::NotJson) {
                let h = r.headers_mut();
                h.insert(TOTAL_COUNT_HEADER, HeaderValue::from(total));
                if let Some(l) = link.and_then(|l| HeaderValue::from_str(&l).ok()) {
                    h.insert(header::LINK, l);
                }
            }
            r
        }
    };
    if let Some(n) = page_no {
        resp.extensions_mut().insert(PageNo(n));
    }
    resp
}
