//! SCIM 2.0 (RFC 7643/7644) responses → ledger observations. Pure parsing: no I/O.
//!
//! A list response must be a JSON object with `Resources` (an array, may be absent
//! when empty) and should carry `totalResults`. Each resource must have a string
//! `id`; a resource without one, or with a wrongly typed `active`, is rejected
//! (RecordRejected), never dropped. The attribute digest is SHA-256 over the
//! resource's JSON with keys sorted, so the same attributes give the same digest.

use govledger_proto::v1::{EntityType, RecordObserved, RecordRejected, RejectReason};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

/// One page of a SCIM list response.
#[derive(Debug, Clone, PartialEq)]
pub struct ListPage {
    pub total_results: Option<u64>,
    pub items_per_page: Option<u64>,
    pub start_index: Option<u64>,
    /// RFC 9865 cursor paging.
    pub next_cursor: Option<String>,
    pub items: Vec<Item>,
    /// Indices into `items` of the groups listed without `members` at all
    /// (no `members`, `null`, nor a ranged form): no members, or members a
    /// server leaves out of list answers (see `sync::members`).
    pub members_left_out: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Observed(RecordObserved),
    Rejected(RecordRejected),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("response body is not JSON: {0}")]
    NotJson(String),
    #[error("response is not a SCIM ListResponse: {0}")]
    NotList(String),
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hex SHA-256 of a record's JSON (keys sorted): its attribute digest, and the
/// raw digest kept when it is rejected.
pub(crate) fn record_digest(r: &Value) -> String {
    hex(&Sha256::digest(serde_json::to_vec(r).unwrap_or_default()))
}

/// Parses a ListResponse body into observations of `entity_type`.
pub fn parse_list(
    body: &[u8],
    entity_type: EntityType,
    page_key: &str,
) -> Result<ListPage, ParseError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| ParseError::NotJson(e.to_string()))?;
    let Value::Object(obj) = &v else {
        return Err(ParseError::NotList("top level is not an object".into()));
    };
    let num = |k: &str| -> Result<Option<u64>, ParseError> {
        match obj.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n
                .as_u64()
                .map(Some)
                .ok_or_else(|| ParseError::NotList(format!("{k} is not a non-negative integer"))),
            Some(_) => Err(ParseError::NotList(format!("{k} is not a number"))),
        }
    };
    let total_results = num("totalResults")?;
    let items_per_page = num("itemsPerPage")?;
    let start_index = num("startIndex")?;
    let next_cursor = match obj.get("nextCursor") {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        _ => None,
    };
    let resources = match obj.get("Resources") {
        None | Some(Value::Null) => &[][..],
        Some(Value::Array(a)) => a.as_slice(),
        Some(_) => return Err(ParseError::NotList("Resources is not an array".into())),
    };
    let items = resources
        .iter()
        .enumerate()
        .map(|(i, r)| resource(r, entity_type, page_key, i as u32))
        .collect();
    let members_left_out = if entity_type == EntityType::Group {
        resources
            .iter()
            .enumerate()
            .filter(|(_, r)| r.as_object().is_some_and(|o| !shows_members(o)))
            .map(|(i, _)| i as u32)
            .collect()
    } else {
        Vec::new()
    };
    Ok(ListPage {
        total_results,
        items_per_page,
        start_index,
        next_cursor,
        items,
        members_left_out,
    })
}

/// Builds the rejections of one record (SCIM resource or REST item).
pub(crate) fn rejecter<'a>(
    raw_digest: String,
    entity_type: EntityType,
    page_key: &'a str,
    index: u32,
) -> impl Fn(RejectReason, String) -> Item + 'a {
    move |reason: RejectReason, detail: String| {
        Item::Rejected(RecordRejected {
            page_key: page_key.to_owned(),
            reason: reason as i32,
            detail,
            index_in_page: index,
            raw_digest: raw_digest.clone(),
            entity_type: entity_type as i32,
        })
    }
}

/// One resource → an observation, or a rejection saying why.
pub fn resource(r: &Value, entity_type: EntityType, page_key: &str, index: u32) -> Item {
    let raw_digest = record_digest(r);
    let reject = rejecter(raw_digest.clone(), entity_type, page_key, index);
    let Value::Object(o) = r else {
        return reject(
            RejectReason::SchemaViolation,
            "resource is not a JSON object".into(),
        );
    };
    let id = match o.get("id") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(Value::String(_)) | None | Some(Value::Null) => {
            return reject(RejectReason::MissingId, "resource has no id".into());
        }
        Some(other) => {
            return reject(
                RejectReason::BadType,
                format!("id is a {}, not a string", kind(other)),
            );
        }
    };
    let active = match o.get("active") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(other) => {
            return reject(
                RejectReason::BadType,
                format!("resource {id}: active is a {}, not a boolean", kind(other)),
            );
        }
    };
    let label = ["userName", "displayName"]
        .iter()
        .find_map(|k| o.get(*k).and_then(Value::as_str))
        .unwrap_or_default()
        .to_owned();
    let version = o
        .get("meta")
        .and_then(|m| m.get("version"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let members_key = if entity_type == EntityType::Group {
        "members"
    } else {
        "groups"
    };
    let (memberships, memberships_incomplete) = if entity_type == EntityType::Group {
        group_members(o)
    } else {
        (member_values(o.get(members_key)), false)
    };
    Item::Observed(RecordObserved {
        entity_type: entity_type as i32,
        external_id: id,
        active,
        attribute_digest: raw_digest,
        memberships,
        version,
        page_key: page_key.to_owned(),
        display_name: label,
        memberships_incomplete,
        // Set by the fetch that asked (it knows when).
        read_at_us: 0,
        // Set by the sync from the source's kept attributes.
        attributes: Default::default(),
    })
}

/// The `value`s of a multi-valued attribute (`[{"value": id}, ..]`).
fn member_values(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|m| m.get("value").and_then(Value::as_str).map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

/// Whether `key` is a ranged member attribute (`members;range=0-1499`, as
/// directories that page members send them), case-insensitively.
pub fn is_ranged_members_key(key: &str) -> bool {
    // Bytes, not `str` slicing: a key from the wire may hold a multi-byte
    // character across the prefix's end (found by fuzzing).
    let prefix = b"members;";
    key.len() > prefix.len() && key.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// Whether a group resource carries `members` in any form (a list, even
/// empty, an object, or ranged `members;range=..`), as [`group_members`]
/// reads it; `null` is unassigned.
fn shows_members(o: &serde_json::Map<String, Value>) -> bool {
    o.iter()
        .any(|(k, v)| !v.is_null() && (k == "members" || is_ranged_members_key(k)))
}

/// A group's members, and whether the list is obviously partial: ranged
/// (`"members;range=0-1499": [..]`, as directories that page members send
/// them) or an object instead of a list (`{"values": [..], "next": ..}`).
/// The members shown are kept either way. An absent `members` is what it
/// was before (no members listed; see the fold and the executor).
fn group_members(o: &serde_json::Map<String, Value>) -> (Vec<String>, bool) {
    let ranged: Vec<&Value> = o
        .iter()
        .filter(|(k, _)| is_ranged_members_key(k))
        .map(|(_, v)| v)
        .collect();
    let mut members = member_values(o.get("members"));
    let mut partial = !ranged.is_empty();
    for v in ranged {
        members.extend(member_values(Some(v)));
    }
    if let Some(Value::Object(m)) = o.get("members") {
        partial = true;
        for v in m.values() {
            members.extend(member_values(Some(v)));
        }
    }
    (members, partial)
}

/// The largest page size a `/ServiceProviderConfig` answer (RFC 7643 §5)
/// declares: RFC 9865's `pagination.maxPageSize`, else `filter.maxResults`.
/// `Ok(None)` when it declares neither (or 0); an error when the body is
/// not a JSON object.
pub fn parse_service_provider_config(body: &[u8]) -> Result<Option<u32>, ParseError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| ParseError::NotJson(e.to_string()))?;
    if !v.is_object() {
        return Err(ParseError::NotList(
            "ServiceProviderConfig is not an object".into(),
        ));
    }
    let positive = |p: &str| {
        v.pointer(p)
            .and_then(Value::as_u64)
            .filter(|n| *n > 0)
            .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
    };
    Ok(positive("/pagination/maxPageSize").or_else(|| positive("/filter/maxResults")))
}

/// One resource (`GET /Groups/{id}`) as a page of one item.
pub fn parse_resource(
    body: &[u8],
    entity_type: EntityType,
    page_key: &str,
) -> Result<ListPage, ParseError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| ParseError::NotJson(e.to_string()))?;
    Ok(ListPage {
        total_results: None,
        items_per_page: None,
        start_index: None,
        next_cursor: None,
        items: vec![resource(&v, entity_type, page_key, 0)],
        members_left_out: Vec::new(),
    })
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<ListPage, ParseError> {
        parse_list(body.as_bytes(), EntityType::User, "startIndex=1")
    }

    #[test]
    fn a_list_response() {
        let p = parse(r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
            "totalResults":2,"startIndex":1,"itemsPerPage":2,"Resources":[
            {"id":"a","userName":"alice","active":true,"meta":{"version":"W/\"3\""},"groups":[{"value":"g1"}]},
            {"id":"b","userName":"bob"}]}"#)
        .unwrap();
        assert_eq!(p.total_results, Some(2));
        assert_eq!(p.items.len(), 2);
        let Item::Observed(a) = &p.items[0] else {
            panic!()
        };
        assert_eq!(a.external_id, "a");
        assert_eq!(a.active, Some(true));
        assert_eq!(a.version, "W/\"3\"");
        assert_eq!(a.memberships, vec!["g1"]);
        assert_eq!(a.display_name, "alice");
        let Item::Observed(b) = &p.items[1] else {
            panic!()
        };
        assert_eq!(b.active, None);
    }

    #[test]
    fn empty_and_cursor() {
        let p = parse(r#"{"totalResults":5,"Resources":[],"nextCursor":"abc"}"#).unwrap();
        assert!(p.items.is_empty());
        assert_eq!(p.next_cursor.as_deref(), Some("abc"));
        let p = parse(r#"{"totalResults":0}"#).unwrap();
        assert!(p.items.is_empty());
        assert_eq!(p.next_cursor, None);
    }

    #[test]
    fn bad_bodies_are_errors() {
        assert!(matches!(
            parse(r#"{"totalResults":5,"Resou"#),
            Err(ParseError::NotJson(_))
        ));
        assert!(matches!(
            parse("<html>oops</html>"),
            Err(ParseError::NotJson(_))
        ));
        assert!(matches!(parse("[1,2]"), Err(ParseError::NotList(_))));
        assert!(matches!(
            parse(r#"{"totalResults":"many"}"#),
            Err(ParseError::NotList(_))
        ));
        assert!(matches!(
            parse(r#"{"Resources":{}}"#),
            Err(ParseError::NotList(_))
        ));
    }

    #[test]
    fn bad_records_are_rejected_not_dropped() {
        let p = parse(r#"{"totalResults":4,"Resources":[
            {"userName":"no-id"},{"id":"","userName":"blank"},{"id":7},{"id":"x","active":"yes"}]}"#)
        .unwrap();
        let reasons: Vec<i32> = p
            .items
            .iter()
            .map(|i| match i {
                Item::Rejected(r) => r.reason,
                Item::Observed(_) => -1,
            })
            .collect();
        assert_eq!(
            reasons,
            vec![
                RejectReason::MissingId as i32,
                RejectReason::MissingId as i32,
                RejectReason::BadType as i32,
                RejectReason::BadType as i32
            ]
        );
    }

    #[test]
    fn a_key_with_a_character_across_the_members_prefix_is_not_ranged() {
        assert!(is_ranged_members_key("Members;range=0-1499"));
        assert!(!is_ranged_members_key("members;"));
        // The 8th byte inside a character: no panic, not a member key.
        assert!(!is_ranged_members_key("abcdefg\u{3230}"));
        assert!(!is_ranged_members_key("members\u{3230}x"));
        let body = br#"{"id":"g1","displayName":"x","abcdefg\u3230":[]}"#;
        let page = parse_resource(body, EntityType::Group, "k").unwrap();
        assert!(matches!(page.items[0], Item::Observed(_)));
    }

    #[test]
    fn ranged_or_object_member_lists_are_partial() {
        let group = |body: &str| {
            let p = parse_list(body.as_bytes(), EntityType::Group, "k").unwrap();
            let Item::Observed(g) = p.items[0].clone() else {
                panic!("{body}")
            };
            (g.memberships, g.memberships_incomplete)
        };
        let (m, partial) =
            group(r#"{"Resources":[{"id":"g","members":[{"value":"a"},{"value":"b"}]}]}"#);
        assert_eq!((m, partial), (vec!["a".to_owned(), "b".to_owned()], false));
        let (m, partial) = group(
            r#"{"Resources":[{"id":"g","members;range=0-1":[{"value":"a"},{"value":"b"}]}]}"#,
        );
        assert_eq!((m, partial), (vec!["a".to_owned(), "b".to_owned()], true));
        let (m, partial) = group(
            r#"{"Resources":[{"id":"g","members":{"values":[{"value":"a"}],"next":"/Groups/g?range=1"}}]}"#,
        );
        assert_eq!((m, partial), (vec!["a".to_owned()], true));
        assert_eq!(group(r#"{"Resources":[{"id":"g"}]}"#), (vec![], false));
        // A user's `groups` is read as it is, never judged.
        let p = parse(r#"{"Resources":[{"id":"u","groups":{"values":[]}}]}"#).unwrap();
        let Item::Observed(u) = &p.items[0] else {
            panic!()
        };
        assert!(!u.memberships_incomplete);
    }

    #[test]
    fn groups_listed_without_members_are_named() {
        let p = parse_list(
            br#"{"Resources":[{"id":"a"},{"id":"b","members":[]},{"id":"c","members":null},
                {"id":"d","members;range=0-0":[{"value":"u"}]},{"displayName":"no id"},
                {"id":"f","members":{"values":[]}}]}"#,
            EntityType::Group,
            "k",
        )
        .unwrap();
        assert_eq!(p.members_left_out, vec![0, 2, 4]);
        assert!(
            parse(r#"{"Resources":[{"id":"u"}]}"#)
                .unwrap()
                .members_left_out
                .is_empty()
        );
    }

    #[test]
    fn service_provider_config_page_sizes() {
        let spc = |b: &str| parse_service_provider_config(b.as_bytes());
        assert_eq!(
            spc(r#"{"filter":{"supported":true,"maxResults":200}}"#),
            Ok(Some(200))
        );
        assert_eq!(
            spc(r#"{"filter":{"maxResults":200},"pagination":{"maxPageSize":50}}"#),
            Ok(Some(50))
        );
        assert_eq!(spc(r#"{"filter":{"supported":false}}"#), Ok(None));
        assert_eq!(spc(r#"{"filter":{"maxResults":0}}"#), Ok(None));
        assert_eq!(spc(r#"{"filter":{"maxResults":"many"}}"#), Ok(None));
        assert!(spc("<html>").is_err());
        assert!(spc("[1]").is_err());
    }

    #[test]
    fn digest_ignores_key_order() {
        let a = parse(r#"{"Resources":[{"id":"a","userName":"x","active":true}]}"#).unwrap();
        let b = parse(r#"{"Resources":[{"active":true,"userName":"x","id":"a"}]}"#).unwrap();
        assert_eq!(a.items, b.items);
    }
}
