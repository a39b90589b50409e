//! The write path of users and the shared write machinery: single-resource
//! GETs with `ETag`, the write gate (body syntax, write faults W1..W3, unknown
//! id, `If-Match`), DELETE, and user PATCHes.

use super::*;

pub(super) fn with_etag(mut r: Response, version: u64) -> Response {
    if let Ok(v) = HeaderValue::from_str(&weak_etag(version)) {
        r.headers_mut().insert(header::ETAG, v);
    }
    r
}

pub(super) async fn get_user(State(s): State<Shared>, Path(id): Path<String>) -> Response {
    let g = lock(&s);
    if g.faults.single_gets_not_found {
        return scim_error(StatusCode::NOT_FOUND, None, &format!("User {id} not found"));
    }
    if let Some(r) = g.lagged_view(Target::User, &id) {
        return r;
    }
    match g.users.get(&id) {
        Some(u) => with_etag(scim_json(StatusCode::OK, &g.user_json(u)), u.version),
        None => scim_error(StatusCode::NOT_FOUND, None, &format!("User {id} not found")),
    }
}

pub(super) async fn get_group(
    State(s): State<Shared>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let g = lock(&s);
    if g.faults.single_gets_not_found {
        return scim_error(
            StatusCode::NOT_FOUND,
            None,
            &format!("Group {id} not found"),
        );
    }
    let asked = q.get("attributes").is_some_and(|a| {
        a.split(',')
            .any(|x| x.trim().eq_ignore_ascii_case("members"))
    });
    let show = match g.faults.members_shown {
        MembersShown::Always => true,
        MembersShown::OnRequest => asked,
        MembersShown::Never => false,
    };
    let single_cap = g.faults.members_capped.and_then(|m| m.single);
    let shown = |mut v: Value| {
        if let Some(n) = single_cap {
            cap_members(&mut v, n, false);
        }
        if !show && let Some(o) = v.as_object_mut() {
            o.remove("members");
        }
        v
    };
    if let Some(lag) = g.lagged.get(&("Group", id.clone()))
        && Instant::now() < lag.until
    {
        return match &lag.body {
            Some((v, ver)) => with_etag(scim_json(StatusCode::OK, &shown(v.clone())), *ver),
            None => group_not_found(&id),
        };
    }
    match g.groups.get(&id) {
        Some(x) => with_etag(
            scim_json(StatusCode::OK, &shown(g.group_json(x))),
            x.version,
        ),
        None => group_not_found(&id),
    }
}

fn group_not_found(id: &str) -> Response {
    scim_error(
        StatusCode::NOT_FOUND,
        None,
        &format!("Group {id} not found"),
    )
}

/// Which kind of resource a write targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Target {
    User,
    Group,
}

impl Target {
    pub(super) fn name(self) -> &'static str {
        match self {
            Target::User => "User",
            Target::Group => "Group",
        }
    }
}

/// Put on a write's response by its handler, read by [`track`].
#[derive(Clone, Copy, Debug)]
pub(super) struct WriteInfo {
    pub(super) applied: bool,
    /// `write_applied_then_slow`, sent after the response is logged.
    pub(super) delay_ms: u64,
}

pub(super) fn write_resp(mut r: Response, applied: bool, delay_ms: u64) -> Response {
    r.extensions_mut().insert(WriteInfo { applied, delay_ms });
    r
}

pub(super) fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

pub(super) fn header_text(h: &HeaderMap, name: header::HeaderName) -> Option<String> {
    h.get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

/// Whether an `If-Match` value names version `v`: `*`, or any entry of the
/// comma-separated list equal to `W/"v"`, `"v"` or `v` (weak comparison).
pub(super) fn etag_matches(if_match: &str, v: u64) -> bool {
    let want = v.to_string();
    if_match
        .split(',')
        .map(str::trim)
        .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t).trim_matches('"') == want)
}

pub(super) fn dedup(ids: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(ids.len());
    for id in ids {
        if !out.contains(&id) {
            out.push(id);
        }
    }
    out
}

impl Inner {
    pub(super) fn version_of(&self, t: Target, id: &str) -> Option<u64> {
        match t {
            Target::User => self.users.get(id).map(|u| u.version),
            Target::Group => self.groups.get(id).map(|x| x.version),
        }
    }

    /// W7: the old view of a resource written less than `read_lag_ms` ago.
    pub(super) fn lagged_view(&self, t: Target, id: &str) -> Option<Response> {
        let lag = self.lagged.get(&(t.name(), id.to_owned()))?;
        if Instant::now() >= lag.until {
            return None;
        }
        Some(match &lag.body {
            Some((v, ver)) => with_etag(scim_json(StatusCode::OK, v), *ver),
            None => scim_error(
                StatusCode::NOT_FOUND,
                None,
                &format!("{} {id} not found", t.name()),
            ),
        })
    }

    /// W7: before a write is applied, keep what GETs show for `read_lag_ms`
    /// (an older view still in force is kept, not replaced).
    pub(super) fn hold_view(&mut self, t: Target, id: &str) {
        let Some(ms) = self.faults.read_lag_ms else {
            return;
        };
        let now = Instant::now();
        let key = (t.name(), id.to_owned());
        if self.lagged.get(&key).is_some_and(|l| now < l.until) {
            return;
        }
        let body = match t {
            Target::User => self.users.get(id).map(|u| (self.user_json(u), u.version)),
            Target::Group => self.groups.get(id).map(|x| (self.group_json(x), x.version)),
        };
        let until = now + Duration::from_millis(ms);
        self.lagged.insert(key, Lagged { body, until });
    }

    pub(super) fn remove_resource(&mut self, t: Target, id: &str) -> bool {
        match t {
            Target::User => self.remove_user(id),
            Target::Group => self.groups.remove(id).is_some(),
        }
    }

    /// What every write goes through before its own checks: `write_fail`,
    /// `write_not_found`, unknown id (404) and `If-Match` (412). `Err` is the
    /// answer (nothing applied).
    pub(super) fn write_gate(
        &mut self,
        method: &str,
        t: Target,
        id: &str,
        if_match: Option<&str>,
    ) -> Result<(), Box<Response>> {
        let fails = self.faults.write_fail.clone();
        for (i, w) in fails.iter().enumerate() {
            let matches = (w.method.is_empty() || w.method.eq_ignore_ascii_case(method))
                && (w.id.is_empty() || w.id == id);
            if !matches {
                continue;
            }
            let h = self.c.write_hits.entry(i).or_insert(0);
            if *h < w.times {
                *h = h.saturating_add(1);
                let st =
                    StatusCode::from_u16(w.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                return Err(Box::new(write_resp(
                    scim_error(st, None, "injected write failure"),
                    false,
                    0,
                )));
            }
        }
        let not_found = || {
            write_resp(
                scim_error(
                    StatusCode::NOT_FOUND,
                    None,
                    &format!("{} {id} not found", t.name()),
                ),
                false,
                0,
            )
        };
        if self.faults.write_not_found {
            self.remove_resource(t, id);
            return Err(Box::new(not_found()));
        }
        let Some(v) = self.version_of(t, id) else {
            return Err(Box::new(not_found()));
        };
        if let Some(m) = if_match
            && !etag_matches(m, v)
        {
            return Err(Box::new(write_resp(
                scim_error(
                    StatusCode::PRECONDITION_FAILED,
                    None,
                    &format!(
                        "If-Match {m} does not match the current version {} of {} {id}",
                        weak_etag(v),
                        t.name()
                    ),
                ),
                false,
                0,
            )));
        }
        Ok(())
    }

    /// After the gate and the write's own checks: `write_noop` answers 204
    /// here (`Some`), else `None` and the caller applies the change.
    pub(super) fn noop_answer(&self) -> Option<Response> {
        self.faults
            .write_noop
            .then(|| write_resp(no_content(), false, 0))
    }

    /// The 204 of an applied write (with its `write_applied_then_slow` delay).
    pub(super) fn applied_answer(&self) -> Response {
        write_resp(
            no_content(),
            true,
            self.faults.write_applied_then_slow.unwrap_or(0),
        )
    }
}

pub(super) fn bad_request(scim_type: &str, detail: &str) -> Box<Response> {
    Box::new(scim_error(StatusCode::BAD_REQUEST, Some(scim_type), detail))
}

/// The `Operations` of a PatchOp body (JSON, PatchOp schema, non-empty).
pub(super) fn patch_ops(body: &[u8]) -> Result<Vec<Value>, Box<Response>> {
    let Ok(doc) = serde_json::from_slice::<Value>(body) else {
        return Err(bad_request("invalidSyntax", "request body is not JSON"));
    };
    let has_schema = doc["schemas"]
        .as_array()
        .is_some_and(|a| a.iter().any(|s| s == PATCH_OP_SCHEMA));
    if !has_schema {
        return Err(bad_request(
            "invalidSyntax",
            "schemas must contain the PatchOp URN",
        ));
    }
    match doc
        .get("Operations")
        .or_else(|| doc.get("operations"))
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
    {
        Some(ops) => Ok(ops.clone()),
        None => Err(bad_request(
            "invalidSyntax",
            "Operations must be a non-empty array",
        )),
    }
}

pub(super) fn op_kind(op: &Value) -> String {
    op["op"].as_str().unwrap_or("").to_ascii_lowercase()
}

pub(super) fn op_path(op: &Value) -> Option<&str> {
    op.get("path").and_then(Value::as_str).map(str::trim)
}

pub(super) async fn delete_user(
    State(s): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    delete_resource(&s, Target::User, &id, &headers)
}

pub(super) async fn delete_group(
    State(s): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    delete_resource(&s, Target::Group, &id, &headers)
}

pub(super) fn delete_resource(s: &Shared, t: Target, id: &str, headers: &HeaderMap) -> Response {
    let mut g = lock(s);
    let if_match = header_text(headers, header::IF_MATCH);
    if let Err(r) = g.write_gate("DELETE", t, id, if_match.as_deref()) {
        return *r;
    }
    if let Some(r) = g.noop_answer() {
        return r;
    }
    g.hold_view(t, id);
    g.remove_resource(t, id);
    g.applied_answer()
}

/// One validated change of a user PATCH.
pub(super) enum Change {
    Active(bool),
    UserName(String),
    DisplayName(Option<String>),
    Title(Option<String>),
}

pub(super) fn change_for(attr: &str, value: &Value) -> Result<Change, Box<Response>> {
    let bad = |t: &str, d: String| Err(bad_request(t, &d));
    let optional = |name: &str| match value {
        Value::String(s) => Ok(Some(s.clone())),
        Value::Null => Ok(None),
        v => Err(bad_request(
            "invalidValue",
            &format!("{name} must be a string or null, got {v}"),
        )),
    };
    match attr.to_ascii_lowercase().as_str() {
        "active" => match value {
            Value::Bool(b) => Ok(Change::Active(*b)),
            v => bad("invalidValue", format!("active must be a boolean, got {v}")),
        },
        "username" => match value {
            Value::String(s) if !s.is_empty() => Ok(Change::UserName(s.clone())),
            v => bad(
                "invalidValue",
                format!("userName must be a non-empty string, got {v}"),
            ),
        },
        "displayname" => optional("displayName").map(Change::DisplayName),
        "title" => optional("title").map(Change::Title),
        other => bad(
            "invalidPath",
            format!("attribute {other:?} cannot be patched here"),
        ),
    }
}

pub(super) fn user_changes(ops: &[Value]) -> Result<Vec<Change>, Box<Response>> {
    let mut changes = Vec::new();
    for op in ops {
        let kind = op_kind(op);
        if kind == "remove" {
            let Some(path) = op_path(op) else {
                return Err(bad_request("noTarget", "remove without path"));
            };
            match path.to_ascii_lowercase().as_str() {
                "displayname" => changes.push(Change::DisplayName(None)),
                "title" => changes.push(Change::Title(None)),
                _ => {
                    return Err(bad_request(
                        "invalidPath",
                        &format!("attribute {path:?} cannot be removed here"),
                    ));
                }
            }
            continue;
        }
        if kind != "replace" && kind != "add" {
            return Err(bad_request(
                "invalidSyntax",
                &format!("unsupported op {:?}", op["op"]),
            ));
        }
        let Some(value) = op.get("value") else {
            return Err(bad_request("invalidSyntax", "operation without value"));
        };
        match op_path(op) {
            Some(path) => changes.push(change_for(path, value)?),
            None => {
                let Some(obj) = value.as_object() else {
                    return Err(bad_request(
                        "invalidSyntax",
                        "a value without path must be an object",
                    ));
                };
                for (k, v) in obj {
                    changes.push(change_for(k, v)?);
                }
            }
        }
    }
    Ok(changes)
}

/// RFC 7644 §3.5.2 on a user (see the module doc for what is supported).
pub(super) async fn patch_user(
    State(s): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let changes = match patch_ops(&body).and_then(|ops| user_changes(&ops)) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let mut g = lock(&s);
    let if_match = header_text(&headers, header::IF_MATCH);
    if let Err(r) = g.write_gate("PATCH", Target::User, &id, if_match.as_deref()) {
        return *r;
    }
    if let Some(r) = g.noop_answer() {
        return r;
    }
    g.hold_view(Target::User, &id);
    let u = g.users.get_mut(&id).expect("checked by write_gate");
    let mut changed = false;
    for c in changes {
        match c {
            Change::Active(a) => {
                changed |= u.active != a;
                u.active = a;
            }
            Change::UserName(n) => {
                changed |= u.user_name != n;
                u.user_name = n;
            }
            Change::DisplayName(d) => {
                changed |= u.display_name != d;
                u.display_name = d;
            }
            Change::Title(t) => {
                changed |= u.title != t;
                u.title = t;
            }
        }
    }
    if changed {
        u.version += 1;
    }
    g.applied_answer()
}
