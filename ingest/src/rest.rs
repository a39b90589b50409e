//! Generic REST JSON sources → ledger observations. Pure parsing: no I/O.
//!
//! A REST source is described by where things are: the items array (a JSON
//! pointer into the body, empty for a bare array), the id and `active` fields,
//! the total (a JSON pointer or a header such as `X-Total-Count`), and how pages
//! are addressed: page numbers (from 0 or 1), offsets, RFC 8288
//! `Link: <...>; rel="next"` headers or a next URL in the body, or a cursor in
//! the body sent back as a query parameter. Every pointer is an RFC 6901 JSON
//! pointer: `/@odata.nextLink` names the key `@odata.nextLink` (only `~` and
//! `/` in a key are escaped, as `~0` and `~1`).

use govledger_proto::v1::{EntityType, RecordObserved, RejectReason};
use serde_json::Value;

use crate::scim::{Item, ListPage, ParseError};

/// The most of a body without items quoted in the page's failure.
const BODY_EXCERPT_MAX: usize = 160;

/// Where the data is in a REST source's answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestShape {
    /// Path below the base URL, e.g. `users`.
    pub path: String,
    pub entity_type: EntityType,
    /// JSON pointer to the items array (`""` = the body is the array).
    pub items_pointer: String,
    /// The id field: a top-level name (`id`), or a JSON pointer into the
    /// item when it starts with `/` (`/user/login`); so are the two below.
    pub id_field: String,
    pub active_field: Option<String>,
    /// How the active field's value reads: a boolean, or a status word.
    pub active_words: ActiveWords,
    /// Field shown to people (email, username); optional.
    pub label_field: Option<String>,
    /// JSON pointer to the total in the body, if any.
    pub total_pointer: Option<String>,
    /// Header carrying the total, if any (e.g. `X-Total-Count`).
    pub total_header: Option<String>,
    /// Link paging: JSON pointer to the next page's URL in the body (e.g.
    /// `/links/next`, absent, null or "" on the last page) instead of the
    /// `Link` header.
    pub next_pointer: Option<String>,
    /// Cursor paging: JSON pointer to the next page's cursor in the body
    /// (e.g. `/response_metadata/next_cursor`; absent, null or "" on the last
    /// page), sent back as `cursor_param`.
    pub cursor_pointer: Option<String>,
    /// Query parameter names: the page number, the page size (`limit`,
    /// `per_page`, `$top`), the offset and the cursor.
    pub page_param: String,
    pub size_param: String,
    pub offset_param: String,
    pub cursor_param: String,
    /// The number of the first page (page-number paging): 0 or 1.
    pub page_start: u64,
    /// Query parameters sent with the first request (and every request the
    /// engine builds; next links carry their own), e.g. `$select`, `search`.
    pub query: Vec<(String, String)>,
    /// Request headers sent with every request, e.g. `ConsistencyLevel`.
    pub headers: Vec<(String, String)>,
}

impl RestShape {
    /// The query string of a request the engine builds: the configured
    /// parameters, then `params` (already encoded), values percent-encoded.
    pub fn query_with(&self, params: &str) -> String {
        let mut q: Vec<String> = self
            .query
            .iter()
            .map(|(k, v)| format!("{k}={}", crate::http::percent_encode(v)))
            .collect();
        if !params.is_empty() {
            q.push(params.to_owned());
        }
        q.join("&")
    }
}

/// How the active field reads. A boolean means active when true, or when false
/// with `inverted` (a `suspended` / `disabled` field); a string is a status
/// word, compared case-insensitively with `active` and `inactive`. Anything
/// else (or an unknown word) is rejected, never guessed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActiveWords {
    pub inverted: bool,
    pub active: Vec<String>,
    pub inactive: Vec<String>,
}

impl ActiveWords {
    /// The active state `v` says, or why it says none.
    pub fn read(&self, v: &Value) -> Result<bool, String> {
        let is = |words: &[String], w: &str| words.iter().any(|x| x.eq_ignore_ascii_case(w));
        match v {
            Value::Bool(b) => Ok(*b != self.inverted),
            Value::String(w) if is(&self.active, w.trim()) => Ok(true),
            Value::String(w) if is(&self.inactive, w.trim()) => Ok(false),
            Value::String(w) if !self.active.is_empty() || !self.inactive.is_empty() => {
                Err(format!(
                    "status {w:?} is neither an active word ({}) nor an inactive word ({})",
                    self.active.join(", "),
                    self.inactive.join(", ")
                ))
            }
            _ => Err("is not a boolean".into()),
        }
    }
}

/// The target of the `rel="next"` link in an RFC 8288 `Link` header, if any.
pub fn next_link(header: &str) -> Option<String> {
    // Link: <url>; rel="first", <url>; rel="next"
    let mut rest = header;
    while let Some(open) = rest.find('<') {
        let close = open + rest[open..].find('>')?;
        let url = &rest[open + 1..close];
        let after = &rest[close + 1..];
        let end = after.find('<').unwrap_or(after.len());
        let params = &after[..end];
        let is_next = params.split(';').any(|p| {
            let p = p.trim().trim_end_matches(',').trim();
            p.strip_prefix("rel=").is_some_and(|v| {
                v.trim_matches('"')
                    .split_ascii_whitespace()
                    .any(|r| r.eq_ignore_ascii_case("next"))
            })
        });
        if is_next {
            return Some(url.to_owned());
        }
        rest = &after[end..];
    }
    None
}

/// The `rel="next"` target among every `Link` header line of an answer (HTTP
/// treats repeated lines as one comma-separated list, RFC 9110 §5.3), resolved
/// against the request URI `request_url` when relative (RFC 8288 §3.2).
pub fn next_link_of<'a>(
    lines: impl IntoIterator<Item = &'a str>,
    request_url: &str,
) -> Result<Option<String>, ParseError> {
    match lines.into_iter().find_map(next_link) {
        Some(target) => resolve(&target, request_url).map(Some),
        None => Ok(None),
    }
}

/// `target` resolved against the request URI `request_url` (RFC 3986 §5).
fn resolve(target: &str, request_url: &str) -> Result<String, ParseError> {
    let resolved = reqwest::Url::parse(request_url)
        .and_then(|base| base.join(target))
        .map_err(|e| {
            ParseError::NotList(format!(
                "the next link {target:?} is not a URI reference: {e}"
            ))
        })?;
    Ok(resolved.to_string())
}

/// Parses one fetched page of a REST source (its total header and `Link`
/// lines read from the answer's headers), asked for with `request_url`.
pub fn parse_fetched(
    f: &crate::http::Fetched,
    request_url: &str,
    shape: &RestShape,
    page_key: &str,
) -> Result<ListPage, ParseError> {
    let header = |name: &str| f.headers.get(name).and_then(|v| v.to_str().ok());
    let total = shape.total_header.as_deref().and_then(header);
    let links: Vec<&str> = f
        .headers
        .get_all("link")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    parse_page(&f.body, total, &links, request_url, shape, page_key)
}

/// Parses one page of a REST source: `link_headers` are its `Link` header
/// lines, `request_url` the URI it was asked with.
pub fn parse_page(
    body: &[u8],
    total_header: Option<&str>,
    link_headers: &[&str],
    request_url: &str,
    shape: &RestShape,
    page_key: &str,
) -> Result<ListPage, ParseError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| ParseError::NotJson(e.to_string()))?;
    let items = if shape.items_pointer.is_empty() {
        &v
    } else {
        v.pointer(&shape.items_pointer).ok_or_else(|| {
            // An API that answers its errors with 200 (Slack's `ok:false`)
            // says why in the body: keep the start of it.
            let body: String = v.to_string().chars().take(BODY_EXCERPT_MAX).collect();
            ParseError::NotList(format!(
                "no items at JSON pointer {} in {body}",
                shape.items_pointer
            ))
        })?
    };
    let Value::Array(items) = items else {
        return Err(ParseError::NotList(format!(
            "{} is not an array",
            if shape.items_pointer.is_empty() {
                "the body"
            } else {
                &shape.items_pointer
            }
        )));
    };
    let mut total = None;
    if let Some(p) = &shape.total_pointer {
        total = match v.pointer(p) {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => Some(n.as_u64().ok_or_else(|| {
                ParseError::NotList(format!("{p} is not a non-negative integer"))
            })?),
            Some(_) => return Err(ParseError::NotList(format!("{p} is not a number"))),
        };
    }
    if total.is_none()
        && let Some(h) = total_header
    {
        total = Some(
            h.trim()
                .parse()
                .map_err(|_| ParseError::NotList(format!("total header {h:?} is not a number")))?,
        );
    }
    Ok(ListPage {
        total_results: total,
        items_per_page: Some(items.len() as u64),
        start_index: None,
        next_cursor: match (&shape.cursor_pointer, &shape.next_pointer) {
            (Some(p), _) => match v.pointer(p) {
                None | Some(Value::Null) => None,
                Some(Value::String(t)) if t.trim().is_empty() => None,
                Some(Value::String(t)) => Some(t.trim().to_owned()),
                Some(Value::Number(n)) => Some(n.to_string()),
                Some(_) => {
                    return Err(ParseError::NotList(format!(
                        "the cursor at {p} is not a string"
                    )));
                }
            },
            (None, None) => next_link_of(link_headers.iter().copied(), request_url)?,
            (None, Some(p)) => match v.pointer(p) {
                None | Some(Value::Null) => None,
                Some(Value::String(t)) if t.trim().is_empty() => None,
                Some(Value::String(t)) => Some(resolve(t.trim(), request_url)?),
                Some(_) => return Err(ParseError::NotList(format!("{p} is not a string"))),
            },
        },
        items: items
            .iter()
            .enumerate()
            .map(|(i, r)| item(r, shape, page_key, i as u32))
            .collect(),
        members_left_out: Vec::new(),
    })
}

fn item(r: &Value, shape: &RestShape, page_key: &str, index: u32) -> Item {
    let digest = crate::scim::record_digest(r);
    let et = shape.entity_type;
    let reject = crate::scim::rejecter(digest.clone(), et, page_key, index);
    let Value::Object(o) = r else {
        return reject(
            RejectReason::SchemaViolation,
            "item is not a JSON object".into(),
        );
    };
    // A name, or a JSON pointer into the item (nested fields).
    let field = |f: &str| match f.starts_with('/') {
        true => r.pointer(f),
        false => o.get(f),
    };
    let id = match field(&shape.id_field) {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(_)) | None | Some(Value::Null) => {
            return reject(
                RejectReason::MissingId,
                format!("item has no {}", shape.id_field),
            );
        }
        Some(_) => {
            return reject(
                RejectReason::BadType,
                format!("{} is not a string or number", shape.id_field),
            );
        }
    };
    let active = match shape.active_field.as_deref().and_then(field) {
        None | Some(Value::Null) => None,
        Some(v) => match shape.active_words.read(v) {
            Ok(a) => Some(a),
            Err(why) => {
                return reject(RejectReason::BadType, format!("item {id}: active {why}"));
            }
        },
    };
    let display_name = shape
        .label_field
        .as_deref()
        .and_then(field)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    Item::Observed(RecordObserved {
        entity_type: et as i32,
        external_id: id,
        active,
        attribute_digest: digest,
        memberships: Vec::new(),
        version: String::new(),
        page_key: page_key.to_owned(),
        display_name,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(items: &str) -> RestShape {
        RestShape {
            path: "users".into(),
            entity_type: EntityType::User,
            items_pointer: items.into(),
            id_field: "id".into(),
            active_field: Some("active".into()),
            active_words: ActiveWords::default(),
            label_field: Some("email".into()),
            total_pointer: Some("/total".into()),
            total_header: Some("x-total-count".into()),
            next_pointer: None,
            cursor_pointer: None,
            page_param: "page".into(),
            size_param: "per_page".into(),
            offset_param: "offset".into(),
            cursor_param: "cursor".into(),
            page_start: 1,
            query: Vec::new(),
            headers: Vec::new(),
        }
    }

    #[test]
    fn pointers_to_keys_with_at_dots_slashes_and_tildes() {
        // Graph: "@odata.nextLink" and "@odata.count" need no escaping.
        let mut s = shape("/value");
        s.next_pointer = Some("/@odata.nextLink".into());
        s.total_pointer = Some("/@odata.count".into());
        let body = br#"{"@odata.count":3,"value":[{"id":"a"}],
            "@odata.nextLink":"https://g/v1.0/users?$top=1&$skiptoken=X%3D"}"#;
        let p = parse_page(body, None, &[], "https://g/v1.0/users?$top=1", &s, "k").unwrap();
        assert_eq!(p.total_results, Some(3));
        assert_eq!(
            p.next_cursor.as_deref(),
            Some("https://g/v1.0/users?$top=1&$skiptoken=X%3D")
        );
        // RFC 6901: "a/b" is written a~1b, "m~n" is m~0n.
        s.next_pointer = Some("/links/a~1b/m~0n".into());
        let body = br#"{"value":[],"links":{"a/b":{"m~n":"?page=2"}}}"#;
        let p = parse_page(body, None, &[], "https://g/u?page=1", &s, "k").unwrap();
        assert_eq!(p.next_cursor.as_deref(), Some("https://g/u?page=2"));
    }

    #[test]
    fn a_cursor_in_the_body_is_taken_as_it_is() {
        let mut s = shape("/members");
        s.cursor_pointer = Some("/response_metadata/next_cursor".into());
        let page = |body: &[u8]| parse_page(body, None, &[], "https://s/api/users.list", &s, "k");
        let p = page(br#"{"members":[],"response_metadata":{"next_cursor":"dXNlcjpV=="}}"#);
        assert_eq!(p.unwrap().next_cursor.as_deref(), Some("dXNlcjpV=="));
        let p = page(br#"{"members":[],"response_metadata":{"next_cursor":42}}"#);
        assert_eq!(p.unwrap().next_cursor.as_deref(), Some("42"));
        for last in [
            &br#"{"members":[],"response_metadata":{"next_cursor":""}}"#[..],
            br#"{"members":[],"response_metadata":{"next_cursor":null}}"#,
            br#"{"members":[]}"#,
        ] {
            assert_eq!(page(last).unwrap().next_cursor, None);
        }
        let e = page(br#"{"members":[],"response_metadata":{"next_cursor":[1]}}"#).unwrap_err();
        assert!(e.to_string().contains("is not a string"), "{e}");
        // Slack's errors come with HTTP 200: no items, a failed page.
        let e = page(br#"{"ok":false,"error":"invalid_auth"}"#).unwrap_err();
        assert!(
            e.to_string().contains("no items at JSON pointer /members"),
            "{e}"
        );
    }

    #[test]
    fn configured_query_parameters_are_encoded() {
        let mut s = shape("/value");
        s.query = vec![
            ("$select".into(), "id,accountEnabled".into()),
            ("search".into(), "status eq \"ACTIVE\"".into()),
        ];
        assert_eq!(
            s.query_with("$top=5"),
            "$select=id%2CaccountEnabled&search=status%20eq%20%22ACTIVE%22&$top=5"
        );
        s.query.clear();
        assert_eq!(s.query_with("limit=5"), "limit=5");
    }

    #[test]
    fn link_headers() {
        let h = r#"<https://a/u?per_page=2>; rel="first", <https://a/u?after=X&per_page=2>; rel="next""#;
        assert_eq!(
            next_link(h).as_deref(),
            Some("https://a/u?after=X&per_page=2")
        );
        assert_eq!(next_link(r#"<https://a/u?p=1>; rel="first""#), None);
        assert_eq!(
            next_link(r#"<https://a/u?p=2>; rel=next"#).as_deref(),
            Some("https://a/u?p=2")
        );
        assert_eq!(
            next_link(r#"<https://a/u?p=2>; title="x"; rel="prefetch next""#).as_deref(),
            Some("https://a/u?p=2")
        );
        assert_eq!(next_link(""), None);
        assert_eq!(next_link("<unterminated"), None);
    }

    #[test]
    fn link_header_lines_are_one_list() {
        // GitHub: one line per relation; the next link on the second line.
        let lines = [
            r#"<https://a/u?page=1>; rel="first""#,
            r#"<https://a/u?page=3>; rel="next", <https://a/u?page=9>; rel="last""#,
        ];
        assert_eq!(
            next_link_of(lines, "https://a/u?page=2")
                .unwrap()
                .as_deref(),
            Some("https://a/u?page=3")
        );
        assert_eq!(
            next_link_of([r#"<https://a/u?page=1>; rel="first""#], "https://a/u").unwrap(),
            None
        );
    }

    #[test]
    fn relative_links_resolve_against_the_request_uri() {
        let base = "http://h:8/api/v1/users?page=1&per_page=2";
        for (target, want) in [
            ("users?page=2", "http://h:8/api/v1/users?page=2"),
            ("/api/v2/users?page=2", "http://h:8/api/v2/users?page=2"),
            ("?page=2", "http://h:8/api/v1/users?page=2"),
            ("//other/x", "http://other/x"),
            ("https://o/u?p=2", "https://o/u?p=2"),
        ] {
            let line = format!("<{target}>; rel=\"next\"");
            assert_eq!(
                next_link_of([line.as_str()], base).unwrap().as_deref(),
                Some(want),
                "{target}"
            );
        }
        let err = next_link_of([r#"<http://[x>; rel="next""#], base).unwrap_err();
        assert!(err.to_string().contains("is not a URI reference"), "{err}");
        let mut s = shape("/data");
        s.next_pointer = Some("/links/next".into());
        let page = |body: &[u8]| parse_page(body, None, &[], base, &s, "k");
        let p = page(br#"{"data":[],"links":{"next":"users?page=2"}}"#).unwrap();
        assert_eq!(
            p.next_cursor.as_deref(),
            Some("http://h:8/api/v1/users?page=2")
        );
        for last in [
            &br#"{"data":[],"links":{"next":null}}"#[..],
            br#"{"data":[],"links":{"next":""}}"#,
            br#"{"data":[]}"#,
        ] {
            assert_eq!(page(last).unwrap().next_cursor, None);
        }
        assert!(page(br#"{"data":[],"links":{"next":2}}"#).is_err());
    }

    #[test]
    fn pages_with_body_total_or_header_total() {
        let p = parse_page(
            br#"{"users":[{"id":1,"email":"a@x","active":false},{"id":"b"}],"total":9}"#,
            None,
            &[],
            "http://h/users",
            &shape("/users"),
            "users:page=1",
        )
        .unwrap();
        assert_eq!(p.total_results, Some(9));
        let Item::Observed(a) = &p.items[0] else {
            panic!()
        };
        assert_eq!(
            (a.external_id.as_str(), a.active, a.display_name.as_str()),
            ("1", Some(false), "a@x")
        );
        let mut s = shape("");
        s.total_pointer = None;
        let p = parse_page(
            br#"[{"id":"x"}]"#,
            Some("12"),
            &[r#"<http://h/n>; rel="next""#],
            "http://h/users",
            &s,
            "k",
        )
        .unwrap();
        assert_eq!(p.total_results, Some(12));
        assert_eq!(p.next_cursor.as_deref(), Some("http://h/n"));
    }

    #[test]
    fn nested_fields_by_json_pointer() {
        let mut s = shape("/data");
        s.id_field = "/user/id".into();
        s.active_field = Some("/state/active".into());
        s.label_field = Some("/user/login".into());
        let p = parse_page(
            br#"{"data":[{"user":{"id":7,"login":"octo"},"state":{"active":false}},{"user":{}}]}"#,
            None,
            &[],
            "http://h/u",
            &s,
            "k",
        )
        .unwrap();
        let Item::Observed(a) = &p.items[0] else {
            panic!("{:?}", p.items[0])
        };
        assert_eq!(
            (a.external_id.as_str(), a.active, a.display_name.as_str()),
            ("7", Some(false), "octo")
        );
        let Item::Rejected(b) = &p.items[1] else {
            panic!("{:?}", p.items[1])
        };
        assert_eq!(b.detail, "item has no /user/id");
    }

    #[test]
    fn active_polarity_and_status_words() {
        let plain = ActiveWords::default();
        assert_eq!(plain.read(&serde_json::json!(true)), Ok(true));
        assert_eq!(
            plain.read(&serde_json::json!("yes")),
            Err("is not a boolean".into())
        );
        let suspended = ActiveWords {
            inverted: true,
            ..Default::default()
        };
        assert_eq!(suspended.read(&serde_json::json!(true)), Ok(false));
        assert_eq!(suspended.read(&serde_json::json!(false)), Ok(true));
        let status = ActiveWords {
            inverted: false,
            active: vec!["active".into(), "provisioned".into()],
            inactive: vec!["suspended".into(), "deprovisioned".into()],
        };
        assert_eq!(status.read(&serde_json::json!("ACTIVE")), Ok(true));
        assert_eq!(status.read(&serde_json::json!(" Suspended ")), Ok(false));
        assert_eq!(
            status.read(&serde_json::json!("staged")),
            Err(
                "status \"staged\" is neither an active word (active, provisioned) \
                 nor an inactive word (suspended, deprovisioned)"
                    .into()
            )
        );
        let mut s = shape("/users");
        s.active_field = Some("status".into());
        s.active_words = status;
        let p = parse_page(
            br#"{"users":[{"id":"a","status":"deprovisioned"},{"id":"b","status":"staged"}]}"#,
            None,
            &[],
            "http://h/u",
            &s,
            "k",
        )
        .unwrap();
        assert!(matches!(&p.items[0], Item::Observed(r) if r.active == Some(false)));
        let Item::Rejected(b) = &p.items[1] else {
            panic!("{:?}", p.items[1])
        };
        assert!(
            b.detail.starts_with("item b: active status \"staged\""),
            "{b:?}"
        );
    }

    #[test]
    fn bad_pages_and_items() {
        assert!(parse_page(b"{", None, &[], "http://h/u", &shape("/users"), "k").is_err());
        assert!(
            parse_page(
                br#"{"data":[]}"#,
                None,
                &[],
                "http://h/u",
                &shape("/users"),
                "k"
            )
            .is_err()
        );
        let p = parse_page(
            br#"{"users":[{"email":"no id"},{"id":"x","active":"yes"},{"id":[1]}]}"#,
            None,
            &[],
            "http://h/u",
            &shape("/users"),
            "k",
        )
        .unwrap();
        assert!(p.items.iter().all(|i| matches!(i, Item::Rejected(_))));
    }
}
