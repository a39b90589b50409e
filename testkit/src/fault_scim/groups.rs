//! Group PATCHes: member add / remove (filter and value-list form) / replace,
//! `displayName`, each operation validated before any is applied.

use super::*;

/// One validated change of a group PATCH.
pub(super) enum GroupChange {
    Add(Vec<String>),
    Remove(Vec<String>),
    RemoveAll,
    Set(Vec<String>),
    DisplayName(String),
}

/// `[{"value":UID},..]` (a single object is taken as a list of one).
pub(super) fn member_values(v: &Value) -> Result<Vec<String>, Box<Response>> {
    let items: Vec<&Value> = match v {
        Value::Array(a) => a.iter().collect(),
        Value::Object(_) => vec![v],
        other => {
            return Err(bad_request(
                "invalidValue",
                &format!("members must be a list of {{\"value\": id}}, got {other}"),
            ));
        }
    };
    items
        .into_iter()
        .map(|m| match m.get("value").and_then(Value::as_str) {
            Some(id) if !id.is_empty() => Ok(id.to_owned()),
            _ => Err(bad_request(
                "invalidValue",
                &format!("member without a string value: {m}"),
            )),
        })
        .collect()
}

/// `members[value eq "UID"]`: `None` if `path` is not a `members[..]` filter,
/// else the id or a 400 `invalidFilter`.
pub(super) fn member_filter(path: &str) -> Option<Result<String, Box<Response>>> {
    let lower = path.to_ascii_lowercase();
    if !lower.starts_with("members[") {
        return None;
    }
    let bad = || {
        Err(bad_request(
            "invalidFilter",
            &format!("unsupported member filter {path:?}; use members[value eq \"id\"]"),
        ))
    };
    let Some(inner) = path["members[".len()..].strip_suffix(']') else {
        return Some(bad());
    };
    let mut parts = inner.trim().splitn(3, char::is_whitespace);
    let (Some(attr), Some(op), Some(lit)) = (parts.next(), parts.next(), parts.next()) else {
        return Some(bad());
    };
    if !attr.eq_ignore_ascii_case("value") || !op.eq_ignore_ascii_case("eq") {
        return Some(bad());
    }
    match serde_json::from_str::<String>(lit.trim()) {
        Ok(id) => Some(Ok(id)),
        Err(_) => Some(bad()),
    }
}

pub(super) fn group_value_changes(
    kind: &str,
    obj: &serde_json::Map<String, Value>,
) -> Result<Vec<GroupChange>, Box<Response>> {
    let mut out = Vec::new();
    for (k, v) in obj {
        match k.to_ascii_lowercase().as_str() {
            "members" if kind == "add" => out.push(GroupChange::Add(member_values(v)?)),
            "members" => out.push(GroupChange::Set(member_values(v)?)),
            "displayname" => out.push(display_name_change(v)?),
            _ => {
                return Err(bad_request(
                    "invalidPath",
                    &format!("attribute {k:?} cannot be patched here"),
                ));
            }
        }
    }
    Ok(out)
}

pub(super) fn display_name_change(v: &Value) -> Result<GroupChange, Box<Response>> {
    match v {
        Value::String(s) if !s.is_empty() => Ok(GroupChange::DisplayName(s.clone())),
        v => Err(bad_request(
            "invalidValue",
            &format!("displayName must be a non-empty string, got {v}"),
        )),
    }
}

pub(super) fn group_changes(ops: &[Value]) -> Result<Vec<GroupChange>, Box<Response>> {
    let mut changes = Vec::new();
    for op in ops {
        let kind = op_kind(op);
        let path = op_path(op);
        let value = op.get("value");
        match (kind.as_str(), path) {
            ("remove", None) => return Err(bad_request("noTarget", "remove without path")),
            ("remove", Some(p)) if p.eq_ignore_ascii_case("members") => match value {
                Some(v) => changes.push(GroupChange::Remove(member_values(v)?)),
                None => changes.push(GroupChange::RemoveAll),
            },
            ("remove", Some(p)) => match member_filter(p) {
                Some(id) => changes.push(GroupChange::Remove(vec![id?])),
                None => {
                    return Err(bad_request(
                        "invalidPath",
                        &format!("cannot remove {p:?} from a group"),
                    ));
                }
            },
            ("add" | "replace", _) if value.is_none() => {
                return Err(bad_request("invalidSyntax", "operation without value"));
            }
            ("add" | "replace", None) => {
                let Some(obj) = value.and_then(Value::as_object) else {
                    return Err(bad_request(
                        "invalidSyntax",
                        "a value without path must be an object",
                    ));
                };
                changes.extend(group_value_changes(&kind, obj)?);
            }
            ("add" | "replace", Some(p)) => {
                let v = value.expect("checked above");
                match p.to_ascii_lowercase().as_str() {
                    "members" if kind == "add" => changes.push(GroupChange::Add(member_values(v)?)),
                    "members" => changes.push(GroupChange::Set(member_values(v)?)),
                    "displayname" => changes.push(display_name_change(v)?),
                    _ => {
                        return Err(bad_request(
                            "invalidPath",
                            &format!("attribute {p:?} cannot be patched here"),
                        ));
                    }
                }
            }
            _ => {
                return Err(bad_request(
                    "invalidSyntax",
                    &format!("unsupported op {:?}", op["op"]),
                ));
            }
        }
    }
    Ok(changes)
}

/// RFC 7644 §3.5.2 on a group: membership and `displayName` (see the module
/// doc for the supported forms).
pub(super) async fn patch_group(
    State(s): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let changes = match patch_ops(&body).and_then(|ops| group_changes(&ops)) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let mut g = lock(&s);
    let if_match = header_text(&headers, header::IF_MATCH);
    if let Err(r) = g.write_gate("PATCH", Target::Group, &id, if_match.as_deref()) {
        return *r;
    }
    for c in &changes {
        if let GroupChange::Add(ids) | GroupChange::Set(ids) = c
            && let Some(unknown) = ids.iter().find(|m| !g.users.contains_key(*m))
        {
            return write_resp(
                scim_error(
                    StatusCode::BAD_REQUEST,
                    Some("invalidValue"),
                    &format!("member {unknown} is not a known User"),
                ),
                false,
                0,
            );
        }
    }
    if let Some(r) = g.noop_answer() {
        return r;
    }
    g.hold_view(Target::Group, &id);
    let x = g.groups.get_mut(&id).expect("checked by write_gate");
    let before = (x.members.clone(), x.display_name.clone());
    for c in changes {
        match c {
            GroupChange::Add(ids) => {
                for m in ids {
                    if !x.members.contains(&m) {
                        x.members.push(m);
                    }
                }
            }
            GroupChange::Remove(ids) => x.members.retain(|m| !ids.contains(m)),
            GroupChange::RemoveAll => x.members.clear(),
            GroupChange::Set(ids) => x.members = dedup(ids),
            GroupChange::DisplayName(n) => x.display_name = n,
        }
    }
    if (&x.members, &x.display_name) != (&before.0, &before.1) {
        x.version += 1;
    }
    g.applied_answer()
}
