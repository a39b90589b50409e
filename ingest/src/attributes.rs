//! Kept attributes: the few values of a SCIM or REST record a source is
//! configured to keep on its records (`RecordObserved.attributes`), for
//! correlation across sources (an employee id, an email) and as evidence.
//! Pure.
//!
//! A path is a top-level name (`userName`, `externalId`, `emails`), looked
//! up in the SCIM enterprise extension too (`employeeNumber`), or an RFC
//! 6901 JSON pointer (`/name/familyName`). A multi-valued attribute gives its
//! primary value, else its first (`emails` → the primary email's `value`).

use govledger_proto::v1::RecordObserved;
use serde_json::Value;

use crate::scim::Item;

/// The SCIM enterprise user extension (RFC 7643 §4.3).
pub const ENTERPRISE_USER: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// The value at `path` in `record`, as text, if any.
pub fn pick(record: &Value, path: &str) -> Option<String> {
    let v = if path.starts_with('/') {
        record.pointer(path)?
    } else {
        match record.get(path) {
            Some(v) => v,
            None => record.get(ENTERPRISE_USER)?.get(path)?,
        }
    };
    text(v)
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Array(a) => {
            let primary = a
                .iter()
                .find(|x| x.get("primary").and_then(Value::as_bool) == Some(true));
            primary.or(a.first()).and_then(|x| match x {
                Value::Object(o) => o.get("value").and_then(text),
                other => text(other),
            })
        }
        Value::Object(o) => o.get("value").and_then(text),
        _ => None,
    }
}

/// Sets the kept attributes of each observed item from the record it was
/// made of: the items are the array at `records` (a JSON pointer, `""` =
/// the body itself when it is one record or an array of them), one item per
/// element in order.
pub fn attach(body: &[u8], records: &str, items: &mut [Item], keep: &[(String, String)]) {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    let at = if records.is_empty() {
        Some(&v)
    } else {
        v.pointer(records)
    };
    let one = [v.clone()];
    let list: &[Value] = match at {
        Some(Value::Array(a)) => a,
        Some(Value::Object(_)) => &one,
        _ => return,
    };
    for (item, rec) in items.iter_mut().zip(list) {
        if let Item::Observed(r) = item {
            set(r, rec, keep);
        }
    }
}

/// Sets `r`'s kept attributes from `rec`.
pub fn set(r: &mut RecordObserved, rec: &Value, keep: &[(String, String)]) {
    for (name, path) in keep {
        if let Some(v) = pick(rec, path) {
            r.attributes.insert(name.clone(), v);
        }
    }
}

/// A kept value as correlation compares it: trimmed, case folded.
pub fn correlation_key(v: &str) -> String {
    v.trim().to_lowercase()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn paths_pick_values() {
        let u = json!({
            "userName": "ann",
            "externalId": 42,
            "emails": [{"value": "a@x", "primary": false}, {"value": "A@Y", "primary": true}],
            "name": {"familyName": "Smith"},
            ENTERPRISE_USER: {"employeeNumber": "E042"}
        });
        assert_eq!(pick(&u, "userName").as_deref(), Some("ann"));
        assert_eq!(pick(&u, "externalId").as_deref(), Some("42"));
        assert_eq!(pick(&u, "emails").as_deref(), Some("A@Y"));
        assert_eq!(pick(&u, "employeeNumber").as_deref(), Some("E042"));
        assert_eq!(pick(&u, "/name/familyName").as_deref(), Some("Smith"));
        assert_eq!(pick(&u, "title"), None);
        assert_eq!(
            pick(&json!({"emails": [{"value": "f@x"}]}), "emails").as_deref(),
            Some("f@x")
        );
        assert_eq!(correlation_key("  E042 "), "e042");
    }

    #[test]
    fn attach_follows_the_items_in_order() {
        let body = br#"{"Resources": [{"id": "1", "userName": "a"}, {"id": "2"}, {"id": "3", "userName": "c"}]}"#;
        let obs = |id: &str| {
            Item::Observed(RecordObserved {
                external_id: id.into(),
                ..Default::default()
            })
        };
        let mut items = vec![obs("1"), Item::Rejected(Default::default()), obs("3")];
        attach(
            body,
            "/Resources",
            &mut items,
            &[("login".into(), "userName".into())],
        );
        let got: Vec<Option<String>> = items
            .iter()
            .map(|i| match i {
                Item::Observed(r) => r.attributes.get("login").cloned(),
                Item::Rejected(_) => None,
            })
            .collect();
        assert_eq!(got, vec![Some("a".into()), None, Some("c".into())]);
    }
}
