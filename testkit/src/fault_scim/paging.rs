//! SCIM listing: `startIndex`/`count` and RFC 9865 `cursor`/`nextCursor`
//! paging of `/v2/Users` and `/v2/Groups`, opaque cursors, and rendering a page
//! (honestly or as one of the malformed bodies).

use super::*;

pub(super) fn hex_encode(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

pub(super) fn hex_decode(token: &str) -> Option<String> {
    if !token.len().is_multiple_of(2) || !token.is_ascii() {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&token[i..i + 2], 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

pub(super) fn encode_cursor(kind: ResourceType, offset: usize) -> String {
    hex_encode(&format!("{}:{offset}", kind.endpoint()))
}

pub(super) fn decode_cursor(kind: ResourceType, token: &str) -> Option<usize> {
    let text = hex_decode(token)?;
    let (k, off) = text.split_once(':')?;
    if k != kind.endpoint() {
        return None;
    }
    off.parse().ok()
}

/// The opaque `after` token of the REST `Link` API (not a SCIM cursor).
pub(super) fn encode_after(offset: usize) -> String {
    hex_encode(&format!("users-link:{offset}"))
}

pub(super) fn decode_after(token: &str) -> Option<usize> {
    hex_decode(token)?.strip_prefix("users-link:")?.parse().ok()
}

pub(super) struct ListParams {
    /// 0-based offset of the first item.
    pub(super) offset: usize,
    /// Effective page size (capped); 0 = probe.
    pub(super) count: usize,
    pub(super) cursor_mode: bool,
}

pub(super) fn parse_list(
    q: &HashMap<String, String>,
    kind: ResourceType,
    max: usize,
) -> Result<ListParams, Box<Response>> {
    let bad = |t: &str, d: String| Box::new(scim_error(StatusCode::BAD_REQUEST, Some(t), &d));
    if q.contains_key("filter") {
        return Err(bad("invalidFilter", "filtering is not supported".into()));
    }
    let count = match q.get("count") {
        None => DEFAULT_PAGE_SIZE,
        Some(c) => match c.trim().parse::<i64>() {
            Ok(n) => n.max(0) as usize,
            Err(_) => {
                return Err(bad(
                    "invalidValue",
                    format!("count {c:?} is not an integer"),
                ));
            }
        },
    }
    .min(max);
    let cursor = q.get("cursor");
    let start = q.get("startindex");
    match (cursor, start) {
        (Some(_), Some(_)) => Err(bad(
            "invalidValue",
            "cursor and startIndex are mutually exclusive".into(),
        )),
        (Some(c), None) => {
            let offset = if c.is_empty() {
                0
            } else {
                match decode_cursor(kind, c) {
                    Some(o) => o,
                    None => return Err(bad("invalidCursor", format!("unknown cursor {c:?}"))),
                }
            };
            Ok(ListParams {
                offset,
                count,
                cursor_mode: true,
            })
        }
        (None, s) => {
            let start = match s {
                None => 1,
                Some(s) => match s.trim().parse::<i64>() {
                    Ok(n) => n.max(1) as usize,
                    Err(_) => {
                        return Err(bad(
                            "invalidValue",
                            format!("startIndex {s:?} is not an integer"),
                        ));
                    }
                },
            };
            Ok(ListParams {
                offset: start - 1,
                count,
                cursor_mode: false,
            })
        }
    }
}

pub(super) enum Outcome {
    Done(Response),
    Page(Value, Option<Malformed>),
}

pub(super) async fn list_users(
    State(s): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    match id_filter_answer(&s, ResourceType::Users, q) {
        Ok(answer) => answer,
        Err(q) => list(s, ResourceType::Users, q).await,
    }
}

pub(super) async fn list_groups(
    State(s): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let q = match member_filter_answer(&s, q) {
        Ok(answer) => return answer,
        Err(q) => q,
    };
    match id_filter_answer(&s, ResourceType::Groups, q) {
        Ok(answer) => answer,
        Err(q) => list(s, ResourceType::Groups, q).await,
    }
}

pub(super) async fn list(s: Shared, kind: ResourceType, q: HashMap<String, String>) -> Response {
    let q: HashMap<String, String> = q
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect();
    let (delay, outcome, page_no) = {
        let mut g = lock(&s);
        let p = match parse_list(&q, kind, g.cfg.max_page_size) {
            Ok(p) => p,
            Err(r) => return *r,
        };
        let probe = p.count == 0;
        if g.auth_expired() {
            return unauthorized("the access token expired", true);
        }
        let pg = g.serve_page(kind, p.offset, p.count, false);
        let outcome = match pg.injected {
            Some(Injected::Status(st)) => {
                let st = StatusCode::from_u16(st).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                Outcome::Done(scim_error(st, None, "injected page failure"))
            }
            Some(Injected::RateLimit(r)) => Outcome::Done(rate_limited(r)),
            None => {
                let mut body = json!({
                    "schemas": [LIST_RESPONSE_SCHEMA],
                    "totalResults": pg.total,
                    "itemsPerPage": pg.items.len(),
                    "Resources": pg.items,
                });
                if g.applies(kind)
                    && g.faults.total_results == TotalResults::Absent
                    && let Some(o) = body.as_object_mut()
                {
                    o.remove("totalResults");
                }
                if p.cursor_mode {
                    let next = match g.faults.cursor_cycle {
                        Some((a, b)) if pg.pf && p.offset / p.count + 1 == a => {
                            Some(encode_cursor(kind, b.saturating_sub(1) * p.count))
                        }
                        _ if !probe && p.offset + p.count < pg.true_total => {
                            Some(encode_cursor(kind, p.offset + p.count))
                        }
                        _ => None,
                    };
                    if let Some(n) = next {
                        body["nextCursor"] = json!(n);
                    }
                } else {
                    body["startIndex"] = json!(p.offset + 1);
                }
                Outcome::Page(body, pg.malformed)
            }
        };
        (pg.delay, outcome, pg.page_no)
    };
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let mut resp = match outcome {
        Outcome::Done(r) => r,
        Outcome::Page(body, malformed) => render_page(&body, malformed, SCIM_JSON),
    };
    if let Some(n) = page_no {
        resp.extensions_mut().insert(PageNo(n));
    }
    resp
}

/// A 200 page: its JSON, or the broken body `malformed` asks for.
pub(super) fn render_page(
    body: &Value,
    malformed: Option<Malformed>,
    content_type: &'static str,
) -> Response {
    match malformed {
        None => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, content_type)],
            body.to_string(),
        )
            .into_response(),
        Some(Malformed::Truncated) => {
            let text = body.to_string();
            let cut = text[..text.len() / 2].to_owned();
            (StatusCode::OK, [(header::CONTENT_TYPE, content_type)], cut).into_response()
        }
        Some(Malformed::NotJson) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "upstream directory temporarily unavailable, please try again later\n",
        )
            .into_response(),
    }
}
