//! The axum router: the routes, the tracking middleware (request log,
//! latency, bearer auth and its expiry, due mutations, the write log, W10's
//! outage after a write) and the
//! `ServiceProviderConfig` discovery document.

use super::*;

pub(super) fn router(shared: Shared) -> Router {
    Router::new()
        .route("/v2/Users", get(list_users))
        .route(
            "/v2/Users/{id}",
            get(get_user).patch(patch_user).delete(delete_user),
        )
        .route("/v2/Groups", get(list_groups))
        .route(
            "/v2/Groups/{id}",
            get(get_group).patch(patch_group).delete(delete_group),
        )
        .route("/v2/ServiceProviderConfig", get(service_provider_config))
        .route(REST_USERS_PATH, get(rest_users_paged))
        .route(REST_USERS_LINK_PATH, get(rest_users_link))
        .route(REST_USERS_OFFSET_PATH, get(rest_users_offset))
        .route(REST_USERS_CURSOR_PATH, get(rest_users_cursor))
        .route("/api/users/{id}", get(rest_get_user).patch(rest_patch_user))
        .route(
            "/api/groups/{gid}/members/{uid}",
            get(rest_get_member)
                .delete(rest_write_member)
                .put(rest_write_member),
        )
        .fallback(|| async { scim_error(StatusCode::NOT_FOUND, None, "no such endpoint") })
        .layer(middleware::from_fn_with_state(shared.clone(), track))
        .with_state(shared)
}

/// Marks a response with the `page_no` of the list request it answers.
#[derive(Clone, Copy)]
pub(super) struct PageNo(pub(super) usize);

pub(super) fn is_write_method(m: &str) -> bool {
    ["POST", "PUT", "PATCH", "DELETE"]
        .iter()
        .any(|w| w.eq_ignore_ascii_case(m))
}

/// Logs every request, adds latency, enforces the bearer token and auth expiry
/// (with a REST error body under `/api/`), and applies a due mutation. After
/// a write it records whether it was applied and then waits out the write's
/// `write_applied_then_slow` delay.
pub(super) async fn track(State(s): State<Shared>, req: Request, next: Next) -> Response {
    let at = Instant::now();
    let rest = req.uri().path().starts_with("/api/");
    let write = is_write_method(req.method().as_str());
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or("").to_owned());
    let if_match = req
        .headers()
        .get(header::IF_MATCH)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let (req, body) = if req.method() == Method::GET || req.method() == Method::HEAD {
        (req, String::new())
    } else {
        let (parts, b) = req.into_parts();
        let bytes = axum::body::to_bytes(b, 2 << 20).await.unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        (Request::from_parts(parts, Body::from(bytes)), text)
    };
    let (idx, latency) = {
        let mut g = lock(&s);
        g.log.push(RequestRecord {
            method: req.method().to_string(),
            path_and_query: req
                .uri()
                .path_and_query()
                .map(|p| p.as_str().to_owned())
                .unwrap_or_default(),
            status: 0,
            at,
            has_authorization: auth.is_some(),
            page_no: None,
            if_match,
            body,
            applied: None,
        });
        (g.log.len() - 1, g.faults.latency_ms)
    };
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    let (token_ok, expired, down, echo) = {
        let mut g = lock(&s);
        g.maybe_mutate();
        let token_ok = match &g.cfg.bearer_token {
            None => true,
            Some(t) => auth.as_deref().is_some_and(|a| {
                a.split_once(' ').is_some_and(|(scheme, tok)| {
                    scheme.eq_ignore_ascii_case("bearer") && tok.trim() == t
                })
            }),
        };
        let echo = match (&auth, g.faults.echo_credentials_in_errors) {
            (Some(a), true) => {
                let tok = a.split_once(' ').map_or(a.as_str(), |(_, t)| t.trim());
                format!(
                    "token rejected: {a}; raw {tok}; encoded {}",
                    crate::saas::base64(tok.as_bytes())
                )
            }
            _ => String::new(),
        };
        (token_ok, g.auth_expired(), g.c.down, echo)
    };
    let detail = |d: &'static str| -> String {
        if echo.is_empty() {
            d.to_owned()
        } else {
            format!("{echo}: {d}")
        }
    };
    let resp = if down {
        scim_error(
            StatusCode::SERVICE_UNAVAILABLE,
            None,
            "the service is down (injected)",
        )
    } else if !token_ok && rest {
        rest_unauthorized(&detail("missing or wrong bearer token"), false)
    } else if !token_ok {
        unauthorized(&detail("missing or wrong bearer token"), false)
    } else if expired && rest {
        rest_unauthorized(&detail("the access token expired"), true)
    } else if expired {
        unauthorized(&detail("the access token expired"), true)
    } else {
        next.run(req).await
    };
    let page_no = resp.extensions().get::<PageNo>().map(|p| p.0);
    let info = resp.extensions().get::<WriteInfo>().copied();
    {
        let mut g = lock(&s);
        if let Some(r) = g.log.get_mut(idx) {
            r.status = resp.status().as_u16();
            r.page_no = page_no;
            r.applied = write.then(|| info.is_some_and(|w| w.applied));
        }
        if g.faults.down_after_write && info.is_some_and(|w| w.applied) {
            g.c.down = true;
        }
    }
    if let Some(ms) = info.map(|w| w.delay_ms).filter(|&ms| ms > 0) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    resp
}

/// RFC 7643 §5, with the RFC 9865 `pagination` block, or as
/// [`Faults::spc`] bends it.
pub(super) async fn service_provider_config(State(s): State<Shared>) -> Response {
    let g = lock(&s);
    let mut body = json!({
        "schemas": [SPC_SCHEMA],
        "patch": {"supported": true},
        "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": false, "maxResults": g.cfg.max_page_size},
        "changePassword": {"supported": false},
        "sort": {"supported": false},
        "etag": {"supported": true},
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "OAuth Bearer Token",
            "description": "Authentication with a bearer token",
        }],
        "pagination": {
            "cursor": true,
            "index": true,
            "defaultPaginationMethod": "index",
            "defaultPageSize": DEFAULT_PAGE_SIZE,
            "maxPageSize": g.cfg.max_page_size,
            "cursorTimeout": 3600,
        },
        "meta": {
            "resourceType": "ServiceProviderConfig",
            "location": format!("{}/ServiceProviderConfig", g.base_url),
        },
    });
    match g.faults.spc {
        SpcAnswer::Honest => {}
        SpcAnswer::MaxResults(n) => {
            body["filter"]["maxResults"] = json!(n);
            if let Some(o) = body.as_object_mut() {
                o.remove("pagination");
            }
        }
        SpcAnswer::Omitted => {
            if let Some(o) = body.as_object_mut() {
                o.remove("pagination");
            }
            if let Some(f) = body["filter"].as_object_mut() {
                f.remove("maxResults");
            }
        }
        SpcAnswer::Fails(status) => {
            let st = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return scim_error(st, None, "injected ServiceProviderConfig failure");
        }
    }
    scim_json(StatusCode::OK, &body)
}
