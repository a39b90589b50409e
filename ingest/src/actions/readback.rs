//! What a read-back shows, decided from the target's answer alone (pure): the
//! intent in effect, not in effect, or *unknown*. An attribute the target
//! leaves out is unknown, never empty: a group answered without `members`
//! proves nothing about a membership.

use govledger_proto::v1::ActionKind;
use serde_json::Value;

use super::Step;

/// What one read-back shows about a step's intent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shown {
    InEffect,
    NotInEffect,
    /// The answer cannot prove it either way (e.g. `members` left out).
    Unknown,
}

impl Shown {
    fn from(b: bool) -> Self {
        if b {
            Shown::InEffect
        } else {
            Shown::NotInEffect
        }
    }
}

/// Whether a membership step needs the group read again asking for `members`
/// by name (`?attributes=members`): the answer left the attribute out.
pub fn needs_members(step: &Step, body: Option<&Value>) -> bool {
    matches!(
        step.kind,
        ActionKind::RemoveMembership | ActionKind::AddMembership
    ) && body.is_some_and(|b| b.get("members").is_none())
}

/// Decides from a read-back body (`None` = 404) whether `step` is in effect,
/// with what the body showed (secret-free).
pub fn in_effect(step: &Step, body: Option<&Value>) -> (Shown, String) {
    let Some(b) = body else {
        return match step.kind {
            ActionKind::Deactivate | ActionKind::Delete => {
                (Shown::InEffect, "already absent (404)".into())
            }
            ActionKind::RemoveMembership => {
                (Shown::InEffect, "group absent (404): no membership".into())
            }
            _ => (Shown::NotInEffect, "target absent (404)".into()),
        };
    };
    match step.kind {
        ActionKind::Deactivate => match b.get("active") {
            Some(Value::Bool(false)) => (Shown::InEffect, "active=false".into()),
            Some(v) => (Shown::NotInEffect, format!("active={v}")),
            None => (Shown::NotInEffect, "no active attribute".into()),
        },
        ActionKind::Delete => (Shown::NotInEffect, "still exists".into()),
        ActionKind::RemoveMembership | ActionKind::AddMembership => {
            let Some(members) = b.get("members").and_then(Value::as_array) else {
                return (
                    Shown::Unknown,
                    "the target does not show group memberships (no members attribute, \
                     even when asked for by name)"
                        .into(),
                );
            };
            let is = members
                .iter()
                .any(|m| m.get("value").and_then(Value::as_str) == Some(step.user_id.as_str()));
            let want = step.kind == ActionKind::AddMembership;
            (
                Shown::from(is == want),
                if is { "a member" } else { "not a member" }.into(),
            )
        }
        ActionKind::SetAttribute => {
            let got = b.get(&step.attribute);
            let ok = match got {
                Some(Value::String(s)) => *s == step.value,
                Some(Value::Bool(v)) => v.to_string() == step.value,
                Some(Value::Number(n)) => n.to_string() == step.value,
                _ => false,
            };
            (
                Shown::from(ok),
                format!(
                    "{}={}",
                    step.attribute,
                    got.map_or("absent".into(), |v| v.to_string())
                ),
            )
        }
        ActionKind::Unspecified => (Shown::NotInEffect, "nothing to check".into()),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use serde_json::json;

    use super::*;

    /// A step of `kind` on user u1 / group g1 / title "Engineer" (the
    /// executor's tests use it too).
    pub(crate) fn step(kind: ActionKind) -> Step {
        Step {
            kind,
            user_id: "u1".into(),
            group_id: "g1".into(),
            attribute: "title".into(),
            value: "Engineer".into(),
        }
    }

    #[test]
    fn read_back_rules() {
        use Shown::*;
        let check = |kind, body: Option<Value>, want: Shown| {
            let (got, why) = in_effect(&step(kind), body.as_ref());
            assert_eq!(got, want, "{kind:?} {body:?}: {why}");
        };
        check(
            ActionKind::Deactivate,
            Some(json!({"active": false})),
            InEffect,
        );
        check(
            ActionKind::Deactivate,
            Some(json!({"active": true})),
            NotInEffect,
        );
        check(ActionKind::Deactivate, Some(json!({})), NotInEffect);
        check(ActionKind::Deactivate, None, InEffect);
        check(ActionKind::Delete, None, InEffect);
        check(ActionKind::Delete, Some(json!({"id": "u1"})), NotInEffect);
        let rm = ActionKind::RemoveMembership;
        check(rm, Some(json!({"members": [{"value": "u2"}]})), InEffect);
        check(rm, Some(json!({"members": []})), InEffect);
        check(rm, Some(json!({"members": [{"value": "u1"}]})), NotInEffect);
        check(rm, None, InEffect);
        let add = ActionKind::AddMembership;
        check(add, Some(json!({"members": [{"value": "u1"}]})), InEffect);
        check(add, Some(json!({"members": []})), NotInEffect);
        check(add, None, NotInEffect);
        check(
            ActionKind::SetAttribute,
            Some(json!({"title": "Engineer"})),
            InEffect,
        );
        check(
            ActionKind::SetAttribute,
            Some(json!({"title": "Intern"})),
            NotInEffect,
        );
    }

    #[test]
    fn an_absent_members_attribute_is_unknown_never_empty() {
        for kind in [ActionKind::RemoveMembership, ActionKind::AddMembership] {
            let body = json!({"id": "g1", "displayName": "Admins"});
            let (got, why) = in_effect(&step(kind), Some(&body));
            assert_eq!(got, Shown::Unknown, "{kind:?}: {why}");
            assert!(why.contains("does not show group memberships"), "{why}");
            assert!(needs_members(&step(kind), Some(&body)));
            // A non-list members value proves nothing either.
            let odd = json!({"members": "u1"});
            assert_eq!(in_effect(&step(kind), Some(&odd)).0, Shown::Unknown);
        }
        let shown = json!({"members": []});
        assert!(!needs_members(
            &step(ActionKind::RemoveMembership),
            Some(&shown)
        ));
        assert!(!needs_members(
            &step(ActionKind::Deactivate),
            Some(&json!({}))
        ));
        assert!(!needs_members(&step(ActionKind::RemoveMembership), None));
    }
}
