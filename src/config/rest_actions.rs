//! `[sources.rest.actions.<kind>]`: the lifecycle writes a REST source
//! accepts, each with the read-back that proves it. Kinds: `deactivate`,
//! `delete`, `remove_member`, `add_member`, `set_attribute`. Errors name
//! the key.

use std::{collections::BTreeMap, sync::Arc};

use govledger_ingest::actions::{RestAction, RestActions, RestCheck};
use govledger_proto::v1::ActionKind;
use serde::Deserialize;

use super::error::{ConfigError, invalid};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestActionConfig {
    /// `POST`, `PUT`, `PATCH` or `DELETE`.
    pub method: String,
    /// Below `base_url`, with `{user}`, `{group}`, `{attribute}`, `{value}`.
    pub path: String,
    /// A JSON body template (placeholders JSON-escaped), if any.
    pub body: Option<String>,
    /// The read-back GET (default: `path`).
    pub verify_path: Option<String>,
    /// In effect when the JSON value at this pointer ...
    pub verify_pointer: Option<String>,
    /// ... equals this (any TOML value: `false`, `"suspended"`).
    pub verify_equals: Option<toml::Value>,
    /// In effect when the read-back answers 404.
    #[serde(default)]
    pub verify_absent: bool,
    /// In effect when the read-back answers 2xx.
    #[serde(default)]
    pub verify_present: bool,
}

fn kind_of(name: &str) -> Option<ActionKind> {
    Some(match name {
        "deactivate" => ActionKind::Deactivate,
        "delete" => ActionKind::Delete,
        "remove_member" => ActionKind::RemoveMembership,
        "add_member" => ActionKind::AddMembership,
        "set_attribute" => ActionKind::SetAttribute,
        _ => return None,
    })
}

/// The templates of the REST source whose `[sources.rest]` is at `key`.
pub fn resolve(
    key: &str,
    actions: &BTreeMap<String, RestActionConfig>,
) -> Result<Option<Arc<RestActions>>, ConfigError> {
    if actions.is_empty() {
        return Ok(None);
    }
    let mut out = RestActions::default();
    for (name, a) in actions {
        let k = |f: &str| format!("{key}.actions.{name}.{f}");
        let Some(kind) = kind_of(name) else {
            return Err(invalid(
                format!("{key}.actions.{name}"),
                "not an action kind: deactivate, delete, remove_member, add_member or set_attribute",
            ));
        };
        let method = match a.method.to_ascii_uppercase().as_str() {
            "POST" => http::Method::POST,
            "PUT" => http::Method::PUT,
            "PATCH" => http::Method::PATCH,
            "DELETE" => http::Method::DELETE,
            other => {
                return Err(invalid(
                    k("method"),
                    format!("{other:?}: use POST, PUT, PATCH or DELETE"),
                ));
            }
        };
        let path_ok = |p: &str| !p.trim().is_empty() && !p.contains("://") && !p.contains('?');
        if !path_ok(&a.path) {
            return Err(invalid(k("path"), "a path below base_url, without a query"));
        }
        let needs_group = matches!(
            kind,
            ActionKind::RemoveMembership | ActionKind::AddMembership
        );
        if !a.path.contains("{user}") && !a.body.as_deref().unwrap_or("").contains("{user}") {
            return Err(invalid(
                k("path"),
                "must name {user} (in the path or the body)",
            ));
        }
        if needs_group
            && !a.path.contains("{group}")
            && !a.body.as_deref().unwrap_or("").contains("{group}")
        {
            return Err(invalid(
                k("path"),
                "must name {group} (in the path or the body)",
            ));
        }
        if let Some(b) = &a.body {
            let probe = b
                .replace("{user}", "u")
                .replace("{group}", "g")
                .replace("{attribute}", "a")
                .replace("{value}", "v");
            if serde_json::from_str::<serde_json::Value>(&probe).is_err() {
                return Err(invalid(
                    k("body"),
                    "is not JSON once its placeholders are filled in",
                ));
            }
        }
        let check = match (
            &a.verify_pointer,
            &a.verify_equals,
            a.verify_absent,
            a.verify_present,
        ) {
            (Some(p), Some(v), false, false) => {
                if !p.starts_with('/') {
                    return Err(invalid(
                        k("verify_pointer"),
                        format!("{p:?} is not a JSON pointer: write \"/{p}\""),
                    ));
                }
                let value = serde_json::to_value(v)
                    .map_err(|e| invalid(k("verify_equals"), e.to_string()))?;
                RestCheck::Equals {
                    pointer: p.clone(),
                    value,
                }
            }
            (None, None, true, false) => RestCheck::Absent,
            (None, None, false, true) => RestCheck::Present,
            _ => {
                return Err(invalid(
                    k("verify_pointer"),
                    "say how the read-back proves it: verify_pointer with verify_equals, or verify_absent = true, or verify_present = true (one of them)",
                ));
            }
        };
        let verify_path = a.verify_path.clone().unwrap_or_else(|| a.path.clone());
        if !path_ok(&verify_path) {
            return Err(invalid(
                k("verify_path"),
                "a path below base_url, without a query",
            ));
        }
        out.0.insert(
            kind as i32,
            RestAction {
                method,
                path: a.path.trim().to_owned(),
                body: a.body.clone(),
                verify_path: verify_path.trim().to_owned(),
                check,
            },
        );
    }
    Ok(Some(Arc::new(out)))
}

#[cfg(test)]
mod tests {
    use govledger_ingest::actions::RestCheck;
    use govledger_proto::v1::ActionKind;

    use crate::config::{Config, secrets::TestEnv as Env};

    const HEAD: &str = "[[sources]]\nid = \"app\"\nkind = \"rest\"\nbase_url = \"http://h/api\"\n[sources.rest]\npath = \"users\"\n";

    fn resolve(actions: &str) -> Result<crate::config::sources::Source, String> {
        Config::from_toml(&format!("{HEAD}{actions}"), "t.toml")
            .and_then(|c| c.resolve(&Env(vec![])))
            .map(|mut r| r.sources.remove(0))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn templates_resolve_by_kind() {
        let s = resolve(
            "[sources.rest.actions.deactivate]\nmethod = \"patch\"\npath = \"users/{user}\"\nbody = '{\"active\": false}'\n\
             verify_pointer = \"/active\"\nverify_equals = false\n\
             [sources.rest.actions.remove_member]\nmethod = \"DELETE\"\npath = \"groups/{group}/members/{user}\"\nverify_absent = true\n",
        )
        .unwrap();
        assert!(s.writable());
        assert_eq!(
            s.action_kinds(),
            Some(vec![ActionKind::Deactivate, ActionKind::RemoveMembership])
        );
        let a = s.rest_actions.unwrap();
        let d = a.get(ActionKind::Deactivate).unwrap();
        assert_eq!(
            d.check,
            RestCheck::Equals {
                pointer: "/active".into(),
                value: serde_json::json!(false)
            }
        );
        assert_eq!(d.verify_path, "users/{user}");
        // Without templates a REST source stays read only.
        assert!(!resolve("").unwrap().writable());
    }

    #[test]
    fn errors_name_the_key() {
        let t = |name: &str, lines: &str| {
            resolve(&format!("[sources.rest.actions.{name}]\n{lines}")).unwrap_err()
        };
        for (name, lines, key) in [
            (
                "suspend",
                "method = \"PATCH\"\npath = \"u/{user}\"\nverify_absent = true",
                "actions.suspend",
            ),
            (
                "delete",
                "method = \"GET\"\npath = \"u/{user}\"\nverify_absent = true",
                "actions.delete.method",
            ),
            (
                "delete",
                "method = \"DELETE\"\npath = \"users\"\nverify_absent = true",
                "actions.delete.path",
            ),
            (
                "remove_member",
                "method = \"DELETE\"\npath = \"m/{user}\"\nverify_absent = true",
                "actions.remove_member.path",
            ),
            (
                "delete",
                "method = \"DELETE\"\npath = \"u/{user}\"",
                "actions.delete.verify_pointer",
            ),
            (
                "delete",
                "method = \"DELETE\"\npath = \"u/{user}\"\nverify_absent = true\nverify_present = true",
                "actions.delete.verify_pointer",
            ),
            (
                "deactivate",
                "method = \"PATCH\"\npath = \"u/{user}\"\nverify_pointer = \"active\"\nverify_equals = false",
                "actions.deactivate.verify_pointer",
            ),
            (
                "deactivate",
                "method = \"PATCH\"\npath = \"u/{user}\"\nbody = '{active: false'\nverify_absent = true",
                "actions.deactivate.body",
            ),
            (
                "deactivate",
                "method = \"PATCH\"\npath = \"https://evil/u/{user}\"\nverify_absent = true",
                "actions.deactivate.path",
            ),
        ] {
            let e = t(name, lines);
            assert!(
                e.contains(&format!("`sources[0].rest.{key}`")),
                "{name} {lines}: {e}"
            );
        }
    }
}
