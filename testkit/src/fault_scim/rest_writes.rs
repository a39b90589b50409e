//! REST writes on the fault server's JSON API, the shape many SaaS APIs
//! have: `GET` / `PATCH /api/users/{id}` (body `{"active": false}`), and a
//! membership as its own resource, GitHub-style:
//! `GET /api/groups/{gid}/members/{uid}` answers 204 for a member and 404
//! otherwise, `DELETE` / `PUT` remove and add it. The write faults apply as
//! on SCIM: `write_fail` (W2), `write_noop` (W1: 204 and nothing changed),
//! `write_not_found` (W3).

use super::*;

/// `GET /api/users/{id}`: the user as the REST lists show it.
pub(super) async fn rest_get_user(State(s): State<Shared>, Path(id): Path<String>) -> Response {
    let g = lock(&s);
    match g.users.get(&id) {
        Some(u) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, REST_JSON)],
            Inner::rest_user_json(u).to_string(),
        )
            .into_response(),
        None => rest_error(StatusCode::NOT_FOUND, &format!("user {id} not found")),
    }
}

/// `PATCH /api/users/{id}` with `{"active": bool}`.
pub(super) async fn rest_patch_user(
    State(s): State<Shared>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let active = match serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("active").and_then(Value::as_bool))
    {
        Some(a) => a,
        None => {
            return rest_error(
                StatusCode::BAD_REQUEST,
                "body must be a JSON object with a boolean \"active\"",
            );
        }
    };
    let mut g = lock(&s);
    if let Err(r) = g.write_gate("PATCH", Target::User, &id, None) {
        return *r;
    }
    if let Some(r) = g.noop_answer() {
        return r;
    }
    g.hold_view(Target::User, &id);
    if let Some(u) = g.users.get_mut(&id)
        && u.active != active
    {
        u.active = active;
        u.version += 1;
    }
    g.applied_answer()
}

/// `GET /api/groups/{gid}/members/{uid}`: 204 member, 404 not (or no group).
pub(super) async fn rest_get_member(
    State(s): State<Shared>,
    Path((gid, uid)): Path<(String, String)>,
) -> Response {
    let g = lock(&s);
    match g.groups.get(&gid) {
        Some(x) if x.members.contains(&uid) => no_content(),
        Some(_) => rest_error(
            StatusCode::NOT_FOUND,
            &format!("{uid} is not a member of {gid}"),
        ),
        None => rest_error(StatusCode::NOT_FOUND, &format!("group {gid} not found")),
    }
}

/// `DELETE` (remove) or `PUT` (add) `/api/groups/{gid}/members/{uid}`.
pub(super) async fn rest_write_member(
    State(s): State<Shared>,
    method: Method,
    Path((gid, uid)): Path<(String, String)>,
) -> Response {
    let add = method == Method::PUT;
    let mut g = lock(&s);
    if let Err(r) = g.write_gate(method.as_str(), Target::Group, &gid, None) {
        return *r;
    }
    if let Some(r) = g.noop_answer() {
        return r;
    }
    g.hold_view(Target::Group, &gid);
    if let Some(x) = g.groups.get_mut(&gid) {
        let had = x.members.contains(&uid);
        if add && !had {
            x.members.push(uid);
            x.version += 1;
        } else if !add && had {
            x.members.retain(|m| m != &uid);
            x.version += 1;
        }
    }
    g.applied_answer()
}
