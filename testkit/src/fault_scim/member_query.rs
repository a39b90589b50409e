//! W9: the membership filter on `/v2/Groups`,
//! `filter=id eq "G" and members.value eq "U"` (RFC 7644 §3.4.2.2, either
//! clause first, keywords and attribute names case-insensitive, values JSON
//! strings), answered as [`Faults::member_filter`] says. Any other filter, and
//! every filter in [`MemberFilter::Refused`] mode, goes on to the listing,
//! which refuses it with 400 `invalidFilter`.

use super::*;

/// One `attr eq "value"` clause at the start of `s`: (attr, value, rest).
fn clause(s: &str) -> Option<(&str, String, &str)> {
    let s = s.trim_start();
    let (attr, rest) = s.split_once(' ')?;
    let (op, rest) = rest.trim_start().split_once(' ')?;
    if !op.eq_ignore_ascii_case("eq") {
        return None;
    }
    let rest = rest.trim_start();
    let mut values = serde_json::Deserializer::from_str(rest).into_iter::<String>();
    let value = values.next()?.ok()?;
    let used = values.byte_offset();
    Some((attr, value, &rest[used..]))
}

/// `(group id, member)` of a membership filter; `None` for any other filter.
pub(super) fn parse_member_filter(f: &str) -> Option<(String, String)> {
    let (a1, v1, rest) = clause(f)?;
    let rest = rest.trim_start();
    let (and, rest) = rest.split_once(' ')?;
    if !and.eq_ignore_ascii_case("and") {
        return None;
    }
    let (a2, v2, rest) = clause(rest)?;
    if !rest.trim().is_empty() {
        return None;
    }
    let is = |a: &str, name: &str| a.eq_ignore_ascii_case(name);
    match (a1, a2) {
        (a, b) if is(a, "id") && is(b, "members.value") => Some((v1, v2)),
        (a, b) if is(a, "members.value") && is(b, "id") => Some((v2, v1)),
        _ => None,
    }
}

/// The id of a plain `id eq "X"` filter; `None` for any other filter.
pub(super) fn parse_id_filter(f: &str) -> Option<String> {
    let (attr, value, rest) = clause(f)?;
    (attr.eq_ignore_ascii_case("id") && rest.trim().is_empty()).then_some(value)
}

/// The answer to a `/v2/Users` or `/v2/Groups` request that carries the
/// plain id filter, as [`Faults::id_filter`] says, or `Err(query)` for the
/// listing to answer (no filter, another filter, [`IdFilter::Refused`]).
pub(super) fn id_filter_answer(
    s: &Shared,
    kind: ResourceType,
    q: HashMap<String, String>,
) -> Result<Response, HashMap<String, String>> {
    let Some(id) = q
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("filter"))
        .and_then(|(_, v)| parse_id_filter(v))
    else {
        return Err(q);
    };
    let g = lock(s);
    match g.faults.id_filter {
        IdFilter::Refused => return Err(q),
        IdFilter::NotFound => {
            return Ok(scim_error(StatusCode::NOT_FOUND, None, "no such resource"));
        }
        IdFilter::Supported => {}
    }
    let matched: Vec<Value> = match kind {
        ResourceType::Users => g
            .users
            .get(&id)
            .map(|u| g.user_json(u))
            .into_iter()
            .collect(),
        ResourceType::Groups => g
            .groups
            .get(&id)
            .map(|x| g.group_json(x))
            .into_iter()
            .collect(),
    };
    Ok(filtered_list(matched))
}

/// The answer to a `/v2/Groups` request that carries a membership filter,
/// or `Err(query)` for the listing to answer (no filter, another filter,
/// [`MemberFilter::Refused`]; [`MemberFilter::Ignored`] drops the filter).
pub(super) fn member_filter_answer(
    s: &Shared,
    q: HashMap<String, String>,
) -> Result<Response, HashMap<String, String>> {
    let Some(filter) = q
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("filter"))
        .map(|(_, v)| v.clone())
    else {
        return Err(q);
    };
    let g = lock(s);
    let mode = g.faults.member_filter;
    let Some((gid, member)) = parse_member_filter(&filter) else {
        return Err(q);
    };
    match mode {
        MemberFilter::Refused => return Err(q),
        MemberFilter::Ignored => {
            return Err(q
                .into_iter()
                .filter(|(k, _)| !k.eq_ignore_ascii_case("filter"))
                .collect());
        }
        MemberFilter::NotImplemented => {
            return Ok(scim_error(
                StatusCode::NOT_IMPLEMENTED,
                None,
                "filtering is not implemented",
            ));
        }
        MemberFilter::Supported | MemberFilter::IgnoresMembers => {}
    }
    let matched: Vec<Value> = g
        .groups
        .get(&gid)
        .filter(|x| mode == MemberFilter::IgnoresMembers || x.members.contains(&member))
        .map(|x| {
            let mut v = g.group_json(x);
            if g.faults.members_shown != MembersShown::Always
                && let Some(o) = v.as_object_mut()
            {
                o.remove("members");
            }
            v
        })
        .into_iter()
        .collect();
    Ok(filtered_list(matched))
}

/// A 200 `ListResponse` of what a filter matched (one page, all of it).
fn filtered_list(matched: Vec<Value>) -> Response {
    scim_json(
        StatusCode::OK,
        &json!({
            "schemas": [LIST_RESPONSE_SCHEMA],
            "totalResults": matched.len(),
            "startIndex": 1,
            "itemsPerPage": matched.len(),
            "Resources": matched,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_membership_filter_is_recognised() {
        let want = Some(("g1".to_owned(), "u\"1".to_owned()));
        assert_eq!(
            parse_member_filter(r#"id eq "g1" and members.value eq "u\"1""#),
            want
        );
        assert_eq!(
            parse_member_filter(r#"Members.Value EQ "u\"1" AND ID eq "g1""#),
            want
        );
        for other in [
            r#"id eq "g1""#,
            r#"id eq "g1" or members.value eq "u1""#,
            r#"id eq "g1" and members.value eq "u1" and x eq "y""#,
            r#"meta.lastModified gt "2024-01-01T00:00:00Z""#,
            r#"id eq "g1" and displayName eq "u1""#,
            r#"id eq g1 and members.value eq "u1""#,
        ] {
            assert_eq!(parse_member_filter(other), None, "{other}");
        }
    }
}
